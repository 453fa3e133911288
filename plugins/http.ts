/**
 * HTTP/1.x traces and RED metrics for every process on the host, plaintext and HTTPS, with no
 * change to the services. The `sockdata` object hands this plugin only the records of connections
 * the kernel classified as HTTP/1 (its `http` ring), so its cost follows HTTP traffic alone.
 *
 * Per connection, the HTTP/1 parser (runtime/protocols/http1.ts) pairs each request with its
 * response. A process that received the request gets a SERVER span; one that sent it gets a
 * CLIENT span. Trace context: an incoming `traceparent` makes the server span join that trace; an
 * outgoing request joins the server span active on the same thread (the one whose request was
 * read and whose response is not written yet), unless it carries its own `traceparent`; and a
 * request whose sender is traced on this host too makes the server span that client span's child.
 * A server span also names the kernel's thread context of its request, so the database and
 * messaging calls other plugins see that thread make while serving it become its children.
 *
 * Everything here is public plugin API: a user plugin can do the same.
 */
import { definePlugin, type PluginContext, type SpanInput, type TopicEvent } from 'periscope/plugin'
import { Http1Parser, type Http1Connection, type Http1Exchange, type Http1Request } from 'periscope/protocols/http1'
import { httpSpanError, parseHost, splitTarget, statusFilter } from 'periscope/protocols/http-attributes'
import { redactQuery, defaultSensitiveQueryKeys } from 'periscope/protocols/redact'
import { RouteTable } from 'periscope/protocols/routes'
import { followGoTls } from 'periscope/protocols/go-tls-follow'
import { followOpenSsl } from 'periscope/protocols/tls-follow'
import { newSpanId, newTraceId, parseTraceparent, sampledByTraceId } from 'periscope/protocols/trace-context'
import { formatAddress, mayBeLocalPeer, PROTOCOL_HTTP, SOCK_CONNECT_FAILED, SOCK_CLOSE, SOCK_DATA, SOCK_FLAG_TLS, ROLE_CLIENT, ROLE_SERVER, claimProtocol, fillChunk, newSockChunk } from 'periscope/protocols/sockdata'
import { DeferredCloses } from 'periscope/protocols/deferred-closes'

const config = {
  /** Trace HTTPS through uprobes on OpenSSL (libssl.so.3 and statically linked binaries). */
  https: true,
  /** Trace HTTPS in Go programs through uprobes on crypto/tls. */
  go_tls: true,
  /** Payload bytes the kernel copies per call: enough for request and status lines and headers. */
  capture_bytes: 4096,
  /** Only these processes (empty: every process). */
  target_pids: [] as number[],
  /**
   * Only processes in these cgroups or below them, by cgroup v2 id; with target_pids too, a
   * process named by either. Filled from `plugins.http.target_cgroups` paths in periscope.yaml.
   */
  target_cgroup_ids: [] as number[],
  /** Ports whose traffic is never traced, at either end. */
  excluded_ports: [] as number[],
  /** Spans shorter than this are not exported (metrics still count them). */
  min_duration_ms: 0,
  /** Only spans whose status matches, e.g. ">=400" (metrics still count every request). */
  http_status: '',
  /** Only these methods (empty: all). */
  http_methods: [] as string[],
  /** Head sampling of traces by trace id, in percent; errors are always kept. */
  sampling_percent: 100,
  /** The http.server/client.request.duration histograms. */
  red_metrics: true,
  /** Distinct routes per service before more collapse into `/*` (each collapse counted). */
  max_routes: 200,
  /** Query keys whose values are replaced by REDACTED (matched as lower-case substrings). */
  sensitive_query_keys: [...defaultSensitiveQueryKeys] as string[],
  /** Remote ports for which a failed connect is an HTTP client span with an error. */
  connect_error_ports: [80, 443, 8080, 8443] as number[],
  /** Connections tracked at once; the least recently used is forgotten past this. */
  max_connections: 16384,
}
type Config = typeof config

type SockEvent = TopicEvent<'sockdata:http'>

/** seconds, as semconv asks for the duration histograms */
const durationBoundaries = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]
const capturedHeaders = ['host', 'user-agent', 'traceparent']

