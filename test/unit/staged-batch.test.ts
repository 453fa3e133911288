/** StagedBatch: the records waiting for a plugin's isolate, and what moves into it. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { StagedBatch } from '../../runtime/plugins/sandbox.ts'

/** A provider's batch of `byteLength` meaningful bytes (seeded), in a larger buffer as ring readers lend them. */
function batch(byteLength: number, seed: number, count = 1) {
  const buffer = new ArrayBuffer(byteLength + 4096)
  const bytes = new Uint8Array(buffer)
  for (let i = 0; i < byteLength; i++) bytes[i] = (seed + i) & 0xff
  return { buffer, byteLength, count, lost: 0 }
}

test('a staged batch moves into the isolate as exactly its records: no room left over from gathering', () => {
  const one = new StagedBatch(batch(300, 1), 0)
  const moved = one.take().copy()
  assert.equal(moved.byteLength, 300)
  assert.deepEqual(new Uint8Array(moved), new Uint8Array(batch(300, 1).buffer, 0, 300))

  // seven batches gathered while the isolate was busy: the buffer doubled on the way (300, 600, 1200, 2400)
  const gathered = new StagedBatch(batch(300, 0, 2), 5)
  for (let i = 1; i < 7; i++) assert.equal(gathered.tryAppend(batch(300, i * 300, 2)), true)
  assert.equal(gathered.byteLength, 2100)
  assert.equal(gathered.count, 14)
  assert.equal(gathered.lost, 5)
  const all = gathered.take().copy()
  assert.equal(all.byteLength, 2100)
  assert.deepEqual(new Uint8Array(all), Uint8Array.from({ length: 2100 }, (_, i) => i & 0xff))
  assert.equal(gathered.tryAppend(batch(10, 0)), false, 'a taken batch is sealed')
})

test('a staged batch stops gathering at StagedBatch.maxBytes, and a first batch larger than that is kept whole', () => {
  const staged = new StagedBatch(batch(StagedBatch.maxBytes - 100, 0), 0)
  assert.equal(staged.tryAppend(batch(101, 0)), false)
  assert.equal(staged.tryAppend(batch(100, 0)), true)
  assert.equal(staged.take().copy().byteLength, StagedBatch.maxBytes)
  const large = new StagedBatch(batch(StagedBatch.maxBytes + 8, 3), 0)
  assert.equal(large.take().copy().byteLength, StagedBatch.maxBytes + 8)
})
