// The benchmarks' OTLP sink (test/peers/otlp-sink.ts) counts the spans of what Periscope's own
// exporter sends it, exactly: the overhead benchmark reports spans per request from that count.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createTelemetry } from '../../runtime/telemetry/index.ts'
import { startOtlpSink } from '../peers/otlp-sink.ts'

test('the sink counts every span the exporter sends, over several export requests and resources', async (t) => {
  const sink = await startOtlpSink()
  t.after(() => sink.stop())
  const dataDir = await mkdtemp(join(tmpdir(), 'periscope-otlp-sink-'))
  t.after(() => rm(dataDir, { recursive: true, force: true }))
  const telemetry = await createTelemetry({
    config: { dataDir, batch: { maxSize: 100, intervalMs: 5 }, metrics: { intervalMs: 600_000 }, prometheus: { enabled: false } },
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: sink.endpoint },
    log: () => {},
  })
  t.after(() => telemetry.shutdown(1000))
  const now = Date.now() * 1e6
  const spans = Array.from({ length: 1234 }, (_, i) => ({
    name: `span ${i}`,
    kind: 'server' as const,
    startTimeNs: now + i,
    endTimeNs: now + i + 1000,
    attributes: { 'http.request.method': 'GET', n: i },
    process: { pid: 1000 + (i % 3) },
  }))
  telemetry.scope('sink-test', '1.0.0').spans(spans)
  await telemetry.flush(10_000)
  const counts = sink.counts()
  assert.equal(counts.spans, 1234)
  assert.ok((counts.requests['/v1/traces'] ?? 0) >= 13, `${counts.requests['/v1/traces']} trace export requests for 1234 spans in batches of 100`)
})
