/**
 * `plugin.fromStream(stream, emit, options)`: an exploration that worked, as a running plugin. It
 * writes a readable plugin file that does what the stream does, with the public plugin API only:
 * `ctx.onTracepoint` on the stream's tracepoints with its kernel filter, or `ctx.onUprobe` on its
 * functions (pid in the kernel, comm and uid in the plugin, as trace() filters them), the stream's
 * `.filter()` and `.map()` functions (copied as their source text: they may use only their
 * argument and globals), then
 * - for a stream: `emit(event, ctx.emit)` per event, `emit` copied the same way;
 * - for `.count()`, `.sum()`, `.hist()` and `.lhist()`: the map as an OpenTelemetry metric named
 *   by `emit` (a counter, an up-down counter, or a histogram whose buckets are bpftrace's), by
 *   the map's key as attributes, exported every `collect_interval_ms`.
 *
 * The file goes into the runtime's plugin directory (the last it watches: `--plugins DIR` or
 * `plugin_dirs` before the shipped `plugins/`), where the runtime loads it and reloads it on
 * every edit; a runtime that watches none (the REPL's own) loads it at once, from `plugins/`.
 */
import { existsSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Script } from 'node:vm'
import type { MapKind } from './maps.ts'
import type { RuntimeSession } from './session.ts'
import { RECIPE, type AggregateRecipe, type Recipe, type Selector, type Step } from './stream.ts'

/** The metric an aggregate becomes: its name, or its name with a unit and description. */
export type MetricEmit = string | { name: string; unit?: string; description?: string }

export interface FromStreamOptions {
  /** the plugin's name, and its file's (`<name>.ts`); made from the tracepoint when left out */
  name?: string
  /** where to write it instead of the runtime's plugin directory */
  dir?: string
  /** replace a file of that name */
  overwrite?: boolean
  /** how often an aggregate's metric is exported (`collect_interval_ms` in its config); 10000 by default */
  intervalMs?: number
}

const shippedPluginsDir = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'plugins')

/** OpenTelemetry's instrument name syntax. */
const METRIC_NAME = /^[A-Za-z][A-Za-z0-9_.\-/]{0,254}$/
const PLUGIN_NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/i
/** The largest power of two a hist() bucket bound goes to before its last bucket (2^40, about 1.1e12). */
const HIST_BITS = 40

const usage = 'plugin.fromStream(stream, emit, { name?, dir?, overwrite?, intervalMs? })'

/** A function's source as an expression the plugin can hold; it must not close over REPL variables. */
function functionSource(fn: unknown, what: string): string {
  if (typeof fn !== 'function') throw new TypeError(`${usage}: ${what} must be a function`)
  const source = fn.toString()
  if (source.includes('[native code]')) throw new TypeError(`${usage}: ${what} is a built-in or bound function; write it out, as (e) => ...`)
  try {
    new Script(`(${source})`)
  } catch {
    throw new TypeError(`${usage}: ${what} is a method (${source.slice(0, 40)}...); write it as an arrow function, (e) => ...`)
  }
  return source
}

/** JavaScript reading a map key or value from event `e`, as the stream's selector read it. */
function selectorCode(selector: Selector<unknown>, fields: Recipe['fields'], what: string): string {
  if (typeof selector === 'function') return `(${functionSource(selector, what)})(e)`
  const name = selector.startsWith('args.') ? selector.slice('args.'.length) : selector
  const key = JSON.stringify(name)
  if (selector.startsWith('args.') || (fields !== undefined && !fields.top.includes(selector))) return `e.args[${key}]`
  if (fields !== undefined) return `e[${key}]`
  return `(e[${key}] ?? e.args?.[${key}])`
}

/** An attribute name for key part `i` of `count`. */
function attributeName(selector: Selector<unknown>, i: number, count: number): string {
  if (typeof selector === 'string') return selector.startsWith('args.') ? selector.slice('args.'.length) : selector
  return count === 1 ? 'key' : `key.${i + 1}`
}

function stepCode(step: Step, i: number): string {
  if (step.op === 'take') throw new Error(`${usage}: .take(${step.n}) ends a stream, and a plugin runs until it is unloaded; leave .take() out`)
  return `const ${step.op}${i + 1} = (${functionSource(step.fn, `the function given to .${step.op}()`)}) as (event: any) => any`
}

