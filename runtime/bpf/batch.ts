/**
 * The batch format shared by every hop after the kernel, which is the kernel ring buffer's own:
 * records back to back in one ArrayBuffer, each an 8-byte header followed by the record bytes
 * padded to 8. The header's first u32 (little endian) is the record's byte length; its bit 30
 * (RECORD_DISCARDED) marks a record the program discarded, which readers skip. The second u32 is
 * the kernel's and means nothing here. A ring buffer batch is the ring's memory itself, lent for
 * the duration of the onBatch call; perf buffer batches are copies in the same layout. The same
 * bytes are handed to plugins, so the per-event loop runs in the isolate and nothing crosses a
 * boundary per event.
 */
export interface RecordBatch {
  /**
   * Records back to back; only the first `byteLength` bytes are meaningful. Ring buffer batches
   * are valid only during the onBatch call (the buffer is detached afterwards): copy to keep.
   */
  buffer: ArrayBuffer
  byteLength: number
  /** Number of records in `buffer`, discarded ones not included. */
  count: number
  /** Records the kernel could not hand over since the previous batch (perf buffer lost samples). */
  lost: number
}

// This module imports nothing, so that the isolate bootstrap (runtime/plugins/isolate/bootstrap.ts,
// bundled by esbuild into each plugin isolate) walks batches with this same code.

export const RECORD_HEADER_BYTES = 8
export const RECORD_DISCARDED = 0x40000000
/** The length bits of a header's first u32 (the kernel keeps two flag bits above them). */
export const RECORD_LENGTH_MASK = 0x3fffffff

/** What a record callback receives: the batch's view, the record's first byte, its size. */
export type RecordCallback = (view: DataView, offset: number, size: number) => void

/**
 * Calls `fn(view, offset, size)` for each record that was not discarded; `offset` points at the
 * record's first byte. In a hot path, pass a function created once rather than a new closure per
 * batch: V8 then inlines it into this loop, which makes the walk as fast as a hand-written one.
 */
export function forEachRecord(batch: Pick<RecordBatch, 'buffer' | 'byteLength'>, fn: RecordCallback): void {
  const byteLength = batch.byteLength
  const view = new DataView(batch.buffer, 0, byteLength)
  // RECORD_LENGTH_MASK, RECORD_DISCARDED and RECORD_HEADER_BYTES as literals: optimized code
  // re-reads a module binding (with its temporal-dead-zone check, and a type check) on every
  // use, which made this loop half again as slow (test/unit/batch.test.ts ties them together)
  for (let at = 0; at < byteLength;) {
    const header = view.getUint32(at, true)
    const size = header & 0x3fffffff
    if ((header & 0x40000000) === 0) fn(view, at + 8, size)
    at += 8 + ((size + 7) & ~7)
  }
}
