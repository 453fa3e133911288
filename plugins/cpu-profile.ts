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
import { definePlugin, type PluginContext } from 'periscope/plugin'
import { describeTargets, followStacks, SampledProfile, threadOf, u32 } from 'periscope/protocols/stack-profile'

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
    const periodNs = Math.round(1e9 / ctx.config.frequency)
    const profile = new SampledProfile(ctx, {
      type: 'cpu',
      title: 'CPU profile',
      emit: (c, frames) => ctx.emit.profile({ type: 'cpu', frames, values: [c.samples, c.samples * periodNs], timeNs: ctx.time.wallNs(c.lastNs), ...threadOf(c) }),
    })
    followStacks(ctx, 'stacks:samples', profile, { flush: true })
    await startSampling(ctx)
  },
})

/** Claims the kernel's pid filter, then starts sampling every CPU. */
async function startSampling(ctx: PluginContext<Config>): Promise<void> {
  const { frequency, target_pids: pids } = ctx.config
  if (pids.length > 0) {
    const targets = ctx.map('stacks:target_pids')
    for (const pid of new Set(pids)) await targets.claim(u32(pid), new Uint8Array([1]))
    await ctx.map('stacks:filter').claim(u32(0), u32(1))
  }
  await ctx.attach({ program: 'stacks:on_cpu_sample', perfEvent: { frequency } })
  ctx.log.info(`CPU profiles at ${frequency} Hz of ${describeTargets(pids)}, exported every ${ctx.config.collect_interval_ms} ms`)
}
