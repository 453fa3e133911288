/**
 * `periscope run [--plugins DIR]... [--config periscope.yaml]`: the long-running runtime. It loads
 * the shipped plugins (plugins/) and the user's, watches them for hot reload, serves the admin
 * socket, drops capabilities, and shuts down cleanly on SIGINT or SIGTERM.
 *
 * `startRuntime` is the same runtime without the process wiring (argv, signals, exit code); tests
 * and the harness in test/plugin-harness.ts start it with their own provider and sink.
 */
import { existsSync } from 'node:fs'
import { flushCompileCache } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { type AdminServer, startAdminServer } from './admin/server.ts'
import { createTelemetry } from './telemetry/index.ts'
import { startHeapTrimming } from './heap-trim.ts'
import { Bus, type ObjectProvider, type ObjectSettings } from './bus.ts'
import { ConfigError, limitsFrom, loadConfig, type PeriscopeConfig, pluginSettingsFrom } from './config/index.ts'
import type { Backoff } from './plugins/host.ts'
import { consoleLogger, type Logger } from './plugins/log.ts'
import { PluginManager } from './plugins/manager.ts'
import type { SignalSink } from './plugins/sink.ts'
import { type PluginWatcher, watchPlugins } from './plugins/watch.ts'
import { stopBuildService } from './plugins/build.ts'
import { dropPrivileges, type PrivilegeReport, type RuntimeDirectory, type SetAmbientCapabilities, type SetProcessCredentials } from './privileges.ts'
import { objectSelfMetrics, pluginSelfMetrics, programSelfMetrics, startProgramStats } from './self-metrics.ts'
import { parseTelemetryConfig, resolveTelemetrySettings } from './telemetry/config.ts'
import type { SelfMetricPoint } from './telemetry/metrics.ts'

/** The plugins Periscope ships. */
export const shippedPluginsDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../plugins')
/** How long plugins get at shutdown to handle the records already queued for them. */
const SHUTDOWN_DRAIN_MS = 3000

export interface RuntimeOptions {
  provider: ObjectProvider
  sink: SignalSink
  log: Logger
  /** Directories to watch for plugins, in addition to none: the caller decides (main adds plugins/). */
  pluginDirs: string[]
  config?: PeriscopeConfig
  decodersPath?: string
  /** Admin socket path; false for none (tests that do not need it). */
  adminSocket?: string | false
  backoff?: Partial<Backoff>
  /** The native helper that drops privileges (runtime/privileges.ts), when the addon has one. */
  setCapabilities?: SetProcessCredentials
  /** The native helper that lets a child started after the drop keep a capability (the esbuild service). */
  setAmbientCapabilities?: SetAmbientCapabilities
  /** Skip dropping privileges (tests, and runs without privileges). */
  keepCapabilities?: boolean
}

export interface Runtime {
  manager: PluginManager
  bus: Bus
  watcher: PluginWatcher
  admin: AdminServer | undefined
  privileges: PrivilegeReport | undefined
  /** The directories whose plugin files it loads and reloads as they change. */
  pluginDirs: readonly string[]
  /** Unloads every plugin, closes every object (detaching its links) and the admin socket. */
  close(): Promise<void>
}

