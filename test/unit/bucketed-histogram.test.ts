// Histogram points with bucketCounts (batches bucketed in the kernel): the exported cumulative
// histogram is exactly what recording each observation would give, batches and single values of
// one name mix, and malformed batches are refused with the reason and the fix.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { PrometheusSerializer } from '@opentelemetry/exporter-prometheus'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { DataPointType } from '@opentelemetry/sdk-metrics'
import type { Histogram, HistogramMetricData, ResourceMetrics } from '@opentelemetry/sdk-metrics'
import { MetricsPipeline } from '../../runtime/telemetry/metrics.ts'
import type { MetricPointInput } from '../../runtime/telemetry/signals.ts'

const boundaries = [0.001, 0.01, 0.1, 1]

function pipeline(): { metrics: MetricsPipeline; warnings: string[] } {
  const warnings: string[] = []
  return { metrics: new MetricsPipeline(resourceFromAttributes({ 'service.name': 'test' }), (_level, message) => warnings.push(message)), warnings }
}

/** The observations as a batch: counts per bucket with the SDK's rule (upper bounds inclusive). */
function bucketed(values: number[], attributes?: Record<string, string>): MetricPointInput {
  const bucketCounts = new Array<number>(boundaries.length + 1).fill(0)
  for (const value of values) {
    const index = boundaries.findIndex((bound) => value <= bound)
    bucketCounts[index < 0 ? boundaries.length : index]++
  }
  return { name: 'op.duration', kind: 'histogram', unit: 's', value: values.reduce((a, b) => a + b, 0), boundaries, bucketCounts, attributes }
}

function single(value: number, attributes?: Record<string, string>): MetricPointInput {
  return { name: 'op.duration', kind: 'histogram', unit: 's', value, boundaries, attributes }
}

function histogramsNamed(collected: ResourceMetrics, name: string): HistogramMetricData[] {
  return collected.scopeMetrics.flatMap((scope) => scope.metrics).filter((metric): metric is HistogramMetricData => metric.descriptor.name === name && metric.dataPointType === DataPointType.HISTOGRAM)
}

/** attributes JSON → [counts, sum, count, min, max], for exact comparison. */
function summary(metric: HistogramMetricData): Record<string, [number[], number | undefined, number, number | undefined, number | undefined]> {
  const table: Record<string, [number[], number | undefined, number, number | undefined, number | undefined]> = {}
  for (const point of metric.dataPoints) {
    const value: Histogram = point.value
    assert.deepEqual(value.buckets.boundaries, boundaries)
    table[JSON.stringify(point.attributes)] = [value.buckets.counts, value.sum, value.count, value.min, value.max]
  }
  return table
}

// binary fractions, so sums are exact in any order
const observations = [0.00048828125, 0.0009765625, 0.0078125, 0.0625, 0.0625, 0.5, 0.5, 0.75, 2, 16]

