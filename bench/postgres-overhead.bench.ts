/**
 * What tracing PostgreSQL costs its clients (issue 9): pgbench's select-only transaction
 * (`pgbench -S -M prepared`, one indexed SELECT a transaction, 4 clients on 2 threads) against a
 * PostgreSQL 15 cluster made for the run (test/peers/postgres.ts, scale 1), without Periscope (the
 * baseline) and with a real `./periscope run` tracing it with the shipped postgres plugin (the
 * others disabled, so other engineers' traffic of other protocols on the host costs nothing here),
 * exporting over OTLP/HTTP to a local sink (test/peers/otlp-sink.ts, in this process). Baseline and
 * traced runs alternate over the rounds, in the same run; Periscope starts afresh for each traced
 * run, after the server, as it would on a host.
 *
 * Per run: pgbench's transactions/s (without connection time); latency p50 and p99 from pgbench's
 * per-transaction log (`-l`, a sample of 1 in 5 transactions, the same in both kinds of run);
 * Periscope's CPU (utime + stime of all its threads, /proc/<pid>/stat) per 10,000 transactions,
 * from the start of the load until its exports settle (no new span for 1.5 s); the spans that
 * reached the sink. The kernel side of tracing runs in pgbench's and the server's own syscalls:
 * the server backends' CPU per 10,000 transactions, with and without, shows its share (pgbench's
 * own is not read: it has exited before /proc could be). Medians over the rounds.
 * Target: throughput ≥ 0.95 of the baseline. Exits non-zero when it is missed.
 *
 *   node_modules/.bin/node bench/postgres-overhead.bench.ts [--seconds 10] [--rounds 3]
 *   npm run bench -- postgres-overhead
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { startOtlpSink, type OtlpSink } from '../test/peers/otlp-sink.ts'
import { withoutShippedPlugins } from '../test/peers/periscope.ts'
import { startPostgres, type PostgresServer } from '../test/peers/postgres.ts'
import { CLOCK_TICKS, type BenchPeriscope, exportSettled, startBenchPeriscope, threadCpu, waitUntilTracing } from './traced-run.ts'
import { median, verdict } from './common.ts'

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: process.env.PERISCOPE_BENCH_POSTGRES_SECONDS ?? '10' },
    rounds: { type: 'string', default: process.env.PERISCOPE_BENCH_POSTGRES_ROUNDS ?? '3' },
  },
})
const SECONDS = Number(args.seconds)
const ROUNDS = Number(args.rounds)
if (!(SECONDS >= 1) || !(ROUNDS >= 1)) throw new Error(`--seconds and --rounds must be positive numbers (got ${args.seconds}, ${args.rounds})`)
const CLIENTS = 4
const THREADS = 2
const LOG_SAMPLING = 0.2
const TARGET_THROUGHPUT_RATIO = 0.95
const SETTLED_SPANS = 20

interface BenchRun {
  tps: number
  transactions: number
  p50Us: number
  p99Us: number
  /** The server's backends for this run (reaped by the postmaster by the time pgbench exits), CPU seconds. */
  serverCpu: number
  periscope?: { cpu: number; byThread: Map<string, number>; spans: number }
}

/** CPU seconds (user + system, all threads) of processes; those gone by now count 0. */
function cpuSeconds(pids: readonly number[]): number {
  let sum = 0
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      // utime, stime, and the children's (a backend's time reaches the postmaster when it exits)
      sum += (Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) / CLOCK_TICKS
    } catch {}
  }
  return sum
}

/** The postmaster's live (or not yet reaped) children. */
function children(pid: number): Set<number> {
  return new Set(readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number))
}

