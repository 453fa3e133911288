/**
 * CPU profiles, on by default: every CPU is sampled `frequency` times a second (19 Hz, from
 * `receiver.profiles.cpu_sampling_rate`; 99 Hz or more on demand) by the `stacks` object's
 * perf_event program, which sends each sample's user registers, a copy of its user stack and its
 * kernel stack. The runtime unwinds the user stack from the copy with each binary's `.eh_frame`
 * (frame pointers where a file has none), so code built without frame pointers — most of Debian
 * — gives whole stacks (ctx.onStack). With `target_pids`, only those processes are sampled: the
 * filter is in the kernel (a claimed `target_pids` map entry each).
 *
 * Samples are counted here per (process, thread, user stack, kernel stack) and, every
 * `collect_interval_ms`, their distinct stacks are named in a ctx.symbolize call (per 1,000) and emitted as
 * `cpu` profile samples (values: samples and samples × the sampling period in ns), labelled
 * `process.pid`, `thread.id` and `thread.name` (the thread's comm: OpenTelemetry's attributes, for
 * a backend to join them with other signals of the thread), with the wall time of the thread's
 * last sample. Stacks cannot be counted in the kernel: they are only known once unwound
 * (decision 13).
 *
 * A stack whose unwinding stopped short (a copy shorter than the stack, an address in no
 * mapping, a frame the unwinder cannot step through) is never shown as complete: it gets a root
 * frame `[truncated: <reason>]`. Self-metrics, by `profile.type` (`cpu`):
 * - `periscope.profile.samples` {sample}: samples counted;
 * - `periscope.profile.stacks.truncated` {sample}: those whose user stack is not whole, by `reason`
 *   ('copy ended', 'no mapping', 'no rule', 'bad frame', 'too deep');
 * - `periscope.profile.samples.lost` {sample}: samples the ring buffer or the runtime dropped,
 *   and those over `max_stacks` distinct stacks in one interval.
 *
 * Everything here is public plugin API: a user plugin can do the same.
 */
import { definePlugin, type FrameInput, type PluginContext, type StackSample } from 'periscope/plugin'

const config = {
  /** Samples per second on each CPU, 1 to 1000. */
  frequency: 19,
  /** How often the counts are named and exported. */
  collect_interval_ms: 10_000,
  /** Only these processes; every process when empty. */
  target_pids: [] as number[],
  /** Distinct (process, thread, stack) counted per interval; samples beyond are counted lost. */
  max_stacks: 20_000,
}
type Config = typeof config

export default definePlugin({
  name: 'cpu-profile',
  objects: ['stacks'],
  config,
  async setup(ctx) {
    const profiler = new CpuProfiler(ctx)
    ctx.onStack('stacks:samples', (sample) => profiler.add(sample), { onLoss: (lost) => profiler.lose(lost) })
    ctx.every(ctx.config.collect_interval_ms, () => profiler.collect())
    // what a naming emits leaves the isolate with the next call into it: this one, if no batch comes first
    ctx.every(FLUSH_MS, () => {})
    await profiler.start()
  },
})

/** The samples of one (process, thread, user stack, kernel stack) in the interval. */
interface Counted {
  pid: number
  tid: number
  comm: string
  user: number[]
  kernel: bigint[]
  truncated: string | undefined
  samples: number
  lastNs: number
}

const u32 = (n: number): Uint8Array => new Uint8Array(new Uint32Array([n]).buffer)
/** Stacks per ctx.symbolize call: the host's event loop runs between calls. */
const SYMBOLIZE_CHUNK = 1000
/** How often the plugin is called when no batch comes, so that a naming's emits leave soon after it ends. */
const FLUSH_MS = 500

class CpuProfiler {
  readonly #ctx: PluginContext<Config>
  readonly #periodNs: number
  #counted = new Map<string, Counted>()
  /** The namings under way, one interval after the other. */
  #naming: Promise<void> = Promise.resolve()
  /** Samples since the last collection, by truncation reason ('none': whole). */
  #samples = new Map<string, number>()
  #lost = 0

  constructor(ctx: PluginContext<Config>) {
    this.#ctx = ctx
    this.#periodNs = Math.round(1e9 / ctx.config.frequency)
  }

  /** Claims the kernel's pid filter, then starts sampling every CPU. */
  async start(): Promise<void> {
    const { frequency, target_pids: pids } = this.#ctx.config
    if (pids.length > 0) {
      const targets = this.#ctx.map('stacks:target_pids')
      for (const pid of new Set(pids)) await targets.claim(u32(pid), new Uint8Array([1]))
      await this.#ctx.map('stacks:filter').claim(u32(0), u32(1))
    }
    await this.#ctx.attach({ program: 'stacks:on_cpu_sample', perfEvent: { frequency } })
    this.#ctx.log.info(`CPU profiles at ${frequency} Hz of ${pids.length === 0 ? 'every process' : `pids ${pids.join(', ')}`}, exported every ${this.#ctx.config.collect_interval_ms} ms`)
  }

