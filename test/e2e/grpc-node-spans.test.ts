// gRPC spans end to end from Node: an @grpc/grpc-js server and client (test/peers/grpc-node.ts),
// each its own process, plaintext (h2c) and TLS, traced by `periscope run` with only the shipped
// http2 plugin, exported to a real Collector. Every RPC the client made must be exactly one
// CLIENT span of the client's pid and one SERVER span of the server's pid, the server span the
// client span's child, with the RPC conventions' attributes and the status code the client got;
// a streaming call's span lasts as long as its stream; no span may be invented.
//
// Node links OpenSSL statically and drives it through memory BIOs: its SSL_write and SSL_read
// never touch the socket themselves, so the TLS half depends on the kernel side telling which
// socket a Node SSL object's plaintext belongs to.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { ECHO_SERVICE, startGrpcNodeClient, startGrpcNodeServer, type GrpcCall, type GrpcNodeClient, type GrpcNodeServer, type GrpcResult } from '../peers/grpc-node.ts'
import { startCollector, type Collector, type CollectorSpan } from '../peers/otelcol.ts'
import { startPeriscope, type Periscope } from '../peers/periscope.ts'
import { pollUntil } from '../peers/poll.ts'
import { allSpansOf, describeSpans, histogramCount, spansOf, waitForOpenSslUprobes } from './http2-helpers.ts'

const NODE_BINARY = new URL('../../node_modules/.bin/node', import.meta.url).pathname

/** Span times come from the kernel's clock, the client's from its own: this much apart at most. */
const CLOCK_SLACK_NS = 20_000_000n

/** gRPC codes the conventions count as a server's errors. */
const SERVER_ERROR_CODES = new Set([2, 4, 12, 13, 14, 15])

/** The client's deadline, and how long the server's handler blocks past it. */
const DEADLINE_MS = 300
const STALL_MS = 700

/** Unary calls, and the status each must end with. */
const UNARY: { call: GrpcCall; code: number }[] = [
  { call: { kind: 'say', name: 'ok', outcome: 'ok' }, code: 0 },
  { call: { kind: 'say', name: 'missing', outcome: 'not-found' }, code: 5 },
  { call: { kind: 'say', name: 'thrown', outcome: 'throw' }, code: 2 },
  { call: { kind: 'say', name: 'internal', outcome: 'internal' }, code: 13 },
  // the server answers DEADLINE_EXCEEDED in its trailers
  { call: { kind: 'say', name: 'server-deadline', outcome: 'deadline' }, code: 4 },
  // the client's own deadline: it resets the stream (RST_STREAM CANCEL) at 300 ms; the server,
  // blocked until 700 ms, reads the reset then and answers nothing
  { call: { kind: 'say', name: 'client-deadline', outcome: 'stall', delayMs: STALL_MS, deadlineMs: DEADLINE_MS }, code: 4 },
]

/** Streaming calls and the least time each stream must last. */
const STREAMING: { call: GrpcCall; method: string; received: number; minMs: number }[] = [
  { call: { kind: 'count', count: 5, intervalMs: 100 }, method: 'Count', received: 5, minMs: 500 },
  { call: { kind: 'sum', values: 4, intervalMs: 100 }, method: 'Sum', received: 4, minMs: 400 },
  { call: { kind: 'chat', messages: 3, intervalMs: 100 }, method: 'Chat', received: 3, minMs: 300 },
]

const CONCURRENT = 100

/** JSON with bigints as strings, for failure messages. */
const show = (value: unknown): string => JSON.stringify(value, (_, v: unknown) => (typeof v === 'bigint' ? String(v) : v))

