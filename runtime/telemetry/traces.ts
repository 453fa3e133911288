/**
 * Spans from plugins, built directly as the SDK's finished `ReadableSpan`s for its OTLP exporters.
 *
 * Plugins hand over spans that already finished, with their own timestamps and possibly a trace id
 * and parent taken from a `traceparent`. Replaying each one through an SDK Tracer (a context, a
 * sampler call, a live span with processor hooks, then `end`) cost more than encoding it, so each
 * span is built once, finished, and this module applies what the Tracer would have applied:
 * - head sampling on the trace id with the SDK's own `TraceIdRatioBasedSampler` (every span of a
 *   trace gets the same answer), except that error spans can always be kept;
 * - the SDK's span limits, from the same OTEL_* variables, and its attribute cleanup
 *   (`copyAttributes`);
 * - a parent from a `traceparent` as a remote parent span context, whose trace the span joins.
 *
 * Resources (one per traced process) and instrumentation scopes (one per plugin) are shared
 * objects: the OTLP serializers group spans by their identity.
 */
import { randomFillSync } from 'node:crypto'
import { createRequire } from 'node:module'
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags } from '@opentelemetry/api'
import type { Attributes, HrTime, Link, SpanContext, SpanStatus } from '@opentelemetry/api'
import { getNumberFromEnv, hrTimeDuration, isAttributeValue } from '@opentelemetry/core'
import type { InstrumentationScope } from '@opentelemetry/core'
import type { ReadableSpan, Sampler, TimedEvent } from '@opentelemetry/sdk-trace-base'
import type { Resource } from '@opentelemetry/resources'
import type { SpanInput } from './signals.ts'

const TRACE_ID = /^[0-9a-f]{32}$/
const SPAN_ID = /^[0-9a-f]{16}$/
const ZERO_TRACE_ID = '0'.repeat(32)
const ZERO_SPAN_ID = '0'.repeat(16)

const KINDS = new Map<unknown, SpanKind>([
  ['internal', SpanKind.INTERNAL],
  ['server', SpanKind.SERVER],
  ['client', SpanKind.CLIENT],
  ['producer', SpanKind.PRODUCER],
  ['consumer', SpanKind.CONSUMER],
])

// finished spans are never written to, so spans without links, events or a status message share these
const NO_LINKS: Link[] = []
const NO_EVENTS: TimedEvent[] = []
const STATUS_UNSET: SpanStatus = { code: SpanStatusCode.UNSET }
const STATUS_OK: SpanStatus = { code: SpanStatusCode.OK }
const STATUS_ERROR: SpanStatus = { code: SpanStatusCode.ERROR }

export function nsToHrTime(ns: number): HrTime {
  const seconds = Math.floor(ns / 1e9)
  const nanos = Math.min(999_999_999, Math.max(0, Math.round(ns - seconds * 1e9)))
  return [seconds, nanos]
}

/** The limits the SDK's BasicTracerProvider applies, with its defaults and OTEL_* variables. */
interface SpanLimits {
  attributeCount: number
  attributeValueLength: number
  eventCount: number
  attributesPerEvent: number
}

function spanLimitsFromEnv(): SpanLimits {
  return {
    attributeCount: getNumberFromEnv('OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT') ?? getNumberFromEnv('OTEL_ATTRIBUTE_COUNT_LIMIT') ?? 128,
    attributeValueLength:
      getNumberFromEnv('OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT') ?? getNumberFromEnv('OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT') ?? Infinity,
    eventCount: getNumberFromEnv('OTEL_SPAN_EVENT_COUNT_LIMIT') ?? 128,
    attributesPerEvent: getNumberFromEnv('OTEL_SPAN_ATTRIBUTE_PER_EVENT_COUNT_LIMIT') ?? 128,
  }
}

/**
 * Copies plugin attributes into `into` the way the SDK's span takes them: empty keys and values
 * that are not attribute values are skipped, arrays are copied, strings are cut to
 * `valueLengthLimit` (a limit of 0 or less means none, as in the SDK), and keys beyond `countLimit`
 * are dropped. Span attributes skip null values; event attributes keep them, as the SDK's
 * `addEvent` does. Returns how many keys the count limit dropped.
 */
