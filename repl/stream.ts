/**
 * Streams of events for the REPL: `trace(...)` (repl/explore.ts) returns a `Stream`, and
 * `.filter`, `.map`, `.take`, `.print` and `.json` make new streams from it; `.count`, `.sum`,
 * `.avg`, `.min`, `.max`, `.stats`, `.hist` and `.lhist` make an `Aggregate`: a bpftrace map
 * named `@`, filled with bpftrace 0.17's arithmetic (repl/bpftrace/aggregate.ts) and printed
 * exactly as bpftrace prints the same map (repl/printers.ts): `.count('comm')` prints what
 * `@[comm] = count()` prints when bpftrace exits, two newlines included.
 *
 * A stream is a description: nothing attaches until it runs, through `run(out, signal)` (what
 * the shell does with a value that is a `Runnable`) or `for await`. Each run opens its source
 * (attaches its probes) and closes it (detaches them) when the run ends: the source ended,
 * `.take(n)` reached n, `signal` aborted (Ctrl-C), a function given to an operator threw, or a
 * `for await` loop was left. Running a stream twice attaches twice, and an aggregate starts
 * each run from an empty map.
 *
 * Events go through the operators straight from the source's callback: no queue and no promise
 * per event, except in `for await`, which needs a queue to hand events to the loop.
 */
import { inspect } from 'node:util'
import type { KernelFilter, TracepointRequest } from '../runtime/kernel/tracepoints.ts'
import { UserSpaceAggregator } from './bpftrace/aggregate.ts'
import type { KeyPart, KeyType, LinearRange, MapKind, MapShape, MapSnapshot } from './maps.ts'
import { mapJson, mapText } from './printers.ts'

export interface Output {
  write(text: string): void
}

/** Something the shell runs until it ends or Ctrl-C: prints through `out`. */
export interface Runnable {
  run(out: Output, signal: AbortSignal): Promise<void>
}

export interface Subscription {
  /** events the source lost (the kernel's ring buffer was full) */
  dropped(): number
  /** stops delivery and detaches; called once, when the run ends */
  close(): void
}

/** Where a stream's events come from: the kernel for `trace()`, values at hand for `Stream.from()`. */
export interface Source<T> {
  /**
   * Starts delivering events to `push`; resolves once attached. `end()` says no more will
   * come; `end(error)` that an error stopped the source.
   */
  open(push: (event: T) => void, end: (error?: unknown) => void): Promise<Subscription>
}

/** How a stream's events print, one line each (without its newline). */
export interface EventFormat<T> {
  text(event: T): string
  /** the `data` of a `{"type": "event", "data": ...}` line */
  json(event: T): string
}

/** What a stream knows of its events' fields, for checking field names before anything attaches. */
export interface EventFields {
  /** what the events are, for messages: `tracepoint:syscalls:sys_enter_openat` */
  what: string
  /** fields of the event itself: `comm`, `pid`, ... */
  top: string[]
  /** fields under `args` */
  args: string[]
}

/** A field by name (`comm`, `args.filename`, or a tracepoint field's own name `filename`), or a function of the event. */
export type Selector<T> = string | ((event: T) => unknown)
/** A map's key: one selector, or one per key part (`['comm', 'pid']` keys as bpftrace's `@[comm, pid]`). */
export type KeySelector<T> = Selector<T> | Selector<T>[]

/** A function `trace()` traces: at its calls, or its returns. */
export interface UprobeFunction {
  binary: string
  symbol: string
  retprobe: boolean
}

/** Where a stream's events come from, as plugin.fromStream (repl/from-stream.ts) can write it into a plugin. */
export type SourceRecipe =
  | { kind: 'tracepoints'; requests: TracepointRequest[]; probes: string[] }
  /** `filter.pid` in the kernel, `comm` and `uid` in user space, as trace() filters them */
  | { kind: 'uprobes'; functions: UprobeFunction[]; probes: string[]; filter: KernelFilter }
  /** a source a plugin cannot have yet (uprobes, profiles, values at hand): `what` says which */
  | { kind: 'other'; what: string }

