// Bad input never crashes the runtime: an unreachable endpoint, a bad URL, malformed resource
// attributes, a busy Prometheus port and malformed plugin output each give a clear message
// naming cause and fix, and the exporter keeps working.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { createTelemetry } from '../../runtime/telemetry/index.ts'
import { flatten, freePort } from '../peers/otelcol.ts'
import { scratchDir } from '../peers/scratch-dir.ts'

const T0 = 1_767_225_600_000_000_000

function recorder() {
  const lines: string[] = []
  return { lines, log: (level: string, message: string) => lines.push(`${level}: ${message}`) }
}

test('an unreachable endpoint: a warning with cause and fix, the runtime keeps running, shutdown keeps its deadline', async () => {
  const port = await freePort() // nothing listens here
  const { lines, log } = recorder()
  const telemetry = await createTelemetry({
    config: { dataDir: scratchDir('periscope-unreachable-'), batch: { intervalMs: 20 }, retry: { initialBackoffMs: 50, maxBackoffMs: 100 }, exportTimeoutMs: 500 },
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}` },
    log,
  })
  const scope = telemetry.scope('http')
  scope.spans([{ name: 'lost', startTimeNs: T0, endTimeNs: T0 + 1 }])
  const deadline = Date.now() + 10_000
  while (!lines.some((l) => l.startsWith('warn: traces: export to'))) {
    assert.ok(Date.now() < deadline, `no export warning; got ${JSON.stringify(lines)}`)
    await sleep(20)
  }
  const warning = lines.find((l) => l.startsWith('warn: traces: export to')) as string
  assert.match(warning, new RegExp(`export to http://127\\.0\\.0\\.1:${port}/v1/traces failed: .*ECONNREFUSED`))
  assert.match(warning, /Check that the Collector is running and reachable, and the endpoint settings \(OTEL_EXPORTER_OTLP_ENDPOINT or exporter\.endpoint in periscope\.yaml\)/)

  // still accepting and counting
  scope.spans([{ name: 'also lost', startTimeNs: T0, endTimeNs: T0 + 1 }])
  const stats = telemetry.stats().signals.traces
  assert.equal(stats.queued + stats.inFlight, 2)
  assert.ok(stats.failedExports >= 1)

  const started = Date.now()
  await telemetry.shutdown(300)
  assert.ok(Date.now() - started < 1500, `shutdown took ${Date.now() - started} ms with a 300 ms deadline`)
  assert.equal(telemetry.stats().signals.traces.droppedAtShutdown, 2)
  assert.ok(lines.some((l) => l.includes('traces: 2 item(s) not exported before the shutdown deadline')))
})

test('a bad endpoint URL and malformed OTEL_RESOURCE_ATTRIBUTES: clear messages, data kept in the embedded store', async () => {
  const dataDir = scratchDir('periscope-badurl-')
  const { lines, log } = recorder()
  const telemetry = await createTelemetry({
    config: { dataDir, prometheus: { enabled: false } },
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'http//collector:4318', OTEL_RESOURCE_ATTRIBUTES: 'team=sre,broken,zone=a' },
    log,
  })
  assert.deepEqual(lines.filter((l) => l.startsWith('warn')), [
    'warn: OTEL_EXPORTER_OTLP_ENDPOINT="http//collector:4318" is not a valid URL; use a full URL such as http://collector:4318 (OTLP/HTTP) or http://collector:4317 (gRPC). Until then every signal goes to the embedded store',
    'warn: OTEL_RESOURCE_ATTRIBUTES: entry "broken" is not key=value; it was ignored. Write comma-separated key=value pairs, e.g. OTEL_RESOURCE_ATTRIBUTES=deployment.environment.name=prod,team=sre',
  ])
  telemetry.scope('x').spans([{ name: 'kept', startTimeNs: T0, endTimeNs: T0 + 1 }])
  await telemetry.shutdown(2000)
  const text = await readFile(join(dataDir, 'traces.jsonl'), 'utf8')
  const [span] = flatten('traces', text.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>))
  assert.equal(span.item.name, 'kept')
  assert.equal(span.resource.team, 'sre')
  assert.equal(span.resource.zone, 'a')
  assert.equal(span.resource['collection.method'], 'ebpf')
})

