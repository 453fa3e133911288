/**
 * Metric points from plugins, aggregated by `@opentelemetry/sdk-metrics`; each plugin is a meter
 * (an instrumentation scope) and each metric name an instrument, created on first use.
 *
 * Exponential histograms need a second MeterProvider. The SDK chooses an instrument's aggregation
 * from views fixed when the provider is built, or from the reader per instrument *type*; a plugin
 * names its histogram kind per point, at run time. So explicit-bucket histograms live in one
 * provider and exponential ones in another whose reader selects the exponential aggregation for
 * every histogram. Collection merges the two, scope by scope, into one ResourceMetrics.
 *
 * A histogram point with `bucketCounts` is a batch of observations bucketed in the kernel. The SDK
 * cannot take those, so they are kept in bucketed-histograms.ts and merged into the collection as
 * well, into the SDK's data points of the same name and attributes.
 *
 * Both readers are pull readers with cumulative temporality, so the push loop (OTLP or the
 * embedded file) and a Prometheus scrape can both collect from them without disturbing each other.
 *
 * Self-metrics (exporter queues, the runtime's CPU and RSS, and whatever the runtime registers:
 * per-object events, per-plugin work) are observable instruments on the `periscope` meter, fed by
 * callbacks that run at collection time.
 */
import type { Attributes, Counter, Gauge, Histogram, UpDownCounter } from '@opentelemetry/api'
import {
  AggregationTemporality,
  AggregationType,
  DataPointType,
  InstrumentType,
  MeterProvider,
  MetricReader,
} from '@opentelemetry/sdk-metrics'
import type { HistogramMetricData, MetricReaderOptions, ResourceMetrics, ScopeMetrics } from '@opentelemetry/sdk-metrics'
import type { Resource } from '@opentelemetry/resources'
import type { MetricKind, MetricPointInput } from './signals.ts'
import type { TelemetryLog } from './log.ts'
import { BucketedHistogram, bucketedBatchProblem, hrTimeNow, isAscending, sameNumbers } from './bucketed-histograms.ts'

/** One value of a self-metric, as returned by a registered callback at collection time. */
export interface SelfMetricPoint {
  name: string
  /** counter: a running total (monotonic); updown: a running total that may fall; gauge: a level. */
  kind: 'counter' | 'updown' | 'gauge'
  value: number
  unit?: string
  description?: string
  attributes?: Attributes
}

class PullMetricReader extends MetricReader {
  constructor(options?: MetricReaderOptions) {
    super({ ...options, aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE })
  }

  protected async onForceFlush(): Promise<void> {}

  protected async onShutdown(): Promise<void> {}
}

type SyncInstrument = Counter | UpDownCounter | Histogram | Gauge

interface InstrumentEntry {
  kind: MetricKind
  /** The SDK's instrument, for single values; not yet created for a histogram fed only batches. */
  instrument?: SyncInstrument
  /** A histogram's boundaries, fixed by its first point (undefined: the SDK's default buckets). */
  boundaries?: readonly number[]
  /** A histogram's batches of observations already bucketed. */
  bucketed?: BucketedHistogram
}

export class MetricsPipeline {
  private readonly explicitProvider: MeterProvider
  private readonly explicitReader = new PullMetricReader()
  private readonly exponentialProvider: MeterProvider
  private readonly exponentialReader = new PullMetricReader({
    aggregationSelector: (type) =>
      type === InstrumentType.HISTOGRAM ? { type: AggregationType.EXPONENTIAL_HISTOGRAM } : { type: AggregationType.DEFAULT },
  })
  private readonly instruments = new Map<string, InstrumentEntry>()
  /** Bucketed histograms by scope, keyed as collect() keys the SDK's scopes. */
  private readonly bucketedScopes = new Map<string, { scope: { name: string; version?: string }; histograms: BucketedHistogram[] }>()
  private readonly selfSources = new Map<string, () => SelfMetricPoint[]>()
  private readonly selfInstruments = new Set<string>()
  private latestSelf = new Map<string, SelfMetricPoint[]>()
  private readonly failingSources = new Set<string>()
  private readonly log: TelemetryLog
  rejected = 0

  constructor(resource: Resource, log: TelemetryLog) {
    this.explicitProvider = new MeterProvider({ resource, readers: [this.explicitReader] })
    this.exponentialProvider = new MeterProvider({ resource, readers: [this.exponentialReader] })
    this.log = log
  }

  /** Records points; returns a description of the first rejected point, if any. */
  record(scopeName: string, scopeVersion: string | undefined, points: readonly MetricPointInput[]): string | undefined {
    let firstProblem: string | undefined
    for (const point of points) {
      const problem = this.recordOne(scopeName, scopeVersion, point)
      if (problem !== undefined) {
        this.rejected++
        firstProblem ??= problem
      }
    }
    return firstProblem
  }

