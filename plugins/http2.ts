/**
 * HTTP/2 and gRPC traces and metrics for every process on the host, plaintext (h2c) and TLS
 * (OpenSSL, and Go's crypto/tls), with no change to the services. The `sockdata` object hands this
 * plugin only the records of connections the kernel classified as HTTP/2 (its `http2` ring).
 *
 * Per connection, the HTTP/2 parser (runtime/protocols/http2.ts) follows the frames of both
 * directions, decodes the header blocks with one HPACK decoder per direction, and hands over one
 * exchange per stream when the stream ends. A gRPC stream becomes an RPC span (`rpc.*`), any other
 * stream an HTTP span like the http plugin's, with `network.protocol.version` 2. The process that
 * answered gets a SERVER span, the one that called a CLIENT span.
 *
 * Trace context: an incoming `traceparent` makes the server span join that trace. When the client
 * of a stream is traced on this host too, the server span becomes its CLIENT span's child, matched
 * exactly: the server's connection is the client's reversed, and both ends number the stream the
 * same. A server span that may have such a client waits up to a second for it (its records may
 * come after the server's), then goes out without a parent.
 *
 * Everything here is public plugin API: a user plugin can do the same.
 */
import { definePlugin, type PluginContext, type SpanInput, type TopicEvent } from 'periscope/plugin'
import { followGoTls } from 'periscope/protocols/go-tls-follow'
import { grpcStatusName, http2ErrorName, Http2Parser, type Http2Connection, type Http2Exchange, type Http2Request } from 'periscope/protocols/http2'
import { httpSpanError, parseHost, splitTarget, statusFilter } from 'periscope/protocols/http-attributes'
import { redactQuery, defaultSensitiveQueryKeys } from 'periscope/protocols/redact'
import { RouteTable } from 'periscope/protocols/routes'
import { formatAddress, mayBeLocalPeer, PROTOCOL_HTTP2, ROLE_CLIENT, ROLE_SERVER, SOCK_CLOSE, SOCK_DATA, SOCK_FLAG_PREEXISTING, SOCK_FLAG_TLS, claimProtocol, fillChunk, newSockChunk } from 'periscope/protocols/sockdata'
import { followOpenSsl } from 'periscope/protocols/tls-follow'
import { newSpanId, newTraceId, parseTraceparent, sampledByTraceId } from 'periscope/protocols/trace-context'
import { DeferredCloses } from 'periscope/protocols/deferred-closes'

const config = {
  /** RPC spans and metrics for gRPC streams. */
  grpc: true,
  /** HTTP spans and metrics for HTTP/2 streams that are not gRPC. */
  http: true,
  /** HTTP/2 over TLS through uprobes on OpenSSL (libssl.so.3 and statically linked binaries). */
  https: true,
  /** HTTP/2 over TLS in Go programs, through uprobes on crypto/tls. */
  go_tls: true,
  /**
   * Payload bytes the kernel copies per call (at most 16384). Frames are followed by their
   * lengths, so a frame that starts past the captured bytes loses that direction's place until a
   * record starts on a frame again: busy connections read and write many frames per call.
   */
  capture_bytes: 16384,
  /** Only these processes (empty: every process). */
  target_pids: [] as number[],
  /** Only processes in these cgroups or below them, by cgroup v2 id; with target_pids, a process named by either. */
  target_cgroup_ids: [] as number[],
  /** Ports whose traffic is never traced, at either end. */
  excluded_ports: [] as number[],
  /** Spans shorter than this are not exported (metrics still count them). */
  min_duration_ms: 0,
  /** HTTP spans only: those whose status matches, e.g. ">=400". */
  http_status: '',
  /** HTTP spans only: these methods (empty: all). */
  http_methods: [] as string[],
  /** Head sampling of traces by trace id, in percent; errors are always kept. */
  sampling_percent: 100,
  /** The rpc.server/client.duration and http.server/client.request.duration histograms. */
  metrics: true,
  /** Distinct gRPC methods in metrics; past this, new ones are recorded as `_OTHER`. */
  max_methods: 200,
  /** Distinct routes per service before more collapse into `/*`. */
  max_routes: 200,
  /** Query keys whose values are replaced by REDACTED (matched as lower-case substrings). */
  sensitive_query_keys: [...defaultSensitiveQueryKeys] as string[],
  /** Connections tracked at once; the least recently used is forgotten past this. */
  max_connections: 16384,
}
type Config = typeof config

