/**
 * Exporter throughput: spans/s through the whole exporter (SpanInput → ReadableSpan → export queue →
 * OTLP/HTTP protobuf → a local sink), against two baselines measured in the same run: the SDK's raw
 * protobuf encode of the same spans, and posting pre-encoded bodies to the same sink (the transport
 * floor). Every side is warmed before it is timed, and the three alternate over several rounds.
 *
 * The span inputs are built before any timing (the plugins' work, not the exporter's) and offered
 * in 512-span batches as fast as the exporter's default queue (8192 spans) takes them: a batch
 * waits while the queue is full instead of being dropped; drops, if any, are reported.
 *
 * The exporter process is pinned to CPU 0 and the sink (another process) to CPU 1, so "one core"
 * means the exporter's work all happens on one core. The exporter's memory under a Collector
 * outage is in bench/memory.bench.ts.
 *
 *   node_modules/.bin/node bench/exporter-spans.bench.ts
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
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
import { median, pinSelf, spanInputs } from './common.ts'

const SPANS = 307_200
const WARM_SPANS = 61_440
const ROUNDS = 3
const PLUGIN_BATCH = 512
const EXPORT_BATCH = 512
const DISTINCT_BATCHES = 64
const TARGET = 50_000

const pinned = pinSelf(0)

// the sink: reads each body in full and answers an empty ExportTraceServiceResponse
const sinkPort = await freePort()
const sinkSource = `
const http = require('node:http')
http.createServer((req, res) => {
  req.resume()
  req.on('end', () => { res.writeHead(200, { 'content-type': 'application/x-protobuf' }); res.end() })
}).listen(${sinkPort}, '127.0.0.1', () => process.stdout.write('ready\\n'))
`
const sink = spawn('taskset', ['-c', '1', process.execPath, '-e', sinkSource], { stdio: ['ignore', 'pipe', 'inherit'] })
await new Promise<void>((resolve) => sink.stdout.once('data', () => resolve()))

// what the plugins hand over, built once
const inputs: SpanInput[][] = Array.from({ length: DISTINCT_BATCHES }, (_, i) => spanInputs(PLUGIN_BATCH, i * PLUGIN_BATCH))
const built: ReadableSpan[][] = []
const pipeline = new TracePipeline({
  runtimeResource: resourceFromAttributes({ 'service.name': 'bench' }),
  ratio: 1,
  keepErrors: true,
  deliver: (spans) => built.push(spans),
})
for (const batch of inputs) pipeline.emit('http', '1.0.0', batch, () => undefined)
const bodies = built.map((spans) => ProtobufTraceSerializer.serializeRequest(spans) as Uint8Array)
const bodyBytes = bodies.reduce((sum, b) => sum + b.length, 0) / (DISTINCT_BATCHES * PLUGIN_BATCH)

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

async function rate(spans: number, run: (spans: number) => unknown): Promise<number> {
  await run(WARM_SPANS)
  const started = performance.now()
  await run(spans)
  return spans / ((performance.now() - started) / 1000)
}

const encode = (spans: number): void => {
  for (let i = 0; i < spans / EXPORT_BATCH; i++) ProtobufTraceSerializer.serializeRequest(built[i % DISTINCT_BATCHES]!)
}

const postAll = async (spans: number): Promise<void> => {
  for (let i = 0; i < spans / EXPORT_BATCH; i++) await post(bodies[i % DISTINCT_BATCHES]!)
}

interface ExporterRun { rate: number; sent: number; dropped: number; failedExports: number; cpuPerSpanUs: number; cpuShare: number }

async function exporterRun(): Promise<ExporterRun> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'periscope-bench-exporter-'))
  const telemetry = await createTelemetry({
    config: { dataDir, batch: { maxSize: EXPORT_BATCH, intervalMs: 5 }, metrics: { intervalMs: 600_000 }, prometheus: { enabled: false } },
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${sinkPort}` },
    log: (level, message) => {
      if (level !== 'info') console.error(message)
    },
  })
  const scope = telemetry.scope('http', '1.0.0')
  const traces = () => telemetry.stats().signals.traces
  // offers batches while the default queue has room, as a plugin handing over its emits would
  const offer = async (spans: number): Promise<void> => {
    for (let i = 0; i < spans / PLUGIN_BATCH; i++) {
      for (let s = traces(); s.queued + s.inFlight + PLUGIN_BATCH > s.capacity; s = traces()) {
        await new Promise((resolve) => setImmediate(resolve))
      }
      scope.spans(inputs[i % DISTINCT_BATCHES]!)
    }
    await telemetry.flush(60_000)
  }
  try {
    await offer(WARM_SPANS)
    const before = traces()
    const cpuBefore = process.cpuUsage()
    const started = performance.now()
    await offer(SPANS)
    const elapsed = (performance.now() - started) / 1000
    const cpu = process.cpuUsage(cpuBefore)
    const after = traces()
    const sent = after.sent - before.sent
    return {
      rate: sent / elapsed,
      sent,
      dropped: after.dropped - before.dropped,
      failedExports: after.failedExports - before.failedExports,
      cpuPerSpanUs: (cpu.user + cpu.system) / sent,
      cpuShare: (cpu.user + cpu.system) / 1e6 / elapsed,
    }
  } finally {
    await telemetry.shutdown(5000)
    rmSync(dataDir, { recursive: true, force: true })
  }
}

const encodeRates: number[] = []
const postRates: number[] = []
const exporterRuns: ExporterRun[] = []
try {
  for (let round = 0; round < ROUNDS; round++) {
    encodeRates.push(await rate(SPANS, encode))
    postRates.push(await rate(SPANS, postAll))
    exporterRuns.push(await exporterRun())
  }
} finally {
  sink.kill()
}

const exporterRate = median(exporterRuns.map((r) => r.rate))
const encodeRate = median(encodeRates)
const postRate = median(postRates)
const spansPerSecond = (x: number) => `${Math.round(x).toLocaleString('en')} spans/s`
const dropped = exporterRuns.reduce((sum, r) => sum + r.dropped, 0)
const met = exporterRate >= TARGET && dropped === 0
console.log(`exporter spans benchmark (${SPANS.toLocaleString('en')} spans per side per round after ${WARM_SPANS.toLocaleString('en')} warm-up, medians of ${ROUNDS} rounds; ` +
  `${PLUGIN_BATCH} per plugin batch, ${EXPORT_BATCH} per export, default queue; exporter ${pinned ? 'pinned to CPU 0' : 'NOT pinned (taskset failed)'}, sink on CPU 1)`)
console.log(`  exporter end to end (build + queue + encode + POST): ${spansPerSecond(exporterRate)} (rounds ${exporterRuns.map((r) => spansPerSecond(r.rate)).join(', ')}; ` +
  `target ≥ ${spansPerSecond(TARGET)}) ${met ? 'met' : 'MISSED'}`)
console.log(`    sent ${exporterRuns.map((r) => r.sent).join(', ')}; dropped ${dropped}; failed exports ${exporterRuns.reduce((sum, r) => sum + r.failedExports, 0)}; ` +
  `CPU ${(median(exporterRuns.map((r) => r.cpuShare)) * 100).toFixed(0)}% of one core, ${median(exporterRuns.map((r) => r.cpuPerSpanUs)).toFixed(1)} µs CPU/span`)
console.log(`  baseline raw protobuf encode (SDK ProtobufTraceSerializer): ${spansPerSecond(encodeRate)}, ${bodyBytes.toFixed(0)} bytes/span; ratio ${(exporterRate / encodeRate).toFixed(2)}`)
console.log(`  baseline POST of pre-encoded bodies to the sink: ${spansPerSecond(postRate)}; ratio ${(exporterRate / postRate).toFixed(2)}`)
if (!met) process.exitCode = 1
