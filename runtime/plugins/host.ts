/**
 * The host side of one plugin file: its build, its current version (a sandbox), its queue of
 * batches and timer runs, its subscriptions and objects, hot reload and restart after failure.
 *
 * Subscriptions belong to the host, not to a version, so events keep queueing while a version is
 * being swapped or restarted. A swap: build and evaluate the new version while the old one keeps
 * handling events; then pause the queue, copy `ctx.state` over, run the new `setup()`, subscribe
 * its topics, make it current and resume. Whatever arrived during the pause goes to the new
 * version; if its setup throws, the old version resumes with nothing lost.
 *
 * Permissions are decided here, never in the isolate: plugin code can patch every builtin the
 * isolate's bootstrap uses, so the topics a version subscribes to and the maps it touches are
 * checked against the objects this host acquired for that version (its `Grant`).
 */
import type { RecordBatch } from '../bpf/batch.ts'
import type { Bus, ObjectMap, StreamPosition } from '../bus.ts'
import { splitTopic } from '../bus.ts'
import { PluginApiError } from '../holds.ts'
import { encodeUprobeConfig, GENERIC_UPROBE_MAX_PROBES, GENERIC_UPROBE_PROGRAM, GENERIC_URETPROBE_PROGRAM } from '../kernel/generic-uprobes.ts'
import { checkTracepointRequest, encodeTracepointConfig, GENERIC_MAX_PROBES, GENERIC_TRACEPOINT_PROGRAM, readFormat, type TracepointRequest } from '../kernel/tracepoints.ts'
import { profiling, symbolizeForPlugin } from '../profiling/stack-delivery.ts'
import type { TracepointFormat } from '../protocols/tracepoint.ts'
import { PluginBuildError, PluginBuilder } from './build.ts'
import type { Logger } from './log.ts'
import {
  type IsolateOutput,
  PluginFailure,
  PluginSandbox,
  StagedBatch,
  type SandboxHost,
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
  /** `unsubscribed`: queued for a topic the version now running no longer listens to. */
  droppedBy: { queueFull: number; rateLimit: number; cpuLimit: number; failure: number; unsubscribed: number; shutdown: number }
  cpuTimeMs: number
  heapBytes: number
  queuedBatches: number
  restarts: number
  reloads: number
  emitted: { spans: number; metrics: number; logs: number; profiles: number }
}

/**
 * What one version may touch: the objects acquired for it, until it is stopped, and what it holds
 * in them (map claims and uprobe links, released when the version ends).
 */
interface Grant {
  objects: Set<string>
  revoked: boolean
  /** The holder name of its claims and links: the version's bus user. */
  user: string
  /** The plugin's name, once its bundle told it. */
  plugin: string
  /** Its ctx.attach holds by the number handed to the isolate; each releases one hold. */
  links: Map<number, () => boolean>
  nextLink: number
  /**
   * It listens to stack samples (ctx.onStack), so it may name stacks with ctx.symbolize: naming
   * any pid's addresses would show another process's mappings, and kernel names the kernel's layout.
   */
  readsStacks: boolean
}

interface Version {
  id: number
  sandbox: PluginSandbox
  grant: Grant
  /** The name this version holds its objects under in the bus. */
  user: string
  topics: Set<string>
  /** The topics it listens to with ctx.onStack: their batches are unwound before they queue. */
  stackTopics: Set<string>
  intervals: NodeJS.Timeout[]
  startedAt: number
  /** Stopped after a failure; kept until a new version replaces it so its objects stay open. */
  dead: boolean
}

type QueueItem =
  | { kind: 'batch'; topic: string; batch: StagedBatch }
  | { kind: 'timer'; version: number; index: number }

let nextVersionId = 1

type LoadReason = 'load' | 'reload' | 'restart'

/** A batch smaller than this waits up to `gatherMs` for more records before it is handed over. */
const gatherBytes = 64 * 1024
const gatherMs = 2
/**
 * Stack samples are counted for a whole collection interval, so they wait longer: a call into the
 * isolate per sample cost more than unwinding it (about 0.2 ms of the main thread each, measured
 * at 99 Hz). The stacks ring itself is read every 500 ms (the catalogue's pacedStreams).
 */
const stackGatherMs = 500

/** Ends a load that stop() overtook; never reported. */
class StoppedError extends Error {
  constructor() {
    super('the plugin was stopped while loading')
  }
}

