/**
 * PostgreSQL client spans and the `db.client.operation.duration` histogram for every process on
 * the host, plaintext and TLS (libpq over OpenSSL), with no change to the applications. The
 * `sockdata` object hands this plugin only the records of connections the kernel classified as
 * PostgreSQL from their first bytes (a startup message or an SSLRequest), so its cost follows
 * PostgreSQL traffic alone.
 *
 * Per connection, the wire-protocol parser (runtime/protocols/postgres.ts) turns the client's
 * messages and the server's answers into operations: one per simple Query and one per extended
 * Execute, which carries the statement text of its Parse (a named statement prepared once and
 * executed many times keeps its text). Each becomes a CLIENT span of the process that sent it:
 * `db.system.name=postgresql`, the database of the startup message in `db.namespace`, the
 * statement with its literals masked in `db.query.text`, `db.operation.name` and
 * `db.collection.name` from the statement, and the SQLSTATE of an ErrorResponse in
 * `db.response.status_code`. Passwords are never read: the parser skips password messages by
 * length, and Bind parameter values are not kept.
 *
 * Everything here is public plugin API: a user plugin can do the same.
 */
import { definePlugin, type PluginContext, type TopicEvent } from 'periscope/plugin'
import { clientSpansFromConfig, type ClientSpans, type ClientConnection, type ClientOperation } from 'periscope/protocols/client-spans'
import { ClientStreams } from 'periscope/protocols/client-streams'
import { PostgresParser, type PostgresConnection, type PostgresOperation } from 'periscope/protocols/postgres'
import { claimProtocol, PROTOCOL_POSTGRES } from 'periscope/protocols/sockdata'
import { maskSqlLiterals, summarizeSql } from 'periscope/protocols/sql'
import { followOpenSsl } from 'periscope/protocols/tls-follow'

