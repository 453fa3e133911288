/**
 * The HTTP/2 parser (runtime/protocols/http2.ts) on real traffic: `node:http2` at both ends,
 * recorded by a TCP proxy (test/unit/http2-capture.ts) and fed as each end's records.
 */
import assert from 'node:assert/strict'
import http2 from 'node:http2'
import { describe, it } from 'node:test'
import { grpcStatusName, http2ErrorName } from '../../runtime/protocols/http2.ts'
import { capture, chunksOf, headerBlocks, request } from './http2-capture.ts'
import { assertTruthful, concurrentCapture, expectedConcurrent, feed, grpcCapture, largeCapture, largeCount, largeTruth, paths, summary } from './http2-scenarios.ts'

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

describe('HTTP/2 parser on gRPC-shaped traffic', () => {
  it('reads trailers, trailers-only responses, message counts and a cancelled stream', async () => {
    const { records } = await grpcCapture()
    for (const end of ['client', 'server'] as const) {
      const run = feed(chunksOf(records, end), end)
      assert.deepEqual(run.exchanges.map(summary), [
        '1 POST /pkg.Store/Get 200 0 - - -',
        '3 POST /pkg.Store/Missing 200 5 no such key - -',
        '5 POST /pkg.Store/Broken 200 13 bad thingé - -',
        '7 POST /pkg.Store/Upload 200 0 - - -',
        '9 POST /pkg.Store/Watch 200 0 - - -',
        '11 POST /pkg.Store/Slow 200 - - 8 -',
      ])
      assert.deepEqual(run.errors, {})
      const counts = run.exchanges.map((exchange) => [exchange.requestMessages, exchange.responseMessages, exchange.requestBytes, exchange.responseBytes])
      assert.deepEqual(counts, [[1, 1, 15, 25], [1, 0, 15, 0], [1, 1, 15, 25], [3, 1, 48, 25], [1, 4, 15, 4220], [1, 1, 15, 8]])
      assert.equal(run.exchanges[0]!.request.headers['content-type'], 'application/grpc')
      assert.equal(run.exchanges[0]!.response!.headers['content-type'], 'application/grpc+proto')
      assert.equal(run.exchanges[0]!.response!.headers['grpc-status'], '0')
      // only the cancelled call was cut, when its RST_STREAM was seen
      assert.deepEqual(run.exchanges.map((exchange) => exchange.cutNs !== undefined), [false, false, false, false, false, true])
      const cancelled = run.exchanges[5]!
      assert.equal(cancelled.cutNs, cancelled.response!.endNs)
      assert.ok(cancelled.cutNs! > cancelled.response!.startNs)
    }
  })
})

describe('HTTP/2 parser on resets and GOAWAY', () => {
  it('a stream the server refuses has its reset code and no response; GOAWAY ends the streams past its last id', async () => {
    const pending: http2.ServerHttp2Stream[] = []
    const { records } = await capture(
      (stream, headers, _raw, session) => {
        stream.on('error', () => {})
        if (headers[':path'] === '/refused') return stream.close(http2.constants.NGHTTP2_REFUSED_STREAM)
        pending.push(stream)
        if (pending.length < 3) return
        // three requests are open: only the first will be processed
        session.goaway(http2.constants.NGHTTP2_NO_ERROR, pending[0]!.id!)
        pending[0]!.respond({ ':status': 200 }, { endStream: true })
      },
      async (session) => {
        await request(session, { ':path': '/refused' }).catch(() => {})
        await Promise.all([1, 2, 3].map((i) => request(session, { ':path': `/go/${i}` }).catch(() => {})))
        // the server still holds the refused streams open
        for (const stream of pending.slice(1)) stream.close()
      },
    )
    for (const end of ['client', 'server'] as const) {
      const run = feed(chunksOf(records, end), end)
      // the GOAWAY goes out before the response it lets through
      assert.deepEqual(run.exchanges.map(summary), ['1 GET /refused - - - 7 -', '5 GET /go/2 - - - - goaway', '7 GET /go/3 - - - - goaway', '3 GET /go/1 200 - - - -'])
      assert.deepEqual(run.errors, {})
    }
  })
})

