// gRPC spans end to end between a Go server and a Go client (grpc-go's helloworld and routeguide,
// test/peers/grpc-go), each its own process, traced by `periscope run` with only the shipped
// http2 plugin and exported to a real Collector. Plaintext HTTP/2 (h2c) is seen by sockdata's
// socket hooks; TLS only through the Go crypto/tls uprobes (followGoTls), on a normal binary and a
// stripped one (`-s -w`: the functions are found through .gopclntab). Every RPC the client made
// must be exactly one CLIENT span of the client's pid and one SERVER span of the server's pid
// (nothing else on the server's port), with the RPC's service, method and status code, the
// server's span the child of the client's; streams are one span each, as long as the client
// measured; 100 concurrent RPCs on one connection are 100 correctly paired spans; the duration
// histograms count every RPC.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { attributesOf, collectorSpans, flatten, startCollector, type Collector, type CollectorSpan } from '../peers/otelcol.ts'
import { GRPC_GO_SCENARIO, grpcGoBinaries, runGrpcGoClient, startGrpcGoServer, type GrpcGoClientRun, type GrpcGoRpc, type GrpcGoScenario, type GrpcGoServer } from '../peers/grpc-go.ts'
import { startPeriscope, type Periscope } from '../peers/periscope.ts'
import { pollUntil } from '../peers/poll.ts'

type Json = Record<string, unknown>

/**
 * How far a span's start or end may lie outside the client's own measurement of the RPC. The
 * client's clock is read just before its call writes the request HEADERS and just after it read
 * the status, so a span (from those syscalls' kernel times, made wall-clock by an offset taken
 * when Periscope started) lies inside the client's interval; the margin covers the rounding of
 * that offset and NTP slewing between the two clocks, both far below a millisecond.
 */
const CLOCK_MARGIN_NS = 2_000_000n
/** How long a thread may wait for a CPU on this loaded 2-core machine, for times taken in two processes. */
const SCHEDULING_MARGIN_NS = 20_000_000n
/**
 * How much shorter than the client's measurement a streaming span may be: the Go runtime's work
 * between the client's clock reads and its first write / last read (encoding, scheduling on a
 * loaded two-core machine). The streams last 250 ms or more (5 messages 50 ms apart), so 25 ms
 * still tells one span per stream from a span per message (about 50 ms each).
 */
const STREAM_SLACK_NS = 25_000_000n

/** grpc-go's example services, which only this peer serves here. */
const EXAMPLE_SERVICES = new Set(['helloworld.Greeter', 'routeguide.RouteGuide'])

/** Codes the plugin marks as errors on the server side (the plan's list); the client side: any non-zero code. */
const SERVER_ERROR_CODES = new Set([2, 4, 12, 13, 14, 15])

const pidOf = (span: CollectorSpan): number => Number(span.attributes['process.pid'])
const byStart = (a: { startNs: bigint }, b: { startNs: bigint }): number => (a.startNs < b.startNs ? -1 : a.startNs > b.startNs ? 1 : 0)
const portOf = (address: string): number => Number(address.slice(address.lastIndexOf(':') + 1))

interface Pair { rpc: GrpcGoRpc; client: CollectorSpan; server: CollectorSpan }

