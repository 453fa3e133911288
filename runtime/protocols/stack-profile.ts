/**
 * What the profile plugins share (cpu-profile, offcpu-profile, alloc-profile): following a ring of
 * stack samples, naming the distinct stacks of an interval, and, for the sampling profiles, stacks
 * added up per (process, thread, user stack, kernel stack) and emitted with their self-metrics.
 * Imported as `periscope/protocols/stack-profile` (bundled into each plugin, like client-spans.ts),
 * not from a subfolder of plugins/: the plugin tests load a plugin's source from another folder.
 * Public plugin API only.
 */
import type { FrameInput, PluginContext, StackSample } from 'periscope/plugin'

/** Stacks per ctx.symbolize call: the host's event loop runs between calls. */
const SYMBOLIZE_CHUNK = 1000
/** How often the plugin is called when no batch comes, so that a naming's emits leave soon after it ends. */
const FLUSH_MS = 500

export const u32 = (n: number): Uint8Array => new Uint8Array(new Uint32Array([n]).buffer)

/** One (process, thread, user stack, kernel stack) of a profile. */
export interface ThreadStack {
  pid: number
  tid: number
  comm: string
  user: number[]
  kernel: bigint[]
  truncated: string | undefined
}

/** What a profile plugin does with the samples of its ring. */
export interface StackProfiler {
  add(sample: StackSample): void
  /** Samples the ring or the runtime dropped. */
  lose(samples: number): void
  /** Called every `collect_interval_ms`. */
  collect(): void | Promise<void>
}

/**
 * Feeds `profiler` the samples of `topic` and collects every `collect_interval_ms`. With `flush`,
 * the plugin is also called every FLUSH_MS: what a naming emits after its timer returned leaves
 * the isolate with the next call into it, this one if no batch comes first.
 */
export function followStacks(ctx: PluginContext<{ collect_interval_ms: number }>, topic: string, profiler: StackProfiler, { flush }: { flush: boolean }): void {
  ctx.onStack(topic, (sample) => profiler.add(sample), { onLoss: (lost) => profiler.lose(lost) })
  ctx.every(ctx.config.collect_interval_ms, () => profiler.collect())
  if (flush) ctx.every(FLUSH_MS, () => {})
}

/** `every process` or `pids a, b`, for a plugin's start-up line. */
export const describeTargets = (pids: number[]): string => (pids.length === 0 ? 'every process' : `pids ${pids.join(', ')}`)

/** The profile sample's labels and process of a thread's stack. */
export const threadOf = (s: ThreadStack) => ({
  labels: { 'process.pid': s.pid, 'thread.id': s.tid, 'thread.name': s.comm },
  process: { pid: s.pid },
})

/** `frames` with a root frame `[truncated: <reason>]` when the stack's unwinding stopped short. */
export const withTruncation = (frames: FrameInput[], truncated: string | undefined): FrameInput[] =>
  truncated === undefined ? frames : [...frames, { address: 0, function: `[truncated: ${truncated}]` }]

/**
 * The frames of each of `stacks`, in order: each distinct (pid, user stack, kernel stack) is named
 * once (threads of a process share stacks), SYMBOLIZE_CHUNK a ctx.symbolize call. Stacks that are
 * the same share one frames array.
 */
export async function nameStacks(ctx: PluginContext<unknown>, stacks: ThreadStack[]): Promise<FrameInput[][]> {
  const index = new Map<string, number>()
  const distinct: { pid: number; user: number[]; kernel: bigint[] }[] = []
  const stackOf = stacks.map((s) => {
    const key = `${s.pid}:${s.user.join(',')}|${s.kernel.join(',')}`
    let at = index.get(key)
    if (at === undefined) {
      at = distinct.push({ pid: s.pid, user: s.user, kernel: s.kernel }) - 1
      index.set(key, at)
    }
    return at
  })
  const named: FrameInput[][] = []
  for (let at = 0; at < distinct.length; at += SYMBOLIZE_CHUNK) named.push(...await ctx.symbolize(distinct.slice(at, at + SYMBOLIZE_CHUNK)))
  return stackOf.map((at) => named[at]!)
}

/** The samples of one (process, thread, user stack, kernel stack) in an interval. */
export interface CountedStack extends ThreadStack {
  samples: number
  /** The sum of the samples' `value`s. */
  value: number
  /** Boot ns of the last sample. */
  lastNs: number
}

export interface SampledProfileOptions {
  /** The `profile.type` of the self-metrics. */
  type: string
  /** How the logs name the profile ('CPU profile'). */
  title: string
  /** Emits the profile sample of one counted stack, with its frames. */
  emit(stack: CountedStack, frames: FrameInput[]): void
  /** Emits the interval's further self-metrics, after the counts. */
  emitMoreMetrics?(): Promise<void>
}

/**
 * Samples counted per (process, thread, user stack, kernel stack), at most `max_stacks` an
 * interval (the samples beyond are counted lost). Every collection names the interval's stacks
 * after the namings before it, without holding up the timer: naming a host's stacks for the first
 * time (every binary's symbols read) can take longer than a timer callback may (the call
 * deadline). The interval's self-metrics, by `profile.type`, go out with its profile samples:
 * `periscope.profile.samples`, `periscope.profile.stacks.truncated` by `reason` and
 * `periscope.profile.samples.lost`.
 */
