/**
 * Properties of the HTTP/2 parser (runtime/protocols/http2.ts), checked with fast-check on real
 * node:http2 conversations (test/unit/http2-scenarios.ts): the same bytes cut into records anywhere
 * give the same exchanges; lost records, damaged bytes and garbage never throw, never report a
 * field that was not sent, and keep the open streams within bounds. A failure prints the seed and
 * the shrunk counterexample.
 */
import assert from 'node:assert/strict'
import { before, describe, it } from 'node:test'
import fc from 'fast-check'
import { Http2Parser, type Http2Exchange } from '../../runtime/protocols/http2.ts'
import type { SockChunk } from '../../runtime/protocols/sockdata.ts'
import { byFrame, chunksOf, concat, type Capture, type Record } from './http2-capture.ts'
import { assertTruthful, concurrentCapture, feed, grpcCapture, largeCapture, largeTruth, paths, summary } from './http2-scenarios.ts'

const runs = Number(process.env.HTTP2_FUZZ_RUNS ?? 200)

/** What an exchange says, without times (which depend on where records were cut). */
function outcome(exchange: Http2Exchange): string {
  const { request, response } = exchange
  return JSON.stringify([summary(exchange), request.scheme, request.authority, request.headers, request.unresolved, response?.headers, response?.unresolved,
    exchange.requestBytes, exchange.responseBytes, exchange.requestMessages, exchange.responseMessages])
}

/** Consecutive records of one direction joined, then cut where `cuts` (fractions) say. */
function recut(records: readonly Record[], cuts: readonly number[]): Record[] {
  const runsOf: Record[] = []
  for (const record of records) {
    const last = runsOf.at(-1)
    if (last !== undefined && last.direction === record.direction) last.data = concat([last.data, record.data])
    else runsOf.push({ direction: record.direction, data: record.data })
  }
  const out: Record[] = []
  let cut = 0
  for (const run of runsOf) {
    const points = new Set<number>()
    for (let k = 0; k < 4; k++) points.add(Math.floor(cuts[cut++ % cuts.length]! * run.data.length))
    let start = 0
    for (const point of [...points].sort((a, b) => a - b)) {
      if (point <= start || point >= run.data.length) continue
      out.push({ direction: run.direction, data: run.data.subarray(start, point) })
      start = point
    }
    out.push({ direction: run.direction, data: run.data.subarray(start) })
  }
  return out
}

let captures: Capture[] = []
before(async () => {
  captures = [await concurrentCapture(), await grpcCapture(), await largeCapture()]
})

const chunkCache = new Map<string, SockChunk[]>()
/** A capture's records at the client end, as read or one per frame. */
function clientChunks(which: number, pieces: boolean): SockChunk[] {
  const key = `${which} ${pieces}`
  let chunks = chunkCache.get(key)
  if (chunks === undefined) {
    const records = pieces ? byFrame(captures[which]!.records) : captures[which]!.records
    chunks = chunksOf(records, 'client')
    chunkCache.set(key, chunks)
  }
  return chunks
}

const fractions = fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 1, maxLength: 40 })

