import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
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

test('the reader maps the ring\'s data once, and records that wrap around its end arrive whole, in order', async () => {
  const ringBytes = 16384
  const object = await ObjectSpec.open(objectPath('loopgen')).setMaxEntries('events', ringBytes).load()
  const records: { seq: number; timestamp: number; cpu: number; size: number }[] = []
  const reader = new RingBufferReader(object, 'events', {
    onBatch: (batch) => forEachRecord(batch, (view, offset, size) => {
      const event = decodeLoopgenEvent(view, offset, size)
      records.push({ seq: event.seq, timestamp: event.timestamp_ns, cpu: event.cpu, size })
    }),
  })
  try {
    // the kernel offers the data twice in a row; mapping it twice would count it twice in RSS
    const page = 4096
    const sizes = readFileSync('/proc/self/maps', 'utf8').split('\n').filter((line) => line.includes('anon_inode:bpf-map')).map((line) => {
      const [from, to] = line.split(' ')[0].split('-').map((hex) => parseInt(hex, 16))
      return to - from
    })
    assert.ok(sizes.includes(page + ringBytes), `a mapping of the producer page and the data once (${page + ringBytes} bytes) among ${sizes}`)
    assert.ok(!sizes.includes(page + 2 * ringBytes), 'no mapping of the data twice')
    // 72-byte strides in a 16 KiB ring: each lap ends inside a record, split 8 to 64 bytes in, so
    // each field of the record header is on either side of the split in some lap
    const stride = 72
    const total = 15_000
    for (let made = 0; made < total; made += 30) {
      testRun(object, 'generate', args(30))
      reader.drain()
    }
    const wrapped = Array.from({ length: total }, (_, i) => (i * stride) % ringBytes + stride > ringBytes).filter(Boolean).length
    assert.ok(wrapped >= 50, `${wrapped} records wrap around the ring's end`)
    assert.equal(records.length, total)
    assert.deepEqual(records.map((r) => r.seq), Array.from({ length: total }, (_, i) => i))
    assert.ok(records.every((r) => r.size === 64), 'every record is 64 bytes')
    const cpus = Number(execFileSync('nproc', { encoding: 'utf8' }))
    assert.ok(records.every((r) => r.cpu < cpus), 'every record names a CPU of this machine')
    assert.ok(records.every((r, i) => r.timestamp > 0 && (i === 0 || r.timestamp >= records[i - 1].timestamp)), 'timestamps whole and in order')
    assert.equal(reader.stats().received, total)
    assert.equal(object.dropped(), 0)
  } finally {
    reader.close()
    object.close()
  }
})
