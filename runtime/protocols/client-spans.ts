/**
 * What every database and messaging plugin does with an operation it parsed: one CLIENT span with
 * the connection's network and process attributes, and one point of the operation-duration
 * histogram with bounded attributes. The plugin supplies the protocol's own attributes; this keeps
 * the common half in one place, so the plugins agree on names, units, buckets, sampling and the
 * parent of a call made while its thread served an HTTP request.
 */
import type { PluginContext, SpanInput } from 'periscope/plugin'
import { formatAddress } from './sockdata.ts'
import { newSpanId, newTraceId, sampledByTraceId } from './trace-context.ts'

/** The client end of one connection, made once from its first record. */
export interface ClientConnection {
  connId: number
  pid: number
  comm: string
  /** The other end: the server. */
  serverAddress: string
  serverPort: number
  /** The resource of its spans, one object for all of them. */
  process: { pid: number; command: string }
  /** The last histogram series this connection recorded into, reused while the plugin's attributes object is the same. */
  lastSeries?: { source: object; errorType: string | undefined; attributes: Record<string, string | number | boolean> }
}

export function clientConnection(event: { conn_id: number; pid: number; comm: string; family: number; remote_addr: Uint8Array; remote_port: number }): ClientConnection {
  return {
    connId: event.conn_id,
    pid: event.pid,
    comm: event.comm,
    serverAddress: formatAddress(event.family, event.remote_addr),
    serverPort: event.remote_port,
    process: { pid: event.pid, command: event.comm },
  }
}

export type AttributeMap = Record<string, string | number | boolean>

/** One operation a plugin parsed: a request and its response. */
export interface ClientOperation {
  /** The span name, as the semantic conventions form it. */
  name: string
  /** 'client' unless the conventions say otherwise (a Kafka send is a producer span). */
  kind?: 'client' | 'producer' | 'consumer'
  /** Boot clock ns: the entry of the call that sent the request's first byte. */
  startNs: number
  /** Boot clock ns: the exit of the call that received the response's last byte. */
  endNs: number
  /** The request record's `context`: the HTTP request its thread was serving, 0 for none. */
  context?: number
  /**
   * The thread that sent the request (0 or undefined: not known), exported as `thread.id` so a
   * backend can join the span with CPU profile samples of the same thread and time.
   */
  tid?: number
  /** The protocol's span attributes (db.*, messaging.*). */
  attributes: AttributeMap
  /**
   * The histogram's protocol attributes: bounded values only, never query text or keys. Reuse one
   * object while the values stay the same and never change it after handing it over: a
   * connection's series is remembered by this object's identity.
   */
  metricAttributes: Record<string, string | number>
  /** Sets error.type and the span's error status. */
  error?: { type: string; message: string }
}

export type OperationHistogram = 'db.client.operation.duration' | 'messaging.client.operation.duration'

export interface ClientSpansOptions {
  /** The duration histogram to record into; undefined records none. */
  histogram: OperationHistogram | undefined
  /** Spans shorter than this are not exported (the histogram still counts them). */
  minDurationMs?: number
  /** Head sampling of traces in percent; errors and children of served requests always pass here. */
  samplingPercent?: number
  /** Distinct histogram attribute sets; past this, new ones are recorded as one overflow series. */
  maxSeries?: number
}

/** The config keys every database and messaging plugin has (the receiver block fills them). */
export interface ClientSpansConfig {
  /** The operation-duration histogram. */
  metrics: boolean
  min_duration_ms: number
  sampling_percent: number
}

/** ClientSpans set from a plugin's `metrics`, `min_duration_ms` and `sampling_percent`. */
export function clientSpansFromConfig(ctx: PluginContext<ClientSpansConfig>, histogram: OperationHistogram): ClientSpans {
  return new ClientSpans(ctx, {
    histogram: ctx.config.metrics ? histogram : undefined,
    minDurationMs: ctx.config.min_duration_ms,
    samplingPercent: ctx.config.sampling_percent,
  })
}

/** Semantic-convention buckets of both operation-duration histograms, in seconds. */
const durationBoundaries = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10]
const descriptions: Record<OperationHistogram, string> = {
  'db.client.operation.duration': 'Duration of database client operations.',
  'messaging.client.operation.duration': 'Duration of messaging operation initiated by a producer or consumer client.',
}
/** The attribute set of the overflow series, as the OpenTelemetry SDKs name it. */
const overflowAttributes = { 'otel.metric.overflow': true }
const statusUnset = { code: 'unset' } as const

