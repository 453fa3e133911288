/**
 * Exporter figures, each against a baseline measured in the same run:
 * - spans/s through the whole exporter (SpanInput → ReadableSpan → export queue → OTLP/HTTP
 *   protobuf → a local sink), vs the SDK's raw protobuf encode of the same spans, and vs posting
 *   pre-encoded bodies to the same sink (the transport floor);
 * - memory (RSS, heap) while the Collector is down and spans keep coming, vs the same process
 *   before the outage.
 * The exporter process is pinned to CPU 0 and the sink (another process) to CPU 1, so "one core"
 * means the exporter's work all happens on one core. Run: node --expose-gc bench/exporter-spans.bench.ts
 */
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer'
import { resourceFromAttributes } from '@opentelemetry/resources'
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base'
import { createTelemetry } from '../runtime/telemetry/index.ts'
import type { SpanInput } from '../runtime/telemetry/index.ts'
import { TracePipeline } from '../runtime/telemetry/traces.ts'
import { freePort } from '../test/peers/otelcol.ts'

const SPANS = 300_000
const PLUGIN_BATCH = 512
const OUTAGE_SPANS = Number(process.env.OUTAGE_SPANS ?? 1_000_000)
const OUTAGE_QUEUE = 8192
const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(1)
const gc = (globalThis as { gc?: () => void }).gc ?? (() => {})


const T0 = Date.now() * 1e6
const pids = [101, 102, 103, 104]
function spanInputs(count: number, offset: number): SpanInput[] {
  return Array.from({ length: count }, (_, i) => {
    const n = offset + i
    return {
      name: 'GET /api/users/{id}',
      kind: 'server',
      startTimeNs: T0 + n * 1000,
      endTimeNs: T0 + n * 1000 + 250_000,
      traceId: (n.toString(16).padStart(8, '0') + 'a3ce929d0e0e47364bf92f35').slice(0, 32),
      parentSpanId: '00f067aa0ba902b7',
      attributes: {
        'http.request.method': 'GET',
        'url.path': `/api/users/${n % 1000}`,
        'http.route': '/api/users/{id}',
        'http.response.status_code': 200,
        'server.address': 'api.internal',
        'server.port': 8080,
      },
      process: { pid: pids[n % pids.length], executablePath: '/usr/sbin/nginx' },
    }
  })
}

function post(body: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: sinkPort, method: 'POST', path: '/v1/traces', headers: { 'content-type': 'application/x-protobuf' } }, (res) => {
      res.resume()
      res.on('end', () => resolve())
    })
    req.on('error', reject)
    req.end(body)
  })
}

interface OutageFigures {
  held: number
  dropped: number
  failedExports: number
  seconds: number
  rssBefore: number
  rssAfter: number
  peakRss: number
  heapBefore: number
  heapAfter: number
  heapTotalAfter: number
}

/**
 * Offers spans to an exporter whose Collector is down (nothing listens on the endpoint). With
 * `baseline`, the same loop builds the same inputs and keeps the newest OUTAGE_QUEUE of them
 * without any exporter: what V8 alone does to RSS under this allocation rate.
 */
