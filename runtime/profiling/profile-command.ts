/**
 * `periscope profile [--pid P] --seconds N [--frequency 99] [--top 20] [--out DIR]`: a one-off CPU
 * profile of one process (its threads) or of the whole host, as `perf record` + `perf report`
 * would give, with full stacks where the binaries have no frame pointers.
 *
 * It runs the runtime in this process with the shipped `cpu-profile` plugin alone, configured for
 * the run (the target pid, the frequency, and one collection at the end of the N seconds), shows
 * its progress while it samples, then prints the top functions (runtime/profiling/top-table.ts),
 * writes the profile as a gzipped pprof (`go tool pprof`) and as a self-contained HTML flame graph
 * (runtime/profiling/flamegraph.ts), and says where both are.
 *
 * Like `perf record`, it runs as root from start to end (no drop to `nobody` as `periscope run`
 * does): it lasts seconds, and writes its files where the user asks.
 */
import { readFileSync, readlinkSync } from 'node:fs'
import { access, constants, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { hostname, tmpdir } from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import type { ObjectProvider } from '../bus.ts'
import { parseConfig } from '../config/index.ts'
import type { Logger } from '../plugins/log.ts'
import type { ScopeSink, SignalSink } from '../plugins/sink.ts'
import { type Runtime, shippedPluginsDir, startRuntime } from '../run.ts'
import type { MetricPointInput, ProfileSampleInput } from '../telemetry/signals.ts'
import { type AggregatedProfile, encodePprof, mergeProfiles, ProfileAggregator } from '../telemetry/profiles.ts'
import { flameGraphHtml } from './flamegraph.ts'
import { formatTopTable, topFunctions } from './top-table.ts'

const PLUGIN = 'cpu-profile'
/** The object whose ring carries the samples: its received count is the progress line's. */
const SAMPLES_OBJECT = 'stacks'
const SAMPLES_METRIC = 'periscope.profile.samples'
const TRUNCATED_METRIC = 'periscope.profile.stacks.truncated'
const LOST_METRIC = 'periscope.profile.samples.lost'
/** Distinct stacks kept; a whole host at 1000 Hz for minutes stays far below. */
const MAX_STACKS = 500_000
const MAX_SECONDS = 24 * 3600
/** How long the plugin gets, after the run, to unwind, name and hand over its collection. */
const COLLECTION_GRACE_MS = 60_000

const usage = `usage: periscope profile [--pid P] [--seconds N] [--frequency HZ] [--top ROWS] [--out DIR]

Samples the CPU stacks of process P (all its threads), or of every process without --pid, for N
seconds (default 10) at HZ samples per second per CPU (default 99, at most 1000), then prints the
ROWS functions that used the most CPU (default 20) and writes the profile into DIR (default the
current directory) as a gzipped pprof (go tool pprof) and an HTML flame graph that works offline.`

export interface ProfileOptions {
  pid: number | undefined
  seconds: number
  frequency: number
  top: number
  out: string
}

export class UsageError extends Error {}
class Interrupted extends Error {}

function positiveNumber(flag: string, text: string | undefined, fallback: number, check: (n: number) => string | undefined): number {
  if (text === undefined) return fallback
  const value = Number(text)
  const problem = text.trim() === '' || !Number.isFinite(value) ? 'is not a number' : check(value)
  if (problem !== undefined) throw new UsageError(`--${flag} ${JSON.stringify(text)} ${problem}`)
  return value
}

const wholeNumber = (min: number, max: number, what: string) => (n: number): string | undefined =>
  Number.isInteger(n) && n >= min && n <= max ? undefined : `must be a whole number from ${min} to ${max} (${what})`

/** Reads and checks the command line; throws a UsageError saying what is wrong and how to fix it. */
export function parseProfileArgs(argv: string[]): ProfileOptions | 'help' {
  let values: Record<string, string | boolean | undefined>
  try {
    values = parseArgs({
      args: argv,
      options: {
        pid: { type: 'string', short: 'p' },
        seconds: { type: 'string', short: 's' },
        frequency: { type: 'string', short: 'F' },
        top: { type: 'string' },
        out: { type: 'string', short: 'o' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }).values
  } catch (error) {
    throw new UsageError((error as Error).message)
  }
  if (values.help === true) return 'help'
  const pid = values.pid === undefined ? undefined : positiveNumber('pid', values.pid as string, 0, wholeNumber(1, 2 ** 22, 'a process id; see `ps -e`'))
  const seconds = positiveNumber('seconds', values.seconds as string | undefined, 10, (n) =>
    n > 0 && n <= MAX_SECONDS ? undefined : `must be above 0 and at most ${MAX_SECONDS} (how long to sample, e.g. --seconds 30)`)
  const frequency = positiveNumber('frequency', values.frequency as string | undefined, 99, wholeNumber(1, 1000, 'samples per second per CPU; 99 is usual, 19 is what `periscope run` takes'))
  const top = positiveNumber('top', values.top as string | undefined, 20, wholeNumber(1, 100_000, 'rows of the table'))
  return { pid, seconds, frequency, top, out: (values.out as string | undefined) ?? '.' }
}

function executableOf(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/exe`)
  } catch {
    return undefined
  }
}

function commOf(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim()
  } catch {
    return undefined
  }
}

/**
 * Each sampled process's name (its main thread's comm), for the flame graph's process frames:
 * from /proc while it runs, else its main thread's name in the samples (else any thread's).
 */
function processNames(profile: AggregatedProfile): Map<number, string> {
  const threadNames = new Map<number, string>()
  for (const { labels } of profile.samples) {
    const pid = labels['process.pid']
    const thread = labels['thread.name']
    if (typeof pid !== 'number' || typeof thread !== 'string') continue
    if (labels['thread.id'] === pid || !threadNames.has(pid)) threadNames.set(pid, thread)
  }
  return new Map([...threadNames].map(([pid, thread]) => [pid, commOf(pid) ?? thread]))
}

/** The process's name, or a UsageError when there is no such process. */
function processName(pid: number): string {
  const comm = commOf(pid)
  if (comm !== undefined) return comm
  throw new UsageError(`--pid ${pid}: no such process (/proc/${pid} does not exist); pass the id of a running process (see \`ps -e\`), or leave --pid out to profile the whole host`)
}

async function checkOutputDirectory(dir: string): Promise<string> {
  const absolute = path.resolve(dir)
  try {
    await mkdir(absolute, { recursive: true })
    await access(absolute, constants.W_OK)
  } catch (error) {
    throw new UsageError(`--out ${dir}: cannot write there (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); pass a directory you can write to`)
  }
  return absolute
}

/** What the plugin hands over: its profile samples, aggregated, and its self-metrics. */
class CollectingSink implements SignalSink {
  readonly profiles = new ProfileAggregator(MAX_STACKS)
  /** Whether the plugin reported a collection's counts (it does so after the collection's stacks). */
  counted = false
  samples = 0
  lost = 0
  truncated = new Map<string, number>()
  private readonly ignore: ScopeSink = { spans() {}, metrics() {}, logs() {}, profiles() {} }

  scope(pluginName: string): ScopeSink {
    if (pluginName !== PLUGIN) return this.ignore
    return {
      spans() {},
      logs() {},
      profiles: (samples: ProfileSampleInput[]) => {
        this.profiles.add({ name: pluginName }, samples, () => ({}))
      },
      metrics: (points: MetricPointInput[]) => {
        for (const point of points) {
          if (point.name === SAMPLES_METRIC) {
            this.samples += point.value
            this.counted = true
          } else if (point.name === LOST_METRIC) {
            this.lost += point.value
            this.counted = true
          } else if (point.name === TRUNCATED_METRIC) {
            const reason = String(point.attributes?.reason ?? 'unknown')
            this.truncated.set(reason, (this.truncated.get(reason) ?? 0) + point.value)
          }
        }
      },
    }
  }
}

export interface ProfileDependencies {
  /** The object library; the real one by default. */
  provider?: ObjectProvider
  /** The plugin's source, instead of the shipped plugins/cpu-profile.ts (tests). */
  pluginSource?: string
  /** Decoders bundled into the plugin; the generated bpf/lib/index.types.ts by default. */
  decodersPath?: string
  log?: Logger
  /** Where the progress line and the results go; stdout by default. */
  write?: (text: string) => void
  /** Whether the progress line redraws itself (a terminal); default: stdout is a TTY. */
  redraw?: boolean
  now?: () => Date
}

function quietLogger(write: (text: string) => void): Logger {
  const say = (level: string) => (message: string) => write(`periscope profile: ${level}: ${message}\n`)
  return { debug() {}, info() {}, warn: say('warning'), error: say('error') }
}

/** Runs the plugin alone for the run; resolves once it is running, or says why it is not. */
async function startProfiler(options: ProfileOptions, sink: CollectingSink, deps: ProfileDependencies, log: Logger, pluginDir: string): Promise<Runtime> {
  const entry = deps.pluginSource ?? `export { default } from ${JSON.stringify(path.join(shippedPluginsDir, `${PLUGIN}.ts`))}\n`
  await writeFile(path.join(pluginDir, `${PLUGIN}.ts`), entry)
  const config = parseConfig({
    plugins: {
      [PLUGIN]: {
        ...(options.pid === undefined ? {} : { target_pids: [options.pid] }),
        config: { frequency: options.frequency, collect_interval_ms: Math.round(options.seconds * 1000) },
      },
    },
  }, 'periscope profile')
  const provider = deps.provider ?? await (await import('../library/index.ts')).createObjectProvider()
  const runtime = await startRuntime({
    provider, sink, log, config, pluginDirs: [pluginDir], decodersPath: deps.decodersPath, adminSocket: false, keepCapabilities: true,
  })
  const plugin = runtime.manager.list().find((p) => p.name === PLUGIN)
  if (plugin?.status !== 'running') {
    await runtime.close()
    const reason = plugin === undefined ? 'it was not loaded' : `${plugin.status}${plugin.lastError === undefined ? '' : `: ${plugin.lastError.message}`}`
    throw new Error(`the ${PLUGIN} plugin did not start (${reason}); \`periscope check\` tells what this kernel supports`)
  }
  return runtime
}

/** Samples the runtime has read from the kernel so far; undefined before the object is open. */
function samplesReceived(runtime: Runtime): number | undefined {
  return runtime.bus.listObjects().find((o) => o.name === SAMPLES_OBJECT)?.stats.received
}

/** Samples for the run's length, redrawing a progress line; then waits for the plugin's collection. */
async function sample(
  runtime: Runtime, sink: CollectingSink, options: ProfileOptions, what: string, write: (text: string) => void, redraw: boolean, interrupted: () => boolean,
): Promise<void> {
  const start = performance.now()
  const runMs = options.seconds * 1000
  const line = (elapsedMs: number): string =>
    `sampling ${what} at ${options.frequency} Hz: ${(Math.min(elapsedMs, runMs) / 1000).toFixed(1)}/${options.seconds} s, ${samplesReceived(runtime) ?? 0} samples`
  let lastPrinted = -Infinity
  while (performance.now() - start < runMs) {
    if (interrupted()) throw new Interrupted()
    const elapsed = performance.now() - start
    if (redraw) write(`\r${line(elapsed)}\u001b[K`)
    else if (elapsed - lastPrinted >= 5000) {
      write(`${line(elapsed)}\n`)
      lastPrinted = elapsed
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(250, Math.max(1, runMs - elapsed))))
  }
  write(`${redraw ? '\r' : ''}${line(runMs)}, collecting…${redraw ? '\u001b[K' : ''}\n`)
  const deadline = performance.now() + COLLECTION_GRACE_MS
  while (!collected(runtime, sink)) {
    if (performance.now() > deadline) throw new Error(`the ${PLUGIN} plugin handed over no profile ${COLLECTION_GRACE_MS / 1000} s after the run; see its messages above`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/**
 * Whether the plugin's collection at the end of the run is in: it emits its counts (samples, or
 * lost ones) after the last of the stacks they count, which may take several batches; or there
 * is nothing to wait for, no sample having reached the runtime.
 */
function collected(runtime: Runtime, sink: CollectingSink): boolean {
  return sink.counted || samplesReceived(runtime) === 0
}

const stamp = (date: Date): string => date.toISOString().slice(0, 19).replace(/[-:]/g, '').replace('T', '-')

function describeTarget(options: ProfileOptions): string {
  return options.pid === undefined ? `the whole host (${hostname()})` : `pid ${options.pid} (${processName(options.pid)})`
}

/** Writes the pprof and the flame graph; returns their paths. */
async function writeOutputs(profile: AggregatedProfile, options: ProfileOptions, outDir: string, title: string, subtitle: string, date: Date): Promise<{ pprof: string; html: string }> {
  const base = path.join(outDir, `periscope-cpu-${options.pid ?? 'host'}-${stamp(date)}`)
  const files = { pprof: `${base}.pb.gz`, html: `${base}.html` }
  const html = await flameGraphHtml(profile, { title, subtitle, byProcess: options.pid === undefined, processNames: processNames(profile) })
  await writeFile(files.pprof, encodePprof(profile))
  await writeFile(files.html, html)
  return files
}

function summary(sink: CollectingSink, options: ProfileOptions): string {
  const truncated = [...sink.truncated].filter(([, n]) => n > 0)
  const stacks = truncated.length === 0
    ? 'every stack complete'
    : `stacks cut short: ${truncated.map(([reason, n]) => `${n} (${reason})`).join(', ')}, shown under a [truncated: …] root frame`
  const lost = sink.lost === 0 ? '' : `; ${sink.lost} samples lost (the kernel's ring was full, or past the plugin's max_stacks)`
  return `${sink.samples} samples in ${options.seconds} s at ${options.frequency} Hz; ${stacks}${lost}`
}

/** The profile run; returns the exit code. Errors of use throw UsageError. */
export async function profile(options: ProfileOptions, deps: ProfileDependencies = {}): Promise<number> {
  const write = deps.write ?? ((text: string) => void process.stdout.write(text))
  const log = deps.log ?? quietLogger((text) => void process.stderr.write(text))
  if (deps.provider === undefined && process.geteuid?.() !== 0) {
    throw new UsageError('sampling every CPU needs root (CAP_BPF and CAP_PERFMON, and reading other processes\' memory maps); run it with sudo')
  }
  const what = describeTarget(options)
  const outDir = await checkOutputDirectory(options.out)
  const started = (deps.now ?? (() => new Date()))()
  const sink = new CollectingSink()
  const pluginDir = await mkdtemp(path.join(tmpdir(), 'periscope-profile-'))
  let runtime: Runtime | undefined
  let sampledFrom = 0
  // Ctrl-C stops the run cleanly (the plugin hands its samples over only at the end, so nothing is written)
  let interrupted = false
  const interrupt = () => { interrupted = true }
  process.once('SIGINT', interrupt)
  try {
    runtime = await startProfiler(options, sink, deps, log, pluginDir)
    sampledFrom = Date.now() * 1e6
    await sample(runtime, sink, options, what, write, deps.redraw ?? process.stdout.isTTY === true, () => interrupted)
  } finally {
    process.off('SIGINT', interrupt)
    await runtime?.close()
    await rm(pluginDir, { recursive: true, force: true })
  }
  const profiles = sink.profiles.drain()
  if (profiles.length === 0) {
    write(`no samples: ${what} ${options.pid === undefined ? 'ran nothing' : 'did not run on a CPU'} during the ${options.seconds} s; nothing written\n`)
    return 1
  }
  // the profile covers the run, not the moments the plugin handed its samples over
  const merged = { ...mergeProfiles(profiles), startNs: sampledFrom, endNs: sampledFrom + options.seconds * 1e9 }
  if (options.pid !== undefined) merged.process = { pid: options.pid, executablePath: executableOf(options.pid), command: commOf(options.pid) }
  const stats = summary(sink, options)
  if (options.pid !== undefined && merged.process?.command === undefined) write(`pid ${options.pid} exited during the run\n`)
  write(`${stats}\n\n${formatTopTable(topFunctions(merged), { rows: options.top })}\n\n`)
  if (sink.profiles.droppedSamples > 0) write(`${sink.profiles.droppedSamples} samples with a new stack past ${MAX_STACKS} distinct stacks were left out\n`)
  const subtitle = `${started.toISOString().slice(0, 19).replace('T', ' ')} UTC · ${stats}`
  const files = await writeOutputs(merged, options, outDir, `CPU profile of ${what}`, subtitle, started)
  const relative = path.relative(process.cwd(), files.pprof)
  write(`pprof:       ${files.pprof}   (go tool pprof -http=: ${relative.startsWith('..') ? files.pprof : relative})\n`)
  write(`flame graph: ${files.html}   (open it in a browser; it works offline)\n`)
  return 0
}

export async function main(argv: string[], deps: ProfileDependencies = {}): Promise<number> {
  let options: ProfileOptions | 'help'
  try {
    options = parseProfileArgs(argv)
    if (options === 'help') {
      console.log(usage)
      return 0
    }
    return await profile(options, deps)
  } catch (error) {
    if (error instanceof Interrupted) {
      console.error('\nperiscope profile: interrupted before the end of the run; nothing written')
      return 130
    }
    if (error instanceof UsageError) {
      console.error(`periscope profile: ${error.message}\n(periscope profile --help tells every option)`)
      return 2
    }
    console.error(`periscope profile: ${(error as Error).message}`)
    return 1
  }
}
