/**
 * Explicit-bucket histograms fed with observations already bucketed (in the kernel): a point with
 * `bucketCounts` adds a whole batch at once. The SDK's Histogram instrument only records single
 * values, and replaying a batch one observation at a time would cost a loop per observation on the
 * collect path, so these histograms are kept here and merged into the SDK's collection (see
 * MetricsPipeline.collect): into the SDK's data point of the same name and attributes when the
 * plugin also recorded single values there, as a metric of their own otherwise.
 *
 * The result is exactly what recording each observation would have given, except min and max: a
 * batch does not carry them, so a series that received one exports neither.
 */
import { ValueType } from '@opentelemetry/api'
import type { Attributes, HrTime } from '@opentelemetry/api'
import { AggregationTemporality, DataPointType } from '@opentelemetry/sdk-metrics'
import type { DataPoint, Histogram, HistogramMetricData } from '@opentelemetry/sdk-metrics'
import type { MetricPointInput } from './signals.ts'

/** As the SDK: past this many attribute sets a histogram folds new ones into one overflow series. */
const cardinalityLimit = 2000
const overflowAttributes: Attributes = { 'otel.metric.overflow': true }

interface Series {
  attributes: Attributes
  startTime: HrTime
  counts: number[]
  sum: number
  count: number
}

export class BucketedHistogram {
  private readonly series = new Map<string, Series>()
  readonly name: string
  readonly boundaries: readonly number[]
  private readonly unit: string | undefined
  private readonly description: string | undefined

  constructor(name: string, boundaries: readonly number[], unit: string | undefined, description: string | undefined) {
    this.name = name
    this.boundaries = boundaries
    this.unit = unit
    this.description = description
  }

  /** Adds a batch validated by bucketedBatchProblem. */
  add(attributes: Attributes | undefined, bucketCounts: readonly number[], sum: number, count: number, now: HrTime): void {
    const series = this.seriesFor(attributes ?? {}, now)
    for (let i = 0; i < bucketCounts.length; i++) series.counts[i] += bucketCounts[i]
    series.sum += sum
    series.count += count
  }

  private seriesFor(attributes: Attributes, now: HrTime): Series {
    let key = hashAttributes(attributes)
    let series = this.series.get(key)
    if (series !== undefined) return series
    if (this.series.size >= cardinalityLimit - 1) {
      key = hashAttributes(overflowAttributes)
      attributes = overflowAttributes
      series = this.series.get(key)
      if (series !== undefined) return series
    }
    series = { attributes: { ...attributes }, startTime: now, counts: new Array<number>(this.boundaries.length + 1).fill(0), sum: 0, count: 0 }
    this.series.set(key, series)
    return series
  }

  /**
   * The cumulative data of this histogram as of `endTime`, merged with the SDK's metric of the same
   * name when there is one (its single recorded values). Returns new objects; the SDK's are left
   * as they are. Undefined when neither has a data point (only empty batches so far).
   */
  collect(sdkMetric: HistogramMetricData | undefined, endTime: HrTime): HistogramMetricData | undefined {
    if (this.series.size === 0) return sdkMetric
    const points = new Map<string, DataPoint<Histogram>>()
    for (const point of sdkMetric?.dataPoints ?? []) points.set(hashAttributes(point.attributes), point)
    for (const [key, series] of this.series) {
      const single = points.get(key)
      points.set(key, {
        attributes: series.attributes,
        startTime: single === undefined || earlier(series.startTime, single.startTime) ? series.startTime : single.startTime,
        endTime,
        value: {
          buckets: { boundaries: [...this.boundaries], counts: series.counts.map((count, i) => count + (single?.value.buckets.counts[i] ?? 0)) },
          sum: series.sum + (single?.value.sum ?? 0),
          count: series.count + (single?.value.count ?? 0),
          // a batch has no min or max, so the series as a whole has none
          min: undefined,
          max: undefined,
        },
      })
    }
    return {
      descriptor: sdkMetric?.descriptor ?? { name: this.name, unit: this.unit ?? '', description: this.description ?? '', valueType: ValueType.DOUBLE },
      aggregationTemporality: AggregationTemporality.CUMULATIVE,
      dataPointType: DataPointType.HISTOGRAM,
      dataPoints: [...points.values()],
    }
  }
}