export class PluginHost {
  private readonly builder: PluginBuilder
  private current: Version | undefined
  private name: string | undefined
  private scope: ScopeSink | undefined
  private readonly queue: QueueItem[] = []
  private queuedBytes = 0
  private readonly subscriptions = new Map<string, () => void>()
  /** The subscribed topics whose batches are unwound stack samples (ctx.onStack). */
  private readonly stackSubscriptions = new Set<string>()
  /** Records of a topic lost since the last batch handed on (kernel and host drops): told to the next. */
  private readonly pendingLoss = new Map<string, number>()
  /** Where each stream stood when this plugin stopped listening, to count what it missed if it listens again. */
  private readonly leftAt = new Map<string, StreamPosition>()
  private pumping = false
  private paused = false
  private idle: (() => void)[] = []
  private loading: Promise<void> = Promise.resolve()
  private restartTimer: NodeJS.Timeout | undefined
  private gatherTimer: NodeJS.Timeout | undefined
  /** Set by stop(), for good: nothing may load or restart afterwards. */
  private stopped = false
  /** Set by drain() at its deadline: a call cut short then is a shutdown drop, not a failure. */
  private draining = false
  /** What the call into the isolate under way runs, if one is. */
  private inFlight: 'batch' | 'timer' | undefined
  /** The sandbox a load is setting up, so stop() can end it mid-setup. */
  private starting: PluginSandbox | undefined
  private consecutiveFailures = 0
  private retiredCpuNs = 0n
  private rate = { windowStart: 0, events: 0, cpuStartNs: 0n }
  status: PluginStatus = 'starting'
  lastError: { kind: string; message: string; stack: string; at: string } | undefined
  /** Files (absolute) the current bundle was built from. */
  inputs: string[] = []
  readonly stats: PluginStats = {
    batchesIn: 0, eventsIn: 0, handled: 0, dropped: 0,
    droppedBy: { queueFull: 0, rateLimit: 0, cpuLimit: 0, failure: 0, unsubscribed: 0, shutdown: 0 },
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
    return [...(this.current?.grant.objects ?? [])]
  }

  /**
   * Builds and starts (or swaps in) a new version. Loads run one at a time. Resolves once the new
   * version handles events, or once the failure has been reported; it never rejects.
   */
  load(reason: LoadReason = 'load'): Promise<void> {
    this.loading = this.loading.then(() => this.loadNow(reason))
    return this.loading
  }

  private async loadNow(reason: LoadReason): Promise<void> {
    if (this.stopped) return
    const previous = this.current
    const keep = previous !== undefined && !previous.dead
    const user = `${this.file}#${nextVersionId}`
    const grant: Grant = { objects: new Set(), revoked: false, user, plugin: '', links: new Map(), nextLink: 1, readsStacks: false }
    let sandbox: PluginSandbox | undefined
    try {
      sandbox = await this.startSandbox(grant)
      if (sandbox === undefined) return
      const name = sandbox.name
      grant.plugin = name
      this.claimName(name)
      for (const object of sandbox.declaration.objects) {
        await this.env.bus.acquire(object, user)
        grant.objects.add(object)
      }
      this.throwIfStopped()
      await this.quiesce()
      const state = keep ? await this.carryState(previous!, name) : {}
      const config = { ...sandbox.declaration.config, ...this.env.configFor(name) }
      const result = await sandbox.setup(config, state)
      this.throwIfStopped()
      const version: Version = {
        id: nextVersionId++, sandbox, grant, user, topics: new Set(result.topics), stackTopics: new Set(result.stackTopics),
        intervals: [], startedAt: Date.now(), dead: false,
      }
      this.subscribe(version)
      grant.readsStacks = version.stackTopics.size > 0
      this.swapTo(version, result.timers)
      sandbox.heapBytes() // starts the first measurement, which stats then read without waiting
      this.forward(result.output)
      if (reason === 'reload') this.stats.reloads++
      if (reason === 'restart') this.stats.restarts++
      this.status = 'running'
      this.env.log.info(`plugin ${name}: ${reason === 'load' ? 'loaded' : reason === 'reload' ? 'reloaded' : 'restarted'} from ${this.file}`)
      this.env.notify({ type: 'loaded', plugin: name, file: this.file, version: version.id })
    } catch (error) {
      grant.revoked = true
      // startSandbox may have created one and thrown before returning it
      ;(sandbox ?? this.starting)?.dispose()
      this.releaseHolds(grant)
      for (const object of grant.objects) await this.env.bus.release(object, user).catch((e: Error) => this.env.log.error(e.message))
      this.rejected(error as Error, reason, keep)
    } finally {
      this.starting = undefined
      this.paused = false
      this.kick()
    }
  }