  private recordOne(scopeName: string, scopeVersion: string | undefined, point: MetricPointInput): string | undefined {
    if (typeof point?.name !== 'string' || point.name === '') return 'metric point without a `name`'
    if (!Number.isFinite(point.value)) return `metric "${point.name}": value must be a finite number`
    const key = `${scopeName}\0${scopeVersion ?? ''}\0${point.name}`
    let entry = this.instruments.get(key)
    if (entry !== undefined && entry.kind !== point.kind) {
      return `metric "${point.name}" was first recorded as a ${entry.kind} and cannot also be a ${point.kind}; use another name`
    }
    if (point.bucketCounts !== undefined) return this.recordBatch(scopeName, scopeVersion, key, entry, point)
    if (entry === undefined) {
      const created = this.createInstrument(scopeName, scopeVersion, point, point.boundaries)
      if (typeof created === 'string') return created
      entry = { kind: point.kind, instrument: created, boundaries: point.kind === 'histogram' ? point.boundaries?.slice() : undefined }
      this.instruments.set(key, entry)
    } else if (point.kind === 'histogram' && point.boundaries !== undefined && (entry.boundaries === undefined || !sameNumbers(entry.boundaries, point.boundaries))) {
      const first = entry.boundaries === undefined ? 'the SDK\'s default buckets (its first point had no boundaries)' : `boundaries [${entry.boundaries.join(', ')}]`
      return `metric "${point.name}": boundaries [${point.boundaries.join(', ')}] differ from ${first}; every point of a histogram must use the same boundaries, or another name`
    }
    if (entry.instrument === undefined) {
      // a histogram fed only batches until now: its single values go to the SDK, in the same buckets
      const created = this.createInstrument(scopeName, scopeVersion, point, entry.boundaries)
      if (typeof created === 'string') return created
      entry.instrument = created
    }
    const attributes = point.attributes as Attributes | undefined
    switch (point.kind) {
      case 'counter':
        if (point.value < 0) return `metric "${point.name}": a counter only goes up; use kind "updown" for values that fall`
        ;(entry.instrument as Counter).add(point.value, attributes)
        break
      case 'updown':
        ;(entry.instrument as UpDownCounter).add(point.value, attributes)
        break
      case 'histogram':
      case 'exponential_histogram':
        ;(entry.instrument as Histogram).record(point.value, attributes)
        break
      case 'gauge':
        ;(entry.instrument as Gauge).record(point.value, attributes)
        break
    }
    return undefined
  }

  /** Adds a batch of observations already bucketed (a histogram point with `bucketCounts`). */
  private recordBatch(scopeName: string, scopeVersion: string | undefined, key: string, entry: InstrumentEntry | undefined, point: MetricPointInput): string | undefined {
    const count = { value: 0 }
    const problem = bucketedBatchProblem(point, { boundaries: entry?.boundaries, exists: entry !== undefined }, count)
    if (problem !== undefined) return problem
    if (entry === undefined) {
      entry = { kind: 'histogram', boundaries: (point.boundaries as number[]).slice() }
      this.instruments.set(key, entry)
    }
    if (entry.bucketed === undefined) {
      entry.bucketed = new BucketedHistogram(point.name, entry.boundaries as readonly number[], point.unit, point.description)
      const scopeKey = `${scopeName}\0${scopeVersion ?? ''}\0`
      let scope = this.bucketedScopes.get(scopeKey)
      if (scope === undefined) this.bucketedScopes.set(scopeKey, (scope = { scope: { name: scopeName, version: scopeVersion }, histograms: [] }))
      scope.histograms.push(entry.bucketed)
    }
    if (count.value > 0) entry.bucketed.add(point.attributes as Attributes | undefined, point.bucketCounts as number[], point.value, count.value, hrTimeNow())
    return undefined
  }

  private createInstrument(scopeName: string, scopeVersion: string | undefined, point: MetricPointInput, boundaries: readonly number[] | undefined): SyncInstrument | string {
    const options = { unit: point.unit, description: point.description }
    switch (point.kind) {
      case 'counter':
        return this.explicitProvider.getMeter(scopeName, scopeVersion).createCounter(point.name, options)
      case 'updown':
        return this.explicitProvider.getMeter(scopeName, scopeVersion).createUpDownCounter(point.name, options)
      case 'gauge':
        return this.explicitProvider.getMeter(scopeName, scopeVersion).createGauge(point.name, options)
      case 'exponential_histogram':
        return this.exponentialProvider.getMeter(scopeName, scopeVersion).createHistogram(point.name, options)
      case 'histogram': {
        if (boundaries !== undefined && (!Array.isArray(boundaries) || !isAscending(boundaries))) {
          return `metric "${point.name}": boundaries must be finite numbers in strictly increasing order`
        }
        return this.explicitProvider.getMeter(scopeName, scopeVersion).createHistogram(point.name, {
          ...options,
          advice: boundaries === undefined ? undefined : { explicitBucketBoundaries: [...boundaries] },
        })
      }
      default:
        return `metric "${point.name}": unknown kind "${String(point.kind)}"; use counter, updown, histogram, exponential_histogram or gauge`
    }
  }

