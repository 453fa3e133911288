/**
 * One version of one plugin, in its own isolated-vm isolate: a memory limit, a wall-time budget per
 * call, a deadline on every await of plugin code, and a fixed set of host callbacks (map access,
 * asynchronous failure). Everything that goes wrong inside is turned into a `PluginFailure` with a
 * stack mapped back to the plugin's `.ts`.
 *
 * Nothing the isolate hands back is trusted: plugin code runs in the same context as the bootstrap
 * and can patch any builtin the bootstrap uses, so the shape and size of every result is checked
 * here, on the host side.
 */
import ivm from 'isolated-vm'
import type { RecordBatch } from '../bpf/batch.ts'
import { bootToWallOffsetNs } from '../bpf/clock.ts'
import { fullCollection } from '../heap-trim.ts'
import { bootstrapScript, mapStack, type PluginBundle } from './build.ts'
import type { IsolateOutput } from './isolate/bootstrap.ts'

/*
 * isolated-vm's handles (References, contexts) that die as the process exits are collected by
 * Node's last collection, after isolated-vm's own teardown; their weak callbacks then fail an
 * assertion and abort the exit (seen once in 12 to 26 runs of a test that hot-reloads a plugin).
 * A full collection at 'exit' runs them while isolated-vm still stands.
 */
const collectAtExit = fullCollection()
process.once('exit', () => collectAtExit())

export type { IsolateOutput }

/**
 * `time-budget`: one call ran too long; `deadline`: an awaited promise of plugin code did not
 * settle in time; `permission`: the plugin reached past its declared objects or sent back
 * something malformed.
 */
export type FailureKind = 'throw' | 'time-budget' | 'deadline' | 'memory' | 'emit-flood' | 'setup' | 'permission'

export class PluginFailure extends Error {
  readonly plugin: string
  readonly kind: FailureKind
  /** Source-mapped stack, or '' when the isolate died before it could report one. */
  readonly pluginStack: string

  constructor(plugin: string, kind: FailureKind, message: string, pluginStack: string) {
    super(`plugin ${plugin}: ${message}`)
    this.name = 'PluginFailure'
    this.plugin = plugin
    this.kind = kind
    this.pluginStack = pluginStack
  }
}

export interface SandboxLimits {
  /** Isolate heap limit. */
  memoryMb: number
  /**
   * Wall time one batch, timer run or setup may run inside the isolate before it is stopped. It is
   * wall time, not CPU time (isolated-vm's `timeout`): a plugin starved of CPU by a busy host can
   * hit it sooner than its own work would.
   */
  callBudgetMs: number
  /**
   * Wall time an async `setup()` or `ctx.every` callback may take to settle, awaits included. Past
   * it the version is stopped, so a promise that never settles cannot stall a reload or shutdown.
   */
  callDeadlineMs: number
  /** Signals plus log lines one call may queue; more is an emit flood. */
  maxOutputPerCall: number
}

export const defaultLimits: SandboxLimits = { memoryMb: 64, callBudgetMs: 1000, callDeadlineMs: 5000, maxOutputPerCall: 100_000 }

/** Most `ctx.every` timers one version may register. */
export const maxTimers = 64
const logLevels = new Set<unknown>(['debug', 'info', 'warn', 'error'])
/** The shortest `ctx.every` interval, as the isolate also enforces. */
export const minTimerMs = 10

export interface SandboxHost {
  /** `op` names a PluginMap method (and `info`); see PluginMap. Called synchronously. */
  map(topic: string, op: string, key?: Uint8Array, value?: Uint8Array): unknown
  /** ctx.attach: the kernel link's id, and the number that detach() names this hold by. Arguments are unchecked. */
  attach(request: unknown): { id: number; link: number }
  /** PluginLink.detach(): releases the hold `attach` numbered `link`. */
  detach(link: unknown): boolean
  /** ctx.onTracepoint: attaches the generic program; its link as `attach` gives it, the slot cookie its records carry, and the tracepoint's format. Arguments are unchecked. */
  tracepoint(request: unknown): { id: number; link: number; cookie: number; format: unknown }
  /** ctx.onUprobe: attaches a generic uprobe program; its link as `attach` gives it, and the slot cookie its records carry. Arguments are unchecked. */
  uprobe(request: unknown): { id: number; link: number; cookie: number }
  /** ctx.symbolize: frames per stack. Arguments are unchecked. */
  symbolize(stacks: unknown): Promise<unknown>
  /** ctx.iterate: the iterator's text. Arguments are unchecked. */
  iterate(program: unknown, options: unknown): Promise<string>
  /** ctx.kernel.syscallNames and ctx.kernel.syscalls: the running kernel's syscall table. */
  syscallNames(): Promise<string[]>
  syscalls(): Promise<unknown[]>
  /** ctx.kernel.errnoNames. */
  errnoNames(): Promise<string[]>
  /** A handler's or timer's promise rejected after the call that started it returned. */
  asyncFailure(failure: PluginFailure): void
}

