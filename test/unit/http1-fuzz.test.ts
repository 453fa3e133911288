/**
 * Properties of the HTTP/1 parser (runtime/protocols/http1.ts), checked with fast-check on
 * generated conversations: valid streams cut anywhere give back exactly the modelled exchanges;
 * streams whose bodies were only partly captured give the same exchanges, bodies counted by byte
 * count; and arbitrary or damaged input never throws and never grows the parser's memory past
 * its limits. A failure prints the seed and the shrunk counterexample.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { EGRESS, Http1Parser, INGRESS, type Http1Chunk, type Http1Exchange, type Http1Options } from '../../runtime/protocols/http1.ts'
import {
  chunkOf,
  conversation,
  cutByMessage,
  cutEvenly,
  expectedExchanges,
  interleave,
  requestDirectionOf,
  serialise,
  wantedHeaders,
  type TimedRecord,
} from './http1-model.ts'
import { wire } from './http1-wire.ts'

const runs = Number(process.env.HTTP1_FUZZ_RUNS ?? 300)

interface Run {
  exchanges: (Http1Exchange & { side: string })[]
  errors: Record<string, number>
  stats: Record<string, number>
}

/** Feeds the records in order, each direction's positions advancing by byte count, then closes. */
function feed(chunks: Http1Chunk[], role: 'client' | 'server' | 'unknown', options: Http1Options<null> = {}): Run {
  const exchanges: Run['exchanges'] = []
  const parser = new Http1Parser<null>((exchange, _context, side) => exchanges.push({ ...exchange, side }), { headers: wantedHeaders, ...options })
  const connection = parser.connection(null, role)
  for (const chunk of chunks) connection.push(chunk)
  connection.close()
  const nonZero = (counts: Record<string, number>) => Object.fromEntries(Object.entries(counts).filter(([, n]) => n !== 0))
  return { exchanges, errors: nonZero(parser.errors), stats: nonZero({ ...parser.stats }) }
}

function chunksOf(streams: ReturnType<typeof serialise>, records: TimedRecord[], requestDirection: number): Http1Chunk[] {
  const positions = [0, 0]
  return records.map((record) => {
    const chunk = chunkOf(streams, record, requestDirection, positions[record.direction]!)
    positions[record.direction]! += record.end - record.start
    return chunk
  })
}

const pieceSizes = fc.array(fc.integer({ min: 1, max: 80 }), { minLength: 1, maxLength: 12 })
const choices = fc.array(fc.boolean(), { minLength: 1, maxLength: 16 })

describe('HTTP/1 parser properties', () => {
  it('valid conversations cut into records at arbitrary points give back exactly their exchanges, in order', () => {
    fc.assert(
      fc.property(conversation, pieceSizes, pieceSizes, choices, (conv, requestSizes, responseSizes, order) => {
        const streams = serialise(conv)
        const requestDirection = requestDirectionOf(conv)
        const records = interleave(
          streams,
          cutEvenly(streams.requests.length, requestSizes),
          cutEvenly(streams.responses.length, responseSizes),
          requestDirection,
          order,
          // a peer answers once it has read the request's head
          (placed) => placed.request.headEnd,
        )
        const run = feed(chunksOf(streams, records, requestDirection), conv.role)
        assert.deepEqual(run.exchanges, expectedExchanges(conv, streams, records, requestDirection))
        assert.deepEqual(run.errors, {})
        assert.deepEqual(run.stats, {})
      }),
      { numRuns: runs },
    )
  })

  it('bodies captured only in part still give the exact exchanges, their sizes counted by byte count', () => {
    fc.assert(
      fc.property(conversation, pieceSizes, fc.integer({ min: 0, max: 24 }), choices, (conv, sizes, extraCapture, order) => {
        const streams = serialise(conv)
        const requestDirection = requestDirectionOf(conv)
        const heads = [...streams.requestMessages, ...streams.responseMessages].map((placed) => placed.headEnd - placed.start)
        const capture = Math.max(...heads) + extraCapture
        const records = interleave(
          streams,
          cutByMessage(streams.requestMessages, sizes.map((size) => size * 3), capture),
          cutByMessage(streams.responseMessages, sizes.map((size) => size * 3), capture),
          requestDirection,
          order,
          // a peer answers once it has read the whole request
          (placed) => placed.request.end,
        )
        const run = feed(chunksOf(streams, records, requestDirection), conv.role)
        assert.deepEqual(run.exchanges, expectedExchanges(conv, streams, records, requestDirection))
        assert.deepEqual(run.errors, {})
        assert.equal(run.stats.unmatchedResponses, undefined)
      }),
      { numRuns: runs },
    )
  })
})

/** Small limits, so the fuzzed input reaches every cap. */
const tight: Http1Options<null> = { maxHeaderBytes: 24, maxTargetBytes: 16, maxLineBytes: 64, maxHeadBytes: 256, maxPending: 3 }
const retainedBound = 2 * tight.maxLineBytes! + tight.maxPending! * (tight.maxTargetBytes! + tight.maxHeaderBytes!)

/** Feeds chunks one by one, checking after each that memory stays within the limits; returns what was handed over. */
function feedChecked(chunks: Http1Chunk[], role: 'client' | 'server' | 'unknown'): Http1Exchange[] {
  const exchanges: Http1Exchange[] = []
  const parser = new Http1Parser<null>((exchange) => exchanges.push(exchange), { headers: wantedHeaders, ...tight })
  const connection = parser.connection(null, role)
  for (const chunk of chunks) {
    connection.push(chunk)
    assert.ok(connection.pending <= tight.maxPending!, `pending ${connection.pending}`)
    assert.ok(connection.retainedBytes() <= retainedBound, `retained ${connection.retainedBytes()} > ${retainedBound}`)
  }
  connection.close()
  assert.equal(connection.pending, 0)
  return exchanges
}