test('a busy Prometheus port is reported with the fix and the exporter runs without it', async () => {
  const blocker = createServer()
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
  const port = (blocker.address() as { port: number }).port
  const { lines, log } = recorder()
  try {
    const telemetry = await createTelemetry({ config: { dataDir: scratchDir('periscope-busy-'), prometheus: { port } }, env: {}, log })
    assert.equal(telemetry.stats().prometheus, undefined)
    assert.ok(
      lines.includes(
        `error: prometheus endpoint: cannot listen on 127.0.0.1:${port}: EADDRINUSE; another process uses the port; set exporter.prometheus.port to a free port, or exporter.prometheus.enabled: false. Metrics are still exported`,
      ),
      JSON.stringify(lines),
    )
    telemetry.scope('x').metrics([{ name: 'still.works', kind: 'counter', value: 1 }])
    await telemetry.shutdown(2000)
    assert.equal(telemetry.stats().signals.metrics.sent, 1)
  } finally {
    blocker.close()
  }
})

test('malformed plugin output is dropped, counted per signal and reported once per plugin, never thrown', async () => {
  const { lines, log } = recorder()
  const telemetry = await createTelemetry({ config: { dataDir: scratchDir('periscope-invalid-'), prometheus: { enabled: false } }, env: {}, log })
  const scope = telemetry.scope('sloppy')
  scope.spans([{ name: 'bad', startTimeNs: Number.NaN, endTimeNs: 1 }, { name: 'bad2', startTimeNs: T0, endTimeNs: T0 + 1, traceId: 'nothex' }, { name: 'ok', startTimeNs: T0, endTimeNs: T0 + 1 }])
  scope.metrics([
    { name: 'm', kind: 'counter', value: 1 },
    { name: 'm', kind: 'gauge', value: 1 },
    { name: 'c', kind: 'counter', value: -1 },
    { name: 'h', kind: 'histogram', value: 1, boundaries: [5, 1] },
    { name: 'x', kind: 'summary' as never, value: 1 },
  ])
  scope.logs([{ body: 42 as never }, { body: 'fine', severity: 'loud' as never }, { body: 'ok' }])
  scope.profiles([
    { type: 'cpu', frames: [], values: [1, 1] },
    { type: 'cpu', frames: [{ address: 1 }], values: [1] },
    { type: 'cpu', frames: [{ address: 1 }], values: [1, 1] },
  ])
  scope.spans(null as never)
  const stats = telemetry.stats().signals
  assert.equal(stats.traces.invalid, 3, 'two malformed spans, and a batch that is not an array')
  assert.equal(stats.metrics.invalid, 4)
  assert.equal(stats.logs.invalid, 2)
  assert.equal(stats.profiles.invalid, 2)
  const warnings = lines.filter((l) => l.startsWith('warn'))
  assert.deepEqual(warnings, [
    'warn: plugin "sloppy" emitted invalid traces: span "bad": startTimeNs and endTimeNs must be positive nanoseconds since the epoch. Invalid items are dropped and counted (stats().signals.traces.invalid)',
    'warn: plugin "sloppy" emitted invalid metrics: metric "m" was first recorded as a counter and cannot also be a gauge; use another name. Invalid items are dropped and counted (stats().signals.metrics.invalid)',
    'warn: plugin "sloppy" emitted invalid logs: log record `body` must be a string or an object of attributes. Invalid items are dropped and counted (stats().signals.logs.invalid)',
    'warn: plugin "sloppy" emitted invalid profiles: profile sample (cpu): `frames` must be a non-empty array, leaf first. Invalid items are dropped and counted (stats().signals.profiles.invalid)',
  ])
  await telemetry.shutdown(2000)
  assert.equal(telemetry.stats().signals.traces.sent, 1)
  assert.equal(telemetry.stats().signals.logs.sent, 1)
})

test('a config section passed where the options belong is refused with the fix, not silently ignored', async () => {
  await assert.rejects(
    createTelemetry({ endpoint: 'http://collector:4318' } as never),
    { message: 'createTelemetry: unknown option "endpoint". Options are { config, env, log }; pass the periscope.yaml section as createTelemetry({ config: config.exporter })' },
  )
})
