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
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base'
import type { ReadableLogRecord } from '@opentelemetry/sdk-logs'
import type { LoggerProvider } from '@opentelemetry/sdk-logs'
import type { ResourceMetrics } from '@opentelemetry/sdk-metrics'
import { SIGNALS, parseTelemetryConfig, resolveTelemetrySettings } from './config.ts'
import type { ResolvedTelemetrySettings, Signal } from './config.ts'
import { ExportQueue } from './queue.ts'
import type { QueueStats } from './queue.ts'
import { ProcessResources, detectHostAttributes, runtimeResource } from './resource.ts'
import { TracePipeline } from './traces.ts'
import type { TraceStats } from './traces.ts'
import { MetricsPipeline } from './metrics.ts'
import type { SelfMetricPoint } from './metrics.ts'
import { LogPipeline } from './logs.ts'
import { ProfileAggregator } from './profiles.ts'
import type { AggregatedProfile } from './profiles.ts'
import { profileSender } from './profiles-otlp.ts'
import { logSender, metricSender, spanSender } from './senders.ts'
import type { Sender, SenderContext } from './senders.ts'
import { servePrometheus } from './prometheus.ts'
import type { PrometheusEndpoint } from './prometheus.ts'
import { stderrLog } from './log.ts'
import type { TelemetryLog } from './log.ts'
import type { LogInput, MetricPointInput, ProcessRef, ProfileSampleInput, SpanInput } from './signals.ts'

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

export interface ScopeEmitter {
  spans(spans: SpanInput[]): void
  metrics(points: MetricPointInput[]): void
  logs(records: LogInput[]): void
  profiles(samples: ProfileSampleInput[]): void
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

interface ProcessProviders {
  logger?: LoggerProvider
}

const REPORT_INTERVAL_MS = 60_000

const OPTION_KEYS = new Set(['config', 'env', 'log'])

export async function createTelemetry(options: TelemetryOptions = {}): Promise<Telemetry> {
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

  const hostAttributes = await detectHostAttributes()
  const resource = runtimeResource(hostAttributes, settings.resourceAttributes, settings.serviceName)

  const senderContext: SenderContext = {
    dataDir: config.dataDir,
    rotation: config.rotation,
    exportTimeoutMs: config.exportTimeoutMs,
  }
  const makeQueue = <T>(signal: Signal, sender: Sender<T>, capacity: number, maxBatch: number) =>
    new ExportQueue<T>({
      signal,
      destination: sender.destination,
      capacity,
      maxBatch,
      intervalMs: config.batch.intervalMs,
      initialBackoffMs: config.retry.initialBackoffMs,
      maxBackoffMs: config.retry.maxBackoffMs,
      send: (batch) => sender.send(batch),
      log,
    })

  const senders = {
    traces: spanSender(settings.targets.traces, senderContext),
    metrics: metricSender(settings.targets.metrics, senderContext),
    logs: logSender(settings.targets.logs, senderContext),
    profiles: profileSender(settings.targets.profiles, senderContext, config.profiles.writePprof),
  }
  const queues = {
    traces: makeQueue<ReadableSpan>('traces', senders.traces, config.queue.spans, config.batch.maxSize),
    // one collection per request: the OTLP metrics exporter takes a single ResourceMetrics
    metrics: makeQueue<ResourceMetrics>('metrics', senders.metrics, config.queue.metrics, 1),
    logs: makeQueue<ReadableLogRecord>('logs', senders.logs, config.queue.logs, config.batch.maxSize),
    profiles: makeQueue<AggregatedProfile>('profiles', senders.profiles, config.queue.profiles, 64),
  }
  for (const signal of SIGNALS) {
    const target = settings.targets[signal]
    log('info', `${signal} → ${target.kind === 'otlp' ? `OTLP ${target.protocol} ${target.url}` : senders[signal].destination}`)
  }

  const traces = new TracePipeline({
    runtimeResource: resource,
    ratio: config.sampling.ratio,
    keepErrors: config.sampling.keepErrors,
    deliver: (spans) => queues.traces.push(spans),
  })
  const logs = new LogPipeline(resource, (records) => queues.logs.push(records))
  const metrics = new MetricsPipeline(resource, log)
  const profiles = new ProfileAggregator(config.profiles.maxStacks)
  const processes = new ProcessResources<ProcessProviders>(
    config.processes.maxResources,
    hostAttributes,
    settings.resourceAttributes,
    config.processes.serviceNames,
    () => ({}),
  )
  const loggerFor = (ref: ProcessRef | undefined): LoggerProvider | undefined => {
    if (ref === undefined) return undefined
    const entry = processes.get(ref)
    entry.extra.logger ??= logs.createProvider(entry.resource)
    return entry.extra.logger
  }
  const profileResourceFor = (ref: ProcessRef | undefined) => (ref === undefined ? resource : processes.get(ref).resource).attributes

  const invalid: Record<Signal, number> = { traces: 0, metrics: 0, logs: 0, profiles: 0 }
  const lastReport = new Map<string, number>()
  const reportInvalid = (signal: Signal, scopeName: string, problem: string | undefined, count: number): void => {
    if (problem === undefined) return
    invalid[signal] += count
    const key = `${signal}\0${scopeName}`
    const now = Date.now()
    if (now - (lastReport.get(key) ?? -Infinity) < REPORT_INTERVAL_MS) return
    lastReport.set(key, now)
    log('warn', `plugin "${scopeName}" emitted invalid ${signal}: ${problem}. Invalid items are dropped and counted (stats().signals.${signal}.invalid)`)
  }
  const guard = (signal: Signal, scopeName: string, run: () => string | undefined, rejectedBefore: () => number, rejectedAfter: () => number): void => {
    try {
      const before = rejectedBefore()
      const problem = run()
      reportInvalid(signal, scopeName, problem, rejectedAfter() - before)
    } catch (error) {
      reportInvalid(signal, scopeName, `internal error: ${String(error)}`, 1)
    }
  }

  metrics.registerSelfMetrics('exporter', () => exporterSelfMetrics(queues, invalid, traces.stats(), profiles.droppedSamples))
  metrics.registerSelfMetrics('runtime', runtimeSelfMetrics)

  let prometheus: PrometheusEndpoint | undefined
  if (settings.prometheus.enabled) {
    prometheus = await servePrometheus(settings.prometheus.host, settings.prometheus.port, () => metrics.collect(), log)
    if (prometheus !== undefined) log('info', `prometheus metrics at ${prometheus.url}`)
  }

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
    if (closed.length > 0) queues.profiles.push(closed)
  }
  const metricTimer = setInterval(() => void collectMetrics(), config.metrics.intervalMs)
  metricTimer.unref()
  const profileTimer = setInterval(drainProfiles, config.profiles.intervalMs)
  profileTimer.unref()