describe('HTTP/2 parser properties', () => {
  it('the same bytes cut into records anywhere give the same exchanges', () => {
    const expected = captures.map(({ records }) => feed(chunksOf(records, 'server'), 'server').exchanges.map(outcome))
    fc.assert(
      fc.property(fc.integer({ min: 0, max: captures.length - 1 }), fractions, fc.constantFrom('client', 'server'), (which, cuts, end) => {
        const run = feed(chunksOf(recut(captures[which]!.records, cuts), end), end)
        assert.deepEqual(run.exchanges.map(outcome), expected[which])
        assert.deepEqual(run.errors, {})
      }),
      { numRuns: runs },
    )
  })

  it('lost records never throw, never give a field that was not sent, and end what they may have ended', () => {
    const truth = new Map(paths.map((path, i) => [2 * i + 1, { method: i % 3 === 0 ? 'POST' : 'GET', path, status: i % 5 === 0 ? 404 : 200 }]))
    fc.assert(
      fc.property(fc.constantFrom(0, 2), fc.array(fc.nat(), { minLength: 1, maxLength: 6 }), fc.boolean(), fc.boolean(), (which, drops, flagged, pieces) => {
        const chunks = clientChunks(which, pieces)
        const dropped = new Set(drops.map((drop) => drop % chunks.length))
        const kept: SockChunk[] = []
        const lostBefore = [false, false]
        const started = [false, false]
        let gaps = 0
        chunks.forEach((chunk, index) => {
          if (dropped.has(index)) {
            lostBefore[chunk.direction] = true
            return
          }
          // a direction whose first records were lost starts late rather than with a gap
          if (lostBefore[chunk.direction]! && started[chunk.direction]!) gaps++
          kept.push({ ...chunk, loss: flagged && lostBefore[chunk.direction]! && started[chunk.direction]! })
          lostBefore[chunk.direction] = false
          started[chunk.direction] = true
        })
        const run = feed(kept, 'client')
        assertTruthful(run, which === 0 ? truth : largeTruth())
        assert.equal(run.errors.lost ?? 0, gaps)
      }),
      { numRuns: runs },
    )
  })

  it('garbage and damaged bytes never throw and keep the open streams within maxStreams', () => {
    const record = fc.record({
      direction: fc.integer({ min: 0, max: 1 }),
      data: fc.uint8Array({ maxLength: 120 }),
      extra: fc.nat({ max: 300 }),
      jump: fc.nat({ max: 50 }),
      loss: fc.boolean(),
    })
    fc.assert(
      fc.property(fc.array(record, { maxLength: 40 }), fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 })), { maxLength: 20 }), fc.constantFrom('client', 'server', 'unknown'), fc.boolean(), (garbage, flips, role, midStream) => {
        // a real conversation with bytes flipped, then garbage
        const real = chunksOf(captures[1]!.records, 'client').map((chunk) => ({ ...chunk, data: Uint8Array.from(chunk.data) }))
        for (const [at, value] of flips) {
          const chunk = real[at % real.length]!
          if (chunk.data.length > 0) chunk.data[at % chunk.data.length] = value
        }
        const positions = [real.filter((c) => c.direction === 0).reduce((sum, c) => sum + c.bytes, 0), real.filter((c) => c.direction === 1).reduce((sum, c) => sum + c.bytes, 0)]
        const chunks: SockChunk[] = [...real]
        for (const { direction, data, extra, jump, loss } of garbage) {
          const position = positions[direction]! + jump
          chunks.push({ direction, position, bytes: data.length + extra, data, startNs: 1, endNs: 2, loss, tls: false, tid: 0, context: 0 })
          positions[direction] = position + data.length + extra
        }
        const exchanges: Http2Exchange[] = []
        const parser = new Http2Parser<null>((exchange) => exchanges.push(exchange), { headers: ['content-type'], maxStreams: 3 })
        const connection = parser.connection(null, role, { midStream })
        for (const chunk of chunks) {
          connection.push(chunk)
          assert.ok(connection.openStreams <= 3)
        }
        connection.close(10)
        assert.equal(connection.openStreams, 0)
        assert.equal(new Set(exchanges.map((exchange) => exchange.request.streamId)).size, exchanges.length)
        for (const count of Object.values(parser.errors)) assert.ok(Number.isInteger(count) && count > 0)
      }),
      { numRuns: runs },
    )
  })

  it('past maxStreams the oldest streams end as lost, each once', () => {
    const run = feed(chunksOf(captures[0]!.records, 'client'), 'client', { maxStreams: 5 })
    assert.equal(run.exchanges.length, paths.length)
    const lost = run.exchanges.filter((exchange) => exchange.incomplete === 'lost').length
    assert.ok(lost > 0)
    assert.equal(run.errors['stream-overflow'], lost)
  })
})
