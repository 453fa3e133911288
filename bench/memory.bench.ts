/**
 * The memory budget (issue 7), each figure against its target and a baseline measured in the same run:
 * - a real `./periscope run` with no plugin (every shipped one turned off in its config): VmRSS
 *   after start-up settles, target ≤ 90 MB; the baseline is bare Node running an empty TypeScript
 *   module with the same flags (the floor);
 * - the same with 4 stand-in plugins in a temporary --plugins directory: target ≤ 120 MB; the
 *   baseline is the idle figure;
 * - `./periscope run` as a user starts it, with the shipped default plugins, on this host as it
 *   is: target ≤ 150 MB (DESIGN.md decision 11 sets it for a host under load; this is the floor of
 *   that figure); the baseline is the idle figure;
 * - an exporter flood (1,000,000 spans offered while the Collector is down): peak RSS, target
 *   ≤ 1.3× the peak of the same loop without an exporter.
 * RSS comes from /proc/<pid>/status (VmRSS, RssAnon), polled until it stops moving, and judged
 * once the process is idle (IDLE_AFTER_MS after start-up); where it first stopped moving, still
 * holding start-up's garbage, is printed beside it. MB are 10^6 bytes. Exits non-zero when a
 * target is missed.
 *
 *   node_modules/.bin/node bench/memory.bench.ts
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { median, mb, procMemory, type ProcMemory, repoRoot, spanInputs, verdict } from './common.ts'
import { withoutShippedPlugins } from '../test/peers/periscope.ts'

const RUNS = 3
const TARGET_IDLE = 90e6
const TARGET_PLUGINS = 120e6
const TARGET_DEFAULTS = 150e6
const TARGET_FLOOD_RATIO = 1.3
const FLOOD_SPANS = 1_000_000
const FLOOD_QUEUE = 8192
const PLUGIN_BATCH = 512
/**
 * When a process counts as idle. V8's memory reducer gives start-up's garbage back in a full GC
 * about 8 s after the allocations stop (a runtime with no plugin: 96 MB from 2 to 9 s after start,
 * 87 MB from 10 s on, trimming the C heap every second or every 10 s alike), and the runtime
 * trims the C heap every 10 s (runtime/heap-trim.ts). Before both, RSS settles for seconds at a
 * figure the process then leaves.
 */
const IDLE_AFTER_MS = 15_000

/** Stand-ins for the default plugins: each listens to the kernel and emits one kind of signal. */
const standIns: Record<string, string> = {
  'exec-audit': `ctx.on('exec:events', (ev) => {
      if (ev.kind === 1) ctx.emit.log({ body: ev.args.join(' '), attributes: { 'process.pid': ev.pid, 'process.executable.path': ev.filename } })
    })`,
  'exec-metrics': `const counts = new Map<string, number>()
    ctx.on('exec:events', (ev) => { if (ev.kind === 1) counts.set(ev.comm, (counts.get(ev.comm) ?? 0) + 1) })
    ctx.every('10s', () => {
      for (const [comm, n] of counts) ctx.emit.metric({ name: 'process.execs', kind: 'counter', value: n, attributes: { 'process.command': comm } })
      counts.clear()
    })`,
  'process-spans': `ctx.on('exec:events', (ev) => {
      if (ev.kind !== 2) return
      const end = Date.now() * 1e6
      ctx.emit.span({ name: ev.comm, kind: 'internal', startTimeNs: end - ev.duration_ns, endTimeNs: end, attributes: { 'process.exit.code': ev.exit_code }, process: { pid: ev.pid } })
    })`,
  heartbeat: `let beats = 0
    ctx.every('1s', () => { ctx.emit.metric({ name: 'standin.heartbeat', kind: 'gauge', value: ++beats }) })`,
}

function standInSource(name: string, body: string): string {
  return `import { definePlugin } from 'periscope/plugin'
export default definePlugin({
  name: 'standin-${name}',
  objects: ${body.includes("'exec:events'") ? "['exec']" : '[]'},
  setup(ctx) {
    ${body}
  },
})
`
}

/** How the launcher starts Node: its flags and the environment that shapes memory. */
interface Launch {
  nodeFlags: string[]
  env: Record<string, string>
}

interface Settled {
  memory: ProcMemory
  /** Where RSS first stopped moving, before the process was idle. */
  firstSettled: ProcMemory
  nodeFlags: string[]
  running: number
  total: number
  /** Resident memory of the runtime's child processes (the esbuild service), not counted above. */
  children: { command: string; rss: number }[]
}

