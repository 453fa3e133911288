/**
 * All loaded plugins, by file and by name. The watcher (`watch.ts`) and the admin socket drive it;
 * each plugin's own life (build, sandbox, reload, restart) is in `host.ts`.
 */
import { EventEmitter } from 'node:events'
import path from 'node:path'
import type { Bus } from '../bus.ts'
import type { Backoff, HostEvent, PluginLimits, PluginStats, PluginStatus } from './host.ts'
import { PluginHost } from './host.ts'
import type { Logger } from './log.ts'
import { defaultLimits } from './sandbox.ts'
import type { SignalSink } from './sink.ts'

export const defaultPluginLimits: PluginLimits = {
  ...defaultLimits,
  maxEventsPerSecond: 0,
  maxCpuPercent: 0,
  // A plugin that cannot keep up drops either way; a deeper queue only holds more copies of records
  // (64 MiB held the http plugin 71 MB over DESIGN.md's budget under bench/http-overhead's load).
  maxQueuedBytes: 8 * 1024 * 1024,
}

export const defaultBackoff: Backoff = { initialMs: 250, maxMs: 30_000, resetAfterMs: 60_000 }

export interface PluginSettings {
  enabled?: boolean
  config?: Record<string, unknown>
  limits?: Partial<PluginLimits>
}

export interface ManagerOptions {
  bus: Bus
  sink: SignalSink
  log: Logger
  /** The generated decoder table; defaults to bpf/lib/index.types.ts. */
  decodersPath?: string
  backoff?: Partial<Backoff>
  /** Limits for every plugin, before per-plugin overrides. */
  limits?: Partial<PluginLimits>
  /** Per-plugin settings from periscope.yaml, by plugin name. */
  plugins?: Record<string, PluginSettings>
}

export interface PluginInfo {
  name: string | undefined
  file: string
  status: PluginStatus
  objects: string[]
  topics: string[]
  stats: PluginStats
  lastError: PluginHost['lastError']
}

/** Emits every `HostEvent` under its `type` ('loaded', 'failed', 'rejected', 'unloaded'). */
export class PluginManager extends EventEmitter {
  private readonly hosts = new Map<string, PluginHost>()
  private readonly names = new Map<string, PluginHost>()
  private readonly backoff: Backoff
  private readonly limits: PluginLimits

  private readonly options: ManagerOptions

  constructor(options: ManagerOptions) {
    super()
    this.options = options
    this.backoff = { ...defaultBackoff, ...options.backoff }
    this.limits = { ...defaultPluginLimits, ...options.limits }
  }

  /** Loads the plugin in `file` (absolute or relative to the working directory). */
  async add(file: string): Promise<PluginHost> {
    const absolute = path.resolve(file)
    let host = this.hosts.get(absolute)
    if (host !== undefined) {
      await host.load('reload')
      return host
    }
    host = new PluginHost(absolute, {
      bus: this.options.bus,
      sink: this.options.sink,
      log: this.options.log,
      decodersPath: this.options.decodersPath,
      backoff: this.backoff,
      limitsFor: (name) => ({ ...this.limits, ...(name === undefined ? {} : this.options.plugins?.[name]?.limits) }),
      enabled: (name) => this.options.plugins?.[name]?.enabled !== false,
      configFor: (name) => this.options.plugins?.[name]?.config,
      claimName: (name, claimant) => {
        const owner = this.names.get(name)
        if (owner !== undefined && owner !== claimant) return false
        this.names.set(name, claimant)
        return true
      },
      releaseName: (name, claimant) => {
        if (this.names.get(name) === claimant) this.names.delete(name)
      },
      notify: (event: HostEvent) => { this.emit(event.type, event) },
    })
    this.hosts.set(absolute, host)
    await host.load('load')
    return host
  }

  /**
   * A file changed: reload the plugin it is, and every plugin whose bundle includes it (a helper
   * module, or the generated decoders).
   */
  async change(file: string): Promise<void> {
    const absolute = path.resolve(file)
    const affected = [...this.hosts.values()].filter((h) => h.file === absolute || h.inputs.includes(absolute))
    await Promise.all(affected.map((h) => h.load(h.status === 'failed' ? 'load' : 'reload')))
  }

  /** Unloads the plugin in `file`; objects nobody else uses are closed. */
  async remove(file: string): Promise<void> {
    const absolute = path.resolve(file)
    const host = this.hosts.get(absolute)
    if (host === undefined) return
    this.hosts.delete(absolute)
    await host.stop()
    this.options.log.info(`plugin ${host.pluginName ?? absolute}: unloaded (${absolute} was removed)`)
  }

  /** Rebuilds and swaps a plugin by name, as if its file had changed. */
  async reload(name: string): Promise<PluginInfo> {
    const host = this.byName(name)
    await host.load(host.status === 'failed' ? 'load' : 'reload')
    return this.info(host)
  }

  byName(name: string): PluginHost {
    const host = this.names.get(name) ?? [...this.hosts.values()].find((h) => h.pluginName === name)
    if (host === undefined) {
      throw new Error(`no plugin named '${name}'; loaded plugins: ${[...this.names.keys()].sort().join(', ') || 'none'}`)
    }
    return host
  }

  list(): PluginInfo[] {
    return [...this.hosts.values()].map((h) => this.info(h))
  }

  private info(host: PluginHost): PluginInfo {
    return {
      name: host.pluginName,
      file: host.file,
      status: host.status,
      objects: host.objects,
      topics: host.topics,
      stats: host.snapshot(),
      lastError: host.lastError,
    }
  }

  /** Resolves when every plugin has handled everything queued so far. */
  async whenIdle(): Promise<void> {
    await Promise.all([...this.hosts.values()].map((h) => h.whenIdle()))
  }

  /**
   * The first step of a clean shutdown: every plugin takes no more events and handles what is
   * queued, until the deadline; what is left is dropped and counted.
   */
  async drain(deadlineMs: number): Promise<void> {
    await Promise.allSettled([...this.hosts.values()].map((h) => h.drain(deadlineMs)))
  }

  async close(): Promise<void> {
    const hosts = [...this.hosts.values()]
    this.hosts.clear()
    await Promise.allSettled(hosts.map((h) => h.stop()))
  }
}