type SockEvent = TopicEvent<'sockdata:http2'>

/** v1.37 of the RPC conventions (what OBI emits): milliseconds. */
const rpcBoundaries = [0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000]
/** the HTTP conventions: seconds */
const httpBoundaries = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]
/** The duration histograms, by kind of stream and side. */
const histograms = {
  rpc: {
    server: { name: 'rpc.server.duration', unit: 'ms', description: 'Measures the duration of inbound RPC.', boundaries: rpcBoundaries },
    client: { name: 'rpc.client.duration', unit: 'ms', description: 'Measures the duration of outbound RPC.', boundaries: rpcBoundaries },
  },
  http: {
    server: { name: 'http.server.request.duration', unit: 's', description: 'Duration of HTTP server requests.', boundaries: httpBoundaries },
    client: { name: 'http.client.request.duration', unit: 's', description: 'Duration of HTTP client requests.', boundaries: httpBoundaries },
  },
} as const
const capturedHeaders = ['content-type', 'traceparent', 'user-agent', 'grpc-timeout']
/** gRPC codes the conventions count as a server's errors: UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS. */
const serverErrorCodes = new Set([2, 4, 12, 13, 14, 15])
const RST_CANCEL = 8
const GRPC_DEADLINE_EXCEEDED = 4
/** A client stream's span ids kept for the server end, per connection at most. */
const maxIdsPerConnection = 256
/** How long a server span waits for its client's ids, and how many wait at once. */
const peerWaitMs = 1000
const maxWaiting = 8192
/** Distinct metric attribute sets; past this, points go to one overflow series. */
const maxSeries = 2000
const overflowAttributes = { 'otel.metric.overflow': true }
const statusUnset = { code: 'unset' } as const

interface Conn {
  id: number
  stream: Http2Connection
  pid: number
  comm: string
  tls: boolean
  local: string
  localPort: number
  remote: string
  remotePort: number
  /** `local>remote` address and port: the other end's connection has it reversed. */
  tuple: string
  peerTuple: string
  /** The other end may be a process on this host (loopback): its server spans wait for a client span. */
  mayHaveLocalPeer: boolean
  process: { pid: number; command: string }
  /** When the connection closed (boot ns): the end of a stream it cut short. */
  closedNs?: number
  /** Client end: the span ids of its streams, by stream id, until both ends' spans used them. */
  clientIds: Map<number, ClientIds>
}

interface ClientIds {
  ids: SpanIds
  /** the server end's span took them as its parent */
  taken: boolean
  /** the client span went out with them */
  exported: boolean
}

interface SpanIds {
  traceId: string
  spanId: string
  parentSpanId?: string
}

interface Waiting {
  conn: Conn
  exchange: Http2Exchange
  sinceMs: number
}

export default definePlugin({
  name: 'http2',
  objects: ['sockdata', 'exec'],
  config,
  async setup(ctx) {
    const plugin = new Http2Tracing(ctx)
    await claimProtocol(ctx, PROTOCOL_HTTP2, {
      captureBytes: ctx.config.capture_bytes,
      targetPids: ctx.config.target_pids,
      targetCgroupIds: ctx.config.target_cgroup_ids,
      excludedPorts: ctx.config.excluded_ports,
    })
    ctx.on('sockdata:http2', (event) => plugin.onRecord(event), { onLoss: (lost) => plugin.onLoss(lost) })
    ctx.on('sockdata:connections', (event) => { if (event.kind === SOCK_CLOSE) plugin.closeLater(event.conn_id, event.end_ns) })
    if (ctx.config.https) await followOpenSsl(ctx, (message) => ctx.log.warn(message))
    if (ctx.config.go_tls) await followGoTls(ctx, (message) => ctx.log.warn(message))
    ctx.every('200ms', () => plugin.releaseWaiting())
    ctx.every('10s', () => plugin.report())
    const kinds = [...ctx.config.grpc ? ['gRPC'] : [], ...ctx.config.http ? ['HTTP/2'] : []].join(' and ')
    const tls = [...ctx.config.https ? ['OpenSSL'] : [], ...ctx.config.go_tls ? ['Go crypto/tls'] : []]
    ctx.log.info(`tracing ${kinds}, plaintext${tls.length > 0 ? ` and TLS (${tls.join(', ')} uprobes)` : ''}`)
  },
})

