/**
 * Per-connection state of a protocol plugin, by the kernel's conn_id, bounded: past `max`
 * connections one that was not used lately is forgotten (its close may never be seen: the record
 * was lost, or the process was killed), so a plugin's memory stays bounded on a busy host.
 *
 * Eviction is "second chance" (CLOCK), an approximation of least-recently-used that costs a flag
 * write per use instead of a Map reorder: entries wait in insertion order; the oldest one that was
 * used since it last came up moves to the back with its flag cleared, and the first one unused is
 * forgotten.
 */
interface Entry<T> {
  conn: T
  used: boolean
}

export class ConnectionTable<T> {
  readonly #max: number
  readonly #onEvict: (conn: T, id: number) => void
  readonly #entries = new Map<number, Entry<T>>()
  /** Connections forgotten because the table was full. */
  evicted = 0

  constructor(max: number, onEvict: (conn: T, id: number) => void) {
    if (!(max >= 1)) throw new Error(`a connection table needs room for at least one connection (got ${max})`)
    this.#max = max
    this.#onEvict = onEvict
  }

  /** The connection's state, marked as used. */
  get(id: number): T | undefined {
    const entry = this.#entries.get(id)
    if (entry === undefined) return undefined
    entry.used = true
    return entry.conn
  }

  /** Whether the connection is followed, without marking it as used. */
  has(id: number): boolean {
    return this.#entries.has(id)
  }

  /** Adds a connection, forgetting one not used lately when the table is full. */
  set(id: number, conn: T): void {
    const existing = this.#entries.get(id)
    if (existing !== undefined) {
      existing.conn = conn
      existing.used = true
      return
    }
    if (this.#entries.size >= this.#max) this.#evictOne()
    this.#entries.set(id, { conn, used: false })
  }

  /** Removes a connection that closed; onEvict is not called. */
  delete(id: number): T | undefined {
    const entry = this.#entries.get(id)
    if (entry === undefined) return undefined
    this.#entries.delete(id)
    return entry.conn
  }

  get size(): number {
    return this.#entries.size
  }

  #evictOne(): void {
    // at most one pass gives every used entry its second chance; then an unused one comes up
    for (;;) {
      const [id, entry] = this.#entries.entries().next().value!
      this.#entries.delete(id)
      if (entry.used) {
        entry.used = false
        this.#entries.set(id, entry)
        continue
      }
      this.evicted++
      this.#onEvict(entry.conn, id)
      return
    }
  }
}