describe('HTTP/2 parser on server push', () => {
  it('decodes PUSH_PROMISE blocks to keep HPACK in step and gives exchanges for the client streams only', async () => {
    const { records } = await capture(
      (stream, headers) => {
        if (headers[':path'] === '/page') {
          stream.pushStream({ ':path': '/style.css', 'x-pushed': 'yes' }, (error, push) => {
            if (error) return
            push.respond({ ':status': 200, 'content-type': 'text/css' })
            push.end('body{}')
          })
        }
        stream.respond({ ':status': 200, 'content-type': 'text/html' })
        stream.end('<html>')
      },
      async (session) => {
        session.on('stream', (push) => push.resume())
        await request(session, { ':path': '/page' })
        for (let i = 0; i < 3; i++) await request(session, { ':path': '/after', 'user-agent': 'push/1' })
      },
    )
    assert.equal(headerBlocks(records, 's2c').filter(({ type }) => type === 5).length, 1)
    for (const end of ['client', 'server'] as const) {
      const run = feed(chunksOf(records, end), end)
      assert.deepEqual(run.exchanges.map(summary), ['1 GET /page 200 - - - -', '3 GET /after 200 - - - -', '5 GET /after 200 - - - -', '7 GET /after 200 - - - -'])
      assert.ok(run.exchanges.every((exchange) => exchange.response!.headers['content-type'] === 'text/html'))
      assert.deepEqual(run.errors, {})
      assert.equal(run.unresolved, 0)
    }
  })
})

describe('HTTP/2 parser on records cut at the capture size', () => {
  it('keeps frame sync when headers and DATA exceed the capture, one record per frame', async () => {
    const { records } = await largeCapture()
    for (const end of ['client', 'server'] as const) {
      const run = feed(chunksOf(records, end, { byFrame: true, capture: 64 }), end)
      assert.deepEqual(run.exchanges.map((exchange) => exchange.request.streamId), Array.from({ length: largeCount }, (_, i) => 2 * i + 1))
      assertTruthful(run, largeTruth())
      for (const exchange of run.exchanges) {
        const i = (exchange.request.streamId - 1) / 2
        // :method POST is a static entry, and each path a literal: both survive the lost table
        assert.equal(exchange.request.method, 'POST')
        assert.equal(exchange.request.path, `/upload/${i}`)
        assert.equal(exchange.request.unresolved, true)
        assert.equal(exchange.requestBytes, i * 5000)
        assert.equal(exchange.responseBytes, i % 2 === 0 ? 100_000 : 10)
        assert.equal(exchange.incomplete, undefined)
      }
      // every block longer than a record's captured payload, requests and responses
      const cut = [...headerBlocks(records, 'c2s'), ...headerBlocks(records, 's2c')].filter(({ block }) => block.length > 64 - 9).length
      assert.ok(cut > largeCount)
      assert.equal(run.errors['header-block-cut'], cut)
      assert.equal(run.errors['unseen-frames'], undefined)
    }
  })

  it('with whole records cut, loses its place only where a frame starts past the capture, and never reports a wrong field', async () => {
    const { records } = await largeCapture()
    for (const capture of [16, 64, 200, 1000, 5000]) {
      for (const end of ['client', 'server'] as const) {
        const run = feed(chunksOf(records, end, { capture }), end)
        assertTruthful(run, largeTruth())
      }
    }
    // captured whole, the same records give every exchange exactly
    const run = feed(chunksOf(records, 'server'), 'server')
    assert.equal(run.exchanges.length, largeCount)
    assert.deepEqual(run.errors, {})
  })
})

describe('HTTP/2 parser joining late', () => {
  it('accepts a server whose first egress (its SETTINGS) was not captured', async () => {
    const { records } = await concurrentCapture()
    const chunks = chunksOf(records, 'server', { byFrame: true }).filter((chunk) => !(chunk.direction === 0 && chunk.position === 0))
    assert.ok(chunks.find((chunk) => chunk.direction === 0)!.position > 0)
    const run = feed(chunks, 'server')
    assert.deepEqual(run.exchanges.map(summary).sort(), expectedConcurrent())
    assert.deepEqual(run.errors, {})
  })

  it('mid-connection, reports unknown table entries as unresolved and every resolved field right', async () => {
    const { records } = await concurrentCapture()
    const pieces = chunksOf(records, 'client', { byFrame: true })
    const truth = new Map(paths.map((path, i) => [2 * i + 1, { method: i % 3 === 0 ? 'POST' : 'GET', path, status: i % 5 === 0 ? 404 : 200 }]))
    let resolvedPaths = 0
    for (const from of [5, 20, 40, 60, Math.floor(pieces.length / 2)]) {
      const run = feed(pieces.slice(from), 'client', { midStream: true })
      assertTruthful(run, truth)
      // without the kernel's role, the side is found from who sends :method
      const unknown = feed(pieces.slice(from), 'unknown', { midStream: true })
      assert.deepEqual(unknown.exchanges.map(summary), run.exchanges.map(summary))
      assert.ok(unknown.exchanges.every((exchange) => exchange.side === 'client'))
      resolvedPaths += run.exchanges.filter((exchange) => exchange.request.path !== undefined).length
      assert.ok(run.unresolved > 0)
    }
    assert.ok(resolvedPaths > 0)
  })
})