/** One operator of a stream, as typed: `.filter(fn)`, `.map(fn)`, `.take(n)`. */
export type Step = { op: 'filter' | 'map'; fn: (event: never) => unknown } | { op: 'take'; n: number }

/** What a stream is made of, for plugin.fromStream. */
export interface Recipe {
  source: SourceRecipe
  steps: Step[]
  /** the fields of the events that reach the end (undefined after a `.map()`) */
  fields: EventFields | undefined
}

/** What an aggregate is made of: its stream's recipe and the map it fills. */
export interface AggregateRecipe extends Recipe {
  kind: MapKind
  value: Selector<unknown> | undefined
  by: Selector<unknown>[]
  range: LinearRange | undefined
}

/** The key of a stream's or an aggregate's recipe; a symbol, so it stays out of tab completion. */
export const RECIPE = Symbol('recipe')

interface Sink<T> {
  push(event: T): void
  /** no more events wanted (`.take(n)` reached n) */
  end(): void
}

/** One operator: given the sink after it (and where prints go), the sink before it. */
type Operator<In, Out> = (downstream: Sink<Out>, out: Output) => Sink<In>

interface Pipeline {
  source: Source<unknown>
  /** all operators, composed: from the terminal sink to the sink the source pushes into */
  operators: Operator<unknown, unknown>
  format: EventFormat<unknown>
  /** whether `.print()` or `.json()` prints the events already, and in which form */
  prints: 'text' | 'json' | undefined
  fields: EventFields | undefined
  sourceRecipe: SourceRecipe
  steps: Step[]
}

/** Runs a stream once: each event to `terminal`; resolves with the count of lost events. */
type Drive<T> = (terminal: (event: T) => void, out: Output, signal?: AbortSignal) => Promise<number>

/** How far a `for await` loop may fall behind before it fails, rather than queue without bound. */
const ITERATION_BACKLOG = 100_000

/** JSON in bpftrace's spacing (`{"a": 1, "b": [2, 3]}`), bigints as plain numbers. */
export function jsonValue(value: unknown): string {
  switch (typeof value) {
    case 'bigint': return `${value}`
    case 'number': return Number.isFinite(value) ? `${value}` : 'null'
    case 'boolean': return `${value}`
    case 'string': return JSON.stringify(value)
    case 'object': {
      if (value === null) return 'null'
      if (Array.isArray(value)) return `[${value.map(jsonValue).join(', ')}]`
      const fields = Object.entries(value).filter(([, v]) => v !== undefined && typeof v !== 'function')
      return `{${fields.map(([k, v]) => `${JSON.stringify(k)}: ${jsonValue(v)}`).join(', ')}}`
    }
    default: return 'null'
  }
}

/** How values without a format of their own print: strings as they are, the rest as the REPL shows them, on one line. */
export const VALUE_FORMAT: EventFormat<unknown> = {
  text: (value) => (typeof value === 'string' ? value : inspect(value, { breakLength: Infinity, compact: true, depth: 4 })),
  json: jsonValue,
}

/** How to end each `for await` loop over a stream that runs now. */
const liveIterations = new Set<() => void>()

/**
 * Ends every `for await` loop over a stream that runs, as a `break` would: its probes detach and
 * its next `next()` is done. The REPL's Ctrl-C: node gives the prompt back, but cannot end a loop
 * that awaits, which would otherwise go on in the background with its probes attached.
 */
export function endIterations(): void {
  for (const end of liveIterations) end()
}

export class Stream<T> implements AsyncIterable<T>, Runnable {
  #pipeline: Pipeline

