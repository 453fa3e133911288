/**
 * The exporter loads only the packages its settings use (memory budget, issue 7): each case runs
 * createTelemetry in a fresh Node process and lists which of the heavy packages it loaded.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { test } from 'node:test'

const HEAVY = [
  '@grpc/grpc-js',
  'protobufjs',
  '@opentelemetry/exporter-trace-otlp-proto',
  '@opentelemetry/exporter-trace-otlp-grpc',
  '@opentelemetry/exporter-metrics-otlp-proto',
  '@opentelemetry/exporter-metrics-otlp-grpc',
  '@opentelemetry/exporter-logs-otlp-proto',
  '@opentelemetry/exporter-logs-otlp-grpc',
  '@opentelemetry/otlp-grpc-exporter-base',
  '@opentelemetry/exporter-prometheus',
  '@opentelemetry/sdk-logs',
  '@opentelemetry/sdk-trace-base',
]

/** Runs `emit` against a fresh exporter in a child process; returns the HEAVY packages it loaded. */
function loadedPackages(config: object, env: Record<string, string>, emit: string): string[] {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'periscope-lazy-'))
  const script = `
    import { createRequire } from 'node:module'
    import { createTelemetry } from ${JSON.stringify(path.resolve(import.meta.dirname, '../../runtime/telemetry/index.ts'))}
    const telemetry = await createTelemetry({ config: ${JSON.stringify({ dataDir, ...config })}, env: ${JSON.stringify(env)}, log: () => {} })
    const scope = telemetry.scope('lazy', '1.0.0')
    ${emit}
    await telemetry.shutdown(200)
    const loaded = Object.keys(createRequire(import.meta.url).cache)
    const heavy = ${JSON.stringify(HEAVY)}
    const found = heavy.filter((name) => loaded.some((file) => file.includes('/node_modules/' + name + '/')))
    // Node's own fetch stack, loaded by an ES import of node:http
    if (process.moduleLoadList.includes('NativeModule internal/deps/undici/undici')) found.push('undici')
    console.log(JSON.stringify(found))
  `
  try {
    const output = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: path.resolve(import.meta.dirname, '../..'), encoding: 'utf8' })
    return JSON.parse(output.trim().split('\n').at(-1)!) as string[]
  } finally {
    rmSync(dataDir, { recursive: true, force: true })
  }
}

const span = `scope.spans([{ name: 'GET /', kind: 'server', startTimeNs: Date.now() * 1e6, endTimeNs: Date.now() * 1e6 + 1000 }])`

test('the embedded default with an unscraped Prometheus endpoint loads no OTLP exporter, protobufjs, grpc-js, Prometheus serializer, log SDK or undici', () => {
  assert.deepEqual(loadedPackages({ prometheus: { port: 0 } }, {}, `${span}; scope.metrics([{ name: 'm', kind: 'counter', value: 1 }])`), [])
})

test('a log record loads the log SDK; a sampling ratio below 1 loads the trace SDK for its sampler', () => {
  assert.deepEqual(loadedPackages({ prometheus: { enabled: false }, sampling: { ratio: 0.5 } }, {}, `scope.logs([{ body: 'hello' }]); ${span}`), [
    '@opentelemetry/sdk-logs',
    '@opentelemetry/sdk-trace-base',
  ])
})

test('OTLP over HTTP loads the protobuf exporters only; gRPC loads grpc-js and the gRPC exporters only', () => {
  const endpoint = 'http://127.0.0.1:1'
  const http = loadedPackages({ prometheus: { enabled: false }, exportTimeoutMs: 500 }, { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint }, '')
  // the SDK's HTTP transport needs undici; that is not what this case is about. Spans go through
  // the SDK's transport with Periscope's own encoder, so the trace exporter package is not loaded
  assert.deepEqual(http.filter((name) => name !== 'undici'), [
    'protobufjs',
    '@opentelemetry/exporter-metrics-otlp-proto',
    '@opentelemetry/exporter-logs-otlp-proto',
  ])
  const grpc = loadedPackages({ prometheus: { enabled: false }, exportTimeoutMs: 500 }, { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }, '')
  assert.ok(grpc.includes('@grpc/grpc-js') && grpc.includes('@opentelemetry/otlp-grpc-exporter-base') && grpc.includes('@opentelemetry/exporter-metrics-otlp-grpc'), grpc.join(', '))
  assert.ok(!grpc.some((name) => name.endsWith('-otlp-proto')), grpc.join(', '))
})