/** One frame's bytes. */
function frame(type: number, flags: number, stream: number, payload: number[]): number[] {
  const n = payload.length
  return [n >> 16, (n >> 8) & 255, n & 255, type, flags, (stream >>> 24) & 127, (stream >> 16) & 255, (stream >> 8) & 255, stream & 255, ...payload]
}
const text = (value: string) => [...value].map((c) => c.charCodeAt(0))

describe('HTTP/2 parser on records out of order', () => {
  it('pairs a response whose records arrived before its request record (a send whose exit was late)', async () => {
    const { records } = await grpcCapture()
    const chunks = chunksOf(records, 'client', { byFrame: true })
    // move the records of stream 5's request (HEADERS, DATA) after those of its response
    const isFrame = (chunk: (typeof chunks)[number], type: number, stream: number) =>
      chunk.data.length >= 9 && chunk.data[3] === type && ((chunk.data[5]! << 24) | (chunk.data[6]! << 16) | (chunk.data[7]! << 8) | chunk.data[8]!) === stream
    const request = chunks.findIndex((chunk) => chunk.direction === 0 && isFrame(chunk, 1, 5))
    assert.ok(isFrame(chunks[request + 1]!, 0, 5))
    const moved = chunks.splice(request, 2)
    const lastResponse = chunks.findLastIndex((chunk) => chunk.direction === 1 && isFrame(chunk, 1, 5))
    assert.ok(lastResponse > request)
    chunks.splice(lastResponse + 1, 0, ...moved)
    const run = feed(chunks, 'client')
    assert.deepEqual(run.exchanges.map(summary).sort(), [
      '1 POST /pkg.Store/Get 200 0 - - -',
      '11 POST /pkg.Store/Slow 200 - - 8 -',
      '3 POST /pkg.Store/Missing 200 5 no such key - -',
      '5 POST /pkg.Store/Broken 200 13 bad thingé - -',
      '7 POST /pkg.Store/Upload 200 0 - - -',
      '9 POST /pkg.Store/Watch 200 0 - - -',
    ])
    assert.deepEqual(run.errors, {})
  })
})

describe('HTTP/2 parser on hand-made frames', () => {
  it('reads padding, priority, a block split inside a string over CONTINUATION, a 100 response, and request trailers', () => {
    const preface = text('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')
    // :method POST, :scheme http, :path /p (literal, cut after "/"), :authority h
    const headers = frame(1, 0x08 | 0x20, 1, [3, 0, 0, 0, 0, 16, 0x83, 0x86, 0x44, 0x02, 0x2f, 0, 0, 0])
    const continuation = frame(9, 0x04, 1, [0x70, 0x41, 0x01, 0x68])
    const records: [number, number[]][] = [
      [1, [...preface, ...frame(4, 0, 0, [0, 1, 0, 0, 1, 0])]],
      [0, frame(4, 0, 0, [])],
      [1, [...headers, ...continuation]],
      [0, frame(1, 0x04, 1, [0x08, 0x03, ...text('100')])],
      [1, frame(0, 0x08, 1, [4, ...new Array(10).fill(120), 0, 0, 0, 0])],
      [1, frame(1, 0x05, 1, [0x40, 0x03, ...text('x-t'), 0x01, 0x31])],
      [0, [...frame(1, 0x04, 1, [0x88]), ...frame(0, 0x09, 1, [1, ...text('hello'), 0])]],
    ]
    const positions = [0, 0]
    const chunks = records.map(([direction, bytes], i) => {
      const data = Uint8Array.from(bytes)
      const chunk = { direction, position: positions[direction]!, bytes: data.length, data, startNs: i * 100, endNs: i * 100 + 50, loss: false, tls: false, tid: 1, context: 0 }
      positions[direction]! += data.length
      return chunk
    })
    for (const role of ['server', 'unknown'] as const) {
      const run = feed(chunks, role)
      assert.deepEqual(run.exchanges.map(summary), ['1 POST /p 200 - - - -'])
      const [exchange] = run.exchanges
      assert.equal(exchange!.side, 'server')
      assert.equal(exchange!.request.authority, 'h')
      assert.deepEqual([exchange!.request.startNs, exchange!.request.endNs, exchange!.response!.startNs, exchange!.response!.endNs], [200, 550, 600, 650])
      assert.deepEqual([exchange!.requestBytes, exchange!.responseBytes], [10, 5])
      assert.deepEqual(run.errors, {})
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