  /**
   * A stream of what `source` delivers; `fields` lets field names be checked before a run;
   * `recipe` says what the source is, for plugin.fromStream.
   */
  constructor(source: Source<T>, format: EventFormat<T> = VALUE_FORMAT, fields?: EventFields, recipe: SourceRecipe = { kind: 'other', what: 'a stream made with new Stream()' }) {
    this.#pipeline = { source: source as Source<unknown>, operators: (downstream) => downstream, format: format as EventFormat<unknown>, prints: undefined, fields, sourceRecipe: recipe, steps: [] }
  }

  /** What this stream is made of (plugin.fromStream). */
  get [RECIPE](): Recipe {
    return { source: this.#pipeline.sourceRecipe, steps: [...this.#pipeline.steps], fields: this.#pipeline.fields }
  }

  /** A stream of the given values: data at hand, and tests (each run iterates `values` again: an array delivers them all again). */
  static from<T>(values: Iterable<T>, format?: EventFormat<T>, fields?: EventFields): Stream<T> {
    return new Stream<T>({
      async open(push, end) {
        let closed = false
        // delivered once open() has resolved, as a kernel source delivers once attached
        setImmediate(() => {
          for (const value of values) {
            if (closed) return
            push(value)
          }
          end()
        })
        return { dropped: () => 0, close: () => { closed = true } }
      },
    }, format, fields, { kind: 'other', what: 'values at hand (Stream.from)' })
  }

  /** This stream with one more operator; `step` records it for plugin.fromStream (printing does not change the events). */
  #then<U>(operator: Operator<T, U>, changes: Partial<Pick<Pipeline, 'format' | 'prints' | 'fields'>> = {}, step?: Step): Stream<U> {
    const before = this.#pipeline.operators
    const next = new Stream<U>(this.#pipeline.source as Source<U>)
    next.#pipeline = {
      ...this.#pipeline,
      ...changes,
      operators: (downstream, out) => before(operator(downstream as Sink<U>, out) as Sink<unknown>, out),
      steps: step === undefined ? this.#pipeline.steps : [...this.#pipeline.steps, step],
    }
    return next
  }

