/**
 * What tracing gRPC costs a Go service (issue 10): unary SayHello calls from the Go load client of
 * test/peers/grpc-go (grpc-go, goroutines each making one call at a time over a few connections,
 * for a fixed time) against the Go server of the same peer, over h2c and over TLS (Go's
 * crypto/tls, seen only through the Go uprobes), without Periscope (the baseline) and with a real
 * `./periscope run` tracing it with the shipped http2 plugin only, default limits, exporting over
 * OTLP/HTTP to a local sink (test/peers/otlp-sink.ts, in this process). Baseline and traced runs
 * alternate over the rounds, in the same run, after a warm-up of each mode; Periscope starts
 * afresh for each round's traced runs, after the server, as it would on a host.
 *
 * Per run and mode: the load client's calls/s and p99 latency; Periscope's CPU (utime + stime of
 * all its threads) per 10,000 RPCs, from the start of the load until its exports settle, by kind
 * of thread; the spans that reached the sink against the two an RPC makes here (the client's and
 * the server's: both ends run on this host); the server's and the client's own CPU per 10,000
 * RPCs, with and without (the kernel side of tracing runs in their syscalls and, for TLS, in the
 * uprobes on crypto/tls). Medians over the rounds.
 * Target: calls/s traced ≥ 0.95 of the baseline, in each mode. Exits non-zero when it is missed.
 *
 *   node_modules/.bin/node bench/grpc-overhead.bench.ts [--duration-ms 10000] [--rounds 3] [--connections 2] [--concurrency 32] [--modes h2c,tls] [--pin]
 *   npm run bench -- grpc-overhead
 */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { runGrpcGoLoad, startGrpcGoServer, type GrpcGoLoad, type GrpcGoServer } from '../test/peers/grpc-go.ts'
import { startOtlpSink, type OtlpSink } from '../test/peers/otlp-sink.ts'
import { withoutShippedPlugins } from '../test/peers/periscope.ts'
import { CLOCK_TICKS, type BenchPeriscope, exportSettled, otherPeriscopes, startBenchPeriscope, threadCpu, waitUntilTracing } from './traced-run.ts'
import { median, verdict } from './common.ts'

const { values: args } = parseArgs({
  options: {
    'duration-ms': { type: 'string', default: process.env.PERISCOPE_BENCH_GRPC_DURATION_MS ?? '10000' },
    rounds: { type: 'string', default: process.env.PERISCOPE_BENCH_GRPC_ROUNDS ?? '3' },
    connections: { type: 'string', default: '2' },
    concurrency: { type: 'string', default: '32' },
    modes: { type: 'string', default: 'h2c,tls' },
    'plugin-config': { type: 'string', default: '{}' },
    pin: { type: 'boolean', default: false },
  },
})
/**
 * --pin: the server and the load client on CPU 0, Periscope (and this process, with the sink) on
 * CPU 1, in both kinds of run: what tracing costs the traced processes themselves when Periscope
 * has a core of its own, apart from the competition for two saturated cores.
 */
const PIN = args.pin === true
const PLUGIN_CONFIG = JSON.parse(args['plugin-config']) as Record<string, unknown>
const ROUNDS = Number(args.rounds)
const DURATION_MS = Number(args['duration-ms'])
const CONNECTIONS = Number(args.connections)
const CONCURRENCY = Number(args.concurrency)
const MODES = args.modes.split(',').map((name) => {
  if (name !== 'h2c' && name !== 'tls') throw new Error(`--modes: h2c and/or tls, not ${JSON.stringify(name)}`)
  return { name, tls: name === 'tls' }
})
if (!(ROUNDS >= 1) || !(DURATION_MS >= 1000) || !(CONNECTIONS >= 1) || !(CONCURRENCY >= CONNECTIONS)) {
  throw new Error(`--rounds must be positive, --duration-ms at least 1000, 1 <= --connections <= --concurrency (got ${args.rounds}, ${args['duration-ms']}, ${args.connections}, ${args.concurrency})`)
}
type Mode = (typeof MODES)[number]
const WARM_UP_MS = 3000
const TARGET_THROUGHPUT_RATIO = 0.95
const SETTLED_SPANS = 20
/** Both ends of every RPC are on this host: a CLIENT and a SERVER span each. */
const SPANS_PER_RPC = 2

