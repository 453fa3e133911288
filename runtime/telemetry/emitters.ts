/**
 * The emitter each plugin gets: its own instrumentation scope over the shared pipelines. A
 * malformed item is dropped, counted per signal and reported at most once a minute per plugin and
 * signal; nothing a plugin emits can throw into the runtime.
 */
import type { LoggerProvider } from '@opentelemetry/sdk-logs'
import type { Resource } from '@opentelemetry/resources'
import type { Signal } from './config.ts'
import type { TelemetryLog } from './log.ts'
import type { LogPipeline } from './logs.ts'
import type { MetricsPipeline } from './metrics.ts'
import type { ProfileAggregator } from './profiles.ts'
import type { ProcessResources } from './resource.ts'
import type { LogInput, MetricPointInput, ProcessRef, ProfileSampleInput, SpanInput } from './signals.ts'
import type { TracePipeline } from './traces.ts'

export interface ScopeEmitter {
  spans(spans: SpanInput[]): void
  metrics(points: MetricPointInput[]): void
  logs(records: LogInput[]): void
  profiles(samples: ProfileSampleInput[]): void
}

/** What a traced process's resource carries besides the resource: its log provider, made on first use. */
export interface ProcessProviders {
  logger?: LoggerProvider
}

export interface Pipelines {
  runtimeResource: Resource
  processes: ProcessResources<ProcessProviders>
  traces: TracePipeline
  metrics: MetricsPipeline
  logs: LogPipeline
  profiles: ProfileAggregator
}

const REPORT_INTERVAL_MS = 60_000

/** Counts malformed plugin emits per signal and reports them without flooding the log. */
export class InvalidInputs {
  readonly counts: Record<Signal, number> = { traces: 0, metrics: 0, logs: 0, profiles: 0 }
  private readonly lastReport = new Map<string, number>()
  private readonly log: TelemetryLog

  constructor(log: TelemetryLog) {
    this.log = log
  }

  /**
   * Runs one emit. `run` returns the first problem it found, if any; `rejected` reads the
   * pipeline's running count of rejected items, so the difference is what this emit dropped.
   */
  guard(signal: Signal, scopeName: string, run: () => string | undefined, rejected: () => number): void {
    try {
      const before = rejected()
      const problem = run()
      if (problem !== undefined) this.report(signal, scopeName, problem, rejected() - before)
    } catch (error) {
      this.report(signal, scopeName, `internal error: ${String(error)}`, 1)
    }
  }

  private report(signal: Signal, scopeName: string, problem: string, count: number): void {
    this.counts[signal] += count
    const key = `${signal}\0${scopeName}`
    const now = Date.now()
    if (now - (this.lastReport.get(key) ?? -Infinity) < REPORT_INTERVAL_MS) return
    this.lastReport.set(key, now)
    this.log('warn', `plugin "${scopeName}" emitted invalid ${signal}: ${problem}. Invalid items are dropped and counted (stats().signals.${signal}.invalid)`)
  }
}

export function scopeEmitter(name: string, version: string | undefined, pipelines: Pipelines, invalid: InvalidInputs): ScopeEmitter {
  const { processes, traces, metrics, logs, profiles } = pipelines
  const scopeInfo = { name, version }
  const loggerFor = (ref: ProcessRef | undefined): LoggerProvider | undefined => {
    if (ref === undefined) return undefined
    const entry = processes.get(ref)
    entry.extra.logger ??= logs.createProvider(entry.resource)
    return entry.extra.logger
  }
  const profileResourceFor = (ref: ProcessRef | undefined) => (ref === undefined ? pipelines.runtimeResource : processes.get(ref).resource).attributes
  return {
    spans: (spans) => {
      const processOf = processes.batchLookup()
      const resourceFor = (span: SpanInput) => (span.process === undefined ? undefined : processOf(span.process).resource)
      invalid.guard('traces', name, () => traces.emit(name, version, spans, resourceFor), () => traces.stats().rejected)
    },
    metrics: (points) => invalid.guard('metrics', name, () => metrics.record(name, version, points), () => metrics.rejected),
    logs: (records) =>
      invalid.guard('logs', name, () => logs.emit(name, version, records, (record) => loggerFor(record.process)), () => logs.rejected),
    profiles: (samples) =>
      invalid.guard('profiles', name, () => profiles.add(scopeInfo, samples, profileResourceFor), () => profiles.rejected),
  }
}