class Http2Tracing {
  readonly #ctx: PluginContext<Config>
  readonly #conns = new Map<number, Conn>()
  readonly #byTuple = new Map<string, Conn>()
  readonly #parser: Http2Parser<Conn>
  readonly #routes: RouteTable
  readonly #httpMethods: Set<string>
  readonly #statusFilter: ((status: number) => boolean) | undefined
  readonly #chunk = newSockChunk()
  /** Server exchanges whose client end is not seen yet, oldest first. */
  #waiting: Waiting[] = []
  /** Closes read from `sockdata:connections`, applied after their grace. */
  readonly #closes = new DeferredCloses((connId, endNs) => this.#close(connId, endNs))
  /** Closed client connections whose ids a server span may still take, oldest first. */
  readonly #closedClients: { conn: Conn; sinceMs: number }[] = []
  /** Metric attribute sets by their values; gRPC methods seen, bounded by max_methods. */
  readonly #series = new Map<string, Record<string, string | number | boolean>>()
  readonly #methods = new Set<string>()
  #lostRecords = 0
  #overflowed = 0
  #unmatched = 0

  constructor(ctx: PluginContext<Config>) {
    this.#ctx = ctx
    this.#routes = new RouteTable(ctx.config.max_routes)
    this.#httpMethods = new Set(ctx.config.http_methods)
    this.#statusFilter = statusFilter(ctx.config.http_status)
    this.#parser = new Http2Parser<Conn>((exchange, conn, side) => this.#onExchange(conn, exchange, side), {
      headers: capturedHeaders,
      onRequest: (request, conn, side) => { if (side === 'client') this.#chooseClientIds(conn, request) },
    })
  }

  onLoss(lost: number): void {
    this.#lostRecords += lost
  }

  /** Data records (opens and closes come on `sockdata:connections`). */
  onRecord(event: SockEvent): void {
    if (event.kind !== SOCK_DATA) return
    // one chunk object for every record: the parser keeps nothing of it
    this.#conn(event).stream.push(fillChunk(this.#chunk, event))
  }

  /** A close read from `sockdata:connections`: applied after its grace (runtime/protocols/deferred-closes.ts). */
  closeLater(connId: number, endNs: number): void {
    this.#closes.closed(connId, endNs, this.#conns.has(connId))
  }

  #close(connId: number, endNs: number): void {
    const conn = this.#conns.get(connId)
    if (conn === undefined) return
    this.#conns.delete(connId)
    conn.closedNs = endNs
    conn.stream.close(endNs)
    if (this.#byTuple.get(conn.tuple) !== conn) return
    // a client's tuple stays findable while server spans may still wait for its ids
    if (conn.clientIds.size === 0) this.#byTuple.delete(conn.tuple)
    else this.#closedClients.push({ conn, sinceMs: Date.now() })
  }

  /**
   * Closes the connections whose grace is over; sends the server spans whose client ids arrived or
   * that waited long enough; forgets closed clients nobody waits for.
   */
  releaseWaiting(): void {
    const now = Date.now()
    this.#closes.due(now)
    const still: Waiting[] = []
    for (const waiting of this.#waiting) {
      const parent = this.#takePeerIds(waiting.conn, waiting.exchange.request.streamId)
      if (parent !== undefined || now - waiting.sinceMs >= peerWaitMs) {
        if (parent === undefined) this.#unmatched++
        this.#exportExchange(waiting.conn, waiting.exchange, 'server', parent)
      } else still.push(waiting)
    }
    this.#waiting = still
    while (this.#closedClients.length > 0 && now - this.#closedClients[0]!.sinceMs >= peerWaitMs) {
      const { conn } = this.#closedClients.shift()!
      if (this.#byTuple.get(conn.tuple) === conn) this.#byTuple.delete(conn.tuple)
    }
  }

  report(): void {
    const attributes = { 'periscope.plugin': 'http2' }
    const gauge = (name: string, value: number, extra?: Record<string, string>): void =>
      this.#ctx.emit.metric({ name: `periscope.http2.${name}`, kind: 'gauge', value, attributes: extra === undefined ? attributes : { ...attributes, ...extra } })
    gauge('connections', this.#conns.size)
    gauge('records_lost', this.#lostRecords)
    gauge('headers_unresolved', this.#parser.unresolvedHeaders)
    gauge('server_spans_without_client', this.#unmatched)
    gauge('metric_series', this.#series.size)
    gauge('metric_overflow', this.#overflowed)
    for (const [reason, count] of Object.entries(this.#parser.errors)) gauge('parse_errors', count, { reason })
  }

  #conn(event: SockEvent): Conn {
    let conn = this.#conns.get(event.conn_id)
    if (conn !== undefined) {
      // most recently used last, so the first entry is the one to forget when full
      this.#conns.delete(event.conn_id)
      this.#conns.set(event.conn_id, conn)
      return conn
    }
    if (this.#conns.size >= this.#ctx.config.max_connections) this.#close(this.#conns.keys().next().value!, event.start_ns)
    const local = formatAddress(event.family, event.local_addr)
    const remote = formatAddress(event.family, event.remote_addr)
    const created = {
      id: event.conn_id,
      pid: event.pid,
      comm: event.comm,
      tls: (event.flags & SOCK_FLAG_TLS) !== 0,
      local,
      localPort: event.local_port,
      remote,
      remotePort: event.remote_port,
      tuple: `${local}:${event.local_port}>${remote}:${event.remote_port}`,
      peerTuple: `${remote}:${event.remote_port}>${local}:${event.local_port}`,
      mayHaveLocalPeer: mayBeLocalPeer(local, remote),
      process: { pid: event.pid, command: event.comm },
      clientIds: new Map(),
      // the parser's connection takes this object as its context: set just below
    } as Omit<Conn, 'stream'> as Conn
    const role = event.role === ROLE_CLIENT ? 'client' : event.role === ROLE_SERVER ? 'server' : 'unknown'
    created.stream = this.#parser.connection(created, role, { midStream: (event.flags & SOCK_FLAG_PREEXISTING) !== 0 })
    this.#conns.set(created.id, created)
    this.#byTuple.set(created.tuple, created)
    this.#closes.opened(created.id)
    return created
  }

  /** A client stream's span ids, chosen when its headers go out so the server end can find them. */
  #chooseClientIds(conn: Conn, request: Http2Request): void {
    const own = parseTraceparent(request.headers.traceparent)
    const ids: SpanIds = own === undefined ? { traceId: newTraceId(), spanId: newSpanId() } : { traceId: own.traceId, spanId: newSpanId(), parentSpanId: own.parentSpanId }
    if (conn.clientIds.size >= maxIdsPerConnection) conn.clientIds.delete(conn.clientIds.keys().next().value!)
    conn.clientIds.set(request.streamId, { ids, taken: false, exported: false })
  }

  /** The client span ids of the same stream at the other end of this server connection, taken once. */
  #takePeerIds(conn: Conn, streamId: number): SpanIds | undefined {
    const peer = this.#byTuple.get(conn.peerTuple)
    const kept = peer?.clientIds.get(streamId)
    if (kept === undefined || kept.taken) return undefined
    kept.taken = true
    if (kept.exported) peer!.clientIds.delete(streamId)
    return kept.ids
  }

  #onExchange(conn: Conn, exchange: Http2Exchange, side: 'client' | 'server'): void {
    if (side === 'client') return this.#exportExchange(conn, exchange, side, undefined)
    const parent = this.#takePeerIds(conn, exchange.request.streamId)
    // a traceparent wins; a client that may be on this host gets time for its records to arrive
    const waits = parent === undefined && exchange.request.headers.traceparent === undefined &&
      (conn.mayHaveLocalPeer || this.#byTuple.has(conn.peerTuple)) && this.#waiting.length < maxWaiting
    if (waits) this.#waiting.push({ conn, exchange, sinceMs: Date.now() })
    else this.#exportExchange(conn, exchange, side, parent)
  }

  #exportExchange(conn: Conn, exchange: Http2Exchange, side: 'client' | 'server', peer: SpanIds | undefined): void {
    const ids = side === 'client' ? this.#clientSpanIds(conn, exchange.request) : serverSpanIds(exchange.request, peer)
    if (isGrpc(exchange)) {
      if (this.#ctx.config.grpc) this.#grpcSpan(conn, exchange, side, ids)
    } else if (this.#ctx.config.http) {
      this.#httpSpan(conn, exchange, side, ids)
    }
  }

  #clientSpanIds(conn: Conn, request: Http2Request): SpanIds {
    const kept = conn.clientIds.get(request.streamId)
    if (kept === undefined) return { traceId: newTraceId(), spanId: newSpanId() }
    kept.exported = true
    // kept for the server end (on this host) until it takes them; a remote server never will
    if (kept.taken || (!conn.mayHaveLocalPeer && !this.#byTuple.has(conn.peerTuple))) conn.clientIds.delete(request.streamId)
    return kept.ids
  }

  #grpcSpan(conn: Conn, exchange: Http2Exchange, side: 'client' | 'server', ids: SpanIds): void {
    const { request, response } = exchange
    const { service, method } = splitGrpcPath(request.path)
    const startNs = this.#ctx.time.wallNs(request.startNs)
    const endNs = this.#ctx.time.wallNs(this.#endNs(conn, exchange))
    const code = grpcStatus(exchange, (endNs - startNs) / 1e6)
    const attributes: SpanInput['attributes'] & object = { 'rpc.system': 'grpc', 'rpc.method': method }
    if (service !== undefined) attributes['rpc.service'] = service
    if (code !== undefined) attributes['rpc.grpc.status_code'] = code
    this.#addEndpoints(conn, side, attributes, request)
    attributes['network.protocol.name'] = 'http'
    attributes['network.protocol.version'] = '2'
    const error = grpcError(side, code, exchange)
    if (error !== undefined) attributes['error.type'] = error.type
    if (this.#ctx.config.metrics) this.#recordRpc(side, service, method, code, attributes, (endNs - startNs) / 1e6)
    this.#export({
      name: service === undefined ? method : `${service}/${method}`,
      kind: side,
      startTimeNs: startNs,
      endTimeNs: endNs,
      attributes,
      status: error === undefined ? statusUnset : { code: 'error', message: response?.grpcMessage ?? error.message },
      ...ids,
      process: conn.process,
    }, error !== undefined)
  }

  #httpSpan(conn: Conn, exchange: Http2Exchange, side: 'client' | 'server', ids: SpanIds): void {
    const { request, response } = exchange
    // an unresolved method or path is reported as unknown, never guessed
    const method = request.method ?? '_OTHER'
    if (this.#httpMethods.size > 0 && !this.#httpMethods.has(method)) return
    const { path, query } = request.path === undefined ? { path: '*', query: undefined } : splitTarget(request.path)
    const route = request.path === undefined ? '*' : this.#routes.route(conn.comm, path)
    const status = response?.status
    if (this.#statusFilter !== undefined && !(status !== undefined && this.#statusFilter(status))) return
    const startNs = this.#ctx.time.wallNs(request.startNs)
    const endNs = this.#ctx.time.wallNs(this.#endNs(conn, exchange))
    const attributes: SpanInput['attributes'] & object = {
      'http.request.method': method,
      'url.path': path,
      'url.scheme': request.scheme ?? (conn.tls ? 'https' : 'http'),
      'network.protocol.version': '2',
    }
    if (query !== undefined) attributes['url.query'] = redactQuery(query, this.#ctx.config.sensitive_query_keys)
    if (status !== undefined) attributes['http.response.status_code'] = status
    const userAgent = request.headers['user-agent']
    if (userAgent !== undefined) attributes['user_agent.original'] = userAgent
    this.#addEndpoints(conn, side, attributes, request)
    if (side === 'server') attributes['http.route'] = route
    const incomplete = exchange.incomplete === 'goaway' ? 'closed' : exchange.incomplete
    const error = status === undefined && exchange.resetCode !== undefined
      ? { type: 'stream_reset', message: `the stream was reset (RST_STREAM ${http2ErrorName(exchange.resetCode) ?? exchange.resetCode})` }
      : httpSpanError(side, status, incomplete)
    if (error !== undefined) attributes['error.type'] = error.type
    if (this.#ctx.config.metrics) this.#recordHttp(side, attributes, route, (endNs - startNs) / 1e9)
    this.#export({
      name: side === 'server' ? `${method} ${route}` : method,
      kind: side,
      startTimeNs: startNs,
      endTimeNs: endNs,
      attributes,
      status: error === undefined ? statusUnset : { code: 'error', message: error.message },
      ...ids,
      process: conn.process,
    }, error !== undefined)
  }

  /** The stream's end: its reset or the connection's close, else its response's end, else its request's. */
  #endNs(conn: Conn, exchange: Http2Exchange): number {
    return exchange.cutNs ?? exchange.response?.endNs ?? (exchange.incomplete === 'closed' ? conn.closedNs : undefined) ?? exchange.request.endNs
  }

  /** server.*, client.* and network.peer.*, as the HTTP and RPC conventions share them. */
  #addEndpoints(conn: Conn, side: 'client' | 'server', attributes: SpanInput['attributes'] & object, request: { authority?: string; tid: number }): void {
    const host = parseHost(request.authority)
    attributes['network.peer.address'] = conn.remote
    attributes['network.peer.port'] = conn.remotePort
    attributes['process.pid'] = conn.pid
    // the thread that carried the request's HEADERS: joins CPU profile samples of that thread
    if (request.tid !== 0) attributes['thread.id'] = request.tid
    if (side === 'server') {
      attributes['server.address'] = host?.name ?? conn.local
      attributes['server.port'] = host?.port ?? conn.localPort
      attributes['client.address'] = conn.remote
      attributes['client.port'] = conn.remotePort
    } else {
      attributes['server.address'] = host?.name ?? conn.remote
      attributes['server.port'] = host?.port ?? conn.remotePort
    }
  }

  #recordRpc(side: 'client' | 'server', service: string | undefined, method: string, code: number | undefined, span: Record<string, unknown>, ms: number): void {
    let known = service !== undefined
    const full = `${service}/${method}`
    if (known && !this.#methods.has(full)) {
      if (this.#methods.size < this.#ctx.config.max_methods) this.#methods.add(full)
      else known = false
    }
    const key = `${side}\0${known ? full : '_OTHER'}\0${code}\0${side === 'client' ? `${span['server.address']}:${span['server.port']}` : ''}\0${span['error.type']}`
    const attributes = this.#series.get(key) ?? this.#newSeries(key, () => {
      const made: Record<string, string | number> = { 'rpc.system': 'grpc', 'rpc.method': known ? method : '_OTHER' }
      if (known) made['rpc.service'] = service!
      if (code !== undefined) made['rpc.grpc.status_code'] = code
      if (span['error.type'] !== undefined) made['error.type'] = span['error.type'] as string
      if (side === 'client') {
        made['server.address'] = span['server.address'] as string
        made['server.port'] = span['server.port'] as number
      }
      return made
    })
    this.#ctx.emit.metric({ ...histograms.rpc[side], kind: 'histogram', value: ms, attributes })
  }

  #recordHttp(side: 'client' | 'server', span: Record<string, unknown>, route: string, seconds: number): void {
    const status = span['http.response.status_code']
    const where = side === 'server' ? route : `${span['server.address']}:${span['server.port']}`
    const key = `${side}\0${span['http.request.method']}\0${span['url.scheme']}\0${status}\0${span['error.type']}\0${where}`
    const attributes = this.#series.get(key) ?? this.#newSeries(key, () => {
      const made: Record<string, string | number> = {
        'http.request.method': span['http.request.method'] as string,
        'url.scheme': span['url.scheme'] as string,
        'network.protocol.version': '2',
      }
      if (status !== undefined) made['http.response.status_code'] = status as number
      if (span['error.type'] !== undefined) made['error.type'] = span['error.type'] as string
      if (side === 'server') made['http.route'] = route
      else {
        made['server.address'] = span['server.address'] as string
        made['server.port'] = span['server.port'] as number
      }
      return made
    })
    this.#ctx.emit.metric({ ...histograms.http[side], kind: 'histogram', value: seconds, attributes })
  }

  /** A new metric series, or the overflow series past maxSeries (counted). */
  #newSeries(key: string, make: () => Record<string, string | number>): Record<string, string | number | boolean> {
    if (this.#series.size >= maxSeries) {
      this.#overflowed++
      return overflowAttributes
    }
    const attributes = make()
    this.#series.set(key, attributes)
    return attributes
  }

  /** Applies the duration filter and sampling; errors pass sampling always. */
  #export(span: SpanInput, isError: boolean): void {
    const { min_duration_ms: minMs, sampling_percent: percent } = this.#ctx.config
    if (minMs > 0 && span.endTimeNs - span.startTimeNs < minMs * 1e6) return
    if (!isError && span.traceId !== undefined && !sampledByTraceId(span.traceId, percent)) return
    this.#ctx.emit.span(span)
  }
}