export function copyAttributes(input: unknown, into: Attributes, countLimit: number, valueLengthLimit: number, keepNulls: boolean): number {
  if (typeof input !== 'object' || input === null) return 0
  const source = input as Record<string, unknown>
  let count = 0
  let dropped = 0
  for (const key in source) {
    if (!Object.hasOwn(source, key) || key === '') continue
    const value = source[key]
    if (value == null ? !keepNulls : !isAttributeValue(value)) continue
    if (count >= countLimit) {
      dropped++
      continue
    }
    into[key] = limitLength(value as Attributes[string], valueLengthLimit)
    count++
  }
  return dropped
}

function limitLength(value: Attributes[string], limit: number): Attributes[string] {
  if (typeof value === 'string') return cut(value, limit)
  if (Array.isArray(value)) return value.map((item: unknown) => (typeof item === 'string' ? cut(item, limit) : item)) as Attributes[string]
  return value
}

function cut(text: string, limit: number): string {
  return limit > 0 && text.length > limit ? text.substring(0, limit) : text
}

/** Random ids in lowercase hex, cut from a pool of random bytes refilled in bulk. */
class RandomIds {
  private readonly pool = Buffer.allocUnsafe(8192)
  private offset = this.pool.length

  next(bytes: 8 | 16): string {
    for (;;) {
      if (this.offset + bytes > this.pool.length) {
        randomFillSync(this.pool)
        this.offset = 0
      }
      const start = this.offset
      this.offset += bytes
      // an all-zero id is invalid in W3C trace context
      for (let i = start; i < start + bytes; i++) {
        if (this.pool[i] !== 0) return this.pool.toString('hex', start, start + bytes)
      }
    }
  }
}

/**
 * A plugin's finished span, in the shape the SDK's exporters read. It waits in the export queue,
 * up to thousands at a time through a Collector outage, so it keeps times and ids as plain values
 * and builds the SDK's HrTime pairs and span contexts only when the exporter reads them (once,
 * at encoding).
 */
export class PluginSpan implements ReadableSpan {
  readonly name: string
  readonly kind: SpanKind
  readonly status: SpanStatus
  readonly attributes: Attributes = {}
  readonly droppedAttributesCount: number
  readonly events: TimedEvent[]
  readonly droppedEventsCount: number = 0
  readonly links = NO_LINKS
  readonly droppedLinksCount = 0
  readonly ended = true
  readonly resource: Resource
  readonly instrumentationScope: InstrumentationScope
  /** Nanoseconds since the epoch. */
  readonly startNs: number
  readonly endNs: number
  /** Lowercase hex, checked. */
  readonly traceIdHex: string
  readonly spanIdHex: string
  /** The caller's span, from a traceparent: a remote parent in the same trace. */
  readonly parentSpanIdHex: string | undefined

  /** `input` has passed `problemWith`. */
  constructor(
    input: SpanInput,
    traceId: string,
    spanId: string,
    parentSpanId: string | undefined,
    resource: Resource,
    scope: InstrumentationScope,
    limits: SpanLimits,
  ) {
    this.name = input.name
    this.kind = KINDS.get(input.kind ?? 'internal') as SpanKind
    this.traceIdHex = traceId
    this.spanIdHex = spanId
    this.parentSpanIdHex = parentSpanId
    this.startNs = input.startTimeNs
    this.endNs = input.endTimeNs
    this.status = statusOf(input.status)
    this.droppedAttributesCount = copyAttributes(input.attributes, this.attributes, limits.attributeCount, limits.attributeValueLength, false)
    this.events = NO_EVENTS
    if (input.events !== undefined && input.events.length > 0) {
      this.events = []
      for (const event of input.events) {
        if (typeof event?.name !== 'string' || !Number.isFinite(event.timeNs)) continue
        // as the SDK's addEvent: past the limit, the oldest events make way for newer ones
        if (limits.eventCount === 0) {
          this.droppedEventsCount++
          continue
        }
        if (this.events.length >= limits.eventCount) {
          this.events.shift()
          this.droppedEventsCount++
        }
        const attributes: Attributes = {}
        const droppedAttributesCount = copyAttributes(event.attributes, attributes, limits.attributesPerEvent, limits.attributeValueLength, true)
        this.events.push({ name: event.name, attributes, time: nsToHrTime(event.timeNs), droppedAttributesCount })
      }
    }
    this.resource = resource
    this.instrumentationScope = scope
  }

