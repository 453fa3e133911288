// The constants the offcpu-profile plugin configures the offcpu object with
// (runtime/protocols/offcpu.ts) are the kernel's: each equals the enum value of the same name in
// bpf/lib/offcpu.h.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import * as offcpu from '../../runtime/protocols/offcpu.ts'

test('every constant equals the value of the same name in offcpu.h', () => {
  const header = readFileSync(new URL('../../bpf/lib/offcpu.h', import.meta.url), 'utf8')
  const values = new Map<string, number>()
  for (const [, name, value] of header.matchAll(/^\s*([A-Z_0-9]+)\s*=\s*(\d+)\s*,/gm)) values.set(name!, Number(value))
  const constants = Object.entries(offcpu).filter(([name, value]) => /^OFFCPU_[A-Z_0-9]+$/.test(name) && name !== 'OFFCPU_OPTIONS_SIZE' && typeof value === 'number')
  assert.equal(constants.length, 7)
  for (const [name, value] of constants) assert.equal(value, values.get(name), `${name} in offcpu.h`)
})