async function runOutage(baseline: boolean): Promise<void> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'periscope-bench-outage-'))
  gc()
  const rssBefore = process.memoryUsage.rss()
  const heapBefore = process.memoryUsage().heapUsed
  const outage = await createTelemetry({
    config: {
      dataDir,
      batch: { intervalMs: 50 },
      queue: { spans: OUTAGE_QUEUE },
      retry: { initialBackoffMs: 200, maxBackoffMs: 1000 },
      exportTimeoutMs: 1000,
      metrics: { intervalMs: 600_000 },
    },
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${await freePort()}` },
    log: () => {},
  })
  const outageScope = outage.scope('http', '1.0.0')
  let kept: SpanInput[] = []
  const offer = (spans: SpanInput[]): void => {
    if (!baseline) {
      outageScope.spans(spans)
      return
    }
    kept.push(...spans)
    if (kept.length > OUTAGE_QUEUE) kept = kept.slice(-OUTAGE_QUEUE)
  }
  const outageStarted = performance.now()
  let peakRss = 0
  for (let i = 0; i < OUTAGE_SPANS; i += PLUGIN_BATCH) {
    offer(spanInputs(PLUGIN_BATCH, i))
    if ((i / PLUGIN_BATCH) % 64 === 0) {
      await new Promise((resolve) => setImmediate(resolve))
      peakRss = Math.max(peakRss, process.memoryUsage.rss())
    }
  }
  gc()
  const outageStats = outage.stats().signals.traces
  const memory = process.memoryUsage()
  await outage.shutdown(100)
  const figures: OutageFigures = {
    held: baseline ? kept.length : outageStats.queued + outageStats.inFlight,
    dropped: outageStats.dropped,
    failedExports: outageStats.failedExports,
    seconds: (performance.now() - outageStarted) / 1000,
    rssBefore,
    rssAfter: memory.rss,
    peakRss,
    heapBefore,
    heapAfter: memory.heapUsed,
    heapTotalAfter: memory.heapTotal,
  }
  process.stdout.write(JSON.stringify(figures))
}

if (process.argv.includes('--outage')) {
  await runOutage(process.argv.includes('--baseline'))
  process.exit(0)
}

const pinned = spawnSync('taskset', ['-a', '-cp', '0', String(process.pid)]).status === 0

// the sink: reads each body in full and answers an empty ExportTraceServiceResponse
const sinkPort = await freePort()
const sinkSource = `
const http = require('node:http')
let bytes = 0, requests = 0
http.createServer((req, res) => {
  req.on('data', (c) => { bytes += c.length })
  req.on('end', () => { requests++; res.writeHead(200, { 'content-type': 'application/x-protobuf' }); res.end() })
}).listen(${sinkPort}, '127.0.0.1', () => process.stdout.write('ready\\n'))
`
const sink = spawn('taskset', ['-c', '1', process.execPath, '-e', sinkSource], { stdio: ['ignore', 'pipe', 'inherit'] })
await new Promise<void>((resolve) => sink.stdout.once('data', () => resolve()))

// baseline 1: the SDK's protobuf encode of the same spans, already built as ReadableSpans
const built: ReadableSpan[] = []
const pipeline = new TracePipeline({
  runtimeResource: resourceFromAttributes({ 'service.name': 'bench' }),
  ratio: 1,
  keepErrors: true,
  deliver: (spans) => built.push(...spans),
})
for (let i = 0; i < SPANS; i += PLUGIN_BATCH) pipeline.emit('http', '1.0.0', spanInputs(Math.min(PLUGIN_BATCH, SPANS - i), i), () => undefined)
const EXPORT_BATCH = 512
let started = performance.now()
const bodies: Uint8Array[] = []
for (let i = 0; i < built.length; i += EXPORT_BATCH) bodies.push(ProtobufTraceSerializer.serializeRequest(built.slice(i, i + EXPORT_BATCH)) as Uint8Array)
const encodeRate = built.length / ((performance.now() - started) / 1000)
const bodyBytes = bodies.reduce((sum, b) => sum + b.length, 0)
built.length = 0

// baseline 2: posting the pre-encoded bodies to the sink, one request at a time like the exporter
started = performance.now()
for (const body of bodies) await post(body)
const postRate = SPANS / ((performance.now() - started) / 1000)
bodies.length = 0
gc()

// the exporter end to end
const dataDir = mkdtempSync(path.join(tmpdir(), 'periscope-bench-exporter-'))
const telemetry = await createTelemetry({
  config: { dataDir, batch: { maxSize: EXPORT_BATCH, intervalMs: 5 }, queue: { spans: SPANS }, metrics: { intervalMs: 600_000 } },
  env: { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${sinkPort}` },
  log: (level, message) => {
    if (level !== 'info') console.error(message)
  },
})
const scope = telemetry.scope('http', '1.0.0')
const cpuBefore = process.cpuUsage()
started = performance.now()
for (let i = 0; i < SPANS; i += PLUGIN_BATCH) {
  scope.spans(spanInputs(Math.min(PLUGIN_BATCH, SPANS - i), i))
  // yield now and then, as a runtime handling event batches would, so sending overlaps emitting
  if ((i / PLUGIN_BATCH) % 8 === 0) await new Promise((resolve) => setImmediate(resolve))
}
await telemetry.flush(60_000)
const elapsed = (performance.now() - started) / 1000
const cpu = process.cpuUsage(cpuBefore)
const stats = telemetry.stats().signals.traces
await telemetry.shutdown(5000)
const exporterRate = stats.sent / elapsed
// the input objects are built inside the timed loop, so part of the time is the benchmark's own
const inputStarted = performance.now()
for (let i = 0; i < SPANS; i += PLUGIN_BATCH) spanInputs(Math.min(PLUGIN_BATCH, SPANS - i), i)
const inputSeconds = (performance.now() - inputStarted) / 1000