/** What a host call answers the isolate: its value, or its error's message and name. */
export type HostCallResult = { value: unknown } | { error: string; name: string }

export interface PluginDeclaration {
  name: string
  objects: string[]
  config: Record<string, unknown>
}

export interface SetupResult {
  topics: string[]
  /** The topics among `topics` that ctx.onStack listens to. */
  stackTopics: string[]
  /** Interval of each `ctx.every`, in registration order; `timer(i)` runs the i-th. */
  timers: number[]
  output: IsolateOutput | undefined
}

type Control = ivm.Reference<Record<string, (...args: unknown[]) => unknown>>

type Functions = Record<'setup' | 'deliver' | 'timer' | 'state', ivm.Reference<(...args: unknown[]) => unknown>>

export class PluginSandbox {
  readonly bundle: PluginBundle
  readonly declaration: PluginDeclaration
  private readonly isolate: ivm.Isolate
  private readonly context: ivm.Context
  private readonly functions: Functions
  private readonly limits: SandboxLimits
  /** The host functions the isolate calls, released with it (see releaseAll). */
  private readonly hostRefs: ivm.Reference<unknown>[]
  private stoppedByHost = false
  private heap = 0
  private heapMeasuredAt = -Infinity

  private constructor(bundle: PluginBundle, declaration: PluginDeclaration, isolate: ivm.Isolate, context: ivm.Context, functions: Functions,
    limits: SandboxLimits, hostRefs: ivm.Reference<unknown>[]) {
    this.bundle = bundle
    this.hostRefs = hostRefs
    this.declaration = declaration
    this.isolate = isolate
    this.context = context
    this.functions = functions
    this.limits = limits
  }

  /** Starts an isolate and evaluates the bundle; a bundle that throws at top level is a 'setup' failure. */
  static async create(bundle: PluginBundle, limits: SandboxLimits, host: SandboxHost): Promise<PluginSandbox> {
    const isolate = new ivm.Isolate({ memoryLimit: limits.memoryMb })
    const label = bundle.file
    const hostRefs: ivm.Reference<unknown>[] = []
    try {
      const context = await isolate.createContext()
      let name = label
      // Synchronous, because the isolate reads a map's key and value sizes with applySync.
      const mapRef = new ivm.Reference((topic: string, op: string, key?: Uint8Array, value?: Uint8Array) => {
        try {
          return host.map(topic, op, key, value)
        } catch (error) {
          throw withoutHostStack(error)
        }
      })
      const failRef = new ivm.Reference((message: string, stack: string) => {
        host.asyncFailure(new PluginFailure(name, 'throw', `asynchronous failure: ${message}`, mapStack(stack, bundle)))
      })
      // ctx.attach, PluginLink.detach, ctx.onTracepoint, ctx.onUprobe, ctx.iterate, ctx.symbolize and ctx.kernel. Each resolves, to { value } or { error }:
      // isolated-vm takes up the promise a tick late, and a rejection would be reported unhandled
      const callRef = new ivm.Reference(async (op: unknown, a?: unknown, b?: unknown): Promise<HostCallResult> => {
        try {
          switch (op) {
            case 'attach': return { value: host.attach(a) }
            case 'detach': return { value: host.detach(a) }
            case 'tracepoint': return { value: host.tracepoint(a) }
            case 'uprobe': return { value: host.uprobe(a) }
            case 'iterate': return { value: await host.iterate(a, b) }
            case 'symbolize': return { value: await host.symbolize(a) }
            case 'syscallNames': return { value: await host.syscallNames() }
            case 'syscalls': return { value: await host.syscalls() }
            case 'errnoNames': return { value: await host.errnoNames() }
            default: throw new Error(`unknown host call '${String(op)}'`)
          }
        } catch (error) {
          const e = withoutHostStack(error)
          return { error: e.message, name: e.name }
        }
      })
      hostRefs.push(mapRef, failRef, callRef)
      const control = (await context.evalClosure(
        `${await bootstrapScript()}\nreturn bootstrap.control`,
        [mapRef, failRef, limits.maxOutputPerCall, bootToWallOffsetNs(), callRef],
        { result: { reference: true } },
      )) as unknown as Control
      const script = await isolate.compileScript(bundle.code, { filename: bundle.scriptName })
      try {
        await script.run(context, { timeout: limits.callBudgetMs })
      } catch (error) {
        throw toFailure(error, isolate, label, bundle, 'setup')
      }
      const get = (key: string) => control.get(key, { reference: true }) as Promise<ivm.Reference<(...args: unknown[]) => unknown>>
      let declaration: PluginDeclaration
      try {
        declaration = (await (await get('definition')).apply(undefined, [], { result: { copy: true } })) as PluginDeclaration
      } catch (error) {
        throw toFailure(error, isolate, label, bundle, 'setup')
      }
      checkDeclaration(declaration, label)
      name = declaration.name
      const functions = {
        setup: await get('setup'),
        deliver: await get('deliver'),
        timer: await get('timer'),
        state: await get('state'),
      }
      return new PluginSandbox(bundle, declaration, isolate, context, functions, limits, hostRefs)
    } catch (error) {
      if (!isolate.isDisposed) isolate.dispose()
      releaseAll(hostRefs)
      throw error
    }
  }

