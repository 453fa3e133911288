import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { test } from 'node:test'
import { forEachRecord } from '../../runtime/bpf/batch.ts'
import { attachTracepoint } from '../../runtime/bpf/links.ts'
import { ObjectSpec } from '../../runtime/bpf/object.ts'
import { PerfBufferReader, RingBufferReader } from '../../runtime/bpf/ringbuf.ts'
import { compileFixture, waitFor } from './kernel.ts'

// process.getuid() calls getuid(2) each time, so each call is one sample
const getuid = (times: number): void => {
  for (let i = 0; i < times; i++) process.getuid!()
}

async function load() {
  const object = await ObjectSpec.open(compileFixture('perf')).setSettings({ target_tgid: process.pid }).load()
  attachTracepoint(object, 'on_getuid', 'syscalls', 'sys_enter_getuid')
  return object
}

test('perf buffer: samples arrive in batches, numbered, in the shared batch format', async () => {
  const object = await load()
  const seqs: number[] = []
  const reader = new PerfBufferReader(object, 'samples', {
    onBatch: (batch) => forEachRecord(batch, (view, offset, size) => {
      // perf pads raw samples to 8 bytes after a 4-byte size: at least our 32 bytes arrive
      assert.ok(size >= 32)
      seqs.push(Number(view.getBigUint64(offset, true)))
    }),
  })
  getuid(2000)
  await waitFor(() => seqs.length === 2000, '2000 samples')
  assert.deepEqual(seqs.toSorted((a, b) => a - b), Array.from({ length: 2000 }, (_, i) => i))
  assert.equal(reader.stats().lost, 0)
  reader.close()
  object.close()
})

// Pins the main thread (its tid is the pid) to the first CPU it may run on; returns the undo.
function pinMainThread(): () => void {
  const mask = /mask: ([0-9a-f]+)/.exec(execFileSync('taskset', ['-p', String(process.pid)], { encoding: 'utf8' }))![1]!
  const cpu = BigInt(`0x${mask}`).toString(2).split('').reverse().indexOf('1')
  execFileSync('taskset', ['-p', '-c', String(cpu), String(process.pid)], { stdio: 'ignore' })
  return () => execFileSync('taskset', ['-p', mask, String(process.pid)], { stdio: 'ignore' })
}

test('perf buffer: a full buffer reports lost samples, and received + lost is exact', async () => {
  const object = await load()
  let received = 0
  let lost = 0
  const reader = new PerfBufferReader(object, 'samples', {
    pagesPerCpu: 1,
    onBatch: (batch) => { received += batch.count; lost += batch.lost },
  })
  // A CPU's buffer reports its loss with the next sample written to that CPU. If the scheduler
  // moved this thread mid-loop, a CPU it left would keep its loss untold, so the thread stays on
  // one CPU for the whole count.
  const restore = pinMainThread()
  try {
    // nobody reads while 5000 samples go into one page per CPU
    reader.pause()
    getuid(5000)
    reader.drain()
    // the kernel reports a loss with the first sample that fits again
    getuid(1)
    reader.drain()
  } finally {
    restore()
  }
  assert.ok(lost > 0, 'a one-page buffer must overflow')
  assert.equal(received + lost, 5001)
  assert.equal(reader.stats().lost, lost)
  reader.close()
  object.close()
})

test('a reader refuses a map of the wrong kind', async () => {
  const object = await load()
  assert.throws(() => new RingBufferReader(object, 'samples'), /perf_event_array map, not a ring buffer/)
  object.close()
})