  /**
   * Builds the bundle and evaluates it in a new sandbox whose map calls are checked against
   * `grant`. Returns undefined when the config disables the plugin.
   */
  private async startSandbox(grant: Grant): Promise<PluginSandbox | undefined> {
    const bundle = await this.builder.build()
    this.inputs = bundle.inputs
    let sandbox: PluginSandbox | undefined
    const callbacks: SandboxHost = {
      map: (topic, op, key, value) => this.mapOperation(grant, topic, op, key, value),
      attach: (request) => this.attach(grant, request),
      detach: (link) => this.detach(grant, link),
      tracepoint: (request) => this.attachTracepoint(grant, request),
      uprobe: (request) => this.attachGenericUprobe(grant, request),
      iterate: (program, options) => this.iterate(grant, program, options),
      symbolize: (stacks) => {
        if (grant.revoked) throw new Error('ctx.symbolize: this version of the plugin was stopped')
        if (!grant.readsStacks) {
          throw new PluginApiError('EACCES', 'ctx.symbolize: only a plugin that listens to stack samples may name stacks; call ctx.onStack during setup, and ctx.symbolize after it (from ctx.every or a handler)')
        }
        return symbolizeForPlugin(stacks)
      },
      syscallNames: async () => (await kernelTables()).syscallNames(),
      syscalls: async () => Array.from(await (await kernelTables()).syscallTable(), (syscall) => syscall ?? null),
      errnoNames: async () => (await kernelTables()).errnoNames(),
      asyncFailure: (failure) => {
        const current = this.current
        if (current !== undefined && current.sandbox === sandbox) this.fail(current, failure)
      },
    }
    const guessed = this.env.limitsFor(this.name)
    sandbox = this.starting = await PluginSandbox.create(bundle, guessed, callbacks)
    const limits = this.env.limitsFor(sandbox.name)
    if (limits.memoryMb !== guessed.memoryMb || limits.callBudgetMs !== guessed.callBudgetMs ||
      limits.callDeadlineMs !== guessed.callDeadlineMs || limits.maxOutputPerCall !== guessed.maxOutputPerCall) {
      // The isolate's limits are fixed at creation and the name (which selects them) is only
      // known after evaluating the bundle, so a first load may need a second isolate.
      sandbox.dispose()
      sandbox = this.starting = await PluginSandbox.create(bundle, limits, callbacks)
    }
    this.throwIfStopped()
    if (!this.env.enabled(sandbox.name)) {
      sandbox.dispose()
      this.status = 'disabled'
      // off by the user's config, or by default (the costly shipped plugins: runtime/config/receiver.ts)
      this.env.log.info(`plugin ${sandbox.name} (${this.file}) is off (plugins.${sandbox.name}.enabled is false, in the config or by default); not loading it. Set plugins.${sandbox.name}.enabled: true to load it`)
      return undefined
    }
    return sandbox
  }

  private claimName(name: string): void {
    if (name === this.name) return
    if (!this.env.claimName(name, this)) {
      throw new Error(`plugin name '${name}' is already used by another file; give this plugin another name`)
    }
    if (this.name !== undefined) this.env.releaseName(this.name, this)
    this.name = name
    this.scope = this.env.sink.scope(name)
  }

  private async carryState(previous: Version, name: string): Promise<Record<string, unknown>> {
    try {
      return await previous.sandbox.state()
    } catch (error) {
      this.env.log.warn(`plugin ${name}: ctx.state could not be carried over (${(error as Error).message}); ` +
        'the new version starts with an empty ctx.state. Keep only plain data (no functions or class instances) in ctx.state')
      return {}
    }
  }

  private throwIfStopped(): void {
    if (this.stopped) throw new StoppedError()
  }

  /**
   * Subscribes the host to the version's topics. Every topic must belong to an object acquired for
   * the version; one that does not rejects the whole version before anything is subscribed.
   */
  private subscribe(version: Version): void {
    for (const topic of version.topics) {
      const { object } = splitTopic(topic)
      if (!version.grant.objects.has(object)) {
        throw new PluginFailure(this.name ?? this.file, 'permission',
          `ctx.on('${topic}'): object '${object}' is not in this plugin's objects; add it to objects: [...]`, '')
      }
    }
    for (const topic of version.stackTopics) {
      const type = this.env.bus.recordType(topic)
      if (type !== 'stack_sample') {
        throw new PluginFailure(this.name ?? this.file, 'permission',
          `ctx.onStack('${topic}'): EINVAL: its records are ${type === undefined ? 'of no declared type' : `struct ${type}`}, not struct stack_sample (bpf/lib/stacks.h); listen to it with ctx.on`, '')
      }
    }
    const added: string[] = []
    try {
      for (const topic of version.topics) {
        const stacks = version.stackTopics.has(topic)
        const existing = this.subscriptions.get(topic)
        if (existing !== undefined && this.stackSubscriptions.has(topic) === stacks) continue
        existing?.()
        if (stacks) {
          // kallsyms shows addresses only to the privileged: read it while the runtime still is (setup runs before the drop)
          profiling().symbolizer.symbolizeKernel([])
          this.stackSubscriptions.add(topic)
        } else {
          this.stackSubscriptions.delete(topic)
        }
        const delivery = profiling().delivery
        this.subscriptions.set(topic, this.env.bus.subscribe(topic, stacks ? (batch) => this.enqueue(topic, delivery.convert(batch)) : (batch) => this.enqueue(topic, batch)))
        added.push(topic)
        if (existing === undefined) this.countMissed(topic)
      }
    } catch (error) {
      for (const topic of added) {
        this.subscriptions.get(topic)!()
        this.subscriptions.delete(topic)
      }
      throw error
    }
  }

