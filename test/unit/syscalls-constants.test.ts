// The constants the syscalls plugin reads the syscalls object with (runtime/protocols/syscalls.ts)
// are the kernel's: each equals the enum value or #define of the same name in bpf/lib/syscalls.h.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import * as syscalls from '../../runtime/protocols/syscalls.ts'

test('every constant equals the value of the same name in syscalls.h', () => {
  const header = readFileSync(new URL('../../bpf/lib/syscalls.h', import.meta.url), 'utf8')
  const values = new Map<string, number>()
  for (const [, name, value] of header.matchAll(/^\s*([A-Z_0-9]+)\s*=\s*(\d+)\s*,/gm)) values.set(name!, Number(value))
  for (const [, name, value] of header.matchAll(/^#define\s+([A-Z_0-9]+)\s+(\d+)$/gm)) values.set(name!, Number(value))
  const constants = Object.entries(syscalls).filter(([name, value]) => /^[A-Z_0-9]+$/.test(name) && typeof value === 'number')
  assert.equal(constants.length, 7)
  for (const [name, value] of constants) assert.equal(value, values.get(name), `${name} in syscalls.h`)
})
