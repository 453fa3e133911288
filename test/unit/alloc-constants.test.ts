// The constants the allocations plugin reads the alloc object with (runtime/protocols/alloc.ts)
// are the kernel's: each equals the enum value of the same name in bpf/lib/alloc.h.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import * as alloc from '../../runtime/protocols/alloc.ts'

test('every constant equals the value of the same name in alloc.h', () => {
  const header = readFileSync(new URL('../../bpf/lib/alloc.h', import.meta.url), 'utf8')
  const values = new Map<string, number>()
  for (const [, name, value] of header.matchAll(/^\s*([A-Z_0-9]+)\s*=\s*(\d+)\s*,/gm)) values.set(name!, Number(value))
  const constants = Object.entries(alloc).filter(([name, value]) => /^[A-Z_0-9]+$/.test(name) && typeof value === 'number')
  assert.equal(constants.length, 9)
  for (const [name, value] of constants) assert.equal(value, values.get(name), `${name} in alloc.h`)
})
