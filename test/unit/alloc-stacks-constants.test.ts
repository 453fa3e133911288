// The constants the alloc-profile plugin reads the alloc_stacks object with
// (runtime/protocols/alloc-stacks.ts) are the kernel's: each equals the enum value of the same
// name in bpf/lib/alloc_stacks.h.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import * as allocStacks from '../../runtime/protocols/alloc-stacks.ts'

test('every constant equals the value of the same name in alloc_stacks.h', () => {
  const header = readFileSync(new URL('../../bpf/lib/alloc_stacks.h', import.meta.url), 'utf8')
  const values = new Map<string, number>()
  for (const [, name, value] of header.matchAll(/^\s*([A-Z_0-9]+)\s*=\s*(\d+)\s*,/gm)) values.set(name!, Number(value))
  const constants = Object.entries(allocStacks).filter(([name, value]) => /^[A-Z_0-9]+$/.test(name) && typeof value === 'number')
  assert.equal(constants.length, 3)
  for (const [name, value] of constants) assert.equal(value, values.get(name), `${name} in alloc_stacks.h`)
})
