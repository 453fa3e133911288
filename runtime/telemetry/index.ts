/**
 * The one exporter the runtime owns. Plugins emit plain data (signals.ts) through a ScopeEmitter,
 * one instrumentation scope per plugin; this module turns it into OpenTelemetry data with the JS
 * SDK and sends it over OTLP, or keeps it in the embedded store (./periscope-data and a Prometheus
 * endpoint) when no endpoint is configured.
 *
 * Every signal goes through a bounded ExportQueue (queue.ts), so a Collector outage costs bounded
 * memory and every lost item is counted in `stats()` and in the self-metrics.
 *
 * Nothing here throws into a plugin or the runtime after start-up: bad input is counted and
 * reported through `log`, and export failures are retried with backoff.
 */
import type { Attributes } from '@opentelemetry/api'
import type { Resource } from '@opentelemetry/resources'
import { parseTelemetryConfig, resolveTelemetrySettings, SIGNALS } from './config.ts'
import type { ResolvedTelemetrySettings, Signal, TelemetryConfig } from './config.ts'
import { openQueues, startDelivery } from './delivery.ts'
import type { SignalQueues } from './delivery.ts'
import { InvalidInputs, scopeEmitter } from './emitters.ts'
import type { Pipelines, ProcessProviders, ScopeEmitter } from './emitters.ts'
import { stderrLog } from './log.ts'
import type { TelemetryLog } from './log.ts'
import { LogPipeline } from './logs.ts'
import { MetricsPipeline } from './metrics.ts'
import type { SelfMetricPoint } from './metrics.ts'
import { ProfileAggregator } from './profiles.ts'
import { servePrometheus } from './prometheus.ts'
import type { PrometheusEndpoint } from './prometheus.ts'
import type { QueueStats } from './queue.ts'
import { detectHostAttributes, ProcessResources, runtimeResource } from './resource.ts'
import { TracePipeline } from './traces.ts'
import type { TraceStats } from './traces.ts'

export type { ScopeEmitter } from './emitters.ts'
export type { SelfMetricPoint } from './metrics.ts'
export type { TelemetryLog, TelemetryLogLevel } from './log.ts'
export type { QueueStats } from './queue.ts'
export { telemetryConfigSchema, parseTelemetryConfig, resolveTelemetrySettings } from './config.ts'
export type { TelemetryConfig, TelemetryConfigInput, ResolvedTelemetrySettings, Signal, SignalTarget } from './config.ts'
export type * from './signals.ts'

export interface TelemetryOptions {
  /** The `exporter` section of periscope.yaml, as read from the file; validated here. */
  config?: unknown
  /** Where OTEL_* variables are read from; process.env by default. */
  env?: Record<string, string | undefined>
  /** Receives every problem report; stderr by default. */
  log?: TelemetryLog
}

export interface SignalStats extends QueueStats {
  target: 'otlp' | 'embedded'
  destination: string
  /** Items refused before queueing because they were malformed (each kind is logged). */
  invalid: number
}

export interface ExporterStats {
  signals: Record<Signal, SignalStats>
  spans: TraceStats
  /** Profile samples dropped because the distinct-stack limit of an interval was reached. */
  profileSamplesOverLimit: number
  /** Traced processes whose resource is currently cached. */
  processResources: number
  /** The Prometheus scrape URL, when serving. */
  prometheus: string | undefined
}

export interface Telemetry {
  readonly settings: ResolvedTelemetrySettings
  /** The emitter for one plugin; each plugin is its own instrumentation scope. */
  scope(name: string, version?: string): ScopeEmitter
  /**
   * Adds a source of self-metrics, called at every metric collection (push or scrape), e.g. events
   * received and dropped per BPF object, events handled per plugin, plugin CPU time and memory.
   * Returns a function that removes the source.
   */
  registerSelfMetrics(source: string, collect: () => SelfMetricPoint[]): () => void
  stats(): ExporterStats
  /** Exports everything buffered now; resolves when done or after `deadlineMs`. Never rejects. */
  flush(deadlineMs?: number): Promise<void>
  /** Flushes within `deadlineMs`, then stops; what is left is counted as dropped at shutdown. */
  shutdown(deadlineMs?: number): Promise<void>
}