/** Polls until VmRSS has moved by less than 256 KiB over the last 2 s, and not before `notBefore` (performance.now()). */
async function settledMemory(pid: number, what: string, notBefore = 0): Promise<ProcMemory> {
  const window: ProcMemory[] = []
  const start = performance.now()
  for (;;) {
    const now = procMemory(pid)
    if (now === undefined) throw new Error(`${what}: the process exited before its memory settled`)
    window.push(now)
    if (window.length > 8) window.shift()
    const rss = window.map((m) => m.rss)
    if (window.length === 8 && Math.max(...rss) - Math.min(...rss) <= 256 * 1024 && performance.now() >= notBefore) return now
    if (performance.now() - start > 60_000) {
      throw new Error(`${what}: RSS did not settle within 60 s (last 2 s: ${rss.map(mb).join(', ')} MB)`)
    }
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
}

function childProcesses(pid: number): { command: string; rss: number }[] {
  const out: { command: string; rss: number }[] = []
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    const children = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim()
    for (const child of children === '' ? [] : children.split(' ').map(Number)) {
      const memory = procMemory(child)
      if (memory === undefined) continue
      out.push({ command: path.basename(readFileSync(`/proc/${child}/cmdline`, 'utf8').split('\0')[0]!), rss: memory.rss })
    }
  }
  return out
}

async function stop(child: ChildProcess, what: string): Promise<void> {
  if (child.exitCode !== null) return
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  child.kill('SIGINT')
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
  const code = await exited
  clearTimeout(timer)
  if (code !== 0) throw new Error(`${what}: periscope run exited with ${code} on SIGINT`)
}

/**
 * How the launcher starts Node, from scripts/node-env.sh, which it sources. (/proc/<pid>/environ
 * cannot tell: glibc cuts GLIBC_TUNABLES there as it parses it.)
 */
function launchSettings(): Launch {
  const script = '. "$1" && printf "%s\\0" "$NODE_COMPILE_CACHE" "$GLIBC_TUNABLES" "${periscope_node_flags[@]}"'
  const run = spawnSync('bash', ['-c', script, 'env', path.join(repoRoot, 'scripts/node-env.sh')], { encoding: 'utf8' })
  if (run.status !== 0) throw new Error(`sourcing scripts/node-env.sh failed:\n${run.stderr}`)
  const [cache, tunables, ...nodeFlags] = run.stdout.split('\0').slice(0, -1)
  return { nodeFlags, env: { NODE_COMPILE_CACHE: cache!, GLIBC_TUNABLES: tunables! } }
}

/** Node's flags in the runtime's command line: the launcher's, checked against launchSettings(). */
function nodeFlagsOf(pid: number): string[] {
  const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
  return cmdline.slice(1, cmdline.findIndex((arg) => arg.endsWith('runtime/cli.ts')))
}

/**
 * Starts `./periscope run` in its own directory, waits until its plugins run and it has exported
 * metrics once (a collection every 2 s instead of 60, so the steady state comes sooner), then
 * until its RSS settles.
 */
