/**
 * What tracing HTTP costs the traced service (issue 8): Debian's nginx (one worker) serving its
 * small page under wrk (2 threads, 50 connections), without Periscope (the baseline) and with a
 * real `./periscope run` tracing it with the shipped plugins and exporting over OTLP/HTTP to a local
 * sink (test/peers/otlp-sink.ts, in this process: it counts spans and decodes nothing else).
 * Baseline and traced runs alternate over the rounds, in the same run; one row for plain HTTP and
 * one for HTTPS (the same nginx, its TLS port). Periscope starts afresh for each round's traced
 * runs, after nginx, so it finds nginx already running, as it would on a host.
 *
 * Per run: wrk's requests/s and its p50 and p99 latency; Periscope's CPU time (utime + stime of
 * its process, all threads, from /proc/<pid>/stat) per 10,000 requests nginx logged, from the start
 * of the load until its exports settle (no new span for 1.5 s), so work left over when wrk stops
 * counts too; its RSS, sampled every 100 ms over the same time (VmRSS), and its VmHWM; the spans
 * that reached the sink (nginx's server spans and wrk's client spans). The kernel side of tracing
 * runs in nginx's and wrk's own syscalls, not in Periscope's CPU: nginx's CPU per 10,000 requests
 * (user and system, master and workers), with and without, shows it. Medians over the rounds. Targets: throughput ≥ 0.95 of the baseline, p99 added ≤ 100 µs,
 * RSS ≤ 150 MB (10^6 bytes) under load. Exits non-zero when one is missed.
 *
 *   node_modules/.bin/node bench/http-overhead.bench.ts [--seconds 10] [--rounds 3]
 *   PERISCOPE_BENCH_HTTP_SECONDS=5 npm run bench -- http-overhead
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { runCurl, runWrk, type WrkResult } from '../test/peers/clients.ts'
import { NGINX_SMALL_PAGE, startNginx, type Nginx } from '../test/peers/nginx.ts'
import { startOtlpSink, type OtlpSink } from '../test/peers/otlp-sink.ts'
import { CLOCK_TICKS, type BenchPeriscope, exportSettled, otherPeriscopes, startBenchPeriscope, threadCpu, waitUntilTracing } from './traced-run.ts'
import { mb, median, procMemory, verdict } from './common.ts'

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: process.env.PERISCOPE_BENCH_HTTP_SECONDS ?? '10' },
    rounds: { type: 'string', default: process.env.PERISCOPE_BENCH_HTTP_ROUNDS ?? '3' },
  },
})
const SECONDS = Number(args.seconds)
const ROUNDS = Number(args.rounds)
if (!(SECONDS >= 1) || !(ROUNDS >= 1)) throw new Error(`--seconds and --rounds must be positive numbers (got ${args.seconds}, ${args.rounds})`)
const THREADS = 2
const CONNECTIONS = 50
const TARGET_THROUGHPUT_RATIO = 0.95
const TARGET_P99_ADDED_US = 100
const TARGET_RSS = 150e6
const SETTLED_SPANS = 20

type Scheme = 'http' | 'https'
const SCHEMES: Scheme[] = ['http', 'https']

interface PeriscopeUse {
  cpu: CpuTimes
  /** threadCpu() over the run, seconds. */
  byThread: Map<string, number>
  /** Largest VmRSS sampled during the load, bytes. */
  sampledRss: number
  /** VmHWM at the end of the load: the peak since start, start-up included, bytes. */
  hwm: number
  /** Spans that reached the sink for this run's requests (server spans from nginx, client spans from wrk). */
  spans: number
}

interface LoadRun {
  wrk: WrkResult
  /** Lines nginx logged during the run: every request it answered, wrk's in-flight ones included. */
  logged: number
  /** nginx's master and workers during wrk's run. */
  nginxCpu: CpuTimes
  periscope?: PeriscopeUse
}


interface CpuTimes {
  /** utime, seconds. */
  user: number
  /** stime, seconds: the BPF programs on the syscall tracepoints run in here. */
  system: number
}

/** CPU time of processes (all their threads) from /proc/<pid>/stat, summed. */
function cpuTimes(pids: readonly number[]): CpuTimes {
  const sum = { user: 0, system: 0 }
  for (const pid of pids) {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    sum.user += Number(fields[11]) / CLOCK_TICKS
    sum.system += Number(fields[12]) / CLOCK_TICKS
  }
  return sum
}

const minus = (a: CpuTimes, b: CpuTimes): CpuTimes => ({ user: a.user - b.user, system: a.system - b.system })


function hwm(pid: number): number {
  const match = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  if (match === null) throw new Error(`/proc/${pid}/status has no VmHWM line`)
  return Number(match[1]) * 1024
}



/**
 * One wrk run. With Periscope, its CPU and memory are followed until its exports settle after the
 * load, so work it does for the load after wrk stops counts too.
 */