  add(sample: StackSample): void {
    const reason = sample.truncated ?? 'none'
    this.#samples.set(reason, (this.#samples.get(reason) ?? 0) + 1)
    const key = `${sample.pid}:${sample.tid}:${sample.user.join(',')}|${sample.kernel.join(',')}|${reason}`
    const counted = this.#counted.get(key)
    if (counted !== undefined) {
      counted.samples++
      counted.lastNs = sample.timeNs
      return
    }
    if (this.#counted.size >= this.#ctx.config.max_stacks) {
      this.#lost++
      return
    }
    this.#counted.set(key, { pid: sample.pid, tid: sample.tid, comm: sample.comm, user: sample.user, kernel: sample.kernel, truncated: sample.truncated, samples: 1, lastNs: sample.timeNs })
  }

  lose(samples: number): void {
    this.#lost += samples
  }

  /**
   * Takes the interval's counts and names them after the namings before it, without holding up
   * the timer: naming a host's stacks for the first time (every binary's symbols read) can take
   * longer than a timer callback may (the call deadline); what it emits goes out with the next
   * call into the plugin.
   */
  collect(): void {
    const counted = [...this.#counted.values()]
    const samples = this.#samples
    const lost = this.#lost
    this.#counted = new Map()
    this.#samples = new Map()
    this.#lost = 0
    // the counts go out with the stacks they count
    this.#naming = this.#naming.then(async () => {
      let unnamed = 0
      try {
        await this.#emit(counted)
      } catch (error) {
        unnamed = counted.reduce((sum, c) => sum + c.samples, 0)
        this.#ctx.log.error(`CPU profile: naming ${counted.length} stacks failed (${(error as Error).message}); their ${unnamed} samples are counted lost`)
      }
      this.#emitSelfMetrics(samples, lost + unnamed)
    }).catch((error: Error) => this.#ctx.log.error(`CPU profile: ${error.message}`))
  }

  /** Names the distinct stacks of `counted`, a few host calls of SYMBOLIZE_CHUNK, and emits a profile sample per counted stack. */
  async #emit(counted: Counted[]): Promise<void> {
    if (counted.length === 0) return
    // threads of a process share stacks: each distinct (pid, stack) is named once
    const index = new Map<string, number>()
    const stacks: { pid: number; user: number[]; kernel: bigint[] }[] = []
    const stackOf = counted.map((c) => {
      const key = `${c.pid}:${c.user.join(',')}|${c.kernel.join(',')}`
      let at = index.get(key)
      if (at === undefined) {
        at = stacks.push({ pid: c.pid, user: c.user, kernel: c.kernel }) - 1
        index.set(key, at)
      }
      return at
    })
    const named: FrameInput[][] = []
    for (let at = 0; at < stacks.length; at += SYMBOLIZE_CHUNK) named.push(...await this.#ctx.symbolize(stacks.slice(at, at + SYMBOLIZE_CHUNK)))
    counted.forEach((c, i) => {
      const frames: FrameInput[] = named[stackOf[i]!]!
      // a process gone before its first frame was unwound, or a kernel stack the kernel could not read
      if (c.truncated === undefined && frames.length === 0) frames.push({ address: 0, function: '[no stack]' })
      this.#ctx.emit.profile({
        type: 'cpu',
        frames: c.truncated === undefined ? frames : [...frames, { address: 0, function: `[truncated: ${c.truncated}]` }],
        values: [c.samples, c.samples * this.#periodNs],
        timeNs: this.#ctx.time.wallNs(c.lastNs),
        labels: { 'process.pid': c.pid, 'thread.id': c.tid, 'thread.name': c.comm },
        process: { pid: c.pid },
      })
    })
  }

  #emitSelfMetrics(samplesByEnd: Map<string, number>, lost: number): void {
    let total = 0
    for (const [reason, samples] of samplesByEnd) {
      total += samples
      if (reason !== 'none') this.#ctx.emit.metric({ name: 'periscope.profile.stacks.truncated', kind: 'counter', unit: '{sample}', value: samples, attributes: { 'profile.type': 'cpu', reason } })
    }
    if (total > 0) this.#ctx.emit.metric({ name: 'periscope.profile.samples', kind: 'counter', unit: '{sample}', value: total, attributes: { 'profile.type': 'cpu' } })
    if (lost > 0) this.#ctx.emit.metric({ name: 'periscope.profile.samples.lost', kind: 'counter', unit: '{sample}', value: lost, attributes: { 'profile.type': 'cpu' } })
  }
}
