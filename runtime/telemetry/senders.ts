/**
 * Where each signal's batches go: an SDK OTLP exporter (HTTP/protobuf or gRPC), or a line in the
 * embedded store in the Collector file exporter's format (one OTLP JSON export request per line,
 * hex ids, nanosecond timestamps as strings), so files written here can be replayed into a
 * Collector with its otlpjsonfile receiver. Profiles have their own senders in profiles-otlp.ts.
 *
 * The SDK exporters retry within their own timeout; the export queue adds the long-term retry with
 * backoff and the bounded buffer in front of them.
 */
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { ExportResultCode } from '@opentelemetry/core'
import type { ExportResult } from '@opentelemetry/core'
import type { ResourceMetrics } from '@opentelemetry/sdk-metrics'
import type { ReadableLogRecord } from '@opentelemetry/sdk-logs'
import type { Metadata } from '@grpc/grpc-js'
import type { SignalTarget } from './config.ts'
import { RotatingFile } from './file-store.ts'
import { OtlpTraceEncoder } from './otlp-traces.ts'
import type { PluginSpan } from './traces.ts'

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
 *
 * Spans go through the SDK's transports (retries, compression, headers, timeouts, proxies) with
 * OtlpTraceEncoder in place of the SDK's serializer, which cost more than everything else the
 * runtime does per span. The transports' building blocks are resolved from the SDK's own span
 * exporter packages, which are built on them, so they are the versions those exporters use.
 */
async function spanExporter(target: OtlpTarget, context: SenderContext): Promise<SdkExporter<PluginSpan[]>> {
  const options = await otlpOptions(target, context)
  const { ProtobufTraceSerializer, TraceExporterMetricsHelper } = await import('@opentelemetry/otlp-transformer')
  const encoder = new OtlpTraceEncoder()
  const serializer = { serializeRequest: (spans: PluginSpan[]) => encoder.encode(spans), deserializeResponse: ProtobufTraceSerializer.deserializeResponse }
  if (target.protocol === 'grpc') {
    const from = createRequire(import.meta.resolve('@opentelemetry/exporter-trace-otlp-grpc'))
    const { OTLPExporterBase } = from('@opentelemetry/otlp-exporter-base') as typeof import('@opentelemetry/otlp-exporter-base')
    const grpc = from('@opentelemetry/otlp-grpc-exporter-base') as typeof import('@opentelemetry/otlp-grpc-exporter-base')
    return new OTLPExporterBase(grpc.createOtlpGrpcExportDelegate(grpc.convertLegacyOtlpGrpcOptions(options, 'TRACES'), serializer,
      'otlp_grpc_span_exporter', TraceExporterMetricsHelper, undefined, 'TraceExportService', '/opentelemetry.proto.collector.trace.v1.TraceService/Export'))
  }
  const from = createRequire(import.meta.resolve('@opentelemetry/exporter-trace-otlp-proto'))
  const { OTLPExporterBase } = from('@opentelemetry/otlp-exporter-base') as typeof import('@opentelemetry/otlp-exporter-base')
  const http = from('@opentelemetry/otlp-exporter-base/node-http') as typeof import('@opentelemetry/otlp-exporter-base/node-http')
  return new OTLPExporterBase(http.createOtlpHttpExportDelegate(http.convertLegacyHttpOptions(options, 'TRACES', 'v1/traces', { 'Content-Type': 'application/x-protobuf' }),
    serializer, 'otlp_http_span_exporter', TraceExporterMetricsHelper, undefined))
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

export async function spanSender(target: SignalTarget, context: SenderContext): Promise<Sender<PluginSpan>> {
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
