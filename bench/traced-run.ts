/**
 * What the overhead benchmarks share: a real `./periscope run` exporting to the in-process OTLP
 * sink, its CPU by kind of thread from /proc, waiting for its exports to settle and for tracing
 * to be in effect, and spotting other `periscope run` processes that would disturb the figures.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { OtlpSink } from '../test/peers/otlp-sink.ts'
import { pollUntil } from '../test/peers/poll.ts'
import { repoRoot } from './common.ts'

export const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim())

export interface BenchPeriscope {
  pid: number
  /** Its "running N of M plugins" line. */
  running: string
  output(): string
  /** SIGINT, as a user stops it (SIGKILL after 20 s); removes its directory. */
  stop(): Promise<void>
}

/**
 * `./periscope run` exporting to the sink; resolves once its plugins run. `config` is merged into
 * its periscope.yaml (e.g. `plugins` to keep one shipped plugin, `exporter.prometheus`).
 */
export async function startBenchPeriscope(sink: OtlpSink, name: string, config: Record<string, unknown> = {}): Promise<BenchPeriscope> {
  const dir = mkdtempSync(path.join(tmpdir(), `periscope-bench-${name}-`))
  // the runtime continues as nobody after loading, and must reach its data directory
  chmodSync(dir, 0o755)
  writeFileSync(path.join(dir, 'periscope.yaml'), JSON.stringify({
    admin: { socket: path.join(dir, 'admin', 'admin.sock') },
    ...config,
    exporter: { dataDir: path.join(dir, 'data'), prometheus: { enabled: false }, ...(config.exporter as object | undefined) },
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
    const running = /running \d+ of \d+ plugins[^\n]*/
    await pollUntil(() => running.test(output), {
      what: 'periscope run to run its plugins',
      timeoutMs: 120_000,
      intervalMs: 50,
      failed: () => (child.exitCode !== null ? `periscope run exited with ${child.exitCode} during start-up` : undefined),
      details: () => output,
    })
    return { pid: child.pid!, running: running.exec(output)![0], output: () => output, stop }
  } catch (error) {
    await stop()
    throw error
  }
}

/**
 * Periscope's CPU seconds by kind of thread: its main thread (ring buffers, bus, exporter), the
 * threads it starts that keep the main thread's name (isolated-vm's isolate threads: the plugins),
 * V8's workers (garbage collection, compilation) and libuv's pool. A thread that exits between two
 * readings loses its time from the difference.
 */
export function threadCpu(pid: number): Map<string, number> {
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

/**
 * Other `periscope run` processes on the host: one would trace the baseline too (and compete for
 * the CPUs), so the figures are then no clean comparison.
 */
export function otherPeriscopes(own?: number): string[] {
  const found: string[] = []
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name) && Number(name) !== own)) {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
      const cli = argv.findIndex((arg) => arg.endsWith('runtime/cli.ts'))
      if (cli >= 0 && argv[cli + 1] === 'run') found.push(`${pid} ${argv.join(' ').trim()}`)
    } catch {}
  }
  return found
}

/**
 * Resolves true once at most `settledSpans` spans reached the sink in the last 1.5 s: Periscope
 * exports a batch at least every second (exporter.batch.intervalMs), so by then it has handled and
 * exported what the load made, and what still comes is the host's other traffic (Periscope traces
 * the whole host). False when that never happens within `timeoutMs`: other load on the host.
 */
export async function exportSettled(sink: OtlpSink, settledSpans: number, timeoutMs: number): Promise<boolean> {
  const start = performance.now()
  const window: number[] = []
  for (;;) {
    window.push(sink.counts().spans)
    if (window.length > 16) window.shift()
    if (window.length === 16 && window.at(-1)! - window[0]! <= settledSpans) return true
    if (performance.now() - start > timeoutMs) return false
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** Pokes the server until a span reaches the sink, so the timed load starts with tracing in effect. */
export async function waitUntilTracing(sink: OtlpSink, periscope: BenchPeriscope, poke: () => Promise<unknown>, what: string): Promise<void> {
  const before = sink.counts().spans
  await pollUntil(async () => {
    if (sink.counts().spans !== before) return true
    await poke()
    return false
  }, { what: `a span of ${what} at the sink`, timeoutMs: 60_000, intervalMs: 200, details: () => `periscope run output:\n${periscope.output().slice(-3000)}` })
}
