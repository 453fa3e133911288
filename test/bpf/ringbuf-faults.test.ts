/**
 * Faults of the ring and perf buffer consumers (native/src/ring_buffer.cc, perf_buffer.cc): a
 * listener that throws, drains from inside its own callback, or closes its reader mid-batch, and
 * the object closed before its reader, from inside a listener, or before the drain timer fires. The
 * ring must stay consistent through each: every record delivered exactly once (loopgen and the
 * perf fixture number their records), nothing redelivered, and the process alive. The cases that
 * would end the process run in a child (fixtures/throwing-listener.ts, fixtures/close-order.ts),
 * so an abort or a segfault is reported as a failure instead of taking the test runner with it.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { test } from 'node:test'
import { forEachRecord, type RecordBatch } from '../../runtime/bpf/batch.ts'
import { attachTracepoint, testRun, type Link } from '../../runtime/bpf/links.ts'
import { native } from '../../runtime/bpf/native.ts'
import { ObjectSpec, type LoadedObject } from '../../runtime/bpf/object.ts'
import { PerfBufferReader, RingBufferReader } from '../../runtime/bpf/ringbuf.ts'
import { compileFixture, objectPath, root } from './kernel.ts'

const RECORDS = 3000
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i)

interface ChildReport {
  seqs: number[]
  messages: string[]
  listenerErrors?: number
  uncaught: number
  batches: number
  // fixtures/close-order.ts
  errors: string[]
  fdsAfterObjectClose?: number
  fdsAfterReaderClose?: number
  startAfterClose?: string
}

/** Runs fixtures/<fixture>.ts in `mode`; fails with the child's output unless it exited 0. */
function runChild(mode: string, fixture = 'throwing-listener'): ChildReport {
  const child = spawnSync(process.execPath, [join(root, 'test/bpf/fixtures', `${fixture}.ts`), mode, String(RECORDS)], {
    encoding: 'utf8', timeout: 60_000,
  })
  assert.equal(child.signal, null, `the ${mode} child was killed by ${child.signal}; stderr:\n${child.stderr}`)
  assert.equal(child.status, 0, `the ${mode} child exited with ${child.status}; stderr:\n${child.stderr}`)
  return JSON.parse(child.stdout.trim().split('\n').at(-1)!) as ChildReport
}

const generate = (object: LoadedObject, count: number): void => {
  const args = new Uint8Array(8)
  new DataView(args.buffer).setUint32(0, count, true)
  testRun(object, 'generate', args)
}
const seqsOf = (batch: RecordBatch, into: number[]): void => {
  forEachRecord(batch, (view, offset) => { into.push(Number(view.getBigUint64(offset, true))) })
}

test('ring buffer: a listener that throws from the event loop is contained, counted and reported; no record is lost or redelivered', () => {
  const report = runChild('ring-reader')
  assert.equal(report.listenerErrors, 1)
  assert.equal(report.messages.length, 1)
  assert.match(report.messages[0], /loopgen:events: the batch listener threw: listener failed on purpose/)
  assert.deepEqual(report.seqs, range(RECORDS))
})

test('ring buffer: a listener that throws during drain() is contained; the batch is consumed once and the next ones still arrive', async () => {
  const object = await ObjectSpec.open(objectPath('loopgen')).load()
  const seqs: number[] = []
  const errors: Error[] = []
  const thrown = new Error('listener failed on purpose')
  let batches = 0
  // small batches, so the failing one is followed by many more in the same drain()
  const reader = new RingBufferReader(object, 'events', {
    batchBytes: 8 * 1024,
    onBatch: (batch) => {
      seqsOf(batch, seqs)
      if (++batches === 1) throw thrown
    },
    onError: (error) => errors.push(error),
  })
  reader.pause()
  generate(object, RECORDS)
  reader.drain()
  assert.ok(batches > 1)
  assert.equal(errors.length, 1)
  assert.equal(errors[0].cause, thrown)
  assert.match(errors[0].message, /the batch listener threw: listener failed on purpose/)
  assert.equal(reader.stats().listenerErrors, 1)
  // nothing left behind, nothing delivered twice
  reader.drain()
  assert.deepEqual(seqs, range(RECORDS))
  assert.equal(reader.stats().received, RECORDS)
  reader.close()
  object.close()
})

