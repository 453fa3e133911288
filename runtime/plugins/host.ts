/**
 * The host side of one plugin file: its build, its current version (a sandbox), its queue of
 * batches and timer runs, its subscriptions and objects, hot reload and restart after failure.
 *
 * Subscriptions belong to the host, not to a version, so events keep queueing while a version is
 * being swapped or restarted. A swap: build and evaluate the new version while the old one keeps
 * handling events; then pause the queue, copy `ctx.state` over, run the new `setup()`, subscribe
 * its topics, make it current and resume. Whatever arrived during the pause goes to the new
 * version; if its setup throws, the old version resumes with nothing lost.
 */
import type { RecordBatch } from '../bpf/batch.ts'
import type { Bus } from '../bus.ts'
import { splitTopic } from '../bus.ts'
import { PluginBuildError, PluginBuilder } from './build.ts'
import type { Logger } from './log.ts'
import {
  type IsolateOutput,
  PluginFailure,
  PluginSandbox,
  PreparedBatch,
  type SandboxLimits,
} from './sandbox.ts'
import type { ScopeSink, SignalSink } from './sink.ts'

export interface PluginLimits extends SandboxLimits {
  /** Records per second the plugin accepts; the rest are dropped and counted. 0 = no limit. */
  maxEventsPerSecond: number
  /** Share of one CPU the isolate may use per second before batches are dropped and counted. 0 = no limit. */
  maxCpuPercent: number
  /** Bytes of batches waiting for the plugin (while it is busy, swapping or restarting). */
  maxQueuedBytes: number
}

export interface Backoff {
  initialMs: number
  maxMs: number
  /** A version that ran this long without failing resets the backoff. */
  resetAfterMs: number
}

export interface HostEnvironment {
  bus: Bus
  sink: SignalSink
  log: Logger
  decodersPath?: string
  backoff: Backoff
  /** Limits for a plugin; `undefined` before its name is known (the first build of a file). */
  limitsFor(pluginName: string | undefined): PluginLimits
  /** False when periscope.yaml sets `plugins.<name>.enabled: false`. */
  enabled(pluginName: string): boolean
  /** Overrides from periscope.yaml for the plugin's config defaults. */
  configFor(pluginName: string): Record<string, unknown> | undefined
  /** Reserves a plugin name for this file; false when another file already uses it. */
  claimName(pluginName: string, host: PluginHost): boolean
  releaseName(pluginName: string, host: PluginHost): void
  /** Told when a version starts handling events, fails or is swapped (for tests and the admin socket). */
  notify(event: HostEvent): void
}

export type HostEvent =
  | { type: 'loaded'; plugin: string; file: string; version: number }
  | { type: 'failed'; plugin: string; file: string; failure: PluginFailure; restartInMs: number | undefined }
  | { type: 'rejected'; plugin: string | undefined; file: string; error: Error }
  | { type: 'unloaded'; plugin: string; file: string }

export type PluginStatus = 'starting' | 'running' | 'backoff' | 'failed' | 'disabled' | 'stopped'

export interface PluginStats {
  batchesIn: number
  eventsIn: number
  handled: number
  dropped: number
  droppedBy: { queueFull: number; rateLimit: number; cpuLimit: number; failure: number }
  cpuTimeMs: number
  heapBytes: number
  queuedBatches: number
  restarts: number
  reloads: number
  emitted: { spans: number; metrics: number; logs: number; profiles: number }
}

interface Version {
  id: number
  sandbox: PluginSandbox
  /** The name this version holds its objects under in the bus. */
  user: string
  objects: string[]
  topics: Set<string>
  intervals: NodeJS.Timeout[]
  startedAt: number
  /** Stopped after a failure; kept until a new version replaces it so its objects stay open. */
  dead: boolean
}

type QueueItem =
  | { kind: 'batch'; topic: string; batch: PreparedBatch }
  | { kind: 'timer'; version: number; index: number }

let nextVersionId = 1