  const flushAll = async (deadlineMs: number): Promise<void> => {
    const deadline = Date.now() + deadlineMs
    drainProfiles()
    await collectMetrics()
    await Promise.all(SIGNALS.map((signal) => queues[signal].flush(deadline)))
  }

  let shuttingDown: Promise<void> | undefined
  const shutdown = async (deadlineMs: number): Promise<void> => {
    clearInterval(metricTimer)
    clearInterval(profileTimer)
    const deadline = Date.now() + deadlineMs
    drainProfiles()
    await collectMetrics()
    await Promise.all(SIGNALS.map((signal) => queues[signal].close(deadline)))
    await prometheus?.close()
    await metrics.shutdown()
    // an SDK exporter's shutdown waits for its request in flight, which can outlive the deadline
    const closing = Promise.all(
      SIGNALS.map((signal) => senders[signal].shutdown().catch((error: unknown) => log('warn', `closing the ${signal} exporter: ${String(error)}`))),
    )
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, deadline - Date.now()))))
    await Promise.race([closing, late])
    clearTimeout(timer)
  }

  return {
    settings,
    scope(name, version) {
      const scopeInfo = { name, version }
      return {
        spans: (spans) => {
          const processOf = processes.batchLookup()
          const resourceFor = (span: SpanInput) => (span.process === undefined ? undefined : processOf(span.process).resource)
          guard('traces', name, () => traces.emit(name, version, spans, resourceFor), () => traces.stats().rejected, () => traces.stats().rejected)
        },
        metrics: (points) =>
          guard('metrics', name, () => metrics.record(name, version, points), () => metrics.rejected, () => metrics.rejected),
        logs: (records) =>
          guard('logs', name, () => logs.emit(name, version, records, (record) => loggerFor(record.process)), () => logs.rejected, () => logs.rejected),
        profiles: (samples) =>
          guard('profiles', name, () => profiles.add(scopeInfo, samples, profileResourceFor), () => profiles.rejected, () => profiles.rejected),
      }
    },
    registerSelfMetrics: (source, collect) => metrics.registerSelfMetrics(source, collect),
    stats() {
      const signals = {} as Record<Signal, SignalStats>
      for (const signal of SIGNALS) {
        signals[signal] = {
          ...queues[signal].stats(),
          target: settings.targets[signal].kind,
          destination: queues[signal].destination,
          invalid: invalid[signal],
        }
      }
      return {
        signals,
        spans: traces.stats(),
        profileSamplesOverLimit: profiles.droppedSamples,
        processResources: processes.size,
        prometheus: prometheus?.url,
      }
    },
    async flush(deadlineMs = 5000) {
      if (shuttingDown !== undefined) return
      await flushAll(deadlineMs)
    },
    shutdown(deadlineMs = 5000) {
      shuttingDown ??= shutdown(deadlineMs)
      return shuttingDown
    },
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
      { name: 'periscope.exporter.queue.size', kind: 'gauge', value: s.queued + s.inFlight, unit: '{item}', description: 'Items waiting for export, including the batch in flight', attributes },
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
