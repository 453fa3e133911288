// HTTP/2 connections opened before Periscope: a node:http2 session and a grpc-js channel, each
// between two processes of their own, carry requests before `periscope run` (only the shipped
// http2 plugin) starts and more after. Periscope meets these connections in their middle, with
// HPACK's dynamic tables unknown: a header that refers to an entry made before it started must be
// reported as unknown (method `_OTHER`, status absent), never guessed; one sent as a literal
// refills the table, and later references to it resolve.
//
// What the clients send follows from nghttp2's HPACK encoder (Node's, in both directions), as
// seen on the wire of these very peers:
// - `:path` is always a literal never added to the table (nghttp2 does not index it), so paths
//   always resolve; `:method` GET and POST, `:scheme` and `:status` 200, 204, 206, 304, 400, 404
//   and 500 are static entries, so they resolve too.
// - Every other field is added to the table the first time and referred to by index after:
//   `:method` PUT or DELETE, `:status` 503 or 201, `:authority`, content-type, te, user-agent,
//   grpc-status, grpc-message, and a new value of a known name refers to that name by index.
// So after Periscope starts: a PUT sent before is `_OTHER`, its 503 unknown; the first DELETE is
// a literal (known from then on), and so is its 201; a gRPC call's content-type and grpc-status
// are unknown (added before): the plugin takes a POST with an unknown content type and a path of
// gRPC's shape (`/package.Service/Method`) for gRPC, and leaves its status code out (the trailers'
// grpc-status name is unknown, even when its value, 5, is a literal); a `traceparent` first sent
// after the start is a literal, and the next call's one, a new value of that now known name,
// resolves too.
//
// Plaintext only: Node's TLS goes through memory BIOs (see grpc-node-spans.test.ts).
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { startGrpcNodeClient, startGrpcNodeServer, startH2Client, startH2Server, type GrpcNodeClient, type GrpcNodeServer, type H2Client, type H2Server } from '../peers/grpc-node.ts'
import { startCollector, type Collector, type CollectorSpan } from '../peers/otelcol.ts'
import { startPeriscope, type Periscope } from '../peers/periscope.ts'
import { pollUntil } from '../peers/poll.ts'
import { allSpansOf, describeSpans, latestPoints, spansOf } from './http2-helpers.ts'

const TRACE_1 = '4bf92f3577b34da6a3ce929d0e0e4736'
const TRACE_2 = '0af7651916cd43dd8448eb211c80319c'
const PARENT_1 = '00f067aa0ba902b7'
const PARENT_2 = 'b7ad6b7169203331'

