/**
 * What tracing Redis costs its clients (issue 9): redis-benchmark's SET and GET (50 clients,
 * random keys among 100,000, 3-byte values) against Debian's redis-server 7.0 started for the run
 * (test/peers/redis.ts, no persistence), one command per round trip and pipelined 16 at a time
 * (`-P 16`), without Periscope (the baseline) and with a real `./periscope run` tracing it with
 * the shipped redis plugin (the others disabled, so other engineers' traffic of other protocols on
 * the host costs nothing here), exporting over OTLP/HTTP to a local sink (test/peers/otlp-sink.ts,
 * in this process). Baseline and traced runs alternate over the rounds, in the same run; Periscope
 * starts afresh for each round's traced runs, after the server, as it would on a host.
 *
 * Per run and test: redis-benchmark's requests/s and its p99 latency; Periscope's CPU (utime +
 * stime of all its threads, /proc/<pid>/stat) per 10,000 commands, from the start of the load until
 * its exports settle (no new span for 1.5 s), by kind of thread; the spans that reached the sink,
 * against the commands sent (the difference is what was dropped: commands the plugin could not
 * follow or spans the exporter's queue had no room for). The kernel side of tracing runs in the
 * clients' and the server's own syscalls: redis-server's CPU per 10,000 commands, with and
 * without, shows the server's share. Medians over the rounds.
 * Target: throughput ≥ 0.95 of the baseline for the commands sent one at a time. Exits non-zero
 * when it is missed; the pipelined figures are reported.
 *
 * `--plugin-config '{"metrics":false}'` runs the plugin with those config keys, to see where the cost goes.
 *
 *   node_modules/.bin/node bench/redis-overhead.bench.ts [--requests 100000] [--pipelined-requests 500000] [--rounds 3] [--pin]
 *   npm run bench -- redis-overhead
 */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { startOtlpSink, type OtlpSink } from '../test/peers/otlp-sink.ts'
import { withoutShippedPlugins } from '../test/peers/periscope.ts'
import { startRedis, type BenchmarkRow, type Redis } from '../test/peers/redis.ts'
import { CLOCK_TICKS, type BenchPeriscope, exportSettled, otherPeriscopes, startBenchPeriscope, threadCpu, waitUntilTracing } from './traced-run.ts'
import { median, verdict } from './common.ts'

const { values: args } = parseArgs({
  options: {
    requests: { type: 'string', default: process.env.PERISCOPE_BENCH_REDIS_REQUESTS ?? '100000' },
    'pipelined-requests': { type: 'string', default: process.env.PERISCOPE_BENCH_REDIS_PIPELINED_REQUESTS ?? '500000' },
    rounds: { type: 'string', default: process.env.PERISCOPE_BENCH_REDIS_ROUNDS ?? '3' },
    'plugin-config': { type: 'string', default: '{}' },
    pin: { type: 'boolean', default: false },
  },
})
/**
 * --pin: redis-server and redis-benchmark on CPU 0, Periscope (and this process, with the sink) on
 * CPU 1, in both kinds of run. It measures what tracing costs the traced processes themselves (the
 * kernel's hooks in their syscalls) when Periscope has a core of its own, as on a host with spare
 * capacity, apart from the competition for CPU that a saturated 2-core machine adds.
 */
const PIN = args.pin === true
const PLUGIN_CONFIG = JSON.parse(args['plugin-config']) as Record<string, unknown>
const ROUNDS = Number(args.rounds)
const MODES = [
  { name: 'one at a time', pipeline: 1, requests: Number(args.requests), target: true },
  { name: '-P 16', pipeline: 16, requests: Number(args['pipelined-requests']), target: false },
] as const
if (!(ROUNDS >= 1) || MODES.some((mode) => !(mode.requests >= 1000))) {
  throw new Error(`--rounds must be positive and the request counts at least 1000 (got ${args.rounds}, ${args.requests}, ${args['pipelined-requests']})`)
}
type Mode = (typeof MODES)[number]
const TESTS = ['SET', 'GET']
const CLIENTS = 50
const KEYSPACE = 100_000
const TARGET_THROUGHPUT_RATIO = 0.95
const SETTLED_SPANS = 20

