/**
 * Recorded HTTP/2 conversations for the parser tests (test/unit/http2*.test.ts), each captured once
 * per test process from node:http2 at both ends, and the helpers that feed and check them.
 */
import assert from 'node:assert/strict'
import http2 from 'node:http2'
import { Http2Parser, type Http2Exchange, type Http2Request } from '../../runtime/protocols/http2.ts'
import type { SockChunk } from '../../runtime/protocols/sockdata.ts'
import { capture, request, type Capture } from './http2-capture.ts'

export interface Run {
  exchanges: (Http2Exchange & { side: string })[]
  requests: Http2Request[]
  errors: Record<string, number>
  unresolved: number
}

export function feed(chunks: readonly SockChunk[], role: 'client' | 'server' | 'unknown', options: { midStream?: boolean; headers?: string[]; maxStreams?: number } = {}): Run {
  const exchanges: Run['exchanges'] = []
  const requests: Http2Request[] = []
  const parser = new Http2Parser<null>((exchange, _context, side) => exchanges.push({ ...exchange, side }), {
    headers: options.headers ?? ['content-type', 'user-agent', 'grpc-status'],
    onRequest: (request) => requests.push(request),
    maxStreams: options.maxStreams,
  })
  const connection = parser.connection(null, role, { midStream: options.midStream })
  for (const chunk of chunks) connection.push(chunk)
  connection.close()
  assert.equal(connection.openStreams, 0)
  return { exchanges, requests, errors: parser.errors, unresolved: parser.unresolvedHeaders }
}

/** What identifies an exchange, without times. */
export function summary(exchange: Http2Exchange): string {
  const { request, response } = exchange
  const parts = [request.streamId, request.method, request.path, response?.status, response?.grpcStatus, response?.grpcMessage, exchange.resetCode, exchange.incomplete]
  return parts.map((part) => (part === undefined ? '-' : String(part))).join(' ')
}

let concurrent: Capture | undefined
export const paths = Array.from({ length: 40 }, (_, i) => `/item/${i % 7}?n=${i}`)

/** 40 requests at once on one connection: GETs and POSTs with bodies, answered out of order. */
export async function concurrentCapture(): Promise<Capture> {
  concurrent ??= await capture(
    (stream, headers) => {
      const n = Number(String(headers[':path']).split('n=')[1])
      stream.on('data', () => {})
      stream.on('end', () => setTimeout(() => {
        stream.respond({ ':status': n % 5 === 0 ? 404 : 200, 'content-type': 'text/plain' })
        stream.end('x'.repeat(n * 10))
      }, (40 - n) % 9))
    },
    async (session) => {
      await Promise.all(paths.map((path, i) => request(session, { ':method': i % 3 === 0 ? 'POST' : 'GET', ':path': path, 'user-agent': `ua/${i % 4}` }, i % 3 === 0 ? new Uint8Array(i * 100) : undefined)))
    },
  )
  return concurrent
}

export function expectedConcurrent(): string[] {
  return paths.map((path, i) => `${2 * i + 1} ${i % 3 === 0 ? 'POST' : 'GET'} ${path} ${i % 5 === 0 ? 404 : 200} - - - -`).sort()
}

/** A gRPC message: compressed flag, 4-byte length, payload. */
export function grpcMessage(length: number): Uint8Array {
  const message = new Uint8Array(5 + length).fill(0x61)
  message[0] = 0
  new DataView(message.buffer).setUint32(1, length)
  return message
}

