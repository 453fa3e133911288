/**
 * The plugin API, imported by plugins as `periscope/plugin`.
 *
 * A plugin is one TypeScript file whose default export is `definePlugin({...})`. esbuild bundles it
 * (with the helpers it imports and the generated decoders) and the bundle runs in its own
 * isolated-vm isolate. Nothing here touches the host: the `ctx` a plugin receives is built inside
 * the isolate by `runtime/plugins/isolate/bootstrap.ts`, and it reaches the host only through the
 * few calls listed on `PluginContext`.
 *
 * Lifecycle of one version of a plugin, in order:
 * 1. The bundle is evaluated (module top level runs once per isolate).
 * 2. The objects in `objects` are opened (or shared with other plugins already using them).
 * 3. `setup(ctx)` runs once. It registers handlers (`ctx.on`), timers (`ctx.every`) and may read
 *    maps. On a hot reload, the previous version stops receiving events just before this call and
 *    `ctx.state` holds what the previous version left in it. If `setup` throws, the previous
 *    version carries on as if nothing happened.
 * 4. Handlers run, one batch of events at a time, in the order the kernel produced them; timers
 *    run between batches, never during one.
 * 5. The version ends when it is replaced (hot reload), unloaded (file deleted) or stopped after a
 *    failure (throw, time budget, call deadline, memory limit, emit flood); after a failure a fresh version starts
 *    with backoff and an empty `ctx.state`.
 */
import type {
  LogInput,
  MetricPointInput,
  ProfileSampleInput,
  SpanInput,
} from '../telemetry/signals.ts'

export type { LogInput, MetricPointInput, ProfileSampleInput, SpanInput }

/**
 * Event types per topic (`'<object>:<stream>'`), generated from the objects' BTF into
 * `bpf/lib/index.types.ts`. A topic outside the table gives loosely typed events.
 */
export type { Topics } from '../../bpf/lib/index.types.ts'
import type { Topics } from '../../bpf/lib/index.types.ts'

export type TopicEvent<K extends string> = K extends keyof Topics ? Topics[K] : Record<string, unknown>

export type ConfigValue = string | number | boolean | null | ConfigValue[] | { [key: string]: ConfigValue }

/** Key/value access to a BPF map. Keys and values are the raw bytes of the kernel's structs. */
export interface PluginMap {
  lookup(key: Uint8Array): Promise<Uint8Array | undefined>
  update(key: Uint8Array, value: Uint8Array): Promise<void>
  delete(key: Uint8Array): Promise<boolean>
  /** A snapshot of all entries, copied in one call. */
  entries(): Promise<[Uint8Array, Uint8Array][]>
  readonly keySize: number
  readonly valueSize: number
}

export interface PluginLog {
  debug(message: string, attributes?: Record<string, ConfigValue>): void
  info(message: string, attributes?: Record<string, ConfigValue>): void
  warn(message: string, attributes?: Record<string, ConfigValue>): void
  error(message: string, attributes?: Record<string, ConfigValue>): void
}

/**
 * Emitters queue signals in the isolate; the queue leaves the isolate once per handled batch or
 * timer run. Shapes are the exporter's (`runtime/telemetry/signals.ts`): plain data only.
 */
export interface PluginEmitters {
  span(span: SpanInput): void
  metric(point: MetricPointInput): void
  log(record: LogInput): void
  profile(sample: ProfileSampleInput): void
}

export interface PluginContext<C> {
  /** The plugin's `config` defaults, overridden by `plugins.<name>.config` in periscope.yaml. */
  readonly config: C
  /**
   * State carried across hot reloads: whatever the previous version left here (after a structured
   * copy, so plain data only: no functions or class instances). Empty on first load and after a
   * failure restart, since the state may be what made the plugin fail.
   */
  state: Record<string, unknown>
  readonly log: PluginLog
  readonly emit: PluginEmitters
  /**
   * Calls `handler` for every record of a ring or perf buffer, decoded. Call it during `setup`.
   * The topic's object must be listed in the plugin's `objects`.
   */
  on<K extends string>(topic: K, handler: (event: TopicEvent<K>) => void): void
  /** Access to a map (`'<object>:<map>'`) of one of the plugin's objects. */
  map(topic: string): PluginMap
  /**
   * Runs `fn` every `interval` (`'500ms'`, `'10s'`, `'1m'`, or milliseconds), between batches. A
   * returned promise is awaited before the next batch, and its failure counts as a plugin failure.
   */
  every(interval: string | number, fn: () => void | Promise<void>): void
}

export interface PluginDefinition<C extends Record<string, ConfigValue> = Record<string, ConfigValue>> {
  /** Unique among loaded plugins; names the instrumentation scope and the config entry. */
  name: string
  /** Library objects (`bpf/lib/<name>`) the plugin uses; shared and refcounted across plugins. */
  objects?: readonly string[]
  /** Defaults for `ctx.config`. */
  config?: C
  /** Runs once per version, after the objects are open and before any event arrives. */
  setup(ctx: PluginContext<C>): void | Promise<void>
}

/** Identity at run time; it exists so the plugin's `config` and `ctx` are typed. */
export function definePlugin<C extends Record<string, ConfigValue>>(plugin: PluginDefinition<C>): PluginDefinition<C> {
  return plugin
}
