/**
 * The unwinder (runtime/profiling/unwind.ts) on hand-made samples of a real binary: Debian's
 * redis-server, "mapped" by a /proc of the test's own (maps and a map_files link to the file), with
 * stacks whose every word the test chose. Each case pins one rule of the walk to an exact result.
 */
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { StackUnwinder, UNWIND_COMPLETE, UNWIND_COPY_ENDED, UNWIND_NO_MAPPING } from '../../runtime/profiling/unwind.ts'

const REDIS = realpathSync('/usr/bin/redis-server')
const PID = 4242
const BASE = 0x555555554000
const END = 0x555555800000
const JIT = 0x7f0000000000
const SP = 0x7ffc00001000

const proc = mkdtempSync(join(tmpdir(), 'periscope-unwind-proc-'))
after(() => rmSync(proc, { recursive: true, force: true }))
mkdirSync(join(proc, String(PID), 'map_files'), { recursive: true })
writeFileSync(join(proc, String(PID), 'maps'), [
  `${BASE.toString(16)}-${END.toString(16)} r-xp 00000000 fe:01 1234 ${REDIS}`,
  `${JIT.toString(16)}-${(JIT + 0x10000).toString(16)} r-xp 00000000 00:00 0 `,
  '',
].join('\n'))
symlinkSync(REDIS, join(proc, String(PID), 'map_files', `${BASE.toString(16)}-${END.toString(16)}`))

// addresses in Debian 12's redis-server 7.0 (file offsets = virtual addresses, from readelf)
/** siphash_nocase's `add %rdx,%rcx` after its epilogue popped rbx, rbp and r12: CFA rsp+8, rbp still "at c-24". */
const SIPHASH_AFTER_POPS = 0x121423
/** The return address of _start's call of __libc_start_main; its CIE marks rip undefined: the outermost frame. */
const START_RETURN = 0x61931

/** A stack copy of 64-bit words from SP up. */
function stack(...words: number[]): DataView {
  const view = new DataView(new ArrayBuffer(words.length * 8))
  words.forEach((word, i) => view.setBigUint64(i * 8, BigInt(word), true))
  return view
}

describe('unwinding hand-made samples of redis-server', () => {
  const unwinder = new StackUnwinder({ procRoot: proc })
  const frames = new Float64Array(16)

  it('a sample after an epilogue popped rbp keeps rbp (its save slot is below sp), and reaches _start', () => {
    const words = stack(BASE + START_RETURN, 0xdead)
    const count = unwinder.unwind(PID, BASE + SIPHASH_AFTER_POPS, SP, 0x1234, words, 0, words.byteLength, frames)
    assert.deepEqual([...frames.subarray(0, count)], [BASE + SIPHASH_AFTER_POPS, BASE + START_RETURN])
    assert.equal(unwinder.end, UNWIND_COMPLETE)
    assert.equal(unwinder.framePointerFrames, 0)
  })

  it('JIT code (no file, no table) is walked by its frame pointer', () => {
    // [SP] junk, [SP+8] the JIT frame's saved rbp, [SP+16] its return address into _start
    const words = stack(0x77, 0, BASE + START_RETURN)
    const count = unwinder.unwind(PID, JIT + 0x40, SP, SP + 8, words, 0, words.byteLength, frames)
    assert.deepEqual([...frames.subarray(0, count)], [JIT + 0x40, BASE + START_RETURN])
    assert.equal(unwinder.end, UNWIND_COMPLETE)
    assert.equal(unwinder.framePointerFrames, 1)
  })

  it('a return address above the copy ends the walk as truncated, not complete', () => {
    const words = stack(BASE + START_RETURN)
    const count = unwinder.unwind(PID, BASE + SIPHASH_AFTER_POPS, SP, 0, words, 0, 4, frames)
    assert.equal(count, 1)
    assert.equal(unwinder.end, UNWIND_COPY_ENDED)
  })

  it('an address in no mapping ends the walk as truncated', () => {
    const words = stack(0x1000)
    const count = unwinder.unwind(PID, BASE + SIPHASH_AFTER_POPS, SP, 0, words, 0, words.byteLength, frames)
    assert.deepEqual([...frames.subarray(0, count)], [BASE + SIPHASH_AFTER_POPS, 0x1000])
    assert.equal(unwinder.end, UNWIND_NO_MAPPING)
  })
})