  get startTime(): HrTime {
    return nsToHrTime(this.startNs)
  }

  get endTime(): HrTime {
    return nsToHrTime(this.endNs)
  }

  get duration(): HrTime {
    return hrTimeDuration(this.startTime, this.endTime)
  }

  get parentSpanContext(): SpanContext | undefined {
    if (this.parentSpanIdHex === undefined) return undefined
    return { traceId: this.traceIdHex, spanId: this.parentSpanIdHex, traceFlags: TraceFlags.SAMPLED, isRemote: true }
  }

  spanContext(): SpanContext {
    return { traceId: this.traceIdHex, spanId: this.spanIdHex, traceFlags: TraceFlags.SAMPLED }
  }
}

/** As the SDK's `setStatus`: a message only on errors, and only a string one. */
function statusOf(status: SpanInput['status']): SpanStatus {
  if (status == null || status.code === 'unset') return STATUS_UNSET
  if (status.code !== 'error') return STATUS_OK
  return typeof status.message === 'string' ? { code: SpanStatusCode.ERROR, message: status.message } : STATUS_ERROR
}

/** Why a plugin's span cannot be exported, or undefined when it can. */
function problemWith(input: SpanInput): string | undefined {
  if (typeof input?.name !== 'string') return 'span without a string `name`'
  if (!Number.isFinite(input.startTimeNs) || !Number.isFinite(input.endTimeNs) || input.startTimeNs <= 0) {
    return `span "${input.name}": startTimeNs and endTimeNs must be positive nanoseconds since the epoch`
  }
  if (input.endTimeNs < input.startTimeNs) return `span "${input.name}": endTimeNs is before startTimeNs`
  if (!KINDS.has(input.kind ?? 'internal')) return `span "${input.name}": unknown kind "${input.kind}"`
  if (input.events !== undefined && !Array.isArray(input.events)) return `span "${input.name}": events must be an array`
  if (input.spanId !== undefined && (typeof input.spanId !== 'string' || !SPAN_ID.test(input.spanId) || input.spanId === ZERO_SPAN_ID)) {
    return `span "${input.name}": spanId "${input.spanId}" is not 16 lowercase hex digits (non-zero)`
  }
  if (input.traceId !== undefined) {
    if (!TRACE_ID.test(input.traceId) || input.traceId === ZERO_TRACE_ID) {
      return `span "${input.name}": traceId "${input.traceId}" is not 32 lowercase hex digits (non-zero)`
    }
    if (input.parentSpanId !== undefined && (!SPAN_ID.test(input.parentSpanId) || input.parentSpanId === ZERO_SPAN_ID)) {
      return `span "${input.name}": parentSpanId "${input.parentSpanId}" is not 16 lowercase hex digits (non-zero)`
    }
  }
  for (const key of ['context', 'parentContext'] as const) {
    if (input[key] !== undefined && !validContext(input[key])) return `span "${input.name}": ${key} ${String(input[key])} is not a positive integer (a sockdata record's context)`
  }
  return undefined
}

export interface TraceStats {
  /** Spans the sampler did not keep. */
  sampledOut: number
  /** Spans rejected as malformed (bad ids or times); each rejection is logged once per scope. */
  rejected: number
  /** Spans with a parentContext that joined the span of that context. */
  contextJoined: number
  /** Spans with a parentContext that went out alone: no span named the context in time, or too many waited. */
  contextUnjoined: number
}

const require = createRequire(import.meta.url)

/**
 * The SDK's trace-id ratio sampler, or undefined for a ratio of 1, which keeps every trace: the
 * default configuration then never loads sdk-trace-base.
 */