test('ring buffer addon: an exception escaping the batch callback from the event loop reaches uncaughtException instead of aborting; the ring stays consistent', () => {
  const report = runChild('ring-native')
  assert.equal(report.uncaught, 1)
  assert.deepEqual(report.messages, ['listener failed on purpose'])
  assert.deepEqual(report.seqs, range(RECORDS))
})

test('ring buffer addon: an exception escaping the batch callback during drain() reaches its caller after the batch is consumed', async () => {
  const object = await ObjectSpec.open(objectPath('loopgen')).load()
  const seqs: number[] = []
  let batches = 0
  const consumer = new native.RingBuffer(object.map('events').info.fd, (buffer, byteLength, count, lost) => {
    if (buffer instanceof Error) throw buffer
    seqsOf({ buffer, byteLength: byteLength!, count: count!, lost: lost! }, seqs)
    if (++batches === 1) throw new Error('callback failed on purpose')
  }, 8 * 1024)
  generate(object, RECORDS)
  assert.throws(() => consumer.drain(), /callback failed on purpose/)
  const afterFailure = seqs.length
  consumer.drain()
  assert.ok(seqs.length > afterFailure, 'the batches after the failing one must still arrive')
  assert.deepEqual(seqs, range(RECORDS))
  consumer.close()
  object.close()
})

test('ring buffer: a listener that calls drain() from inside its callback is not handed the same batch again', async () => {
  const object = await ObjectSpec.open(objectPath('loopgen')).load()
  const seqs: number[] = []
  let depth = 0
  let deepest = 0
  const reader = new RingBufferReader(object, 'events', {
    batchBytes: 8 * 1024,
    onBatch: (batch) => {
      deepest = Math.max(deepest, ++depth)
      seqsOf(batch, seqs)
      reader.drain()
      depth--
    },
  })
  reader.pause()
  generate(object, RECORDS)
  reader.drain()
  assert.equal(deepest, 1, 'a batch callback must never run inside another')
  assert.deepEqual(seqs, range(RECORDS))
  reader.close()
  object.close()
})

test('ring buffer: a listener that closes its reader can still read the batch it holds; nothing is delivered after close()', () => {
  const report = runChild('ring-close')
  assert.equal(report.batches, 1)
  assert.ok(report.seqs.length > 0 && report.seqs.length < RECORDS, `the first batch holds part of the ${RECORDS} records`)
  assert.deepEqual(report.seqs, range(report.seqs.length))
})

// process.getuid() calls getuid(2) each time: one perf sample per call
const getuid = (times: number): void => {
  for (let i = 0; i < times; i++) process.getuid!()
}

async function loadPerf(): Promise<{ object: LoadedObject; link: Link }> {
  const object = await ObjectSpec.open(compileFixture('perf')).setSettings({ target_tgid: process.pid }).load()
  return { object, link: attachTracepoint(object, 'on_getuid', 'syscalls', 'sys_enter_getuid') }
}

test('perf buffer: a listener that throws from the event loop is contained, counted and reported; no sample is lost or redelivered', () => {
  const report = runChild('perf-reader')
  assert.equal(report.listenerErrors, 1)
  assert.equal(report.messages.length, 1)
  assert.match(report.messages[0], /perf:samples: the batch listener threw: listener failed on purpose/)
  assert.deepEqual(report.seqs, range(RECORDS))
})

