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

export const RECORD_HEADER_BYTES = 8
export const RECORD_DISCARDED = 0x40000000
/** The length bits of a header's first u32 (the kernel keeps two flag bits above them). */
export const RECORD_LENGTH_MASK = 0x3fffffff

/** Calls `fn(view, offset, size)` for each record; `offset` points at the record's first byte. */
export function forEachRecord(
  batch: RecordBatch,
  fn: (view: DataView, offset: number, size: number) => void,
): void {
  const view = new DataView(batch.buffer, 0, batch.byteLength)
  for (let at = 0; at < batch.byteLength;) {
    const header = view.getUint32(at, true)
    const size = header & RECORD_LENGTH_MASK
    if ((header & RECORD_DISCARDED) === 0) fn(view, at + RECORD_HEADER_BYTES, size)
    at += RECORD_HEADER_BYTES + ((size + 7) & ~7)
  }
}