export class PluginHost {
  private readonly builder: PluginBuilder
  private current: Version | undefined
  private name: string | undefined
  private scope: ScopeSink | undefined
  private readonly queue: QueueItem[] = []
  private queuedBytes = 0
  private readonly subscriptions = new Map<string, () => void>()
  private pumping = false
  private paused = false
  private idle: (() => void)[] = []
  private loading: Promise<void> = Promise.resolve()
  private restartTimer: NodeJS.Timeout | undefined
  private consecutiveFailures = 0
  private retiredCpuNs = 0n
  private rate = { windowStart: 0, events: 0, cpuStartNs: 0n }
  status: PluginStatus = 'starting'
  lastError: { kind: string; message: string; stack: string; at: string } | undefined
  /** Files (absolute) the current bundle was built from. */
  inputs: string[] = []
  readonly stats: PluginStats = {
    batchesIn: 0, eventsIn: 0, handled: 0, dropped: 0,
    droppedBy: { queueFull: 0, rateLimit: 0, cpuLimit: 0, failure: 0 },
    cpuTimeMs: 0, heapBytes: 0, queuedBatches: 0, restarts: 0, reloads: 0,
    emitted: { spans: 0, metrics: 0, logs: 0, profiles: 0 },
  }

  readonly file: string
  private readonly env: HostEnvironment

  constructor(file: string, env: HostEnvironment) {
    this.file = file
    this.env = env
    this.builder = new PluginBuilder(file, env.decodersPath)
  }

  get pluginName(): string | undefined {
    return this.name
  }

  get topics(): string[] {
    return [...(this.current?.topics ?? [])]
  }

  get objects(): string[] {
    return [...(this.current?.objects ?? [])]
  }

  /**
   * Builds and starts (or swaps in) a new version. Loads run one at a time. Resolves once the new
   * version handles events, or once the failure has been reported; it never rejects.
   */
  load(reason: 'load' | 'reload' | 'restart' = 'load'): Promise<void> {
    this.loading = this.loading.then(() => this.loadNow(reason))
    return this.loading
  }

  private async loadNow(reason: 'load' | 'reload' | 'restart'): Promise<void> {
    if (this.status === 'stopped') return
    const previous = this.current
    const keep = previous !== undefined && !previous.dead
    let sandbox: PluginSandbox | undefined
    let acquired: string[] = []
    const user = `${this.file}#${nextVersionId}`
    try {
      const bundle = await this.builder.build()
      this.inputs = bundle.inputs
      const callbacks = {
        map: (topic: string, op: string, key?: Uint8Array, value?: Uint8Array) => this.mapOperation(topic, op, key, value),
        asyncFailure: (failure: PluginFailure) => {
          const current = this.current
          if (current !== undefined && current.sandbox === sandbox) this.fail(current, failure)
        },
      }
      const guessed = this.env.limitsFor(this.name)
      sandbox = await PluginSandbox.create(bundle, guessed, callbacks)
      const name = sandbox.name
      const limits = this.env.limitsFor(name)
      if (limits.memoryMb !== guessed.memoryMb || limits.callBudgetMs !== guessed.callBudgetMs || limits.maxOutputPerCall !== guessed.maxOutputPerCall) {
        // The isolate's limits are fixed at creation and the name (which selects them) is only
        // known after evaluating the bundle, so a first load may need a second isolate.
        sandbox.dispose()
        sandbox = await PluginSandbox.create(bundle, limits, callbacks)
      }
      if (!this.env.enabled(name)) {
        sandbox.dispose()
        this.status = 'disabled'
        this.env.log.info(`plugin ${name} (${this.file}) is disabled in the config (plugins.${name}.enabled: false); not loading it`)
        return
      }
      if (name !== this.name) {
        if (!this.env.claimName(name, this)) {
          throw new Error(`plugin name '${name}' is already used by another file; give this plugin another name`)
        }
        if (this.name !== undefined) this.env.releaseName(this.name, this)
        this.name = name
        this.scope = this.env.sink.scope(name)
      }
      for (const object of sandbox.declaration.objects) {
        await this.env.bus.acquire(object, user)
        acquired.push(object)
      }
      await this.quiesce()
      let state: Record<string, unknown> = {}
      if (keep) {
        try {
          state = await previous!.sandbox.state()
        } catch (error) {
          this.env.log.warn(`plugin ${name}: ctx.state could not be carried over (${(error as Error).message}); ` +
            'the new version starts with an empty ctx.state. Keep only plain data (no functions or class instances) in ctx.state')
        }
      }
      const config = { ...sandbox.declaration.config, ...this.env.configFor(name) }
      const result = await sandbox.setup(config, state)
      for (const topic of result.topics) {
        if (!this.subscriptions.has(topic)) {
          this.subscriptions.set(topic, this.env.bus.subscribe(topic, (batch) => this.enqueue(topic, batch)))
        }
      }
      const version: Version = {
        id: nextVersionId++, sandbox, user, objects: acquired, topics: new Set(result.topics),
        intervals: [], startedAt: Date.now(), dead: false,
      }
      this.swapTo(version, result.timers)
      this.forward(result.output)
      if (reason === 'reload') this.stats.reloads++
      if (reason === 'restart') this.stats.restarts++
      this.status = 'running'
      this.env.log.info(`plugin ${name}: ${reason === 'load' ? 'loaded' : reason === 'reload' ? 'reloaded' : 'restarted'} from ${this.file}`)
      this.env.notify({ type: 'loaded', plugin: name, file: this.file, version: version.id })
    } catch (error) {
      sandbox?.dispose()
      for (const object of acquired) await this.env.bus.release(object, user).catch((e: Error) => this.env.log.error(e.message))
      acquired = []
      this.rejected(error as Error, reason, keep)
    } finally {
      this.paused = false
      this.kick()
    }
  }