const OPTION_KEYS = new Set(['config', 'env', 'log'])

export async function createTelemetry(options: TelemetryOptions = {}): Promise<Telemetry> {
  const { log, config, settings } = readOptions(options)
  const hostAttributes = await detectHostAttributes()
  const resource = runtimeResource(hostAttributes, settings.resourceAttributes, settings.serviceName)
  const opened = await openQueues(config, settings, log)
  const { queues } = opened
  const pipelines = createPipelines(config, settings, resource, hostAttributes, queues, log)
  const invalid = new InvalidInputs(log)
  pipelines.metrics.registerSelfMetrics('exporter', () => exporterSelfMetrics(queues, invalid.counts, pipelines.traces.stats(), pipelines.profiles.droppedSamples))
  pipelines.metrics.registerSelfMetrics('runtime', runtimeSelfMetrics)
  const prometheus = settings.prometheus.enabled ? await servePrometheus(settings.prometheus.host, settings.prometheus.port, () => pipelines.metrics.collect(), log) : undefined
  if (prometheus !== undefined) log('info', `prometheus metrics at ${prometheus.url}`)
  const delivery = startDelivery(config, opened, pipelines.metrics, pipelines.profiles, prometheus, log)

  let shuttingDown: Promise<void> | undefined
  return {
    settings,
    scope: (name, version) => scopeEmitter(name, version, pipelines, invalid),
    registerSelfMetrics: (source, collect) => pipelines.metrics.registerSelfMetrics(source, collect),
    stats: () => exporterStats(settings, queues, invalid, pipelines, prometheus),
    async flush(deadlineMs = 5000) {
      pipelines.traces.releaseWaiting()
      if (shuttingDown === undefined) await delivery.flush(deadlineMs)
    },
    shutdown(deadlineMs = 5000) {
      if (shuttingDown === undefined) pipelines.traces.releaseWaiting()
      shuttingDown ??= delivery.shutdown(deadlineMs)
      return shuttingDown
    },
  }
}

/** Validates the options and the config section, and resolves the OTEL_* environment over it. */
function readOptions(options: TelemetryOptions): { log: TelemetryLog; config: TelemetryConfig; settings: ResolvedTelemetrySettings } {
  // a config section passed as the options object would otherwise be ignored without a word
  for (const key of Object.keys(options)) {
    if (!OPTION_KEYS.has(key)) {
      throw new TypeError(
        `createTelemetry: unknown option "${key}". Options are { config, env, log }; pass the periscope.yaml section as createTelemetry({ config: config.exporter })`,
      )
    }
  }
  const log = options.log ?? stderrLog
  const config = parseTelemetryConfig(options.config)
  const settings = resolveTelemetrySettings(config, options.env ?? process.env)
  for (const problem of settings.problems) log('warn', problem)
  return { log, config, settings }
}

/** The per-signal pipelines that turn plugin data into SDK data and hand it to the queues. */
function createPipelines(
  config: TelemetryConfig,
  settings: ResolvedTelemetrySettings,
  resource: Resource,
  hostAttributes: Attributes,
  queues: SignalQueues,
  log: TelemetryLog,
): Pipelines {
  return {
    runtimeResource: resource,
    processes: new ProcessResources<ProcessProviders>(
      config.processes.maxResources,
      hostAttributes,
      settings.resourceAttributes,
      config.processes.serviceNames,
      () => ({}),
    ),
    traces: new TracePipeline({
      runtimeResource: resource,
      ratio: config.sampling.ratio,
      keepErrors: config.sampling.keepErrors,
      deliver: (spans) => queues.traces.push(spans),
    }),
    logs: new LogPipeline(resource, (records) => queues.logs.push(records)),
    metrics: new MetricsPipeline(resource, log),
    profiles: new ProfileAggregator(config.profiles.maxStacks),
  }
}

