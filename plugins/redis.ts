/**
 * Redis client spans and the `db.client.operation.duration` histogram for every process on the
 * host, with no change to the applications. The `sockdata` object hands this plugin only the
 * records of connections the kernel classified as Redis from their first bytes (a RESP array of
 * bulk strings, `*<n>\r\n$`), so its cost follows Redis traffic alone.
 *
 * Per connection, the RESP2/RESP3 parser (runtime/protocols/redis.ts) pairs each command with its
 * reply, through pipelining, MULTI/EXEC (a queued command's result is its element of EXEC's
 * reply), pub/sub (messages and pushes answer no command) and MONITOR. Each command becomes a
 * CLIENT span of the process that sent it, named after the command as sent (`GET`, `CLIENT
 * SETNAME`), with `db.system.name=redis`, `db.operation.name`, `db.query.text` (the command, its
 * first key, and `?` for every other argument), `db.namespace` (the database index, where known),
 * and for an error reply `db.response.status_code` and `error.type` set to the error's prefix
 * (`ERR`, `WRONGTYPE`).
 *
 * Secrets: argument values are skipped by length, never decoded; only the command name, its
 * subcommand and its first key are read (and the key is not exported with `export_keys: false`).
 * AUTH, HELLO and MIGRATE have no key, so their passwords are never read. An error's text is
 * kept up to its first quote or colon, since what follows may echo arguments.
 *
 * Everything here is public plugin API: a user plugin can do the same.
 */
import { definePlugin, type PluginContext, type TopicEvent } from 'periscope/plugin'
import { clientSpansFromConfig, type ClientSpans, type ClientConnection, type ClientOperation } from 'periscope/protocols/client-spans'
import { ClientStreams } from 'periscope/protocols/client-streams'
import { RedisParser, type RedisCommand, type RedisConnection } from 'periscope/protocols/redis'
import { claimProtocol, PROTOCOL_REDIS } from 'periscope/protocols/sockdata'
import { followOpenSsl } from 'periscope/protocols/tls-follow'

const config = {
  /**
   * Payload bytes the kernel copies per call (at most 16384). Commands in a write, and replies in
   * a read, beyond it are lost (counted in periscope.redis.lost_commands); values beyond it are
   * skipped by length. Pipelining clients write up to 16 KiB at once (redis-cli --pipe, hiredis)
   * and read as much, so the default covers them.
   */
  capture_bytes: 16384,
  /** Trace Redis over TLS through uprobes on OpenSSL (libssl.so.3 and statically linked binaries). */
  tls: true,
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
  /** The first key of a command in `db.query.text` (`GET user:42`); off, every argument is `?`. */
  export_keys: true,
}
type Config = typeof config

type SockEvent = TopicEvent<'sockdata:redis'>

interface Conn {
  client: ClientConnection
  stream: RedisConnection<Conn>
  /** The last histogram attributes, reused while they do not change. */
  metricAttributes?: Record<string, string | number>
}

/** Placeholders for the arguments after the key, by count; past the last, the text ends in `...`. */
const placeholders = Array.from({ length: 33 }, (_, n) => ' ?'.repeat(n))
/** Database indexes as text: SELECT's range (0 to 15 by default) is small. */
const namespaces = Array.from({ length: 16 }, (_, n) => String(n))

export default definePlugin({
  name: 'redis',
  objects: ['sockdata', 'exec'],
  config,
  async setup(ctx) {
    const plugin = new RedisTracing(ctx)
    const { target_pids: pids, target_cgroup_ids: cgroups, excluded_ports: ports, capture_bytes: capture } = ctx.config
    // client spans only: the server's end of each connection stays in the kernel
    await claimProtocol(ctx, PROTOCOL_REDIS, { captureBytes: capture, targetPids: pids, targetCgroupIds: cgroups, excludedPorts: ports, clientEndOnly: true })
    ctx.on('sockdata:redis', (event) => plugin.onRecord(event), { onLoss: (lost) => plugin.onLoss(lost) })
    // closes come on a ring of their own: a connection's stream ends a grace after its close
    ctx.on('sockdata:connections', (event) => plugin.onConnectionEvent(event))
    ctx.every('200ms', () => plugin.closeDue())
    if (ctx.config.tls) await followOpenSsl(ctx, (message) => ctx.log.warn(message))
    ctx.every('10s', () => plugin.report())
    const targets = [...pids.length > 0 ? [`pids ${pids.join(', ')}`] : [], ...cgroups.length > 0 ? [`cgroups ${cgroups.join(', ')} and below`] : []]
    ctx.log.info(`tracing Redis clients${ctx.config.tls ? ' (TLS through OpenSSL uprobes too)' : ''} on ${targets.length === 0 ? 'the whole host' : targets.join(' and ')}`)
  },
})

