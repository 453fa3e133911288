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
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { startOtlpSink, type OtlpSink } from '../test/peers/otlp-sink.ts'
import { withoutShippedPlugins } from '../test/peers/periscope.ts'
import { startPostgres, type PostgresServer } from '../test/peers/postgres.ts'
import { median, repoRoot, verdict } from './common.ts'

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
const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim())

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

/**
 * Periscope's CPU seconds by kind of thread: its main thread (ring buffers, bus, exporter), the
 * isolates' threads (named MainThread: the plugins), V8's workers (garbage collection,
 * compilation) and libuv's pool.
 */
function threadCpu(pid: number): Map<string, number> {
  const byKind = new Map<string, number>()
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let stat: string
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
    } catch {
      continue
    }
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const kind = tid === String(pid) ? 'main thread' : comm === 'MainThread' ? 'isolates' : comm === 'V8Worker' ? 'V8 workers' : comm === 'libuv-worker' ? 'libuv pool' : comm
    byKind.set(kind, (byKind.get(kind) ?? 0) + (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS)
  }
  return byKind
}

/** Resolves true once at most SETTLED_SPANS spans reached the sink in the last 1.5 s; false after 30 s. */
async function exportSettled(sink: OtlpSink): Promise<boolean> {
  const start = performance.now()
  const window: number[] = []
  for (;;) {
    window.push(sink.counts().spans)
    if (window.length > 16) window.shift()
    if (window.length === 16 && window.at(-1)! - window[0]! <= SETTLED_SPANS) return true
    if (performance.now() - start > 30_000) return false
    await new Promise((resolve) => setTimeout(resolve, 100))
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

async function load(pg: PostgresServer, traced?: { periscope: Periscope; sink: OtlpSink }): Promise<BenchRun> {
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
    if (traced !== undefined && !(await exportSettled(traced.sink))) unsettled++
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

interface Periscope {
  pid: number
  running: string
  output(): string
  stop(): Promise<void>
}

/** `./periscope run` with only the postgres plugin, exporting to the sink; resolves once it runs. */
async function startPeriscope(sink: OtlpSink): Promise<Periscope> {
  const dir = mkdtempSync(path.join(tmpdir(), 'periscope-bench-postgres-'))
  // the runtime continues as nobody after loading, and must reach its data directory
  chmodSync(dir, 0o755)
  writeFileSync(path.join(dir, 'periscope.yaml'), JSON.stringify({
    admin: { socket: path.join(dir, 'admin', 'admin.sock') },
    plugins: withoutShippedPlugins(['postgres']),
    exporter: { dataDir: path.join(dir, 'data'), prometheus: { enabled: false } },
  }))
  const env: Record<string, string> = {}
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined && !key.startsWith('OTEL_')) env[key] = value
  env.OTEL_EXPORTER_OTLP_ENDPOINT = sink.endpoint
  const child: ChildProcess = spawn(path.join(repoRoot, 'periscope'), ['run', '--config', path.join(dir, 'periscope.yaml')], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()))
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()))
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGINT')
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
      const code = await exited
      clearTimeout(timer)
      if (code !== 0) console.error(`periscope run exited with ${code} on SIGINT:\n${output.slice(-3000)}`)
    }
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    const start = performance.now()
    let ready: RegExpExecArray | null
    while ((ready = /running \d+ of \d+ plugins[^\n]*/.exec(output)) === null) {
      if (child.exitCode !== null) throw new Error(`periscope run exited with ${child.exitCode} during start-up:\n${output}`)
      if (performance.now() - start > 120_000) throw new Error(`periscope run was not running its plugins after 120 s:\n${output}`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    return { pid: child.pid!, running: ready[0], output: () => output, stop }
  } catch (error) {
    await stop()
    throw error
  }
}

/** Waits until a query comes back as a span at the sink, so the timed load starts with tracing in effect. */
async function waitUntilTracing(pg: PostgresServer, sink: OtlpSink, periscope: Periscope): Promise<void> {
  const before = sink.counts().spans
  const start = performance.now()
  while (sink.counts().spans === before) {
    if (performance.now() - start > 60_000) throw new Error(`no span reached the sink within 60 s of queries to PostgreSQL; periscope run output:\n${periscope.output().slice(-3000)}`)
    await pg.psql(['-c', 'SELECT 1'])
    await new Promise((resolve) => setTimeout(resolve, 200))
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
  await (await startPeriscope(sink)).stop()
  for (let round = 0; round < ROUNDS; round++) {
    baseline.push(await load(pg))
    const periscope = await startPeriscope(sink)
    running = periscope.running
    try {
      await waitUntilTracing(pg, sink, periscope)
      if (!(await exportSettled(sink))) unsettled++
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