interface BenchRun {
  load: GrpcGoLoad
  serverCpu: number
  periscope?: { cpu: number; byThread: Map<string, number>; spans: number }
}

/** CPU seconds (user + system, all threads) of a process. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS
}

function pinned(server: GrpcGoServer, durationMs: number): Promise<GrpcGoLoad> {
  return runGrpcGoLoad(server, { connections: CONNECTIONS, concurrency: CONCURRENCY, durationMs, cpus: PIN ? '0' : undefined })
}

async function load(server: GrpcGoServer, traced?: { periscope: BenchPeriscope; sink: OtlpSink }): Promise<BenchRun> {
  for (const other of otherPeriscopes(traced?.periscope.pid)) intruders.add(other)
  const serverBefore = cpuSeconds(server.pid)
  const threadsBefore = traced === undefined ? undefined : threadCpu(traced.periscope.pid)
  const periscopeBefore = traced === undefined ? 0 : cpuSeconds(traced.periscope.pid)
  const spansBefore = traced?.sink.counts().spans ?? 0
  const result = await pinned(server, DURATION_MS)
  const serverCpu = cpuSeconds(server.pid) - serverBefore
  if (traced !== undefined && !(await exportSettled(traced.sink, SETTLED_SPANS, 60_000))) unsettled++
  const periscope = traced === undefined ? undefined : {
    cpu: cpuSeconds(traced.periscope.pid) - periscopeBefore,
    byThread: new Map([...threadCpu(traced.periscope.pid)].map(([kind, seconds]) => [kind, seconds - (threadsBefore!.get(kind) ?? 0)])),
    spans: traced.sink.counts().spans - spansBefore,
  }
  return { load: result, serverCpu, periscope }
}

const intruders = new Set<string>()
let unsettled = 0
if (PIN) execFileSync('taskset', ['-a', '-cp', '1', String(process.pid)], { stdio: 'ignore' })
const sink = await startOtlpSink()
const servers = new Map<Mode, GrpcGoServer>()
const baseline = new Map<Mode, BenchRun[]>(MODES.map((mode) => [mode, []]))
const traced = new Map<Mode, BenchRun[]>(MODES.map((mode) => [mode, []]))
const periscopeConfig = { plugins: { ...withoutShippedPlugins(['http2']), http2: { config: PLUGIN_CONFIG } } }
let running = ''
try {
  for (const mode of MODES) {
    const server = await startGrpcGoServer({ tls: mode.tls })
    servers.set(mode, server)
    if (PIN) execFileSync('taskset', ['-a', '-cp', '0', String(server.pid)], { stdio: 'ignore' })
  }
  // the servers and the page cache warmed; one Periscope start so later ones find the compile cache filled
  for (const mode of MODES) await pinned(servers.get(mode)!, WARM_UP_MS)
  await (await startBenchPeriscope(sink, 'grpc', periscopeConfig)).stop()
  for (let round = 0; round < ROUNDS; round++) {
    for (const mode of MODES) baseline.get(mode)!.push(await load(servers.get(mode)!))
    const periscope = await startBenchPeriscope(sink, 'grpc', periscopeConfig)
    running = periscope.running
    try {
      for (const mode of MODES) {
        const server = servers.get(mode)!
        await waitUntilTracing(sink, periscope, () => runGrpcGoLoad(server, { connections: 1, concurrency: 1, durationMs: 20 }), `gRPC calls to ${mode.name} ${server.address}`)
      }
      if (!(await exportSettled(sink, SETTLED_SPANS, 60_000))) unsettled++
      for (const mode of MODES) traced.get(mode)!.push(await load(servers.get(mode)!, { periscope, sink }))
    } finally {
      await periscope.stop()
    }
  }
} finally {
  for (const server of servers.values()) await server.stop()
  await sink.stop()
}

const m = (runs: BenchRun[], pick: (r: BenchRun) => number): number => median(runs.map(pick))
const rate = (x: number): string => Math.round(x).toLocaleString('en')
const per10k = (seconds: number, r: BenchRun): number => (seconds / r.load.calls) * 10_000
let allMet = true
console.log(`gRPC overhead: grpc-go unary SayHello, ${CONCURRENCY} goroutines over ${CONNECTIONS} connections for ${DURATION_MS} ms against the grpc-go server, ` +
  `medians of ${ROUNDS} rounds alternating without and with Periscope; ${running || 'periscope run'} (http2 plugin only, config ${JSON.stringify(PLUGIN_CONFIG)}); OTLP/HTTP to a local sink` +
  (PIN ? '; pinned: server and load client on CPU 0, Periscope on CPU 1' : '; every process on both CPUs'))
for (const mode of MODES) {
  const base = baseline.get(mode)!
  const withP = traced.get(mode)!
  const baseRate = m(base, (r) => r.load.callsPerSecond)
  const withRate = m(withP, (r) => r.load.callsPerSecond)
  const baseP99 = m(base, (r) => r.load.p99Ms)
  const withP99 = m(withP, (r) => r.load.p99Ms)
  const met = withRate / baseRate >= TARGET_THROUGHPUT_RATIO
  allMet &&= met
  console.log(`  ${mode.name}: ${rate(baseRate)} → ${rate(withRate)} calls/s (rounds ${base.map((r) => rate(r.load.callsPerSecond)).join(', ')} → ` +
    `${withP.map((r) => rate(r.load.callsPerSecond)).join(', ')}); ratio ${(withRate / baseRate).toFixed(3)} (target ≥ ${TARGET_THROUGHPUT_RATIO}) ${verdict(met)}; ` +
    `p50 ${m(base, (r) => r.load.p50Ms).toFixed(3)} → ${m(withP, (r) => r.load.p50Ms).toFixed(3)} ms; p99 ${baseP99.toFixed(3)} → ${withP99.toFixed(3)} ms, added ${((withP99 - baseP99) * 1000).toFixed(0)} µs`)
  const calls = withP.reduce((sum, r) => sum + r.load.calls, 0)
  const exported = withP.reduce((sum, r) => sum + r.periscope!.spans, 0)
  const missing = Math.max(0, calls * SPANS_PER_RPC - exported)
  console.log(`    Periscope: ${m(withP, (r) => per10k(r.periscope!.cpu, r)).toFixed(3)} CPU-s per 10,000 RPCs (rounds ${withP.map((r) => per10k(r.periscope!.cpu, r).toFixed(3)).join(', ')}); ` +
    `${exported.toLocaleString('en')} spans exported for ${calls.toLocaleString('en')} RPCs (${SPANS_PER_RPC} each): ${missing.toLocaleString('en')} missing (${(missing / (calls * SPANS_PER_RPC) * 100).toFixed(1)} %)`)
  const kinds = [...new Set(withP.flatMap((r) => [...r.periscope!.byThread.keys()]))]
  const byThread = kinds.map((kind) => [kind, m(withP, (r) => per10k(r.periscope!.byThread.get(kind) ?? 0, r))] as const).filter(([, seconds]) => seconds >= 0.0005)
  console.log(`      by thread: ${byThread.map(([kind, seconds]) => `${kind} ${seconds.toFixed(3)}`).join(', ')}`)
  console.log(`    CPU-s per 10,000 RPCs, traced vs without: server ${m(withP, (r) => per10k(r.serverCpu, r)).toFixed(3)} vs ${m(base, (r) => per10k(r.serverCpu, r)).toFixed(3)}, ` +
    `load client ${m(withP, (r) => per10k(r.load.cpuSeconds, r)).toFixed(3)} vs ${m(base, (r) => per10k(r.load.cpuSeconds, r)).toFixed(3)}`)
}
if (unsettled > 0) {
  console.log(`  WARNING: ${unsettled} time(s) spans kept reaching the sink for 60 s after a load: other HTTP/2 traffic on the host was traced, ` +
    'so the span counts include it, and Periscope\'s CPU and the baseline are disturbed')
}
if (intruders.size > 0) {
  console.log(`  WARNING: other periscope run processes were running during the runs, maybe tracing the baseline too; these figures compare nothing:\n    ${[...intruders].join('\n    ')}`)
}
if (!allMet) process.exitCode = 1
