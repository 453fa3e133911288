/**
 * The batch format shared by every hop after the kernel: ring and perf buffer consumers copy
 * records into one ArrayBuffer, back to back, each as an 8-byte header followed by the record
 * bytes padded to 8. The header is the record's byte length (u32, little endian) and a u32 that
 * is reserved and zero. The same buffer is handed to plugins, so the per-event loop runs in the
 * isolate and nothing crosses a boundary per event.
 */
export interface RecordBatch {
  /** Records back to back; only the first `byteLength` bytes are meaningful. */
  buffer: ArrayBuffer
  byteLength: number
  /** Number of records in `buffer`. */
  count: number
  /** Records the kernel could not hand over since the previous batch (perf buffer lost samples). */
  lost: number
}

export const RECORD_HEADER_BYTES = 8

/** Calls `fn(view, offset, size)` for each record; `offset` points at the record's first byte. */
export function forEachRecord(
  batch: RecordBatch,
  fn: (view: DataView, offset: number, size: number) => void,
): void {
  const view = new DataView(batch.buffer, 0, batch.byteLength)
  let at = 0
  for (let i = 0; i < batch.count; i++) {
    const size = view.getUint32(at, true)
    fn(view, at + RECORD_HEADER_BYTES, size)
    at += RECORD_HEADER_BYTES + ((size + 7) & ~7)
  }
}
