/**
 * Log records from plugins (audit events, syscall logs) through `@opentelemetry/sdk-logs`. As with
 * spans, the SDK binds a resource to a provider, so a record about a traced process goes through
 * that process's provider; all providers share one processor that hands records to the export
 * queue in the plugin's batch.
 */
import { createRequire } from 'node:module'
import { SeverityNumber } from '@opentelemetry/api-logs'
import type { AnyValue, AnyValueMap } from '@opentelemetry/api-logs'
import type { Attributes } from '@opentelemetry/api'
import type { LoggerProvider, LogRecordProcessor, ReadableLogRecord, SdkLogRecord } from '@opentelemetry/sdk-logs'
import type { Resource } from '@opentelemetry/resources'
import type { LogInput, Severity } from './signals.ts'
import { nsToHrTime } from './traces.ts'

const require = createRequire(import.meta.url)
let sdkLogs: typeof import('@opentelemetry/sdk-logs') | undefined

/**
 * sdk-logs is loaded with the first log record, synchronously since emits are: a runtime whose
 * plugins send no logs does not carry it.
 */
function loadSdkLogs(): typeof import('@opentelemetry/sdk-logs') {
  sdkLogs ??= require('@opentelemetry/sdk-logs') as typeof import('@opentelemetry/sdk-logs')
  return sdkLogs
}

const SEVERITIES: Record<Severity, { number: SeverityNumber; text: string }> = {
  trace: { number: SeverityNumber.TRACE, text: 'TRACE' },
  debug: { number: SeverityNumber.DEBUG, text: 'DEBUG' },
  info: { number: SeverityNumber.INFO, text: 'INFO' },
  warn: { number: SeverityNumber.WARN, text: 'WARN' },
  error: { number: SeverityNumber.ERROR, text: 'ERROR' },
  fatal: { number: SeverityNumber.FATAL, text: 'FATAL' },
}

class CollectingLogProcessor implements LogRecordProcessor {
  collected: ReadableLogRecord[] = []

  onEmit(record: SdkLogRecord): void {
    this.collected.push(record as unknown as ReadableLogRecord)
  }

  forceFlush(): Promise<void> {
    return Promise.resolve()
  }

  shutdown(): Promise<void> {
    return Promise.resolve()
  }
}

export class LogPipeline {
  private readonly processor = new CollectingLogProcessor()
  private readonly runtimeResource: Resource
  private runtimeProvider: LoggerProvider | undefined
  private readonly deliver: (records: ReadableLogRecord[]) => void
  rejected = 0

  constructor(runtimeResource: Resource, deliver: (records: ReadableLogRecord[]) => void) {
    this.runtimeResource = runtimeResource
    this.deliver = deliver
  }

  createProvider(resource: Resource): LoggerProvider {
    return new (loadSdkLogs().LoggerProvider)({ resource, processors: [this.processor] })
  }

  emit(
    scopeName: string,
    scopeVersion: string | undefined,
    records: readonly LogInput[],
    providerFor: (record: LogInput) => LoggerProvider | undefined,
  ): string | undefined {
    let firstProblem: string | undefined
    for (const input of records) {
      const problem = this.emitOne(scopeName, scopeVersion, input, providerFor)
      if (problem !== undefined) {
        this.rejected++
        firstProblem ??= problem
      }
    }
    const emitted = this.processor.collected
    if (emitted.length > 0) {
      this.processor.collected = []
      this.deliver(emitted)
    }
    return firstProblem
  }

  private emitOne(
    scopeName: string,
    scopeVersion: string | undefined,
    input: LogInput,
    providerFor: (record: LogInput) => LoggerProvider | undefined,
  ): string | undefined {
    if (input === null || typeof input !== 'object') return 'log record is not an object'
    if (typeof input.body !== 'string' && (input.body === null || typeof input.body !== 'object')) {
      return 'log record `body` must be a string or an object of attributes'
    }
    if (input.timeNs !== undefined && !(Number.isFinite(input.timeNs) && input.timeNs > 0)) {
      return 'log record `timeNs` must be positive nanoseconds since the epoch'
    }
    const severity = SEVERITIES[input.severity ?? 'info']
    if (severity === undefined) return `log record: unknown severity "${input.severity}"`
    const provider = providerFor(input) ?? (this.runtimeProvider ??= this.createProvider(this.runtimeResource))
    provider.getLogger(scopeName, scopeVersion).emit({
      timestamp: input.timeNs === undefined ? undefined : nsToHrTime(input.timeNs),
      severityNumber: severity.number,
      severityText: severity.text,
      body: (typeof input.body === 'string' ? input.body : (input.body as AnyValueMap)) as AnyValue,
      eventName: input.eventName,
      attributes: input.attributes as Attributes | undefined,
    })
    return undefined
  }

  async shutdown(): Promise<void> {
    await this.runtimeProvider?.shutdown()
  }
}