  /** The events `keep` returns true for. */
  filter(keep: (event: T) => boolean): Stream<T> {
    return this.#then<T>((downstream) => ({
      push: (event) => { if (keep(event)) downstream.push(event) },
      end: downstream.end,
    }), {}, { op: 'filter', fn: keep })
  }

  /** Each event as `transform` makes it; the result prints as the REPL shows values. */
  map<U>(transform: (event: T) => U): Stream<U> {
    return this.#then<U>((downstream) => ({
      push: (event) => downstream.push(transform(event)),
      end: downstream.end,
    }), { format: VALUE_FORMAT, fields: undefined }, { op: 'map', fn: transform })
  }

  /** The first `n` events; the run ends (and detaches) once they have passed. */
  take(n: number): Stream<T> {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`take(${n}): give a whole number of events, 1 or more`)
    return this.#then<T>((downstream) => {
      let taken = 0
      return {
        push: (event) => {
          if (taken === n) return
          taken++
          downstream.push(event)
          if (taken === n) downstream.end()
        },
        end: downstream.end,
      }
    }, {}, { op: 'take', n })
  }

  /** Prints each event on a line as it passes (to the run's output; to stdout in `for await`). */
  print(): Stream<T> {
    const format = this.#pipeline.format as EventFormat<T>
    return this.#then<T>((downstream, out) => ({
      push: (event) => {
        out.write(`${format.text(event)}\n`)
        downstream.push(event)
      },
      end: downstream.end,
    }), { prints: 'text' })
  }

  /** Prints each event as a `{"type": "event", "data": ...}` line as it passes; lost events print as bpftrace's `-f json` prints them. */
  json(): Stream<T> {
    const format = this.#pipeline.format as EventFormat<T>
    return this.#then<T>((downstream, out) => ({
      push: (event) => {
        out.write(`{"type": "event", "data": ${format.json(event)}}\n`)
        downstream.push(event)
      },
      end: downstream.end,
    }), { prints: 'json' })
  }

  /** `@[by] = count()` (`@ = count()` without `by`). */
  count(by?: KeySelector<T>): Aggregate {
    return this.#aggregate('count', undefined, by)
  }

  /** `@[by] = sum(value)`. */
  sum(value: Selector<T>, by?: KeySelector<T>): Aggregate {
    return this.#aggregate('sum', value, by)
  }

  /** `@[by] = avg(value)`. */
  avg(value: Selector<T>, by?: KeySelector<T>): Aggregate {
    return this.#aggregate('avg', value, by)
  }

  /** `@[by] = min(value)`, with bpftrace 0.17's quirks (see repl/bpftrace/aggregate.ts). */
  min(value: Selector<T>, by?: KeySelector<T>): Aggregate {
    return this.#aggregate('min', value, by)
  }

  /** `@[by] = max(value)`, with bpftrace 0.17's quirks (see repl/bpftrace/aggregate.ts). */
  max(value: Selector<T>, by?: KeySelector<T>): Aggregate {
    return this.#aggregate('max', value, by)
  }

  /** `@[by] = stats(value)`. */
  stats(value: Selector<T>, by?: KeySelector<T>): Aggregate {
    return this.#aggregate('stats', value, by)
  }

  /** `@[by] = hist(value)`: power-of-two buckets. */
  hist(value: Selector<T>, by?: KeySelector<T>): Aggregate {
    return this.#aggregate('hist', value, by)
  }

  /** `@[by] = lhist(value, min, max, step)`: linear buckets. */
  lhist(value: Selector<T>, min: number, max: number, step: number, by?: KeySelector<T>): Aggregate {
    return this.#aggregate('lhist', value, by, linearRange(min, max, step))
  }

  #aggregate(kind: MapKind, value: Selector<T> | undefined, by: KeySelector<T> | undefined, range?: LinearRange): Aggregate {
    const fields = this.#pipeline.fields
    const call = `.${kind}`
    const selectors = by === undefined ? [] : Array.isArray(by) ? by : [by]
    const spec: MapSpec<T> = {
      shape: { name: '@', kind, signed: kind === 'sum', keys: selectors.map(() => 'integer'), ...(range ? { range } : {}) },
      call,
      key: keyOf(selectors.map((s) => accessor(s, fields, call)), call),
      value: value === undefined ? undefined : valueOf(accessor(value, fields, call), call),
    }
    const recipe: AggregateRecipe = { ...this[RECIPE], kind, value: value as Selector<unknown> | undefined, by: selectors as Selector<unknown>[], range }
    return new Aggregate((terminal, out, signal) => this.#drive(terminal as (event: T) => void, out, signal), spec as MapSpec<unknown>, recipe)
  }

  /** Prints each event, one line each, until the stream ends or `signal` aborts; then lost events, as bpftrace prints them. */
  async run(out: Output, signal: AbortSignal): Promise<void> {
    const { format, prints } = this.#pipeline
    const terminal = prints ? () => {} : (event: T) => out.write(`${format.text(event)}\n`)
    const lost = await this.#drive(terminal, out, signal)
    if (lost > 0) out.write(prints === 'json' ? `{"type": "lost_events", "data": {"events": ${lost}}}\n` : `Lost ${lost} events\n`)
  }

  /** Attaches, hands each event through the operators to `terminal`, detaches; resolves with the events the source lost. */
  async #drive(terminal: (event: T) => void, out: Output, signal?: AbortSignal): Promise<number> {
    if (signal?.aborted) return 0
    const { promise: finished, resolve } = Promise.withResolvers<void>()
    let ended = false
    let failure: { error: unknown } | undefined
    const finish = (error?: { error: unknown }) => {
      if (ended) return
      ended = true
      failure = error
      resolve()
    }
    const head = this.#pipeline.operators({ push: terminal as (event: unknown) => void, end: () => finish() }, out)
    const push = (event: unknown) => {
      if (ended) return
      // an operator's function threw: the run ends with its error, and the source never sees it
      try { head.push(event) } catch (error) { finish({ error }) }
    }
    const onAbort = () => finish()
    signal?.addEventListener('abort', onAbort, { once: true })
    let subscription: Subscription | undefined
    let lost = 0
    try {
      subscription = await this.#pipeline.source.open(push, (error) => finish(error === undefined ? undefined : { error }))
      await finished
    } finally {
      signal?.removeEventListener('abort', onAbort)
      lost = subscription?.dropped() ?? 0
      subscription?.close()
    }
    if (failure) throw failure.error
    return lost
  }

  /** `for await (const event of stream)`: attaches at the first `next()`, detaches when the loop ends or is left. */
  [Symbol.asyncIterator](): AsyncIterator<T> {
    const queue: T[] = []
    let head = 0
    let wake: (() => void) | undefined
    let done = false
    let failure: { error: unknown } | undefined
    /** the loop was left (break, return, throw): what is still queued is not wanted */
    let left = false
    const stop = new AbortController()
    const end = () => {
      left = true
      stop.abort()
    }
    liveIterations.add(end)
    const running = this.#drive((event) => {
      if (queue.length - head >= ITERATION_BACKLOG) throw new Error(`the for await loop fell ${ITERATION_BACKLOG} events behind the stream and stopped it: filter or aggregate in the stream (.filter(), .count(), trace(spec, { pid })) rather than in the loop`)
      queue.push(event)
      wake?.()
    }, { write: (text) => void process.stdout.write(text) }, stop.signal).then((lost) => {
      if (lost > 0) process.emitWarning(`the kernel dropped ${lost} events of this stream (its ring buffer was full): filter in the kernel with trace(spec, { pid, comm })`)
    }, (error: unknown) => { failure = { error } }).finally(() => {
      done = true
      liveIterations.delete(end)
      wake?.()
    })
    return {
      next: async (): Promise<IteratorResult<T>> => {
        if (left) return { value: undefined, done: true }
        while (head === queue.length && !done) await new Promise<void>((resolve) => { wake = resolve })
        wake = undefined
        // ended from outside (endIterations) while it waited: what is queued is not wanted
        if (left) return { value: undefined, done: true }
        if (head < queue.length) {
          const value = queue[head++]
          // drop what the loop has read once it is most of the queue, so the queue does not only grow
          if (head >= 1024 && head * 2 >= queue.length) {
            queue.splice(0, head)
            head = 0
          }
          return { value, done: false }
        }
        if (failure) {
          const { error } = failure
          failure = undefined
          throw error
        }
        return { value: undefined, done: true }
      },
      return: async (): Promise<IteratorResult<T>> => {
        end()
        await running
        return { value: undefined, done: true }
      },
    }
  }
}

