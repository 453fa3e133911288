/**
 * MySQL and MariaDB client spans and the `db.client.operation.duration` histogram for every
 * process on the host, with no change to the applications. The `sockdata` object hands this
 * plugin only the records of connections the kernel classified as MySQL from their first bytes
 * (the server's protocol 10 greeting), so its cost follows MySQL traffic alone.
 *
 * Per connection, the protocol parser (runtime/protocols/mysql.ts) turns the client's commands
 * and the server's answers into operations. Each COM_QUERY and each COM_STMT_EXECUTE becomes a
 * CLIENT span of the process that sent it; an execute carries the statement text of its
 * COM_STMT_PREPARE, found by statement id. Other commands (a prepare, COM_INIT_DB, a ping) are
 * not spans of their own unless the server answered them with an error, which is then the only
 * trace of the failed statement. Attributes: `db.system.name` (`mariadb` when the greeting says
 * MariaDB, else `mysql`), the database of the handshake, COM_INIT_DB or `USE` in `db.namespace`,
 * the statement with its literals masked in `db.query.text`, `db.operation.name` and
 * `db.collection.name` from the statement, the server's error number in
 * `db.response.status_code`, and `db.response.returned_rows` when every row was seen.
 *
 * Secrets: the handshake's auth response is skipped by length, never decoded; execute parameter
 * values are not read; literals are masked and the server's error messages (which may quote
 * values) are left out unless `mask_literals` is off. A connection that switches to TLS (an SSL
 * request in the handshake) is not traced past it: its ciphertext is counted and dropped.
 *
 * Everything here is public plugin API: a user plugin can do the same.
 */
import { definePlugin, type PluginContext, type TopicEvent } from 'periscope/plugin'
import { clientSpansFromConfig, type ClientSpans, type ClientConnection, type ClientOperation } from 'periscope/protocols/client-spans'
import { ClientStreams } from 'periscope/protocols/client-streams'
import { COM_CHANGE_USER, COM_INIT_DB, COM_PING, COM_QUERY, COM_RESET_CONNECTION, COM_SET_OPTION, COM_STATISTICS, COM_STMT_BULK_EXECUTE, COM_STMT_EXECUTE, COM_STMT_RESET, MysqlParser, type MysqlConnection, type MysqlOperation } from 'periscope/protocols/mysql'
import { claimProtocol, PROTOCOL_MYSQL } from 'periscope/protocols/sockdata'
import { maskSqlLiterals, summarizeSql } from 'periscope/protocols/sql'

const config = {
  /** Payload bytes the kernel copies per call: statement text beyond it is cut; rows beyond it are skipped by length. */
  capture_bytes: 4096,
  /** Only these processes (empty: every process). */
  target_pids: [] as number[],
  /** Only processes in these cgroups or below them, by cgroup v2 id; with target_pids too, a process named by either. */
  target_cgroup_ids: [] as number[],
  /** Ports whose traffic is never traced, at either end. */
  excluded_ports: [] as number[],
  /** Connections tracked at once; the least recently used is forgotten past this. */
  max_connections: 16384,
  /** Prepared statements' texts kept per connection; the least recently prepared is forgotten past this. */
  max_statements: 256,
  /** The db.client.operation.duration histogram. */
  metrics: true,
  /** Spans shorter than this are not exported (the histogram still counts them). */
  min_duration_ms: 0,
  /** Head sampling in percent; errors are always kept. */
  sampling_percent: 100,
  /**
   * Literals in `db.query.text` replaced by `?`, and the server's error messages (which may quote
   * values) left out of the span status. Turn off only where statements carry no secrets.
   */
  mask_literals: true,
}
type Config = typeof config

type SockEvent = TopicEvent<'sockdata:mysql'>

interface Conn {
  client: ClientConnection
  stream: MysqlConnection<Conn>
  /** The last histogram attributes, reused while they do not change. */
  metricAttributes?: Record<string, string | number>
}

