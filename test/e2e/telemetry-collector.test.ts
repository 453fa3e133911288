// The exporter against a real OpenTelemetry Collector (test/peers/otelcol): what plugins emit must
// arrive in the Collector's file exporter output with exactly the ids, times, attributes, values
// and resources given, over OTLP/HTTP protobuf and over gRPC.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { createTelemetry } from '../../runtime/telemetry/index.ts'
import type { Telemetry, TelemetryLog } from '../../runtime/telemetry/index.ts'
import { attributesOf, flatten, startCollector } from '../peers/otelcol.ts'
import type { Collector, FlatItem } from '../peers/otelcol.ts'
import { scratchDir } from '../peers/scratch-dir.ts'

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736'
const PARENT_ID = '00f067aa0ba902b7'
const ROOT_TRACE_ID = 'a3ce929d0e0e47364bf92f3577b34da6'
const T0 = 1_767_225_600_000_000_000 // 2026-01-01T00:00:00Z in ns, exactly representable
// a time in ns as a double, printed exactly (String() would print the shortest round-trip form)
const ns = (value: number): string => BigInt(value).toString()

function collectingLog(): { log: TelemetryLog; lines: string[] } {
  const lines: string[] = []
  return { lines, log: (level, message) => lines.push(`${level}: ${message}`) }
}

function metricNamed(items: FlatItem[], name: string): FlatItem {
  const found = items.filter((m) => m.item.name === name)
  assert.ok(found.length > 0, `metric ${name} not found among ${items.map((m) => m.item.name).join(', ')}`)
  return found.at(-1) as FlatItem
}

function pointsOf(metric: FlatItem, field: string): { attributes: Record<string, unknown>; point: Record<string, unknown> }[] {
  const data = metric.item[field] as { dataPoints: Record<string, unknown>[] }
  return data.dataPoints.map((point) => ({ attributes: attributesOf(point.attributes), point }))
}

/**
 * A real Collector and an exporter pointed at it by `env(collector)`; after-hooks run in
 * registration order, so the exporter shuts down first, while the Collector is still up.
 */
async function exporterToCollector(t: TestContext, env: (collector: Collector) => Record<string, string>) {
  const collector = await startCollector()
  const state: { telemetry?: Telemetry } = {}
  t.after(async () => {
    await state.telemetry?.shutdown(2000)
    await collector.stop()
  })
  const { log, lines: logLines } = collectingLog()
  const telemetry = (state.telemetry = await createTelemetry({
    config: { dataDir: scratchDir('periscope-e2e-'), batch: { intervalMs: 100 }, metrics: { intervalMs: 600_000 } },
    env: env(collector),
    log,
  }))
  return { collector, telemetry, logLines }
}

