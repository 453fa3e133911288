/**
 * Where plugin signals go. The telemetry exporter (`runtime/telemetry`) is a `SignalSink`: its
 * `scope(pluginName)` returns the plugin's instrumentation scope. `MemorySink` keeps everything
 * in memory for tests and for running without an exporter.
 */
import type { SelfMetricPoint } from '../telemetry/metrics.ts'
import type { LogInput, MetricPointInput, ProfileSampleInput, SpanInput } from '../telemetry/signals.ts'

export interface ScopeSink {
  spans(spans: SpanInput[]): unknown
  metrics(points: MetricPointInput[]): unknown
  logs(records: LogInput[]): unknown
  profiles(samples: ProfileSampleInput[]): unknown
}

export interface SignalSink {
  scope(pluginName: string): ScopeSink
  /**
   * Adds a source of the runtime's self-metrics, read at every metric collection; returns a
   * function that removes it. Sinks that export no metrics (`MemorySink`) leave it out.
   */
  registerSelfMetrics?(source: string, collect: () => SelfMetricPoint[]): () => void
}

export interface RecordedSignals {
  spans: SpanInput[]
  metrics: MetricPointInput[]
  logs: LogInput[]
  profiles: ProfileSampleInput[]
}

export class MemorySink implements SignalSink {
  readonly byPlugin = new Map<string, RecordedSignals>()

  scope(pluginName: string): ScopeSink {
    const recorded = this.signals(pluginName)
    return {
      spans: (s) => { recorded.spans.push(...s) },
      metrics: (m) => { recorded.metrics.push(...m) },
      logs: (l) => { recorded.logs.push(...l) },
      profiles: (p) => { recorded.profiles.push(...p) },
    }
  }

  signals(pluginName: string): RecordedSignals {
    let recorded = this.byPlugin.get(pluginName)
    if (recorded === undefined) {
      recorded = { spans: [], metrics: [], logs: [], profiles: [] }
      this.byPlugin.set(pluginName, recorded)
    }
    return recorded
  }
}
