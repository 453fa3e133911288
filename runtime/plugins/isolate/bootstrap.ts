/**
 * The plugin runtime that runs inside each isolate, before the plugin's bundle. It is bundled once
 * by esbuild into a script and evaluated with `evalClosure`, which hands it the host callbacks as
 * closure arguments: they never appear on `globalThis`, so plugin code cannot reach any isolated-vm
 * reference. The only global it leaves is a frozen `__periscope.install`, which the plugin bundle
 * calls with its definition and the generated decoders. The isolate has no `require`, `process`,
 * timers, `fetch` or module loader to begin with; V8 builtins are all it has besides this.
 *
 * The host drives it through the control object this script returns (never reachable from plugin
 * code): `setup`, `deliver` (one call per batch; the per-event loop is here), `timer` and `state`.
 * Everything the plugin sends out (signals and log lines) is queued and returned from those calls,
 * so nothing crosses the boundary per event.
 */
import { forEachRecord, type RecordCallback } from '../../bpf/batch.ts'
import { decodeStackRecord } from '../../profiling/stack-record.ts'
import { tracepointEvent, type GenericRecordFields, type TracepointEvent, type TracepointFormat } from '../../protocols/tracepoint.ts'
import { uprobeEvent, type GenericUprobeRecordFields, type UprobeEvent } from '../../protocols/uprobe-events.ts'
import type { FrameInput, PerfEventAttach, PluginContext, PluginDefinition, PluginLink, PluginMap, StackSample, TracepointOptions, UprobeAttach, UprobeOptions, UprobeTarget } from '../api.ts'
import { parseDuration } from '../duration.ts'

/** What a `setup`, `deliver` or `timer` call hands back to the host. */
export interface IsolateOutput {
  spans: unknown[]
  metrics: unknown[]
  logs: unknown[]
  profiles: unknown[]
  /** Plugin log lines: [level, message, attributes]. */
  messages: [string, string, unknown][]
}

interface HostReference {
  apply(receiver: undefined, args: unknown[], options: object): Promise<unknown>
  applySync(receiver: undefined, args: unknown[], options: object): unknown
  applyIgnored(receiver: undefined, args: unknown[], options: object): void
}

type Decoder = (view: DataView, offset: number, size: number) => object

declare const $0: HostReference // map operations: (topic, op, key?, value?) => result
declare const $1: HostReference // asynchronous failure: (message, stack) => void
declare const $2: number // most emits + log lines per call before the plugin counts as flooding
declare const $3: number // Unix-epoch ns minus boot-clock ns, measured once by the host
declare const $4: HostReference // attach, detach, iterate and the kernel's tables: (op, ...args) => Promise

const hostMap = $0
const hostFail = $1
const maxOutputPerCall = $2
const bootToWallNs = $3
const hostCall = $4

let definition: PluginDefinition | undefined
let decoders: Record<string, Decoder> = {}
let settingUp = false
let output: IsolateOutput | undefined
let outputCount = 0
let flooded = false
const handlers = new Map<string, ((event: object) => unknown)[]>()
/** ctx.onStack handlers: their batches hold compact unwound records (runtime/profiling/stack-record.ts). */
const stackHandlers = new Map<string, ((sample: StackSample) => unknown)[]>()
const lossHandlers = new Map<string, ((lost: number) => unknown)[]>()
const timers: { ms: number; fn: () => void | Promise<void> }[] = []
const copy = { arguments: { copy: true }, result: { promise: true, copy: true } }

class EmitFloodError extends Error {
  constructor() {
    super(`emitted more than ${maxOutputPerCall} signals and log lines while handling one batch; ` +
      'aggregate before emitting (for example count into a Map and emit from ctx.every)')
    this.name = 'EmitFloodError'
  }
}

function queue(kind: keyof IsolateOutput, item: unknown): void {
  // Checked on every emit and again after the call, so catching the error does not help a flood.
  if (++outputCount > maxOutputPerCall) {
    flooded = true
    throw new EmitFloodError()
  }
  output ??= { spans: [], metrics: [], logs: [], profiles: [], messages: [] }
  output[kind].push(item as never)
}

function takeOutput(): IsolateOutput | undefined {
  if (flooded) throw new EmitFloodError()
  const out = output
  output = undefined
  outputCount = 0
  return out
}

function fail(error: unknown): void {
  const e = error instanceof Error ? error : new Error(String(error))
  hostFail.applyIgnored(undefined, [e.message, e.stack ?? ''], { arguments: { copy: true } })
}

function watch(result: unknown): void {
  if (result !== null && typeof result === 'object' && typeof (result as Promise<unknown>).then === 'function') {
    ;(result as Promise<unknown>).then(undefined, fail)
  }
}