test('perf buffer: a listener that throws during drain() is contained and counted; later samples still arrive once', async () => {
  const { object, link } = await loadPerf()
  const seqs: number[] = []
  const errors: Error[] = []
  let batches = 0
  const reader = new PerfBufferReader(object, 'samples', {
    onBatch: (batch) => {
      seqsOf(batch, seqs)
      if (++batches === 1) throw new Error('listener failed on purpose')
    },
    onError: (error) => errors.push(error),
  })
  reader.pause()
  getuid(1000)
  reader.drain()
  assert.equal(errors.length, 1)
  assert.equal(reader.stats().listenerErrors, 1)
  getuid(1000)
  reader.drain()
  assert.equal(batches, 2)
  assert.deepEqual(seqs.toSorted((a, b) => a - b), range(2000))
  assert.equal(reader.stats().lost, 0)
  reader.close()
  link.detach()
  object.close()
})

test('perf buffer: a listener that calls drain() from inside its callback is not re-entered', async () => {
  const { object, link } = await loadPerf()
  const seqs: number[] = []
  let depth = 0
  let deepest = 0
  const reader = new PerfBufferReader(object, 'samples', {
    onBatch: (batch) => {
      deepest = Math.max(deepest, ++depth)
      seqsOf(batch, seqs)
      // new samples while the batch is being handled: a nested drain would deliver them right here
      if (seqs.length <= 100) getuid(100)
      reader.drain()
      depth--
    },
  })
  reader.pause()
  getuid(100)
  reader.drain()
  reader.drain()
  assert.equal(deepest, 1, 'a batch callback must never run inside another')
  assert.deepEqual(seqs.toSorted((a, b) => a - b), range(200))
  reader.close()
  link.detach()
  object.close()
})

// Closing the object and its reader in any order: the reader owns a duplicate of the map's fd
// and its own mapping, so the object's close frees neither under it. Records produced before the
// object closed are still delivered, each once, and the reader's close releases the map.
const closeOrder = (mode: string): ChildReport => runChild(mode, 'close-order')

test('ring buffer: object.close() before reader.close() does not abort; the reader still delivers every record, then releases the map', () => {
  const report = closeOrder('object-first')
  assert.deepEqual(report.errors, [])
  assert.deepEqual(report.seqs, range(RECORDS))
  assert.equal(report.fdsAfterObjectClose, 1, 'only the reader holds the map once the object closed')
  assert.equal(report.fdsAfterReaderClose, 0)
})

test('ring buffer: object.close() from inside the listener leaves the lent batch readable and the next batches arriving', () => {
  const report = closeOrder('in-listener')
  assert.deepEqual(report.errors, [])
  assert.ok(report.batches > 1, `${RECORDS} records in 16 KiB batches take more than one batch`)
  assert.deepEqual(report.seqs, range(RECORDS))
  assert.equal(report.fdsAfterObjectClose, 1)
  assert.equal(report.fdsAfterReaderClose, 0)
})

test('ring buffer: closing a reader twice, and using the addon\'s consumer after closing it twice, is harmless', () => {
  const report = closeOrder('reader-twice')
  assert.deepEqual(report.errors, [])
  assert.deepEqual(report.seqs, range(RECORDS))
  assert.match(report.startAfterClose!, /start of a closed ring buffer consumer/)
  assert.equal(report.fdsAfterReaderClose, 0)
})

test('ring buffer: the idle-drain timer firing after the object closed reads the reader\'s own mapping', () => {
  const report = closeOrder('timer-after-close')
  assert.deepEqual(report.errors, [])
  assert.deepEqual(report.seqs, range(RECORDS))
  assert.equal(report.fdsAfterObjectClose, 1)
  assert.equal(report.fdsAfterReaderClose, 0)
})

test('perf buffer: object.close() before reader.close() leaves the reader its own map fd; every sample arrives once', () => {
  const report = closeOrder('perf-object-first')
  assert.deepEqual(report.errors, [])
  assert.deepEqual(report.seqs, range(RECORDS))
  assert.equal(report.fdsAfterObjectClose, 1, 'perf_buffer__free deletes its entries through this fd, so it must be the reader\'s own')
  assert.equal(report.fdsAfterReaderClose, 0)
})