const config = {
  /** Follow connections that switch to TLS (sslmode=require and up) through uprobes on OpenSSL. */
  tls: true,
  /** Payload bytes the kernel copies per call: statement text beyond it is cut (and marked so). */
  capture_bytes: 4096,
  /** Only these processes (empty: every process). */
  target_pids: [] as number[],
  /** Only processes in these cgroups or below them, by cgroup v2 id; with target_pids too, a process named by either. */
  target_cgroup_ids: [] as number[],
  /** Ports whose traffic is never traced, at either end. */
  excluded_ports: [] as number[],
  /** Connections tracked at once; the least recently used is forgotten past this. */
  max_connections: 16384,
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

type SockEvent = TopicEvent<'sockdata:postgres'>

interface Conn {
  client: ClientConnection
  stream: PostgresConnection<Conn>
  /** The last histogram attributes, reused while they do not change. */
  metricAttributes?: Record<string, string | number>
}

export default definePlugin({
  name: 'postgres',
  objects: ['sockdata', 'exec'],
  config,
  async setup(ctx) {
    const plugin = new PostgresTracing(ctx)
    const { target_pids: pids, target_cgroup_ids: cgroups, excluded_ports: ports, capture_bytes: capture } = ctx.config
    // client spans only: the server's end of each connection stays in the kernel
    await claimProtocol(ctx, PROTOCOL_POSTGRES, { captureBytes: capture, targetPids: pids, targetCgroupIds: cgroups, excludedPorts: ports, clientEndOnly: true })
    ctx.on('sockdata:postgres', (event) => plugin.onRecord(event), { onLoss: (lost) => plugin.onLoss(lost) })
    // closes come on a ring of their own: a connection's stream ends a grace after its close
    ctx.on('sockdata:connections', (event) => plugin.onConnectionEvent(event))
    ctx.every('200ms', () => plugin.closeDue())
    if (ctx.config.tls) await followOpenSsl(ctx, (message) => ctx.log.warn(message))
    ctx.every('10s', () => plugin.report())
    const targets = [...pids.length > 0 ? [`pids ${pids.join(', ')}`] : [], ...cgroups.length > 0 ? [`cgroups ${cgroups.join(', ')} and below`] : []]
    ctx.log.info(`tracing PostgreSQL clients${ctx.config.tls ? ' (TLS through OpenSSL uprobes too)' : ''} on ${targets.length === 0 ? 'the whole host' : targets.join(' and ')}`)
  },
})

class PostgresTracing {
  readonly #ctx: PluginContext<Config>
  readonly #conns: ClientStreams<Conn>
  readonly #parser: PostgresParser<Conn>
  readonly #spans: ClientSpans
  readonly #mask: boolean
  /**
   * Masked text and summary by statement text: a prepared statement (or a simple query an
   * application repeats) is lexed once, not at every execution. Bounded; the oldest entry goes.
   */
  readonly #statements = new Map<string, Statement>()
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
    this.#parser = new PostgresParser<Conn>((operation, conn) => this.#onOperation(conn, operation))
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
    const attributes = { 'periscope.plugin': 'postgres' }
    const emit = this.#ctx.emit
    this.#conns.report(emit, 'postgres', this.#parser.errors)
    emit.metric({ name: 'periscope.postgres.resyncs', kind: 'gauge', value: this.#parser.stats.resyncs, attributes })
    emit.metric({ name: 'periscope.postgres.tls_connections', kind: 'gauge', value: this.#parser.stats.tlsStarted, attributes })
    emit.metric({ name: 'periscope.postgres.server_ends_skipped', kind: 'gauge', value: this.#parser.stats.roleCorrected, attributes })
    this.#spans.report('postgres')
  }

  #onOperation(conn: Conn, operation: PostgresOperation): void {
    const database = conn.stream.database
    const statement = operation.text === undefined ? undefined : this.#statement(operation.text)
    const summary = summarize(operation, statement)
    const attributes: ClientOperation['attributes'] = { 'db.system.name': 'postgresql' }
    if (database !== undefined) attributes['db.namespace'] = database
    if (summary.operation !== undefined) attributes['db.operation.name'] = summary.operation
    if (summary.collection !== undefined) attributes['db.collection.name'] = summary.collection
    if (summary.batchSize !== undefined) attributes['db.operation.batch.size'] = summary.batchSize
    if (statement !== undefined) attributes['db.query.text'] = statement.query
    const code = operation.error?.code
    if (code !== undefined && code !== '') attributes['db.response.status_code'] = code
    const op = this.#operation
    op.name = summary.operation === undefined ? 'postgresql' : summary.collection === undefined ? summary.operation : `${summary.operation} ${summary.collection}`
    op.startNs = operation.startNs
    op.endNs = operation.endNs
    op.context = operation.context
    op.tid = operation.tid
    op.attributes = attributes
    op.metricAttributes = this.#metricAttributes(conn, database, summary, code)
    op.error = this.#error(operation)
    this.#spans.emit(conn.client, op)
  }

  #statement(text: string): Statement {
    let statement = this.#statements.get(text)
    if (statement !== undefined) return statement
    statement = { query: this.#mask ? maskSqlLiterals(text, 'postgresql') : text, summary: summarizeSql(text, 'postgresql') }
    // long texts (bulk inserts, generated SQL) rarely repeat and would make the cache large
    if (text.length > maxCachedTextLength) return statement
    if (this.#statements.size >= maxCachedStatements) this.#statements.delete(this.#statements.keys().next().value!)
    this.#statements.set(text, statement)
    return statement
  }

  #error(operation: PostgresOperation): ClientOperation['error'] {
    const error = operation.error
    if (error !== undefined) {
      const code = error.code === '' ? 'unknown' : error.code
      // the server's message may quote the statement's values (invalid input syntax for ...: "...")
      return { type: code, message: this.#mask ? `${error.severity || 'ERROR'} SQLSTATE ${code}` : `${code}: ${error.message}` }
    }
    if (operation.incomplete === 'closed') return { type: 'connection_closed', message: 'the connection closed before the answer was complete' }
    if (operation.incomplete === 'lost') return { type: 'data_lost', message: 'records of this operation were lost; its result is unknown' }
    return undefined
  }

  #metricAttributes(conn: Conn, database: string | undefined, summary: Summary, code: string | undefined): Record<string, string | number> {
    const last = conn.metricAttributes
    if (last !== undefined && last['db.namespace'] === database && last['db.operation.name'] === summary.operation &&
      last['db.collection.name'] === summary.collection && last['db.response.status_code'] === code) return last
    const attributes: Record<string, string | number> = { 'db.system.name': 'postgresql' }
    if (database !== undefined) attributes['db.namespace'] = database
    if (summary.operation !== undefined) attributes['db.operation.name'] = summary.operation
    if (summary.collection !== undefined) attributes['db.collection.name'] = summary.collection
    if (code !== undefined && code !== '') attributes['db.response.status_code'] = code
    conn.metricAttributes = attributes
    return attributes
  }
}

interface Summary {
  operation?: string
  collection?: string
  batchSize?: number
}

interface Statement {
  /** db.query.text: masked unless mask_literals is off. */
  query: string
  summary: Summary
}

const maxCachedStatements = 1024
const maxCachedTextLength = 2048

/**
 * The operation and table of a statement. A Query of several statements (`BEGIN; UPDATE ...;
 * COMMIT`) is one span, a batch as the conventions name it: `BATCH UPDATE` when every statement the
 * server completed had the same command, else `BATCH`, with the statement count. An Execute whose
 * Parse was not seen (Periscope started later) is named by its CommandComplete tag.
 */
function summarize(operation: PostgresOperation, statement: Statement | undefined): Summary {
  if (operation.kind === 'query' && operation.completed > 1) {
    const commands = operation.commands
    const same = commands.length === operation.completed && commands.every((command) => command === commands[0])
    return { operation: same ? `BATCH ${commands[0]}` : 'BATCH', batchSize: operation.completed }
  }
  if (statement !== undefined) return statement.summary
  const tag = operation.commands[0]
  return tag === undefined ? {} : { operation: tag }
}