export async function startRuntime(options: RuntimeOptions): Promise<Runtime> {
  const config = options.config ?? {}
  const objectSettings = (config.objects ?? {}) as Record<string, ObjectSettings>
  // the generic program leaves this process out: a tracepoint on a syscall the runtime makes to
  // read the records would otherwise feed itself (capture.ts in repl/bpftrace says more)
  const bus = new Bus(options.provider, { ...objectSettings, generic: { ...objectSettings.generic, self_tgid: process.pid } })
  const manager = new PluginManager({
    bus,
    sink: options.sink,
    log: options.log,
    decodersPath: options.decodersPath,
    backoff: options.backoff,
    limits: limitsFrom(config.receiver?.resource_limits),
    plugins: pluginSettingsFrom(config),
  })
  const dirs = [...new Set(options.pluginDirs.map((d) => path.resolve(d)))]
  for (const dir of dirs) {
    if (!existsSync(dir)) throw new Error(`plugin directory ${dir} does not exist; create it or fix --plugins / plugin_dirs`)
  }
  // before the privilege drop: turning the kernel's BPF stats on needs CAP_SYS_ADMIN
  const programStats = await startProgramStats(options.log, config.self_metrics?.bpf_program_stats ?? true)
  let readSelfMetrics = (): SelfMetricPoint[] => [...objectSelfMetrics(bus), ...programSelfMetrics(bus, programStats), ...pluginSelfMetrics(manager)]
  const unregisterSelfMetrics = options.sink.registerSelfMetrics?.('objects and plugins', () => readSelfMetrics())
  let watcher: PluginWatcher | undefined
  let admin: AdminServer | undefined
  try {
    watcher = await watchPlugins(dirs, manager, options.log)
    let privileges: PrivilegeReport | undefined
    // bound while still root: the socket's directory must belong to the uid that starts the runtime
    if (options.adminSocket !== false) {
      admin = await startAdminServer({
        path: options.adminSocket ?? config.admin?.socket,
        manager,
        bus,
        log: options.log,
        extraStats: () => ({ capabilities: privileges?.after }),
        pluginDirs: dirs,
        decodersPath: options.decodersPath,
      })
    }
    if (options.keepCapabilities !== true) {
      // Node writes its compile cache (the launcher's NODE_COMPILE_CACHE) at exit, when this
      // process can no longer write the cache directory: write it now, with every module loaded
      flushCompileCache()
      // the esbuild service built the first plugins as root: it ends in the same tick as the drop,
      // and the next build starts one as nobody (runtime/plugins/build.ts)
      const buildServiceExited = stopBuildService()
      privileges = dropPrivileges({
        setter: options.setCapabilities, setAmbient: options.setAmbientCapabilities, directories: directoriesWrittenAfterDrop(config),
      })
      ;(privileges.dropped ? options.log.info : options.log.warn)(privileges.message)
      await buildServiceExited
    }
    const started = { watcher, admin }
    return {
      manager, bus, watcher, admin, privileges, pluginDirs: dirs,
      async close() {
        await started.watcher.close()
        // records the kernel already holds become telemetry before the plugins go
        bus.drainStreams()
        await manager.drain(SHUTDOWN_DRAIN_MS)
        // The exporter's final collection runs after close, when every object and plugin is gone:
        // it reads the totals as of now (the drain's drops included), not the previous collection's.
        const final = readSelfMetrics()
        readSelfMetrics = () => final
        await started.admin?.close()
        await manager.close()
        await bus.close()
        programStats.close()
      },
    }
  } catch (error) {
    unregisterSelfMetrics?.()
    await watcher?.close()
    await admin?.close()
    await manager.close()
    await bus.close()
    programStats.close()
    throw error
  }
}

/**
 * Where the runtime writes once it runs as `nobody`: the embedded store, when a signal goes there
 * or pprof files are kept. The admin socket is bound before the drop and served through its open
 * descriptor; only removing it at shutdown needs its directory, which stays root's
 * (runtime/admin/socket-path.ts), so the next start clears it.
 */
function directoriesWrittenAfterDrop(config: PeriscopeConfig): RuntimeDirectory[] {
  const { targets, config: exporter } = resolveTelemetrySettings(parseTelemetryConfig(config.exporter), process.env)
  if (!Object.values(targets).some((target) => target.kind === 'embedded') && !exporter.profiles.writePprof) return []
  return [{
    path: path.resolve(exporter.dataDir), what: 'exporter.dataDir', mode: 0o755,
    isOurs: (entry) => entry.endsWith('.jsonl') || entry === 'profiles',
  }]
}

const usage = 'usage: periscope run [--plugins DIR]... [--config periscope.yaml]'

/** What `main` needs from the parts other modules provide; the defaults load them lazily. */
export interface RunDependencies {
  provider?: ObjectProvider
  sink?: SignalSink & { shutdown?(): Promise<void> }
  log?: Logger
  setCapabilities?: SetProcessCredentials
  /** The decoder table bundled into plugins; defaults to the generated bpf/lib/index.types.ts. */
  decodersPath?: string
  /** Resolves when the runtime should stop; defaults to the first SIGINT or SIGTERM. */
  stopSignal?: Promise<string>
}

