// Under load: wrk (2 threads, 50 connections, 10 s) against Debian's nginx while `periscope run`
// traces the whole host and exports to a real Collector. Every line of nginx's access log must be
// accounted for: a SERVER span from nginx, or a drop that Periscope counted and exported.
import assert from 'node:assert/strict'
import { createReadStream } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { after, before, it } from 'node:test'
import { attributesOf, flatten, startCollector, type Collector } from '../peers/otelcol.ts'
import { startNginx, type Nginx } from '../peers/nginx.ts'
import { runWrk } from '../peers/clients.ts'
import { startPeriscope, type Periscope } from '../peers/periscope.ts'

const durationS = Number(process.env.PERISCOPE_LOAD_SECONDS ?? 10)

let collector: Collector
let nginx: Nginx
let periscope: Periscope

before(async () => {
  collector = await startCollector()
  nginx = await startNginx({})
  periscope = await startPeriscope({ endpoint: collector.httpEndpoint, config: { exporter: { metrics: { intervalMs: 1000 } } }, ready: /running 1 of 1 plugins/ })
  await periscope.waitForOutput(/tracing HTTP\/1\.x/, 'the http plugin to start')
})

after(async () => {
  await periscope?.stop()
  await nginx?.stop()
  await collector?.stop()
})

/** Streams the Collector's traces file (it can hold hundreds of thousands of spans). */
async function countServerSpans(path: string, workers: Set<number>, marker: string): Promise<number> {
  let count = 0
  const lines = createInterface({ input: createReadStream(path), crlfDelay: Infinity })
  for await (const line of lines) {
    if (line.trim() === '') continue
    for (const { item } of flatten('traces', [JSON.parse(line) as Record<string, unknown>])) {
      if (item.kind !== 2) continue
      const attributes = attributesOf(item.attributes)
      if (workers.has(Number(attributes['process.pid'])) && attributes['url.query'] === marker) count++
    }
  }
  return count
}

/** The last exported value of each self-metric data point whose name matches, summed. */
async function lastSelfMetric(collector: Collector, name: RegExp): Promise<Map<string, number>> {
  const latest = new Map<string, number>()
  for (const { item } of flatten('metrics', await collector.read('metrics'))) {
    if (!name.test(item.name as string)) continue
    const data = (item.sum ?? item.gauge) as { dataPoints?: Record<string, unknown>[] } | undefined
    for (const point of data?.dataPoints ?? []) {
      const key = `${item.name as string} ${JSON.stringify(attributesOf(point.attributes))}`
      latest.set(key, Number(point.asInt ?? point.asDouble))
    }
  }
  return latest
}

it(`wrk for ${durationS} s: spans plus counted drops account for every access log line`, { timeout: 600_000 }, async () => {
  const marker = `load=${process.pid}`
  const workers = new Set(nginx.workerPids())
  const wrk = await runWrk({ url: `${nginx.baseUrl}/?${marker}`, threads: 2, connections: 50, durationS })
  const served = (await nginx.waitForAccessLog((entries) => entries.filter((e) => e.uri === `/?${marker}`).length >= wrk.requests))
    .filter((e) => e.uri === `/?${marker}`).length
  // SIGTERM flushes the plugin's last batch and the exporter's queue
  const output = periscope.output
  await periscope.stop()
  const spans = await countServerSpans(join(collector.outDir, 'traces.jsonl'), workers, marker)
  const drops = await lastSelfMetric(collector, /dropped|lost/)
  const dropped = [...drops.values()].reduce((a, b) => a + b, 0)
  const share = spans / served
  console.log(`wrk: ${wrk.requests} requests (${wrk.requestsPerSecond.toFixed(0)}/s); nginx logged ${served}; server spans ${spans} (${(share * 100).toFixed(3)}%); counted drops ${dropped}: ${JSON.stringify(Object.fromEntries([...drops].filter(([, v]) => v > 0)))}`)
  assert.ok(spans <= served, `no invented spans: ${spans} spans for ${served} requests`)
  if (dropped === 0) assert.equal(spans, served, `with no drop counted, every request is a span\n${output().slice(-3000)}`)
  else assert.ok(spans + dropped >= served, `spans ${spans} + counted drops ${dropped} cover the ${served} requests`)
})
