/**
 * One version of one plugin, in its own isolated-vm isolate: a memory limit, a CPU-time budget per
 * call, and a fixed set of host callbacks (map access, asynchronous failure). Everything that goes
 * wrong inside is turned into a `PluginFailure` with a stack mapped back to the plugin's `.ts`.
 */
import ivm from 'isolated-vm'
import type { RecordBatch } from '../bpf/batch.ts'
import { bootstrapScript, mapStack, type PluginBundle } from './build.ts'
import type { IsolateOutput } from './isolate/bootstrap.ts'

export type { IsolateOutput }

export type FailureKind = 'throw' | 'cpu-budget' | 'memory' | 'emit-flood' | 'setup'

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
  /** Wall time one batch, timer run or setup may take inside the isolate before it is stopped. */
  callBudgetMs: number
  /** Signals plus log lines one call may queue; more is an emit flood. */
  maxOutputPerCall: number
}

export const defaultLimits: SandboxLimits = { memoryMb: 64, callBudgetMs: 1000, maxOutputPerCall: 100_000 }

export interface SandboxHost {
  /** `op` is info, lookup, update, delete or entries; see PluginMap. */
  map(topic: string, op: string, key?: Uint8Array, value?: Uint8Array): unknown
  /** A handler's or timer's promise rejected after the call that started it returned. */
  asyncFailure(failure: PluginFailure): void
}

export interface PluginDeclaration {
  name: string
  objects: string[]
  config: Record<string, unknown>
}

export interface SetupResult {
  topics: string[]
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

  private constructor(bundle: PluginBundle, declaration: PluginDeclaration, isolate: ivm.Isolate, context: ivm.Context, functions: Functions, limits: SandboxLimits) {
    this.bundle = bundle
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
    try {
      const context = await isolate.createContext()
      let name = label
      // Synchronous, because the isolate reads a map's key and value sizes with applySync.
      const mapRef = new ivm.Reference((topic: string, op: string, key?: Uint8Array, value?: Uint8Array) =>
        host.map(topic, op, key, value))
      const failRef = new ivm.Reference((message: string, stack: string) => {
        host.asyncFailure(new PluginFailure(name, 'throw', `asynchronous failure: ${message}`, mapStack(stack, bundle)))
      })
      const control = (await context.evalClosure(
        `${await bootstrapScript()}\nreturn bootstrap.control`,
        [mapRef, failRef, limits.maxOutputPerCall],
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
      name = declaration.name
      const functions = {
        setup: await get('setup'),
        deliver: await get('deliver'),
        timer: await get('timer'),
        state: await get('state'),
      }
      return new PluginSandbox(bundle, declaration, isolate, context, functions, limits)
    } catch (error) {
      if (!isolate.isDisposed) isolate.dispose()
      throw error
    }
  }

  get name(): string {
    return this.declaration.name
  }

  get disposed(): boolean {
    return this.isolate.isDisposed
  }

  /** Runs the plugin's setup(ctx); a throw here is a 'setup' failure and leaves the caller's old version in charge. */
  async setup(config: Record<string, unknown>, state: Record<string, unknown>): Promise<SetupResult> {
    try {
      return (await this.functions.setup.apply(
        undefined,
        [new ivm.ExternalCopy(config).copyInto({ release: true }), new ivm.ExternalCopy(state).copyInto({ release: true })],
        { timeout: this.limits.callBudgetMs, result: { promise: true, copy: true } },
      )) as SetupResult
    } catch (error) {
      throw toFailure(error, this.isolate, this.name, this.bundle, 'setup')
    }
  }

  /** Hands one whole batch to the isolate, which runs the per-event loop. */
  async deliver(topic: string, batch: RecordBatch | PreparedBatch): Promise<IsolateOutput | undefined> {
    const copy = batch instanceof PreparedBatch ? batch.copy : new ivm.ExternalCopy(batch.buffer)
    try {
      return (await this.functions.deliver.apply(
        undefined,
        [topic, copy.copyInto({ release: true, transferIn: true }), batch.byteLength, batch.count],
        { timeout: this.limits.callBudgetMs, result: { copy: true } },
      )) as IsolateOutput | undefined
    } catch (error) {
      throw toFailure(error, this.isolate, this.name, this.bundle, 'throw')
    }
  }

  async timer(index: number): Promise<IsolateOutput | undefined> {
    try {
      return (await this.functions.timer.apply(undefined, [index], {
        timeout: this.limits.callBudgetMs,
        result: { promise: true, copy: true },
      })) as IsolateOutput | undefined
    } catch (error) {
      throw toFailure(error, this.isolate, this.name, this.bundle, 'throw')
    }
  }

  /** A structured copy of ctx.state; fails (with the reason) when it holds functions or the like. */
  async state(): Promise<Record<string, unknown>> {
    return (await this.functions.state.apply(undefined, [], {
      timeout: this.limits.callBudgetMs,
      result: { copy: true },
    })) as Record<string, unknown>
  }

  /** CPU time the isolate has used, in nanoseconds. */
  cpuTimeNs(): bigint {
    return this.isolate.isDisposed ? 0n : this.isolate.cpuTime
  }

  heapBytes(): number {
    if (this.isolate.isDisposed) return 0
    const heap = this.isolate.getHeapStatisticsSync()
    return heap.used_heap_size + heap.externally_allocated_size
  }

  dispose(): void {
    if (this.isolate.isDisposed) return
    this.context.release()
    this.isolate.dispose()
  }
}

/**
 * A batch copied out of the provider's buffer when it arrives, so the provider may reuse its
 * buffer and the queued copy lives outside the V8 heap until the isolate takes it over.
 */
export class PreparedBatch {
  readonly copy: ivm.ExternalCopy<ArrayBuffer>
  readonly byteLength: number
  readonly count: number
  readonly lost: number
  constructor(batch: RecordBatch) {
    this.copy = new ivm.ExternalCopy(batch.buffer.byteLength === batch.byteLength ? batch.buffer : batch.buffer.slice(0, batch.byteLength))
    this.byteLength = batch.byteLength
    this.count = batch.count
    this.lost = batch.lost
  }

  release(): void {
    this.copy.release()
  }
}

function toFailure(error: unknown, isolate: ivm.Isolate, plugin: string, bundle: PluginBundle, fallback: FailureKind): PluginFailure {
  if (error instanceof PluginFailure) return error
  const e = error instanceof Error ? error : new Error(String(error))
  if (isolate.isDisposed || /disposed during execution due to memory limit/.test(e.message)) {
    return new PluginFailure(plugin, 'memory', 'ran out of memory (isolate memory limit); the isolate was discarded', '')
  }
  if (/Script execution timed out/.test(e.message)) {
    return new PluginFailure(plugin, 'cpu-budget',
      'exceeded its CPU-time budget for one call (an endless loop, or too much work per batch); it was stopped', '')
  }
  const stack = mapStack(e.stack ?? `${e.name}: ${e.message}`, bundle)
  if (e.name === 'EmitFloodError' || /^EmitFloodError/.test(e.stack ?? '')) {
    return new PluginFailure(plugin, 'emit-flood', e.message, stack)
  }
  return new PluginFailure(plugin, fallback, `${e.name}: ${e.message}`, stack)
}