function ratioSampler(ratio: number): { sampler: Sampler; sampled: number } | undefined {
  if (ratio >= 1) return undefined
  const sdk = require('@opentelemetry/sdk-trace-base') as typeof import('@opentelemetry/sdk-trace-base')
  return { sampler: new sdk.TraceIdRatioBasedSampler(ratio), sampled: sdk.SamplingDecision.RECORD_AND_SAMPLED }
}

export class TracePipeline {
  private readonly ratio: ReturnType<typeof ratioSampler>
  private readonly keepErrors: boolean
  private readonly limits = spanLimitsFromEnv()
  private readonly ids = new RandomIds()
  private readonly scopes = new Map<string, InstrumentationScope>()
  private readonly runtimeResource: Resource
  private readonly deliver: (spans: PluginSpan[]) => void
  private readonly counts: TraceStats = { sampledOut: 0, rejected: 0, contextJoined: 0, contextUnjoined: 0 }
  private readonly contexts = new ThreadContexts((spans) => this.deliver(spans), this.counts)

  constructor(options: {
    runtimeResource: Resource
    ratio: number
    keepErrors: boolean
    deliver: (spans: PluginSpan[]) => void
  }) {
    this.ratio = ratioSampler(options.ratio)
    this.keepErrors = options.keepErrors
    this.runtimeResource = options.runtimeResource
    this.deliver = options.deliver
  }

  stats(): TraceStats {
    return { ...this.counts }
  }

  /**
   * Samples and builds finished spans and delivers them as one batch; returns the error of the
   * first malformed span, if any, so the caller can report it. `resourceFor` picks the traced
   * process's resource; spans without one carry the runtime's.
   */
  emit(
    scopeName: string,
    scopeVersion: string | undefined,
    spans: readonly SpanInput[],
    resourceFor: (span: SpanInput) => Resource | undefined,
  ): string | undefined {
    const scope = this.scope(scopeName, scopeVersion)
    const finished: PluginSpan[] = []
    let firstProblem: string | undefined
    for (const input of spans) {
      const problem = problemWith(input)
      if (problem !== undefined) {
        this.counts.rejected++
        firstProblem ??= problem
        continue
      }
      const resource = resourceFor(input) ?? this.runtimeResource
      const parent = input.traceId === undefined && validContext(input.parentContext) ? this.contexts.parentOf(input.parentContext) : undefined
      if (parent === 'unknown') {
        // its parent span ends later: built once that span names the context, or alone after a while
        this.contexts.wait(input.parentContext!, (joined) => this.build(input, joined, resource, scope))
        continue
      }
      const span = this.build(input, parent, resource, scope)
      if (span !== undefined) finished.push(span)
    }
    if (finished.length > 0) this.deliver(finished)
    return firstProblem
  }

  /** Delivers the spans still waiting for their context's span, as they are (at flush and shutdown). */
  releaseWaiting(): void {
    this.contexts.releaseAll()
  }

  /**
   * The finished span, or undefined when sampled out. `joined`: the trace and parent span of the
   * context it was made in. A span that names its own context is remembered, and the spans
   * waiting for that context are built too.
   */
  private build(input: SpanInput, joined: ContextSpan | undefined, resource: Resource, scope: InstrumentationScope): PluginSpan | undefined {
    const traceId = joined?.traceId ?? input.traceId ?? this.ids.next(16)
    const spanId = input.spanId ?? this.ids.next(8)
    if (validContext(input.context)) this.contexts.declare(input.context, { traceId, spanId })
    if (!this.keeps(traceId, input.status?.code === 'error')) {
      this.counts.sampledOut++
      return undefined
    }
    const parentSpanId = joined?.spanId ?? (input.traceId === undefined ? undefined : input.parentSpanId)
    return new PluginSpan(input, traceId, spanId, parentSpanId, resource, scope, this.limits)
  }

  private keeps(traceId: string, isError: boolean): boolean {
    if (isError && this.keepErrors) return true
    if (this.ratio === undefined) return true
    return this.ratio.sampler.shouldSample(ROOT_CONTEXT, traceId, '', SpanKind.INTERNAL, {}, []).decision === this.ratio.sampled
  }