/** Span names of the commands that are not statements, when they fail. */
const commandNames: Record<number, string> = {
  [COM_INIT_DB]: 'USE',
  [COM_PING]: 'PING',
  [COM_CHANGE_USER]: 'CHANGE USER',
  [COM_RESET_CONNECTION]: 'RESET CONNECTION',
  [COM_STMT_RESET]: 'RESET STATEMENT',
  [COM_STATISTICS]: 'STATISTICS',
  [COM_SET_OPTION]: 'SET OPTION',
}

export default definePlugin({
  name: 'mysql',
  objects: ['sockdata'],
  config,
  async setup(ctx) {
    const plugin = new MysqlTracing(ctx)
    const { target_pids: pids, target_cgroup_ids: cgroups, excluded_ports: ports, capture_bytes: capture } = ctx.config
    // client spans only: the server's end of each connection stays in the kernel
    await claimProtocol(ctx, PROTOCOL_MYSQL, { captureBytes: capture, targetPids: pids, targetCgroupIds: cgroups, excludedPorts: ports, clientEndOnly: true })
    ctx.on('sockdata:mysql', (event) => plugin.onRecord(event), { onLoss: (lost) => plugin.onLoss(lost) })
    // closes come on a ring of their own: a connection's stream ends a grace after its close
    ctx.on('sockdata:connections', (event) => plugin.onConnectionEvent(event))
    ctx.every('200ms', () => plugin.closeDue())
    ctx.every('10s', () => plugin.report())
    const targets = [...pids.length > 0 ? [`pids ${pids.join(', ')}`] : [], ...cgroups.length > 0 ? [`cgroups ${cgroups.join(', ')} and below`] : []]
    ctx.log.info(`tracing MySQL and MariaDB clients on ${targets.length === 0 ? 'the whole host' : targets.join(' and ')}`)
  },
})

class MysqlTracing {
  readonly #ctx: PluginContext<Config>
  readonly #conns: ClientStreams<Conn>
  readonly #parser: MysqlParser<Conn>
  readonly #spans: ClientSpans
  readonly #mask: boolean
  /** One operation object for every span: ClientSpans keeps only its attributes. */
  readonly #operation: ClientOperation = { name: '', startNs: 0, endNs: 0, attributes: {}, metricAttributes: {} }

