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
import type { MetricReaderOptions, ResourceMetrics, ScopeMetrics } from '@opentelemetry/sdk-metrics'
import type { Resource } from '@opentelemetry/resources'
import type { MetricKind, MetricPointInput } from './signals.ts'
import type { TelemetryLog } from './log.ts'

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

export class MetricsPipeline {
  private readonly explicitProvider: MeterProvider
  private readonly explicitReader = new PullMetricReader()
  private readonly exponentialProvider: MeterProvider
  private readonly exponentialReader = new PullMetricReader({
    aggregationSelector: (type) =>
      type === InstrumentType.HISTOGRAM ? { type: AggregationType.EXPONENTIAL_HISTOGRAM } : { type: AggregationType.DEFAULT },
  })
  private readonly instruments = new Map<string, { kind: MetricKind; instrument: SyncInstrument }>()
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
    if (entry === undefined) {
      const created = this.createInstrument(scopeName, scopeVersion, point)
      if (typeof created === 'string') return created
      entry = { kind: point.kind, instrument: created }
      this.instruments.set(key, entry)
    } else if (entry.kind !== point.kind) {
      return `metric "${point.name}" was first recorded as a ${entry.kind} and cannot also be a ${point.kind}; use another name`
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

  private createInstrument(scopeName: string, scopeVersion: string | undefined, point: MetricPointInput): SyncInstrument | string {
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
        const boundaries = point.boundaries
        if (boundaries !== undefined && !isAscending(boundaries)) {
          return `metric "${point.name}": boundaries must be finite numbers in strictly increasing order`
        }
        return this.explicitProvider.getMeter(scopeName, scopeVersion).createHistogram(point.name, {
          ...options,
          advice: boundaries === undefined ? undefined : { explicitBucketBoundaries: boundaries },
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
    return { resource: explicit.resourceMetrics.resource, scopeMetrics: [...scopes.values()] }
  }

  async shutdown(): Promise<void> {
    await Promise.all([this.explicitProvider.shutdown(), this.exponentialProvider.shutdown()])
  }
}

function isAscending(values: readonly number[]): boolean {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) return false
    if (i > 0 && values[i] <= values[i - 1]) return false
  }
  return true
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