describe('gRPC spans between a Go server and a Go client (grpc-go)', { timeout: 900_000 }, () => {
  let collector: Collector
  let periscope: Periscope
  let plain: GrpcGoServer
  let tls: GrpcGoServer
  let strippedTls: GrpcGoServer
  /** Every RPC the clients made, for the histograms and the span counts of each server. */
  const made: { server: GrpcGoServer; rpc: GrpcGoRpc }[] = []
  const clientPids = new Set<number>()

  before(async () => {
    await grpcGoBinaries()
    collector = await startCollector()
    // started before Periscope: the Go TLS uprobes are attached to the running binaries before the
    // plugin says it is tracing, and the clients run the same binaries
    plain = await startGrpcGoServer()
    tls = await startGrpcGoServer({ tls: true })
    strippedTls = await startGrpcGoServer({ tls: true, stripped: true })
    periscope = await startPeriscope({ endpoint: collector.httpEndpoint, shipped: ['http2'], ready: /running 1 of \d+ plugins/ })
    await periscope.waitForOutput(/tracing .*gRPC.*Go crypto\/tls/, 'the http2 plugin to trace gRPC with the Go crypto/tls uprobes')
  })

  after(async () => {
    await periscope?.stop()
    await plain?.stop()
    await tls?.stop()
    await strippedTls?.stop()
    await collector?.stop()
  })

  /** Runs a scenario and waits for its spans: the client's, and the server's on the client's connection. */
  async function traced(server: GrpcGoServer, scenario: GrpcGoScenario): Promise<{ run: GrpcGoClientRun; client: CollectorSpan[]; server: CollectorSpan[] }> {
    const run = await runGrpcGoClient(server, scenario)
    for (const rpc of run.rpcs) made.push({ server, rpc })
    clientPids.add(run.pid)
    const count = run.rpcs.length
    const servedInAll = made.filter((m) => m.server === server).length
    const clientPort = portOf(run.rpcs[0]!.local)
    assert.ok(run.rpcs.every((rpc) => rpc.local === run.rpcs[0]!.local), 'the client made every RPC on one connection')
    // every span to this server: both ends of every connection the test's clients made to it
    let onPort: CollectorSpan[] = []
    const ofClient = (): CollectorSpan[] => onPort.filter((s) => pidOf(s) === run.pid)
    const ofServer = (): CollectorSpan[] => onPort.filter((s) => pidOf(s) === server.pid && s.attributes['client.port'] === clientPort)
    let pluginGauges: Record<string, number> = {}
    await pollUntil(async () => {
      onPort = collectorSpans(await collector.read('traces')).filter((s) => s.attributes['server.port'] === server.port)
      pluginGauges = latestGauges(await collector.read('metrics'), 'periscope.http2.')
      return ofClient().length >= count && ofServer().length >= count
    }, {
      what: `${count} CLIENT spans of pid ${run.pid} and ${count} SERVER spans of pid ${server.pid} (${scenario} on ${server.address})`,
      timeoutMs: 60_000,
      intervalMs: 250,
      details: () => `${ofClient().length} CLIENT and ${ofServer().length} SERVER spans; by name: ${JSON.stringify(countBy(onPort, (s) => `${s.kind} ${s.name} pid ${pidOf(s)}`))}\n` +
        `http2 plugin gauges (non-zero): ${JSON.stringify(pluginGauges)}\nclient RPCs:\n${run.rpcs.slice(0, 10).map((r) => JSON.stringify(r, bigints)).join('\n')}\n` +
        `periscope output:\n${periscope.output().slice(-3000)}`,
    })
    // nothing invented: the server's spans are exactly the RPCs the test's clients made to it, and
    // no other process has a span to its port
    assert.deepEqual(onPort.filter((s) => !clientPids.has(pidOf(s)) && pidOf(s) !== server.pid).map((s) => `${s.kind} ${s.name} pid ${pidOf(s)}`), [])
    assert.equal(onPort.filter((s) => pidOf(s) === server.pid).length, servedInAll, `SERVER spans of ${server.address} for the ${servedInAll} RPCs made to it`)
    const client = ofClient().sort(byStart)
    const served = ofServer().sort(byStart)
    assert.equal(client.length, count, `CLIENT spans: ${JSON.stringify(client.map((s) => s.name))}`)
    assert.equal(served.length, count, `SERVER spans: ${JSON.stringify(served.map((s) => s.name))}`)
    assert.ok(client.every((s) => s.kind === 'client'), 'every span of the client process is a CLIENT span')
    assert.ok(served.every((s) => s.kind === 'server'), 'every span of the server process is a SERVER span')
    return { run, client, server: served }
  }

  /** Pairs a sequential scenario's RPCs with their spans by order, and checks what every gRPC span carries. */
  function pairs(server: GrpcGoServer, run: GrpcGoClientRun, client: CollectorSpan[], served: CollectorSpan[]): Pair[] {
    const rpcs = [...run.rpcs].sort((a, b) => (a.startUnixNs < b.startUnixNs ? -1 : 1))
    return rpcs.map((rpc, i) => {
      const pair = { rpc, client: client[i]!, server: served[i]! }
      checkPair(server, run, pair)
      // The client's measurement contains its span; but a call its own deadline ended ends on the
      // wire with the RST_STREAM that grpc-go's writer goroutine sends after the call returned, a
      // thread wake-up later (its length is checked by the unary test).
      const endMargin = rpc.request === 'slow' ? SCHEDULING_MARGIN_NS : CLOCK_MARGIN_NS
      assert.ok(pair.client.startNs >= rpc.startUnixNs - CLOCK_MARGIN_NS && pair.client.endNs <= rpc.endUnixNs + endMargin,
        `CLIENT span of ${rpc.method} (${rpc.request}) [${pair.client.startNs}, ${pair.client.endNs}] outside the client's [${rpc.startUnixNs}, ${rpc.endUnixNs}]`)
      return pair
    })
  }

  /** What both spans of one RPC carry, and that the server's is the child of the client's, inside it. */
  function checkPair(server: GrpcGoServer, run: GrpcGoClientRun, { rpc, client, server: served }: Pair): void {
    const [, service, method] = /^\/([^/]+)\/([^/]+)$/.exec(rpc.method)!
    const what = `${rpc.method} (${rpc.request}, ${rpc.status})`
    const common = {
      'rpc.system': 'grpc', 'rpc.service': service, 'rpc.method': method, 'rpc.grpc.status_code': rpc.code,
      'server.address': '127.0.0.1', 'server.port': server.port, 'network.protocol.name': 'http', 'network.protocol.version': '2',
    }
    assert.equal(client.name, `${service}/${method}`, what)
    assert.equal(served.name, `${service}/${method}`, what)
    assert.deepEqual(pick(client, [...Object.keys(common), 'network.peer.address', 'network.peer.port', 'process.pid']),
      { ...common, 'network.peer.address': '127.0.0.1', 'network.peer.port': server.port, 'process.pid': run.pid }, `CLIENT span of ${what}`)
    assert.deepEqual(pick(served, [...Object.keys(common), 'network.peer.address', 'network.peer.port', 'client.address', 'client.port', 'process.pid']),
      { ...common, 'network.peer.address': '127.0.0.1', 'network.peer.port': portOf(rpc.local), 'client.address': '127.0.0.1', 'client.port': portOf(rpc.local), 'process.pid': server.pid }, `SERVER span of ${what}`)
    // the client's span is an error for any non-zero code, the server's for the server-fault codes
    assert.equal(client.error, rpc.code !== 0, `CLIENT span status of ${what}`)
    assert.equal(served.error, SERVER_ERROR_CODES.has(rpc.code), `SERVER span status of ${what}`)
    assert.equal(client.attributes['error.type'], rpc.code === 0 ? undefined : String(rpc.code), `CLIENT error.type of ${what}`)
    assert.equal(served.attributes['error.type'], SERVER_ERROR_CODES.has(rpc.code) ? String(rpc.code) : undefined, `SERVER error.type of ${what}`)
    // matched exactly: the server's span is the child of this RPC's client span
    assert.equal(served.traceId, client.traceId, `trace of ${what}`)
    assert.equal(served.parentSpanId, client.spanId, `parent of the SERVER span of ${what}`)
    assert.equal(client.parentSpanId, '', `the CLIENT span of ${what} is a root`)
    // the server's span starts after the client's (the request was written before it was read) and
    // ends about when the client's does: a span ends when the syscall (h2c) or the crypto/tls Write
    // (TLS) that wrote the status returns, and the client may read the status before the server's
    // thread gets back from its write, by up to a scheduling delay (seen: 5 ms over TLS)
    assert.ok(served.startNs >= client.startNs && served.endNs <= client.endNs + SCHEDULING_MARGIN_NS,
      `SERVER span of ${what} [${served.startNs}, ${served.endNs}] outside its CLIENT span [${client.startNs}, ${client.endNs}]`)
  }

  async function unary(server: GrpcGoServer): Promise<Pair[]> {
    const { run, client, server: served } = await traced(server, 'unary')
    assert.deepEqual(run.rpcs.map((r) => `${r.request} ${r.code}`), ['world 0', 'not-found 5', 'internal 13', 'plain-error 2', 'server-timeout 4', 'slow 4', 'GetFeature 0'])
    const found = pairs(server, run, client, served)
    const slow = found.find((p) => p.rpc.request === 'slow')!
    // no trailers: the client's deadline and the server's own (from grpc-timeout) fire together, and
    // grpc-go resets the stream (RST_STREAM CANCEL) from both ends; a CANCEL at the request's
    // grpc-timeout is DEADLINE_EXCEEDED, as both processes saw it (the handler's context expired),
    // so the plugin reports 4 on both sides although no trailers said so; both spans last until the
    // resets, about the deadline (the handler sleeps 2 s)
    for (const [kind, span] of [['CLIENT', slow.client], ['SERVER', slow.server]] as const) {
      const ms = Number(span.endNs - span.startNs) / 1e6
      assert.ok(ms >= GRPC_GO_SCENARIO.slowDeadlineMs * 0.9 && ms < 1000, `the slow call's ${kind} span lasted ${ms} ms, its deadline was ${GRPC_GO_SCENARIO.slowDeadlineMs} ms`)
    }
    return found
  }

  async function streams(server: GrpcGoServer): Promise<Pair[]> {
    const { run, client, server: served } = await traced(server, 'streams')
    const { streamMessages: n } = GRPC_GO_SCENARIO
    assert.deepEqual(run.rpcs.map((r) => `${r.request} ${r.code} sent ${r.sent} received ${r.received}`),
      ['ListFeatures 0 sent 1 received 5', 'RecordRoute 0 sent 5 received 1', 'RouteChat 0 sent 5 received 5'].map((s) => s.replaceAll('5', String(n))))
    const found = pairs(server, run, client, served)
    for (const { rpc, client: span, server: serverSpan } of found) {
      const measured = rpc.endUnixNs - rpc.startUnixNs
      const minimum = BigInt(n * GRPC_GO_SCENARIO.streamIntervalMs) * 1_000_000n
      assert.ok(measured >= minimum, `${rpc.request}: the client measured ${measured} ns, under ${minimum}`)
      for (const [kind, s] of [['CLIENT', span], ['SERVER', serverSpan]] as const) {
        const duration = s.endNs - s.startNs
        assert.ok(duration >= measured - STREAM_SLACK_NS && duration <= measured + SCHEDULING_MARGIN_NS,
          `${rpc.request}: ${kind} span ${Number(duration) / 1e6} ms, the client measured ${Number(measured) / 1e6} ms`)
      }
    }
    return found
  }

  it('unary calls over h2c: OK, NOT_FOUND, INTERNAL, a plain Go error (UNKNOWN), DEADLINE_EXCEEDED from the handler and from the client\'s deadline', async () => {
    await unary(plain)
  })

  it('server-, client- and bidirectional-streaming calls over h2c: one span each, as long as the client measured', async () => {
    await streams(plain)
  })

  it(`${GRPC_GO_SCENARIO.concurrentCalls} concurrent calls on one h2c connection: ${GRPC_GO_SCENARIO.concurrentCalls} CLIENT and SERVER spans, each server span the child of its own client span`, async () => {
    const { run, client, server: served } = await traced(plain, 'concurrent')
    const calls = GRPC_GO_SCENARIO.concurrentCalls
    assert.equal(run.rpcs.length, calls)
    assert.ok(run.rpcs.every((r) => r.code === 0))
    // the calls were in flight together: the last started before the first ended
    const lastStart = run.rpcs.reduce((m, r) => (r.startUnixNs > m ? r.startUnixNs : m), 0n)
    const firstEnd = run.rpcs.reduce((m, r) => (r.endUnixNs < m ? r.endUnixNs : m), run.rpcs[0]!.endUnixNs)
    assert.ok(lastStart < firstEnd, 'the client\'s calls overlapped')
    const clientById = new Map(client.map((s) => [s.spanId, s]))
    assert.equal(clientById.size, calls, 'every CLIENT span has its own id')
    const parents = new Set<string>()
    for (const span of served) {
      const parent = clientById.get(span.parentSpanId)
      assert.ok(parent !== undefined, `SERVER span ${span.spanId} has no CLIENT span as parent (${span.parentSpanId})`)
      assert.equal(span.traceId, parent.traceId)
      parents.add(span.parentSpanId)
      // the RPCs are alike (same method, code and connection): any of them stands for this one
      checkPair(plain, run, { rpc: run.rpcs[0]!, client: parent, server: span })
    }
    assert.equal(parents.size, calls, 'each CLIENT span is the parent of exactly one SERVER span')
    const firstStart = run.rpcs.reduce((m, r) => (r.startUnixNs < m ? r.startUnixNs : m), run.rpcs[0]!.startUnixNs)
    const lastEnd = run.rpcs.reduce((m, r) => (r.endUnixNs > m ? r.endUnixNs : m), 0n)
    assert.ok(client.every((s) => s.startNs >= firstStart - CLOCK_MARGIN_NS && s.endNs <= lastEnd + CLOCK_MARGIN_NS), 'the CLIENT spans lie within the client\'s calls')
  })

  it('over TLS (Go crypto/tls uprobes): the same unary and streaming spans', async () => {
    await unary(tls)
    await streams(tls)
  })

  it('over TLS from a stripped binary (-ldflags=-s -w: crypto/tls found through .gopclntab): the same spans', async () => {
    await unary(strippedTls)
    await streams(strippedTls)
  })

  it('rpc.client.duration and rpc.server.duration count every RPC the clients made', async () => {
    const want = { client: new Map<string, number>(), server: new Map<string, number>() }
    for (const { server, rpc } of made) {
      const [, service, method] = /^\/([^/]+)\/([^/]+)$/.exec(rpc.method)!
      const key = `${service}/${method} ${rpc.code}`
      want.server.set(key, (want.server.get(key) ?? 0) + 1)
      const clientKey = `${key} ${server.port}`
      want.client.set(clientKey, (want.client.get(clientKey) ?? 0) + 1)
    }
    const ports = new Set(made.map(({ server }) => server.port))
    const serverPids = new Set([plain.pid, tls.pid, strippedTls.pid])
    let got = { client: new Map<string, number>(), server: new Map<string, number>() }
    let wantServer = want.server
    await pollUntil(async () => {
      // the server histogram has no port: another grpc-go example server on the host (another run
      // of this test) adds to it; its SERVER spans, exported too, say by how much
      wantServer = new Map(want.server)
      for (const span of collectorSpans(await collector.read('traces'))) {
        if (span.kind !== 'server' || serverPids.has(pidOf(span)) || !EXAMPLE_SERVICES.has(span.attributes['rpc.service'] as string)) continue
        const key = `${span.attributes['rpc.service']}/${span.attributes['rpc.method']} ${span.attributes['rpc.grpc.status_code']}`
        wantServer.set(key, (wantServer.get(key) ?? 0) + 1)
      }
      got = histogramCounts(await collector.read('metrics'), ports)
      return sameCounts(got.client, want.client) && sameCounts(got.server, wantServer)
    }, {
      what: 'the rpc duration histograms to count every RPC',
      timeoutMs: 90_000,
      intervalMs: 1000,
      details: () => `want ${JSON.stringify(Object.fromEntries(want.client))} / ${JSON.stringify(Object.fromEntries(wantServer))}\n` +
        `got ${JSON.stringify(Object.fromEntries(got.client))} / ${JSON.stringify(Object.fromEntries(got.server))}`,
    })
  })
})

