/**
 * Where each signal's batches go: an SDK OTLP exporter (HTTP/protobuf or gRPC), or a line in the
 * embedded store in the Collector file exporter's format (one OTLP JSON export request per line,
 * hex ids, nanosecond timestamps as strings), so files written here can be replayed into a
 * Collector with its otlpjsonfile receiver. Profiles have their own senders in profiles-otlp.ts.
 *
 * The SDK exporters retry within their own timeout; the export queue adds the long-term retry with
 * backoff and the bounded buffer in front of them.
 */
import { join } from 'node:path'
import { ExportResultCode } from '@opentelemetry/core'
import type { ExportResult } from '@opentelemetry/core'
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base'
import type { ResourceMetrics } from '@opentelemetry/sdk-metrics'
import type { ReadableLogRecord } from '@opentelemetry/sdk-logs'
import type { Metadata } from '@grpc/grpc-js'
import type { SignalTarget } from './config.ts'
import { RotatingFile } from './file-store.ts'

export interface Sender<T> {
  /** A URL or a file path, for messages. */
  destination: string
  send(batch: T[]): Promise<void>
  shutdown(): Promise<void>
}

export interface SenderContext {
  dataDir: string
  rotation: { maxBytes: number; maxFiles: number }
  exportTimeoutMs: number
}

interface SdkExporter<T> {
  export(items: T, resultCallback: (result: ExportResult) => void): void
  shutdown(): Promise<void>
}

/** gRPC metadata from headers; grpc-js is loaded only when a signal goes over gRPC. */
export async function grpcMetadata(headers: Record<string, string>): Promise<Metadata> {
  const { Metadata } = await import('@grpc/grpc-js')
  const metadata = new Metadata()
  for (const [key, value] of Object.entries(headers)) metadata.set(key, value)
  return metadata
}

function exportWith<T>(exporter: SdkExporter<T>, items: T): Promise<void> {
  return new Promise((resolve, reject) => {
    exporter.export(items, (result) => {
      if (result.code === ExportResultCode.SUCCESS) {
        resolve()
        return
      }
      const error = result.error ?? new Error('the exporter reported failure without a reason')
      // an HTTP 4xx other than timeout/throttling means the request itself is refused
      const status = (error as { code?: unknown }).code
      if (typeof status === 'number' && status >= 400 && status < 500 && status !== 408 && status !== 429) {
        Object.assign(error, { retryable: false })
      }
      reject(error)
    })
  })
}

function fileSender<T>(context: SenderContext, fileName: string, serialize: (batch: T[]) => Uint8Array[]): Sender<T> {
  const file = new RotatingFile(join(context.dataDir, fileName), context.rotation.maxBytes, context.rotation.maxFiles)
  return {
    destination: file.path,
    async send(batch) {
      for (const line of serialize(batch)) await file.appendLine(line)
    },
    shutdown: () => file.close(),
  }
}

type OtlpTarget = Extract<SignalTarget, { kind: 'otlp' }>

async function otlpOptions(target: OtlpTarget, context: SenderContext) {
  return target.protocol === 'grpc'
    ? { url: target.url, metadata: await grpcMetadata(target.headers), timeoutMillis: context.exportTimeoutMs }
    : { url: target.url, headers: target.headers, timeoutMillis: context.exportTimeoutMs }
}

/*
 * The SDK's OTLP exporters, with protobufjs, grpc-js and the OTLP HTTP stack behind them, are
 * imported only for the signals and protocols the configuration uses: loaded eagerly they cost
 * tens of MB of a runtime that, by default, writes files.
 */
async function spanExporter(target: OtlpTarget, context: SenderContext): Promise<SdkExporter<ReadableSpan[]>> {
  const options = await otlpOptions(target, context)
  if (target.protocol === 'grpc') return new (await import('@opentelemetry/exporter-trace-otlp-grpc')).OTLPTraceExporter(options)
  return new (await import('@opentelemetry/exporter-trace-otlp-proto')).OTLPTraceExporter(options)
}

async function metricExporter(target: OtlpTarget, context: SenderContext): Promise<SdkExporter<ResourceMetrics>> {
  const options = await otlpOptions(target, context)
  if (target.protocol === 'grpc') return new (await import('@opentelemetry/exporter-metrics-otlp-grpc')).OTLPMetricExporter(options)
  return new (await import('@opentelemetry/exporter-metrics-otlp-proto')).OTLPMetricExporter(options)
}

async function logExporter(target: OtlpTarget, context: SenderContext): Promise<SdkExporter<ReadableLogRecord[]>> {
  const options = await otlpOptions(target, context)
  if (target.protocol === 'grpc') return new (await import('@opentelemetry/exporter-logs-otlp-grpc')).OTLPLogExporter(options)
  return new (await import('@opentelemetry/exporter-logs-otlp-proto')).OTLPLogExporter(options)
}

function otlpSender<T>(target: OtlpTarget, exporter: SdkExporter<T[]>): Sender<T> {
  return { destination: target.url, send: (batch) => exportWith(exporter, batch), shutdown: () => exporter.shutdown() }
}

export async function spanSender(target: SignalTarget, context: SenderContext): Promise<Sender<ReadableSpan>> {
  if (target.kind === 'otlp') return otlpSender(target, await spanExporter(target, context))
  const { JsonTraceSerializer } = await import('@opentelemetry/otlp-transformer')
  return fileSender(context, 'traces.jsonl', (batch) => [JsonTraceSerializer.serializeRequest(batch) as Uint8Array])
}

export async function metricSender(target: SignalTarget, context: SenderContext): Promise<Sender<ResourceMetrics>> {
  if (target.kind === 'otlp') {
    const exporter = await metricExporter(target, context)
    return {
      destination: target.url,
      async send(batch) {
        for (const metrics of batch) await exportWith(exporter, metrics)
      },
      shutdown: () => exporter.shutdown(),
    }
  }
  const { JsonMetricsSerializer } = await import('@opentelemetry/otlp-transformer')
  return fileSender(context, 'metrics.jsonl', (batch) => batch.map((metrics) => JsonMetricsSerializer.serializeRequest(metrics) as Uint8Array))
}

export async function logSender(target: SignalTarget, context: SenderContext): Promise<Sender<ReadableLogRecord>> {
  if (target.kind === 'otlp') return otlpSender(target, await logExporter(target, context))
  const { JsonLogsSerializer } = await import('@opentelemetry/otlp-transformer')
  return fileSender(context, 'logs.jsonl', (batch) => [JsonLogsSerializer.serializeRequest(batch) as Uint8Array])
}
