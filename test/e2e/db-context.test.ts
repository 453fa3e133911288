// Trace context across plugins, end to end: a thread-per-request web service (Python's
// ThreadingHTTPServer, fixtures/shop-app.py) that reads and counts in Redis through redis-py while
// it answers, driven by real curl, traced by `periscope run` with its shipped http and redis
// plugins, exported to a real Collector. The Redis calls made while a request was served must be
// children of that request's SERVER span, in its trace; the call made before the service served
// anything must be a trace of its own.
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { after, before, test } from 'node:test'
import { collectorSpans, startCollector, type Collector, type CollectorSpan } from '../peers/otelcol.ts'
import { runCurl } from '../peers/clients.ts'
import { startPeriscope, type Periscope } from '../peers/periscope.ts'
import { startRedis, type Redis } from '../peers/redis.ts'
import { pollUntil } from '../peers/poll.ts'

const APP = fileURLToPath(new URL('./fixtures/shop-app.py', import.meta.url))
// Debian's python3, which has python3-redis (a pyenv python3 may come first on PATH)
const PYTHON = '/usr/bin/python3'

let collector: Collector
let redis: Redis
let periscope: Periscope
let app: ChildProcess | undefined

before(async () => {
  collector = await startCollector()
  redis = await startRedis()
  periscope = await startPeriscope({ endpoint: collector.httpEndpoint, shipped: ['http', 'redis'], ready: /running 2 of \d+ plugins/ })
})

after(async () => {
  app?.kill('SIGKILL')
  await periscope?.stop()
  await redis?.stop()
  await collector?.stop()
})

/** Starts the service; resolves with its pid and port once it listens. */
async function startApp(): Promise<{ pid: number; port: number }> {
  const child = spawn(PYTHON, [APP, String(redis.port)], { stdio: ['ignore', 'pipe', 'pipe'] })
  app = child
  let out = ''
  let err = ''
  child.stdout!.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr!.on('data', (d: Buffer) => { err += d.toString() })
  await pollUntil(() => /listening \d+/.test(out), {
    what: 'the shop service to listen',
    timeoutMs: 20_000,
    failed: () => (child.exitCode !== null ? `the shop service exited (${child.exitCode}): ${err}` : undefined),
  })
  return { pid: child.pid!, port: Number(/listening (\d+)/.exec(out)![1]) }
}

test('Redis calls made while a request is served are children of its server span; a call outside any request is its own trace', { timeout: 180_000 }, async () => {
  const { pid, port } = await startApp()
  const requests = 5
  const curl = await runCurl([...Array.from({ length: requests }, (_, i) => `http://127.0.0.1:${port}/item/${i + 1}`), `http://127.0.0.1:${port}/health`])
  assert.deepEqual(curl.transfers.map((t) => t.status), [...Array(requests).fill(200), 200])

  const ofApp = (spans: CollectorSpan[]) => spans.filter((s) => s.attributes['process.pid'] === pid)
  let spans: CollectorSpan[] = []
  await collector.waitFor('traces', (lines) => {
    spans = ofApp(collectorSpans(lines))
    // the SET before serving, GET and INCRBY (redis-py's incr) per item request, and the server spans
    return spans.filter((s) => s.attributes['db.system.name'] === 'redis').length >= 1 + 2 * requests && spans.filter((s) => s.kind === 'server').length >= requests + 1
  }, 60_000).catch((error: Error) => {
    throw new Error(`${error.message}\nspans of the service so far: ${JSON.stringify(spans.map((s) => [s.name, s.kind, s.parentSpanId]))}\nperiscope output:\n${periscope.output().slice(-3000)}`)
  })

  const servers = spans.filter((s) => s.kind === 'server')
  const calls = spans.filter((s) => s.attributes['db.system.name'] === 'redis')
  assert.equal(servers.length, requests + 1, 'one server span per request')
  assert.equal(calls.length, 1 + 2 * requests, 'one span per Redis command, none invented')
  const seed = calls.filter((c) => c.name === 'SET')
  assert.equal(seed.length, 1)
  assert.equal(seed[0]!.parentSpanId, '', 'the call before serving has no parent')
  assert.ok(!servers.some((s) => s.traceId === seed[0]!.traceId), 'and is in no request\'s trace')
  for (let i = 1; i <= requests; i++) {
    const server = servers.find((s) => s.attributes['url.path'] === `/item/${i}`)
    assert.ok(server !== undefined, `a server span for /item/${i}`)
    const children = calls.filter((c) => c.parentSpanId === server.spanId)
    assert.deepEqual(children.map((c) => c.name).sort(), ['GET', 'INCRBY'], `/item/${i}: its GET and INCRBY (redis-py's incr)`)
    for (const child of children) {
      assert.equal(child.traceId, server.traceId)
      assert.ok(child.startNs >= server.startNs && child.endNs <= server.endNs, 'a child lies within its parent')
    }
  }
  const health = servers.find((s) => s.attributes['url.path'] === '/health')!
  assert.equal(calls.filter((c) => c.parentSpanId === health.spanId).length, 0, '/health made no Redis call')
})