function handleCode(steps: Step[], record: string): string {
  const lines = steps.map((step, i) => (step.op === 'filter' ? `  if (!filter${i + 1}(value)) return` : `  value = map${i + 1}(value)`))
  return [
    '/** One event through the stream\'s operators, in order, to where it goes. */',
    'function handle(value: any): void {',
    ...lines,
    `  ${record}`,
    '}',
  ].join('\n')
}

const TYPED_KINDS: Partial<Record<MapKind, string>> = { count: 'counter', sum: 'updown', hist: 'histogram', lhist: 'histogram' }

/** The bucket bounds of an aggregate's histogram, as OpenTelemetry's upper-inclusive bounds over integers. */
function boundaries(recipe: AggregateRecipe): number[] {
  if (recipe.kind === 'hist') return [-1, 0, ...Array.from({ length: HIST_BITS }, (_, k) => 2 ** (k + 1) - 1)]
  const { min, max, step } = recipe.range!
  return Array.from({ length: (max - min) / step + 1 }, (_, i) => min + i * step - 1)
}

/** What the plugin does with each event that passed, and what it exports when. */
function aggregateCode(recipe: AggregateRecipe, emit: MetricEmit): { record: string; helpers: string; setup: string } {
  const kind = TYPED_KINDS[recipe.kind]
  if (kind === undefined) throw new Error(`${usage}: .${recipe.kind}() has no OpenTelemetry metric that adds up across exports; use .hist(value) (its sum and count give the average) or .sum(value)`)
  const metric = typeof emit === 'string' ? { name: emit } : emit
  if (metric === null || typeof metric !== 'object' || typeof metric.name !== 'string' || !METRIC_NAME.test(metric.name)) {
    throw new TypeError(`${usage}: an aggregate's emit is its metric's name ('openat.calls') or { name, unit?, description? }; a name starts with a letter and has letters, digits, _ . - /`)
  }
  const attributes = recipe.by.map((selector, i) => `${JSON.stringify(attributeName(selector, i, recipe.by.length))}: attribute(${selectorCode(selector, recipe.fields, `the key function ${i + 1}`)})`)
  const value = recipe.value === undefined ? '1' : `integer(${selectorCode(recipe.value, recipe.fields, 'the value function')})`
  const histogram = kind === 'histogram'
  const bucket = (): string => recipe.kind === 'hist'
    ? 'v < 0 ? 0 : v === 0 ? 1 : Math.min(BOUNDARIES.length, 2 + bitLength(v) - 1)'
    : `v < ${recipe.range!.min} ? 0 : v >= ${recipe.range!.max} ? BOUNDARIES.length : 1 + Math.floor((v - ${recipe.range!.min}) / ${recipe.range!.step})`
  const helpers = [
    histogram ? `/** The map's buckets, as bpftrace's ${recipe.kind}() makes them, as upper bounds over integers. */\nconst BOUNDARIES = ${JSON.stringify(boundaries(recipe))}` : '',
    recipe.kind === 'hist' ? '/** Bits of a positive integer below 2^53. */\nconst bitLength = (v: number): number => (v >= 2 ** 32 ? 32 + 32 - Math.clz32(Math.floor(v / 2 ** 32)) : 32 - Math.clz32(v))' : '',
    '/** A key part as an attribute: integers as numbers (as strings past 2^53), strings as they are. */',
    "const attribute = (v: unknown): string | number => (typeof v === 'string' ? v : typeof v === 'bigint' ? (Number.isSafeInteger(Number(v)) ? Number(v) : String(v)) : integer(v))",
    '/** A value as bpftrace maps take it: an integer. */',
    "const integer = (v: unknown): number => { if (typeof v === 'bigint') return Number(v); if (typeof v === 'number' && Number.isFinite(v)) return Math.trunc(v); if (typeof v === 'boolean') return v ? 1 : 0; throw new TypeError(`${String(v)} is not an integer: the map aggregates integers`) }",
    `/** This interval's series, by attribute set: ${histogram ? 'bucket counts and sum' : 'the increment'}. */`,
    `const series = new Map<string, { attributes: Record<string, string | number>; value: number${histogram ? '; buckets: number[]' : ''} }>()`,
  ].filter(Boolean).join('\n')
  const record = [
    '{',
    `    const e = value, attributes = { ${attributes.join(', ')} }`,
    '    const id = JSON.stringify(attributes)',
    `    let s = series.get(id)`,
    `    if (s === undefined) series.set(id, s = { attributes, value: 0${histogram ? ', buckets: new Array(BOUNDARIES.length + 1).fill(0)' : ''} })`,
    histogram ? `    const v = ${value}\n    s.value += v\n    s.buckets[${bucket()}]++` : `    s.value += ${value}`,
    '  }',
  ].join('\n')
  const described = `${metric.unit === undefined ? '' : `, unit: ${JSON.stringify(metric.unit)}`}${metric.description === undefined ? '' : `, description: ${JSON.stringify(metric.description)}`}`
  const setup = [
    '    ctx.every(ctx.config.collect_interval_ms, () => {',
    `      for (const s of series.values()) ctx.emit.metric({ name: ${JSON.stringify(metric.name)}, kind: '${kind}', value: s.value${histogram ? ', boundaries: BOUNDARIES, bucketCounts: s.buckets' : ''}, attributes: s.attributes${described} })`,
    '      series.clear()',
    '    })',
  ].join('\n')
  return { record, helpers, setup }
}

