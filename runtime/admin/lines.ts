/** Newline-delimited framing for the admin protocol, on bytes so a limit counts bytes, not characters. */

/**
 * Returns a function to feed chunks to; it calls `onLine` with each complete line (UTF-8, without
 * its newline). A line that grows past `maxBytes` before its newline calls `onTooLong` once, and
 * every later chunk is ignored: the caller answers and closes the connection.
 */
export function lineSplitter(onLine: (line: string) => void, limits?: { maxBytes: number; onTooLong: () => void }): (chunk: Buffer) => void {
  let pending: Buffer[] = []
  let pendingBytes = 0
  let overflowed = false
  const tooLong = (bytes: number): boolean => {
    if (limits === undefined || bytes <= limits.maxBytes) return false
    overflowed = true
    pending = []
    limits.onTooLong()
    return true
  }
  return (chunk) => {
    if (overflowed) return
    let start = 0
    let newline: number
    while ((newline = chunk.indexOf(10, start)) >= 0) {
      const piece = chunk.subarray(start, newline)
      if (tooLong(pendingBytes + piece.byteLength)) return
      const line = pending.length === 0 ? piece.toString('utf8') : Buffer.concat([...pending, piece]).toString('utf8')
      pending = []
      pendingBytes = 0
      start = newline + 1
      onLine(line)
    }
    const rest = chunk.subarray(start)
    if (rest.byteLength === 0 || tooLong(pendingBytes + rest.byteLength)) return
    pending.push(rest)
    pendingBytes += rest.byteLength
  }
}
