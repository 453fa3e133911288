// Under load: wrk (2 threads, 50 connections, 10 s) against Debian's nginx while `periscope run`
// traces the whole host. Every line of nginx's access log must be accounted for: a SERVER span from
// nginx, or a drop that Periscope counted and exported. With no drop counted, the accounting is
// exact in both directions: one server span per logged request, one wrk client span per request
// wrk sent (what it counted, and at most the requests nginx logged), and each client span counted
// once in the http.client.request.duration histogram.
//
// Spans go to a receiver in this process that keeps each OTLP/HTTP request body as it arrives and
// decodes them after the load; metrics (with the drop counters) go to a real Collector. The test
// Collector writes every span as JSON with its file exporter, which takes about 6,000 spans a
// second a core on this machine, less than wrk makes nginx answer: with spans sent there, its
// slowness, not Periscope's, decided how many spans were dropped at the exporter queue.
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, it } from 'node:test'
import { Worker } from 'node:worker_threads'
import { attributesOf, flatten, startCollector, type Collector } from '../peers/otelcol.ts'
import { startNginx, type Nginx } from '../peers/nginx.ts'
import { runWrk } from '../peers/clients.ts'
import { protobufFields } from '../peers/otlp-sink.ts'
import { startPeriscope, type Periscope } from '../peers/periscope.ts'
import { connectAdmin } from '../../runtime/admin/client.ts'

const durationS = Number(process.env.PERISCOPE_LOAD_SECONDS ?? 10)
const SPAN_KIND_SERVER = 2
const SPAN_KIND_CLIENT = 3

let collector: Collector
let spanReceiver: SpanReceiver
let nginx: Nginx
let periscope: Periscope

before(async () => {
  collector = await startCollector()
  spanReceiver = await startSpanReceiver()
  nginx = await startNginx({})
  periscope = await startPeriscope({
    endpoint: collector.httpEndpoint,
    config: { exporter: { metrics: { intervalMs: 1000 }, endpoints: { traces: spanReceiver.url } } },
    shipped: ['http'],
    ready: /running 1 of \d+ plugins/,
  })
  await periscope.waitForOutput(/tracing HTTP\/1\.x/, 'the http plugin to start')
})

after(async () => {
  await periscope?.stop()
  await nginx?.stop()
  await spanReceiver?.stop()
  await collector?.stop()
})

interface SpanReceiver {
  /** The full URL for exporter.endpoints.traces. */
  url: string
  /** How many export requests arrived so far. */
  count(): Promise<number>
  /** Each export request's body, as received. */
  bodies(): Promise<Buffer[]>
  stop(): Promise<void>
}

/**
 * An OTLP/HTTP protobuf trace receiver that only keeps the bodies; decoding waits for the end of
 * the load. It runs on a thread of its own: the test's own work (reading an access log of a
 * hundred thousand lines) must not hold up its answers, or Periscope's exports would wait on the
 * test and its queue would overflow.
 */
async function startSpanReceiver(): Promise<SpanReceiver> {
  const worker = new Worker(`
    const { createServer } = require('node:http')
    const { parentPort } = require('node:worker_threads')
    const bodies = []
    const server = createServer((request, response) => {
      const chunks = []
      request.on('data', (chunk) => chunks.push(chunk))
      request.on('end', () => {
        bodies.push(Buffer.concat(chunks))
        response.writeHead(200, { 'content-type': 'application/x-protobuf' }).end()
      })
    })
    server.listen(0, '127.0.0.1', () => parentPort.postMessage({ port: server.address().port }))
    parentPort.on('message', (message) => {
      if (message === 'count') parentPort.postMessage({ count: bodies.length })
      if (message === 'bodies') parentPort.postMessage({ bodies })
      if (message === 'stop') {
        server.closeAllConnections()
        server.close(() => parentPort.close())
      }
    })
  `, { eval: true })
  type Answer = { port?: number; count?: number; bodies?: Uint8Array[] }
  // each question's listeners go with its answer: polled counts would pile up 'error' listeners
  const next = () => new Promise<Answer>((resolve, reject) => {
    const answer = (message: Answer) => {
      worker.off('error', fail)
      resolve(message)
    }
    const fail = (error: Error) => {
      worker.off('message', answer)
      reject(error)
    }
    worker.once('message', answer)
    worker.once('error', fail)
  })
  const { port } = await next()
  return {
    url: `http://127.0.0.1:${port}/v1/traces`,
    async count() {
      const answer = next()
      worker.postMessage('count')
      return (await answer).count!
    },
    async bodies() {
      const answer = next()
      worker.postMessage('bodies')
      return (await answer).bodies!.map((body) => Buffer.from(body.buffer, body.byteOffset, body.byteLength))
    },
    async stop() {
      const exited = new Promise((resolve) => worker.once('exit', resolve))
      worker.postMessage('stop')
      await exited
    },
  }
}

interface DecodedSpan {
  kind: number
  /** process.pid and url.query, the attributes the accounting needs. */
  pid?: number
  query?: string
}

/** ExportTraceServiceRequest → ResourceSpans(1) → ScopeSpans(2) → Span(2): kind(6), attributes(9). */
function decodeSpans(body: Buffer): DecodedSpan[] {
  const spans: DecodedSpan[] = []
  protobufFields(body, 0, body.length, (field, _, from, to) => {
    if (field !== 1) return
    protobufFields(body, from, to, (field, _, from, to) => {
      if (field !== 2) return
      protobufFields(body, from, to, (field, _, from, to) => {
        if (field !== 2) return
        const span: DecodedSpan = { kind: 0 }
        protobufFields(body, from, to, (field, value, from, to) => {
          if (field === 6) span.kind = value
          if (field !== 9) return
          let key = ''
          protobufFields(body, from, to, (field, _, from, to) => {
            if (field === 1) key = body.toString('utf8', from, to)
            if (field !== 2) return
            // AnyValue: string_value(1), int_value(3)
            protobufFields(body, from, to, (field, value, from, to) => {
              if (key === 'process.pid' && field === 3) span.pid = value
              if (key === 'url.query' && field === 1) span.query = body.toString('utf8', from, to)
            })
          })
        })
        spans.push(span)
      })
    })
  })
  return spans
}