  /** A load that did not produce a running version. */
  private rejected(error: Error, reason: string, keep: boolean): void {
    if (this.stopped) return
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
    version.intervals = timers.map((ms, index) => setInterval(() => this.enqueueTimer(version.id, index), ms))
    for (const [topic, unsubscribe] of this.subscriptions) {
      if (!version.topics.has(topic)) {
        unsubscribe()
        this.subscriptions.delete(topic)
        const position = this.env.bus.position(topic)
        if (position !== undefined) this.leftAt.set(topic, position)
      }
    }
    if (old !== undefined) this.retire(old)
  }

  /**
   * A topic listened to again after a version that did not: what the stream carried meanwhile
   * never reached this plugin, so the next batch reports it as lost. Nothing is owed when the
   * stream closed in between (nobody held its object, so nothing was produced).
   */
  private countMissed(topic: string): void {
    const left = this.leftAt.get(topic)
    if (left === undefined) return
    this.leftAt.delete(topic)
    const now = this.env.bus.position(topic)
    if (now !== undefined && now.stream === left.stream && now.total > left.total) this.addLoss(topic, now.total - left.total)
  }

  private addLoss(topic: string, records: number): void {
    this.pendingLoss.set(topic, (this.pendingLoss.get(topic) ?? 0) + records)
  }