  get name(): string {
    return this.declaration.name
  }

  get disposed(): boolean {
    return this.isolate.isDisposed
  }

  /**
   * Runs the plugin's setup(ctx); a throw here is a 'setup' failure and leaves the caller's old
   * version in charge. The topics and timers it reports are checked for shape only: whether the
   * plugin may use them is the host's call.
   */
  async setup(config: Record<string, unknown>, state: Record<string, unknown>): Promise<SetupResult> {
    let result: unknown
    try {
      result = await this.withDeadline('setup()', this.functions.setup.apply(
        undefined,
        [new ivm.ExternalCopy(config).copyInto({ release: true }), new ivm.ExternalCopy(state).copyInto({ release: true })],
        { timeout: this.limits.callBudgetMs, result: { promise: true, copy: true } },
      ))
    } catch (error) {
      throw toFailure(error, this.isolate, this.name, this.bundle, 'setup', this.stoppedByHost)
    }
    return this.checkSetupResult(result)
  }

  /** Hands one whole batch to the isolate, which runs the per-event loop. */
  async deliver(topic: string, batch: StagedBatch): Promise<IsolateOutput | undefined> {
    let output: unknown
    try {
      output = await this.functions.deliver.apply(
        undefined,
        [topic, batch.take().copyInto({ release: true, transferIn: true }), batch.byteLength, batch.lost],
        { timeout: this.limits.callBudgetMs, result: { copy: true } },
      )
    } catch (error) {
      throw toFailure(error, this.isolate, this.name, this.bundle, 'throw', this.stoppedByHost)
    }
    return this.checkOutput(output)
  }

  /** Runs the index-th `ctx.every` callback, awaiting what it returns up to the call deadline. */
  async timer(index: number): Promise<IsolateOutput | undefined> {
    let output: unknown
    try {
      output = await this.withDeadline(`the ctx.every callback #${index + 1}`, this.functions.timer.apply(undefined, [index], {
        timeout: this.limits.callBudgetMs,
        result: { promise: true, copy: true },
      }))
    } catch (error) {
      throw toFailure(error, this.isolate, this.name, this.bundle, 'throw', this.stoppedByHost)
    }
    return this.checkOutput(output)
  }

  /** A structured copy of ctx.state; fails (with the reason) when it holds functions or the like. */
  async state(): Promise<Record<string, unknown>> {
    const state = await this.functions.state.apply(undefined, [], {
      timeout: this.limits.callBudgetMs,
      result: { copy: true },
    })
    if (state === null || typeof state !== 'object' || Array.isArray(state)) throw new TypeError('ctx.state is not a plain object')
    return state as Record<string, unknown>
  }