function requireSetup(what: string): void {
  if (!settingUp) throw new Error(`${what} can only be called during setup(); move the call into setup(ctx)`)
}

/**
 * A host call's failure, with the code its message starts with (`EACCES: ...`) set as `code`
 * again: isolated-vm carries an error's message across, not its other properties.
 */
function withCode(error: unknown): unknown {
  if (!(error instanceof Error)) return error
  const code = /^(E[A-Z]+): /.exec(error.message)?.[1]
  if (code !== undefined) (error as Error & { code?: string }).code = code
  return error
}

function call<T>(reference: HostReference, args: unknown[]): Promise<T> {
  return (reference.apply(undefined, args, copy) as Promise<T>).then(undefined, (error: unknown) => { throw withCode(error) })
}

/** A call of `hostCall`, which answers { value } or { error, name } rather than rejecting. */
async function request<T>(args: unknown[]): Promise<T> {
  const answer = await (hostCall.apply(undefined, args, copy) as Promise<{ value?: T; error?: string; name?: string }>)
  if (typeof answer?.error === 'string') {
    const error = new Error(answer.error)
    if (typeof answer.name === 'string') error.name = answer.name
    throw withCode(error)
  }
  return answer.value as T
}

function makeMap(topic: string): PluginMap {
  let info: { keySize: number; valueSize: number; perCpu: boolean }
  try {
    info = hostMap.applySync(undefined, [topic, 'info'], { arguments: { copy: true }, result: { copy: true } }) as typeof info
  } catch (error) {
    throw withCode(error)
  }
  const op = <T>(name: string, ...args: unknown[]) => call<T>(hostMap, [topic, name, ...args])
  return {
    keySize: info.keySize,
    valueSize: info.valueSize,
    perCpu: info.perCpu,
    lookup: (key) => op('lookup', key),
    update: (key, value) => op('update', key, value),
    delete: (key) => op('delete', key),
    entries: () => op('entries'),
    drain: () => op('drain'),
    claim: (key, value) => op('claim', key, value),
    unclaim: (key) => op('unclaim', key),
    lookupPerCpu: (key) => op('lookupPerCpu', key),
    entriesPerCpu: () => op('entriesPerCpu'),
    drainPerCpu: () => op('drainPerCpu'),
  }
}

async function attach(spec: UprobeAttach | PerfEventAttach): Promise<PluginLink> {
  const { id, link } = await request<{ id: number; link: number }>(['attach', spec])
  return { id, detach: async () => { await request<boolean>(['detach', link]) } }
}

/**
 * The listeners of one generic object's config slots (ctx.onTracepoint, ctx.onUprobe): one ring
 * carries the records of every slot, of every plugin, each with its slot as cookie. A version asks
 * for each target once, so a second ask cannot change the options of the first.
 */
class SlotListeners<R extends { cookie: bigint }> {
  readonly #object: string
  readonly #topic: string
  readonly #captures: string
  readonly #byCookie = new Map<number, (record: R) => unknown>()
  readonly #asked = new Set<string>()

  constructor(object: string, captures: string) {
    this.#object = object
    this.#topic = `${object}:events`
    this.#captures = captures
  }