interface Conn {
  id: number
  stream: Http1Connection<Conn>
  pid: number
  comm: string
  tls: boolean
  family: number
  local: string
  localPort: number
  remote: string
  remotePort: number
  /** When the connection closed (boot ns): the end of an exchange it cut short. */
  closedNs?: number
  /** `local>remote` address and port: the other end's connection has it reversed. */
  tuple: string
  /** This tuple reversed: the other end's `tuple`. */
  peerTuple: string
  /** The resource of its spans, one object for all of them (copied out of the isolate once a batch). */
  process: { pid: number; command: string }
  /** The last Host header seen and what it parsed to: a keep-alive client sends the same one each time. */
  hostHeader?: string
  host?: { name: string; port?: number }
  /** The last duration metric's attributes, reused while they do not change. */
  metricAttributes?: Record<string, string | number>
  /** Span ids chosen when each request's head was seen, until its exchange is exported. */
  spans: Map<Http1Request, ActiveSpan>
  /** Client side: requests sent that no traced server has read yet (see #peerParent). */
  awaitingPeer: { request: Http1Request; ids: ActiveSpan }[]
  /** Server side: the last request read, which a local client's late record may still claim (see #claimServerRead). */
  lastRead?: Http1Request
  /** Server side: lastRead's span, ended with no parent, while it waits for that record (see #hold). */
  held?: HeldSpan
  /** The other end may be a process on this host (loopback): a server span with no parent waits for its client (see #hold). */
  mayHaveLocalPeer: boolean
}

/** A server span with no parent kept from export while its client's record may still come; `sent` once it went. */
interface HeldSpan {
  span: SpanInput
  isError: boolean
  sinceMs: number
  sent: boolean
}

interface SpanIds {
  traceId: string
  spanId: string
  parentSpanId?: string
}

interface ActiveSpan extends SpanIds {
  tid: number
}

/** A client connection's requests that wait for the server side to read them, at most. */
const maxAwaitingPeer = 8
/**
 * How long a server span with no parent, whose client may be on this host, waits for that client's
 * record, and how many wait at most. A client held up between its write and the write's return
 * (preempted, or its vCPU taken) is seen after the server answered: under load, by milliseconds.
 */
const peerWaitMs = 500
const maxHeld = 8192

export default definePlugin({
  name: 'http',
  objects: ['sockdata', 'exec'],
  config,
  async setup(ctx) {
    const plugin = new HttpTracing(ctx)
    await plugin.claimKernelFilters()
    ctx.on('sockdata:http', (event) => plugin.onRecord(event), { onLoss: (lost) => plugin.onLoss(lost) })
    ctx.on('sockdata:connections', (event) => plugin.onConnectionEvent(event))
    if (ctx.config.https) await followOpenSsl(ctx, (message) => ctx.log.warn(message))
    if (ctx.config.go_tls) await followGoTls(ctx, (message) => ctx.log.warn(message))
    ctx.every('200ms', () => plugin.tick(Date.now()))
    ctx.every('10s', () => plugin.report())
    const { target_pids: pids, target_cgroup_ids: cgroups } = ctx.config
    const targets = [...pids.length > 0 ? [`pids ${pids.join(', ')}`] : [], ...cgroups.length > 0 ? [`cgroups ${cgroups.join(', ')} and below`] : []]
    const tls = [...ctx.config.https ? ['OpenSSL'] : [], ...ctx.config.go_tls ? ['Go crypto/tls'] : []]
    ctx.log.info(`tracing HTTP/1.x${tls.length > 0 ? ` and HTTPS (${tls.join(', ')} uprobes)` : ''} on ${targets.length === 0 ? 'the whole host' : targets.join(' and ')}`)
  },
})

class HttpTracing {
  readonly #ctx: PluginContext<Config>
  readonly #conns = new Map<number, Conn>()
  /** Server spans whose request was read and whose response is not written yet, by thread. */
  readonly #activeByThread = new Map<number, ActiveSpan>()
  /** Open connections by `tuple`, to find the other end of a connection on this host. */
  readonly #byTuple = new Map<string, Conn>()
  readonly #routes: RouteTable
  readonly #methods: Set<string>
  readonly #statusFilter: ((status: number) => boolean) | undefined
  readonly #parser: Http1Parser<Conn>
  readonly #chunk = newSockChunk()
  /** Closes read from `sockdata:connections`, applied after their grace. */
  readonly #closes = new DeferredCloses((connId, endNs) => this.#close(connId, endNs))
  /** Server spans with no parent waiting for a local client's record, oldest first (see #hold). */
  #held: HeldSpan[] = []
  #lostRecords = 0
  #withoutClient = 0