/** Waits until the backends of a run have exited and been reaped, so their CPU time is in the postmaster's children's. */
async function backendsReaped(pg: PostgresServer, before: Set<number>): Promise<void> {
  const start = performance.now()
  while ([...children(pg.pid)].some((pid) => !before.has(pid))) {
    if (performance.now() - start > 30_000) throw new Error(`the backends of the pgbench run did not exit within 30 s:\n${pg.log()}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}



/** Latency percentiles (µs) from pgbench's per-transaction logs in `dir` (third field: latency in µs). */
function latencyPercentiles(dir: string): { p50: number; p99: number } {
  const latencies: number[] = []
  for (const file of readdirSync(dir).filter((name) => name.startsWith('pgbench_log'))) {
    for (const line of readFileSync(path.join(dir, file), 'utf8').split('\n')) {
      const fields = line.split(' ')
      if (fields.length >= 3) latencies.push(Number(fields[2]))
    }
  }
  if (latencies.length === 0) throw new Error(`pgbench wrote no transaction log in ${dir}`)
  latencies.sort((a, b) => a - b)
  return { p50: latencies[Math.floor(latencies.length * 0.5)]!, p99: latencies[Math.floor(latencies.length * 0.99)]! }
}

async function load(pg: PostgresServer, traced?: { periscope: BenchPeriscope; sink: OtlpSink }): Promise<BenchRun> {
  const logs = mkdtempSync(path.join(tmpdir(), 'periscope-bench-pgbench-'))
  try {
    const serverBefore = cpuSeconds([pg.pid])
    const backendsBefore = children(pg.pid)
    const threadsBefore = traced === undefined ? undefined : threadCpu(traced.periscope.pid)
    const periscopeBefore = traced === undefined ? 0 : cpuSeconds([traced.periscope.pid])
    const spansBefore = traced?.sink.counts().spans ?? 0
    const run = await pg.pgbench(['-n', '-S', '-M', 'prepared', '-c', String(CLIENTS), '-j', String(THREADS), '-T', String(SECONDS),
      '-l', `--log-prefix=${path.join(logs, 'pgbench_log')}`, `--sampling-rate=${LOG_SAMPLING}`])
    // the backends exit with their connections: the postmaster's children's time holds them once reaped
    await backendsReaped(pg, backendsBefore)
    const serverCpu = cpuSeconds([pg.pid]) - serverBefore
    if (run.code !== 0) throw new Error(`pgbench failed (${run.code}):\n${run.stdout}\n${run.stderr}\n${pg.log()}`)
    const tps = Number(/tps = ([\d.]+) \(without initial connection time\)/.exec(run.stdout)?.[1])
    const transactions = Number(/number of transactions actually processed: (\d+)/.exec(run.stdout)?.[1])
    if (!(tps > 0) || !(transactions > 0)) throw new Error(`no tps or transaction count in pgbench's output:\n${run.stdout}`)
    if (traced !== undefined && !(await exportSettled(traced.sink, SETTLED_SPANS, 60_000))) unsettled++
    const { p50, p99 } = latencyPercentiles(logs)
    const periscope = traced === undefined ? undefined : {
      cpu: cpuSeconds([traced.periscope.pid]) - periscopeBefore,
      byThread: new Map([...threadCpu(traced.periscope.pid)].map(([kind, seconds]) => [kind, seconds - (threadsBefore!.get(kind) ?? 0)])),
      spans: traced.sink.counts().spans - spansBefore,
    }
    return { tps, transactions, p50Us: p50, p99Us: p99, serverCpu, periscope }
  } finally {
    rmSync(logs, { recursive: true, force: true })
  }
}




let unsettled = 0
const sink = await startOtlpSink()
const pg = await startPostgres()
const baseline: BenchRun[] = []
const traced: BenchRun[] = []
let running = ''
try {
  const init = await pg.pgbench(['-i', '-s', '1', '-q'])
  if (init.code !== 0) throw new Error(`pgbench -i failed:\n${init.stderr}`)
  // the server's caches and pgbench warmed; one Periscope start so later ones find the compile cache filled
  await pg.pgbench(['-n', '-S', '-M', 'prepared', '-c', String(CLIENTS), '-j', String(THREADS), '-T', '2'])
  await (await startBenchPeriscope(sink, 'postgres', { plugins: withoutShippedPlugins(['postgres']) })).stop()
  for (let round = 0; round < ROUNDS; round++) {
    baseline.push(await load(pg))
    const periscope = await startBenchPeriscope(sink, 'postgres', { plugins: withoutShippedPlugins(['postgres']) })
    running = periscope.running
    try {
      await waitUntilTracing(sink, periscope, () => pg.psql(['-c', 'SELECT 1']), 'queries to PostgreSQL')
      if (!(await exportSettled(sink, SETTLED_SPANS, 60_000))) unsettled++
      traced.push(await load(pg, { periscope, sink }))
    } finally {
      await periscope.stop()
    }
  }
} finally {
  await pg.stop()
  await sink.stop()
}

const m = (runs: BenchRun[], pick: (r: BenchRun) => number): number => median(runs.map(pick))
const tps = (x: number): string => Math.round(x).toLocaleString('en')
const per10k = (seconds: number, r: BenchRun): number => (seconds / r.transactions) * 10_000
const baseTps = m(baseline, (r) => r.tps)
const withTps = m(traced, (r) => r.tps)
const met = withTps / baseTps >= TARGET_THROUGHPUT_RATIO
const exported = traced.reduce((sum, r) => sum + r.periscope!.spans, 0)
const transactions = traced.reduce((sum, r) => sum + r.transactions, 0)
console.log(`PostgreSQL overhead: pgbench -S -M prepared (${CLIENTS} clients, ${THREADS} threads, ${SECONDS} s a run) against PostgreSQL 15 (scale 1), ` +
  `medians of ${ROUNDS} rounds alternating without and with Periscope; ${running || 'periscope run'} (postgres plugin only); OTLP/HTTP to a local sink`)
console.log(`  without Periscope: ${tps(baseTps)} tps (rounds ${baseline.map((r) => tps(r.tps)).join(', ')}); p50 ${m(baseline, (r) => r.p50Us)} µs, p99 ${m(baseline, (r) => r.p99Us)} µs`)
console.log(`  with Periscope:    ${tps(withTps)} tps (rounds ${traced.map((r) => tps(r.tps)).join(', ')}); ratio ${(withTps / baseTps).toFixed(3)} (target ≥ ${TARGET_THROUGHPUT_RATIO}) ${verdict(met)}`)
console.log(`    p50 ${m(traced, (r) => r.p50Us)} µs, p99 ${m(traced, (r) => r.p99Us)} µs: p99 added ${m(traced, (r) => r.p99Us) - m(baseline, (r) => r.p99Us)} µs, ` +
  `p50 added ${m(traced, (r) => r.p50Us) - m(baseline, (r) => r.p50Us)} µs`)
console.log(`    Periscope: ${m(traced, (r) => per10k(r.periscope!.cpu, r)).toFixed(3)} CPU-s per 10,000 transactions (rounds ${traced.map((r) => per10k(r.periscope!.cpu, r).toFixed(3)).join(', ')}); ` +
  `${exported.toLocaleString('en')} spans exported for ${transactions.toLocaleString('en')} transactions (${(exported / transactions).toFixed(3)} a transaction)`)
const kinds = [...new Set(traced.flatMap((r) => [...r.periscope!.byThread.keys()]))]
const byThread = kinds.map((kind) => [kind, m(traced, (r) => per10k(r.periscope!.byThread.get(kind) ?? 0, r))] as const).filter(([, seconds]) => seconds >= 0.0005)
console.log(`      by thread: ${byThread.map(([kind, seconds]) => `${kind} ${seconds.toFixed(3)}`).join(', ')}`)
console.log(`    PostgreSQL server, CPU-s per 10,000 transactions: ${m(traced, (r) => per10k(r.serverCpu, r)).toFixed(3)} traced, ${m(baseline, (r) => per10k(r.serverCpu, r)).toFixed(3)} without`)
if (unsettled > 0) {
  console.log(`  WARNING: ${unsettled} time(s) spans kept reaching the sink for 30 s after a load: other PostgreSQL traffic on the host was traced, ` +
    'so the span counts include it, and Periscope\'s CPU and the baseline are disturbed')
}
if (!met) process.exitCode = 1