interface MapSpec<T> {
  /** the map's shape; `keys` says how many parts a key has, their types come from the first event */
  shape: MapShape
  /** the operator's name, for messages */
  call: string
  key: (event: T) => KeyPart[]
  value: ((event: T) => bigint) | undefined
}

/** Prints the map, as `print(@, top)` every `every` and as bpftrace's exit at the end. */
export class Aggregate implements Runnable {
  readonly #drive: Drive<unknown>
  readonly #spec: MapSpec<unknown>
  readonly #recipe: AggregateRecipe
  readonly #top: number
  readonly #everyMs: number
  readonly #json: boolean
  /** the map of the run under way, or of the last run */
  #snapshot: () => MapSnapshot

  /** Made by a stream's `.count()`, `.hist()`, ...: `drive` runs the stream into the map. */
  constructor(drive: Drive<unknown>, spec: MapSpec<unknown>, recipe: AggregateRecipe, options: { top?: number; everyMs?: number; json?: boolean } = {}) {
    this.#drive = drive
    this.#spec = spec
    this.#recipe = recipe
    this.#top = options.top ?? 0
    this.#everyMs = options.everyMs ?? 0
    this.#json = options.json ?? false
    const empty: MapSnapshot = { ...spec.shape, entries: [] }
    this.#snapshot = () => empty
  }

