import assert from 'node:assert/strict'
import { test } from 'node:test'
import { decodeLoopgenEvent } from '../../bpf/lib/loopgen.types.ts'
import { forEachRecord, type RecordBatch } from '../../runtime/bpf/batch.ts'
import { testRun } from '../../runtime/bpf/links.ts'
import { ObjectSpec } from '../../runtime/bpf/object.ts'
import { RingBufferReader } from '../../runtime/bpf/ringbuf.ts'
import { objectPath, waitFor } from './kernel.ts'

const args = (count: number): Uint8Array => {
  const bytes = new Uint8Array(8)
  new DataView(bytes.buffer).setUint32(0, count, true)
  return bytes
}

test('records arrive in batches, numbered without gaps, in the shared batch format', async () => {
  const object = await ObjectSpec.open(objectPath('loopgen')).load()
  const seqs: number[] = []
  const batches: RecordBatch[] = []
  const reader = new RingBufferReader(object, 'events', {
    batchBytes: 64 * 1024,
    onBatch: (batch) => {
      batches.push(batch)
      forEachRecord(batch, (view, offset, size) => {
        assert.equal(size, 64)
        seqs.push(decodeLoopgenEvent(view, offset).seq)
      })
    },
  })
  for (let i = 0; i < 10; i++) testRun(object, 'generate', args(5000))
  await waitFor(() => seqs.length === 50_000, '50,000 records')
  assert.deepEqual(seqs, Array.from({ length: 50_000 }, (_, i) => i))
  // 64 KiB batches of 72-byte records: many records per batch, never one call per record
  assert.ok(batches.length < 1000 && batches.every((b) => b.count > 0 && b.byteLength <= 64 * 1024 + 72))
  assert.equal(reader.stats().received, 50_000)
  assert.equal(object.dropped(), 0)
  reader.close()
  object.close()
})

test('a deliberately tiny ring buffer drops, and every drop is counted', async () => {
  const spec = ObjectSpec.open(objectPath('loopgen')).setMaxEntries('events', 4096)
  const object = await spec.load()
  // nobody reads while the generator writes 1000 records into a 4 KiB ring
  testRun(object, 'generate', args(1000))
  let received = 0
  const reader = new RingBufferReader(object, 'events', { onBatch: (batch) => { received += batch.count } })
  reader.drain()
  const fits = Math.floor(4096 / 72)
  assert.equal(received, fits)
  assert.equal(object.dropped(), 1000 - fits)
  reader.close()
  object.close()
})

test('for await over a reader yields batches until it is closed', async () => {
  const object = await ObjectSpec.open(objectPath('loopgen')).load()
  const reader = new RingBufferReader(object, 'events')
  testRun(object, 'generate', args(100))
  let count = 0
  for await (const batch of reader) {
    count += batch.count
    if (count >= 100) reader.close()
  }
  assert.equal(count, 100)
  object.close()
})

test('record_size makes every record that many bytes, numbered as before', async () => {
  // an exec record's size: the full-path benchmark feeds plugins records this large
  const object = await ObjectSpec.open(objectPath('loopgen')).setSettings({ record_size: 1352 }).load()
  const seqs: number[] = []
  const sizes = new Set<number>()
  const reader = new RingBufferReader(object, 'events', {
    onBatch: (batch) => forEachRecord(batch, (view, offset, size) => {
      sizes.add(size)
      seqs.push(decodeLoopgenEvent(view, offset, size).seq)
    }),
  })
  testRun(object, 'generate', args(3000))
  await waitFor(() => seqs.length === 3000, '3,000 records')
  assert.deepEqual([...sizes], [1352])
  assert.deepEqual(seqs, Array.from({ length: 3000 }, (_, i) => i))
  assert.equal(object.dropped(), 0)
  reader.close()
  object.close()
})