test('spans, metrics and logs reach a real Collector over OTLP/HTTP protobuf, exactly', async (t) => {
  const { collector, telemetry, logLines } = await exporterToCollector(t, (c) => ({
    OTEL_EXPORTER_OTLP_ENDPOINT: c.httpEndpoint,
    OTEL_SERVICE_NAME: 'periscope-e2e',
    OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=e2e,team=s%20re',
  }))
  assert.equal(telemetry.settings.targets.traces.kind, 'otlp')

  const http = telemetry.scope('http', '1.2.3')
  http.spans([
    {
      name: 'GET /users/{id}',
      kind: 'server',
      startTimeNs: T0,
      endTimeNs: T0 + 5_250_000,
      traceId: TRACE_ID,
      parentSpanId: PARENT_ID,
      attributes: { 'http.request.method': 'GET', 'url.path': '/users/7', 'http.response.status_code': 503, 'server.address': 'api' },
      status: { code: 'error', message: 'upstream unavailable' },
      events: [{ name: 'first byte', timeNs: T0 + 1_000_000, attributes: { 'network.io.direction': 'transmit' } }],
      process: { pid: 4242, executablePath: '/usr/sbin/nginx', commandLine: 'nginx: worker process' },
    },
    { name: 'redis GET', kind: 'client', startTimeNs: T0, endTimeNs: T0 + 1000, traceId: ROOT_TRACE_ID, attributes: { 'db.system.name': 'redis' } },
    { name: 'no process', startTimeNs: T0, endTimeNs: T0 + 2000 },
  ])
  http.metrics([
    { name: 'http.server.requests', kind: 'counter', value: 3, attributes: { 'http.route': '/users/{id}' } },
    { name: 'http.server.requests', kind: 'counter', value: 4, attributes: { 'http.route': '/users/{id}' } },
    { name: 'http.server.request.duration', kind: 'histogram', value: 5, unit: 'ms', boundaries: [10, 100], attributes: { 'http.route': '/' } },
    { name: 'http.server.request.duration', kind: 'histogram', value: 50, unit: 'ms', boundaries: [10, 100], attributes: { 'http.route': '/' } },
    { name: 'http.server.request.duration', kind: 'histogram', value: 500, unit: 'ms', boundaries: [10, 100], attributes: { 'http.route': '/' } },
    { name: 'tcp.rtt', kind: 'exponential_histogram', value: 2, unit: 'us' },
    { name: 'tcp.rtt', kind: 'exponential_histogram', value: 4, unit: 'us' },
    { name: 'tcp.connections.open', kind: 'updown', value: 5 },
    { name: 'tcp.connections.open', kind: 'updown', value: -2 },
    { name: 'memory.heap.bytes', kind: 'gauge', value: 4096, unit: 'By' },
  ])
  telemetry.scope('exec-audit').logs([
    {
      timeNs: T0 + 7,
      severity: 'warn',
      eventName: 'process.exec',
      body: { 'process.executable.path': '/usr/bin/curl', argc: 2 },
      attributes: { 'user.id': '1000' },
      process: { pid: 777, executablePath: '/usr/bin/bash' },
    },
  ])
  telemetry.registerSelfMetrics('bus', () => [
    { name: 'periscope.bpf.events.received', kind: 'counter', value: 1234, attributes: { 'bpf.object': 'http' } },
  ])

  await telemetry.flush(5000)

  const spanLines = await collector.waitFor('traces', (lines) => flatten('traces', lines).length >= 3)
  const spans = flatten('traces', spanLines)
  assert.equal(spans.length, 3)
  const server = spans.find((s) => s.item.name === 'GET /users/{id}') as FlatItem
  assert.equal(server.item.traceId, TRACE_ID)
  assert.equal(server.item.parentSpanId, PARENT_ID)
  assert.match(server.item.spanId as string, /^[0-9a-f]{16}$/)
  assert.equal(server.item.kind, 2)
  assert.equal(server.item.startTimeUnixNano, ns(T0))
  assert.equal(server.item.endTimeUnixNano, ns(T0 + 5_250_000))
  assert.deepEqual(attributesOf(server.item.attributes), {
    'http.request.method': 'GET',
    'url.path': '/users/7',
    'http.response.status_code': 503,
    'server.address': 'api',
  })
  assert.deepEqual(server.item.status, { message: 'upstream unavailable', code: 2 })
  const events = server.item.events as { name: string; timeUnixNano: string; attributes: unknown }[]
  assert.equal(events.length, 1)
  assert.equal(events[0].name, 'first byte')
  assert.equal(events[0].timeUnixNano, ns(T0 + 1_000_000))
  assert.deepEqual(attributesOf(events[0].attributes), { 'network.io.direction': 'transmit' })
  assert.deepEqual(server.scope, { name: 'http', version: '1.2.3' })
  // the traced process's resource, not Periscope's
  assert.equal(server.resource['service.name'], 'nginx')
  assert.equal(server.resource['process.pid'], 4242)
  assert.equal(server.resource['process.executable.path'], '/usr/sbin/nginx')
  assert.equal(server.resource['process.executable.name'], 'nginx')
  assert.equal(server.resource['process.command_line'], 'nginx: worker process')
  assert.equal(server.resource['collection.method'], 'ebpf')
  assert.equal(server.resource['deployment.environment.name'], 'e2e')
  assert.equal(server.resource.team, 's re')
  assert.equal(typeof server.resource['host.name'], 'string')

  const root = spans.find((s) => s.item.name === 'redis GET') as FlatItem
  assert.equal(root.item.traceId, ROOT_TRACE_ID)
  assert.equal(root.item.parentSpanId ?? '', '', 'a span that starts a known trace has no parent')
  assert.equal(root.item.kind, 3)
  const plain = spans.find((s) => s.item.name === 'no process') as FlatItem
  assert.equal(plain.resource['service.name'], 'periscope-e2e')
  assert.equal(plain.resource['process.pid'], process.pid)
  assert.equal(plain.resource['collection.method'], 'ebpf')

  const logLinesOut = await collector.waitFor('logs', (lines) => flatten('logs', lines).length >= 1)
  const records = flatten('logs', logLinesOut)
  assert.equal(records.length, 1)
  const record = records[0]
  assert.equal(record.item.timeUnixNano, ns(T0 + 7))
  assert.equal(record.item.severityNumber, 13)
  assert.equal(record.item.severityText, 'WARN')
  assert.equal(record.item.eventName, 'process.exec')
  assert.deepEqual(attributesOf((record.item.body as { kvlistValue: { values: unknown } }).kvlistValue.values), {
    'process.executable.path': '/usr/bin/curl',
    argc: 2,
  })
  assert.deepEqual(attributesOf(record.item.attributes), { 'user.id': '1000' })
  assert.deepEqual(record.scope, { name: 'exec-audit' })
  assert.equal(record.resource['service.name'], 'bash')
  assert.equal(record.resource['process.pid'], 777)

  const metricLines = await collector.waitFor('metrics', (lines) => flatten('metrics', lines).some((m) => m.item.name === 'tcp.rtt'))
  const metrics = flatten('metrics', metricLines)
  const requests = metricNamed(metrics, 'http.server.requests')
  assert.deepEqual(requests.scope, { name: 'http', version: '1.2.3' })
  assert.equal(requests.resource['service.name'], 'periscope-e2e')
  assert.equal(requests.resource['collection.method'], 'ebpf')
  const [requestPoint] = pointsOf(requests, 'sum')
  assert.deepEqual(requestPoint.attributes, { 'http.route': '/users/{id}' })
  assert.equal(Number(requestPoint.point.asDouble ?? requestPoint.point.asInt), 7)
  assert.equal((requests.item.sum as { isMonotonic: boolean }).isMonotonic, true)

  const duration = metricNamed(metrics, 'http.server.request.duration')
  assert.equal(duration.item.unit, 'ms')
  const [histogram] = pointsOf(duration, 'histogram')
  assert.deepEqual(histogram.point.explicitBounds, [10, 100])
  assert.deepEqual(histogram.point.bucketCounts, ['1', '1', '1'])
  assert.equal(histogram.point.count, '3')
  assert.equal(histogram.point.sum, 555)
  assert.equal(histogram.point.min, 5)
  assert.equal(histogram.point.max, 500)

  const rtt = metricNamed(metrics, 'tcp.rtt')
  assert.deepEqual(rtt.scope, { name: 'http', version: '1.2.3' }, 'exponential histograms share the plugin scope')
  const [exponential] = pointsOf(rtt, 'exponentialHistogram')
  assert.equal(exponential.point.count, '2')
  assert.equal(exponential.point.sum, 6)
  assert.equal(exponential.point.min, 2)
  assert.equal(exponential.point.max, 4)

  const open = metricNamed(metrics, 'tcp.connections.open')
  assert.equal((open.item.sum as { isMonotonic?: boolean }).isMonotonic ?? false, false)
  assert.equal(Number(pointsOf(open, 'sum')[0].point.asDouble ?? pointsOf(open, 'sum')[0].point.asInt), 3)
  const heap = metricNamed(metrics, 'memory.heap.bytes')
  assert.equal(Number(pointsOf(heap, 'gauge')[0].point.asDouble ?? pointsOf(heap, 'gauge')[0].point.asInt), 4096)

  // self-metrics: the runtime's own source, the exporter's queues, and the runtime's CPU and RSS
  const received = metricNamed(metrics, 'periscope.bpf.events.received')
  assert.deepEqual(received.scope, { name: 'periscope' })
  assert.deepEqual(pointsOf(received, 'sum').map((p) => [p.attributes, Number(p.point.asDouble ?? p.point.asInt)]), [[{ 'bpf.object': 'http' }, 1234]])
  const capacity = metricNamed(metrics, 'periscope.exporter.queue.capacity')
  assert.deepEqual(
    pointsOf(capacity, 'gauge').map((p) => [p.attributes.signal, Number(p.point.asDouble ?? p.point.asInt)]).sort(),
    [['logs', 8192], ['metrics', 32], ['profiles', 32], ['traces', 8192]],
  )
  const rss = pointsOf(metricNamed(metrics, 'process.memory.usage'), 'sum')
  assert.ok(Number(rss[0].point.asDouble ?? rss[0].point.asInt) > 10 * 1024 * 1024, 'RSS of a Node process is above 10 MiB')
  const cpu = pointsOf(metricNamed(metrics, 'process.cpu.time'), 'sum')
  assert.deepEqual(cpu.map((p) => p.attributes['cpu.mode']).sort(), ['system', 'user'])
  for (const signal of ['periscope.exporter.sent', 'periscope.exporter.failed', 'periscope.exporter.dropped', 'periscope.exporter.queue.size']) {
    metricNamed(metrics, signal)
  }

  const stats = telemetry.stats()
  assert.equal(stats.signals.traces.sent, 3)
  assert.equal(stats.signals.logs.sent, 1)
  assert.equal(stats.signals.traces.dropped, 0)
  assert.equal(stats.signals.traces.failedExports, 0)
  assert.deepEqual(logLines.filter((line) => !line.startsWith('info')), [])
})

