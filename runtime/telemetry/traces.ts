/**
 * Spans from plugins, through the SDK's own Tracer.
 *
 * Plugins hand over spans that already finished, with their own timestamps and possibly a trace id
 * and parent taken from a `traceparent`. Rather than forge `ReadableSpan` objects (whose shape the
 * SDK is free to change), each span is replayed through a real Tracer: `startSpan` with the
 * recorded start time and a remote parent context, then `end` with the recorded end time. The SDK
 * then applies its sampler, span limits and attribute sanitising exactly as for any other span.
 * Two small hooks make that possible:
 * - a parent `traceparent` becomes a remote span context, so the SDK copies its trace id and records
 *   the parent span id;
 * - a trace id without a parent span (the span starts a known trace) is handed to the Tracer by an
 *   IdGenerator that returns a preset id once.
 *
 * Sampling decides on the trace id (so every span of a trace gets the same answer), except that an
 * error span is always kept: the error flag rides in the sampling context, which the SDK passes to
 * `Sampler.shouldSample`.
 *
 * Each traced process has its own resource, and the SDK binds a resource to a TracerProvider, so
 * there is one lightweight provider per process (kept in a bounded LRU) sharing one processor.
 */
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, createContextKey, trace } from '@opentelemetry/api'
import type { Attributes, Context, HrTime } from '@opentelemetry/api'
import {
  BasicTracerProvider,
  RandomIdGenerator,
  SamplingDecision,
  TraceIdRatioBasedSampler,
} from '@opentelemetry/sdk-trace-base'
import type { IdGenerator, ReadableSpan, Sampler, SamplingResult, SpanProcessor } from '@opentelemetry/sdk-trace-base'
import type { Resource } from '@opentelemetry/resources'
import type { SpanInput } from './signals.ts'

const SPAN_IS_ERROR = createContextKey('periscope span status is error')

const TRACE_ID = /^[0-9a-f]{32}$/
const SPAN_ID = /^[0-9a-f]{16}$/
const ZERO_TRACE_ID = '0'.repeat(32)
const ZERO_SPAN_ID = '0'.repeat(16)

const KINDS: Record<string, SpanKind> = {
  internal: SpanKind.INTERNAL,
  server: SpanKind.SERVER,
  client: SpanKind.CLIENT,
  producer: SpanKind.PRODUCER,
  consumer: SpanKind.CONSUMER,
}

/** Head sampling by trace-id ratio that never drops an error span. */
export class RatioKeepingErrorsSampler implements Sampler {
  private readonly ratio: TraceIdRatioBasedSampler
  private readonly keepErrors: boolean

  constructor(ratio: number, keepErrors: boolean) {
    this.ratio = new TraceIdRatioBasedSampler(ratio)
    this.keepErrors = keepErrors
  }

  shouldSample(context: Context, traceId: string): SamplingResult {
    if (this.keepErrors && context.getValue(SPAN_IS_ERROR) === true) return { decision: SamplingDecision.RECORD_AND_SAMPLED }
    return this.ratio.shouldSample(context, traceId)
  }

  toString(): string {
    return `RatioKeepingErrorsSampler{${this.ratio.toString()}, keepErrors=${this.keepErrors}}`
  }
}

/** Random ids, except that the next trace id can be preset for a span that starts a known trace. */
class PresetTraceIdGenerator implements IdGenerator {
  next: string | undefined
  private readonly random = new RandomIdGenerator()

  generateTraceId(): string {
    const preset = this.next
    this.next = undefined
    return preset ?? this.random.generateTraceId()
  }

  generateSpanId(): string {
    return this.random.generateSpanId()
  }
}

/** Collects ended spans for the caller, which pushes them to the export queue as one batch. */
class CollectingSpanProcessor implements SpanProcessor {
  collected: ReadableSpan[] = []

  onStart(): void {}

  onEnd(span: ReadableSpan): void {
    this.collected.push(span)
  }

  forceFlush(): Promise<void> {
    return Promise.resolve()
  }

  shutdown(): Promise<void> {
    return Promise.resolve()
  }
}

export function nsToHrTime(ns: number): HrTime {
  const seconds = Math.floor(ns / 1e9)
  const nanos = Math.min(999_999_999, Math.max(0, Math.round(ns - seconds * 1e9)))
  return [seconds, nanos]
}

export interface TraceStats {
  /** Spans the sampler did not keep. */
  sampledOut: number
  /** Spans rejected as malformed (bad ids or times); each rejection is logged once per scope. */
  rejected: number
}