/** What every exchange handed over must satisfy, whatever the input. */
function checkShapes(exchanges: Http1Exchange[]): void {
  assert.equal(new Set(exchanges).size, exchanges.length, 'an exchange was handed over twice')
  let previousStart = -Infinity
  for (const { request, response, incomplete } of exchanges) {
    assert.ok(request.startNs >= previousStart, 'exchanges out of request order')
    previousStart = request.startNs
    assert.ok(request.target.length <= tight.maxTargetBytes!)
    for (const message of response === undefined ? [request] : [request, response]) {
      assert.ok(message.bodyBytes >= 0 && Number.isSafeInteger(message.bodyBytes))
      assert.ok(message.endNs >= message.startNs)
      const kept = Object.values(message.headers).reduce((sum, value) => sum + value.length, 0)
      assert.ok(kept <= tight.maxHeaderBytes!, `kept header text ${kept}`)
    }
    if (response === undefined) assert.ok(incomplete !== undefined, 'an exchange without response must say why')
  }
}

const garbageChunk = fc.record({
  direction: fc.constantFrom(EGRESS, INGRESS),
  /** Bytes moved beyond the captured data. */
  uncaptured: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 5000 })),
  /** A position jump (loss) or a step back. */
  jump: fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: -50, max: 5000 })),
  data: fc.oneof(
    fc.uint8Array({ maxLength: 64 }),
    fc.constantFrom('GET / HTTP/1.1\r\n', 'HTTP/1.1 200 OK\r\n', 'Content-Length: 5\r\n', 'Transfer-Encoding: chunked\r\n', '\r\n', '5\r\nhello\r\n', '0\r\n\r\n', 'HTTP/1.1 101 S\r\n\r\n', 'Host: x\r\n', 'Host:\r\n').map(wire),
  ),
})

/** Turns fuzzed record descriptions into chunks with per-direction positions and rising times. */
function garbageChunks(descriptions: { direction: number; uncaptured: number; jump: number; data: Uint8Array }[]): Http1Chunk[] {
  const positions = [0, 0]
  return descriptions.map((d, i) => {
    const position = Math.max(0, positions[d.direction]! + d.jump)
    const bytes = d.data.length + d.uncaptured
    positions[d.direction] = position + bytes
    return { direction: d.direction, position, bytes, data: d.data, startNs: 100 * i, endNs: 100 * i + 50, loss: d.jump > 0, tid: i }
  })
}

describe('HTTP/1 parser robustness', () => {
  it('arbitrary records never throw, and memory stays within the limits', () => {
    fc.assert(
      fc.property(fc.array(garbageChunk, { maxLength: 60 }), fc.constantFrom('client' as const, 'server' as const, 'unknown' as const), (descriptions, role) => {
        checkShapes(feedChecked(garbageChunks(descriptions), role))
      }),
      { numRuns: runs * 3 },
    )
  })

  it('valid conversations damaged (bytes flipped, records dropped, cut or repeated) never throw, and memory stays within the limits', () => {
    const damage = fc.record({
      at: fc.nat(),
      kind: fc.constantFrom('flip', 'drop', 'cut', 'repeat', 'none'),
      byte: fc.integer({ min: 0, max: 255 }),
    })
    fc.assert(
      fc.property(conversation, pieceSizes, choices, fc.array(damage, { maxLength: 8 }), (conv, sizes, order, damages) => {
        const streams = serialise(conv)
        const requestDirection = requestDirectionOf(conv)
        const records = interleave(streams, cutEvenly(streams.requests.length, sizes), cutEvenly(streams.responses.length, sizes), requestDirection, order, (placed) => placed.request.headEnd)
        let chunks = chunksOf(streams, records, requestDirection)
        for (const { at, kind, byte } of damages) if (chunks.length > 0) chunks = damaged(chunks, at % chunks.length, kind, byte)
        checkShapes(feedChecked(chunks, conv.role))
      }),
      { numRuns: runs },
    )
  })

  it('a long stream of pipelined requests with no responses keeps at most maxPending of them', () => {
    const parser = new Http1Parser<null>(() => {}, { ...tight })
    const connection = parser.connection(null, 'server')
    const request = wire('GET /a-long-target-that-gets-cut HTTP/1.1\r\nHost: h\r\n\r\n')
    for (let i = 0; i < 1000; i++) connection.push({ direction: INGRESS, position: i * request.length, bytes: request.length, data: request, startNs: i, endNs: i })
    assert.equal(connection.pending, 3)
    assert.equal(parser.stats.queueOverflows, 997)
    assert.ok(connection.retainedBytes() <= retainedBound)
  })
})

/** One damage to a record stream: positions stay as recorded, so a drop is a gap the parser sees. */
function damaged(chunks: Http1Chunk[], at: number, kind: string, byte: number): Http1Chunk[] {
  const chunk = chunks[at]!
  switch (kind) {
    case 'flip': {
      if (chunk.data.length === 0) return chunks
      const data = chunk.data.slice()
      data[byte % data.length] = byte
      return chunks.with(at, { ...chunk, data })
    }
    case 'drop':
      return chunks.toSpliced(at, 1)
    case 'cut':
      return chunks.with(at, { ...chunk, data: chunk.data.subarray(0, byte % (chunk.data.length + 1)) })
    case 'repeat':
      return chunks.toSpliced(at, 0, chunk)
    default:
      return chunks
  }
}
