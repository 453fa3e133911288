/**
 * Where each signal's batches go: an SDK OTLP exporter (HTTP/protobuf or gRPC), or a line in the
 * embedded store in the Collector file exporter's format (one OTLP JSON export request per line,
 * hex ids, nanosecond timestamps as strings), so files written here can be replayed into a
 * Collector with its otlpjsonfile receiver. Profiles have their own senders in profiles.ts.
 *
 * The SDK exporters retry within their own timeout; the export queue adds the long-term retry with
 * backoff and the bounded buffer in front of them.
 */
import { join } from 'node:path'
import { Metadata } from '@grpc/grpc-js'
import { ExportResultCode } from '@opentelemetry/core'
import type { ExportResult } from '@opentelemetry/core'
import { OTLPTraceExporter as OTLPTraceExporterProto } from '@opentelemetry/exporter-trace-otlp-proto'
import { OTLPTraceExporter as OTLPTraceExporterGrpc } from '@opentelemetry/exporter-trace-otlp-grpc'
import { OTLPMetricExporter as OTLPMetricExporterProto } from '@opentelemetry/exporter-metrics-otlp-proto'
import { OTLPMetricExporter as OTLPMetricExporterGrpc } from '@opentelemetry/exporter-metrics-otlp-grpc'
import { OTLPLogExporter as OTLPLogExporterProto } from '@opentelemetry/exporter-logs-otlp-proto'
import { OTLPLogExporter as OTLPLogExporterGrpc } from '@opentelemetry/exporter-logs-otlp-grpc'
import { JsonLogsSerializer, JsonMetricsSerializer, JsonTraceSerializer } from '@opentelemetry/otlp-transformer'
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base'
import type { ResourceMetrics } from '@opentelemetry/sdk-metrics'
import type { ReadableLogRecord } from '@opentelemetry/sdk-logs'
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

function grpcMetadata(headers: Record<string, string>): Metadata {
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

function otlpOptions(target: Extract<SignalTarget, { kind: 'otlp' }>, context: SenderContext) {
  return target.protocol === 'grpc'
    ? { url: target.url, metadata: grpcMetadata(target.headers), timeoutMillis: context.exportTimeoutMs }
    : { url: target.url, headers: target.headers, timeoutMillis: context.exportTimeoutMs }
}

export function spanSender(target: SignalTarget, context: SenderContext): Sender<ReadableSpan> {
  if (target.kind === 'embedded') {
    return fileSender(context, 'traces.jsonl', (batch) => [JsonTraceSerializer.serializeRequest(batch) as Uint8Array])
  }
  const exporter = target.protocol === 'grpc' ? new OTLPTraceExporterGrpc(otlpOptions(target, context)) : new OTLPTraceExporterProto(otlpOptions(target, context))
  return { destination: target.url, send: (batch) => exportWith(exporter, batch), shutdown: () => exporter.shutdown() }
}

export function metricSender(target: SignalTarget, context: SenderContext): Sender<ResourceMetrics> {
  if (target.kind === 'embedded') {
    return fileSender(context, 'metrics.jsonl', (batch) => batch.map((metrics) => JsonMetricsSerializer.serializeRequest(metrics) as Uint8Array))
  }
  const exporter = target.protocol === 'grpc' ? new OTLPMetricExporterGrpc(otlpOptions(target, context)) : new OTLPMetricExporterProto(otlpOptions(target, context))
  return {
    destination: target.url,
    async send(batch) {
      for (const metrics of batch) await exportWith(exporter, metrics)
    },
    shutdown: () => exporter.shutdown(),
  }
}

export function logSender(target: SignalTarget, context: SenderContext): Sender<ReadableLogRecord> {
  if (target.kind === 'embedded') {
    return fileSender(context, 'logs.jsonl', (batch) => [JsonLogsSerializer.serializeRequest(batch) as Uint8Array])
  }
  const exporter = target.protocol === 'grpc' ? new OTLPLogExporterGrpc(otlpOptions(target, context)) : new OTLPLogExporterProto(otlpOptions(target, context))
  return { destination: target.url, send: (batch) => exportWith(exporter, batch), shutdown: () => exporter.shutdown() }
}
