/**
 * Allocation profiles of the processes named in `target_pids`, opt-in (uprobes on malloc and free
 * cost microseconds per call): uprobes on each process's libc `malloc`, `calloc`, `realloc` and
 * `free` (the `alloc_stacks` object, attached for that pid alone) sample its allocations by bytes,
 * one sample per `sample_bytes` allocated on average (0: every allocation, at its size), each
 * with its stack from malloc's caller up (unwound by the runtime, ctx.onStack). Bytes, not calls:
 * a stack's weight follows the memory it takes, and a rare big allocation is not missed the way
 * every-Nth-call sampling misses it. A sampled block stays in the kernel's `live` map until freed.
 *
 * Every `collect_interval_ms`, per (process, thread, stack): `alloc` profile samples with values
 * alloc_space (bytes allocated in the interval, estimated from the samples) and inuse_space (bytes
 * of the sampled blocks not freed yet, estimated the same way), labelled `process.pid`,
 * `thread.id` and `thread.name`. Statically linked programs and other allocators (jemalloc, Go)
 * are not followed: the plugin says so for each target it cannot follow. A hot reload carries the
 * stacks of the live blocks over (ctx.state), so bytes in use go on.
 *
 * Cost (bench/offcpu-alloc-overhead.bench.ts): about 8.5 µs of CPU per malloc + free pair at
 * the default sampling, nearly all of it the three uprobe traps (malloc's entry and return,
 * free's entry); about 16 µs a pair when every allocation is sampled.
 *
 * Everything here is public plugin API: a user plugin can do the same.
 */
import { definePlugin, type PluginContext, type PluginLink, type StackSample } from 'periscope/plugin'
import { ALLOC_STACKS_OVERFLOW_IN_FLIGHT, ALLOC_STACKS_OVERFLOW_LIVE } from 'periscope/protocols/alloc-stacks'
import { followStacks, KernelOverflows, nameStacks, threadOf, u32, withTruncation, type ThreadStack } from 'periscope/protocols/stack-profile'

const config = {
  /** Mean bytes allocated between two samples; 0 samples every allocation. */
  sample_bytes: 512 * 1024,
  /** How often the profiles are named and exported. */
  collect_interval_ms: 10_000,
  /** The processes followed (from `plugins.alloc-profile.target_pids` in periscope.yaml). */
  target_pids: [] as number[],
  /** Distinct (process, thread, stack) kept; samples beyond are counted lost. */
  max_stacks: 20_000,
}
type Config = typeof config

const probes: [string, boolean][] = [['malloc', true], ['calloc', true], ['realloc', true], ['free', false]]

/** The `reason` of each `enum alloc_stacks_overflow`. */
const overflowReasons: string[] = []
// a sampled block the full `live` map could not take: its bytes are missing from inuse_space
overflowReasons[ALLOC_STACKS_OVERFLOW_LIVE] = 'live_blocks'
// a call not sampled: its thread's state could not be made
overflowReasons[ALLOC_STACKS_OVERFLOW_IN_FLIGHT] = 'threads'

export default definePlugin({
  name: 'alloc-profile',
  objects: ['alloc_stacks'],
  config,
  async setup(ctx) {
    const profiler = new AllocProfiler(ctx)
    followStacks(ctx, 'alloc_stacks:samples', profiler, { flush: false })
    await profiler.start()
  },
})

/** One (process, thread, stack): its bytes allocated in the interval, and its bytes in use. */
interface Stack extends ThreadStack {
  allocated: number
  inUse: number
}

/** What carries across a hot reload: the stacks of live blocks, and which sample names each block. */
interface CarriedState {
  stacks: Stack[]
  /** `<tid>:<time>` of a sample → its stack's index in `stacks`. */
  samples: [string, number][]
}

const stackKey = (s: { pid: number; tid: number; user: number[]; truncated: string | undefined }): string => `${s.pid}:${s.tid}:${s.user.join(',')}|${s.truncated ?? ''}`
const u64 = (view: DataView, at: number): number => view.getUint32(at, true) + view.getUint32(at + 4, true) * 4294967296

class AllocProfiler {
  readonly #ctx: PluginContext<Config>
  #stacks = new Map<string, Stack>()
  /** By `<tid>:<time>`, the stack of each sample whose block may still be live. */
  #bySample = new Map<string, Stack>()
  #lost = 0
  readonly #overflows: KernelOverflows

  constructor(ctx: PluginContext<Config>) {
    this.#ctx = ctx
    this.#overflows = new KernelOverflows(ctx, 'alloc_stacks:overflows', 'alloc', overflowReasons)
    const carried = ctx.state.allocProfile as CarriedState | undefined
    for (const stack of carried?.stacks ?? []) this.#stacks.set(stackKey(stack), stack)
    for (const [id, at] of carried?.samples ?? []) if (carried!.stacks[at] !== undefined) this.#bySample.set(id, carried!.stacks[at]!)
  }