  #with(options: { top?: number; everyMs?: number; json?: boolean }): Aggregate {
    return new Aggregate(this.#drive, this.#spec, this.#recipe, { top: this.#top, everyMs: this.#everyMs, json: this.#json, ...options })
  }

  /** What this aggregate is made of (plugin.fromStream). */
  get [RECIPE](): AggregateRecipe {
    return { ...this.#recipe, steps: [...this.#recipe.steps], by: [...this.#recipe.by] }
  }

  /** Prints only the `n` largest entries, as bpftrace's `print(@, n)` (which ignores `n` for avg and stats maps; this does not). */
  top(n: number): Aggregate {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`top(${n}): give a whole number of entries, 1 or more`)
    return this.#with({ top: n })
  }

  /** Also prints the map every `interval` (`'1s'`, `'500ms'`, `'1m'`), as `interval:s:1 { print(@); }` does; the map is kept between prints. */
  every(interval: string): Aggregate {
    return this.#with({ everyMs: intervalMs(interval) })
  }

  /** Prints in bpftrace's `-f json` form. */
  json(): Aggregate {
    return this.#with({ json: true })
  }

  /** The map as it stands: during a run, what it holds so far; after one, what it ended with. All entries, whatever `top()` says. */
  snapshot(): MapSnapshot {
    return this.#snapshot()
  }

  #print(map: MapSnapshot): string {
    return this.#json ? mapJson(map, this.#top) : mapText(map, this.#top)
  }

  async run(out: Output, signal: AbortSignal): Promise<void> {
    const { shape, key, value, call } = this.#spec
    const aggregator = new UserSpaceAggregator([shape])
    const update = updater(shape.kind, aggregator)
    let keyTypes: KeyType[] | undefined
    const snapshot = (): MapSnapshot => ({ ...aggregator.snapshot(0), keys: keyTypes ?? shape.keys })
    this.#snapshot = snapshot
    const timer = this.#everyMs > 0 ? setInterval(() => out.write(this.#print(snapshot())), this.#everyMs) : undefined
    let lost: number
    try {
      lost = await this.#drive((event) => {
        const parts = key(event)
        if (keyTypes) checkKeyTypes(parts, keyTypes, call)
        else keyTypes = parts.map((part) => (typeof part === 'string' ? 'string' : 'integer'))
        update(parts, value?.(event) ?? 0n)
      }, out, signal)
    } finally {
      clearInterval(timer)
      const final = snapshot()
      this.#snapshot = () => final
    }
    if (lost > 0) out.write(this.#json ? `{"type": "lost_events", "data": {"events": ${lost}}}\n` : `Lost ${lost} events\n`)
    out.write(`\n\n${this.#print(this.#snapshot())}`)
  }
}

/** How one event updates map 0 of `aggregator`. */
function updater(kind: MapKind, aggregator: UserSpaceAggregator): (key: KeyPart[], value: bigint) => void {
  switch (kind) {
    case 'count': return (key) => aggregator.count(0, key)
    case 'sum': return (key, value) => aggregator.sum(0, key, value)
    case 'min': return (key, value) => aggregator.min(0, key, value)
    case 'max': return (key, value) => aggregator.max(0, key, value)
    case 'avg':
    case 'stats': return (key, value) => aggregator.avg(0, key, value)
    case 'hist': return (key, value) => aggregator.hist(0, key, value)
    case 'lhist': return (key, value) => aggregator.lhist(0, key, value)
    default: throw new Error(`no stream operator makes ${kind} maps`)
  }
}

/** lhist bounds, checked as bpftrace checks them. */
function linearRange(min: number, max: number, step: number): LinearRange {
  const bounds = { min, max, step }
  for (const [name, bound] of Object.entries(bounds)) {
    if (!Number.isInteger(bound) || bound < 0) throw new RangeError(`lhist: invalid ${name} value ${bound} (must be a non-negative integer)`)
  }
  if (step === 0) throw new RangeError('lhist() step must be >= 1')
  if (min > max) throw new RangeError('lhist() min must be less than max')
  if ((max - min) / step > 1000) throw new RangeError('lhist() too many buckets, must be <= 1000')
  return bounds
}