async function measureRun(what: string, plugins: Record<string, string>, options: { shipped: boolean }): Promise<Settled> {
  const dir = mkdtempSync(path.join(tmpdir(), 'periscope-bench-memory-'))
  // the runtime continues as nobody after loading, and must reach its data directory
  chmodSync(dir, 0o755)
  const args = ['run', '--config', path.join(dir, 'periscope.yaml')]
  writeFileSync(path.join(dir, 'periscope.yaml'), [
    `admin: { socket: ${path.join(dir, 'admin', 'admin.sock')} }`,
    `exporter: { dataDir: ${path.join(dir, 'data')}, prometheus: { port: 0 }, metrics: { intervalMs: 2000 } }`,
    ...(options.shipped ? [] : [`plugins: ${JSON.stringify(withoutShippedPlugins())}`]),
  ].join('\n'))
  if (Object.keys(plugins).length > 0) {
    mkdirSync(path.join(dir, 'plugins'))
    for (const [name, body] of Object.entries(plugins)) writeFileSync(path.join(dir, 'plugins', `${name}.ts`), standInSource(name, body))
    args.push('--plugins', path.join(dir, 'plugins'))
  }
  const child = spawn(path.join(repoRoot, 'periscope'), args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout!.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr!.on('data', (chunk: Buffer) => { output += chunk.toString() })
  try {
    const start = performance.now()
    let ready: RegExpExecArray | null = null
    while ((ready = /running (\d+) of (\d+) plugins/.exec(output)) === null) {
      if (child.exitCode !== null) throw new Error(`${what}: periscope run exited with ${child.exitCode}:\n${output}`)
      if (performance.now() - start > 120_000) throw new Error(`${what}: periscope run was not running its plugins after 120 s:\n${output}`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    while (!existsSync(path.join(dir, 'data', 'metrics.jsonl'))) {
      if (performance.now() - start > 120_000) throw new Error(`${what}: periscope run exported no metrics in 120 s:\n${output}`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    const firstSettled = await settledMemory(child.pid!, what)
    const memory = await settledMemory(child.pid!, what, start + IDLE_AFTER_MS)
    return {
      memory,
      firstSettled,
      nodeFlags: nodeFlagsOf(child.pid!),
      running: Number(ready[1]),
      total: Number(ready[2]),
      children: childProcesses(child.pid!),
    }
  } catch (error) {
    child.kill('SIGKILL')
    throw error
  } finally {
    await stop(child, what).catch((error: Error) => console.error(`${error.message}\n${output}`))
    rmSync(dir, { recursive: true, force: true })
  }
}

/** Bare Node started as the launcher starts the runtime, running an empty TypeScript module: the floor. */
async function measureFloor(launch: Launch): Promise<ProcMemory> {
  const dir = mkdtempSync(path.join(tmpdir(), 'periscope-bench-floor-'))
  writeFileSync(path.join(dir, 'idle.ts'), 'const ticks: number[] = []\nif (process.argv[2] === \'stay\') setInterval(() => ticks.push(1), 60_000)\n')
  const env = { ...process.env, ...launch.env, NODE_COMPILE_CACHE: path.join(dir, 'cache') }
  try {
    // a first run that exits fills the compile cache, as the runtime's is filled
    spawnSync(process.execPath, [...launch.nodeFlags, path.join(dir, 'idle.ts')], { env })
    const child = spawn(process.execPath, [...launch.nodeFlags, path.join(dir, 'idle.ts'), 'stay'], { stdio: 'ignore', env })
    try {
      return await settledMemory(child.pid!, 'bare node', performance.now() + IDLE_AFTER_MS)
    } finally {
      child.kill()
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

interface FloodFigures {
  held: number
  dropped: number
  peakRss: number
  rssBefore: number
}

/**
 * Offers FLOOD_SPANS spans to an exporter whose Collector is down (nothing listens on its
 * endpoint). With `baseline`, the same loop builds the same inputs and keeps the newest
 * FLOOD_QUEUE of them without any exporter: what V8 alone does to RSS at this allocation rate.
 */
async function flood(baseline: boolean): Promise<void> {
  const { createTelemetry } = await import('../runtime/telemetry/index.ts')
  const { freePort } = await import('../test/peers/otelcol.ts')
  const dataDir = mkdtempSync(path.join(tmpdir(), 'periscope-bench-flood-'))
  const telemetry = await createTelemetry({
    config: {
      dataDir,
      batch: { intervalMs: 50 },
      queue: { spans: FLOOD_QUEUE },
      retry: { initialBackoffMs: 200, maxBackoffMs: 1000 },
      exportTimeoutMs: 1000,
      metrics: { intervalMs: 600_000 },
      prometheus: { enabled: false },
    },
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${await freePort()}` },
    log: () => {},
  })
  const scope = telemetry.scope('http', '1.0.0')
  let kept: unknown[] = []
  const rssBefore = process.memoryUsage.rss()
  let peakRss = rssBefore
  for (let i = 0; i < FLOOD_SPANS; i += PLUGIN_BATCH) {
    const spans = spanInputs(PLUGIN_BATCH, i)
    if (baseline) {
      kept.push(...spans)
      if (kept.length > FLOOD_QUEUE) kept = kept.slice(-FLOOD_QUEUE)
    } else {
      scope.spans(spans)
    }
    if ((i / PLUGIN_BATCH) % 64 === 0) {
      await new Promise((resolve) => setImmediate(resolve))
      peakRss = Math.max(peakRss, process.memoryUsage.rss())
    }
  }
  const stats = telemetry.stats().signals.traces
  await telemetry.shutdown(100)
  rmSync(dataDir, { recursive: true, force: true })
  const figures: FloodFigures = {
    held: baseline ? kept.length : stats.queued + stats.inFlight,
    dropped: stats.dropped,
    peakRss,
    rssBefore,
  }
  process.stdout.write(JSON.stringify(figures))
}

/** A flood in a fresh process, started as the launcher starts the runtime. */
function floodRun(launch: Launch, baseline: boolean): FloodFigures {
  const args = [...launch.nodeFlags, import.meta.filename, '--flood', ...(baseline ? ['--baseline'] : [])]
  const run = spawnSync(process.execPath, args, { encoding: 'utf8', env: { ...process.env, ...launch.env } })
  if (run.status !== 0) throw new Error(`the ${baseline ? 'baseline ' : ''}flood run failed:\n${run.stderr}`)
  return JSON.parse(run.stdout) as FloodFigures
}

if (process.argv.includes('--flood')) {
  await flood(process.argv.includes('--baseline'))
  process.exit(0)
}

const describe = (m: ProcMemory): string => `VmRSS ${mb(m.rss)} MB (RssAnon ${mb(m.anon)}, RssFile ${mb(m.file)})`
const medianOf = (runs: Settled[]): ProcMemory => ({
  rss: median(runs.map((r) => r.memory.rss)),
  anon: median(runs.map((r) => r.memory.anon)),
  file: median(runs.map((r) => r.memory.file)),
})

// one run first, unmeasured: setup's checks and the compile cache are then as in any later start
await measureRun('warm-up', {}, { shipped: true })
const idleRuns: Settled[] = []
const pluginRuns: Settled[] = []
const defaultRuns: Settled[] = []
for (let run = 0; run < RUNS; run++) {
  idleRuns.push(await measureRun('no plugin', {}, { shipped: false }))
  pluginRuns.push(await measureRun('4 stand-in plugins', standIns, { shipped: false }))
  defaultRuns.push(await measureRun('default plugins', {}, { shipped: true }))
}
const launch = launchSettings()
if (idleRuns[0]!.nodeFlags.join(' ') !== launch.nodeFlags.join(' ')) {
  throw new Error(`./periscope started node with ${idleRuns[0]!.nodeFlags.join(' ')}, scripts/node-env.sh says ${launch.nodeFlags.join(' ')}: the launcher no longer sources it?`)
}
const floor = await measureFloor(launch)
const floods: FloodFigures[] = []
const baselines: FloodFigures[] = []
for (let run = 0; run < RUNS; run++) {
  floods.push(floodRun(launch, false))
  baselines.push(floodRun(launch, true))
}

const firstSettled = (runs: Settled[]): string => `first settled at ${mb(median(runs.map((r) => r.firstSettled.rss)))} MB`
const idle = medianOf(idleRuns)
const withPlugins = medianOf(pluginRuns)
const defaults = medianOf(defaultRuns)
const floodPeak = median(floods.map((f) => f.peakRss))
const baselinePeak = median(baselines.map((f) => f.peakRss))
const floodRatio = floodPeak / baselinePeak
const children = pluginRuns.at(-1)!.children.map((c) => `${c.command} ${mb(c.rss)} MB`).join(', ') || 'none'
const met = {
  idle: idle.rss <= TARGET_IDLE && idleRuns.every((r) => r.running === 0),
  plugins: withPlugins.rss <= TARGET_PLUGINS && pluginRuns.every((r) => r.running === 4),
  defaults: defaults.rss <= TARGET_DEFAULTS,
  flood: floodRatio <= TARGET_FLOOD_RATIO,
}

const launchText = [...Object.entries(launch.env).map(([k, v]) => `${k}=${v}`), ...launch.nodeFlags].join(' ') || 'no flags'
console.log(`memory budget: real ./periscope run (${launchText}); medians of ${RUNS} runs`)
console.log(`  idle, no plugin: ${describe(idle)} (target ≤ ${mb(TARGET_IDLE)}) ${verdict(met.idle)}; ${firstSettled(idleRuns)}; running ${idleRuns.map((r) => `${r.running}/${r.total}`).join(', ')}`)
console.log(`    baseline bare node, empty .ts module, started the same way: ${describe(floor)}; ratio ${(idle.rss / floor.rss).toFixed(2)}`)
console.log(`  4 stand-in plugins: ${describe(withPlugins)} (target ≤ ${mb(TARGET_PLUGINS)}) ${verdict(met.plugins)}; ${firstSettled(pluginRuns)}; ` +
  `running ${pluginRuns.map((r) => `${r.running}/${r.total}`).join(', ')}; ratio to idle ${(withPlugins.rss / idle.rss).toFixed(2)}`)
console.log(`    child processes, not counted above: ${children}`)
console.log(`  default plugins, this host as it is: ${describe(defaults)} (target ≤ ${mb(TARGET_DEFAULTS)} under load) ${verdict(met.defaults)}; ${firstSettled(defaultRuns)}; ` +
  `running ${defaultRuns.map((r) => `${r.running}/${r.total}`).join(', ')}; ratio to idle ${(defaults.rss / idle.rss).toFixed(2)}`)
console.log(`  exporter flood, Collector down, ${FLOOD_SPANS.toLocaleString('en')} spans, queue ${FLOOD_QUEUE}: peak ${mb(floodPeak)} MB ` +
  `(runs ${floods.map((f) => mb(f.peakRss)).join(', ')}; queued ${floods[0]!.held}, dropped ${floods[0]!.dropped}, counted)`)
console.log(`    baseline, same loop without exporter: peak ${mb(baselinePeak)} MB (runs ${baselines.map((f) => mb(f.peakRss)).join(', ')}); ` +
  `ratio ${floodRatio.toFixed(2)} (target ≤ ${TARGET_FLOOD_RATIO}) ${verdict(met.flood)}`)
if (!met.idle || !met.plugins || !met.defaults || !met.flood) process.exitCode = 1