test('spans, metrics, logs and profiles reach a real Collector over gRPC', async (t) => {
  const { collector, telemetry, logLines } = await exporterToCollector(t, (c) => ({
    OTEL_EXPORTER_OTLP_ENDPOINT: c.grpcEndpoint, OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc', OTEL_EXPORTER_OTLP_HEADERS: 'x-tenant=periscope',
  }))
  assert.deepEqual(telemetry.settings.targets.traces, {
    kind: 'otlp',
    protocol: 'grpc',
    url: `${collector.grpcEndpoint}/`,
    headers: { 'x-tenant': 'periscope' },
  })
  const scope = telemetry.scope('grpc-plugin', '9.9.9')
  scope.spans([{ name: 'grpc span', kind: 'producer', startTimeNs: T0, endTimeNs: T0 + 10, traceId: TRACE_ID, parentSpanId: PARENT_ID }])
  scope.metrics([{ name: 'grpc.counter', kind: 'counter', value: 11 }])
  scope.logs([{ body: 'over grpc', severity: 'error', timeNs: T0 }])
  scope.profiles([{ type: 'offcpu', frames: [{ address: 0x10, function: 'futex_wait' }], values: [250_000], process: { pid: 9, command: 'java' } }])
  await telemetry.flush(5000)

  const spans = flatten('traces', await collector.waitFor('traces', (lines) => lines.length >= 1))
  assert.deepEqual(
    spans.map((s) => [s.item.name, s.item.kind, s.item.traceId, s.item.parentSpanId, s.item.startTimeUnixNano]),
    [['grpc span', 4, TRACE_ID, PARENT_ID, ns(T0)]],
  )
  const metrics = flatten('metrics', await collector.waitFor('metrics', (lines) => lines.length >= 1))
  const counter = metricNamed(metrics, 'grpc.counter')
  assert.deepEqual(counter.scope, { name: 'grpc-plugin', version: '9.9.9' })
  assert.equal(Number(pointsOf(counter, 'sum')[0].point.asDouble ?? pointsOf(counter, 'sum')[0].point.asInt), 11)
  const records = flatten('logs', await collector.waitFor('logs', (lines) => lines.length >= 1))
  assert.deepEqual(
    records.map((r) => [r.item.body, r.item.severityText, r.item.timeUnixNano]),
    [[{ stringValue: 'over grpc' }, 'ERROR', ns(T0)]],
  )
  const profiles = flatten('profiles', await collector.waitFor('profiles', (lines) => lines.length >= 1))
  assert.equal(profiles.length, 1)
  assert.equal(profiles[0].resource['service.name'], 'java')
  assert.equal(profiles[0].resource['process.pid'], 9)
  assert.deepEqual(logLines.filter((line) => !line.startsWith('info')), [])
})