/** `'1s'`, `'500ms'`, `'1m'` in milliseconds. */
function intervalMs(interval: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(interval)
  const ms = match ? Number(match[1]) * { ms: 1, s: 1000, m: 60_000 }[match[2] as 'ms' | 's' | 'm'] : NaN
  if (!(ms >= 1)) throw new RangeError(`every(${JSON.stringify(interval)}): give an interval of 1ms or more, as '500ms', '1s' or '1m'`)
  return ms
}

function fieldList(fields: EventFields): string {
  return [...fields.top, ...fields.args.map((name) => `args.${name}`)].join(', ')
}

/** How a selector reads an event; a field name is checked against `fields` when the stream knows them. */
function accessor<T>(selector: Selector<T>, fields: EventFields | undefined, call: string): (event: T) => unknown {
  if (typeof selector === 'function') return selector
  if (typeof selector !== 'string') throw new TypeError(`${call}(): give a field name or a function of the event, not ${inspect(selector)}`)
  const argument = selector.startsWith('args.') ? selector.slice('args.'.length) : undefined
  if (fields) {
    const inArgs = argument !== undefined ? fields.args.includes(argument) : !fields.top.includes(selector) && fields.args.includes(selector)
    if (!inArgs && (argument !== undefined || !fields.top.includes(selector))) throw new Error(`${call}(${JSON.stringify(selector)}): ${fields.what} events have no field ${selector}; they have ${fieldList(fields)}`)
    const name = argument ?? selector
    if (inArgs) return (event) => (event as { args: Record<string, unknown> }).args[name]
    return (event) => (event as Record<string, unknown>)[name]
  }
  if (argument !== undefined) return (event) => (event as { args?: Record<string, unknown> }).args?.[argument]
  return (event) => (event as Record<string, unknown>)[selector] ?? (event as { args?: Record<string, unknown> }).args?.[selector]
}

/** An integer as bpftrace takes it: numbers truncated towards zero, booleans as 0 and 1. */
function integer(value: unknown, call: string): bigint {
  if (typeof value === 'bigint') return value
  if (typeof value === 'number' && Number.isFinite(value)) return BigInt(Math.trunc(value))
  if (typeof value === 'boolean') return value ? 1n : 0n
  if (value === undefined) throw new TypeError(`${call}(): the event has no such field (the selector gave undefined); give a field the events have, or a function`)
  throw new TypeError(`${call}(): ${inspect(value)} is not an integer; bpftrace maps aggregate integers (a number or a bigint)`)
}

function valueOf<T>(read: (event: T) => unknown, call: string): (event: T) => bigint {
  return (event) => integer(read(event), call)
}

const NO_KEY: KeyPart[] = []

function keyOf<T>(reads: ((event: T) => unknown)[], call: string): (event: T) => KeyPart[] {
  const part = (value: unknown): KeyPart => (typeof value === 'string' ? value : integer(value, call))
  if (reads.length === 0) return () => NO_KEY
  if (reads.length === 1) {
    const [read] = reads
    return (event) => [part(read(event))]
  }
  return (event) => reads.map((read) => part(read(event)))
}

/** A map's key parts keep the types they first had, as bpftrace's map keys do. */
function checkKeyTypes(parts: KeyPart[], types: KeyType[], call: string): void {
  for (let i = 0; i < parts.length; i++) {
    if ((typeof parts[i] === 'string') !== (types[i] === 'string')) throw new TypeError(`${call}(): key part ${i + 1} was ${types[i] === 'string' ? 'a string' : 'an integer'}, then ${inspect(parts[i])}: a map's keys keep one type`)
  }
}
