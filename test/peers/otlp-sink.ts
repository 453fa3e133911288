/**
 * A minimal OTLP/HTTP protobuf receiver for benchmarks: it reads every export request in full,
 * counts the spans in trace exports, and answers with an empty success response. It decodes no
 * more than that, so what it costs stays small next to the exporter it measures; tests that check
 * what was exported use the real Collector (./otelcol.ts) instead.
 *
 *   const sink = await startOtlpSink()
 *   ... OTEL_EXPORTER_OTLP_ENDPOINT=sink.endpoint ...
 *   sink.counts().spans
 */
import { createServer, type IncomingMessage } from 'node:http'
import { gunzipSync } from 'node:zlib'

export interface OtlpSinkCounts {
  /** Export requests per URL path (`/v1/traces`, `/v1/metrics`, …). */
  requests: Record<string, number>
  /** Request body bytes received, as sent (compressed when the exporter compresses). */
  bytes: number
  /** Spans in all trace export requests. */
  spans: number
}

export interface OtlpSink {
  /** `http://127.0.0.1:<port>`, for OTEL_EXPORTER_OTLP_ENDPOINT. */
  readonly endpoint: string
  counts(): OtlpSinkCounts
  stop(): Promise<void>
}

/**
 * Calls `each(field, value, from, to)` for every field of the protobuf message in buf[start, end):
 * a varint's value (from = to), or a length-delimited field's length and its bytes' range.
 */
export function protobufFields(buf: Buffer, start: number, end: number, each: (field: number, value: number, from: number, to: number) => void): void {
  let at = start
  const varint = (): number => {
    let value = 0
    let scale = 1
    for (;;) {
      const byte = buf[at++]!
      value += (byte & 0x7f) * scale
      if (byte < 0x80) return value
      scale *= 128
    }
  }
  while (at < end) {
    const key = varint()
    const field = Math.floor(key / 8)
    switch (key & 7) {
      case 0: each(field, varint(), at, at); break
      case 1: at += 8; break
      case 5: at += 4; break
      case 2: {
        const length = varint()
        each(field, length, at, at + length)
        at += length
        break
      }
      default: throw new Error(`OTLP sink: unexpected protobuf wire type ${key & 7}`)
    }
  }
}

/** ExportTraceServiceRequest.resource_spans(1) → ResourceSpans.scope_spans(2) → ScopeSpans.spans(2). */
export function countSpans(body: Buffer): number {
  let spans = 0
  protobufFields(body, 0, body.length, (field, _, from, to) => {
    if (field !== 1) return
    protobufFields(body, from, to, (field, _, from, to) => {
      if (field !== 2) return
      protobufFields(body, from, to, (field) => {
        if (field === 2) spans++
      })
    })
  })
  return spans
}

async function bodyOf(request: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of request) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

export async function startOtlpSink(): Promise<OtlpSink> {
  const counts: OtlpSinkCounts = { requests: {}, bytes: 0, spans: 0 }
  const server = createServer((request, response) => {
    bodyOf(request).then((raw) => {
      const path = request.url ?? ''
      counts.requests[path] = (counts.requests[path] ?? 0) + 1
      counts.bytes += raw.length
      if (path === '/v1/traces') counts.spans += countSpans(request.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw)
      response.writeHead(200, { 'content-type': 'application/x-protobuf' }).end()
    }).catch((error: Error) => response.writeHead(400).end(error.message))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  return {
    endpoint: `http://127.0.0.1:${port}`,
    counts: () => ({ ...counts, requests: { ...counts.requests } }),
    stop: () => new Promise((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    }),
  }
}
