/**
 * A stand-in for plugins/cpu-profile.ts with its config and output, for tests of what consumes
 * them (`periscope profile`) without the kernel: every `collect_interval_ms` it emits the CPU
 * samples a process spending 80% of its time in `hot_loop` and 20% in `warm_loop` (both under
 * `work` and `main`) would give at `frequency` Hz for that long, for the first of `target_pids`
 * (else for two processes whose pids cannot exist, pid_max being at most 2^22, as a whole host), then the `periscope.profile.samples` metric.
 */
export function cpuProfileFixturePlugin(): string {
  return `import { definePlugin } from 'periscope/plugin'
export default definePlugin({
  name: 'cpu-profile',
  config: { frequency: 19, collect_interval_ms: 10000, target_pids: [] as number[] },
  setup(ctx) {
    const { frequency, collect_interval_ms: interval, target_pids: pids } = ctx.config
    const processes = pids.length > 0 ? [{ pid: pids[0], comm: 'burner' }] : [{ pid: 4194401, comm: 'alpha' }, { pid: 4194402, comm: 'beta' }]
    const periodNs = Math.round(1e9 / frequency)
    const mapping = { file: '/opt/burner', buildId: 'b0b0', start: 0x400000 }
    const frame = (fn: string, address: number) => ({ function: fn, address, mapping })
    ctx.every(interval, () => {
      let total = 0
      for (const { pid, comm } of processes) {
        const samples = Math.round(frequency * interval / 1000)
        const hot = Math.round(samples * 0.8)
        for (const [leaf, count] of [[frame('hot_loop', 0x401100), hot], [frame('warm_loop', 0x401200), samples - hot]] as const) {
          ctx.emit.profile({
            type: 'cpu',
            frames: [leaf, frame('work', 0x401300), frame('main', 0x401400)],
            values: [count, count * periodNs],
            labels: { 'process.pid': pid, 'thread.id': pid, 'thread.name': comm },
            process: { pid, executablePath: '/opt/burner', command: comm },
          })
        }
        total += samples
      }
      ctx.emit.metric({ name: 'periscope.profile.samples', kind: 'counter', value: total })
    })
  },
})
`
}
