/**
 * When a protocol plugin closes a `sockdata` connection. The close comes on `sockdata:connections`,
 * a ring of its own, read apart from the protocol's ring: it may be read before the connection's
 * last data records (the reply that was the last thing it carried), or before any of them (a short
 * connection whose records are still in the protocol's ring). So a close is applied CLOSE_GRACE_MS
 * after it was read, or after the connection's first record when it came first. conn_ids are never
 * reused, so nothing else can take the connection's records meanwhile.
 */

/** How long a closed connection still takes the data records read after its close. */
export const CLOSE_GRACE_MS = 500
/** Closes kept for connections with no record yet (most connections on a host are no protocol's). */
const EARLY_CLOSES = 4096

export class DeferredCloses {
  readonly #apply: (connId: number, endNs: number) => void
  /** Closes in their grace, oldest first, read from `#head`. */
  readonly #closing: { connId: number; endNs: number; sinceMs: number }[] = []
  #head = 0
  /** Closes read before any record of their connection: conn_id → the close's end (boot ns), oldest first. */
  readonly #early = new Map<number, number>()

  /** `apply` closes the connection: its stream ends at `endNs` (boot clock). */
  constructor(apply: (connId: number, endNs: number) => void) {
    this.#apply = apply
  }

  /** A close was read; `followed`: the plugin has had records of this connection. */
  closed(connId: number, endNs: number, followed: boolean, nowMs = Date.now()): void {
    if (followed) {
      this.#closing.push({ connId, endNs, sinceMs: nowMs })
      return
    }
    if (this.#early.size >= EARLY_CLOSES) this.#early.delete(this.#early.keys().next().value!)
    this.#early.set(connId, endNs)
  }

  /** The connection's first record came: a close read before it starts its grace now. */
  opened(connId: number, nowMs = Date.now()): void {
    const endNs = this.#early.get(connId)
    if (endNs === undefined) return
    this.#early.delete(connId)
    this.#closing.push({ connId, endNs, sinceMs: nowMs })
  }

  /** Applies the closes whose grace is over: call it often (every 200 ms). */
  due(nowMs = Date.now()): void {
    const closing = this.#closing
    while (this.#head < closing.length && nowMs - closing[this.#head]!.sinceMs >= CLOSE_GRACE_MS) {
      const { connId, endNs } = closing[this.#head++]!
      this.#apply(connId, endNs)
    }
    // read from its head: drop what was read once that is most of the array
    if (this.#head > 1024 && this.#head * 2 > closing.length) {
      closing.splice(0, this.#head)
      this.#head = 0
    }
  }
}