  async start(): Promise<void> {
    const { sample_bytes: sampleBytes } = this.#ctx.config
    if (!(Number.isInteger(sampleBytes) && sampleBytes >= 0)) throw new Error(`alloc-profile: sample_bytes must be a whole number of bytes, 0 or more; got ${JSON.stringify(sampleBytes)}`)
    const options = new DataView(new ArrayBuffer(8))
    options.setBigUint64(0, BigInt(sampleBytes), true)
    await this.#ctx.map('alloc_stacks:options').claim(u32(0), new Uint8Array(options.buffer))
    const followed: string[] = []
    for (const pid of new Set(this.#ctx.config.target_pids)) {
      const libc = (await this.#ctx.iterate('alloc_stacks:libc_mappings', { pid })).split('\n').find((line) => line !== '')
      if (libc === undefined) {
        this.#ctx.log.warn(`alloc-profile: pid ${pid} maps no libc (not running, statically linked, or using another allocator); it is not followed`)
        continue
      }
      try {
        await this.#attach(pid, libc)
        followed.push(`pid ${pid} (${libc})`)
      } catch (error) {
        this.#ctx.log.warn(`alloc-profile: cannot follow pid ${pid} through ${libc}: ${(error as Error).message}`)
      }
    }
    this.#ctx.log.info(followed.length === 0
      ? 'allocation profiles: no process followed (name running processes in plugins.alloc-profile.target_pids)'
      : `allocation profiles sampled every ${sampleBytes === 0 ? 'allocation' : `${sampleBytes} bytes`} for ${followed.join(', ')}`)
  }

  async #attach(pid: number, libc: string): Promise<void> {
    const links: PluginLink[] = []
    try {
      for (const [symbol, returns] of probes) {
        links.push(await this.#ctx.attach({ program: `alloc_stacks:${symbol}_enter`, uprobe: { binary: libc, symbol, pid } }))
        if (returns) links.push(await this.#ctx.attach({ program: `alloc_stacks:${symbol}_exit`, uprobe: { binary: libc, symbol, retprobe: true, pid } }))
      }
    } catch (error) {
      for (const link of links) await link.detach()
      throw error
    }
  }

  add(sample: StackSample): void {
    const key = stackKey(sample)
    let stack = this.#stacks.get(key)
    if (stack === undefined) {
      if (this.#stacks.size >= this.#ctx.config.max_stacks) {
        this.#lost++
        return
      }
      stack = { pid: sample.pid, tid: sample.tid, comm: sample.comm, user: sample.user, kernel: sample.kernel, truncated: sample.truncated, allocated: 0, inUse: 0 }
      this.#stacks.set(key, stack)
    }
    stack.allocated += sample.value
    this.#bySample.set(`${sample.tid}:${sample.timeNs}`, stack)
  }

  lose(samples: number): void {
    this.#lost += samples
  }

  /** Bytes in use per stack from the kernel's live blocks; stacks with neither new bytes nor live blocks go. */
  async #readInUse(): Promise<void> {
    for (const stack of this.#stacks.values()) stack.inUse = 0
    const stillLive = new Map<string, Stack>()
    for (const [, value] of await this.#ctx.map('alloc_stacks:live').entries()) {
      const view = new DataView(value.buffer, value.byteOffset, value.byteLength)
      const id = `${view.getUint32(16, true)}:${u64(view, 8)}`
      const stack = this.#bySample.get(id)
      if (stack === undefined) continue
      stack.inUse += u64(view, 0)
      stillLive.set(id, stack)
    }
    this.#bySample = stillLive
  }

  async collect(): Promise<void> {
    await this.#readInUse()
    const stacks = [...this.#stacks.values()].filter((s) => s.allocated > 0 || s.inUse > 0)
    this.#stacks = new Map(stacks.filter((s) => s.inUse > 0).map((s) => [stackKey(s), s]))
    this.#carry()
    if (this.#lost > 0) this.#ctx.emit.metric({ name: 'periscope.profile.samples.lost', kind: 'counter', unit: '{sample}', value: this.#lost, attributes: { 'profile.type': 'alloc' } })
    this.#lost = 0
    await this.#overflows.emit()
    if (stacks.length === 0) return
    const named = await nameStacks(this.#ctx, stacks)
    stacks.forEach((s, i) => {
      this.#ctx.emit.profile({ type: 'alloc', frames: withTruncation(named[i]!, s.truncated), values: [s.allocated, s.inUse], ...threadOf(s) })
      s.allocated = 0
    })
  }

  /** The state a reload takes (structured-copied then): the stacks still in use and their samples. */
  #carry(): void {
    const stacks = [...this.#stacks.values()]
    const index = new Map(stacks.map((s, i) => [s, i]))
    this.#ctx.state.allocProfile = { stacks, samples: Array.from(this.#bySample, ([id, stack]) => [id, index.get(stack) ?? -1] as [string, number]).filter(([, at]) => at >= 0) } satisfies CarriedState
  }
}