  /** A load that did not produce a running version. */
  private rejected(error: Error, reason: string, keep: boolean): void {
    const detail = error instanceof PluginFailure && error.pluginStack !== '' ? `\n${error.pluginStack}` : ''
    const what = error instanceof PluginBuildError ? error.message : `${reason} failed: ${error.message}${detail}`
    this.env.notify({ type: 'rejected', plugin: this.name, file: this.file, error })
    this.lastError = { kind: error instanceof PluginFailure ? error.kind : 'build', message: error.message, stack: detail.trim(), at: new Date().toISOString() }
    if (keep) {
      this.env.log.error(`${what}\n  the previous version of ${this.name} keeps running`)
      return
    }
    if (reason === 'restart' || this.current?.dead === true) {
      this.env.log.error(what)
      this.scheduleRestart()
      return
    }
    this.status = 'failed'
    this.env.log.error(`${what}\n  ${this.file} is not running; it loads again when the file changes`)
  }

  private swapTo(version: Version, timers: number[]): void {
    const old = this.current
    this.current = version
    this.rate.cpuStartNs = 0n
    version.intervals = timers.map((ms, index) => setInterval(() => this.enqueueTimer(version.id, index), ms))
    for (const [topic, unsubscribe] of this.subscriptions) {
      if (!version.topics.has(topic)) {
        unsubscribe()
        this.subscriptions.delete(topic)
      }
    }
    if (old !== undefined) this.retire(old)
  }