  /**
   * Settles with `call`, or stops the isolate when it has not settled within the call deadline:
   * the `timeout` option bounds only the synchronous part of a call, not the promise it returns.
   */
  private async withDeadline<T>(what: string, call: Promise<T>): Promise<T> {
    const ms = this.limits.callDeadlineMs
    let timer: NodeJS.Timeout | undefined
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(new PluginFailure(this.name, 'deadline',
          `${what} did not settle within ${ms} ms (a promise that never resolves, or an await on something that never comes); it was stopped`, ''))
        this.dispose()
      }, ms)
    })
    try {
      return await Promise.race([call, expired])
    } finally {
      clearTimeout(timer)
    }
  }

  private checkSetupResult(result: unknown): SetupResult {
    const r = result as Partial<SetupResult> | null
    const malformed = (what: string) => new PluginFailure(this.name, 'permission', `setup() reported ${what}; the version was not started`, '')
    if (r === null || typeof r !== 'object') throw malformed('no result')
    if (!Array.isArray(r.topics) || !r.topics.every((t) => typeof t === 'string')) throw malformed('topics that are not a list of strings')
    if (!Array.isArray(r.stackTopics) || !r.stackTopics.every((t) => typeof t === 'string' && r.topics!.includes(t))) throw malformed('stack topics that are not among its topics')
    if (!Array.isArray(r.timers) || r.timers.length > maxTimers) throw malformed(`timers that are not a list of at most ${maxTimers}`)
    for (const ms of r.timers) {
      if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < minTimerMs) throw malformed(`a ctx.every interval of ${String(ms)} (at least ${minTimerMs} ms)`)
    }
    return { topics: r.topics, stackTopics: r.stackTopics, timers: r.timers, output: this.checkOutput(r.output) }
  }

  /** Checks an isolate's output: its shape, and its size against the emit-flood limit. */
  private checkOutput(output: unknown): IsolateOutput | undefined {
    if (output === undefined) return undefined
    const o = output as Partial<IsolateOutput> | null
    const lists = o === null || typeof o !== 'object' ? [] : [o.spans, o.metrics, o.logs, o.profiles, o.messages]
    if (lists.length === 0 || !lists.every(Array.isArray)) {
      throw new PluginFailure(this.name, 'permission', 'sent back output that is not the runtime\'s (was a builtin patched?); the version was stopped', '')
    }
    const total = lists.reduce((sum, list) => sum + (list as unknown[]).length, 0)
    if (total > this.limits.maxOutputPerCall) {
      throw new PluginFailure(this.name, 'emit-flood', `emitted ${total} signals and log lines in one call, more than ${this.limits.maxOutputPerCall}; ` +
        'aggregate before emitting (for example count into a Map and emit from ctx.every)', '')
    }
    for (const m of o!.messages!) {
      if (!Array.isArray(m) || !logLevels.has(m[0]) || typeof m[1] !== 'string') {
        throw new PluginFailure(this.name, 'permission', 'sent back a malformed log line; the version was stopped', '')
      }
    }
    return o as IsolateOutput
  }

  /** CPU time the isolate has used, in nanoseconds. */
  cpuTimeNs(): bigint {
    return this.isolate.isDisposed ? 0n : this.isolate.cpuTime
  }

  /**
   * The isolate's heap as last measured, refreshed in the background at most once a second. The
   * synchronous read would wait for a call in progress, stalling the host's event loop for up to
   * the call budget whenever stats or metrics are read.
   */
  heapBytes(): number {
    if (this.isolate.isDisposed) return 0
    const now = performance.now()
    if (now - this.heapMeasuredAt >= 1000) {
      this.heapMeasuredAt = now
      this.isolate.getHeapStatistics().then(
        (heap) => { this.heap = heap.used_heap_size + heap.externally_allocated_size },
        () => { /* disposed meanwhile: nothing to measure */ },
      )
    }
    return this.heap
  }

  /** Stops the isolate, also in the middle of a call (which then rejects). */
  dispose(): void {
    if (this.isolate.isDisposed) return
    this.stoppedByHost = true
    this.context.release()
    this.isolate.dispose()
    releaseAll(this.hostRefs)
  }
}

/**
 * Drops the host's handles on functions an isolate was given. Disposing the isolate does not: each
 * kept its closure, and with it the plugin's bundle (code and source map, about 0.6 MB), alive for
 * the life of the runtime, for every version ever loaded, even the disabled plugins' that were
 * only evaluated for their name.
 */
function releaseAll(references: ivm.Reference<unknown>[]): void {
  for (const reference of references) reference.release()
}

/**
 * isolated-vm hands a host error's stack to the isolate, and with it the host's file paths and
 * call chain; the plugin gets the error's name and message only.
 */
function withoutHostStack(error: unknown): Error {
  const original = error instanceof Error ? error : new Error(String(error))
  const copy = new Error(original.message)
  copy.name = original.name
  copy.stack = `${original.name}: ${original.message}`
  return copy
}

/** Plugin names become metric attributes, scope names and config keys: keep them plain. */
const pluginName = /^[A-Za-z0-9][\w.-]{0,63}$/
const objectName = /^[a-z0-9_]{1,64}$/