export class SampledProfile implements StackProfiler {
  readonly #ctx: PluginContext<{ max_stacks: number }>
  readonly #options: SampledProfileOptions
  #counted = new Map<string, CountedStack>()
  /** The namings under way, one interval after the other. */
  #naming: Promise<void> = Promise.resolve()
  /** Samples since the last collection, by truncation reason ('none': whole). */
  #samples = new Map<string, number>()
  #lost = 0

  constructor(ctx: PluginContext<{ max_stacks: number }>, options: SampledProfileOptions) {
    this.#ctx = ctx
    this.#options = options
  }

  add(sample: StackSample): void {
    const reason = sample.truncated ?? 'none'
    this.#samples.set(reason, (this.#samples.get(reason) ?? 0) + 1)
    const key = `${sample.pid}:${sample.tid}:${sample.user.join(',')}|${sample.kernel.join(',')}|${reason}`
    const counted = this.#counted.get(key)
    if (counted !== undefined) {
      counted.samples++
      counted.value += sample.value
      counted.lastNs = sample.timeNs
      return
    }
    if (this.#counted.size >= this.#ctx.config.max_stacks) {
      this.#lost++
      return
    }
    this.#counted.set(key, { pid: sample.pid, tid: sample.tid, comm: sample.comm, user: sample.user, kernel: sample.kernel, truncated: sample.truncated, samples: 1, value: sample.value, lastNs: sample.timeNs })
  }

  lose(samples: number): void {
    this.#lost += samples
  }

  /** Takes the interval's counts and names them after the namings before it; what it emits goes out with the next call into the plugin. */
  collect(): void {
    const counted = [...this.#counted.values()]
    const samples = this.#samples
    const lost = this.#lost
    this.#counted = new Map()
    this.#samples = new Map()
    this.#lost = 0
    const { title } = this.#options
    // the counts go out with the stacks they count
    this.#naming = this.#naming.then(async () => {
      let unnamed = 0
      try {
        await this.#emit(counted)
      } catch (error) {
        unnamed = counted.reduce((sum, c) => sum + c.samples, 0)
        this.#ctx.log.error(`${title}: naming ${counted.length} stacks failed (${(error as Error).message}); their ${unnamed} samples are counted lost`)
      }
      this.#emitCounts(samples, lost + unnamed)
      await this.#options.emitMoreMetrics?.()
    }).catch((error: Error) => this.#ctx.log.error(`${title}: ${error.message}`))
  }

  async #emit(counted: CountedStack[]): Promise<void> {
    if (counted.length === 0) return
    const named = await nameStacks(this.#ctx, counted)
    counted.forEach((c, i) => {
      const frames = named[i]!
      // a process gone before its first frame was unwound, or a kernel stack the kernel could not read
      if (c.truncated === undefined && frames.length === 0) frames.push({ address: 0, function: '[no stack]' })
      this.#options.emit(c, withTruncation(frames, c.truncated))
    })
  }

  #emitCounts(samplesByEnd: Map<string, number>, lost: number): void {
    const type = { 'profile.type': this.#options.type }
    let total = 0
    for (const [reason, samples] of samplesByEnd) {
      total += samples
      if (reason !== 'none') this.#ctx.emit.metric({ name: 'periscope.profile.stacks.truncated', kind: 'counter', unit: '{sample}', value: samples, attributes: { ...type, reason } })
    }
    if (total > 0) this.#ctx.emit.metric({ name: 'periscope.profile.samples', kind: 'counter', unit: '{sample}', value: total, attributes: type })
    if (lost > 0) this.#ctx.emit.metric({ name: 'periscope.profile.samples.lost', kind: 'counter', unit: '{sample}', value: lost, attributes: type })
  }
}

/**
 * What a profile's object counts in its per-CPU `overflows` map (reason → count: samples or blocks
 * the kernel could not store): each collection emits the counts since the last one as
 * `periscope.profile.samples.lost` by `profile.type` and `reason`. The counts already emitted
 * carry over a hot reload (ctx.state), as the object and its counts stay.
 */
export class KernelOverflows {
  readonly #ctx: PluginContext<unknown>
  readonly #map: string
  readonly #type: string
  /** The `reason` of each index of the map. */
  readonly #reasons: string[]
  /** The kernel's counts at the last collection, by index. */
  #last: number[]
  /** Where ctx.state keeps #last. */
  readonly #stateKey: string

  constructor(ctx: PluginContext<unknown>, map: string, type: string, reasons: string[]) {
    this.#ctx = ctx
    this.#map = map
    this.#type = type
    this.#reasons = reasons
    this.#stateKey = `kernelOverflows:${map}`
    const carried = ctx.state[this.#stateKey]
    this.#last = Array.isArray(carried) && carried.length === reasons.length ? carried.map(Number) : reasons.map(() => 0)
  }

  async emit(): Promise<void> {
    const now = this.#reasons.map(() => 0)
    for (const [key, perCpu] of await this.#ctx.map(this.#map).entriesPerCpu()) {
      const reason = new DataView(key.buffer, key.byteOffset, key.byteLength).getUint32(0, true)
      for (const bytes of perCpu) now[reason]! += Number(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(0, true))
    }
    now.forEach((count, reason) => {
      const more = count - this.#last[reason]!
      if (more > 0) this.#ctx.emit.metric({ name: 'periscope.profile.samples.lost', kind: 'counter', unit: '{sample}', value: more, attributes: { 'profile.type': this.#type, reason: this.#reasons[reason]! } })
    })
    this.#last = now
    this.#ctx.state[this.#stateKey] = now
  }
}
