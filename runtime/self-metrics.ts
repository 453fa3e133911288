/**
 * The runtime's self-metrics: what each BPF object delivered and lost, and what each plugin
 * handled, dropped and cost. The exporter registers its own (queues, the runtime's CPU and RSS);
 * these come from the parts only the runtime owns, the bus and the plugin manager. Every value is a
 * running total or a level read at collection time, so nothing is counted twice.
 */
import type { Bus } from './bus.ts'
import type { PluginStats } from './plugins/host.ts'
import type { PluginManager } from './plugins/manager.ts'
import type { SelfMetricPoint } from './telemetry/metrics.ts'

/** `reason` attribute values, in the exporter's snake_case (`periscope.exporter.dropped{reason}`). */
const dropReasons: Record<keyof PluginStats['droppedBy'], string> = {
  queueFull: 'queue_full',
  rateLimit: 'rate_limit',
  cpuLimit: 'cpu_limit',
  failure: 'failure',
  unsubscribed: 'unsubscribed',
  shutdown: 'shutdown',
}

export function objectSelfMetrics(bus: Bus): SelfMetricPoint[] {
  const points: SelfMetricPoint[] = []
  for (const { name, stats } of bus.listObjects()) {
    const attributes = { 'bpf.object': name }
    points.push(
      { name: 'periscope.bpf.events.received', kind: 'counter', value: stats.received, unit: '{event}', description: 'Records read from the object\'s ring and perf buffers', attributes },
      { name: 'periscope.bpf.events.dropped', kind: 'counter', value: stats.dropped, unit: '{event}', description: 'Records lost in the kernel: ring buffer reserve failures and perf buffer losses', attributes },
    )
    if (stats.listenerErrors !== undefined) {
      points.push({ name: 'periscope.bpf.listener.errors', kind: 'counter', value: stats.listenerErrors, unit: '{batch}', description: 'Batches of the object\'s streams on which a subscriber threw (the other subscribers still received them)', attributes })
    }
  }
  return points
}

export function pluginSelfMetrics(manager: PluginManager): SelfMetricPoint[] {
  const points: SelfMetricPoint[] = []
  for (const { name, stats } of manager.list()) {
    // a file whose first build failed has no plugin name yet, and has done no work
    if (name === undefined) continue
    const plugin = { plugin: name }
    points.push(
      { name: 'periscope.plugin.events.handled', kind: 'counter', value: stats.handled, unit: '{event}', description: 'Records the plugin\'s handlers ran on', attributes: plugin },
      ...Object.entries(dropReasons).map(([key, reason]): SelfMetricPoint => ({
        name: 'periscope.plugin.events.dropped',
        kind: 'counter',
        value: stats.droppedBy[key as keyof PluginStats['droppedBy']],
        unit: '{event}',
        description: 'Records the plugin did not handle, by reason',
        attributes: { ...plugin, reason },
      })),
      { name: 'periscope.plugin.cpu.time', kind: 'counter', value: stats.cpuTimeMs / 1000, unit: 's', description: 'CPU time of the plugin\'s isolates, across versions', attributes: plugin },
      { name: 'periscope.plugin.memory.usage', kind: 'updown', value: stats.heapBytes, unit: 'By', description: 'Heap of the plugin\'s current isolate', attributes: plugin },
    )
  }
  return points
}
