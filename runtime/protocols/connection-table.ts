/**
 * Per-connection state of a protocol plugin, by the kernel's conn_id, bounded: past `max`
 * connections the least recently used one is forgotten (its close may never be seen: the record
 * was lost, or the process was killed), so a plugin's memory stays bounded on a busy host.
 * A Map keeps insertion order, so re-inserting on use keeps the least recently used first.
 */
export class ConnectionTable<T> {
  readonly #max: number
  readonly #onEvict: (conn: T, id: number) => void
  readonly #conns = new Map<number, T>()
  /** Connections forgotten because the table was full. */
  evicted = 0

  constructor(max: number, onEvict: (conn: T, id: number) => void) {
    if (!(max >= 1)) throw new Error(`a connection table needs room for at least one connection (got ${max})`)
    this.#max = max
    this.#onEvict = onEvict
  }

  /** The connection's state, marked most recently used. */
  get(id: number): T | undefined {
    const conn = this.#conns.get(id)
    if (conn === undefined) return undefined
    this.#conns.delete(id)
    this.#conns.set(id, conn)
    return conn
  }

  /** Adds a connection, forgetting the least recently used one when the table is full. */
  set(id: number, conn: T): void {
    this.#conns.delete(id)
    if (this.#conns.size >= this.#max) {
      const [oldestId, oldest] = this.#conns.entries().next().value!
      this.#conns.delete(oldestId)
      this.evicted++
      this.#onEvict(oldest, oldestId)
    }
    this.#conns.set(id, conn)
  }

  /** Removes a connection that closed; onEvict is not called. */
  delete(id: number): T | undefined {
    const conn = this.#conns.get(id)
    if (conn !== undefined) this.#conns.delete(id)
    return conn
  }

  get size(): number {
    return this.#conns.size
  }

  values(): IterableIterator<T> {
    return this.#conns.values()
  }
}