// memory under a Collector outage, measured in fresh processes so the phases above do not count
function outageRun(...extra: string[]): OutageFigures {
  const run = spawnSync('taskset', ['-c', '0', process.execPath, '--expose-gc', import.meta.filename, '--outage', ...extra], { encoding: 'utf8' })
  if (run.status !== 0) throw new Error(`the outage run failed:\n${run.stderr}`)
  return JSON.parse(run.stdout) as OutageFigures
}
const outage = outageRun()
const outageBaseline = outageRun('--baseline')
sink.kill()

console.log(`exporter spans benchmark (${SPANS} spans, ${PLUGIN_BATCH} per plugin batch, ${EXPORT_BATCH} per export; exporter ${pinned ? 'pinned to CPU 0' : 'NOT pinned (taskset failed)'}, sink on CPU 1)`)
console.log(`  baseline raw protobuf encode (SDK ProtobufTraceSerializer): ${Math.round(encodeRate).toLocaleString('en')} spans/s, ${(bodyBytes / SPANS).toFixed(0)} bytes/span`)
console.log(`  baseline POST pre-encoded bodies to the sink:             ${Math.round(postRate).toLocaleString('en')} spans/s`)
console.log(`  exporter end to end (build + queue + encode + POST):      ${Math.round(exporterRate).toLocaleString('en')} spans/s  (target >= 50,000)`)
console.log(`    = ${(exporterRate / encodeRate).toFixed(2)}x raw encode, ${(exporterRate / postRate).toFixed(2)}x the transport floor`)
console.log(`    sent ${stats.sent}, dropped ${stats.dropped}, failed exports ${stats.failedExports}; CPU ${((cpu.user + cpu.system) / 1e3 / elapsed / 10).toFixed(0)}% of one core over ${elapsed.toFixed(2)} s (${((cpu.user + cpu.system) / stats.sent).toFixed(1)} µs CPU/span)`)
console.log(`    of which building the SpanInput objects (the benchmark's own work): ${((inputSeconds / elapsed) * 100).toFixed(0)}% of the time`)
console.log(`  Collector outage, ${OUTAGE_SPANS.toLocaleString('en')} spans offered, queue limit ${OUTAGE_QUEUE}:`)
console.log(`    queued ${outage.held}, dropped ${outage.dropped} (counted), failed exports ${outage.failedExports}, ${outage.seconds.toFixed(1)} s`)
console.log(`    heap in use after GC: ${mb(outage.heapBefore)} → ${mb(outage.heapAfter)} MiB (+${mb(outage.heapAfter - outage.heapBefore)} MiB, ${((outage.heapAfter - outage.heapBefore) / 1024 / outage.held).toFixed(2)} KiB per queued span); baseline loop without exporter +${mb(outageBaseline.heapAfter - outageBaseline.heapBefore)} MiB`)
console.log(`    RSS: ${mb(outage.rssBefore)} → ${mb(outage.rssAfter)} MiB (peak ${mb(outage.peakRss)}, V8 heap reserved ${mb(outage.heapTotalAfter)} MiB); baseline loop without exporter ${mb(outageBaseline.rssBefore)} → ${mb(outageBaseline.rssAfter)} MiB (peak ${mb(outageBaseline.peakRss)}) = ${(outage.peakRss / outageBaseline.peakRss).toFixed(2)}x baseline peak`)
