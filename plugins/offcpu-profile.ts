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
 * send had not run yet, `unseen_end` when the kernel reported no switch-in to end a block).
 *
 * Cost (bench/offcpu-alloc-overhead.bench.ts): about 0.4 µs of CPU per context switch, watched
 * or filtered out; about 10 µs more for each block that is sent.
 *
 * Everything here is public plugin API: a user plugin can do the same.
 */
import { definePlugin, type PluginContext } from 'periscope/plugin'
import { encodeOffcpuOptions, OFFCPU_OBSERVE_ALL, OFFCPU_OBSERVE_TARGETS, OFFCPU_OPTIONS_SIZE, OFFCPU_OVERFLOW_SCHEDULE, OFFCPU_OVERFLOW_THREADS, OFFCPU_OVERFLOW_UNSEEN_END } from 'periscope/protocols/offcpu'
import { describeTargets, followStacks, KernelOverflows, SampledProfile, threadOf, u32 } from 'periscope/protocols/stack-profile'

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
overflowReasons[OFFCPU_OVERFLOW_UNSEEN_END] = 'unseen_end'

export default definePlugin({
  name: 'offcpu-profile',
  objects: ['offcpu'],
  config,
  async setup(ctx) {
    // the long blocks the kernel could not send
    const overflows = new KernelOverflows(ctx, 'offcpu:overflows', 'offcpu', overflowReasons)
    const profile = new SampledProfile(ctx, {
      type: 'offcpu',
      title: 'off-CPU profile',
      // the samples' values are the ns each block lasted
      emit: (b, frames) => ctx.emit.profile({ type: 'offcpu', frames, values: [b.value], timeNs: ctx.time.wallNs(b.lastNs), ...threadOf(b) }),
      emitMoreMetrics: () => overflows.emit(),
    })
    followStacks(ctx, 'offcpu:samples', profile, { flush: true })
    await startWatching(ctx)
  },
})

/** Claims the threshold and the pid filter: the kernel records nothing before. */
async function startWatching(ctx: PluginContext<Config>): Promise<void> {
  const { min_block_ms: minBlockMs, target_pids: pids } = ctx.config
  if (!(minBlockMs >= 0)) throw new Error(`offcpu-profile: min_block_ms must be a number of milliseconds, 0 or more; got ${JSON.stringify(minBlockMs)}`)
  for (const pid of new Set(pids)) await ctx.map('offcpu:targets').claim(u32(pid), new Uint8Array([1]))
  const options = new Uint8Array(OFFCPU_OPTIONS_SIZE)
  const observe = pids.length > 0 ? OFFCPU_OBSERVE_TARGETS : OFFCPU_OBSERVE_ALL
  encodeOffcpuOptions({ min_block_ns: Math.round(minBlockMs * 1e6), observe, pad: 0 }, new DataView(options.buffer), 0)
  await ctx.map('offcpu:options').claim(u32(0), options)
  ctx.log.info(`off-CPU profiles of blocks of ${minBlockMs} ms or more in ${describeTargets(pids)}, exported every ${ctx.config.collect_interval_ms} ms`)
}