  /** Stops a version for good and lets go of its objects (after the next version holds them). */
  private retire(version: Version): void {
    for (const interval of version.intervals) clearInterval(interval)
    this.retiredCpuNs += version.sandbox.cpuTimeNs()
    version.sandbox.dispose()
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const item = this.queue[i]!
      if (item.kind === 'timer' && item.version === version.id) this.queue.splice(i, 1)
    }
    for (const object of version.objects) {
      this.env.bus.release(object, version.user).catch((e: Error) => this.env.log.error(`release object ${object}: ${e.message}`))
    }
  }

  private enqueue(topic: string, batch: RecordBatch): void {
    this.stats.batchesIn++
    this.stats.eventsIn += batch.count
    if (this.status === 'stopped') return
    const limits = this.env.limitsFor(this.name)
    const now = Date.now()
    if (now - this.rate.windowStart >= 1000) {
      this.rate.windowStart = now
      this.rate.events = 0
      this.rate.cpuStartNs = this.cpuNs()
    }
    if (limits.maxEventsPerSecond > 0 && this.rate.events + batch.count > limits.maxEventsPerSecond) {
      this.drop(batch.count, 'rateLimit')
      return
    }
    if (limits.maxCpuPercent > 0 && Number(this.cpuNs() - this.rate.cpuStartNs) > limits.maxCpuPercent * 10_000_000) {
      this.drop(batch.count, 'cpuLimit')
      return
    }
    if (this.queuedBytes + batch.byteLength > limits.maxQueuedBytes) {
      this.drop(batch.count, 'queueFull')
      return
    }
    this.rate.events += batch.count
    this.queuedBytes += batch.byteLength
    this.queue.push({ kind: 'batch', topic, batch: new PreparedBatch(batch) })
    this.kick()
  }

  private enqueueTimer(version: number, index: number): void {
    // A slow timer must not pile up runs behind itself.
    if (this.queue.some((i) => i.kind === 'timer' && i.version === version && i.index === index)) return
    this.queue.push({ kind: 'timer', version, index })
    this.kick()
  }

  private drop(records: number, reason: keyof PluginStats['droppedBy']): void {
    this.stats.dropped += records
    this.stats.droppedBy[reason] += records
  }

  private kick(): void {
    if (!this.pumping && !this.paused && this.current !== undefined && !this.current.dead && this.queue.length > 0) {
      void this.pump()
    } else if (!this.pumping && (this.queue.length === 0 || this.current === undefined || this.current.dead)) {
      this.settle()
    }
  }

  private settle(): void {
    const waiters = this.idle
    this.idle = []
    for (const w of waiters) w()
  }

  /** The queue loop: one batch or timer run at a time, each one call into the isolate. */
  private async pump(): Promise<void> {
    this.pumping = true
    try {
      while (this.queue.length > 0 && !this.paused) {
        const version = this.current
        if (version === undefined || version.dead) break
        const item = this.queue.shift()!
        try {
          if (item.kind === 'batch') {
            this.queuedBytes -= item.batch.byteLength
            const output = await version.sandbox.deliver(item.topic, item.batch)
            if (version.topics.has(item.topic)) this.stats.handled += item.batch.count
            this.forward(output)
          } else if (item.version === version.id) {
            this.forward(await version.sandbox.timer(item.index))
          }
        } catch (error) {
          if (item.kind === 'batch') this.drop(item.batch.count, 'failure')
          this.fail(version, error instanceof PluginFailure ? error
            : new PluginFailure(this.name ?? this.file, 'throw', (error as Error).message, ''))
        }
      }
    } finally {
      this.pumping = false
      if (this.paused || this.queue.length === 0 || this.current === undefined || this.current.dead) this.settle()
      else this.kick()
    }
  }

  /** Stops the queue after the call in flight; the caller must clear `paused` (loadNow does). */
  private quiesce(): Promise<void> {
    this.paused = true
    if (!this.pumping) return Promise.resolve()
    return new Promise((resolve) => this.idle.push(resolve))
  }

  /** Resolves when nothing is queued or in flight (or the plugin cannot run right now). */
  whenIdle(): Promise<void> {
    if (!this.pumping && (this.queue.length === 0 || this.current === undefined || this.current.dead || this.paused)) {
      return Promise.resolve()
    }
    return new Promise((resolve) => this.idle.push(resolve))
  }

  private forward(output: IsolateOutput | undefined): void {
    if (output === undefined || this.scope === undefined) return
    const scope = this.scope
    const send = (what: string, fn: () => unknown) => {
      try {
        const r = fn() as Promise<unknown> | undefined
        if (r !== undefined && typeof r.catch === 'function') r.catch((e: Error) => this.env.log.error(`plugin ${this.name}: export ${what}: ${e.message}`))
      } catch (e) {
        this.env.log.error(`plugin ${this.name}: export ${what}: ${(e as Error).message}`)
      }
    }
    const e = this.stats.emitted
    if (output.spans.length > 0) { e.spans += output.spans.length; send('spans', () => scope.spans(output.spans as never)) }
    if (output.metrics.length > 0) { e.metrics += output.metrics.length; send('metrics', () => scope.metrics(output.metrics as never)) }
    if (output.logs.length > 0) { e.logs += output.logs.length; send('logs', () => scope.logs(output.logs as never)) }
    if (output.profiles.length > 0) { e.profiles += output.profiles.length; send('profiles', () => scope.profiles(output.profiles as never)) }
    for (const [level, message, attributes] of output.messages) {
      const line = `plugin ${this.name}: ${message}${attributes === null ? '' : ` ${JSON.stringify(attributes)}`}`
      const logger = this.env.log[level as 'info'] ?? this.env.log.info
      logger(line)
    }
  }

  private fail(version: Version, failure: PluginFailure): void {
    if (version !== this.current || version.dead) return
    version.dead = true
    for (const interval of version.intervals) clearInterval(interval)
    this.retiredCpuNs += version.sandbox.cpuTimeNs()
    version.sandbox.dispose()
    if (Date.now() - version.startedAt >= this.env.backoff.resetAfterMs) this.consecutiveFailures = 0
    this.lastError = { kind: failure.kind, message: failure.message, stack: failure.pluginStack, at: new Date().toISOString() }
    const delay = this.scheduleRestart()
    this.env.log.error(`${failure.message}${failure.pluginStack === '' ? '' : `\n${failure.pluginStack}`}\n  restarting in ${delay} ms`)
    this.env.notify({ type: 'failed', plugin: this.name ?? this.file, file: this.file, failure, restartInMs: delay })
  }

  private scheduleRestart(): number {
    this.consecutiveFailures++
    const { initialMs, maxMs } = this.env.backoff
    const delay = Math.min(maxMs, initialMs * 2 ** (this.consecutiveFailures - 1))
    this.status = 'backoff'
    clearTimeout(this.restartTimer)
    this.restartTimer = setTimeout(() => { void this.load('restart') }, delay)
    return delay
  }

  private mapOperation(topic: string, op: string, key?: Uint8Array, value?: Uint8Array): unknown {
    const { object } = splitTopic(topic)
    if (this.current !== undefined && !this.current.dead && !this.current.objects.includes(object)) {
      throw new Error(`map '${topic}': object '${object}' is not in this plugin's objects`)
    }
    const map = this.env.bus.map(topic)
    switch (op) {
      case 'info': return { keySize: map.keySize, valueSize: map.valueSize }
      case 'lookup': return map.lookup(bytes(key, map.keySize, topic, 'key'))
      case 'update': map.update(bytes(key, map.keySize, topic, 'key'), bytes(value, map.valueSize, topic, 'value')); return undefined
      case 'delete': return map.delete(bytes(key, map.keySize, topic, 'key'))
      case 'entries': return Array.from(map.entries())
      default: throw new Error(`map '${topic}': unknown operation '${op}'`)
    }
  }

  private cpuNs(): bigint {
    const live = this.current !== undefined && !this.current.dead ? this.current.sandbox.cpuTimeNs() : 0n
    return this.retiredCpuNs + live
  }

  /** Stats with the live CPU and heap figures filled in. */
  snapshot(): PluginStats {
    this.stats.cpuTimeMs = Number(this.cpuNs()) / 1e6
    this.stats.heapBytes = this.current !== undefined && !this.current.dead ? this.current.sandbox.heapBytes() : 0
    this.stats.queuedBatches = this.queue.length
    return structuredClone(this.stats)
  }

  /** Unloads: no more events, timers stopped, objects released, the isolate discarded. */
  async stop(): Promise<void> {
    this.status = 'stopped'
    clearTimeout(this.restartTimer)
    await this.loading
    await this.quiesce()
    for (const unsubscribe of this.subscriptions.values()) unsubscribe()
    this.subscriptions.clear()
    for (const item of this.queue) if (item.kind === 'batch') item.batch.release()
    this.queue.length = 0
    const version = this.current
    this.current = undefined
    if (version !== undefined) {
      for (const interval of version.intervals) clearInterval(interval)
      version.sandbox.dispose()
      await Promise.allSettled(version.objects.map((o) => this.env.bus.release(o, version.user)))
    }
    if (this.name !== undefined) {
      this.env.releaseName(this.name, this)
      this.env.notify({ type: 'unloaded', plugin: this.name, file: this.file })
    }
    await this.builder.dispose()
  }
}

function bytes(value: Uint8Array | undefined, size: number, topic: string, what: string): Uint8Array {
  if (!(value instanceof Uint8Array)) throw new TypeError(`map '${topic}': the ${what} must be a Uint8Array of ${size} bytes`)
  if (value.byteLength !== size) {
    throw new RangeError(`map '${topic}': the ${what} is ${value.byteLength} bytes, the map's ${what} is ${size}; encode it with the object's generated codec`)
  }
  return value
}
