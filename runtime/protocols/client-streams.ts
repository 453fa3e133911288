/**
 * The client ends of one protocol's connections, each with its parser stream: what a database or
 * messaging plugin does with every `sockdata` record before its parser sees it. The server's end
 * of a connection on this host makes no spans and is dropped first; a data record reaches the
 * connection's stream (made at its first record) through one reused chunk; a close, read from
 * `sockdata:connections`, ends the stream after a grace for its last data records (`onConnectionEvent`
 * and `closeDue`), so what waited on the connection ends then, not when the connection is evicted.
 */
import type { PluginEmitters } from 'periscope/plugin'
import { clientConnection, type ClientConnection } from './client-spans.ts'
import { ConnectionTable } from './connection-table.ts'
import { DeferredCloses } from './deferred-closes.ts'
import { fillChunk, newSockChunk, ROLE_CLIENT, ROLE_SERVER, SOCK_CLOSE, SOCK_DATA, SOCK_FLAG_PREEXISTING, type SockChunk } from './sockdata.ts'

export interface ClientStream {
  push(chunk: SockChunk): void
  /** The connection closed (at `endNs`, boot clock) or was forgotten. */
  close(endNs: number): void
}

/** Per-connection state: at least the client end and its parser stream. */
export interface ClientConn {
  client: ClientConnection
  stream: ClientStream
}

/** The fields of a `sockdata` record this reads. */
export type SockRecord = Parameters<typeof fillChunk>[1] & Parameters<typeof clientConnection>[0] & { kind: number; role: number }

/**
 * `open` makes a connection's state and its parser stream: `role` is 'unknown' for a connection
 * whose end the kernel could not tell (found at start-up), and `midStream` says the connection
 * was open before Periscope, so its first record may fall inside a message.
 */
export type OpenConnection<C extends ClientConn> = (client: ClientConnection, role: 'client' | 'unknown', midStream: boolean) => C

export class ClientStreams<C extends ClientConn> {
  readonly #conns: ConnectionTable<C>
  readonly #chunk = newSockChunk()
  readonly #open: OpenConnection<C>
  #lostRecords = 0

  /** The end of the record being handled: when a connection forgotten for it stopped being followed. */
  #nowNs = 0
  /** Closes read from `sockdata:connections`, applied after their grace. */
  readonly #closes = new DeferredCloses((connId, endNs) => this.#conns.delete(connId)?.stream.close(endNs))

  /**
   * At most `maxConnections` at once; past that the one least used lately is forgotten, and its
   * stream closed when `closeEvicted` (what was waiting on it ends as if the connection closed) or
   * dropped with what was waiting (a plugin whose closed operations would be reported as errors).
   */
  constructor(maxConnections: number, open: OpenConnection<C>, options: { closeEvicted: boolean }) {
    this.#open = open
    this.#conns = new ConnectionTable<C>(maxConnections, options.closeEvicted ? (conn) => conn.stream.close(this.#nowNs) : () => {})
  }

  onRecord(event: SockRecord): void {
    if (event.role === ROLE_SERVER || event.kind !== SOCK_DATA) return
    let conn = this.#conns.get(event.conn_id)
    if (conn === undefined) {
      this.#nowNs = event.end_ns
      conn = this.#open(clientConnection(event), event.role === ROLE_CLIENT ? 'client' : 'unknown', (event.flags & SOCK_FLAG_PREEXISTING) !== 0)
      this.#conns.set(event.conn_id, conn)
      this.#closes.opened(event.conn_id)
    }
    conn.stream.push(fillChunk(this.#chunk, event))
  }

  /**
   * A record of `sockdata:connections`: a close ends the connection's stream CLOSE_GRACE_MS later
   * (closeDue), or that long after its first data record when the close came first.
   */
  onConnectionEvent(event: { kind: number; conn_id: number; end_ns: number }): void {
    if (event.kind === SOCK_CLOSE) this.#closes.closed(event.conn_id, event.end_ns, this.#conns.has(event.conn_id))
  }

  /** Ends the streams of the connections whose close grace is over: call it every 200 ms. */
  closeDue(nowMs = Date.now()): void {
    this.#closes.due(nowMs)
  }

  /** Records of the ring lost before they reached the plugin: give this as the topic's onLoss. */
  onLoss(lost: number): void {
    this.#lostRecords += lost
  }

  /**
   * The gauges every client-protocol plugin reports, as `periscope.<plugin>.*`: connections
   * followed and forgotten, records lost, and its parser's errors by reason.
   */
  report(emit: PluginEmitters, plugin: string, parseErrors: Record<string, number>): void {
    const attributes = { 'periscope.plugin': plugin }
    emit.metric({ name: `periscope.${plugin}.connections`, kind: 'gauge', value: this.#conns.size, attributes })
    emit.metric({ name: `periscope.${plugin}.connections_evicted`, kind: 'gauge', value: this.#conns.evicted, attributes })
    emit.metric({ name: `periscope.${plugin}.records_lost`, kind: 'gauge', value: this.#lostRecords, attributes })
    for (const [reason, count] of Object.entries(parseErrors)) {
      emit.metric({ name: `periscope.${plugin}.parse_errors`, kind: 'gauge', value: count, attributes: { ...attributes, reason } })
    }
  }
}