let grpc: Capture | undefined
/** gRPC-shaped calls: unary OK, trailers-only NOT_FOUND, INTERNAL with an encoded message, client streaming, server streaming, cancelled. */
export async function grpcCapture(): Promise<Capture> {
  grpc ??= await capture(
    (stream, headers) => {
      const method = String(headers[':path']).split('/')[2]
      stream.on('data', () => {})
      stream.on('error', () => {})
      const ok = { ':status': 200, 'content-type': 'application/grpc+proto' }
      if (method === 'Missing') return stream.respond({ ...ok, 'grpc-status': '5', 'grpc-message': 'no such key' }, { endStream: true })
      if (method === 'Slow') {
        stream.respond(ok)
        stream.write(grpcMessage(3))
        return
      }
      stream.on('end', () => {
        stream.respond(ok, { waitForTrailers: true })
        stream.on('wantTrailers', () => stream.sendTrailers(method === 'Broken' ? { 'grpc-status': '13', 'grpc-message': 'bad%20thing%C3%A9' } : { 'grpc-status': '0' }))
        if (method === 'Watch') {
          for (let i = 0; i < 4; i++) stream.write(grpcMessage(i * 700))
        } else {
          stream.write(grpcMessage(20))
        }
        stream.end()
      })
    },
    async (session) => {
      const call = (method: string, messages: number) => new Promise<void>((resolve, reject) => {
        const stream = session.request({ ':method': 'POST', ':path': `/pkg.Store/${method}`, 'content-type': 'application/grpc', te: 'trailers' }, { endStream: false })
        stream.on('response', () => {
          if (method === 'Slow') stream.close(http2.constants.NGHTTP2_CANCEL)
        })
        stream.resume()
        stream.on('close', () => resolve())
        stream.on('error', (error: NodeJS.ErrnoException) => (error.code === 'ERR_HTTP2_STREAM_ERROR' ? resolve() : reject(error)))
        for (let i = 0; i < messages; i++) stream.write(grpcMessage(10 + i))
        if (method !== 'Slow') stream.end()
      })
      await call('Get', 1)
      await call('Missing', 1)
      await call('Broken', 1)
      await call('Upload', 3)
      await call('Watch', 1)
      await call('Slow', 1)
    },
  )
  return grpc
}

/** Every field the parser resolved is the one sent; each stream gives at most one exchange. */
export function assertTruthful(run: Run, truth: Map<number, { method: string; path: string; status?: number }>): void {
  const seen = new Set<number>()
  for (const exchange of run.exchanges) {
    const { streamId, method, path } = exchange.request
    assert.ok(!seen.has(streamId), `stream ${streamId} twice`)
    seen.add(streamId)
    const expected = truth.get(streamId)
    assert.ok(expected !== undefined, `stream ${streamId} was never sent`)
    if (method !== undefined) assert.equal(method, expected.method)
    if (path !== undefined) assert.equal(path, expected.path)
    if (method === undefined || path === undefined) assert.equal(exchange.request.unresolved, true)
    const status = exchange.response?.status
    if (status !== undefined && expected.status !== undefined) assert.equal(status, expected.status)
  }
}

let large: Capture | undefined
export const largeCount = 12
/** Sequential requests with headers larger than a capture (one past a frame: CONTINUATION) and large bodies. */
export async function largeCapture(): Promise<Capture> {
  large ??= await capture(
    (stream, headers) => {
      const i = Number(String(headers[':path']).split('/')[2])
      stream.on('data', () => {})
      stream.on('end', () => {
        stream.respond({ ':status': 200 + (i % 3), 'content-type': 'application/octet-stream', 'x-server-note': 'n'.repeat(i * 50) })
        stream.end(new Uint8Array(i % 2 === 0 ? 100_000 : 10))
      })
    },
    async (session) => {
      for (let i = 0; i < largeCount; i++) {
        const big = i === 3 ? 20_000 : 3000 + i
        await request(session, { ':method': 'POST', ':path': `/upload/${i}`, 'user-agent': 'big/1', 'x-big': String.fromCharCode(97 + i).repeat(big) }, new Uint8Array(i * 5000))
      }
    },
  )
  return large
}

export function largeTruth(): Map<number, { method: string; path: string; status: number }> {
  return new Map(Array.from({ length: largeCount }, (_, i) => [2 * i + 1, { method: 'POST', path: `/upload/${i}`, status: 200 + (i % 3) }]))
}

