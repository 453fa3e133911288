// The constants the processes plugin reads the sched object with (runtime/protocols/sched.ts) are
// the kernel's: each equals the enum value or #define of the same name in bpf/lib/sched.h, and
// the histogram has one bucket per slot of struct runq_hist.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { RUNQ_HIST_SIZE } from '../../bpf/lib/sched.types.ts'
import * as sched from '../../runtime/protocols/sched.ts'

test('every constant equals the value of the same name in sched.h', () => {
  const header = readFileSync(new URL('../../bpf/lib/sched.h', import.meta.url), 'utf8')
  const values = new Map<string, number>()
  for (const [, name, value] of header.matchAll(/^\s*([A-Z_0-9]+)\s*=\s*(\d+)\s*,/gm)) values.set(name!, Number(value))
  for (const [, name, value] of header.matchAll(/^#define\s+([A-Z_0-9]+)\s+(\d+)$/gm)) values.set(name!, Number(value))
  const constants = Object.entries(sched).filter(([name, value]) => /^[A-Z_0-9]+$/.test(name) && typeof value === 'number')
  assert.equal(constants.length, 9)
  for (const [name, value] of constants) assert.equal(value, values.get(name), `${name} in sched.h`)
})

test('the run-queue histogram has a boundary between each two slots, 1 µs to 2^25 µs', () => {
  assert.equal(RUNQ_HIST_SIZE, (sched.RUNQ_SLOTS + 1) * 8)
  assert.equal(sched.runqBoundaries.length + 1, sched.RUNQ_SLOTS)
  assert.equal(sched.runqBoundaries[0], 1e-6)
  assert.equal(sched.runqBoundaries.at(-1), 2 ** 25 / 1e6)
})