export class TracePipeline {
  private readonly processor = new CollectingSpanProcessor()
  private readonly idGenerator = new PresetTraceIdGenerator()
  private readonly sampler: Sampler
  private readonly runtimeProvider: BasicTracerProvider
  private readonly deliver: (spans: ReadableSpan[]) => void
  private readonly counts: TraceStats = { sampledOut: 0, rejected: 0 }

  constructor(options: {
    runtimeResource: Resource
    ratio: number
    keepErrors: boolean
    deliver: (spans: ReadableSpan[]) => void
  }) {
    this.sampler = new RatioKeepingErrorsSampler(options.ratio, options.keepErrors)
    this.runtimeProvider = this.createProvider(options.runtimeResource)
    this.deliver = options.deliver
  }

  createProvider(resource: Resource): BasicTracerProvider {
    return new BasicTracerProvider({
      resource,
      sampler: this.sampler,
      idGenerator: this.idGenerator,
      spanProcessors: [this.processor],
    })
  }

  stats(): TraceStats {
    return { ...this.counts }
  }

  /**
   * Replays finished spans; returns the error of the first malformed span, if any, so the caller
   * can report it. `providerFor` picks the traced process's provider.
   */
  emit(
    scopeName: string,
    scopeVersion: string | undefined,
    spans: readonly SpanInput[],
    providerFor: (span: SpanInput) => BasicTracerProvider | undefined,
  ): string | undefined {
    let firstProblem: string | undefined
    for (const input of spans) {
      const problem = this.replay(scopeName, scopeVersion, input, providerFor)
      if (problem !== undefined) {
        this.counts.rejected++
        firstProblem ??= problem
      }
    }
    const ended = this.processor.collected
    if (ended.length > 0) {
      this.processor.collected = []
      this.deliver(ended)
    }
    return firstProblem
  }

  private replay(
    scopeName: string,
    scopeVersion: string | undefined,
    input: SpanInput,
    providerFor: (span: SpanInput) => BasicTracerProvider | undefined,
  ): string | undefined {
    if (typeof input?.name !== 'string') return 'span without a string `name`'
    if (!Number.isFinite(input.startTimeNs) || !Number.isFinite(input.endTimeNs) || input.startTimeNs <= 0) {
      return `span "${input.name}": startTimeNs and endTimeNs must be positive nanoseconds since the epoch`
    }
    if (input.endTimeNs < input.startTimeNs) return `span "${input.name}": endTimeNs is before startTimeNs`
    const kind = KINDS[input.kind ?? 'internal']
    if (kind === undefined) return `span "${input.name}": unknown kind "${input.kind}"`

    let context = ROOT_CONTEXT
    const isError = input.status?.code === 'error'
    if (isError) context = context.setValue(SPAN_IS_ERROR, true)
    if (input.traceId !== undefined) {
      if (!TRACE_ID.test(input.traceId) || input.traceId === ZERO_TRACE_ID) {
        return `span "${input.name}": traceId "${input.traceId}" is not 32 lowercase hex digits (non-zero)`
      }
      if (input.parentSpanId !== undefined) {
        if (!SPAN_ID.test(input.parentSpanId) || input.parentSpanId === ZERO_SPAN_ID) {
          return `span "${input.name}": parentSpanId "${input.parentSpanId}" is not 16 lowercase hex digits (non-zero)`
        }
        context = trace.setSpanContext(context, {
          traceId: input.traceId,
          spanId: input.parentSpanId,
          traceFlags: TraceFlags.SAMPLED,
          isRemote: true,
        })
      } else {
        this.idGenerator.next = input.traceId
      }
    }

    const provider = providerFor(input) ?? this.runtimeProvider
    const tracer = provider.getTracer(scopeName, scopeVersion)
    const span = tracer.startSpan(
      input.name,
      { kind, startTime: nsToHrTime(input.startTimeNs), attributes: input.attributes as Attributes | undefined },
      context,
    )
    // a preset id must not leak into the next span if this one never asked for a trace id
    this.idGenerator.next = undefined
    if (!span.isRecording()) {
      this.counts.sampledOut++
      return undefined
    }
    for (const event of input.events ?? []) {
      if (typeof event?.name !== 'string' || !Number.isFinite(event.timeNs)) continue
      span.addEvent(event.name, event.attributes as Attributes | undefined, nsToHrTime(event.timeNs))
    }
    if (input.status !== undefined && input.status.code !== 'unset') {
      span.setStatus({
        code: isError ? SpanStatusCode.ERROR : SpanStatusCode.OK,
        message: isError ? input.status.message : undefined,
      })
    }
    span.end(nsToHrTime(input.endTimeNs))
    return undefined
  }
}