  constructor(ctx: PluginContext<Config>) {
    this.#ctx = ctx
    this.#routes = new RouteTable(ctx.config.max_routes)
    this.#methods = new Set(ctx.config.http_methods)
    this.#statusFilter = statusFilter(ctx.config.http_status)
    this.#parser = new Http1Parser<Conn>((exchange, conn, side) => this.#onExchange(conn, exchange, side), {
      headers: capturedHeaders,
      onRequest: (request, conn, side) => this.#onRequest(conn, request, side),
    })
  }

  /** Tells the kernel to send HTTP records here, how much payload to copy, and for whom. */
  async claimKernelFilters(): Promise<void> {
    const { target_pids: targetPids, target_cgroup_ids: targetCgroupIds, excluded_ports: excludedPorts, capture_bytes: captureBytes } = this.#ctx.config
    await claimProtocol(this.#ctx, PROTOCOL_HTTP, { captureBytes, targetPids, targetCgroupIds, excludedPorts })
  }

  onLoss(lost: number): void {
    this.#lostRecords += lost
  }

  /** Data records (opens and closes come on `sockdata:connections`). */
  onRecord(event: SockEvent): void {
    if (event.kind !== SOCK_DATA) return
    const conn = this.#conn(event)
    // one chunk object for every record: the parser keeps nothing of it
    conn.stream.push(fillChunk(this.#chunk, event))
  }

  onConnectionEvent(event: TopicEvent<'sockdata:connections'>): void {
    if (event.kind === SOCK_CLOSE) return this.#closes.closed(event.conn_id, event.end_ns, this.#conns.has(event.conn_id))
    if (event.kind !== SOCK_CONNECT_FAILED || !this.#ctx.config.connect_error_ports.includes(event.remote_port)) return
    const remote = formatAddress(event.family, event.remote_addr)
    this.#export({
      name: 'connect',
      kind: 'client',
      startTimeNs: this.#ctx.time.wallNs(event.start_ns),
      endTimeNs: this.#ctx.time.wallNs(event.end_ns),
      traceId: newTraceId(),
      spanId: newSpanId(),
      attributes: {
        'server.address': remote,
        'server.port': event.remote_port,
        'network.peer.address': remote,
        'network.peer.port': event.remote_port,
        'error.type': 'connection_failed',
        'process.pid': event.pid,
      },
      status: { code: 'error', message: `connect to ${remote}:${event.remote_port} failed` },
      process: { pid: event.pid, command: event.comm },
    }, true)
  }

  /** Self-reported counters, besides the runtime's own per-plugin metrics. */
  report(): void {
    const attributes = { 'periscope.plugin': 'http' }
    this.#ctx.emit.metric({ name: 'periscope.http.connections', kind: 'gauge', value: this.#conns.size, attributes })
    for (const [reason, count] of Object.entries(this.#parser.errors)) {
      this.#ctx.emit.metric({ name: 'periscope.http.parse_errors', kind: 'gauge', value: count, attributes: { ...attributes, reason } })
    }
    this.#ctx.emit.metric({ name: 'periscope.http.records_lost', kind: 'gauge', value: this.#lostRecords, attributes })
    this.#ctx.emit.metric({ name: 'periscope.http.routes_collapsed', kind: 'gauge', value: this.#routes.collapsed, attributes })
    this.#ctx.emit.metric({ name: 'periscope.http.server_spans_without_client', kind: 'gauge', value: this.#withoutClient, attributes })
  }

  #conn(event: SockEvent): Conn {
    let conn = this.#conns.get(event.conn_id)
    if (conn !== undefined) {
      // most recently used last, so the first entry is the one to forget when full
      this.#conns.delete(event.conn_id)
      this.#conns.set(event.conn_id, conn)
      return conn
    }
    if (this.#conns.size >= this.#ctx.config.max_connections) {
      const oldest = this.#conns.keys().next().value!
      this.#close(oldest, event.start_ns)
    }
    const id = event.conn_id
    const local = formatAddress(event.family, event.local_addr)
    const remote = formatAddress(event.family, event.remote_addr)
    const created = {
      id,
      pid: event.pid,
      comm: event.comm,
      tls: (event.flags & SOCK_FLAG_TLS) !== 0,
      family: event.family,
      local,
      localPort: event.local_port,
      remote,
      remotePort: event.remote_port,
      tuple: `${local}:${event.local_port}>${remote}:${event.remote_port}`,
      peerTuple: `${remote}:${event.remote_port}>${local}:${event.local_port}`,
      mayHaveLocalPeer: mayBeLocalPeer(local, remote),
      process: { pid: event.pid, command: event.comm },
      spans: new Map(),
      awaitingPeer: [],
      // the parser's connection takes this object as its context: set just below
    } as Omit<Conn, 'stream'> as Conn
    created.stream = this.#parser.connection(created, event.role === ROLE_CLIENT ? 'client' : event.role === ROLE_SERVER ? 'server' : 'unknown')
    this.#conns.set(id, created)
    this.#byTuple.set(created.tuple, created)
    this.#closes.opened(id)
    return created
  }

  /** Closes the connections whose grace is over; sends the held server spans whose wait is over. */
  tick(now: number): void {
    this.#closes.due(now)
    let kept = 0
    for (const held of this.#held) {
      // claimed (and sent) meanwhile
      if (held.sent) continue
      if (now - held.sinceMs < peerWaitMs) {
        this.#held[kept++] = held
        continue
      }
      held.sent = true
      this.#withoutClient++
      this.#export(held.span, held.isError)
    }
    this.#held.length = kept
  }

  #close(connId: number, endNs: number): void {
    const conn = this.#conns.get(connId)
    if (conn === undefined) return
    this.#conns.delete(connId)
    if (this.#byTuple.get(conn.tuple) === conn) this.#byTuple.delete(conn.tuple)
    conn.closedNs = endNs
    conn.stream.close()
    for (const span of conn.spans.values()) this.#deactivate(span)
  }

  /**
   * A request's head was seen: its span ids are chosen now. A server span is then active on its
   * thread, so requests the process makes while answering it become its children; a client
   * request waits for a traced server on this host to read it, which becomes its child.
   */
  #onRequest(conn: Conn, request: Http1Request, side: 'client' | 'server'): void {
    if (side === 'client') {
      const ids = { ...this.#clientIds(request), tid: request.tid }
      conn.spans.set(request, ids)
      if (!this.#claimServerRead(conn, request, ids) && conn.awaitingPeer.push({ request, ids }) > maxAwaitingPeer) conn.awaitingPeer.shift()
      return
    }
    // the peer's queue is consumed even when a traceparent wins, or its entry would go stale
    const peer = this.#peerParent(conn, request)
    const parent: { traceId: string; parentSpanId: string } | undefined = parseTraceparent(request.headers.traceparent) ?? peer
    const span: ActiveSpan = { traceId: parent?.traceId ?? newTraceId(), spanId: newSpanId(), parentSpanId: parent?.parentSpanId, tid: request.tid }
    conn.spans.set(request, span)
    conn.lastRead = request
    conn.held = undefined
    this.#activeByThread.set(span.tid, span)
  }

  /**
   * The other order of #peerParent. Both records are written at their syscall's exit, so a local
   * server's read can exit, and be seen, before the client's write that it read: the server span
   * was then given a trace of its own, and may even have ended (the server woken by the write can
   * run first and answer before the client returns from it; such spans wait, see #hold). The
   * client's request, seen now, makes that span its child while it is not yet exported, on the
   * same terms as #peerParent. Whether or not the span needed a parent (a traceparent gives one), a
   * request the server already read is not left waiting, where the next request's read would find
   * two and link neither.
   */
  #claimServerRead(conn: Conn, request: Http1Request, ids: SpanIds): boolean {
    const server = this.#byTuple.get(conn.peerTuple)
    const read = server?.lastRead
    if (server === undefined || read === undefined) return false
    server.lastRead = undefined
    if (read.method !== request.method || read.target !== request.target || request.startNs > read.endNs) return false
    const held = server.held
    server.held = undefined
    if (held !== undefined) {
      if (held.sent) return true
      held.sent = true
      linkServerToClient(held.span, ids)
      this.#export(held.span, held.isError)
      return true
    }
    // still open; a parent it has (a traceparent, or its client's span) stays
    const span = server.spans.get(read)
    if (span !== undefined && span.parentSpanId === undefined) linkServerToClient(span, ids)
    return true
  }

  /**
   * Keeps a server span with no parent from export while its client, if on this host, may still be
   * seen (#claimServerRead sends it then; tick() after peerWaitMs). Whether it waits is decided
   * from the address: the client's connection may not be known yet.
   */
  #hold(conn: Conn, request: Http1Request, span: SpanInput, isError: boolean): boolean {
    if (conn.lastRead !== request || span.parentSpanId !== undefined || this.#held.length >= maxHeld || !(conn.mayHaveLocalPeer || this.#byTuple.has(conn.peerTuple))) return false
    const held: HeldSpan = { span, isError, sinceMs: Date.now(), sent: false }
    conn.held = held
    this.#held.push(held)
    return true
  }

  /**
   * The client span of the same request, when the process that sent it is traced on this host
   * too (the connection's other end): the server span becomes its child. Trusted only when that
   * end has exactly one request waiting, with the same method and target, sent before this one
   * was read; anything else (pipelining, records seen out of order) links nothing, and clears the
   * queue so a stale entry cannot pair with a later request.
   */
  #peerParent(conn: Conn, request: Http1Request): { traceId: string; parentSpanId: string } | undefined {
    const peer = this.#byTuple.get(conn.peerTuple)
    if (peer === undefined || peer.awaitingPeer.length === 0) return undefined
    const waiting = peer.awaitingPeer
    const only = waiting.length === 1 ? waiting[0]! : undefined
    waiting.length = 0
    if (only === undefined || only.request.method !== request.method || only.request.target !== request.target) return undefined
    if (only.request.startNs > request.endNs) return undefined
    return { traceId: only.ids.traceId, parentSpanId: only.ids.spanId }
  }

  #deactivate(span: ActiveSpan): void {
    if (this.#activeByThread.get(span.tid) === span) this.#activeByThread.delete(span.tid)
  }

  #onExchange(conn: Conn, exchange: Http1Exchange, side: 'client' | 'server'): void {
    const { request, response } = exchange
    const wall = this.#ctx.time
    const scheme = conn.tls ? 'https' : 'http'
    const { path, query } = splitTarget(request.target)
    // by command, not pid: short-lived clients would each start a table of their own
    const route = this.#routes.route(conn.comm, path)
    const status = response?.status
    const startNs = wall.wallNs(request.startNs)
    const endNs = wall.wallNs(response?.endNs ?? (exchange.incomplete === 'closed' ? conn.closedNs : undefined) ?? request.endNs)
    const attributes: SpanInput['attributes'] & object = {
      'http.request.method': request.method,
      'url.path': path,
      'url.scheme': scheme,
      'network.protocol.version': request.version,
      'network.peer.address': conn.remote,
      'network.peer.port': conn.remotePort,
      'process.pid': conn.pid,
    }
    // the thread that read (server) or wrote (client) the request's head: joins CPU profile samples
    if (request.tid !== 0) attributes['thread.id'] = request.tid
    if (query !== undefined) attributes['url.query'] = redactQuery(query, this.#ctx.config.sensitive_query_keys)
    if (status !== undefined) attributes['http.response.status_code'] = status
    const userAgent = request.headers['user-agent']
    if (userAgent !== undefined) attributes['user_agent.original'] = userAgent
    const host = this.#host(conn, request.headers.host)
    const chosen = conn.spans.get(request)
    conn.spans.delete(request)
    if (side === 'server') {
      attributes['http.route'] = route
      attributes['server.address'] = host?.name ?? conn.local
      attributes['server.port'] = host?.port ?? conn.localPort
      attributes['client.address'] = conn.remote
      attributes['client.port'] = conn.remotePort
      if (chosen !== undefined) this.#deactivate(chosen)
    } else {
      attributes['server.address'] = host?.name ?? conn.remote
      attributes['server.port'] = host?.port ?? conn.remotePort
    }
    // every request's head is seen before its exchange ends, so ids were chosen; the fallback
    // only covers a parser that never reported the head
    const ids: SpanIds = chosen === undefined ? this.#clientIds(request) : { traceId: chosen.traceId, spanId: chosen.spanId, parentSpanId: chosen.parentSpanId }
    const error = httpSpanError(side, status, exchange.incomplete)
    if (error !== undefined) attributes['error.type'] = error.type
    if (this.#ctx.config.red_metrics) this.#recordDuration(conn, side, attributes, route, (endNs - startNs) / 1e9)
    const name = side === 'server' ? `${request.method} ${route}` : request.method
    const span: SpanInput = {
      name,
      kind: side,
      startTimeNs: startNs,
      endTimeNs: endNs,
      attributes,
      status: error === undefined ? statusUnset : { code: 'error', message: error.message },
      ...ids,
      // other plugins' client spans made while this request was served become its children
      ...side === 'server' && request.context !== 0 ? { context: request.context } : {},
      process: conn.process,
    }
    if (side === 'server' && this.#hold(conn, request, span, error !== undefined)) return
    this.#export(span, error !== undefined)
  }

  /** A client request's trace: its own traceparent, else the server span active on its thread. */
  #clientIds(request: Http1Request): SpanIds {
    const own = parseTraceparent(request.headers.traceparent)
    if (own !== undefined) return { traceId: own.traceId, spanId: newSpanId(), parentSpanId: own.parentSpanId }
    const active = this.#activeByThread.get(request.tid)
    if (active !== undefined) return { traceId: active.traceId, spanId: newSpanId(), parentSpanId: active.spanId }
    return { traceId: newTraceId(), spanId: newSpanId() }
  }

  /** The parsed Host header, parsed again only when it differs from the connection's last one. */
  #host(conn: Conn, header: string | undefined): { name: string; port?: number } | undefined {
    if (header !== conn.hostHeader) {
      conn.hostHeader = header
      conn.host = parseHost(header)
    }
    return conn.host
  }

  #recordDuration(conn: Conn, side: 'client' | 'server', span: Record<string, unknown>, route: string, seconds: number): void {
    const attributes = sameMetricAttributes(conn.metricAttributes, side, span, route) ? conn.metricAttributes! : this.#metricAttributes(side, span, route)
    conn.metricAttributes = attributes
    this.#ctx.emit.metric({
      name: side === 'server' ? 'http.server.request.duration' : 'http.client.request.duration',
      kind: 'histogram',
      unit: 's',
      description: side === 'server' ? 'Duration of HTTP server requests.' : 'Duration of HTTP client requests.',
      boundaries: durationBoundaries,
      value: seconds,
      attributes,
    })
  }

  #metricAttributes(side: 'client' | 'server', span: Record<string, unknown>, route: string): Record<string, string | number> {
    const attributes: Record<string, string | number> = {
      'http.request.method': span['http.request.method'] as string,
      'url.scheme': span['url.scheme'] as string,
      'network.protocol.version': span['network.protocol.version'] as string,
    }
    if (span['http.response.status_code'] !== undefined) attributes['http.response.status_code'] = span['http.response.status_code'] as number
    if (span['error.type'] !== undefined) attributes['error.type'] = span['error.type'] as string
    if (side === 'server') attributes['http.route'] = route
    else {
      attributes['server.address'] = span['server.address'] as string
      attributes['server.port'] = span['server.port'] as number
    }
    return attributes
  }

  /** Applies the receiver block's filters and sampling; errors pass sampling always. */
  #export(span: SpanInput, isError: boolean): void {
    const { min_duration_ms: minMs, sampling_percent: percent } = this.#ctx.config
    if (minMs > 0 && span.endTimeNs - span.startTimeNs < minMs * 1e6) return
    const method = span.attributes?.['http.request.method']
    if (this.#methods.size > 0 && typeof method === 'string' && !this.#methods.has(method)) return
    const status = span.attributes?.['http.response.status_code']
    if (this.#statusFilter !== undefined && !(typeof status === 'number' && this.#statusFilter(status))) return
    if (!isError && span.traceId !== undefined && !sampledByTraceId(span.traceId, percent)) return
    this.#ctx.emit.span(span)
  }
}