/** A server span's ids: its own traceparent's trace, else its client's on this host, else a new trace. */
function serverSpanIds(request: Http2Request, peer: SpanIds | undefined): SpanIds {
  const incoming = parseTraceparent(request.headers.traceparent)
  if (incoming !== undefined) return { traceId: incoming.traceId, spanId: newSpanId(), parentSpanId: incoming.parentSpanId }
  if (peer !== undefined) return { traceId: peer.traceId, spanId: newSpanId(), parentSpanId: peer.spanId }
  return { traceId: newTraceId(), spanId: newSpanId() }
}

/** `/package.Service/Method`: how gRPC names a call, and REST paths seldom look. */
const grpcPathShape = /^\/[A-Za-z_]\w*(\.[A-Za-z_]\w*)+\/[A-Z]\w*$/

/**
 * gRPC's content type, or a grpc-status in the response. On a connection met in its middle both
 * may be unresolved (HPACK indexes them the first time, before Periscope started); a POST whose
 * content type is unknown there and whose path has gRPC's shape is taken for gRPC then, with its
 * status code left out unless the trailers resolved.
 */
function isGrpc(exchange: Http2Exchange): boolean {
  const { request, response } = exchange
  const type = request.headers['content-type'] ?? response?.headers['content-type']
  if (type !== undefined) return type.startsWith('application/grpc')
  if (response?.grpcStatus !== undefined) return true
  return request.unresolved && request.method === 'POST' && request.path !== undefined && grpcPathShape.test(request.path)
}