interface BenchRun {
  rows: Map<string, BenchmarkRow>
  /** Commands sent: the requests of every test. */
  commands: number
  serverCpu: number
  periscope?: { cpu: number; byThread: Map<string, number>; spans: number }
}

/** CPU seconds (user + system, all threads) of a process. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS
}




async function load(redis: Redis, mode: Mode, traced?: { periscope: BenchPeriscope; sink: OtlpSink }): Promise<BenchRun> {
  for (const other of otherPeriscopes(traced?.periscope.pid)) intruders.add(other)
  const serverBefore = cpuSeconds(redis.pid)
  const threadsBefore = traced === undefined ? undefined : threadCpu(traced.periscope.pid)
  const periscopeBefore = traced === undefined ? 0 : cpuSeconds(traced.periscope.pid)
  const spansBefore = traced?.sink.counts().spans ?? 0
  const run = await redis.benchmark({ tests: TESTS.map((t) => t.toLowerCase()), requests: mode.requests, pipeline: mode.pipeline, clients: CLIENTS, keyspace: KEYSPACE, cpus: PIN ? '0' : undefined })
  const serverCpu = cpuSeconds(redis.pid) - serverBefore
  if (traced !== undefined && !(await exportSettled(traced.sink, SETTLED_SPANS, 60_000))) unsettled++
  const rows = new Map(run.rows.map((row) => [row.test, row]))
  for (const test of TESTS) if (!rows.has(test)) throw new Error(`redis-benchmark printed no ${test} row:\n${run.stdout}`)
  const periscope = traced === undefined ? undefined : {
    cpu: cpuSeconds(traced.periscope.pid) - periscopeBefore,
    byThread: new Map([...threadCpu(traced.periscope.pid)].map(([kind, seconds]) => [kind, seconds - (threadsBefore!.get(kind) ?? 0)])),
    spans: traced.sink.counts().spans - spansBefore,
  }
  return { rows, commands: mode.requests * TESTS.length, serverCpu, periscope }
}




const intruders = new Set<string>()
let unsettled = 0
if (PIN) execFileSync('taskset', ['-a', '-cp', '1', String(process.pid)], { stdio: 'ignore' })
const sink = await startOtlpSink()
const redis = await startRedis()
if (PIN) execFileSync('taskset', ['-a', '-cp', '0', String(redis.pid)], { stdio: 'ignore' })
const baseline = new Map<Mode, BenchRun[]>(MODES.map((mode) => [mode, []]))
const traced = new Map<Mode, BenchRun[]>(MODES.map((mode) => [mode, []]))
let running = ''
try {
  // the server and its keyspace warmed; one Periscope start so later ones find the compile cache filled
  for (const mode of MODES) await load(redis, mode)
  await (await startBenchPeriscope(sink, 'redis', { plugins: { ...withoutShippedPlugins(['redis']), redis: { config: PLUGIN_CONFIG } } })).stop()
  for (let round = 0; round < ROUNDS; round++) {
    for (const mode of MODES) baseline.get(mode)!.push(await load(redis, mode))
    const periscope = await startBenchPeriscope(sink, 'redis', { plugins: { ...withoutShippedPlugins(['redis']), redis: { config: PLUGIN_CONFIG } } })
    running = periscope.running
    try {
      await waitUntilTracing(sink, periscope, () => redis.cli(['PING']), 'commands to Redis')
      if (!(await exportSettled(sink, SETTLED_SPANS, 60_000))) unsettled++
      for (const mode of MODES) traced.get(mode)!.push(await load(redis, mode, { periscope, sink }))
    } finally {
      await periscope.stop()
    }
  }
} finally {
  await redis.stop()
  await sink.stop()
}

const m = (runs: BenchRun[], pick: (r: BenchRun) => number): number => median(runs.map(pick))
const rps = (x: number): string => Math.round(x).toLocaleString('en')
const per10k = (seconds: number, r: BenchRun): number => (seconds / r.commands) * 10_000
let allMet = true
console.log(`Redis overhead: redis-benchmark SET and GET (${CLIENTS} clients, ${KEYSPACE.toLocaleString('en')} random keys) against redis-server 7.0, ` +
  `medians of ${ROUNDS} rounds alternating without and with Periscope; ${running || 'periscope run'} (redis plugin only, config ${JSON.stringify(PLUGIN_CONFIG)}); OTLP/HTTP to a local sink` +
  (PIN ? '; pinned: redis-server and redis-benchmark on CPU 0, Periscope on CPU 1' : '; every process on both CPUs'))
for (const mode of MODES) {
  const base = baseline.get(mode)!
  const withP = traced.get(mode)!
  console.log(`  ${mode.name} (-n ${mode.requests.toLocaleString('en')} a test):`)
  for (const test of TESTS) {
    const baseRps = m(base, (r) => r.rows.get(test)!.requestsPerSecond)
    const withRps = m(withP, (r) => r.rows.get(test)!.requestsPerSecond)
    const baseP99 = m(base, (r) => r.rows.get(test)!.latencyMs.p99)
    const withP99 = m(withP, (r) => r.rows.get(test)!.latencyMs.p99)
    const met = withRps / baseRps >= TARGET_THROUGHPUT_RATIO
    if (mode.target) allMet &&= met
    console.log(`    ${test}: ${rps(baseRps)} → ${rps(withRps)} requests/s (rounds ${base.map((r) => rps(r.rows.get(test)!.requestsPerSecond)).join(', ')} → ` +
      `${withP.map((r) => rps(r.rows.get(test)!.requestsPerSecond)).join(', ')}); ratio ${(withRps / baseRps).toFixed(3)}` +
      `${mode.target ? ` (target ≥ ${TARGET_THROUGHPUT_RATIO}) ${verdict(met)}` : ''}; p99 ${baseP99.toFixed(3)} → ${withP99.toFixed(3)} ms, added ${((withP99 - baseP99) * 1000).toFixed(0)} µs`)
  }
  const commands = withP.reduce((sum, r) => sum + r.commands, 0)
  const exported = withP.reduce((sum, r) => sum + r.periscope!.spans, 0)
  console.log(`    Periscope: ${m(withP, (r) => per10k(r.periscope!.cpu, r)).toFixed(3)} CPU-s per 10,000 commands (rounds ${withP.map((r) => per10k(r.periscope!.cpu, r).toFixed(3)).join(', ')}); ` +
    `${exported.toLocaleString('en')} spans exported for ${commands.toLocaleString('en')} commands: ${Math.max(0, commands - exported).toLocaleString('en')} dropped (${(Math.max(0, commands - exported) / commands * 100).toFixed(1)} %)`)
  const kinds = [...new Set(withP.flatMap((r) => [...r.periscope!.byThread.keys()]))]
  const byThread = kinds.map((kind) => [kind, m(withP, (r) => per10k(r.periscope!.byThread.get(kind) ?? 0, r))] as const).filter(([, seconds]) => seconds >= 0.0005)
  console.log(`      by thread: ${byThread.map(([kind, seconds]) => `${kind} ${seconds.toFixed(3)}`).join(', ')}`)
  console.log(`    redis-server, CPU-s per 10,000 commands: ${m(withP, (r) => per10k(r.serverCpu, r)).toFixed(3)} traced, ${m(base, (r) => per10k(r.serverCpu, r)).toFixed(3)} without`)
}
if (unsettled > 0) {
  console.log(`  WARNING: ${unsettled} time(s) spans kept reaching the sink for 60 s after a load: other Redis traffic on the host was traced, ` +
    'so the span counts include it, and Periscope\'s CPU and the baseline are disturbed')
}
if (intruders.size > 0) {
  console.log(`  WARNING: other periscope run processes were running during the runs, maybe tracing the baseline too; these figures compare nothing:\n    ${[...intruders].join('\n    ')}`)
}
if (!allMet) process.exitCode = 1
