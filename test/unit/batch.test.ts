/**
 * The record walk of runtime/bpf/batch.ts, on batches built here from the exported layout
 * constants: forEachRecord writes them as literals for speed, and this is what ties the two.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { RECORD_DISCARDED, RECORD_HEADER_BYTES, RECORD_LENGTH_MASK, forEachRecord } from '../../runtime/bpf/batch.ts'

/** Records back to back as the kernel writes them; `discard` marks one as the program discarding it. */
function buildBatch(records: { bytes: number[]; discard?: boolean; kernelWord?: number }[]): { buffer: ArrayBuffer; byteLength: number } {
  const padded = (size: number): number => (size + 7) & ~7
  const byteLength = records.reduce((sum, r) => sum + RECORD_HEADER_BYTES + padded(r.bytes.length), 0)
  // a perf buffer batch's buffer can be larger than its byteLength; the walk must stop at byteLength
  const buffer = new ArrayBuffer(byteLength + 64)
  const view = new DataView(buffer)
  new Uint8Array(buffer).fill(0xff)
  let at = 0
  for (const record of records) {
    view.setUint32(at, record.bytes.length | (record.discard === true ? RECORD_DISCARDED : 0), true)
    view.setUint32(at + 4, record.kernelWord ?? 0, true)
    new Uint8Array(buffer, at + RECORD_HEADER_BYTES, record.bytes.length).set(record.bytes)
    at += RECORD_HEADER_BYTES + padded(record.bytes.length)
  }
  return { buffer, byteLength }
}

const walk = (batch: { buffer: ArrayBuffer; byteLength: number }) => {
  const seen: { offset: number; size: number; bytes: number[] }[] = []
  forEachRecord(batch, (view, offset, size) => {
    seen.push({ offset, size, bytes: Array.from(new Uint8Array(view.buffer, view.byteOffset + offset, size)) })
  })
  return seen
}

describe('forEachRecord', () => {
  it('visits each record at its offset with its exact size, across padding, and stops at byteLength', () => {
    const batch = buildBatch([{ bytes: [1, 2, 3] }, { bytes: [4, 5, 6, 7, 8, 9, 10, 11] }, { bytes: [12] }, { bytes: [] }])
    assert.deepEqual(walk(batch), [
      { offset: 8, size: 3, bytes: [1, 2, 3] },
      { offset: 24, size: 8, bytes: [4, 5, 6, 7, 8, 9, 10, 11] },
      { offset: 40, size: 1, bytes: [12] },
      { offset: 56, size: 0, bytes: [] },
    ])
  })

  it('skips discarded records, and ignores the kernel word of each header', () => {
    const batch = buildBatch([
      { bytes: [1], kernelWord: 0xffffffff },
      { bytes: [2, 2, 2, 2, 2, 2, 2, 2, 2], discard: true },
      { bytes: [3], kernelWord: 0x12345678 },
    ])
    assert.deepEqual(walk(batch).map((r) => r.bytes), [[1], [3]])
  })

  it('reads the length from the bits under RECORD_LENGTH_MASK only', () => {
    assert.equal(RECORD_LENGTH_MASK & RECORD_DISCARDED, 0)
    // the kernel's busy bit (bit 31) never reaches a batch, but it must not change the length
    const batch = buildBatch([{ bytes: [9, 9] }])
    new DataView(batch.buffer).setUint32(0, 2 | 0x80000000, true)
    assert.deepEqual(walk(batch), [{ offset: 8, size: 2, bytes: [9, 9] }])
  })
})
