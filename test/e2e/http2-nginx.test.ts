// Non-gRPC HTTP/2 spans end to end: Debian's nginx 1.22 with HTTP/2 listeners (over TLS with ALPN
// h2, and h2c with prior knowledge), driven by Debian's curl 7.88 (`--http2`,
// `--http2-prior-knowledge`), traced by `periscope run` with only the shipped http2 plugin,
// exported to a real Collector. Every request must be exactly one SERVER span of the nginx worker
// and one CLIENT span of curl, ordinary HTTP spans with `network.protocol.version` 2, and no
// rpc.* attribute.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { runCurl, type CurlRun, type CurlTransfer } from '../peers/clients.ts'
import { NGINX_ECHO_REPLY, startNginx, type Nginx } from '../peers/nginx.ts'
import { collectorSpans, startCollector, type Collector, type CollectorSpan } from '../peers/otelcol.ts'
import { startPeriscope, type Periscope } from '../peers/periscope.ts'
import { pollUntil } from '../peers/poll.ts'
import { describeSpans, histogramCount, pidOf, spansOf } from './http2-helpers.ts'

/** path → [status, http.route] */
const PATHS: [string, number, string][] = [
  ['/', 200, '/'],
  ['/status/404', 404, '/status/*'],
  ['/status/500', 500, '/status/*'],
  ['/big', 200, '/big'],
]

/**
 * How long after the client read its last bytes the server's write of them may return: the
 * server's thread may wait for a CPU in between (5.9 ms once here, with the 2 CPUs busy). h2c
 * /big's END_STREAM goes by uncaptured at both ends (two writev calls of 32 KiB, 16 KiB captured
 * a call), so both spans end with their connection's close: nginx's comes after curl's.
 */
const WRITE_RETURN_SLACK_MS = 25