export class ClientSpans {
  /** Only its clock and emitters are used. */
  readonly #ctx: Pick<PluginContext<unknown>, 'time' | 'emit'>
  readonly #histogram: OperationHistogram | undefined
  readonly #minDurationNs: number
  readonly #samplingPercent: number
  readonly #maxSeries: number
  /** Histogram attribute objects by their values, reused for every point of a series. */
  readonly #series = new Map<string, Record<string, string | number | boolean>>()
  /** Points recorded into the overflow series. */
  #overflowed = 0

  constructor(ctx: Pick<PluginContext<unknown>, 'time' | 'emit'>, options: ClientSpansOptions) {
    this.#ctx = ctx
    this.#histogram = options.histogram
    this.#minDurationNs = (options.minDurationMs ?? 0) * 1e6
    this.#samplingPercent = options.samplingPercent ?? 100
    this.#maxSeries = options.maxSeries ?? 1000
  }

  emit(conn: ClientConnection, op: ClientOperation): void {
    const time = this.#ctx.time
    const startNs = time.wallNs(op.startNs)
    const endNs = time.wallNs(op.endNs)
    if (this.#histogram !== undefined) this.#record(conn, op, (endNs - startNs) / 1e9)
    if (endNs - startNs < this.#minDurationNs) return
    const attributes: SpanInput['attributes'] & object = op.attributes
    attributes['server.address'] = conn.serverAddress
    attributes['server.port'] = conn.serverPort
    attributes['network.peer.address'] = conn.serverAddress
    attributes['network.peer.port'] = conn.serverPort
    attributes['process.pid'] = conn.pid
    if (op.tid !== undefined && op.tid !== 0) attributes['thread.id'] = op.tid
    if (op.error !== undefined) attributes['error.type'] = op.error.type
    const span: SpanInput = {
      name: op.name,
      kind: op.kind ?? 'client',
      startTimeNs: startNs,
      endTimeNs: endNs,
      attributes,
      status: op.error === undefined ? statusUnset : { code: 'error', message: op.error.message },
      process: conn.process,
    }
    const context = op.context ?? 0
    if (context !== 0) {
      // the runtime puts it in the trace of the server span that names this context
      span.parentContext = context
    } else if (this.#samplingPercent < 100) {
      span.traceId = newTraceId()
      span.spanId = newSpanId()
      if (op.error === undefined && !sampledByTraceId(span.traceId, this.#samplingPercent)) return
    }
    this.#ctx.emit.span(span)
  }

  /** Self-reported counters of this plugin, under `periscope.<plugin>.*`. */
  report(plugin: string): void {
    const attributes = { 'periscope.plugin': plugin }
    this.#ctx.emit.metric({ name: `periscope.${plugin}.metric_series`, kind: 'gauge', value: this.#series.size, attributes })
    this.#ctx.emit.metric({ name: `periscope.${plugin}.metric_overflow`, kind: 'gauge', value: this.#overflowed, attributes })
  }

  #record(conn: ClientConnection, op: ClientOperation, seconds: number): void {
    const errorType = op.error?.type
    const last = conn.lastSeries
    // plugins reuse one attributes object per operation kind: the series is known without a key
    const attributes = last !== undefined && last.source === op.metricAttributes && last.errorType === errorType ? last.attributes : this.#seriesOf(conn, op)
    if (last === undefined) conn.lastSeries = { source: op.metricAttributes, errorType, attributes }
    else {
      last.source = op.metricAttributes
      last.errorType = errorType
      last.attributes = attributes
    }
    this.#ctx.emit.metric({
      name: this.#histogram!,
      kind: 'histogram',
      unit: 's',
      description: descriptions[this.#histogram!],
      boundaries: durationBoundaries,
      value: seconds,
      attributes,
    })
  }

  /** The histogram attributes of this operation's series, made once per distinct set. */
  #seriesOf(conn: ClientConnection, op: ClientOperation): Record<string, string | number | boolean> {
    let key = `${conn.serverAddress}\0${conn.serverPort}\0${op.error?.type ?? ''}`
    for (const name in op.metricAttributes) key += `\0${name}=${op.metricAttributes[name]}`
    let attributes = this.#series.get(key)
    if (attributes === undefined) {
      if (this.#series.size >= this.#maxSeries) {
        this.#overflowed++
        attributes = overflowAttributes
      } else {
        attributes = { ...op.metricAttributes, 'server.address': conn.serverAddress, 'server.port': conn.serverPort }
        if (op.error !== undefined) attributes['error.type'] = op.error.type
        this.#series.set(key, attributes)
      }
    }
    return attributes
  }
}