/**
 * Resolves once Periscope has worked through what the load left queued: no plugin has batches
 * waiting, and for 3 s at most a trickle of export requests arrived (the exporter sends what it
 * holds every second, and the host's other HTTP traffic is traced too), where working off the
 * load's backlog sends full batches back to back. Stopping earlier would end the plugin with
 * records still queued, which shutdown discards.
 */
async function settled(periscope: Periscope, receiver: SpanReceiver): Promise<void> {
  const admin = await connectAdmin(join(periscope.dir, 'admin.sock'))
  try {
    const start = Date.now()
    const seen: { at: number; received: number }[] = []
    for (;;) {
      const stats = await admin.request<{ plugins: { name: string; queuedBatches: number }[] }>('stats')
      const queued = stats.plugins.reduce((sum, p) => sum + p.queuedBatches, 0)
      const now = Date.now()
      seen.push({ at: now, received: await receiver.count() })
      while (seen.length > 1 && now - seen[1]!.at >= 3000) seen.shift()
      const window = seen[0]!
      if (queued === 0 && now - window.at >= 3000 && seen.at(-1)!.received - window.received <= 3) return
      if (now - start > 120_000) throw new Error(`Periscope was still busy 120 s after the load: ${queued} batch(es) queued in plugins, ${seen.at(-1)!.received - window.received} export(s) in the last 3 s`)
      await new Promise((resolve) => setTimeout(resolve, 250))
    }
  } finally {
    admin.close()
  }
}

/** The last exported value of each self-metric data point whose name matches. */
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

/** The last exported count of the histogram's data points whose attributes include `match`, summed. */
async function histogramCount(collector: Collector, name: string, match: Record<string, unknown>): Promise<number> {
  const latest = new Map<string, number>()
  for (const { item } of flatten('metrics', await collector.read('metrics'))) {
    if (item.name !== name) continue
    for (const point of (item.histogram as { dataPoints?: Record<string, unknown>[] } | undefined)?.dataPoints ?? []) {
      const attributes = attributesOf(point.attributes)
      if (Object.entries(match).every(([key, value]) => attributes[key] === value)) latest.set(JSON.stringify(attributes), Number(point.count))
    }
  }
  return [...latest.values()].reduce((a, b) => a + b, 0)
}

it(`wrk for ${durationS} s: spans plus counted drops account for every access log line`, { timeout: 600_000 }, async () => {
  const marker = `load=${process.pid}`
  const workers = new Set(nginx.workerPids())
  const wrk = await runWrk({ url: `${nginx.baseUrl}/?${marker}`, threads: 2, connections: 50, durationS })
  const served = (await nginx.waitForAccessLog((entries) => entries.filter((e) => e.uri === `/?${marker}`).length >= wrk.requests))
    .filter((e) => e.uri === `/?${marker}`).length
  await settled(periscope, spanReceiver)
  // SIGTERM flushes the exporter's queues, drop counters included
  const output = periscope.output
  await periscope.stop()
  let server = 0
  let client = 0
  for (const body of await spanReceiver.bodies()) {
    for (const span of decodeSpans(body)) {
      if (span.query !== marker) continue
      if (span.kind === SPAN_KIND_SERVER && workers.has(span.pid!)) server++
      if (span.kind === SPAN_KIND_CLIENT && span.pid === wrk.pid) client++
    }
  }
  // each loss once, where it happened: in the kernel, in the plugin host, at the exporter (the
  // plugin's own periscope.http.records_lost repeats the first two)
  const drops = await lastSelfMetric(collector, /^periscope\.(bpf\.events|plugin\.events|exporter)\.dropped$/)
  const dropped = [...drops.values()].reduce((a, b) => a + b, 0)
  console.log(`wrk: ${wrk.requests} requests (${wrk.requestsPerSecond.toFixed(0)}/s); nginx logged ${served}; server spans ${server} (${(server / served * 100).toFixed(3)}%), ` +
    `wrk client spans ${client}; counted drops ${dropped}: ${JSON.stringify(Object.fromEntries([...drops].filter(([, v]) => v > 0)))}`)
  assert.ok(drops.size > 0, `the drop counters reached the Collector\n${output().slice(-3000)}`)
  assert.ok(server <= served, `no invented server spans: ${server} spans for ${served} requests`)
  assert.ok(client <= served, `no invented client spans: ${client} spans for ${served} requests`)
  // the client side's duration histogram is keyed by this nginx's port, which no other traffic uses
  const clientDurations = await histogramCount(collector, 'http.client.request.duration', { 'server.port': nginx.port })
  if (dropped === 0) {
    assert.equal(server, served, `with no drop counted, every request nginx logged is a server span\n${output().slice(-3000)}`)
    assert.ok(client >= wrk.requests, `with no drop counted, every request wrk counted is a client span: ${client} for ${wrk.requests}`)
    assert.equal(clientDurations, client, 'every client span is counted once in http.client.request.duration')
  } else {
    assert.ok(server + dropped >= served, `server spans ${server} + counted drops ${dropped} cover the ${served} requests`)
  }
})
