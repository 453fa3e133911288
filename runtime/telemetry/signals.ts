/**
 * Plain-data shapes of what plugins emit. Plugins run in isolates, so everything here must survive
 * a structured copy out of the isolate: no classes, no functions, no bigint. Times are nanoseconds
 * since the Unix epoch as numbers (exact to ~0.25 µs today, which is finer than any probe's skew).
 * Emitters take arrays: a plugin hands over one batch per event batch it handled.
 */
export type AttributeValue = string | number | boolean | string[] | number[] | boolean[]
export type Attributes = Record<string, AttributeValue>

export type SpanKind = 'internal' | 'server' | 'client' | 'producer' | 'consumer'

export interface SpanInput {
  name: string
  kind?: SpanKind
  startTimeNs: number
  endTimeNs: number
  attributes?: Attributes
  status?: { code: 'unset' | 'ok' | 'error'; message?: string }
  events?: { name: string; timeNs: number; attributes?: Attributes }[]
  /** 32 lowercase hex digits; taken from an extracted traceparent so the span joins that trace. */
  traceId?: string
  /** 16 lowercase hex digits: the caller's span, from the same traceparent. */
  parentSpanId?: string
  /**
   * 16 lowercase hex digits (non-zero): this span's id, chosen by the plugin so that spans it emits
   * later can name it as their parent (with the same `traceId`). A random id when omitted.
   */
  spanId?: string
  /**
   * The kernel's thread context of the server request this span answers: the `context` of the
   * `sockdata` records of its request (non-zero). Spans of any plugin that name the same value as
   * `parentContext` become this span's children, in its trace.
   */
  context?: number
  /**
   * The thread context this client call was made in: the `context` of its `sockdata` records (a
   * thread serving a request made it). The span becomes a child of the span that names the same
   * value as `context`, in that span's trace. That span usually comes later (it ends after its
   * children), so this span waits for it, up to 2 s; then it goes out as a trace of its own
   * (counted). Ignored with a `traceId`.
   */
  parentContext?: number
  /** Resource of the traced process (process.pid, process.executable.path, service.name...). */
  process?: ProcessRef
}

export type MetricKind = 'counter' | 'updown' | 'histogram' | 'exponential_histogram' | 'gauge'

export interface MetricPointInput {
  name: string
  kind: MetricKind
  value: number
  unit?: string
  description?: string
  /**
   * Explicit bucket boundaries for kind 'histogram', ascending. The first point of a histogram fixes
   * them; a later point with other boundaries is rejected (omit them on later points, or repeat them).
   */
  boundaries?: number[]
  /**
   * Kind 'histogram' only: the point is a batch of observations already bucketed (in the kernel,
   * say), not one observation. With `boundaries` b0 < b1 < … < b[n-1], `bucketCounts` has n+1
   * whole counts of observations in (-inf, b0], (b0, b1], …, (b[n-1], +inf); `value` is the sum of
   * those observations, and their count is the sum of `bucketCounts`. The exporter adds the batch
   * to the cumulative histogram of this name and attributes exactly as if each observation had been
   * recorded, so batches and single points of one name mix, as long as their boundaries are the
   * same (a batch needs `boundaries`; a histogram whose first points had none uses the SDK's default
   * buckets and takes no batches). Only min and max are lost: a series that received a batch exports
   * neither. Kernel-side, log2 buckets are natural, e.g. boundaries of 2^k µs given in seconds.
   */
  bucketCounts?: number[]
  attributes?: Attributes
}

export type Severity = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal'

export interface LogInput {
  timeNs?: number
  severity?: Severity
  body: string | Attributes
  eventName?: string
  attributes?: Attributes
  process?: ProcessRef
}

export interface FrameInput {
  address: number
  function?: string
  file?: string
  line?: number
  /** The mapped file the address belongs to, with its build id when known. */
  mapping?: { file: string; buildId?: string; start?: number; end?: number; offset?: number }
}

export interface ProfileSampleInput {
  /** Profile type, e.g. 'cpu' (value: samples, nanoseconds) or 'offcpu' (value: nanoseconds). */
  type: string
  /** Leaf first. */
  frames: FrameInput[]
  values: number[]
  timeNs?: number
  labels?: Record<string, string | number>
  process?: ProcessRef
}

/** Identifies the traced process; the exporter turns it into resource attributes. */
export interface ProcessRef {
  pid: number
  executablePath?: string
  command?: string
  commandLine?: string
  serviceName?: string
}
