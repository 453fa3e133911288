/**
 * Properties of the Kafka parser (runtime/protocols/kafka.ts), checked with fast-check on the
 * conversations captured from Kafka 4.1.1's tools: cut into records anywhere they decode to
 * exactly the same operations; cut to any capture size, started mid-stream or with records lost
 * they never throw and never report an operation or a count that did not happen; random bytes
 * never throw. A failure prints the seed and the shrunk counterexample.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { KafkaParser } from '../../runtime/protocols/kafka.ts'
import { capturedConnections, recordsOf, replay, type Record_ } from './kafka-wire.ts'

const runs = Number(process.env.KAFKA_FUZZ_RUNS ?? 200)
const captured = capturedConnections()
const truth = replay(captured.map((c) => recordsOf(c.frames)))
const key = (op: { connection: number; correlationId: number; apiKey: number }) => `${op.connection}/${op.apiKey}/${op.correlationId}`
const truthByKey = new Map(truth.operations.map((op) => [key(op), op]))

/** An operation without its times (which follow record numbering). */
function untimed(op: (typeof truth.operations)[number]) {
  const { startNs: _s, endNs: _e, ...rest } = op
  return rest
}

/** Random cut points for each frame of each connection, as fractions of the frame's length. */
const cutFractions = fc.array(fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 4 }), { minLength: 1, maxLength: 40 })

function cutsFor(fractions: number[][]): (frame: { bytes: Uint8Array }, index: number) => number[] {
  return (frame, index) => (fractions[index % fractions.length] ?? []).map((f) => Math.floor(f * frame.bytes.length))
}

/** The operations an impaired replay reported must each be one that happened, with no count above the truth. */
function assertNoInventions(operations: typeof truth.operations): void {
  for (const op of operations) {
    const real = truthByKey.get(key(op))
    assert.ok(real !== undefined, `invented operation ${key(op)}`)
    assert.ok(op.records <= real.records, `${key(op)}: ${op.records} records > ${real.records}`)
    if (op.recordsExact && op.outcome === 'response') assert.equal(op.records, real.records, `${key(op)} claims an exact count`)
    if (op.outcome === 'response') assert.equal(op.errorCode === 0 || op.errorCode === real.errorCode, true)
    for (const topic of op.topics) if (topic.name !== undefined) assert.ok(real.topics.some((t) => t.name === topic.name))
  }
}

describe('Kafka parser properties', () => {
  it('the captured conversations cut into records anywhere give exactly the same operations, with no error', () => {
    fc.assert(fc.property(cutFractions, (fractions) => {
      const cut = replay(captured.map((c) => recordsOf(c.frames, cutsFor(fractions))))
      assert.deepEqual(cut.errors, {})
      assert.deepEqual(cut.operations.map(untimed), truth.operations.map(untimed))
    }), { numRuns: runs })
  })

  it('records cut to any capture size: no throw, nothing invented, exact counts only when right', () => {
    fc.assert(fc.property(cutFractions, fc.integer({ min: 0, max: 900 }), (fractions, captureBytes) => {
      const cut = replay(captured.map((c) => recordsOf(c.frames, cutsFor(fractions))), { captureBytes })
      assertNoInventions(cut.operations)
    }), { numRuns: runs })
  })

  it('a connection seen from any record on (mid-stream start): no throw, nothing invented', () => {
    fc.assert(fc.property(cutFractions, fc.array(fc.nat(60), { minLength: captured.length, maxLength: captured.length }), fc.boolean(), (fractions, skips, midStream) => {
      const perConnection = captured.map((c) => recordsOf(c.frames, cutsFor(fractions)))
      const positions: number[][] = []
      const started = perConnection.map((records, i) => {
        const skip = Math.min(skips[i]!, records.length)
        const before = [0, 0]
        for (const r of records.slice(0, skip)) before[r.direction]! += r.bytes.length
        positions.push(before)
        return records.slice(skip)
      })
      assertNoInventions(replay(started, { startPositions: positions, midStream }).operations)
    }), { numRuns: runs })
  })

  it('records lost anywhere (the next one flagged): no throw, nothing invented, later operations still decoded', () => {
    fc.assert(fc.property(cutFractions, fc.array(fc.boolean(), { minLength: 1, maxLength: 64 }), (fractions, drops) => {
      let n = 0
      const kept = captured.map((c) => {
        const out: Record_[] = []
        const lost = [0, 0]
        for (const record of recordsOf(c.frames, cutsFor(fractions))) {
          if (drops[n++ % drops.length] === true && n % 3 === 0) {
            lost[record.direction]! += record.bytes.length
            continue
          }
          out.push({ ...record, lostBefore: lost[record.direction] })
          lost[record.direction] = 0
        }
        return out
      })
      assertNoInventions(replay(kept).operations)
    }), { numRuns: runs })
  })

  it('random bytes in either direction, at any positions: no throw, bounded state', () => {
    const record = fc.record({
      direction: fc.integer({ min: 0, max: 1 }),
      bytes: fc.uint8Array({ minLength: 0, maxLength: 200 }),
      lostBefore: fc.oneof(fc.constant(0), fc.nat(1000)),
    })
    fc.assert(fc.property(fc.array(record, { maxLength: 40 }), fc.boolean(), (records, unknownRole) => {
      const parser = new KafkaParser<null>(() => {}, { maxPending: 8 })
      const connection = parser.connection(null, unknownRole ? 'unknown' : 'client')
      const positions = [0, 0]
      for (const r of records) {
        positions[r.direction]! += r.lostBefore
        connection.push({ direction: r.direction, position: positions[r.direction]!, bytes: r.bytes.length, data: r.bytes, startNs: 0, endNs: 0, loss: r.lostBefore > 0, context: 0 })
        positions[r.direction]! += r.bytes.length
      }
      connection.close(0)
      assert.equal(parser.errors.internal, 0)
    }), { numRuns: runs * 5 })
  })

  it('random bytes spliced into a real request stream: no throw, no exception caught inside', () => {
    const producer = recordsOf(captured[5]!.frames)
    fc.assert(fc.property(fc.nat(producer.length), fc.uint8Array({ minLength: 1, maxLength: 300 }), (at, junk) => {
      const records: Record_[] = [...producer.slice(0, at), { direction: 0, bytes: junk }, ...producer.slice(at)]
      const result = replay([recordsOf(captured[4]!.frames), records])
      assert.equal(result.errors.internal, undefined)
    }), { numRuns: runs })
  })
})
