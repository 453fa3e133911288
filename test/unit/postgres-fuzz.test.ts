/**
 * Properties of the PostgreSQL parser (runtime/protocols/postgres.ts), checked with fast-check on
 * the recorded real sessions (postgres-captures.json) and on generated ones: records cut anywhere
 * give back exactly the same operations; records cut short by the capture size, sessions joined
 * mid-stream and arbitrary bytes never throw, never invent an operation, and never grow the
 * parser's queue past its limit; after garbage the parser finds its place again. A failure prints
 * the seed and the shrunk counterexample.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import type { PostgresOperation } from '../../runtime/protocols/postgres.ts'
import { EGRESS, INGRESS, Wire, commandComplete, dataRow, join, query, ready, recordBytes, rowDescription, sessions } from './postgres-wire.ts'

const runs = Number(process.env.POSTGRES_FUZZ_RUNS ?? 300)

type Records = { direction: number; bytes: Uint8Array }[]

const recorded: { name: string; records: Records }[] = sessions.map((s) => ({
  name: s.name,
  records: s.records.map((r) => ({ direction: r.direction, bytes: recordBytes(r) })),
}))

/** Operations without their times (which follow the record count). */
const shape = (o: PostgresOperation) => ({ ...o, startNs: 0, endNs: 0 })

function replay(records: Records, options: { captured?: (i: number, length: number) => number; from?: number; loss?: (i: number) => boolean } = {}): Wire {
  const wire = new Wire('client', { maxPending: 16 })
  records.forEach((record, i) => {
    if (i < (options.from ?? 0)) {
      // not seen: the connection is joined later, its positions go on
      wire.positions[record.direction]! += record.bytes.length
      return
    }
    wire.send(record.direction, record.bytes, { captured: options.captured?.(i, record.bytes.length), loss: options.loss?.(i) })
  })
  wire.connection.close()
  return wire
}

const expected = recorded.map((s) => replay(s.records).operations)
const sessionIndex = fc.integer({ min: 0, max: recorded.length - 1 })

/** Every operation given is one of the session's (its text possibly cut, or unknown), in order. */
function noneInvented(got: PostgresOperation[], want: PostgresOperation[]): void {
  assert.ok(got.length <= want.length, `${got.length} operations, the session has ${want.length}`)
  for (const operation of got) {
    if (operation.text === undefined) continue
    assert.ok(want.some((w) => w.text !== undefined && w.text.startsWith(operation.text!)), `invented text ${JSON.stringify(operation.text)}`)
  }
}

describe('PostgreSQL parser properties', () => {
  it('recorded sessions cut into records at arbitrary points give back exactly their operations', () => {
    fc.assert(
      fc.property(sessionIndex, fc.array(fc.integer({ min: 1, max: 200 }), { minLength: 1, maxLength: 20 }), (index, sizes) => {
        const pieces: Records = []
        let k = 0
        for (const record of recorded[index]!.records) {
          for (let at = 0; at < record.bytes.length;) {
            const size = sizes[k++ % sizes.length]!
            pieces.push({ direction: record.direction, bytes: record.bytes.subarray(at, at + size) })
            at += size
          }
        }
        const wire = replay(pieces)
        assert.deepEqual(wire.operations.map(shape), expected[index]!.map(shape))
        assert.deepEqual(wire.errors(), {})
      }),
      { numRuns: runs },
    )
  })

  it('records cut short by any capture size never throw and never invent an operation', () => {
    fc.assert(
      fc.property(sessionIndex, fc.array(fc.nat({ max: 600 }), { minLength: 1, maxLength: 40 }), (index, captures) => {
        const wire = replay(recorded[index]!.records, { captured: (i, length) => Math.min(length, captures[i % captures.length]!) })
        noneInvented(wire.operations, expected[index]!)
        assert.ok(wire.connection.pending <= 16)
      }),
      { numRuns: runs },
    )
  })

  it('a capture size at least as large as every record changes nothing', () => {
    for (const [index, session] of recorded.entries()) {
      const largest = Math.max(...session.records.map((r) => r.bytes.length))
      const wire = replay(session.records, { captured: () => largest })
      assert.deepEqual(wire.operations.map(shape), expected[index]!.map(shape), session.name)
    }
  })

  it('a session joined mid-stream never throws and never invents an operation', () => {
    fc.assert(
      fc.property(sessionIndex, fc.nat({ max: 40 }), (index, from) => {
        const wire = replay(recorded[index]!.records, { from })
        noneInvented(wire.operations, expected[index]!)
      }),
      { numRuns: runs },
    )
  })

  it('lost records (loss flags anywhere) never throw and never invent an operation', () => {
    fc.assert(
      fc.property(sessionIndex, fc.array(fc.boolean(), { minLength: 1, maxLength: 40 }), (index, losses) => {
        const wire = replay(recorded[index]!.records, { loss: (i) => losses[i % losses.length]! })
        noneInvented(wire.operations, expected[index]!)
      }),
      { numRuns: runs },
    )
  })

  it('arbitrary records in any direction, role, position and flags never throw and keep the queue bounded', () => {
    const record = fc.record({
      direction: fc.integer({ min: 0, max: 1 }),
      bytes: fc.uint8Array({ maxLength: 300 }),
      captured: fc.option(fc.nat({ max: 300 }), { nil: undefined }),
      tls: fc.boolean(),
      loss: fc.boolean(),
      jump: fc.option(fc.nat({ max: 1000 }), { nil: undefined }),
    })
    fc.assert(
      fc.property(fc.constantFrom('client', 'unknown', 'server'), fc.array(record, { maxLength: 30 }), (role, records) => {
        const wire = new Wire(role as 'client', { maxPending: 16 })
        for (const r of records) {
          const position = r.jump === undefined ? undefined : wire.positions[r.direction]! + r.jump
          wire.send(r.direction, r.bytes, { captured: r.captured === undefined ? undefined : Math.min(r.captured, r.bytes.length), tls: r.tls, loss: r.loss, position })
        }
        wire.connection.close()
        assert.ok(wire.connection.pending <= 16)
        if (role === 'server') assert.deepEqual(wire.operations, [])
      }),
      { numRuns: runs },
    )
  })

  it('after garbage at the start of both directions, the queries that follow are found exactly', () => {
    const texts = fc.array(fc.stringMatching(/^SELECT [a-z0-9 ,]{0,40}$/), { minLength: 2, maxLength: 6 })
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 200 }), fc.uint8Array({ minLength: 1, maxLength: 200 }), texts, (front, back, sqls) => {
        const wire = new Wire('client')
        wire.send(EGRESS, front, { position: 100 })
        wire.send(INGRESS, back, { position: 100 })
        for (const sql of sqls) {
          wire.send(EGRESS, query(sql))
          wire.send(INGRESS, join(rowDescription('a'), dataRow('1'), commandComplete('SELECT 1'), ready()))
        }
        // the first answer may be taken as the end of what the garbage was: every query after it is whole
        const found = wire.operations.map((o) => o.text)
        assert.deepEqual(found.slice(-(sqls.length - 1)), sqls.slice(1))
        assert.ok(found.length <= sqls.length)
      }),
      { numRuns: runs },
    )
  })
})