function countBy<T>(items: T[], key: (item: T) => string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const item of items) out[key(item)] = (out[key(item)] ?? 0) + 1
  return out
}

/** The last non-zero value of each gauge whose name starts with `prefix`, per attribute set. */
function latestGauges(lines: Json[], prefix: string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const { item } of flatten('metrics', lines)) {
    if (!(item.name as string).startsWith(prefix)) continue
    for (const point of (((item.gauge ?? item.sum) as Json | undefined)?.dataPoints as Json[] | undefined) ?? []) {
      out[`${item.name as string} ${JSON.stringify(attributesOf(point.attributes))}`] = Number(point.asInt ?? point.asDouble)
    }
  }
  return Object.fromEntries(Object.entries(out).filter(([, value]) => value !== 0))
}

function pick(span: CollectorSpan, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.map((k) => [k, span.attributes[k]]))
}

function bigints(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? String(value) : value
}

function sameCounts(got: Map<string, number>, want: Map<string, number>): boolean {
  return got.size === want.size && [...want].every(([key, n]) => got.get(key) === n)
}

/**
 * The rpc duration histograms' counts (cumulative: the latest point of each series) for the test's
 * services: the client's per `<service>/<method> <code> <server port>` (its servers only), the
 * server's per `<service>/<method> <code>` (the server histogram has no port).
 */