function exporterStats(
  settings: ResolvedTelemetrySettings,
  queues: SignalQueues,
  invalid: InvalidInputs,
  pipelines: Pipelines,
  prometheus: PrometheusEndpoint | undefined,
): ExporterStats {
  const signals = {} as Record<Signal, SignalStats>
  for (const signal of SIGNALS) {
    signals[signal] = {
      ...queues[signal].stats(),
      target: settings.targets[signal].kind,
      destination: queues[signal].destination,
      invalid: invalid.counts[signal],
    }
  }
  return {
    signals,
    spans: pipelines.traces.stats(),
    profileSamplesOverLimit: pipelines.profiles.droppedSamples,
    processResources: pipelines.processes.size,
    prometheus: prometheus?.url,
  }
}

function exporterSelfMetrics(
  queues: Record<Signal, { stats(): QueueStats }>,
  invalid: Record<Signal, number>,
  traceStats: TraceStats,
  profileSamplesOverLimit: number,
): SelfMetricPoint[] {
  const points: SelfMetricPoint[] = []
  for (const signal of SIGNALS) {
    const s = queues[signal].stats()
    const attributes = { signal }
    points.push(
      { name: 'periscope.exporter.queue.size', kind: 'gauge', value: s.queued + s.inFlight, unit: '{item}', description: 'Items waiting for export, including the batches in flight', attributes },
      { name: 'periscope.exporter.queue.capacity', kind: 'gauge', value: s.capacity, unit: '{item}', description: 'Queue limit beyond which the oldest items are dropped', attributes },
      { name: 'periscope.exporter.sent', kind: 'counter', value: s.sent, unit: '{item}', description: 'Items the destination accepted', attributes },
      { name: 'periscope.exporter.failed', kind: 'counter', value: s.failedExports, unit: '{request}', description: 'Export attempts that failed and were retried', attributes },
      { name: 'periscope.exporter.dropped', kind: 'counter', value: s.dropped, unit: '{item}', description: 'Items lost, by reason', attributes: { signal, reason: 'queue_full' } },
      { name: 'periscope.exporter.dropped', kind: 'counter', value: s.droppedAtShutdown, unit: '{item}', attributes: { signal, reason: 'shutdown' } },
      { name: 'periscope.exporter.dropped', kind: 'counter', value: s.rejected, unit: '{item}', attributes: { signal, reason: 'refused' } },
      { name: 'periscope.exporter.dropped', kind: 'counter', value: invalid[signal], unit: '{item}', attributes: { signal, reason: 'invalid' } },
    )
  }
  points.push(
    { name: 'periscope.exporter.dropped', kind: 'counter', value: profileSamplesOverLimit, unit: '{item}', attributes: { signal: 'profiles', reason: 'stack_limit' } },
    { name: 'periscope.traces.sampled_out', kind: 'counter', value: traceStats.sampledOut, unit: '{span}', description: 'Spans not kept by head sampling' },
    { name: 'periscope.traces.context_joins', kind: 'counter', value: traceStats.contextJoined, unit: '{span}', description: 'Client spans joined to the server span of the request their thread served, by outcome', attributes: { outcome: 'joined' } },
    { name: 'periscope.traces.context_joins', kind: 'counter', value: traceStats.contextUnjoined, unit: '{span}', attributes: { outcome: 'alone' } },
  )
  return points
}

function runtimeSelfMetrics(): SelfMetricPoint[] {
  const cpu = process.cpuUsage()
  return [
    { name: 'process.cpu.time', kind: 'counter', value: cpu.user / 1e6, unit: 's', description: 'CPU time of the Periscope runtime', attributes: { 'cpu.mode': 'user' } },
    { name: 'process.cpu.time', kind: 'counter', value: cpu.system / 1e6, unit: 's', attributes: { 'cpu.mode': 'system' } },
    { name: 'process.memory.usage', kind: 'updown', value: process.memoryUsage.rss(), unit: 'By', description: 'Resident set size of the Periscope runtime' },
  ]
}
