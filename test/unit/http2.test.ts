/**
 * The HTTP/2 parser (runtime/protocols/http2.ts) on real traffic: `node:http2` at both ends,
 * recorded by a TCP proxy (test/unit/http2-capture.ts) and fed as each end's records.
 */
import assert from 'node:assert/strict'
import http2 from 'node:http2'
import { describe, it } from 'node:test'
import { Http2Parser, grpcStatusName, http2ErrorName, type Http2Exchange, type Http2Request } from '../../runtime/protocols/http2.ts'
import type { SockChunk } from '../../runtime/protocols/sockdata.ts'
import { capture, chunksOf, request, type Capture } from './http2-capture.ts'

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
const paths = Array.from({ length: 40 }, (_, i) => `/item/${i % 7}?n=${i}`)

/** 40 requests at once on one connection: GETs and POSTs with bodies, answered out of order. */
async function concurrentCapture(): Promise<Capture> {
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

function expectedConcurrent(): string[] {
  return paths.map((path, i) => `${2 * i + 1} ${i % 3 === 0 ? 'POST' : 'GET'} ${path} ${i % 5 === 0 ? 404 : 200} - - - -`).sort()
}

describe('HTTP/2 parser on node:http2 traffic', () => {
  it('gives exactly one exchange per stream for 40 interleaved requests, at either end', async () => {
    const { records } = await concurrentCapture()
    for (const [end, role] of [['client', 'client'], ['server', 'server'], ['client', 'unknown'], ['server', 'unknown']] as const) {
      const run = feed(chunksOf(records, end), role)
      assert.deepEqual(run.exchanges.map(summary).sort(), expectedConcurrent(), `${end} as ${role}`)
      assert.deepEqual(run.errors, {})
      assert.equal(run.unresolved, 0)
      assert.equal(run.requests.length, 40)
      assert.ok(run.exchanges.every((exchange) => exchange.side === end))
      for (const exchange of run.exchanges) {
        const i = (exchange.request.streamId - 1) / 2
        assert.equal(exchange.requestBytes, i % 3 === 0 ? i * 100 : 0)
        assert.equal(exchange.responseBytes, i * 10)
        assert.equal(exchange.request.headers['user-agent'], `ua/${i % 4}`)
        assert.equal(exchange.response!.headers['content-type'], 'text/plain')
        assert.equal(exchange.request.authority, `127.0.0.1:${exchange.request.authority!.split(':')[1]}`)
        assert.equal(exchange.request.scheme, 'http')
        assert.ok(exchange.request.startNs <= exchange.request.endNs && exchange.request.endNs <= exchange.response!.endNs)
      }
    }
  })
})

describe('status names', () => {
  it('names the 17 gRPC codes and the HTTP/2 error codes', () => {
    assert.equal(grpcStatusName(0), 'OK')
    assert.equal(grpcStatusName(4), 'DEADLINE_EXCEEDED')
    assert.equal(grpcStatusName(16), 'UNAUTHENTICATED')
    assert.equal(grpcStatusName(17), undefined)
    assert.equal(http2ErrorName(8), 'CANCEL')
    assert.equal(http2ErrorName(http2.constants.NGHTTP2_HTTP_1_1_REQUIRED), 'HTTP_1_1_REQUIRED')
  })
})