async function load(nginx: Nginx, scheme: Scheme, traced?: { periscope: BenchPeriscope; sink: OtlpSink }): Promise<LoadRun> {
  const periscope = traced?.periscope
  const url = `${scheme === 'http' ? nginx.baseUrl : nginx.tlsUrl}/`
  for (const other of otherPeriscopes(periscope?.pid)) intruders.add(other)
  const loggedBefore = nginx.accessLog().length
  const cpuBefore = periscope === undefined ? undefined : cpuTimes([periscope.pid])
  const threadsBefore = periscope === undefined ? undefined : threadCpu(periscope.pid)
  const nginxPids = [nginx.pid, ...nginx.workerPids()]
  const nginxBefore = cpuTimes(nginxPids)
  let sampledRss = 0
  const sample = (): void => {
    if (periscope !== undefined) sampledRss = Math.max(sampledRss, procMemory(periscope.pid)?.rss ?? 0)
  }
  const sampler = setInterval(sample, 100)
  const spansBefore = traced?.sink.counts().spans ?? 0
  let wrk: WrkResult
  let nginxCpu: CpuTimes
  try {
    wrk = await runWrk({ url, threads: THREADS, connections: CONNECTIONS, durationS: SECONDS })
    nginxCpu = minus(cpuTimes(nginxPids), nginxBefore)
    if (traced !== undefined && !(await exportSettled(traced.sink, SETTLED_SPANS, 30_000))) unsettled++
  } finally {
    clearInterval(sampler)
  }
  sample()
  if (wrk.errors.connect + wrk.errors.read + wrk.errors.write + wrk.errors.timeout + wrk.errors.status > 0) {
    throw new Error(`wrk against ${url} had errors ${JSON.stringify(wrk.errors)}:\n${wrk.output}\n${nginx.errors()}`)
  }
  const logged = (await nginx.waitForAccessLog((lines) => lines.length - loggedBefore >= wrk.requests)).length - loggedBefore
  const use = periscope === undefined ? undefined : {
    cpu: minus(cpuTimes([periscope.pid]), cpuBefore!),
    byThread: new Map([...threadCpu(periscope.pid)].map(([kind, seconds]) => [kind, seconds - (threadsBefore!.get(kind) ?? 0)])),
    sampledRss,
    hwm: hwm(periscope.pid),
    spans: traced!.sink.counts().spans - spansBefore,
  }
  return { wrk, logged, nginxCpu, periscope: use }
}



const intruders = new Set<string>()
let unsettled = 0
const sink = await startOtlpSink()
const nginx = await startNginx({ tls: true })
const baseline: Record<Scheme, LoadRun[]> = { http: [], https: [] }
const traced: Record<Scheme, LoadRun[]> = { http: [], https: [] }
let running = ''
try {
  // nginx, wrk and the page cache warmed; one Periscope start so later ones find the compile cache filled
  for (const scheme of SCHEMES) await runWrk({ url: `${scheme === 'http' ? nginx.baseUrl : nginx.tlsUrl}/`, durationS: 2, threads: THREADS, connections: CONNECTIONS })
  await (await startBenchPeriscope(sink, 'http', { exporter: { prometheus: { port: 0 } } })).stop()
  for (let round = 0; round < ROUNDS; round++) {
    for (const scheme of SCHEMES) baseline[scheme].push(await load(nginx, scheme))
    const periscope = await startBenchPeriscope(sink, 'http', { exporter: { prometheus: { port: 0 } } })
    running = periscope.running
    try {
      await waitUntilTracing(sink, periscope, () => runCurl(`${nginx.baseUrl}/`), 'requests to nginx')
      if (!(await exportSettled(sink, SETTLED_SPANS, 30_000))) unsettled++
      for (const scheme of SCHEMES) traced[scheme].push(await load(nginx, scheme, { periscope, sink }))
    } finally {
      await periscope.stop()
    }
  }
} finally {
  await nginx.stop()
  await sink.stop()
}

const ms = (us: number): string => `${(us / 1000).toFixed(2)} ms`
const rps = (x: number): string => Math.round(x).toLocaleString('en')
let allMet = true
console.log(`HTTP overhead: nginx (1 worker) serving its ${Buffer.byteLength(NGINX_SMALL_PAGE)}-byte page under wrk (${THREADS} threads, ${CONNECTIONS} connections, ${SECONDS} s a run), ` +
  `medians of ${ROUNDS} rounds alternating without and with Periscope; ${running || 'periscope run'}; OTLP/HTTP to a local sink`)