const statusUnset = { code: 'unset' } as const

/**
 * Makes a server span the child of its client's span. A client with no parent takes the server's
 * trace, which the server's own children already carry; a client inside a trace keeps it, and
 * the server joins it (children it made before this keep the trace it had).
 */
function linkServerToClient(server: Pick<SpanInput, 'traceId' | 'parentSpanId'>, client: SpanIds): void {
  if (client.parentSpanId === undefined && server.traceId !== undefined) client.traceId = server.traceId
  else server.traceId = client.traceId
  server.parentSpanId = client.spanId
}

/** Whether a duration metric's attributes for this span would equal `previous` (same side, same values). */
function sameMetricAttributes(previous: Record<string, string | number> | undefined, side: 'client' | 'server', span: Record<string, unknown>, route: string): boolean {
  return previous !== undefined &&
    previous['http.request.method'] === span['http.request.method'] &&
    previous['url.scheme'] === span['url.scheme'] &&
    previous['network.protocol.version'] === span['network.protocol.version'] &&
    previous['http.response.status_code'] === span['http.response.status_code'] &&
    previous['error.type'] === span['error.type'] &&
    (side === 'server'
      ? previous['http.route'] === route && !('server.address' in previous)
      : previous['server.address'] === span['server.address'] && previous['server.port'] === span['server.port'] && !('http.route' in previous))
}