  private scope(name: string, version: string | undefined): InstrumentationScope {
    const key = `${name}\0${version ?? ''}`
    let scope = this.scopes.get(key)
    if (scope === undefined) {
      scope = { name, version, schemaUrl: undefined }
      this.scopes.set(key, scope)
    }
    return scope
  }
}

const validContext = (context: unknown): context is number => typeof context === 'number' && Number.isSafeInteger(context) && context > 0

interface ContextSpan {
  traceId: string
  spanId: string
}

/** Contexts remembered, so children that come after their parent still join it. */
const MAX_CONTEXTS = 16384
/** Spans waiting for their context's span, at most; past this they go out alone. */
const MAX_WAITING = 8192
/** How long a span waits for its context's span. */
const CONTEXT_WAIT_MS = 2000

/**
 * Joins client spans to the server span of the request their thread was serving, across plugins:
 * the kernel names the request (the `sockdata` thread context), the server span declares it as
 * `context`, and the client spans name it as `parentContext`. The server span ends after its
 * children, so children usually arrive first and wait here; the wait is bounded in time and in
 * count, and nothing waiting is lost (it goes out alone, counted).
 */
class ThreadContexts {
  private readonly known = new Map<number, ContextSpan>()
  private readonly waiting = new Map<number, { since: number; build: (joined: ContextSpan | undefined) => PluginSpan | undefined }[]>()
  private waitingCount = 0
  private timer: NodeJS.Timeout | undefined
  private readonly deliver: (spans: PluginSpan[]) => void
  private readonly counts: TraceStats

  constructor(deliver: (spans: PluginSpan[]) => void, counts: TraceStats) {
    this.deliver = deliver
    this.counts = counts
  }

  /** The context's span, or 'unknown' when it was not named yet. */
  parentOf(context: number): ContextSpan | 'unknown' {
    const span = this.known.get(context)
    if (span === undefined) return 'unknown'
    this.counts.contextJoined++
    return span
  }

  wait(context: number, build: (joined: ContextSpan | undefined) => PluginSpan | undefined): void {
    if (this.waitingCount >= MAX_WAITING) {
      this.counts.contextUnjoined++
      const span = build(undefined)
      if (span !== undefined) this.deliver([span])
      return
    }
    let list = this.waiting.get(context)
    if (list === undefined) this.waiting.set(context, (list = []))
    list.push({ since: performance.now(), build })
    this.waitingCount++
    this.timer ??= setInterval(() => this.expire(), CONTEXT_WAIT_MS / 4).unref()
  }

  /** A span named `context`: remembered, and the spans waiting for it are built as its children. */
  declare(context: number, span: ContextSpan): void {
    if (this.known.size >= MAX_CONTEXTS) this.known.delete(this.known.keys().next().value!)
    this.known.set(context, span)
    const list = this.waiting.get(context)
    if (list === undefined) return
    this.waiting.delete(context)
    this.waitingCount -= list.length
    this.counts.contextJoined += list.length
    this.flush(list, span)
  }

  releaseAll(): void {
    for (const [context, list] of this.waiting) this.release(context, list)
  }

  private expire(): void {
    const cutoff = performance.now() - CONTEXT_WAIT_MS
    // contexts wait in arrival order, so the oldest are first
    for (const [context, list] of this.waiting) {
      if (list[0]!.since > cutoff) break
      this.release(context, list)
    }
    if (this.waitingCount === 0) {
      clearInterval(this.timer)
      this.timer = undefined
    }
  }

  private release(context: number, list: { build: (joined: ContextSpan | undefined) => PluginSpan | undefined }[]): void {
    this.waiting.delete(context)
    this.waitingCount -= list.length
    this.counts.contextUnjoined += list.length
    this.flush(list, undefined)
  }

  private flush(list: { build: (joined: ContextSpan | undefined) => PluginSpan | undefined }[], joined: ContextSpan | undefined): void {
    const spans: PluginSpan[] = []
    for (const entry of list) {
      const span = entry.build(joined)
      if (span !== undefined) spans.push(span)
    }
    if (spans.length > 0) this.deliver(spans)
  }
}