/** `/helloworld.Greeter/SayHello` → service and method; an unresolved or odd path is `_OTHER`. */
function splitGrpcPath(path: string | undefined): { service?: string; method: string } {
  if (path === undefined) return { method: '_OTHER' }
  const slash = path.lastIndexOf('/')
  if (slash <= 1 || slash === path.length - 1 || path[0] !== '/') return { method: '_OTHER' }
  return { service: path.slice(1, slash), method: path.slice(slash + 1) }
}

/**
 * The stream's gRPC status: its trailers' grpc-status; for a stream reset without one, the code
 * gRPC's HTTP/2 mapping gives the RST_STREAM error (CANCEL is CANCELLED), except that a CANCEL at
 * the request's own grpc-timeout is the client's deadline expiring.
 */
function grpcStatus(exchange: Http2Exchange, durationMs: number): number | undefined {
  const trailers = exchange.response?.grpcStatus
  if (trailers !== undefined) return trailers
  const reset = exchange.resetCode
  if (reset === undefined) return undefined
  if (reset === RST_CANCEL) {
    const timeout = grpcTimeoutMs(exchange.request.headers['grpc-timeout'])
    return timeout !== undefined && durationMs >= timeout * 0.9 ? GRPC_DEADLINE_EXCEEDED : 1
  }
  // REFUSED_STREAM → UNAVAILABLE, ENHANCE_YOUR_CALM → RESOURCE_EXHAUSTED, INADEQUATE_SECURITY → PERMISSION_DENIED, the rest INTERNAL
  return reset === 7 ? 14 : reset === 11 ? 8 : reset === 12 ? 7 : 13
}

/** `grpc-timeout` (`100m`, `5S`, `1H`, …) in milliseconds. */
function grpcTimeoutMs(header: string | undefined): number | undefined {
  const match = header === undefined ? null : /^(\d{1,8})([HMSmun])$/.exec(header)
  if (match === null) return undefined
  const unitMs = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 }[match[2] as 'H' | 'M' | 'S' | 'm' | 'u' | 'n']
  return Number(match[1]) * unitMs
}

function grpcError(side: 'client' | 'server', code: number | undefined, exchange: Http2Exchange): { type: string; message: string } | undefined {
  if (code === undefined) {
    if (exchange.incomplete === undefined) return undefined
    const type = exchange.incomplete === 'lost' ? 'data_lost' : exchange.incomplete === 'goaway' ? 'goaway' : 'connection_closed'
    return { type, message: `the stream ended without a gRPC status (${type})` }
  }
  if (code === 0 || (side === 'server' && !serverErrorCodes.has(code))) return undefined
  return { type: String(code), message: `gRPC status ${grpcStatusName(code) ?? code}` }
}