function histogramCounts(lines: Json[], ports: Set<number>): { client: Map<string, number>; server: Map<string, number> } {
  const series = { client: new Map<string, { key: string; count: number }>(), server: new Map<string, { key: string; count: number }>() }
  for (const { item } of flatten('metrics', lines)) {
    const side = item.name === 'rpc.client.duration' ? 'client' : item.name === 'rpc.server.duration' ? 'server' : undefined
    if (side === undefined) continue
    for (const point of ((item.histogram as Json | undefined)?.dataPoints as Json[] | undefined) ?? []) {
      const a = attributesOf(point.attributes)
      if (!EXAMPLE_SERVICES.has(a['rpc.service'] as string)) continue
      if (side === 'client' && !ports.has(a['server.port'] as number)) continue
      const key = `${a['rpc.service']}/${a['rpc.method']} ${a['rpc.grpc.status_code']}${side === 'client' ? ` ${a['server.port']}` : ''}`
      series[side].set(JSON.stringify(a), { key, count: Number(point.count) })
    }
  }
  const sum = (m: Map<string, { key: string; count: number }>): Map<string, number> => {
    const out = new Map<string, number>()
    for (const { key, count } of m.values()) out.set(key, (out.get(key) ?? 0) + count)
    return out
  }
  return { client: sum(series.client), server: sum(series.server) }
}