  /** Stops a version for good and lets go of its objects (after the next version holds them). */
  private retire(version: Version): void {
    this.halt(version)
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const item = this.queue[i]!
      if (item.kind === 'timer' && item.version === version.id) this.queue.splice(i, 1)
    }
    this.releaseHolds(version.grant)
    for (const object of version.grant.objects) {
      this.env.bus.release(object, version.user).catch((e: Error) => this.env.log.error(`release object ${object}: ${e.message}`))
    }
  }

  /** Lets go of a version's map claims and uprobe links; the next version took its own already. */
  private releaseHolds(grant: Grant): void {
    for (const release of grant.links.values()) {
      try {
        release()
      } catch (error) {
        this.env.log.error(`plugin ${grant.plugin}: detach a uprobe link: ${(error as Error).message}`)
      }
    }
    grant.links.clear()
    for (const error of this.env.bus.claims.releaseHolder(grant.user)) {
      this.env.log.error(`plugin ${grant.plugin}: release a map claim: ${error.message}`)
    }
  }

  private enqueue(topic: string, batch: RecordBatch): void {
    this.stats.batchesIn++
    this.stats.eventsIn += batch.count
    if (this.stopped) return
    const lost = batch.lost + (this.pendingLoss.get(topic) ?? 0)
    const limits = this.env.limitsFor(this.name)
    const now = Date.now()
    if (now - this.rate.windowStart >= 1000) {
      this.rate.windowStart = now
      this.rate.events = 0
      this.rate.cpuStartNs = this.cpuNs()
    }
    let refused: keyof PluginStats['droppedBy'] | undefined
    if (limits.maxEventsPerSecond > 0 && this.rate.events + batch.count > limits.maxEventsPerSecond) refused = 'rateLimit'
    else if (limits.maxCpuPercent > 0 && Number(this.cpuNs() - this.rate.cpuStartNs) > limits.maxCpuPercent * 10_000_000) refused = 'cpuLimit'
    else if (this.queuedBytes + batch.byteLength > limits.maxQueuedBytes) refused = 'queueFull'
    if (refused !== undefined) {
      this.drop(batch.count, refused)
      this.pendingLoss.set(topic, lost + batch.count)
      return
    }
    this.pendingLoss.delete(topic)
    this.rate.events += batch.count
    this.queuedBytes += batch.byteLength
    const last = this.queue.at(-1)
    // a loss starts a staged batch of its own, so the isolate reports it before the right record
    if (lost > 0 || last?.kind !== 'batch' || last.topic !== topic || !last.batch.tryAppend(batch)) {
      this.queue.push({ kind: 'batch', topic, batch: new StagedBatch(batch, lost) })
    }
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
      const wait = this.gatherWait()
      if (wait <= 0) void this.pump()
      else this.gatherTimer ??= setTimeout(() => { this.gatherTimer = undefined; this.kick() }, wait)
    } else if (!this.pumping && (this.queue.length === 0 || this.current === undefined || this.current.dead)) {
      this.settle()
    }
  }

  /**
   * How long the next call should wait for more records: a lone small batch waits up to
   * `gatherMs` (`stackGatherMs` for stack samples) from its arrival for more of its stream, since
   * each call into the isolate costs about as much as a hundred small records (a thread hop each way).
   */
  private gatherWait(): number {
    const head = this.queue[0]
    if (this.queue.length !== 1 || head?.kind !== 'batch' || head.batch.byteLength >= gatherBytes) return 0
    return head.batch.stagedAt + (this.stackSubscriptions.has(head.topic) ? stackGatherMs : gatherMs) - performance.now()
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
        if (version === undefined || version.dead || this.gatherWait() > 0) break
        const item = this.queue.shift()!
        this.inFlight = item.kind
        try {
          if (item.kind === 'batch') {
            this.queuedBytes -= item.batch.byteLength
            if (!version.topics.has(item.topic)) {
              // queued for a version that listened to it; the one running now does not
              item.batch.release()
              this.drop(item.batch.count, 'unsubscribed')
              this.addLoss(item.topic, item.batch.lost + item.batch.count)
              continue
            }
            const output = await version.sandbox.deliver(item.topic, item.batch)
            this.stats.handled += item.batch.count
            this.forward(output)
          } else if (item.version === version.id) {
            this.forward(await version.sandbox.timer(item.index))
          }
        } catch (error) {
          if (item.kind === 'batch') {
            this.drop(item.batch.count, this.draining ? 'shutdown' : 'failure')
            this.addLoss(item.topic, item.batch.lost + item.batch.count)
          }
          this.fail(version, error instanceof PluginFailure ? error
            : new PluginFailure(this.name ?? this.file, 'throw', (error as Error).message, ''))
        }
      }
    } finally {
      this.inFlight = undefined
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
    if (this.stopped || version !== this.current || version.dead) return
    version.dead = true
    this.halt(version)
    if (Date.now() - version.startedAt >= this.env.backoff.resetAfterMs) this.consecutiveFailures = 0
    this.lastError = { kind: failure.kind, message: failure.message, stack: failure.pluginStack, at: new Date().toISOString() }
    const delay = this.scheduleRestart()
    this.env.log.error(`${failure.message}${failure.pluginStack === '' ? '' : `\n${failure.pluginStack}`}\n  restarting in ${delay} ms`)
    this.env.notify({ type: 'failed', plugin: this.name ?? this.file, file: this.file, failure, restartInMs: delay })
  }

  /** Ends a version's code: timers, map access and the isolate; its objects stay held. */
  private halt(version: Version): void {
    version.grant.revoked = true
    for (const interval of version.intervals) clearInterval(interval)
    this.retiredCpuNs += version.sandbox.cpuTimeNs()
    version.sandbox.dispose()
  }

  private scheduleRestart(): number {
    if (this.stopped) return 0
    this.consecutiveFailures++
    const { initialMs, maxMs } = this.env.backoff
    const delay = Math.min(maxMs, initialMs * 2 ** (this.consecutiveFailures - 1))
    this.status = 'backoff'
    clearTimeout(this.restartTimer)
    this.restartTimer = setTimeout(() => { void this.load('restart') }, delay)
    return delay
  }

  /** A map call from the isolate: allowed only on the objects acquired for the calling version. */
  private mapOperation(grant: Grant, topic: unknown, op: unknown, key?: Uint8Array, value?: Uint8Array): unknown {
    if (typeof topic !== 'string' || typeof op !== 'string') throw new TypeError('ctx.map: the topic and operation must be strings')
    this.checkObject(grant, topic, `ctx.map('${topic}')`)
    const map = this.env.bus.map(topic)
    const perCpu = map.info?.perCpu === true
    if (valueReads.has(op) && perCpu !== op.endsWith('PerCpu')) {
      throw new PluginApiError('EINVAL', perCpu
        ? `map '${topic}' is a per-CPU map: use lookupPerCpu, entriesPerCpu or drainPerCpu, which give each CPU's value`
        : `map '${topic}' is not a per-CPU map: use lookup, entries or drain`)
    }
    switch (op) {
      case 'info': return { keySize: map.keySize, valueSize: map.valueSize, perCpu }
      case 'lookup': return map.lookup(bytes(key, map.keySize, topic, 'key'))
      case 'lookupPerCpu': {
        const all = map.lookup(bytes(key, map.keySize, topic, 'key'))
        return all === undefined ? undefined : splitPerCpu(all, map.valueSize)
      }
      case 'update':
        this.checkUnclaimed(grant, topic, bytes(key, map.keySize, topic, 'key'))
        map.update(key!, bytes(value, map.valueSize, topic, 'value'))
        return undefined
      case 'delete':
        this.checkUnclaimed(grant, topic, bytes(key, map.keySize, topic, 'key'))
        return map.delete(key!)
      case 'entries': return Array.from(map.entries())
      case 'entriesPerCpu': return Array.from(map.entries(), ([k, v]) => [k, splitPerCpu(v, map.valueSize)])
      case 'drain': return drain(map)
      case 'drainPerCpu': return drain(map).map(([k, v]) => [k, splitPerCpu(v, map.valueSize)])
      case 'claim':
        if (perCpu) throw new PluginApiError('EINVAL', `map '${topic}' is a per-CPU map; claims are for maps that configure the kernel (hash or array)`)
        this.env.bus.claim(topic, bytes(key, map.keySize, topic, 'key'), bytes(value, map.valueSize, topic, 'value'), { id: grant.user, plugin: grant.plugin })
        return undefined
      case 'unclaim': return this.env.bus.claims.unclaim(topic, bytes(key, map.keySize, topic, 'key'), grant.user)
      default: throw new Error(`map '${topic}': unknown operation '${op}'`)
    }
  }

  /** The topic's (or program's) object must be one acquired for this version, which must still run. */
  private checkObject(grant: Grant, topic: string, what: string): void {
    if (grant.revoked) throw new Error(`${what}: this version of the plugin was stopped`)
    const { object } = splitTopic(topic)
    if (!grant.objects.has(object)) {
      throw new PluginApiError('EACCES', `${what}: object '${object}' is not in this plugin's objects; add it to objects: [...]`)
    }
  }

  /** A plain write must not undo an entry another plugin claimed. */
  private checkUnclaimed(grant: Grant, topic: string, key: Uint8Array): void {
    const holder = this.env.bus.claims.claimedByOther(topic, key, grant.plugin)
    if (holder !== undefined) {
      throw new PluginApiError('EBUSY', `map '${topic}': key ${Buffer.from(key).toString('hex')} is claimed by plugin ${holder}; claim the same value instead of writing it`)
    }
  }

  /** ctx.attach from the isolate: every field is checked here, whatever the bootstrap checked. */
  private attach(grant: Grant, request: unknown): { id: number; link: number } {
    if (request !== null && typeof request === 'object' && 'perfEvent' in request) return this.attachPerfEvent(grant, request)
    const r = request as { program?: unknown; uprobe?: { binary?: unknown; symbol?: unknown; retprobe?: unknown; at?: unknown; pid?: unknown } } | null
    const u = r?.uprobe
    if (r === null || typeof r !== 'object' || typeof r.program !== 'string' || u === null || typeof u !== 'object' ||
      typeof u.binary !== 'string' || typeof u.symbol !== 'string' || u.symbol === '' ||
      (u.retprobe !== undefined && typeof u.retprobe !== 'boolean') ||
      (u.at !== undefined && u.at !== 'entry' && u.at !== 'returns') ||
      (u.pid !== undefined && (typeof u.pid !== 'number' || !Number.isInteger(u.pid) || u.pid <= 0))) {
      throw new PluginApiError('EINVAL', "ctx.attach: give { program: '<object>:<program>', uprobe: { binary: '/absolute/path', symbol: 'name', retprobe?: boolean, at?: 'entry' | 'returns', pid?: number } }")
    }
    this.checkObject(grant, r.program, `ctx.attach('${r.program}')`)
    const hold = this.env.bus.attachUprobe(r.program, { binary: u.binary, symbol: u.symbol, retprobe: u.retprobe === true, at: u.at ?? 'entry', pid: u.pid as number | undefined })
    const link = grant.nextLink++
    grant.links.set(link, hold.release)
    return { id: hold.id, link }
  }

  private attachPerfEvent(grant: Grant, request: object): { id: number; link: number } {
    const r = request as { program?: unknown; perfEvent?: { frequency?: unknown; pid?: unknown } | null }
    const p = r.perfEvent
    if (typeof r.program !== 'string' || p === null || typeof p !== 'object' ||
      typeof p.frequency !== 'number' || !Number.isInteger(p.frequency) || p.frequency < 1 || p.frequency > 1000 ||
      (p.pid !== undefined && (typeof p.pid !== 'number' || !Number.isInteger(p.pid) || p.pid <= 0 || p.pid > 0x7fffffff))) {
      throw new PluginApiError('EINVAL', "ctx.attach: give { program: '<object>:<program>', perfEvent: { frequency: <integer Hz from 1 to 1000>, pid?: <thread id> } }" +
        (typeof p?.frequency === 'number' && !(Number.isInteger(p.frequency) && p.frequency >= 1 && p.frequency <= 1000) ? `; frequency ${p.frequency} is not an integer from 1 to 1000` : ''))
    }
    this.checkObject(grant, r.program, `ctx.attach('${r.program}')`)
    const hold = this.env.bus.attachPerfEvent(r.program, { frequency: p.frequency, pid: p.pid as number | undefined })
    const link = grant.nextLink++
    grant.links.set(link, hold.release)
    return { id: hold.id, link }
  }

  /**
   * ctx.onTracepoint from the isolate: the generic object's tracepoint program on the named
   * tracepoint, filtered in the kernel as asked. Every field is checked here, and the tracepoint
   * against its tracefs format, whatever the bootstrap checked.
   */
  private attachTracepoint(grant: Grant, request: unknown): { id: number; link: number; cookie: number; format: TracepointFormat } {
    const usage = "ctx.onTracepoint: give ('<category>:<name>', handler, { pid?: number, comm?: string, uid?: number, strings?: string[] })"
    const r = request as { category?: unknown; name?: unknown; pid?: unknown; comm?: unknown; uid?: unknown; strings?: unknown } | null
    const whole = (value: unknown) => value === undefined || (typeof value === 'number' && Number.isInteger(value) && value >= 0 && value < 2 ** 32)
    if (r === null || typeof r !== 'object' || typeof r.category !== 'string' || typeof r.name !== 'string' || !whole(r.pid) || !whole(r.uid) ||
      (r.comm !== undefined && typeof r.comm !== 'string') ||
      (r.strings !== undefined && !(Array.isArray(r.strings) && r.strings.every((f) => typeof f === 'string')))) {
      throw new PluginApiError('EINVAL', usage)
    }
    const what = `ctx.onTracepoint('${r.category}:${r.name}')`
    this.checkObject(grant, GENERIC_TRACEPOINT_PROGRAM, what)
    const tracepoint: TracepointRequest = {
      category: r.category,
      name: r.name,
      filter: { pid: r.pid as number | undefined, comm: r.comm as string | undefined, uid: r.uid as number | undefined },
      strings: r.strings as string[] | undefined,
    }
    let format: TracepointFormat
    try {
      format = checkTracepointRequest(tracepoint)
    } catch (error) {
      throw new PluginApiError(readFormat(r.category, r.name) === undefined ? 'ENOENT' : 'EINVAL', `${what}: ${(error as Error).message}`)
    }
    const hold = this.env.bus.attachTracepoint(GENERIC_TRACEPOINT_PROGRAM, {
      category: r.category, name: r.name, config: encodeTracepointConfig(tracepoint, format), configMap: 'probe_config', slots: GENERIC_MAX_PROBES,
    }, { id: grant.user, plugin: grant.plugin })
    const link = grant.nextLink++
    grant.links.set(link, hold.release)
    return { id: hold.id, link, cookie: hold.cookie, format }
  }

  /**
   * ctx.onUprobe from the isolate: the generic_uprobe object's uprobe (or uretprobe) program on a
   * function of a binary, only `pid`'s calls when given, never the runtime's own. Every field is
   * checked here, whatever the bootstrap checked.
   */
  private attachGenericUprobe(grant: Grant, request: unknown): { id: number; link: number; cookie: number } {
    const r = request as { binary?: unknown; symbol?: unknown; retprobe?: unknown; pid?: unknown } | null
    if (r === null || typeof r !== 'object' || typeof r.binary !== 'string' || typeof r.symbol !== 'string' || r.symbol === '' ||
      (r.retprobe !== undefined && typeof r.retprobe !== 'boolean') ||
      (r.pid !== undefined && (typeof r.pid !== 'number' || !Number.isInteger(r.pid) || r.pid <= 0 || r.pid > 0x7fffffff))) {
      throw new PluginApiError('EINVAL', "ctx.onUprobe: give ({ binary: '/absolute/path', symbol: 'name', retprobe?: boolean }, handler, { pid?: number })")
    }
    const retprobe = r.retprobe === true
    const program = retprobe ? GENERIC_URETPROBE_PROGRAM : GENERIC_UPROBE_PROGRAM
    this.checkObject(grant, program, `ctx.onUprobe('${r.binary}:${r.symbol}')`)
    const pid = r.pid as number | undefined
    const hold = this.env.bus.attachUprobeSlot(program, {
      binary: r.binary, symbol: r.symbol, retprobe, pid,
      config: encodeUprobeConfig(pid ?? 0, process.pid), configMap: 'probe_config', slots: GENERIC_UPROBE_MAX_PROBES,
    }, { id: grant.user, plugin: grant.plugin })
    const link = grant.nextLink++
    grant.links.set(link, hold.release)
    return { id: hold.id, link, cookie: hold.cookie }
  }

  /** Releases one ctx.attach hold of this version; false when it was released already. */
  private detach(grant: Grant, link: unknown): boolean {
    const release = typeof link === 'number' ? grant.links.get(link) : undefined
    if (release === undefined) return false
    grant.links.delete(link as number)
    return release()
  }

  private async iterate(grant: Grant, program: unknown, options: unknown): Promise<string> {
    const o = options as { pid?: unknown } | null | undefined
    if (typeof program !== 'string' || (o !== undefined && (o === null || typeof o !== 'object')) ||
      (o?.pid !== undefined && (typeof o.pid !== 'number' || !Number.isInteger(o.pid) || o.pid <= 0))) {
      throw new PluginApiError('EINVAL', "ctx.iterate: give ('<object>:<program>', { pid?: number })")
    }
    const what = `ctx.iterate('${program}')`
    this.checkObject(grant, program, what)
    const text = await this.env.bus.runIterator(program, o?.pid === undefined ? {} : { pid: o.pid as number })
    if (grant.revoked) throw new Error(`${what}: this version of the plugin was stopped`)
    return text
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

  /**
   * The first step of a clean shutdown: takes no more events, and gives the plugin until the
   * deadline to handle the batches queued, so records already read from the kernel become
   * telemetry. Timers are periodic work, not data, and one may be hung: none is waited for. What
   * is not handled by then is dropped and counted (reason `shutdown`).
   */
  async drain(deadlineMs: number): Promise<void> {
    for (const unsubscribe of this.subscriptions.values()) unsubscribe()
    this.subscriptions.clear()
    const version = this.current
    if (version !== undefined) for (const interval of version.intervals) clearInterval(interval)
    for (let i = this.queue.length - 1; i >= 0; i--) if (this.queue[i]!.kind !== 'batch') this.queue.splice(i, 1)
    if (this.inFlight !== 'timer') {
      let timer: NodeJS.Timeout | undefined
      const deadline = new Promise<void>((resolve) => { timer = setTimeout(resolve, deadlineMs) })
      await Promise.race([this.whenIdle(), deadline])
      clearTimeout(timer)
    }
    this.draining = true
    if (this.pumping && version !== undefined && !version.dead) {
      // a call still running now ends; its batch counts as dropped for shutdown
      version.dead = true
      this.halt(version)
      await this.whenIdle()
    }
    this.discardQueued('shutdown')
  }

  /** Empties the queue; its batches are released and their records counted as dropped for `reason`. */
  private discardQueued(reason: keyof PluginStats['droppedBy']): void {
    for (const item of this.queue) {
      if (item.kind !== 'batch') continue
      this.queuedBytes -= item.batch.byteLength
      this.drop(item.batch.count, reason)
      item.batch.release()
    }
    this.queue.length = 0
  }

  /** Unloads: no more events, timers stopped, objects released, the isolate discarded. */
  async stop(): Promise<void> {
    this.stopped = true
    this.status = 'stopped'
    clearTimeout(this.restartTimer)
    clearTimeout(this.gatherTimer)
    // End plugin code now rather than waiting for it: a call in flight or a setup() that never
    // settles must not hold up an unload or a shutdown.
    this.starting?.dispose()
    if (this.current !== undefined && !this.current.dead) this.halt(this.current)
    await this.loading
    await this.quiesce()
    for (const unsubscribe of this.subscriptions.values()) unsubscribe()
    this.subscriptions.clear()
    // an unload that did not drain first (a plugin removed, a failed load) loses what was queued
    this.discardQueued('unsubscribed')
    const version = this.current
    this.current = undefined
    if (version !== undefined) {
      this.releaseHolds(version.grant)
      await Promise.allSettled([...version.grant.objects].map((o) => this.env.bus.release(o, version.user)))
    }
    if (this.name !== undefined) {
      this.env.releaseName(this.name, this)
      this.env.notify({ type: 'unloaded', plugin: this.name, file: this.file })
    }
    await this.builder.dispose()
  }
}