  /** Adds a self-metric source; returns a function that removes it. */
  registerSelfMetrics(source: string, collect: () => SelfMetricPoint[]): () => void {
    this.selfSources.set(source, collect)
    return () => {
      if (this.selfSources.get(source) === collect) this.selfSources.delete(source)
    }
  }

  /** Runs the self-metric callbacks and creates observable instruments for names seen first now. */
  private refreshSelfMetrics(): void {
    const latest = new Map<string, SelfMetricPoint[]>()
    for (const [source, collect] of this.selfSources) {
      let points: SelfMetricPoint[]
      try {
        points = collect()
        this.failingSources.delete(source)
      } catch (error) {
        if (!this.failingSources.has(source)) {
          this.failingSources.add(source)
          this.log('warn', `self-metrics source "${source}" threw: ${String(error)}; its metrics are skipped until it succeeds`)
        }
        continue
      }
      for (const point of points) {
        if (!Number.isFinite(point.value)) continue
        let list = latest.get(point.name)
        if (list === undefined) latest.set(point.name, (list = []))
        list.push(point)
      }
    }
    this.latestSelf = latest
    const meter = this.explicitProvider.getMeter('periscope')
    for (const [name, points] of latest) {
      if (this.selfInstruments.has(name)) continue
      this.selfInstruments.add(name)
      const first = points[0]
      const options = { unit: first.unit, description: first.description }
      const observable =
        first.kind === 'counter'
          ? meter.createObservableCounter(name, options)
          : first.kind === 'updown'
            ? meter.createObservableUpDownCounter(name, options)
            : meter.createObservableGauge(name, options)
      observable.addCallback((result) => {
        for (const point of this.latestSelf.get(name) ?? []) result.observe(point.value, point.attributes)
      })
    }
  }

  /** Collects both providers into one ResourceMetrics; scopes with the same name are merged. */
  async collect(): Promise<ResourceMetrics> {
    this.refreshSelfMetrics()
    const [explicit, exponential] = await Promise.all([this.explicitReader.collect(), this.exponentialReader.collect()])
    for (const error of [...explicit.errors, ...exponential.errors]) this.log('warn', `metric collection: ${String(error)}`)
    const scopes = new Map<string, ScopeMetrics>()
    for (const scopeMetrics of [...explicit.resourceMetrics.scopeMetrics, ...exponential.resourceMetrics.scopeMetrics]) {
      const key = `${scopeMetrics.scope.name}\0${scopeMetrics.scope.version ?? ''}\0${scopeMetrics.scope.schemaUrl ?? ''}`
      const existing = scopes.get(key)
      if (existing === undefined) scopes.set(key, { scope: scopeMetrics.scope, metrics: [...scopeMetrics.metrics] })
      else existing.metrics.push(...scopeMetrics.metrics)
    }
    this.mergeBucketed(scopes)
    return { resource: explicit.resourceMetrics.resource, scopeMetrics: [...scopes.values()] }
  }

  /** Adds the bucketed histograms to the collected scopes (keyed as in collect()). */
  private mergeBucketed(scopes: Map<string, ScopeMetrics>): void {
    const now = hrTimeNow()
    for (const [key, { scope, histograms }] of this.bucketedScopes) {
      let scopeMetrics = scopes.get(key)
      for (const histogram of histograms) {
        const index = scopeMetrics?.metrics.findIndex((metric) => metric.descriptor.name === histogram.name && metric.dataPointType === DataPointType.HISTOGRAM) ?? -1
        const merged = histogram.collect(index < 0 ? undefined : (scopeMetrics?.metrics[index] as HistogramMetricData), now)
        if (merged === undefined) continue
        if (scopeMetrics === undefined) scopes.set(key, (scopeMetrics = { scope, metrics: [] }))
        if (index < 0) scopeMetrics.metrics.push(merged)
        else scopeMetrics.metrics[index] = merged
      }
    }
  }

  async shutdown(): Promise<void> {
    await Promise.all([this.explicitProvider.shutdown(), this.exponentialProvider.shutdown()])
  }
}

/** Prometheus' text format has no exponential histograms; a scrape leaves them out. */
export function withoutExponentialHistograms(metrics: ResourceMetrics): ResourceMetrics {
  return {
    resource: metrics.resource,
    scopeMetrics: metrics.scopeMetrics.map((scope) => ({
      scope: scope.scope,
      metrics: scope.metrics.filter((metric) => metric.dataPointType !== DataPointType.EXPONENTIAL_HISTOGRAM),
    })),
  }
}