for (const scheme of SCHEMES) {
  const base = baseline[scheme]
  const withP = traced[scheme]
  const m = (runs: LoadRun[], pick: (r: LoadRun) => number): number => median(runs.map(pick))
  const baseRps = m(base, (r) => r.wrk.requestsPerSecond)
  const withRps = m(withP, (r) => r.wrk.requestsPerSecond)
  const p99Added = m(withP, (r) => r.wrk.latencyUs.p99) - m(base, (r) => r.wrk.latencyUs.p99)
  const per10k = (cpu: CpuTimes, r: LoadRun): number => ((cpu.user + cpu.system) / r.logged) * 10_000
  const split = (runs: LoadRun[], pick: (r: LoadRun) => CpuTimes): string => {
    const user = m(runs, (r) => (pick(r).user / r.logged) * 10_000)
    const system = m(runs, (r) => (pick(r).system / r.logged) * 10_000)
    return `${(user + system).toFixed(3)} (user ${user.toFixed(3)}, system ${system.toFixed(3)})`
  }
  const rss = Math.max(...withP.map((r) => r.periscope!.sampledRss))
  const peak = Math.max(...withP.map((r) => r.periscope!.hwm))
  const logged = withP.reduce((sum, r) => sum + r.logged, 0)
  const exported = withP.reduce((sum, r) => sum + r.periscope!.spans, 0)
  const met = { throughput: withRps / baseRps >= TARGET_THROUGHPUT_RATIO, p99: p99Added <= TARGET_P99_ADDED_US, rss: rss <= TARGET_RSS }
  allMet &&= met.throughput && met.p99 && met.rss
  console.log(`  ${scheme.padEnd(5)} without Periscope: ${rps(baseRps)} req/s (rounds ${base.map((r) => rps(r.wrk.requestsPerSecond)).join(', ')}); ` +
    `p50 ${ms(m(base, (r) => r.wrk.latencyUs.p50))}, p99 ${ms(m(base, (r) => r.wrk.latencyUs.p99))}`)
  console.log(`        with Periscope:    ${rps(withRps)} req/s (rounds ${withP.map((r) => rps(r.wrk.requestsPerSecond)).join(', ')}); ` +
    `ratio ${(withRps / baseRps).toFixed(3)} (target ≥ ${TARGET_THROUGHPUT_RATIO}) ${verdict(met.throughput)}`)
  console.log(`          p50 ${ms(m(withP, (r) => r.wrk.latencyUs.p50))}, p99 ${ms(m(withP, (r) => r.wrk.latencyUs.p99))}: ` +
    `p99 added ${p99Added.toFixed(0)} µs (target ≤ ${TARGET_P99_ADDED_US}) ${verdict(met.p99)}; ratio p50 ${(m(withP, (r) => r.wrk.latencyUs.p50) / m(base, (r) => r.wrk.latencyUs.p50)).toFixed(2)}, ` +
    `p99 ${(m(withP, (r) => r.wrk.latencyUs.p99) / m(base, (r) => r.wrk.latencyUs.p99)).toFixed(2)}`)
  console.log(`          Periscope: ${split(withP, (r) => r.periscope!.cpu)} CPU-s per 10,000 requests (rounds ${withP.map((r) => per10k(r.periscope!.cpu, r).toFixed(3)).join(', ')}); ` +
    `RSS under load ${mb(rss)} MB (target ≤ ${mb(TARGET_RSS)}) ${verdict(met.rss)}, VmHWM ${mb(peak)} MB; ` +
    `${exported.toLocaleString('en')} spans exported for ${logged.toLocaleString('en')} requests (${(exported / logged).toFixed(2)} a request)`)
  const kinds = [...new Set(withP.flatMap((r) => [...r.periscope!.byThread.keys()]))]
  const byThread = kinds.map((kind) => [kind, m(withP, (r) => ((r.periscope!.byThread.get(kind) ?? 0) / r.logged) * 10_000)] as const).filter(([, s]) => s >= 0.0005)
  console.log(`            by thread: ${byThread.map(([kind, seconds]) => `${kind} ${seconds.toFixed(3)}`).join(', ')}`)
  console.log(`          nginx, CPU-s per 10,000 requests: ${split(withP, (r) => r.nginxCpu)} traced, ${split(base, (r) => r.nginxCpu)} without; ` +
    `ratio ${(m(withP, (r) => per10k(r.nginxCpu, r)) / m(base, (r) => per10k(r.nginxCpu, r))).toFixed(2)}`)
}
if (unsettled > 0) {
  console.log(`  WARNING: ${unsettled} time(s) spans kept reaching the sink for 30 s after a load: other HTTP traffic on the host was traced, ` +
    'so the span counts include it, and Periscope\'s CPU and the baseline are disturbed')
}
if (intruders.size > 0) {
  console.log(`  WARNING: other periscope run processes were running during the runs, tracing the baseline too; these figures compare nothing:\n    ${[...intruders].join('\n    ')}`)
}
if (!allMet) process.exitCode = 1