/** Loaded on the first ctx.kernel call: most runs have no plugin that asks. */
function kernelTables(): Promise<typeof import('../kernel/syscall-table.ts')> {
  return import('../kernel/syscall-table.ts')
}

function bytes(value: Uint8Array | undefined, size: number, topic: string, what: string): Uint8Array {
  if (!(value instanceof Uint8Array)) throw new TypeError(`map '${topic}': the ${what} must be a Uint8Array of ${size} bytes`)
  if (value.byteLength !== size) {
    throw new RangeError(`map '${topic}': the ${what} is ${value.byteLength} bytes, the map's ${what} is ${size}; encode it with the object's generated codec`)
  }
  return value
}

/** Map operations that return values: per-CPU maps have their own, which split values by CPU. */
const valueReads = new Set(['lookup', 'entries', 'drain', 'lookupPerCpu', 'entriesPerCpu', 'drainPerCpu'])

/** A per-CPU value (every possible CPU's, each padded to 8 bytes) as one `valueSize` array per CPU. */
function splitPerCpu(value: Uint8Array, valueSize: number): Uint8Array[] {
  const stride = (valueSize + 7) & ~7
  const out: Uint8Array[] = []
  for (let at = 0; at + valueSize <= value.byteLength; at += stride) out.push(value.slice(at, at + valueSize))
  return out
}

/**
 * Every entry, then each reset in the same host call: deleted, or zeroed in arrays (whose entries
 * cannot be deleted). An update the kernel makes to an entry between its read and its reset is
 * lost, so count in the kernel with values that only grow and read them with entries() where
 * every event matters.
 */
function drain(map: ObjectMap): [Uint8Array, Uint8Array][] {
  const entries = Array.from(map.entries(), ([k, v]): [Uint8Array, Uint8Array] => [Uint8Array.from(k), Uint8Array.from(v)])
  const array = map.info?.type === 'array' || map.info?.type === 'percpu_array'
  for (const [key, value] of entries) {
    if (array) map.update(key, new Uint8Array(value.byteLength))
    else map.delete(key)
  }
  return entries
}