/** What the plugin attaches, and how its events come in: the source's part of the plugin. */
interface SourceCode {
  /** the import from periscope/plugin besides definePlugin */
  imports: string
  objects: string
  /** the table of what it attaches, at the top of the file */
  table: string
  /** the setup lines that attach, handing each event to handle() */
  attach: string
  /** what it traces, for the header */
  traces: string
}

function sourceCode(source: Recipe['source']): SourceCode {
  const filters = (filter: object, where: string) => {
    const text = Object.entries(filter).map(([k, v]) => `${k} ${JSON.stringify(v)}`).join(', ')
    return text === '' ? '' : ` (${text}, ${where})`
  }
  if (source.kind === 'tracepoints') {
    const rows = source.requests.map((request, i) => {
      const options = { ...request.filter, ...(request.strings?.length ? { strings: request.strings } : {}) }
      return `  [${JSON.stringify(`${request.category}:${request.name}`)}, ${JSON.stringify(source.probes[i])}, ${JSON.stringify(options)}],`
    })
    return {
      imports: 'type TracepointOptions',
      objects: "['generic']",
      table: `/** [tracepoint, the probe its events say they came from, the kernel's filter and the strings it copies] */\nconst TRACEPOINTS: [string, string, TracepointOptions][] = [\n${rows.join('\n')}\n]`,
      attach: [
        '    for (const [tracepoint, probe, options] of TRACEPOINTS) {',
        '      await ctx.onTracepoint(tracepoint, (event) => { (event as any).probe = probe; handle(event) }, options)',
        '    }',
      ].join('\n'),
      traces: `${source.probes.join(', ')}${filters(source.requests[0]?.filter ?? {}, 'filtered in the kernel')}`,
    }
  }
  if (source.kind === 'uprobes') {
    const { pid, comm, uid } = source.filter
    const rows = source.functions.map((f, i) => `  [${JSON.stringify(f)}, ${JSON.stringify(source.probes[i])}],`)
    // as trace() filters: pid in the kernel, comm and uid here
    const userFilter = [comm === undefined ? '' : `event.comm !== ${JSON.stringify(comm)}`, uid === undefined ? '' : `event.uid !== ${uid}`].filter(Boolean).join(' || ')
    return {
      imports: 'type UprobeTarget',
      objects: "['generic_uprobe']",
      table: `/** [the function, the probe its events say they came from] */\nconst UPROBES: [UprobeTarget, string][] = [\n${rows.join('\n')}\n]`,
      attach: [
        '    for (const [target, probe] of UPROBES) {',
        `      await ctx.onUprobe(target, (event) => {${userFilter === '' ? '' : ` if (${userFilter}) return;`} (event as any).probe = probe; handle(event) }, ${JSON.stringify(pid === undefined ? {} : { pid })})`,
        '    }',
      ].join('\n'),
      traces: `${source.probes.join(', ')}${filters(source.filter as Record<string, unknown>, 'pid in the kernel')}`,
    }
  }
  throw new Error(`${usage}: a stream of ${source.what} cannot become a plugin yet: plugins trace tracepoints (ctx.onTracepoint) and functions (ctx.onUprobe); start from trace('<category>:<name>') or trace('uprobe:/path:function')`)
}

