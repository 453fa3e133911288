/**
 * Off-CPU profiles, opt-in (`receiver.profiles.off_cpu: true`): how long threads stay blocked
 * (sleeping, waiting for I/O, a lock or a peer), and where, from the `offcpu` object: sched_switch
 * marks each block of a watched thread, and a block of at least `min_block_ms` is sent when the
 * thread wakes, with its user stack as it was when it blocked (sent from the thread itself on its
 * way back to user space, so only long blocks copy a stack; before Linux 6.18, copied at every
 * blocking switch) and its kernel stack. The runtime
 * unwinds the user stacks (ctx.onStack). With `target_pids` only those processes are watched (a
 * filter in the kernel); otherwise every user process but Periscope. Kernel threads are not.
 *
 * Blocked time is added up here per (process, thread, user stack, kernel stack) and, every
 * `collect_interval_ms`, the distinct stacks are named (ctx.symbolize, 1,000 a call, after the
 * timer returns, as the cpu-profile plugin does: naming a host's stacks cold can outlast a timer
 * callback's deadline) and emitted as
 * `offcpu` profile samples (value: off_cpu nanoseconds), labelled `process.pid`, `thread.id` and
 * `thread.name`. A stack whose unwinding stopped short gets a root frame `[truncated: <reason>]`.
 * Self-metrics, by `profile.type` (`offcpu`): `periscope.profile.samples` {sample},
 * `periscope.profile.stacks.truncated` {sample} by `reason`, `periscope.profile.samples.lost`
 * {sample} (ring or runtime drops, stacks over `max_stacks`, and long blocks the kernel could not
 * send: `reason` `threads` when its map of threads was full, `schedule` when a thread's previous
 * send had not run yet).
 *
 * Cost (bench/offcpu-alloc-overhead.bench.ts): about 0.4 µs of CPU per context switch, watched
 * or filtered out; about 10 µs more for each block that is sent.
 *
 * Everything here is public plugin API: a user plugin can do the same.
 */
import { definePlugin, type FrameInput, type PluginContext, type StackSample } from 'periscope/plugin'
import { encodeOffcpuOptions, OFFCPU_OBSERVE_ALL, OFFCPU_OBSERVE_TARGETS, OFFCPU_OPTIONS_SIZE, OFFCPU_OVERFLOW_SCHEDULE, OFFCPU_OVERFLOW_THREADS, OFFCPU_OVERFLOWS } from 'periscope/protocols/offcpu'

const config = {
  /** Blocks shorter than this are not recorded. */
  min_block_ms: 1,
  /** How often the blocked time is named and exported. */
  collect_interval_ms: 10_000,
  /** Only these processes; every user process when empty. */
  target_pids: [] as number[],
  /** Distinct (process, thread, stack) added up per interval; samples beyond are counted lost. */
  max_stacks: 20_000,
}
type Config = typeof config

/** The `reason` of each `enum offcpu_overflow`. */
const overflowReasons: string[] = []
overflowReasons[OFFCPU_OVERFLOW_THREADS] = 'threads'
overflowReasons[OFFCPU_OVERFLOW_SCHEDULE] = 'schedule'

export default definePlugin({
  name: 'offcpu-profile',
  objects: ['offcpu'],
  config,
  async setup(ctx) {
    const profiler = new OffCpuProfiler(ctx)
    ctx.onStack('offcpu:samples', (sample) => profiler.add(sample), { onLoss: (lost) => profiler.lose(lost) })
    ctx.every(ctx.config.collect_interval_ms, () => profiler.collect())
    // what a naming emits leaves the isolate with the next call into it: this one, if no batch comes first
    ctx.every(FLUSH_MS, () => {})
    await profiler.start()
  },
})

/** The blocked time of one (process, thread, user stack, kernel stack) in the interval. */
interface Blocked {
  pid: number
  tid: number
  comm: string
  user: number[]
  kernel: bigint[]
  truncated: string | undefined
  ns: number
  samples: number
  lastNs: number
}

const u32 = (n: number): Uint8Array => new Uint8Array(new Uint32Array([n]).buffer)
/** Stacks per ctx.symbolize call: the host's event loop runs between calls. */
const SYMBOLIZE_CHUNK = 1000
/** How often the plugin is called when no batch comes, so that a naming's emits leave soon after it ends. */
const FLUSH_MS = 500

class OffCpuProfiler {
  readonly #ctx: PluginContext<Config>
  #blocked = new Map<string, Blocked>()
  /** The namings under way, one interval after the other. */
  #naming: Promise<void> = Promise.resolve()
  #samples = new Map<string, number>()
  #lost = 0
  /** The kernel's overflow counts at the last collection, by reason. */
  #overflows = new Array<number>(OFFCPU_OVERFLOWS).fill(0)

  constructor(ctx: PluginContext<Config>) {
    this.#ctx = ctx
  }

  /** Claims the threshold and the pid filter: the kernel records nothing before. */
  async start(): Promise<void> {
    const { min_block_ms: minBlockMs, target_pids: pids } = this.#ctx.config
    if (!(minBlockMs >= 0)) throw new Error(`offcpu-profile: min_block_ms must be a number of milliseconds, 0 or more; got ${JSON.stringify(minBlockMs)}`)
    for (const pid of new Set(pids)) await this.#ctx.map('offcpu:targets').claim(u32(pid), new Uint8Array([1]))
    const options = new Uint8Array(OFFCPU_OPTIONS_SIZE)
    const observe = pids.length > 0 ? OFFCPU_OBSERVE_TARGETS : OFFCPU_OBSERVE_ALL
    encodeOffcpuOptions({ min_block_ns: Math.round(minBlockMs * 1e6), observe, pad: 0 }, new DataView(options.buffer), 0)
    await this.#ctx.map('offcpu:options').claim(u32(0), options)
    this.#ctx.log.info(`off-CPU profiles of blocks of ${minBlockMs} ms or more in ${pids.length === 0 ? 'every process' : `pids ${pids.join(', ')}`}, exported every ${this.#ctx.config.collect_interval_ms} ms`)
  }

