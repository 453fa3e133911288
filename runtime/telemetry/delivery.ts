/**
 * Delivery: one sender and one bounded export queue per signal, the timers that feed the metric
 * and profile queues, and the flush and shutdown that drain them within a deadline.
 */
import type { ReadableLogRecord } from '@opentelemetry/sdk-logs'
import type { ResourceMetrics } from '@opentelemetry/sdk-metrics'
import { SIGNALS } from './config.ts'
import type { ResolvedTelemetrySettings, Signal, TelemetryConfig } from './config.ts'
import type { TelemetryLog } from './log.ts'
import type { MetricsPipeline } from './metrics.ts'
import type { AggregatedProfile, ProfileAggregator } from './profiles.ts'
import { mergePerInterval } from './profiles.ts'
import { profileSender } from './profiles-otlp.ts'
import type { PrometheusEndpoint } from './prometheus.ts'
import { ExportQueue } from './queue.ts'
import { logSender, metricSender, spanSender } from './senders.ts'
import type { PluginSpan } from './traces.ts'
import type { Sender, SenderContext } from './senders.ts'

/** What each signal's queue carries. */
export interface SignalItems {
  traces: PluginSpan
  metrics: ResourceMetrics
  logs: ReadableLogRecord
  /**
   * One collection's profiles (a profile per process and type; merged per plugin and type for
   * pprof files), so that the queue's capacity counts intervals: a host with more processes than
   * that capacity loses none of them.
   */
  profiles: AggregatedProfile[]
}

export type SignalQueues = { [S in Signal]: ExportQueue<SignalItems[S]> }
type SignalSenders = { [S in Signal]: Sender<SignalItems[S]> }

export interface Delivery {
  queues: SignalQueues
  /** Exports everything buffered now; resolves when done or after `deadlineMs`. */
  flush(deadlineMs: number): Promise<void>
  /** Flushes within `deadlineMs`, then stops the timers, the queues and the senders. */
  shutdown(deadlineMs: number): Promise<void>
}

export interface OpenedQueues {
  queues: SignalQueues
  senders: SignalSenders
  /** Profiles go only to pprof files, one per plugin, type and interval: the drain merges the processes. */
  profilesPerInterval: boolean
}

/** Opens each signal's sender (loading only the exporters the settings use) and its queue. */
export async function openQueues(config: TelemetryConfig, settings: ResolvedTelemetrySettings, log: TelemetryLog): Promise<OpenedQueues> {
  const context: SenderContext = { dataDir: config.dataDir, rotation: config.rotation, exportTimeoutMs: config.exportTimeoutMs }
  const [traces, metrics, logs, profiles] = await Promise.all([
    spanSender(settings.targets.traces, context),
    metricSender(settings.targets.metrics, context),
    logSender(settings.targets.logs, context),
    profileSender(settings.targets.profiles, context, config.profiles.writePprof),
  ])
  const senders: SignalSenders = { traces, metrics, logs, profiles }
  const queue = <T>(signal: Signal, sender: Sender<T>, capacity: number, maxBatch: number, maxInFlight = config.batch.maxInFlight) =>
    new ExportQueue<T>({
      signal,
      destination: sender.destination,
      capacity,
      maxBatch,
      maxInFlight,
      intervalMs: config.batch.intervalMs,
      initialBackoffMs: config.retry.initialBackoffMs,
      maxBackoffMs: config.retry.maxBackoffMs,
      send: (batch) => sender.send(batch),
      log,
    })
  const queues: SignalQueues = {
    traces: queue('traces', traces, config.queue.spans, config.batch.maxSize),
    // one collection per request, in order: the OTLP metrics exporter takes a single ResourceMetrics
    metrics: queue('metrics', metrics, config.queue.metrics, 1, 1),
    logs: queue('logs', logs, config.queue.logs, config.batch.maxSize),
    // an interval at a time: the sender splits its processes into requests
    profiles: queue('profiles', profiles, config.queue.profiles, 1),
  }
  for (const signal of SIGNALS) {
    const target = settings.targets[signal]
    log('info', `${signal} → ${target.kind === 'otlp' ? `OTLP ${target.protocol} ${target.url}` : senders[signal].destination}`)
  }
  return { queues, senders, profilesPerInterval: settings.targets.profiles.kind === 'embedded' }
}

/**
 * Starts the periodic metric collection and profile drain into their queues. The timers are
 * unref'd: the exporter must never be what keeps a finished process alive.
 */
export function startDelivery(
  config: TelemetryConfig,
  { queues, senders, profilesPerInterval }: OpenedQueues,
  metrics: MetricsPipeline,
  profiles: ProfileAggregator,
  prometheus: PrometheusEndpoint | undefined,
  log: TelemetryLog,
): Delivery {
  const collectMetrics = async (): Promise<void> => {
    try {
      const collected = await metrics.collect()
      if (collected.scopeMetrics.length > 0) queues.metrics.push([collected])
    } catch (error) {
      log('error', `metric collection failed: ${String(error)}`)
    }
  }
  const drainProfiles = (): void => {
    const closed = profiles.drain()
    if (closed.length > 0) queues.profiles.push([profilesPerInterval ? mergePerInterval(closed) : closed])
  }
  const metricTimer = setInterval(() => void collectMetrics(), config.metrics.intervalMs)
  metricTimer.unref()
  const profileTimer = setInterval(drainProfiles, config.profiles.intervalMs)
  profileTimer.unref()

  return {
    queues,
    async flush(deadlineMs) {
      const deadline = Date.now() + deadlineMs
      drainProfiles()
      await collectMetrics()
      await Promise.all(SIGNALS.map((signal) => queues[signal].flush(deadline)))
    },
    async shutdown(deadlineMs) {
      clearInterval(metricTimer)
      clearInterval(profileTimer)
      const deadline = Date.now() + deadlineMs
      drainProfiles()
      await collectMetrics()
      await Promise.all(SIGNALS.map((signal) => queues[signal].close(deadline)))
      await prometheus?.close()
      await metrics.shutdown()
      await closeSenders(senders, deadline, log)
    },
  }
}

/** An SDK exporter's shutdown waits for its request in flight, which can outlive the deadline. */
async function closeSenders(senders: SignalSenders, deadline: number, log: TelemetryLog): Promise<void> {
  const closing = Promise.all(
    SIGNALS.map((signal) => senders[signal].shutdown().catch((error: unknown) => log('warn', `closing the ${signal} exporter: ${String(error)}`))),
  )
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, deadline - Date.now()))))
  await Promise.race([closing, late])
  clearTimeout(timer)
}