describe('HTTP/2 spans from curl to nginx', { timeout: 600_000 }, () => {
  let collector: Collector
  let nginx: Nginx
  let periscope: Periscope
  /** Requests made to nginx while traced. */
  let requests = 0

  before(async () => {
    collector = await startCollector()
    // before Periscope: its readiness probes are not traced
    nginx = await startNginx({ http: false, http2: true })
    periscope = await startPeriscope({ endpoint: collector.httpEndpoint, shipped: ['http2'], ready: /running 1 of \d+ plugins/ })
    await periscope.waitForOutput(/tracing gRPC and HTTP\/2/, 'the http2 plugin to start')
  })

  after(async () => {
    await periscope?.stop()
    await nginx?.stop()
    await collector?.stop()
  })

  /** nginx's SERVER spans whose query is `case=<name>`, once there are `count`; in start order. */
  async function serverSpans(name: string, count: number): Promise<CollectorSpan[]> {
    const workers = nginx.workerPids()
    let found: CollectorSpan[] = []
    await pollUntil(async () => {
      found = collectorSpans(await collector.read('traces')).filter((s) => s.kind === 'server' && s.attributes['url.query'] === `case=${name}`)
      return found.length >= count
    }, { what: `${count} nginx server spans of case=${name}`, timeoutMs: 60_000, intervalMs: 200, details: () => `${describeSpans(found)}\n${periscope.output().slice(-3000)}` })
    assert.equal(found.length, count, describeSpans(found))
    for (const span of found) assert.ok(workers.includes(pidOf(span)), `server span of an nginx worker (${workers}): ${describeSpans([span])}`)
    return found.sort((a, b) => (a.startNs < b.startNs ? -1 : 1))
  }

  /** The attributes of one request's two spans; the server span inside the client span, its child. */
  function checkPair(clientSpan: CollectorSpan, serverSpan: CollectorSpan, transfer: CurlTransfer, expected: { method: string; path: string; status: number; route: string; scheme: string; port: number }): void {
    const where = `${JSON.stringify(expected)}\n${describeSpans([clientSpan, serverSpan])}`
    const common = {
      'http.request.method': expected.method,
      'url.path': expected.path,
      'url.scheme': expected.scheme,
      'http.response.status_code': expected.status,
      'network.protocol.version': '2',
      'server.address': '127.0.0.1',
      'server.port': expected.port,
      'network.peer.address': '127.0.0.1',
    }
    assert.deepEqual(pick(clientSpan, [...Object.keys(common), 'network.peer.port', 'user_agent.original', 'error.type']), {
      ...common, 'network.peer.port': expected.port, 'user_agent.original': 'curl/7.88.1', 'error.type': expected.status >= 400 ? String(expected.status) : undefined,
    }, where)
    assert.deepEqual(pick(serverSpan, [...Object.keys(common), 'http.route', 'client.address', 'client.port', 'network.peer.port', 'error.type']), {
      ...common, 'http.route': expected.route, 'client.address': '127.0.0.1', 'client.port': transfer.localPort, 'network.peer.port': transfer.localPort,
      'error.type': expected.status >= 500 ? String(expected.status) : undefined,
    }, where)
    assert.equal(clientSpan.name, expected.method, where)
    assert.equal(serverSpan.name, `${expected.method} ${expected.route}`, where)
    assert.equal(clientSpan.error, expected.status >= 400, where)
    assert.equal(serverSpan.error, expected.status >= 500, where)
    for (const span of [clientSpan, serverSpan]) {
      assert.deepEqual(Object.keys(span.attributes).filter((key) => key.startsWith('rpc.')), [], `no rpc.* attribute on HTTP: ${where}`)
    }
    // both ends' times come from the kernel's clock: the server reads the request after the client
    // began to write it; its last write may return a little after the client read what it wrote
    const late = Number(serverSpan.endNs - clientSpan.endNs) / 1e6
    assert.ok(serverSpan.startNs >= clientSpan.startNs && late <= WRITE_RETURN_SLACK_MS && serverSpan.endNs > serverSpan.startNs,
      `server span inside the client span (its end ${late} ms after the client's): ${where}`)
    assert.equal(serverSpan.traceId, clientSpan.traceId, where)
    assert.equal(serverSpan.parentSpanId, clientSpan.spanId, `the server span is the client span's child: ${where}`)
  }

  function curlOk(run: CurlRun, statuses: number[]): void {
    assert.deepEqual(run.transfers.map((t) => [t.status, t.httpVersion]), statuses.map((s) => [s, '2']), run.stderr)
  }

  it('curl --http2 over TLS: four requests on one connection are four CLIENT spans of curl and four SERVER spans of nginx', async () => {
    const run = await runCurl(PATHS.map(([path]) => `${nginx.h2Url}${path}?case=tls`), { cacert: nginx.certPath, extraArgs: ['--http2'] })
    curlOk(run, PATHS.map(([, status]) => status))
    assert.deepEqual(run.transfers.map((t) => t.newConnections), [1, 0, 0, 0], 'one connection')
    requests += PATHS.length
    const clients = await spansOf(collector, periscope, run.pid, 'client', PATHS.length)
    const servers = await serverSpans('tls', PATHS.length)
    for (const [i, [path, status, route]] of PATHS.entries()) {
      checkPair(clients[i]!, servers[i]!, run.transfers[i]!, { method: 'GET', path, status, route, scheme: 'https', port: nginx.h2Port! })
    }
  })

  it('h2c with prior knowledge: each request a CLIENT span of its curl and a SERVER span of nginx', async () => {
    // curl 7.88.1 fails the second transfer on a reused prior-knowledge connection ("Error in the
    // HTTP2 framing layer"), so each request is a curl of its own
    const runs: CurlRun[] = []
    for (const [path] of PATHS) runs.push(await runCurl(`${nginx.h2cUrl}${path}?case=h2c`, { extraArgs: ['--http2-prior-knowledge'] }))
    for (const [i, run] of runs.entries()) curlOk(run, [PATHS[i]![1]])
    requests += PATHS.length
    const servers = await serverSpans('h2c', PATHS.length)
    for (const [i, [path, status, route]] of PATHS.entries()) {
      const [clientSpan] = await spansOf(collector, periscope, runs[i]!.pid, 'client', 1)
      checkPair(clientSpan!, servers[i]!, runs[i]!.transfers[0]!, { method: 'GET', path, status, route, scheme: 'http', port: nginx.h2cPort! })
    }
  })

  it('a POST whose body is larger than the capture size: one pair, with the status and the whole exchange', async () => {
    const body = Buffer.alloc(100_000, 'b')
    const run = await runCurl(`${nginx.h2Url}/echo?case=post`, { cacert: nginx.certPath, extraArgs: ['--http2'], body })
    curlOk(run, [200])
    assert.equal(run.transfers[0]!.bodyBytes, NGINX_ECHO_REPLY.length)
    requests += 1
    const [clientSpan] = await spansOf(collector, periscope, run.pid, 'client', 1)
    const [serverSpan] = await serverSpans('post', 1)
    checkPair(clientSpan!, serverSpan!, run.transfers[0]!, { method: 'POST', path: '/echo', status: 200, route: '/echo', scheme: 'https', port: nginx.h2Port! })
  })

  it('nginx made no other span, and http.server.request.duration counts every request as HTTP/2', async () => {
    const workers = nginx.workerPids()
    const all = collectorSpans(await collector.read('traces')).filter((s) => workers.includes(pidOf(s)))
    assert.equal(all.length, requests, describeSpans(all))
    let count = 0
    await pollUntil(async () => (count = histogramCount(await collector.read('metrics'), 'http.server.request.duration', { 'network.protocol.version': '2' })) >= requests, {
      what: `http.server.request.duration to count ${requests} HTTP/2 requests`, timeoutMs: 60_000, intervalMs: 500, details: () => `count ${count}`,
    })
    assert.equal(count, requests)
  })
})

function pick(span: CollectorSpan, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.map((k) => [k, span.attributes[k]]))
}
