// A Collector outage: the exporter keeps at most the configured queue, drops the oldest beyond it,
// counts every drop exactly, and delivers the kept items once the Collector is back.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { createTelemetry } from '../../runtime/telemetry/index.ts'
import type { Telemetry } from '../../runtime/telemetry/index.ts'
import { attributesOf, flatten, startCollector } from '../peers/otelcol.ts'
import { scratchDir } from '../peers/scratch-dir.ts'

const QUEUE = 50
const BEFORE = 10
const DURING = 200

async function until(what: string, check: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

test('a Collector outage loses nothing beyond the configured queue, counts each drop, and export resumes', async (t) => {
  const collector = await startCollector()
  const state: { telemetry?: Telemetry } = {}
  t.after(async () => {
    await state.telemetry?.shutdown(2000)
    await collector.stop()
  })
  const warnings: string[] = []
  const telemetry = (state.telemetry = await createTelemetry({
    config: {
      dataDir: scratchDir('periscope-outage-'),
      batch: { maxSize: 10, intervalMs: 50, maxInFlight: 4 },
      queue: { spans: QUEUE },
      retry: { initialBackoffMs: 100, maxBackoffMs: 300 },
      exportTimeoutMs: 1000,
      metrics: { intervalMs: 600_000 },
    },
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: collector.httpEndpoint },
    log: (level, message) => {
      if (level !== 'info') warnings.push(message)
    },
  }))
  const scope = telemetry.scope('outage')
  const now = Date.now() * 1e6
  const span = (name: string) => ({ name, startTimeNs: now, endTimeNs: now + 1000 })

  scope.spans(Array.from({ length: BEFORE }, (_, i) => span(`before-${i}`)))
  await telemetry.flush(5000)
  assert.equal(telemetry.stats().signals.traces.sent, BEFORE)

  await collector.stop()
  let maxHeld = 0
  for (let i = 0; i < DURING; i += 10) {
    scope.spans(Array.from({ length: 10 }, (_, j) => span(`during-${i + j}`)))
    const s = telemetry.stats().signals.traces
    maxHeld = Math.max(maxHeld, s.queued + s.inFlight)
    await sleep(15)
  }
  // quiescent: the failed batch is back in the queue and the exporter is backing off
  await until('a failed export with nothing in flight', () => {
    const s = telemetry.stats().signals.traces
    return s.failedExports > 0 && s.inFlight === 0
  })
  const during = telemetry.stats().signals.traces
  assert.equal(during.queued, QUEUE)
  assert.equal(during.dropped, DURING - QUEUE, 'every span beyond the queue is dropped and counted')
  assert.equal(during.sent, BEFORE)
  // the queue's bound (runtime/telemetry/queue.ts): capacity plus the batches in flight when the
  // outage began, at most maxInFlight of 10
  assert.ok(maxHeld <= QUEUE + 4 * 10, `held at most queue + 4 batches in flight, held ${maxHeld}`)
  assert.ok(
    warnings.some((w) => w.includes('traces: export to') && w.includes('failed') && w.includes('Check that the Collector is running')),
    `an outage warning names the cause and the fix; got ${JSON.stringify(warnings)}`,
  )

  await collector.start()
  await until('the queue to drain after the Collector came back', () => telemetry.stats().signals.traces.sent === BEFORE + QUEUE)
  const lines = await collector.waitFor('traces', (l) => flatten('traces', l).length >= BEFORE + QUEUE)
  const names = flatten('traces', lines).map((s) => s.item.name as string)
  const expected = [
    ...Array.from({ length: BEFORE }, (_, i) => `before-${i}`),
    // drop-oldest: exactly the newest QUEUE spans of the outage survive
    ...Array.from({ length: QUEUE }, (_, i) => `during-${DURING - QUEUE + i}`),
  ]
  // after recovery several batches are in flight at once (batch.maxInFlight), so batches may
  // arrive in any order: exactly these spans, each once
  assert.deepEqual([...names].sort(), [...expected].sort())
  assert.equal(new Set(names).size, names.length, 'no span exported twice')
  assert.ok(
    warnings.every((w) => !w.includes('recovered')),
    'recovery is reported at info level',
  )

  // the drop count is itself exported, exactly
  await telemetry.flush(5000)
  const queueFullDrops = (lines: Record<string, unknown>[]): number[] =>
    flatten('metrics', lines)
      .filter((m) => m.item.name === 'periscope.exporter.dropped')
      .flatMap((m) => (m.item.sum as { dataPoints: { attributes: unknown; asDouble?: number; asInt?: string }[] }).dataPoints)
      .filter((p) => {
        const a = attributesOf(p.attributes)
        return a.signal === 'traces' && a.reason === 'queue_full'
      })
      .map((p) => Number(p.asDouble ?? p.asInt))
  const exported = queueFullDrops(await collector.waitFor('metrics', (l) => queueFullDrops(l).length >= 2))
  // one collection before the outage, one after it
  assert.deepEqual(exported, [0, DURING - QUEUE])
})