class RedisTracing {
  readonly #ctx: PluginContext<Config>
  readonly #conns: ClientStreams<Conn>
  readonly #parser: RedisParser<Conn>
  readonly #spans: ClientSpans
  /** One operation object for every span: ClientSpans keeps only its attributes. */
  readonly #operation: ClientOperation = { name: '', startNs: 0, endNs: 0, attributes: {}, metricAttributes: {} }

  constructor(ctx: PluginContext<Config>) {
    this.#ctx = ctx
    this.#conns = new ClientStreams<Conn>(ctx.config.max_connections, (client, role, midStream) => {
      const conn = { client } as Conn
      conn.stream = this.#parser.connection(conn, role, { midStream })
      return conn
    }, { closeEvicted: true })
    this.#parser = new RedisParser<Conn>((command, conn, side) => {
      // a connection of unknown role (found at start-up) that turned out to be the server's end
      if (side === 'client') this.#onCommand(conn, command)
    }, { keys: ctx.config.export_keys })
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
    const attributes = { 'periscope.plugin': 'redis' }
    const emit = this.#ctx.emit
    this.#conns.report(emit, 'redis', this.#parser.errors)
    const stats = this.#parser.stats
    emit.metric({ name: 'periscope.redis.lost_commands', kind: 'gauge', value: stats.lostCommands, attributes })
    emit.metric({ name: 'periscope.redis.unmatched_replies', kind: 'gauge', value: stats.unmatchedReplies, attributes })
    emit.metric({ name: 'periscope.redis.queue_overflows', kind: 'gauge', value: stats.queueOverflows, attributes })
    emit.metric({ name: 'periscope.redis.resyncs', kind: 'gauge', value: stats.resyncs, attributes })
    this.#spans.report('redis')
  }

  #onCommand(conn: Conn, command: RedisCommand): void {
    const name = command.name
    const database = command.database
    const namespace = database === undefined ? undefined : namespaces[database] ?? String(database)
    const attributes: ClientOperation['attributes'] = {
      'db.system.name': 'redis',
      'db.operation.name': name,
      'db.query.text': queryText(command),
    }
    if (namespace !== undefined) attributes['db.namespace'] = namespace
    const failed = command.outcome === 'error'
    if (failed) attributes['db.response.status_code'] = command.errorPrefix!
    const op = this.#operation
    op.name = name
    op.startNs = command.startNs
    op.endNs = command.endNs
    op.context = command.context
    op.tid = command.tid
    op.attributes = attributes
    // the histogram's operation names are bounded: a name the server does not know is any text
    op.metricAttributes = this.#metricAttributes(conn, command.known ? name : '_OTHER', namespace, failed ? command.errorPrefix : undefined)
    op.error = failed
      ? { type: command.errorPrefix!, message: command.errorMessage! }
      : command.outcome === 'closed' ? { type: 'connection_closed', message: 'the connection closed before the reply' } : undefined
    this.#spans.emit(conn.client, op)
  }

  #metricAttributes(conn: Conn, operation: string, namespace: string | undefined, code: string | undefined): Record<string, string | number> {
    const last = conn.metricAttributes
    if (last !== undefined && last['db.operation.name'] === operation && last['db.namespace'] === namespace && last['db.response.status_code'] === code) return last
    const attributes: Record<string, string | number> = { 'db.system.name': 'redis', 'db.operation.name': operation }
    if (namespace !== undefined) attributes['db.namespace'] = namespace
    if (code !== undefined) attributes['db.response.status_code'] = code
    conn.metricAttributes = attributes
    return attributes
  }
}

/** `SET user:42 ?`: the command, its first key, and `?` for every other argument. */
function queryText(command: RedisCommand): string {
  const key = command.key
  const rest = key === undefined ? command.arguments : command.arguments - 1
  const tail = rest < placeholders.length ? placeholders[rest]! : `${placeholders[placeholders.length - 1]} ...`
  return key === undefined ? command.name + tail : `${command.name} ${key}${tail}`
}