/**
 * Why a point with `bucketCounts` cannot be added to a histogram whose boundaries are `fixed`
 * (undefined: the histogram is new, or its single values use the SDK's default buckets), or
 * undefined when it can. On success the batch's observation count is in `count.value`.
 */
export function bucketedBatchProblem(
  point: MetricPointInput,
  fixed: { boundaries: readonly number[] | undefined; exists: boolean },
  count: { value: number },
): string | undefined {
  const what = `metric "${point.name}"`
  if (point.kind !== 'histogram') return `${what}: bucketCounts is only for kind "histogram" (a batch of observations already bucketed), not "${String(point.kind)}"`
  const { boundaries, bucketCounts } = point
  if (!Array.isArray(boundaries) || !isAscending(boundaries)) {
    return `${what}: a point with bucketCounts needs boundaries: finite numbers in strictly increasing order`
  }
  if (!Array.isArray(bucketCounts) || bucketCounts.length !== boundaries.length + 1) {
    return `${what}: bucketCounts must have one count more than boundaries (the last bucket is above the last boundary): ${boundaries.length} boundaries, so ${boundaries.length + 1} counts, got ${Array.isArray(bucketCounts) ? bucketCounts.length : typeof bucketCounts}`
  }
  if (fixed.exists && (fixed.boundaries === undefined || !sameNumbers(fixed.boundaries, boundaries))) {
    const first = fixed.boundaries === undefined ? 'the SDK\'s default buckets (its first points had no boundaries)' : `boundaries [${fixed.boundaries.join(', ')}]`
    return `${what}: boundaries [${boundaries.join(', ')}] differ from ${first}; every point of a histogram must use the same boundaries, or another name`
  }
  let total = 0
  for (let i = 0; i < bucketCounts.length; i++) {
    const bucketCount = bucketCounts[i]
    if (!Number.isSafeInteger(bucketCount) || bucketCount < 0) {
      return `${what}: bucketCounts[${i}] is ${String(bucketCount)}; each count is a whole number of observations, 0 or more`
    }
    total += bucketCount
  }
  if (!Number.isSafeInteger(total)) return `${what}: bucketCounts add up to more than ${Number.MAX_SAFE_INTEGER}; emit the batch in smaller parts`
  // the SDK drops negative observations of a histogram; a negative sum means some were negative
  if (point.value < 0) return `${what}: value is the sum of the batch's observations, and histogram observations cannot be negative (got ${point.value})`
  if (total === 0 && point.value !== 0) return `${what}: value is the sum of the batch's observations, so with no observations (all bucketCounts 0) it must be 0, got ${point.value}`
  count.value = total
  return undefined
}

export function isAscending(values: readonly number[]): boolean {
  for (let i = 0; i < values.length; i++) {
    if (typeof values[i] !== 'number' || !Number.isFinite(values[i])) return false
    if (i > 0 && values[i] <= values[i - 1]) return false
  }
  return true
}

export function sameNumbers(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** The SDK's key for an attribute set (sdk-metrics utils.hashAttributes), to meet its data points. */
function hashAttributes(attributes: Attributes): string {
  const keys = Object.keys(attributes)
  if (keys.length === 0) return ''
  keys.sort()
  return JSON.stringify(keys.map((key) => [key, attributes[key]]))
}

function earlier(a: HrTime, b: HrTime): boolean {
  return a[0] < b[0] || (a[0] === b[0] && a[1] < b[1])
}

export function hrTimeNow(): HrTime {
  const ms = Date.now()
  return [Math.floor(ms / 1000), (ms % 1000) * 1_000_000]
}