/** The isolate reports its definition; nothing in it is taken on trust. */
function checkDeclaration(d: PluginDeclaration, file: string): void {
  const bad = (what: string) => new PluginFailure(file, 'setup', `the plugin's definition ${what}`, '')
  if (d === null || typeof d !== 'object') throw bad('is missing')
  if (typeof d.name !== 'string' || !pluginName.test(d.name)) {
    throw bad(`has the name ${JSON.stringify(d.name)}; use letters, digits, '_', '.' or '-' (at most 64), starting with a letter or digit`)
  }
  if (!Array.isArray(d.objects) || !d.objects.every((o) => typeof o === 'string' && objectName.test(o))) {
    throw bad(`lists objects ${JSON.stringify(d.objects)}; give library object names like ['exec']`)
  }
  if (d.config === null || typeof d.config !== 'object' || Array.isArray(d.config)) throw bad('has a config that is not an object')
}

/**
 * Records waiting for the isolate, copied out of the provider's buffer when they arrive (the
 * provider may reuse it). Batches of one topic that arrive while the isolate is busy are appended
 * to the same staged batch, up to `StagedBatch.maxBytes`, so a slow isolate gets fewer, larger
 * calls instead of one call per small batch. The bytes live outside the V8 heap and move into
 * the isolate without another copy.
 */
export class StagedBatch {
  /** Most bytes one staged batch collects before a new one starts. */
  static readonly maxBytes = 1024 * 1024
  private buffer: ArrayBuffer
  byteLength = 0
  count = 0
  /** Records lost before the first one (kernel and host drops); the isolate reports them first. */
  readonly lost: number
  /** When the first records arrived (performance.now()). */
  readonly stagedAt = performance.now()
  /** Set once handed to the isolate or released; it takes no more records then. */
  private sealed = false

  constructor(first: RecordBatch, lost: number) {
    this.lost = lost
    /*
     * Just the first batch's room: the buffer moves into the isolate whole and lives there until
     * the isolate's next GC, which a small heap runs rarely. With room for more (4 times the first,
     * at least 64 KiB) eleven plugins' dead buffers held tens of MB of malloc, mostly empty; batches
     * that follow grow it by doubling instead.
     */
    this.buffer = new ArrayBuffer(first.byteLength)
    this.append(first)
  }

  /** Appends `batch` (which lost nothing before it) when it fits and the batch is still open; false otherwise. */
  tryAppend(batch: RecordBatch): boolean {
    if (this.sealed || this.byteLength + batch.byteLength > StagedBatch.maxBytes) return false
    this.append(batch)
    return true
  }

  private append(batch: RecordBatch): void {
    const end = this.byteLength + batch.byteLength
    if (end > this.buffer.byteLength) {
      const grown = new ArrayBuffer(Math.max(end, Math.min(2 * this.buffer.byteLength, StagedBatch.maxBytes)))
      new Uint8Array(grown).set(new Uint8Array(this.buffer, 0, this.byteLength))
      this.buffer = grown
    }
    new Uint8Array(this.buffer, this.byteLength, batch.byteLength).set(new Uint8Array(batch.buffer, 0, batch.byteLength))
    this.byteLength = end
    this.count += batch.count
  }

  /** The bytes, moved (not copied) into an ExternalCopy; the batch is sealed from then on. */
  take(): ivm.ExternalCopy<ArrayBuffer> {
    this.sealed = true
    // a buffer grown by doubling may be half empty: what moves into the isolate is what it holds
    if (this.byteLength < this.buffer.byteLength) this.buffer = this.buffer.transfer(this.byteLength)
    return new ivm.ExternalCopy(this.buffer, { transferOut: true })
  }

  release(): void {
    this.sealed = true
    this.buffer = new ArrayBuffer(0)
  }
}

function toFailure(error: unknown, isolate: ivm.Isolate, plugin: string, bundle: PluginBundle, fallback: FailureKind, stoppedByHost = false): PluginFailure {
  if (error instanceof PluginFailure) return error
  const e = error instanceof Error ? error : new Error(String(error))
  if (stoppedByHost) return new PluginFailure(plugin, fallback, 'was stopped by the runtime during the call', '')
  if (isolate.isDisposed || /disposed during execution due to memory limit/.test(e.message)) {
    return new PluginFailure(plugin, 'memory', 'ran out of memory (isolate memory limit); the isolate was discarded', '')
  }
  if (/Script execution timed out/.test(e.message)) {
    return new PluginFailure(plugin, 'time-budget',
      'exceeded its time budget for one call (an endless loop, or too much work per batch); it was stopped', '')
  }
  const stack = mapStack(e.stack ?? `${e.name}: ${e.message}`, bundle)
  if (e.name === 'EmitFloodError' || /^EmitFloodError/.test(e.stack ?? '')) {
    return new PluginFailure(plugin, 'emit-flood', e.message, stack)
  }
  return new PluginFailure(plugin, fallback, `${e.name}: ${e.message}`, stack)
}