async function defaultProvider(): Promise<ObjectProvider> {
  const { createObjectProvider } = await import('./library/index.ts')
  return createObjectProvider()
}

async function defaultCapabilityHelpers(): Promise<Pick<RuntimeOptions, 'setCapabilities' | 'setAmbientCapabilities'>> {
  const { native } = await import('./bpf/native.ts')
  return {
    setCapabilities: (keep, uid, gid) => native.setProcessCredentials(keep, uid, gid),
    setAmbientCapabilities: (mask) => native.setAmbientCapabilities(mask),
  }
}

async function defaultSink(config: PeriscopeConfig, log: Logger): Promise<SignalSink & { shutdown?(): Promise<void> }> {
  return createTelemetry({ config: config.exporter, log: (level, message) => log[level](`telemetry: ${message}`) })
}

function onStopSignal(): Promise<string> {
  return new Promise((resolve) => {
    const stop = (signal: string) => {
      resolve(signal)
      // A second signal means the clean shutdown is stuck: leave now.
      process.once(signal as NodeJS.Signals, () => process.exit(130))
    }
    process.once('SIGINT', () => stop('SIGINT'))
    process.once('SIGTERM', () => stop('SIGTERM'))
  })
}

export async function main(argv: string[], deps: RunDependencies = {}): Promise<number> {
  const log = deps.log ?? consoleLogger(process.env.PERISCOPE_LOG === 'debug' ? 'debug' : 'info')
  let args: { plugins?: string[]; config?: string; help?: boolean }
  try {
    args = parseArgs({
      args: argv,
      options: { plugins: { type: 'string', multiple: true }, config: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
    }).values
  } catch (error) {
    console.error(`periscope run: ${(error as Error).message}\n${usage}`)
    return 2
  }
  if (args.help === true) {
    console.log(usage)
    return 0
  }
  let config: PeriscopeConfig = {}
  try {
    if (args.config !== undefined) config = await loadConfig(args.config)
  } catch (error) {
    console.error(`periscope run: ${(error as Error).message}`)
    return error instanceof ConfigError ? 2 : 1
  }
  const configDir = args.config === undefined ? process.cwd() : path.dirname(path.resolve(args.config))
  const pluginDirs = [
    shippedPluginsDir,
    ...(args.plugins ?? []),
    ...(config.plugin_dirs ?? []).map((d) => path.resolve(configDir, d)),
  ]
  // Listen before starting: a signal during a slow start (a plugin's setup waiting out its
  // deadline) then shuts down cleanly once the start is over, instead of killing the process.
  const stopSignal = deps.stopSignal ?? onStopSignal()
  let sink: RunDependencies['sink']
  let runtime: Runtime
  try {
    const provider = deps.provider ?? await defaultProvider()
    // the addon's helper comes with the real object library; an injected provider (tests) leaves
    // the process's capabilities alone unless a helper is injected too
    const helpers = deps.setCapabilities !== undefined ? { setCapabilities: deps.setCapabilities } : deps.provider === undefined ? await defaultCapabilityHelpers() : {}
    sink = deps.sink ?? await defaultSink(config, log)
    runtime = await startRuntime({ provider, sink, log, pluginDirs, config, decodersPath: deps.decodersPath, ...helpers })
  } catch (error) {
    console.error(`periscope run: ${(error as Error).message}`)
    return 1
  }
  const plugins = runtime.manager.list()
  log.info(`running ${plugins.filter((p) => p.status === 'running').length} of ${plugins.length} plugins from ${pluginDirs.join(', ')}`)
  // with the real object library, as for the capability helpers: the addon is there then
  const trimming = deps.provider === undefined ? startHeapTrimming((await import('./bpf/native.ts')).native) : undefined
  const signal = await stopSignal
  trimming?.stop()
  log.info(`${signal}: shutting down`)
  let code = 0
  try {
    await runtime.close()
  } catch (error) {
    log.error(`shutdown: ${(error as Error).message}`)
    code = 1
  }
  try {
    await sink.shutdown?.()
  } catch (error) {
    log.error(`flushing the exporter: ${(error as Error).message}`)
    code = 1
  }
  return code
}