describe('HTTP/2 connections opened before Periscope', { timeout: 600_000 }, () => {
  let collector: Collector
  let periscope: Periscope
  let h2Server: H2Server
  let h2Client: H2Client
  let grpcServer: GrpcNodeServer
  let grpcClient: GrpcNodeClient

  before(async () => {
    collector = await startCollector()
    h2Server = await startH2Server()
    h2Client = await startH2Client(h2Server.url)
    grpcServer = await startGrpcNodeServer()
    grpcClient = await startGrpcNodeClient(grpcServer)
    // what fills the dynamic tables before Periscope starts
    assert.deepEqual((await h2Client.run([{ method: 'PUT', path: '/status/503' }, { method: 'GET', path: '/status/404' }])).map((r) => r.status), [503, 404])
    assert.deepEqual((await grpcClient.run([{ kind: 'say', name: 'before', outcome: 'ok' }, { kind: 'say', name: 'before', outcome: 'not-found' }])).map((r) => r.code), [0, 5])
    periscope = await startPeriscope({ endpoint: collector.httpEndpoint, shipped: ['http2'], ready: /running 1 of \d+ plugins/ })
    await periscope.waitForOutput(/tracing gRPC and HTTP\/2/, 'the http2 plugin to start')
    await periscope.waitForOutput(/start-up scan found \d+ listening TCP sockets, [1-9]\d* TCP connections opened before Periscope/, 'the start-up scan to find the open connections')
  })

  after(async () => {
    await h2Client?.stop()
    await grpcClient?.stop()
    await periscope?.stop()
    await h2Server?.stop()
    await grpcServer?.stop()
    await collector?.stop()
  })

  /** method, path, status and error of each span, one line a span. */
  const lines = (spans: CollectorSpan[]): string[] => spans.map((s) =>
    `${s.name} | ${s.attributes['http.request.method']} ${s.attributes['url.path']} ${s.attributes['http.response.status_code'] ?? 'no-status'} ${s.error ? `error ${s.attributes['error.type']}` : 'ok'}`)

  it('node:http2: a method and a status added before are unknown, static ones and literals resolve, and refilled entries resolve later', async () => {
    const results = await h2Client.run([
      { method: 'PUT', path: '/status/503' },
      { method: 'GET', path: '/status/404' },
      { method: 'DELETE', path: '/status/201' },
      { method: 'DELETE', path: '/status/201' },
    ])
    assert.deepEqual(results.map((r) => r.status), [503, 404, 201, 201])
    const clients = await spansOf(collector, periscope, h2Client.pid, 'client', 4)
    const servers = await spansOf(collector, periscope, h2Server.pid, 'server', 4)
    assert.deepEqual(lines(clients), [
      '_OTHER | _OTHER /status/503 no-status ok',
      'GET | GET /status/404 404 error 404',
      'DELETE | DELETE /status/201 201 ok',
      'DELETE | DELETE /status/201 201 ok',
    ], describeSpans(clients))
    assert.deepEqual(lines(servers), [
      '_OTHER /status/* | _OTHER /status/503 no-status ok',
      'GET /status/* | GET /status/404 404 ok',
      'DELETE /status/* | DELETE /status/201 201 ok',
      'DELETE /status/* | DELETE /status/201 201 ok',
    ], describeSpans(servers))
    for (const [i, span] of [...clients, ...servers].entries()) {
      const where = describeSpans([span])
      assert.equal(span.attributes['network.protocol.version'], '2', where)
      assert.equal(span.attributes['url.scheme'], 'http', where)
      // :authority was added before: the address is the connection's, which is the same here
      assert.equal(span.attributes['server.address'], '127.0.0.1', where)
      assert.equal(span.attributes['server.port'], h2Server.port, where)
      assert.deepEqual(Object.keys(span.attributes).filter((key) => key.startsWith('rpc.')), [], where)
      if (i < 4) assert.ok(span.startNs >= results[i]!.startNs - 20_000_000n && span.endNs <= results[i]!.endNs + 20_000_000n, `inside the request as the client saw it: ${where}`)
    }
    for (const [i, server] of servers.entries()) assert.equal(server.parentSpanId, clients[i]!.spanId, 'matched by connection and stream')
  })

  it('grpc-js: calls on the old channel are RPC spans without a status code, and a traceparent first sent after the start is read', async () => {
    const results = await grpcClient.run([
      { kind: 'say', name: 'after', outcome: 'ok' },
      { kind: 'say', name: 'after', outcome: 'ok', metadata: { traceparent: `00-${TRACE_1}-${PARENT_1}-01` } },
      { kind: 'say', name: 'after', outcome: 'not-found', metadata: { traceparent: `00-${TRACE_2}-${PARENT_2}-01` } },
    ])
    assert.deepEqual(results.map((r) => r.code), [0, 0, 5])
    const clients = await spansOf(collector, periscope, grpcClient.pid, 'client', 3)
    const servers = await spansOf(collector, periscope, grpcServer.pid, 'server', 3)
    // content-type and grpc-status were added before: gRPC by the path's shape, and no status code is guessed
    const rpc = (spans: CollectorSpan[]): string[] => spans.map((span) =>
      `${span.name} ${span.attributes['rpc.system']} ${span.attributes['rpc.service']} ${span.attributes['rpc.method']} ${span.attributes['rpc.grpc.status_code'] ?? 'no-status'} ${span.error ? 'error' : 'ok'}`)
    assert.deepEqual(rpc(clients), Array(3).fill('periscope.test.Echo/Say grpc periscope.test.Echo Say no-status ok'), describeSpans(clients))
    assert.deepEqual(rpc(servers), Array(3).fill('periscope.test.Echo/Say grpc periscope.test.Echo Say no-status ok'), describeSpans(servers))
    for (const span of [...clients, ...servers]) assert.deepEqual(Object.keys(span.attributes).filter((key) => key.startsWith('http.')), [], describeSpans([span]))
    assert.equal(servers[0]!.parentSpanId, clients[0]!.spanId)
    // the first traceparent: a literal name and value; the second: the name by its new index, a literal value
    assert.deepEqual([clients[1]!.traceId, clients[1]!.parentSpanId, servers[1]!.traceId, servers[1]!.parentSpanId], [TRACE_1, PARENT_1, TRACE_1, PARENT_1])
    assert.deepEqual([clients[2]!.traceId, clients[2]!.parentSpanId, servers[2]!.traceId, servers[2]!.parentSpanId], [TRACE_2, PARENT_2, TRACE_2, PARENT_2])
  })

  it('periscope.http2.headers_unresolved counts the unknown fields, and no other span appeared', async () => {
    let value = 0
    await pollUntil(async () => {
      const points = latestPoints(await collector.read('metrics'), 'periscope.http2.headers_unresolved').filter((p) => p.attributes['periscope.plugin'] === 'http2')
      value = points[0]?.value ?? 0
      return value > 0
    }, { what: 'periscope.http2.headers_unresolved > 0 (reported every 10 s)', timeoutMs: 60_000, intervalMs: 500, details: () => `last value ${value}` })
    const spans = await allSpansOf(collector, [h2Client.pid, h2Server.pid, grpcClient.pid, grpcServer.pid])
    assert.equal(spans.length, 2 * (4 + 3), describeSpans(spans))
  })
})