  constructor(ctx: PluginContext<Config>) {
    this.#ctx = ctx
    this.#mask = ctx.config.mask_literals
    this.#conns = new ClientStreams<Conn>(ctx.config.max_connections, (client, role, midStream) => {
      const conn = { client } as Conn
      conn.stream = this.#parser.connection(conn, role)
      return conn
    }, { closeEvicted: true })
    // a connection of unknown role (found at start-up) may turn out to be the server's end
    this.#parser = new MysqlParser<Conn>((operation, conn, side) => {
      if (side === 'client') this.#onOperation(conn, operation)
    }, { maxStatements: ctx.config.max_statements })
    this.#spans = clientSpansFromConfig(ctx, 'db.client.operation.duration')
  }

  onLoss(lost: number): void {
    this.#conns.onLoss(lost)
  }

  onConnectionEvent(event: { kind: number; conn_id: number; end_ns: number }): void {
    this.#conns.onConnectionEvent(event)
  }

  closeDue(): void {
    this.#conns.closeDue()
  }

  onRecord(event: SockEvent): void {
    this.#conns.onRecord(event)
  }


  /** Self-reported counters, besides the runtime's own per-plugin metrics. */
  report(): void {
    const attributes = { 'periscope.plugin': 'mysql' }
    const emit = this.#ctx.emit
    this.#conns.report(emit, 'mysql', this.#parser.errors)
    const stats = this.#parser.stats
    emit.metric({ name: 'periscope.mysql.resyncs', kind: 'gauge', value: stats.resyncs, attributes })
    emit.metric({ name: 'periscope.mysql.unfollowed_responses', kind: 'gauge', value: stats.unfollowed, attributes })
    emit.metric({ name: 'periscope.mysql.rejected_connections', kind: 'gauge', value: stats.rejected, attributes })
    for (const reason of ['tls', 'compressed', 'replication'] as const) {
      emit.metric({ name: 'periscope.mysql.untraced_connections', kind: 'gauge', value: stats[reason], attributes: { ...attributes, reason } })
    }
    this.#spans.report('mysql')
  }

  #onOperation(conn: Conn, operation: MysqlOperation): void {
    const statement = operation.command === COM_QUERY || operation.command === COM_STMT_EXECUTE || operation.command === COM_STMT_BULK_EXECUTE
    if (!statement && operation.error === undefined) return
    const system = conn.stream.server?.mariadb === true ? 'mariadb' : 'mysql'
    // a failed COM_INIT_DB is about the database it asked for
    const namespace = operation.command === COM_INIT_DB ? operation.text : operation.namespace
    const summary = operation.command === COM_INIT_DB || operation.text === undefined
      ? { operation: commandNames[operation.command] }
      : summarizeSql(operation.text, 'mysql')
    const attributes: ClientOperation['attributes'] = { 'db.system.name': system }
    if (namespace !== undefined) attributes['db.namespace'] = namespace
    if (summary.operation !== undefined) attributes['db.operation.name'] = summary.operation
    if (summary.collection !== undefined) attributes['db.collection.name'] = summary.collection
    if (operation.text !== undefined && operation.command !== COM_INIT_DB) {
      attributes['db.query.text'] = this.#mask ? maskSqlLiterals(operation.text, 'mysql') : operation.text
    }
    if (operation.rows !== undefined) attributes['db.response.returned_rows'] = operation.rows
    // 0: the capture cut the ERR before its number
    const code = operation.error === undefined || operation.error.code === 0 ? undefined : String(operation.error.code)
    if (code !== undefined) attributes['db.response.status_code'] = code
    const op = this.#operation
    op.name = summary.operation === undefined ? system : summary.collection === undefined ? summary.operation : `${summary.operation} ${summary.collection}`
    op.startNs = operation.startNs
    op.endNs = operation.endNs
    op.context = operation.context
    op.tid = operation.tid
    op.attributes = attributes
    op.metricAttributes = this.#metricAttributes(conn, system, namespace, summary, code)
    op.error = this.#error(operation)
    this.#spans.emit(conn.client, op)
  }

  #error(operation: MysqlOperation): ClientOperation['error'] {
    const error = operation.error
    if (error !== undefined) {
      const state = error.sqlState === '' ? '' : ` (${error.sqlState})`
      const type = error.code === 0 ? '_OTHER' : String(error.code)
      // the server's message may quote the statement's values (Duplicate entry '...' for key ...)
      return { type, message: this.#mask ? `ERROR ${error.code}${state}` : `ERROR ${error.code}${state}: ${error.message}` }
    }
    if (operation.incomplete === 'closed') return { type: 'connection_closed', message: 'the connection closed before the answer was complete' }
    if (operation.incomplete === 'lost') return { type: 'data_lost', message: 'records of this operation were lost; its result is unknown' }
    return undefined
  }

  #metricAttributes(conn: Conn, system: string, namespace: string | undefined, summary: { operation?: string; collection?: string }, code: string | undefined): Record<string, string | number> {
    const last = conn.metricAttributes
    if (last !== undefined && last['db.system.name'] === system && last['db.namespace'] === namespace && last['db.operation.name'] === summary.operation &&
      last['db.collection.name'] === summary.collection && last['db.response.status_code'] === code) return last
    const attributes: Record<string, string | number> = { 'db.system.name': system }
    if (namespace !== undefined) attributes['db.namespace'] = namespace
    if (summary.operation !== undefined) attributes['db.operation.name'] = summary.operation
    if (summary.collection !== undefined) attributes['db.collection.name'] = summary.collection
    if (code !== undefined) attributes['db.response.status_code'] = code
    conn.metricAttributes = attributes
    return attributes
  }
}