describe('bucketed histogram points', () => {
  it('a batch gives the buckets, sum and count that recording each observation gives; only min and max are left out', async () => {
    const one = pipeline()
    one.metrics.record('fileio', undefined, observations.map((value) => single(value)))
    const batch = pipeline()
    assert.equal(batch.metrics.record('fileio', undefined, [bucketed(observations)]), undefined)

    const [recorded] = histogramsNamed(await one.metrics.collect(), 'op.duration')
    const [batched] = histogramsNamed(await batch.metrics.collect(), 'op.duration')
    const expectedCounts = [2, 1, 2, 3, 2]
    assert.deepEqual(summary(recorded), { '{}': [expectedCounts, 19.88427734375, 10, 0.00048828125, 16] })
    assert.deepEqual(summary(batched), { '{}': [expectedCounts, 19.88427734375, 10, undefined, undefined] })
    assert.deepEqual(batched.descriptor, { name: 'op.duration', unit: 's', description: '', valueType: recorded.descriptor.valueType })
    assert.equal(batched.aggregationTemporality, recorded.aggregationTemporality)
    assert.deepEqual(batch.warnings, [])
  })

  it('batches and single values of one name and attributes add up in one cumulative series, whichever comes first', async () => {
    for (const batchFirst of [true, false]) {
      const { metrics } = pipeline()
      const head = observations.slice(0, 4)
      const tail = observations.slice(4)
      const emitBatch = () => assert.equal(metrics.record('fileio', '1.0', [bucketed(head, { op: 'read' })]), undefined)
      const emitSingles = () => assert.equal(metrics.record('fileio', '1.0', tail.map((value) => single(value, { op: 'read' }))), undefined)
      if (batchFirst) { emitBatch(); emitSingles() } else { emitSingles(); emitBatch() }
      const first = histogramsNamed(await metrics.collect(), 'op.duration')
      assert.equal(first.length, 1, 'one metric, not one per path')
      assert.deepEqual(summary(first[0]), { '{"op":"read"}': [[2, 1, 2, 3, 2], 19.88427734375, 10, undefined, undefined] })

      // cumulative: the next collection adds the next batch to what was there
      metrics.record('fileio', '1.0', [bucketed([0.5, 4], { op: 'read' }), bucketed([0.01], { op: 'write' })])
      const [second] = histogramsNamed(await metrics.collect(), 'op.duration')
      assert.deepEqual(summary(second), {
        '{"op":"read"}': [[2, 1, 2, 4, 3], 24.38427734375, 12, undefined, undefined],
        '{"op":"write"}': [[0, 1, 0, 0, 0], 0.01, 1, undefined, undefined],
      })
      assert.ok(second.dataPoints.every((point) => point.startTime[0] <= point.endTime[0]))
    }
  })

  it('attribute order does not split a series, and the histogram stays in its plugin\'s scope next to its other metrics', async () => {
    const { metrics } = pipeline()
    metrics.record('tcp', undefined, [
      { name: 'tcp.connections', kind: 'counter', value: 3 },
      { ...bucketed([0.5]), attributes: { a: '1', b: '2' } },
      { ...bucketed([2]), attributes: { b: '2', a: '1' } },
    ])
    const collected = await metrics.collect()
    const tcp = collected.scopeMetrics.filter((scope) => scope.scope.name === 'tcp')
    assert.equal(tcp.length, 1)
    assert.deepEqual(tcp[0].metrics.map((metric) => metric.descriptor.name).sort(), ['op.duration', 'tcp.connections'])
    assert.deepEqual(summary(histogramsNamed(collected, 'op.duration')[0]), { '{"a":"1","b":"2"}': [[0, 0, 0, 1, 1], 2.5, 2, undefined, undefined] })
  })

  it('a batch of 2^50 observations is added at once: no work per observation', async () => {
    const { metrics } = pipeline()
    const huge = 2 ** 50
    const started = performance.now()
    assert.equal(metrics.record('x', undefined, [{ name: 'op.duration', kind: 'histogram', value: huge * 0.5, boundaries, bucketCounts: [0, 0, 0, huge, 0] }]), undefined)
    assert.ok(performance.now() - started < 100, 'recording took as long as a loop over the observations would')
    const [metric] = histogramsNamed(await metrics.collect(), 'op.duration')
    assert.deepEqual(summary(metric), { '{}': [[0, 0, 0, huge, 0], huge * 0.5, huge, undefined, undefined] })
  })

  it('a batch with no observations changes nothing and exports no data point', async () => {
    const { metrics } = pipeline()
    assert.equal(metrics.record('x', undefined, [{ name: 'op.duration', kind: 'histogram', value: 0, boundaries, bucketCounts: [0, 0, 0, 0, 0] }]), undefined)
    assert.deepEqual(histogramsNamed(await metrics.collect(), 'op.duration'), [])
  })

  it('past 2000 attribute sets, new ones go to the otel.metric.overflow series, as the SDK does', async () => {
    const { metrics } = pipeline()
    for (let i = 0; i < 2005; i++) metrics.record('x', undefined, [bucketed([0.5], { i: String(i) })])
    const [metric] = histogramsNamed(await metrics.collect(), 'op.duration')
    assert.equal(metric.dataPoints.length, 2000)
    const overflow = metric.dataPoints.find((point) => point.attributes['otel.metric.overflow'] === true)
    assert.equal(overflow?.value.count, 6)
  })

  it('Prometheus text shows the cumulative buckets, sum and count', async () => {
    const { metrics } = pipeline()
    metrics.record('x', undefined, [bucketed(observations)])
    const text = new PrometheusSerializer('', false).serialize(await metrics.collect())
    const lines = text.split('\n').filter((line) => line.startsWith('op_duration_'))
    assert.deepEqual(lines, [
      'op_duration_count{otel_scope_name="x"} 10',
      'op_duration_sum{otel_scope_name="x"} 19.88427734375',
      'op_duration_bucket{otel_scope_name="x",le="0.001"} 2',
      'op_duration_bucket{otel_scope_name="x",le="0.01"} 3',
      'op_duration_bucket{otel_scope_name="x",le="0.1"} 5',
      'op_duration_bucket{otel_scope_name="x",le="1"} 8',
      'op_duration_bucket{otel_scope_name="x",le="+Inf"} 10',
    ])
  })
})

