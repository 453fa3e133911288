// Histogram batches bucketed in the kernel (points with bucketCounts) reach a real OpenTelemetry
// Collector as cumulative explicit-bucket histograms with exactly the buckets, sum and count of
// their observations, merged with single values of the same name, over OTLP/HTTP and gRPC.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { createTelemetry } from '../../runtime/telemetry/index.ts'
import type { Telemetry } from '../../runtime/telemetry/index.ts'
import { attributesOf, flatten, startCollector } from '../peers/otelcol.ts'
import type { Collector, FlatItem } from '../peers/otelcol.ts'
import { scratchDir } from '../peers/scratch-dir.ts'

// 2^k µs in seconds, as a kernel's log2 buckets give them
const boundaries = [0.000001, 0.000002, 0.000004, 0.000008, 0.000016]

async function exporterToCollector(t: TestContext, env: (collector: Collector) => Record<string, string>): Promise<{ collector: Collector; telemetry: Telemetry; warnings: string[] }> {
  const collector = await startCollector()
  const state: { telemetry?: Telemetry } = {}
  t.after(async () => {
    await state.telemetry?.shutdown(2000)
    await collector.stop()
  })
  const warnings: string[] = []
  state.telemetry = await createTelemetry({
    config: { dataDir: scratchDir('periscope-bucketed-'), batch: { intervalMs: 100 }, metrics: { intervalMs: 600_000 }, prometheus: { enabled: false } },
    env: env(collector),
    log: (level, message) => { if (level !== 'info') warnings.push(`${level}: ${message}`) },
  })
  return { collector, telemetry: state.telemetry, warnings }
}

function histogramPoints(metrics: FlatItem[], name: string): Record<string, Record<string, unknown>> {
  const found = metrics.filter((m) => m.item.name === name)
  assert.ok(found.length > 0, `metric ${name} not found among ${metrics.map((m) => m.item.name).join(', ')}`)
  const latest = found.at(-1) as FlatItem
  assert.deepEqual(latest.scope, { name: 'sched', version: '0.1.0' })
  assert.equal(latest.item.unit, 's')
  const histogram = latest.item.histogram as { aggregationTemporality: number; dataPoints: Record<string, unknown>[] }
  assert.equal(histogram.aggregationTemporality, 2, 'cumulative')
  const byAttributes: Record<string, Record<string, unknown>> = {}
  for (const point of histogram.dataPoints) byAttributes[JSON.stringify(attributesOf(point.attributes))] = point
  return byAttributes
}

async function exportsExactBuckets(t: TestContext, env: (collector: Collector) => Record<string, string>) {
  const { collector, telemetry, warnings } = await exporterToCollector(t, env)
  const sched = telemetry.scope('sched', '0.1.0')
  sched.metrics([
    // 3 + 5 + 0 + 2 + 0 + 1 = 11 observations summing to 40 µs
    { name: 'sched.runqueue.latency', kind: 'histogram', unit: 's', value: 0.00004, boundaries, bucketCounts: [3, 5, 0, 2, 0, 1], attributes: { 'cpu.id': 0 } },
    { name: 'sched.runqueue.latency', kind: 'histogram', unit: 's', value: 0.00001, boundaries, bucketCounts: [0, 0, 1, 0, 1, 0], attributes: { 'cpu.id': 0 } },
    { name: 'sched.runqueue.latency', kind: 'histogram', unit: 's', value: 0.001, boundaries, bucketCounts: [0, 0, 0, 0, 0, 1000], attributes: { 'cpu.id': 1 } },
    // a single observation of the same series lands in the same buckets
    { name: 'sched.runqueue.latency', kind: 'histogram', unit: 's', value: 0.000003, boundaries, attributes: { 'cpu.id': 1 } },
  ])
  await telemetry.flush(5000)
  const lines = await collector.waitFor('metrics', (l) => flatten('metrics', l).some((m) => m.item.name === 'sched.runqueue.latency'))
  const points = histogramPoints(flatten('metrics', lines), 'sched.runqueue.latency')
  assert.deepEqual(Object.keys(points).sort(), ['{"cpu.id":0}', '{"cpu.id":1}'])
  const cpu0 = points['{"cpu.id":0}']
  assert.deepEqual(cpu0.explicitBounds, boundaries)
  assert.deepEqual(cpu0.bucketCounts, ['3', '5', '1', '2', '1', '1'])
  assert.equal(cpu0.count, '13')
  assert.equal(cpu0.sum, 0.00004 + 0.00001)
  assert.equal(cpu0.min, undefined, 'a batch carries no min')
  assert.equal(cpu0.max, undefined, 'a batch carries no max')
  const cpu1 = points['{"cpu.id":1}']
  assert.deepEqual(cpu1.bucketCounts, ['0', '0', '1', '0', '0', '1000'])
  assert.equal(cpu1.count, '1001')
  assert.equal(cpu1.sum, 0.001 + 0.000003)

  // cumulative: the next export carries the running totals
  sched.metrics([{ name: 'sched.runqueue.latency', kind: 'histogram', unit: 's', value: 0.000001, boundaries, bucketCounts: [1, 0, 0, 0, 0, 0], attributes: { 'cpu.id': 0 } }])
  await telemetry.flush(5000)
  const later = await collector.waitFor('metrics', (l) => histogramPoints(flatten('metrics', l), 'sched.runqueue.latency')['{"cpu.id":0}']?.count === '14')
  const cpu0Later = histogramPoints(flatten('metrics', later), 'sched.runqueue.latency')['{"cpu.id":0}']
  assert.deepEqual(cpu0Later.bucketCounts, ['4', '5', '1', '2', '1', '1'])
  assert.equal(cpu0Later.sum, 0.00004 + 0.00001 + 0.000001)
  assert.equal(cpu0Later.startTimeUnixNano, cpu0.startTimeUnixNano)
  assert.deepEqual(warnings, [])
}

test('bucketed histogram batches reach a real Collector over OTLP/HTTP with exact buckets, sum and count', async (t) => {
  await exportsExactBuckets(t, (c) => ({ OTEL_EXPORTER_OTLP_ENDPOINT: c.httpEndpoint }))
})

test('bucketed histogram batches reach a real Collector over gRPC with exact buckets, sum and count', async (t) => {
  await exportsExactBuckets(t, (c) => ({ OTEL_EXPORTER_OTLP_ENDPOINT: c.grpcEndpoint, OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }))
})