  add(sample: StackSample): void {
    const reason = sample.truncated ?? 'none'
    this.#samples.set(reason, (this.#samples.get(reason) ?? 0) + 1)
    const key = `${sample.pid}:${sample.tid}:${sample.user.join(',')}|${sample.kernel.join(',')}|${reason}`
    const blocked = this.#blocked.get(key)
    if (blocked !== undefined) {
      blocked.ns += sample.value
      blocked.samples++
      blocked.lastNs = sample.timeNs
      return
    }
    if (this.#blocked.size >= this.#ctx.config.max_stacks) {
      this.#lost++
      return
    }
    this.#blocked.set(key, { pid: sample.pid, tid: sample.tid, comm: sample.comm, user: sample.user, kernel: sample.kernel, truncated: sample.truncated, ns: sample.value, samples: 1, lastNs: sample.timeNs })
  }

  lose(samples: number): void {
    this.#lost += samples
  }

  /** Takes the interval's blocked time and names it after the namings before it, without holding up the timer. */
  collect(): void {
    const blocked = [...this.#blocked.values()]
    const samples = this.#samples
    const lost = this.#lost
    this.#blocked = new Map()
    this.#samples = new Map()
    this.#lost = 0
    // the counts go out with the stacks they count
    this.#naming = this.#naming.then(async () => {
      let unnamed = 0
      try {
        await this.#emit(blocked)
      } catch (error) {
        unnamed = blocked.reduce((sum, b) => sum + b.samples, 0)
        this.#ctx.log.error(`off-CPU profile: naming ${blocked.length} stacks failed (${(error as Error).message}); their samples are counted lost`)
      }
      await this.#emitSelfMetrics(samples, lost + unnamed)
    }).catch((error: Error) => this.#ctx.log.error(`off-CPU profile: ${error.message}`))
  }

  /** Names the distinct stacks of `blocked`, SYMBOLIZE_CHUNK a call, and emits a profile sample per stack. */
  async #emit(blocked: Blocked[]): Promise<void> {
    if (blocked.length === 0) return
    // threads of a process share stacks: each distinct (pid, stack) is named once
    const index = new Map<string, number>()
    const stacks: { pid: number; user: number[]; kernel: bigint[] }[] = []
    const stackOf = blocked.map((b) => {
      const key = `${b.pid}:${b.user.join(',')}|${b.kernel.join(',')}`
      let at = index.get(key)
      if (at === undefined) {
        at = stacks.push({ pid: b.pid, user: b.user, kernel: b.kernel }) - 1
        index.set(key, at)
      }
      return at
    })
    const named: FrameInput[][] = []
    for (let at = 0; at < stacks.length; at += SYMBOLIZE_CHUNK) named.push(...await this.#ctx.symbolize(stacks.slice(at, at + SYMBOLIZE_CHUNK)))
    blocked.forEach((b, i) => {
      const frames: FrameInput[] = named[stackOf[i]!]!
      // a process gone before its stack was unwound
      if (b.truncated === undefined && frames.length === 0) frames.push({ address: 0, function: '[no stack]' })
      this.#ctx.emit.profile({
        type: 'offcpu',
        frames: b.truncated === undefined ? frames : [...frames, { address: 0, function: `[truncated: ${b.truncated}]` }],
        values: [b.ns],
        timeNs: this.#ctx.time.wallNs(b.lastNs),
        labels: { 'process.pid': b.pid, 'thread.id': b.tid, 'thread.name': b.comm },
        process: { pid: b.pid },
      })
    })
  }

  async #emitSelfMetrics(samplesByEnd: Map<string, number>, lost: number): Promise<void> {
    const type = { 'profile.type': 'offcpu' }
    let total = 0
    for (const [reason, samples] of samplesByEnd) {
      total += samples
      if (reason !== 'none') this.#ctx.emit.metric({ name: 'periscope.profile.stacks.truncated', kind: 'counter', unit: '{sample}', value: samples, attributes: { ...type, reason } })
    }
    if (total > 0) this.#ctx.emit.metric({ name: 'periscope.profile.samples', kind: 'counter', unit: '{sample}', value: total, attributes: type })
    if (lost > 0) this.#ctx.emit.metric({ name: 'periscope.profile.samples.lost', kind: 'counter', unit: '{sample}', value: lost, attributes: type })
    const now = new Array<number>(OFFCPU_OVERFLOWS).fill(0)
    for (const [key, perCpu] of await this.#ctx.map('offcpu:overflows').entriesPerCpu()) {
      const reason = new DataView(key.buffer, key.byteOffset, key.byteLength).getUint32(0, true)
      for (const bytes of perCpu) now[reason]! += Number(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(0, true))
    }
    now.forEach((count, reason) => {
      if (count > this.#overflows[reason]!) this.#ctx.emit.metric({ name: 'periscope.profile.samples.lost', kind: 'counter', unit: '{sample}', value: count - this.#overflows[reason]!, attributes: { ...type, reason: overflowReasons[reason]! } })
    })
    this.#overflows = now
  }
}