  readonly #dispatch = (record: R): unknown => {
    // another plugin's slot: ignored
    return this.#byCookie.get(Number(record.cookie))?.(record)
  }

  /** Attaches `key`'s slot (`attach`, a host call) and calls `listener(attached)`'s function for each of its records. */
  async listen<A extends { id: number; link: number; cookie: number }>(what: string, key: string, onLoss: unknown, attach: () => Promise<A>, listener: (attached: A) => (record: R) => unknown): Promise<PluginLink> {
    if (!(definition!.objects ?? []).includes(this.#object)) throw withCode(new Error(`EACCES: ${what}: the ${this.#object} object ${this.#captures}; add '${this.#object}' to this plugin's objects: [...]`))
    if (this.#asked.has(key)) throw new Error(`${what}: already listened to by this plugin; handle its events in one handler`)
    this.#asked.add(key)
    if (!handlers.has(this.#topic)) subscribe(what, this.#topic, this.#dispatch as (event: object) => unknown, onLoss, handlers, stackHandlers)
    let attached: A
    try {
      attached = await attach()
    } catch (error) {
      this.#asked.delete(key)
      throw error
    }
    const { id, link, cookie } = attached
    const handle = listener(attached)
    this.#byCookie.set(cookie, handle)
    return {
      id,
      detach: async () => {
        if (this.#byCookie.get(cookie) === handle) this.#byCookie.delete(cookie)
        await request<boolean>(['detach', link])
      },
    }
  }
}

const tracepointListeners = new SlotListeners<GenericRecordFields & { cookie: bigint }>('generic', 'captures tracepoints')
const uprobeListeners = new SlotListeners<GenericUprobeRecordFields & { cookie: bigint }>('generic_uprobe', 'captures function calls')

async function onTracepoint(tracepoint: string, handler: (event: TracepointEvent) => unknown, options: TracepointOptions = {}): Promise<PluginLink> {
  const what = `ctx.onTracepoint('${tracepoint}')`
  requireSetup(what)
  const at = typeof tracepoint === 'string' ? tracepoint.indexOf(':') : -1
  if (at <= 0 || at === tracepoint.length - 1) throw new TypeError(`${what}: name the tracepoint as '<category>:<name>', like 'syscalls:sys_enter_openat'`)
  if (typeof handler !== 'function') throw new TypeError(`${what}: the handler must be a function`)
  if (options === null || typeof options !== 'object') throw new TypeError(`${what}: options must be an object`)
  const { pid, comm, uid } = options
  const strings = options.strings === undefined ? [] : [...options.strings]
  return tracepointListeners.listen(what, tracepoint, options.onLoss,
    () => request<{ id: number; link: number; cookie: number; format: TracepointFormat }>(['tracepoint', {
      category: tracepoint.slice(0, at), name: tracepoint.slice(at + 1), pid, comm, uid, strings: options.strings === undefined ? undefined : strings,
    }]),
    ({ format }) => (record) => handler(tracepointEvent(format, strings, record)))
}

async function onUprobe(target: UprobeTarget, handler: (event: UprobeEvent) => unknown, options: UprobeOptions = {}): Promise<PluginLink> {
  const what = `ctx.onUprobe(${target !== null && typeof target === 'object' ? `'${target.binary}:${target.symbol}'` : ''})`
  requireSetup(what)
  if (target === null || typeof target !== 'object' || typeof target.binary !== 'string' || typeof target.symbol !== 'string') {
    throw new TypeError(`${what}: name the function as { binary: '/absolute/path', symbol: 'name', retprobe?: boolean }`)
  }
  if (typeof handler !== 'function') throw new TypeError(`${what}: the handler must be a function`)
  if (options === null || typeof options !== 'object') throw new TypeError(`${what}: options must be an object`)
  const retprobe = target.retprobe === true
  return uprobeListeners.listen(what, `${target.binary}\0${target.symbol}\0${retprobe}`, options.onLoss,
    () => request<{ id: number; link: number; cookie: number }>(['uprobe', { binary: target.binary, symbol: target.symbol, retprobe, pid: options.pid }]),
    () => (record) => handler(uprobeEvent(record, retprobe)))
}

/** ctx.on and ctx.onStack: a topic is listened to one way or the other, not both. */
function subscribe<T>(what: string, topic: string, handler: (event: T) => unknown, onLoss: unknown, into: Map<string, ((event: T) => unknown)[]>, other: Map<string, unknown>): void {
  requireSetup(what)
  const object = topic.split(':')[0]!
  if (!(definition!.objects ?? []).includes(object)) {
    throw new Error(`${what}('${topic}'): object '${object}' is not in this plugin's objects; add it to objects: [...]`)
  }
  if (decoders[topic] === undefined) {
    throw new Error(`${what}('${topic}'): no such stream; known streams: ${Object.keys(decoders).join(', ') || 'none'}`)
  }
  if (other.has(topic)) throw new Error(`${what}('${topic}'): the topic is already listened to with ${what === 'ctx.on' ? 'ctx.onStack' : 'ctx.on'}; use one of them per topic`)
  if (typeof handler !== 'function') throw new TypeError(`${what}('${topic}'): the handler must be a function`)
  if (onLoss !== undefined && typeof onLoss !== 'function') throw new TypeError(`${what}('${topic}'): onLoss must be a function`)
  const list = into.get(topic) ?? []
  list.push(handler)
  into.set(topic, list)
  if (onLoss !== undefined) lossHandlers.set(topic, [...(lossHandlers.get(topic) ?? []), onLoss as (lost: number) => unknown])
}

function makeContext(config: Record<string, unknown>, state: Record<string, unknown>): PluginContext<never> {
  const objects = new Set(definition!.objects ?? [])
  const message = (level: string) => (text: string, attributes?: unknown) =>
    queue('messages', [level, String(text), attributes ?? null])
  return {
    config: config as never,
    state,
    log: { debug: message('debug'), info: message('info'), warn: message('warn'), error: message('error') },
    emit: {
      span: (span) => queue('spans', span),
      metric: (point) => queue('metrics', point),
      log: (record) => queue('logs', record),
      profile: (sample) => queue('profiles', sample),
    },
    on(topic, handler, options) {
      subscribe('ctx.on', topic, handler, options?.onLoss, handlers, stackHandlers)
    },
    onStack(topic, handler, options) {
      subscribe('ctx.onStack', topic, handler, options?.onLoss, stackHandlers, handlers)
    },
    symbolize: (stacks) => request<FrameInput[][]>(['symbolize', stacks]),
    map(topic) {
      const object = topic.split(':')[0]!
      if (!objects.has(object)) {
        throw new Error(`ctx.map('${topic}'): object '${object}' is not in this plugin's objects; add it to objects: [...]`)
      }
      return makeMap(topic)
    },
    every(interval, fn) {
      requireSetup('ctx.every')
      const ms = parseDuration(interval)
      if (ms === undefined || ms < 10) throw new Error(`ctx.every('${interval}'): give a duration of at least 10ms, like '500ms' or '10s'`)
      if (typeof fn !== 'function') throw new TypeError(`ctx.every('${interval}'): the callback must be a function`)
      timers.push({ ms, fn })
    },
    time: { wallNs: (bootNs) => bootNs + bootToWallNs },
    attach,
    onTracepoint,
    onUprobe,
    iterate: (program, options) => request<string>(['iterate', program, options]),
    kernel: {
      syscallNames: () => request<string[]>(['syscallNames']),
      syscalls: () => request(['syscalls']),
      errnoNames: () => request<string[]>(['errnoNames']),
    },
  }
}

let ctx: PluginContext<never> | undefined
const dispatchers = new Map<string, RecordCallback>()

/**
 * Decodes one record and calls the topic's handlers. Made once per topic, after setup (when the
 * handlers are final), rather than per batch: a new closure per batch costs 1-2 ns per record.
 */
function dispatcherFor(topic: string): RecordCallback | undefined {
  const made = dispatchers.get(topic)
  if (made !== undefined) return made
  const stacks = stackHandlers.get(topic) as ((event: object) => unknown)[] | undefined
  const list = stacks ?? handlers.get(topic)
  const decode: Decoder | undefined = stacks !== undefined ? decodeStackRecord : decoders[topic]
  if (list === undefined || decode === undefined) return undefined
  const single = list.length === 1 ? list[0]! : undefined
  const dispatch: RecordCallback = single !== undefined
    ? (view, offset, size) => {
        const r = single(decode(view, offset, size))
        if (r !== undefined) watch(r)
      }
    : (view, offset, size) => {
        const event = decode(view, offset, size)
        for (const handler of list) watch(handler(event))
      }
  dispatchers.set(topic, dispatch)
  return dispatch
}

/** Handed to the host as the script's result; plugin code never sees it. */
export const control = {
  /** Name, objects and config defaults, as the bundle declared them. */
  definition() {
    if (definition === undefined) {
      throw new Error('the plugin file has no default export from definePlugin(); write `export default definePlugin({ name, setup(ctx) {} })`')
    }
    return { name: definition.name, objects: [...(definition.objects ?? [])], config: definition.config ?? {} }
  },
  async setup(config: Record<string, unknown>, state: Record<string, unknown>) {
    ctx = makeContext(config, state)
    settingUp = true
    try {
      await definition!.setup(ctx)
    } finally {
      settingUp = false
    }
    return { topics: [...handlers.keys(), ...stackHandlers.keys()], stackTopics: [...stackHandlers.keys()], timers: timers.map((t) => t.ms), output: takeOutput() }
  },
  /**
   * The per-event loop: decode each record of the batch and call the topic's handlers, after the
   * topic's onLoss handlers when `lost` records went missing just before it.
   */
  deliver(topic: string, buffer: ArrayBuffer, byteLength: number, lost: number) {
    const dispatch = dispatcherFor(topic)
    if (dispatch === undefined) return undefined
    if (lost > 0) for (const onLoss of lossHandlers.get(topic) ?? []) watch(onLoss(lost))
    forEachRecord({ buffer, byteLength }, dispatch)
    return takeOutput()
  },
  async timer(index: number) {
    await timers[index]!.fn()
    return takeOutput()
  },
  /** A copy of ctx.state for the next version (the host copies the result out). */
  state() {
    return ctx?.state ?? {}
  },
}

Object.defineProperty(globalThis, '__periscope', {
  value: Object.freeze({
    install(plugin: PluginDefinition, generated: Record<string, Decoder>) {
      if (definition !== undefined) throw new Error('__periscope.install is called once, by the plugin bundle')
      if (plugin === null || typeof plugin !== 'object' || typeof plugin.name !== 'string' || typeof plugin.setup !== 'function') {
        throw new TypeError('the default export must be definePlugin({ name: string, setup(ctx) {...} })')
      }
      definition = plugin
      decoders = generated
    },
  }),
})