describe('bucketed histogram points: bad input is refused with the reason and the fix, and leaves the histogram as it was', () => {
  const cases: [string, MetricPointInput[], string][] = [
    ['one count too few', [{ name: 'h', kind: 'histogram', value: 1, boundaries: [1, 2], bucketCounts: [1, 0] }], 'metric "h": bucketCounts must have one count more than boundaries (the last bucket is above the last boundary): 2 boundaries, so 3 counts, got 2'],
    ['not an array', [{ name: 'h', kind: 'histogram', value: 1, boundaries: [1, 2], bucketCounts: 3 as never }], 'metric "h": bucketCounts must have one count more than boundaries (the last bucket is above the last boundary): 2 boundaries, so 3 counts, got number'],
    ['a negative count', [{ name: 'h', kind: 'histogram', value: 1, boundaries: [1, 2], bucketCounts: [1, -1, 0] }], 'metric "h": bucketCounts[1] is -1; each count is a whole number of observations, 0 or more'],
    ['a fractional count', [{ name: 'h', kind: 'histogram', value: 1, boundaries: [1, 2], bucketCounts: [0, 0, 1.5] }], 'metric "h": bucketCounts[2] is 1.5; each count is a whole number of observations, 0 or more'],
    ['a NaN count', [{ name: 'h', kind: 'histogram', value: 1, boundaries: [1, 2], bucketCounts: [Number.NaN, 0, 1] }], 'metric "h": bucketCounts[0] is NaN; each count is a whole number of observations, 0 or more'],
    ['no boundaries', [{ name: 'h', kind: 'histogram', value: 1, bucketCounts: [1] }], 'metric "h": a point with bucketCounts needs boundaries: finite numbers in strictly increasing order'],
    ['descending boundaries', [{ name: 'h', kind: 'histogram', value: 1, boundaries: [2, 1], bucketCounts: [1, 0, 0] }], 'metric "h": a point with bucketCounts needs boundaries: finite numbers in strictly increasing order'],
    ['on a counter', [{ name: 'h', kind: 'counter', value: 1, boundaries: [1], bucketCounts: [1, 0] }], 'metric "h": bucketCounts is only for kind "histogram" (a batch of observations already bucketed), not "counter"'],
    ['a negative sum', [{ name: 'h', kind: 'histogram', value: -1, boundaries: [1], bucketCounts: [1, 0] }], 'metric "h": value is the sum of the batch\'s observations, and histogram observations cannot be negative (got -1)'],
    ['a sum without observations', [{ name: 'h', kind: 'histogram', value: 3, boundaries: [1], bucketCounts: [0, 0] }], 'metric "h": value is the sum of the batch\'s observations, so with no observations (all bucketCounts 0) it must be 0, got 3'],
    ['boundaries changing between batches', [
      { name: 'h', kind: 'histogram', value: 0.5, boundaries: [1, 2], bucketCounts: [1, 0, 0] },
      { name: 'h', kind: 'histogram', value: 0.5, boundaries: [1, 4], bucketCounts: [1, 0, 0] },
    ], 'metric "h": boundaries [1, 4] differ from boundaries [1, 2]; every point of a histogram must use the same boundaries, or another name'],
    ['a single value with other boundaries than the batches', [
      { name: 'h', kind: 'histogram', value: 0.5, boundaries: [1, 2], bucketCounts: [1, 0, 0] },
      { name: 'h', kind: 'histogram', value: 0.5, boundaries: [1, 3] },
    ], 'metric "h": boundaries [1, 3] differ from boundaries [1, 2]; every point of a histogram must use the same boundaries, or another name'],
    ['a batch with other boundaries than the single values', [
      { name: 'h', kind: 'histogram', value: 0.5, boundaries: [1, 3] },
      { name: 'h', kind: 'histogram', value: 0.5, boundaries: [1, 2], bucketCounts: [1, 0, 0] },
    ], 'metric "h": boundaries [1, 2] differ from boundaries [1, 3]; every point of a histogram must use the same boundaries, or another name'],
    ['a batch on a histogram of the SDK\'s default buckets', [
      { name: 'h', kind: 'histogram', value: 0.5 },
      { name: 'h', kind: 'histogram', value: 0.5, boundaries: [1, 2], bucketCounts: [1, 0, 0] },
    ], 'metric "h": boundaries [1, 2] differ from the SDK\'s default buckets (its first points had no boundaries); every point of a histogram must use the same boundaries, or another name'],
    ['a batch on a name that is a counter', [
      { name: 'h', kind: 'counter', value: 1 },
      { name: 'h', kind: 'histogram', value: 0.5, boundaries: [1, 2], bucketCounts: [1, 0, 0] },
    ], 'metric "h" was first recorded as a counter and cannot also be a histogram; use another name'],
  ]
  for (const [what, points, message] of cases) {
    it(what, async () => {
      const { metrics } = pipeline()
      const before = points.slice(0, -1)
      assert.equal(metrics.record('x', undefined, before), undefined)
      const snapshot = JSON.stringify(histogramsNamed(await metrics.collect(), 'h').map((metric) => metric.dataPoints.map((point) => point.value)))
      assert.equal(metrics.record('x', undefined, points.slice(-1)), message)
      assert.equal(metrics.rejected, 1)
      const after = JSON.stringify(histogramsNamed(await metrics.collect(), 'h').map((metric) => metric.dataPoints.map((point) => point.value)))
      assert.equal(after, snapshot)
    })
  }
})