/** The plugin's source for a stream (emit: a function of each event) or an aggregate (emit: its metric). */
export function pluginSource(recipe: Recipe | AggregateRecipe, emit: unknown, name: string, intervalMs = 10_000, now = new Date()): string {
  const source = sourceCode(recipe.source)
  const steps = recipe.steps.map(stepCode)
  const aggregate = 'kind' in recipe ? aggregateCode(recipe, emit as MetricEmit) : undefined
  const emitSource = aggregate === undefined ? functionSource(emit, 'emit (for a stream: (event, emit) => { emit.log(...) })') : undefined
  const does = aggregate === undefined
    ? 'hands each event that passes to `emit` below.'
    : `exports the map its .${(recipe as AggregateRecipe).kind}() filled as a metric every collect_interval_ms.`
  return `/**
 * ${name}: written by the Periscope REPL (plugin.fromStream) on ${now.toISOString()}.
 *
 * It traces ${source.traces}, runs each event
 * through the stream's operators as they were typed, and ${does}
 * Edit it freely: the runtime reloads it when the file changes.
 */
import { definePlugin, ${source.imports} } from 'periscope/plugin'

${source.table}

${[...steps, emitSource === undefined ? '' : `const emit = (${emitSource}) as (event: any, emit: any) => void`].filter(Boolean).join('\n')}
${aggregate?.helpers ?? ''}

export default definePlugin({
  name: ${JSON.stringify(name)},
  objects: ${source.objects},${aggregate === undefined ? '' : `
  config: {
    /** How often the metric is exported. */
    collect_interval_ms: ${intervalMs},
  },`}
  async setup(ctx) {
${handleCode(recipe.steps, aggregate === undefined ? 'emit(value, ctx.emit)' : aggregate.record).split('\n').map((line) => `    ${line}`).join('\n')}
${source.attach}
${aggregate === undefined ? '' : `${aggregate.setup}\n`}  },
})
`
}

/** The default plugin name: from the stream's first tracepoint or function and what it does. */
function defaultName(recipe: Recipe | AggregateRecipe): string {
  const { source } = recipe
  const first = source.kind === 'tracepoints' ? source.requests[0]?.name : source.kind === 'uprobes' ? source.functions[0]?.symbol : undefined
  return `${first ?? 'trace'}-${'kind' in recipe ? recipe.kind : 'events'}`.replace(/[^a-z0-9_-]/gi, '_')
}

/**
 * Writes the plugin for `stream` and has the runtime load it; resolves to the plugin as the
 * runtime lists it (`status` 'running' once its setup has attached the tracepoints).
 */
export async function fromStream(session: RuntimeSession, stream: unknown, emit: unknown, options: FromStreamOptions = {}): Promise<{ file: string; name: string; status: string }> {
  const recipe = (stream as { [RECIPE]?: Recipe | AggregateRecipe } | null)?.[RECIPE]
  if (recipe === undefined) throw new TypeError(`${usage}: give a stream made with trace(...) (or its .count(), .sum(), .hist(), .lhist())`)
  const name = options.name ?? defaultName(recipe)
  if (!PLUGIN_NAME.test(name)) throw new TypeError(`${usage}: the name '${name}' is not a plugin name: letters, digits, _ and -, starting with a letter or digit`)
  const source = pluginSource(recipe, emit, name, options.intervalMs)
  const watched = await session.call<string[]>('pluginDirs')
  const dir = path.resolve(options.dir ?? watched[watched.length - 1] ?? shippedPluginsDir)
  const file = path.join(dir, `${name}.ts`)
  if (existsSync(file) && options.overwrite !== true) throw new Error(`${usage}: ${file} exists; give { overwrite: true } to replace it, or another name`)
  writeFileSync(file, source)
  // a watched directory's file is loaded by the runtime's watcher; loading it here too would reload it
  if (!watched.includes(dir)) await session.call('load', { file })
  return await loaded(session, file)
}

/** Waits until the runtime lists the plugin of `file` as running, or says why it is not. */
async function loaded(session: RuntimeSession, file: string): Promise<{ file: string; name: string; status: string }> {
  const deadline = Date.now() + 30_000
  for (;;) {
    const plugins = await session.call<{ file: string; name?: string; status: string; lastError?: string }[]>('plugins')
    const found = plugins.find((p) => p.file === file)
    if (found?.status === 'running') return { file, name: found.name!, status: found.status }
    if (found !== undefined && (found.status === 'failed' || found.status === 'backoff') && found.lastError !== undefined) {
      throw new Error(`wrote ${file}, but the plugin did not start: ${found.lastError}`)
    }
    if (Date.now() > deadline) throw new Error(`wrote ${file}, but the runtime has not started it after 30 s (${found === undefined ? 'it does not list it: is the directory one it watches?' : `status ${found.status}`})`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}