describe('gRPC spans from a grpc-js server and client', { timeout: 600_000 }, () => {
  let collector: Collector
  let periscope: Periscope
  /** Say calls to every server so far: the server histogram has no port to tell them apart. */
  let saysToAll = 0

  before(async () => {
    collector = await startCollector()
    periscope = await startPeriscope({
      endpoint: collector.httpEndpoint,
      shipped: ['http2'],
      ready: /running 1 of \d+ plugins/,
      config: { exporter: { queue: { spans: 100_000 } } },
    })
    await periscope.waitForOutput(/tracing gRPC/, 'the http2 plugin to start')
  })

  after(async () => {
    await periscope?.stop()
    await collector?.stop()
  })

  for (const tls of [false, true]) {
    describe(tls ? 'over TLS (the node binary\'s OpenSSL)' : 'plaintext (h2c)', () => {
      let server: GrpcNodeServer
      let client: GrpcNodeClient
      /** Calls this client made, for the metric and the final count. */
      let made = 0
      let says = 0

      before(async () => {
        server = await startGrpcNodeServer({ tls })
        // the server's exec made Periscope attach to the node binary; the client connects after that
        if (tls) await waitForOpenSslUprobes(periscope, NODE_BINARY)
        client = await startGrpcNodeClient(server)
      })

      after(async () => {
        await client?.stop()
        await server?.stop()
      })

      /** Makes the calls, counted as made whatever the test then finds. */
      async function call(calls: GrpcCall[], options: { parallel?: boolean } = {}): Promise<GrpcResult[]> {
        made += calls.length
        says += calls.filter((c) => c.kind === 'say').length
        saysToAll += calls.filter((c) => c.kind === 'say').length
        return client.run(calls, options)
      }

      /** The CLIENT and SERVER spans of the last `count` RPCs, in start order. */
      async function nextSpans(count: number): Promise<{ clients: CollectorSpan[]; servers: CollectorSpan[] }> {
        const clients = (await spansOf(collector, periscope, client.pid, 'client', made)).slice(made - count)
        const servers = (await spansOf(collector, periscope, server.pid, 'server', made)).slice(made - count)
        return { clients, servers }
      }

      /** The attributes both spans of an RPC must have, and the server span the client span's child. */
      function checkPair(clientSpan: CollectorSpan, serverSpan: CollectorSpan, method: string, rpc: GrpcResult, serverOutlivesClient = false): void {
        const where = `${method} ${show(rpc)}\n${describeSpans([clientSpan, serverSpan])}`
        for (const span of [clientSpan, serverSpan]) {
          assert.equal(span.name, `${ECHO_SERVICE}/${method}`, where)
          assert.equal(span.attributes['rpc.system'], 'grpc', where)
          assert.equal(span.attributes['rpc.service'], ECHO_SERVICE, where)
          assert.equal(span.attributes['rpc.method'], method, where)
          assert.equal(span.attributes['rpc.grpc.status_code'], rpc.code, where)
          assert.equal(span.attributes['network.protocol.name'], 'http', where)
          assert.equal(span.attributes['network.protocol.version'], '2', where)
          assert.equal(span.attributes['server.address'], '127.0.0.1', where)
          assert.equal(span.attributes['server.port'], server.port, where)
          assert.equal(span.attributes['network.peer.address'], '127.0.0.1', where)
          // within the client's view of the call (a server that outlives the client's deadline ends later)
          const endLimit = span === serverSpan && serverOutlivesClient ? rpc.endNs + BigInt(STALL_MS) * 1_000_000n : rpc.endNs + CLOCK_SLACK_NS
          assert.ok(span.startNs >= rpc.startNs - CLOCK_SLACK_NS && span.endNs <= endLimit && span.endNs > span.startNs, `span inside the call as the client saw it: ${where}`)
        }
        assert.equal(clientSpan.attributes['process.pid'], client.pid)
        assert.equal(clientSpan.attributes['network.peer.port'], server.port, where)
        assert.equal(serverSpan.attributes['process.pid'], server.pid)
        assert.equal(serverSpan.attributes['client.address'], '127.0.0.1', where)
        assert.equal(serverSpan.attributes['client.port'], serverSpan.attributes['network.peer.port'], where)
        assert.notEqual(serverSpan.attributes['client.port'], server.port, where)
        // the client errs on any code, the server on its own failures only
        assert.equal(clientSpan.error, rpc.code !== 0, `client span status: ${where}`)
        assert.equal(serverSpan.error, SERVER_ERROR_CODES.has(rpc.code), `server span status: ${where}`)
        assert.equal(clientSpan.attributes['error.type'], rpc.code === 0 ? undefined : String(rpc.code), where)
        assert.equal(serverSpan.attributes['error.type'], SERVER_ERROR_CODES.has(rpc.code) ? String(rpc.code) : undefined, where)
        assert.equal(serverSpan.traceId, clientSpan.traceId, `one trace: ${where}`)
        assert.equal(serverSpan.parentSpanId, clientSpan.spanId, `the server span is the client span's child: ${where}`)
        assert.equal(clientSpan.parentSpanId, '', where)
      }

      it('unary: OK, NOT_FOUND, a throwing handler, INTERNAL, DEADLINE_EXCEEDED from the server and the client\'s own deadline', async () => {
        const results = await call(UNARY.map((u) => u.call))
        assert.deepEqual(results.map((r) => r.code), UNARY.map((u) => u.code), show(results))
        const { clients, servers } = await nextSpans(UNARY.length)
        for (const [i, rpc] of results.entries()) checkPair(clients[i]!, servers[i]!, 'Say', rpc, UNARY[i]!.call.kind === 'say' && UNARY[i]!.call.outcome === 'stall')
        // the handler's error messages are the spans' status messages
        assert.equal(clients[1]!.statusMessage, 'no greeting for missing')
        assert.equal(servers[3]!.statusMessage, 'the handler failed')
        // the client gave up at its deadline: its span ends with its reset; the server's when it read the reset
        const [clientMs, serverMs] = [clients[5]!, servers[5]!].map((span) => Number(span.endNs - span.startNs) / 1e6)
        assert.ok(clientMs! >= DEADLINE_MS * 0.9 && clientMs! < STALL_MS, `the client-deadline CLIENT span lasted ${clientMs} ms`)
        assert.ok(serverMs! >= STALL_MS - 5 && serverMs! < STALL_MS + 1000, `the client-deadline SERVER span lasted ${serverMs} ms`)
      })

      it('server, client and bidirectional streaming: one span each, as long as the stream', async () => {
        const results = await call(STREAMING.map((s) => s.call))
        assert.deepEqual(results.map((r) => [r.code, r.received]), STREAMING.map((s) => [0, s.received]))
        const { clients, servers } = await nextSpans(STREAMING.length)
        for (const [i, { method, minMs }] of STREAMING.entries()) {
          const rpc = results[i]!
          checkPair(clients[i]!, servers[i]!, method, rpc)
          const clientMs = Number(rpc.endNs - rpc.startNs) / 1e6
          for (const span of [clients[i]!, servers[i]!]) {
            const ms = Number(span.endNs - span.startNs) / 1e6
            assert.ok(ms >= minMs - 5 && ms <= clientMs + 20, `${span.kind} ${method} span lasted ${ms} ms; the stream at least ${minMs}, the client saw ${clientMs}`)
          }
        }
      })

      it(`${CONCURRENT} concurrent unary RPCs on the one connection: ${CONCURRENT} matched pairs`, async () => {
        const calls: GrpcCall[] = Array.from({ length: CONCURRENT }, (_, i) => ({ kind: 'say', name: `concurrent-${i}`, outcome: i % 10 === 9 ? 'not-found' : 'ok' }))
        const results = await call(calls, { parallel: true })
        assert.equal(results.length, CONCURRENT)
        assert.deepEqual(results.map((r) => r.code), calls.map((_, i) => (i % 10 === 9 ? 5 : 0)))
        const { clients, servers } = await nextSpans(CONCURRENT)
        const byId = new Map(clients.map((s) => [s.spanId, s]))
        assert.equal(byId.size, CONCURRENT)
        for (const serverSpan of servers) {
          const clientSpan = byId.get(serverSpan.parentSpanId)
          assert.ok(clientSpan !== undefined, `server span without its client span: ${describeSpans([serverSpan])}`)
          byId.delete(serverSpan.parentSpanId)
          assert.equal(serverSpan.attributes['rpc.grpc.status_code'], clientSpan.attributes['rpc.grpc.status_code'])
          assert.equal(serverSpan.attributes['client.port'], servers[0]!.attributes['client.port'], 'one connection')
          assert.ok(serverSpan.startNs >= clientSpan.startNs - CLOCK_SLACK_NS && serverSpan.endNs <= clientSpan.endNs + CLOCK_SLACK_NS, describeSpans([clientSpan, serverSpan]))
        }
        assert.equal(clients.filter((s) => s.attributes['rpc.grpc.status_code'] === 5).length, CONCURRENT / 10)
      })

      it('rpc.client.duration and rpc.server.duration count every Say call, and no other span appeared', async () => {
        const match = { 'rpc.system': 'grpc', 'rpc.service': ECHO_SERVICE, 'rpc.method': 'Say' }
        let counts = [0, 0]
        await pollUntil(async () => {
          const metrics = await collector.read('metrics')
          counts = [histogramCount(metrics, 'rpc.client.duration', { ...match, 'server.port': server.port }), histogramCount(metrics, 'rpc.server.duration', match)]
          return counts[0]! >= says && counts[1]! >= saysToAll
        }, { what: `rpc.client.duration to count ${says} Say calls to port ${server.port}`, timeoutMs: 60_000, intervalMs: 500, details: () => `counts ${counts}` })
        assert.equal(counts[0], says)
        assert.equal(counts[1], saysToAll)
        const spans = await allSpansOf(collector, [client.pid, server.pid])
        assert.equal(spans.length, 2 * made, describeSpans(spans))
      })
    })
  }
})
