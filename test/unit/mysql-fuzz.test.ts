/**
 * Properties of the MySQL parser (runtime/protocols/mysql.ts), checked with fast-check on
 * generated sessions (handshake, then queries answered by OK, ERR or result sets with rows of any
 * size, multiple results, prepares and executions), serialised to the two byte streams and cut
 * into records as a client reads and writes them: a turn of one side never shares a record with
 * the other side's. A failure prints the seed and the shrunk counterexample.
 *
 * - Cut anywhere, fully captured: exactly the modelled operations.
 * - Captured only in part (any capture size): still one operation per command, in order; what
 *   was followed to its end is exact, the rest is `unfollowed`, and nothing is counted malformed.
 * - Started from any record, or with records lost: never throws, and every operation handed over
 *   whole is one the session made, in order.
 * - Random bytes, records and positions: never throws, memory stays within the limits.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { COM_INIT_DB, COM_PING, COM_QUERY, COM_STMT_EXECUTE, COM_STMT_PREPARE, MysqlParser, type MysqlChunk, type MysqlError, type MysqlOperation, type MysqlOptions } from '../../runtime/protocols/mysql.ts'
import {
  CAPS_41, CONNECT_WITH_DB, DEPRECATE_EOF, EGRESS, INGRESS, SESSION_TRACK,
  bytesOf, columnDefinition, eof, err, greeting, handshakeResponse, lenenc, lenencString, ok, packet, packets, textRow, u16le, u32le,
} from './mysql-wire.ts'

const runs = Number(process.env.MYSQL_FUZZ_RUNS ?? 300)

// ---- the model ----

type Result = { kind: 'ok'; affectedRows: number } | { kind: 'rows'; sizes: number[] }

type Step =
  | { kind: 'query'; text: string; results: Result[]; error?: MysqlError }
  | { kind: 'prepare'; text: string; params: number; columns: number; error?: MysqlError }
  | { kind: 'execute'; which: number; results: Result[] }
  | { kind: 'init_db'; schema: string }
  | { kind: 'infile'; file: number[]; affectedRows: number }
  /** MariaDB's pipelined prepare and execute (statement id -1: the one just prepared), sent in one turn */
  | { kind: 'prepare_execute'; text: string; results: Result[] }
  | { kind: 'ping' }

interface Session {
  deprecateEof: boolean
  sessionTrack: boolean
  steps: Step[]
}

const sqlText = fc.stringMatching(/^[A-Za-z0-9 _,.*()=<>'é日]{1,300}$/).map((text) => `SELECT ${text}`)
const error = fc.record({
  code: fc.integer({ min: 1000, max: 4000 }),
  sqlState: fc.stringMatching(/^[0-9A-Z]{5}$/),
  message: fc.stringMatching(/^[ -~]{0,200}$/),
})
const rowSizes = fc.array(fc.oneof(fc.integer({ min: 1, max: 60 }), fc.integer({ min: 200, max: 9000 })), { maxLength: 40 })
const result: fc.Arbitrary<Result> = fc.oneof(
  fc.record({ kind: fc.constant('ok' as const), affectedRows: fc.integer({ min: 0, max: 70000 }) }),
  fc.record({ kind: fc.constant('rows' as const), sizes: rowSizes }),
)
const results = fc.array(result, { minLength: 1, maxLength: 3 })
const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('query' as const), text: sqlText, results, error: fc.option(error, { nil: undefined, freq: 4 }) }, { requiredKeys: ['kind', 'text', 'results'] }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('prepare' as const), text: sqlText, params: fc.integer({ min: 0, max: 3 }), columns: fc.integer({ min: 0, max: 3 }), error: fc.option(error, { nil: undefined, freq: 5 }) }, { requiredKeys: ['kind', 'text', 'params', 'columns'] }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('execute' as const), which: fc.nat(), results: fc.array(result, { minLength: 1, maxLength: 1 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('init_db' as const), schema: fc.stringMatching(/^[a-z][a-z0-9_]{0,20}$/) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('ping' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('infile' as const), file: fc.array(fc.integer({ min: 1, max: 9000 }), { maxLength: 5 }), affectedRows: fc.integer({ min: 0, max: 500 }) }) },
)
const pipelined: fc.Arbitrary<Step> = fc.record({ kind: fc.constant('prepare_execute' as const), text: sqlText, results: fc.array(result, { minLength: 1, maxLength: 1 }) })
/** Sessions with pipelined commands too: a capture that hides the second command's header loses it, so only fully captured or subsequence properties take them. */
const session: fc.Arbitrary<Session> = fc.record({ deprecateEof: fc.boolean(), sessionTrack: fc.boolean(), steps: fc.array(fc.oneof({ weight: 12, arbitrary: step }, { weight: 1, arbitrary: pipelined }), { maxLength: 12 }) })
const turnTakingSession: fc.Arbitrary<Session> = fc.record({ deprecateEof: fc.boolean(), sessionTrack: fc.boolean(), steps: fc.array(step, { maxLength: 12 }) })

/** A turn: what one side sends before the other answers. */
interface Turn {
  direction: number
  bytes: Uint8Array
}

type Expected = Pick<MysqlOperation, 'command' | 'text' | 'statementId' | 'namespace' | 'error' | 'rows' | 'affectedRows'>

/** Frames payloads from `seq` on into one turn. */
function turn(direction: number, seq: number, payloads: Uint8Array[]): Turn {
  return { direction, bytes: bytesOf(...payloads.map((payload, i) => packet(seq + i, payload))) }
}

function resultPackets(results: Result[], deprecateEof: boolean, binary: boolean): Uint8Array[] {
  const out: Uint8Array[] = []
  results.forEach((r, i) => {
    const status = 2 | (i < results.length - 1 ? 8 : 0)
    if (r.kind === 'ok') {
      out.push(ok({ affectedRows: r.affectedRows, status }))
      return
    }
    out.push(bytesOf(lenenc(1)), columnDefinition('c'))
    if (!deprecateEof) out.push(eof())
    for (const size of r.sizes) out.push(binary ? bytesOf([0, 0], lenencString('b'.repeat(size))) : textRow(['t'.repeat(size)]))
    out.push(deprecateEof ? ok({ header: 0xfe, status }) : eof(status))
  })
  return out
}

function summarise(results: Result[]): Pick<Expected, 'rows' | 'affectedRows'> {
  const out: Pick<Expected, 'rows' | 'affectedRows'> = {}
  const affected = results.reduce((n, r) => n + (r.kind === 'ok' ? r.affectedRows : 0), 0)
  if (results.some((r) => r.kind === 'rows')) out.rows = results.reduce((n, r) => n + (r.kind === 'rows' ? r.sizes.length : 0), 0)
  if (affected > 0) out.affectedRows = affected
  return out
}

/** The session's turns and the operations it must give. */
function serialise(s: Session): { turns: Turn[]; expected: Expected[] } {
  const capabilities = CAPS_41 | CONNECT_WITH_DB | (s.deprecateEof ? DEPRECATE_EOF : 0) | (s.sessionTrack ? SESSION_TRACK : 0)
  const turns: Turn[] = [
    turn(INGRESS, 0, [greeting('5.5.5-10.11.19-MariaDB', 0xfffffffe)]),
    turn(EGRESS, 1, [handshakeResponse({ capabilities, user: 'fuzz', auth: new Uint8Array(20).fill(0x5a), database: 'shop' })]),
    turn(INGRESS, 2, [ok()]),
  ]
  const expected: Expected[] = []
  const prepared: { id: number; text: string }[] = []
  let namespace = 'shop'
  let nextId = 1
  for (const st of s.steps) {
    switch (st.kind) {
      case 'query': {
        turns.push(turn(EGRESS, 0, [bytesOf([COM_QUERY], st.text)]))
        const answer = st.error === undefined ? resultPackets(st.results, s.deprecateEof, false) : [err(st.error.code, st.error.sqlState, st.error.message)]
        turns.push(turn(INGRESS, 1, answer))
        expected.push({ command: COM_QUERY, text: st.text, namespace, ...(st.error === undefined ? summarise(st.results) : { error: { ...st.error } }) })
        break
      }
      case 'prepare': {
        turns.push(turn(EGRESS, 0, [bytesOf([COM_STMT_PREPARE], st.text)]))
        if (st.error !== undefined) {
          turns.push(turn(INGRESS, 1, [err(st.error.code, st.error.sqlState, st.error.message)]))
          expected.push({ command: COM_STMT_PREPARE, text: st.text, namespace, error: { ...st.error } })
          break
        }
        const id = nextId++
        const answer = [bytesOf([0], u32le(id), u16le(st.columns), u16le(st.params), [0], u16le(0))]
        for (const [count, name] of [[st.params, '?'], [st.columns, 'col']] as const) {
          if (count === 0) continue
          for (let i = 0; i < count; i++) answer.push(columnDefinition(name))
          if (!s.deprecateEof) answer.push(eof())
        }
        turns.push(turn(INGRESS, 1, answer))
        prepared.push({ id, text: st.text })
        expected.push({ command: COM_STMT_PREPARE, text: st.text, statementId: id, namespace })
        break
      }
      case 'execute': {
        const target = prepared.length === 0 ? undefined : prepared[st.which % prepared.length]!
        const id = target?.id ?? 1000 + st.which
        turns.push(turn(EGRESS, 0, [bytesOf([COM_STMT_EXECUTE], u32le(id), [0], u32le(1), [0], [1], u16le(0xfe), lenencString('secret value'))]))
        turns.push(turn(INGRESS, 1, resultPackets(st.results, s.deprecateEof, true)))
        expected.push({ command: COM_STMT_EXECUTE, statementId: id, namespace, ...(target === undefined ? {} : { text: target.text }), ...summarise(st.results) })
        break
      }
      case 'init_db':
        turns.push(turn(EGRESS, 0, [bytesOf([COM_INIT_DB], st.schema)]))
        turns.push(turn(INGRESS, 1, [ok(s.sessionTrack ? { schema: st.schema } : {})]))
        expected.push({ command: COM_INIT_DB, text: st.schema, namespace })
        namespace = st.schema
        break
      case 'infile': {
        // the server asks for the file; the client sends it in packets and an empty one; the server answers
        const text = "LOAD DATA LOCAL INFILE '/tmp/data.tsv' INTO TABLE items"
        turns.push(turn(EGRESS, 0, [bytesOf([COM_QUERY], text)]))
        turns.push(turn(INGRESS, 1, [bytesOf([0xfb], '/tmp/data.tsv')]))
        turns.push(turn(EGRESS, 2, [...st.file.map((size) => new Uint8Array(size).fill(0x41)), new Uint8Array(0)]))
        turns.push(turn(INGRESS, 3 + st.file.length, [ok({ affectedRows: st.affectedRows })]))
        expected.push({ command: COM_QUERY, text, namespace, ...(st.affectedRows > 0 ? { affectedRows: st.affectedRows } : {}) })
        break
      }
      case 'prepare_execute': {
        const id = nextId++
        const execute = bytesOf([COM_STMT_EXECUTE], u32le(0xffffffff), [0], u32le(1))
        turns.push({ direction: EGRESS, bytes: bytesOf(packet(0, bytesOf([COM_STMT_PREPARE], st.text)), packet(0, execute)) })
        const prepareOk = packets(1, [bytesOf([0], u32le(id), u16le(1), u16le(0), [0], u16le(0)), columnDefinition('c'), ...s.deprecateEof ? [] : [eof()]])
        const executeAnswer = resultPackets(st.results, s.deprecateEof, true)
        turns.push({ direction: INGRESS, bytes: bytesOf(prepareOk, packets(1, executeAnswer)) })
        prepared.push({ id, text: st.text })
        expected.push({ command: COM_STMT_PREPARE, text: st.text, statementId: id, namespace })
        expected.push({ command: COM_STMT_EXECUTE, text: st.text, statementId: 0xffffffff, namespace, ...summarise(st.results) })
        break
      }
      case 'ping':
        turns.push(turn(EGRESS, 0, [Uint8Array.of(COM_PING)]))
        turns.push(turn(INGRESS, 1, [ok()]))
        expected.push({ command: COM_PING, namespace })
        break
    }
  }
  return { turns, expected }
}

/** Cuts each turn into records of the given sizes (cycled), with positions; times increase. */
function records(turns: Turn[], sizes: number[], capture = Infinity): MysqlChunk[] {
  const out: MysqlChunk[] = []
  const positions = [0, 0]
  let clock = 0
  let k = 0
  for (const t of turns) {
    for (let at = 0; at < t.bytes.length;) {
      const size = Math.min(sizes[k++ % sizes.length]!, t.bytes.length - at)
      const bytes = t.bytes.subarray(at, at + size)
      out.push({ direction: t.direction, position: positions[t.direction]!, bytes: size, data: bytes.subarray(0, Math.min(size, capture)), startNs: ++clock, endNs: ++clock })
      positions[t.direction]! += size
      at += size
    }
  }
  return out
}

interface Run {
  operations: MysqlOperation[]
  errors: Record<string, number>
  parser: MysqlParser<null>
}

function feed(chunks: MysqlChunk[], options: MysqlOptions = {}): Run {
  const operations: MysqlOperation[] = []
  const parser = new MysqlParser<null>((operation) => operations.push(operation), options)
  const connection = parser.connection(null, 'client')
  for (const chunk of chunks) connection.push(chunk)
  connection.close()
  return { operations, errors: Object.fromEntries(Object.entries(parser.errors).filter(([, n]) => n !== 0)), parser }
}

function fieldsOf(operation: MysqlOperation): Expected {
  const out: Expected = { command: operation.command, namespace: operation.namespace }
  for (const key of ['text', 'statementId', 'error', 'rows', 'affectedRows'] as const) if (operation[key] !== undefined) (out as Record<string, unknown>)[key] = operation[key]
  return out
}

/** Record sizes: small ones cut headers apart, large ones hold many packets. */
const sizes = fc.array(fc.oneof(fc.integer({ min: 1, max: 16 }), fc.integer({ min: 17, max: 20000 })), { minLength: 1, maxLength: 16 })

/** Whether `operation` could be `model` seen whole: equal, except what a connection seen from its middle cannot know. */
function matches(operation: MysqlOperation, model: Expected, midStream: boolean, cut: boolean): boolean {
  const got = fieldsOf(operation)
  if (midStream) {
    // the namespace and statement texts come from before the first record seen
    delete got.namespace
    model = { ...model }
    delete model.namespace
    if (got.text === undefined && model.command === COM_STMT_EXECUTE) delete model.text
  }
  if (cut) {
    // the capture may have cut the statement's text, a statement id and the error's message
    if (got.statementId === undefined && model.statementId !== undefined) {
      model = { ...model }
      delete model.statementId
    }
    if (got.text !== undefined && model.text?.startsWith(got.text) === true) got.text = model.text
    if (got.error !== undefined && model.error?.message.startsWith(got.error.message) === true) got.error = { ...got.error, message: model.error.message }
  }
  try {
    assert.deepEqual(got, model)
    return true
  } catch {
    return false
  }
}

/** Every operation handed over whole is one of the session's, in order (a subsequence). */
function assertSubsequence(operations: MysqlOperation[], expected: Expected[], midStream: boolean, cut = false): void {
  let k = 0
  for (const operation of operations) {
    if (operation.incomplete !== undefined) continue
    while (k < expected.length && !matches(operation, expected[k]!, midStream, cut)) k++
    assert.ok(k < expected.length, `operation ${JSON.stringify(fieldsOf(operation))} is not one the session made, in order`)
    k++
  }
}

describe('MySQL parser properties', () => {
  it('sessions cut into records anywhere, fully captured, give exactly their operations', () => {
    fc.assert(
      fc.property(session, sizes, (s, cut) => {
        const { turns, expected } = serialise(s)
        const run = feed(records(turns, cut))
        assert.deepEqual(run.operations.map(fieldsOf), expected)
        assert.deepEqual(run.errors, {})
        assert.equal(run.parser.stats.unfollowed, 0)
        // one after the other, except that a pipelined command is sent before the answer before it
        const pipelining = s.steps.some((st) => st.kind === 'prepare_execute')
        assert.ok(run.operations.every((op, i) => {
          const before = run.operations[i - 1]
          return op.startNs < op.endNs && (before === undefined || (pipelining ? before.startNs <= op.startNs && before.endNs <= op.endNs : before.endNs < op.startNs))
        }))
      }),
      { numRuns: runs },
    )
  })

  it('captured only in part: one operation per command, in order; followed ones exact, the rest unfollowed; nothing malformed', () => {
    fc.assert(
      fc.property(turnTakingSession, sizes, fc.integer({ min: 16, max: 5000 }), (s, cut, capture) => {
        const { turns, expected } = serialise(s)
        const run = feed(records(turns, cut, capture))
        assert.deepEqual(run.errors, {})
        assert.equal(run.operations.length, expected.length)
        run.operations.forEach((operation, i) => {
          const model = expected[i]!
          assert.equal(operation.command, model.command)
          // a capture this small may cut the database's name from the handshake or a COM_INIT_DB
          if (capture >= 200 || operation.namespace !== undefined) assert.equal(operation.namespace, model.namespace)
          // a prepare not followed to its end leaves its statement's text unknown
          if (operation.text !== undefined || model.command !== COM_STMT_EXECUTE) {
            assert.ok(model.text?.startsWith(operation.text ?? '') ?? operation.text === undefined, `text ${operation.text} of ${model.text}`)
          }
          if (operation.incomplete === undefined) {
            assert.equal(operation.rows, model.rows)
            assert.equal(operation.affectedRows, model.affectedRows)
            assert.equal(operation.error?.code, model.error?.code)
            assert.equal(operation.error?.sqlState, model.error?.sqlState)
            assert.ok(model.error?.message.startsWith(operation.error?.message ?? '') ?? true)
          } else {
            assert.equal(operation.incomplete, 'unfollowed')
            assert.equal(operation.rows, undefined)
          }
        })
      }),
      { numRuns: runs },
    )
  })

  it('started from any record: never throws, and what is handed over whole is what the session did', () => {
    fc.assert(
      fc.property(session, sizes, fc.nat(), fc.oneof(fc.constant(Infinity), fc.integer({ min: 16, max: 5000 })), (s, cut, start, capture) => {
        const { turns, expected } = serialise(s)
        const all = records(turns, cut, capture)
        const run = feed(all.slice(start % (all.length + 1)))
        assertSubsequence(run.operations, expected, true, capture !== Infinity)
      }),
      { numRuns: runs },
    )
  })

  it('with records lost: never throws, and what is handed over whole is what the session did', () => {
    fc.assert(
      fc.property(session, sizes, fc.array(fc.boolean(), { minLength: 1, maxLength: 30 }), (s, cut, keep) => {
        const { turns, expected } = serialise(s)
        const all = records(turns, cut)
        // the handshake's three records are kept, so the namespace and capabilities are known
        const kept = all.filter((_, i) => i < 3 || keep[i % keep.length]!)
        const run = feed(kept)
        assertSubsequence(run.operations, expected, true)
      }),
      { numRuns: runs },
    )
  })

  const tight: MysqlOptions = { maxTextBytes: 128, maxPending: 3, maxStatements: 4 }
  // prefixes, waiting commands' text and prepared texts (two bytes a character)
  const retainedBound = 2 * tight.maxTextBytes! + 2 * tight.maxTextBytes! * (tight.maxPending! + tight.maxStatements!)

  it('random bytes, records and positions never throw and stay within the memory limits', () => {
    const chunk = fc.record({
      direction: fc.integer({ min: 0, max: 1 }),
      data: fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.uint8Array({ maxLength: 600 }).map((b) => bytesOf(b.length < 4 ? [0, 0, 0, 0] : [b.length - 4, 0, 0, b[0]! & 3], b.subarray(4)))),
      extra: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 100000 })),
      jump: fc.oneof(fc.constant(0), fc.integer({ min: -50, max: 500 })),
    })
    fc.assert(
      fc.property(fc.array(chunk, { maxLength: 60 }), fc.constantFrom<'client' | 'server' | 'unknown'>('client', 'server', 'unknown'), (chunks, role) => {
        const parser = new MysqlParser<null>(() => {}, tight)
        const connection = parser.connection(null, role)
        const positions = [0, 0]
        let clock = 0
        for (const c of chunks) {
          positions[c.direction] = Math.max(0, positions[c.direction]! + c.jump)
          const bytes = c.data.length + c.extra
          connection.push({ direction: c.direction, position: positions[c.direction]!, bytes, data: c.data, startNs: ++clock, endNs: ++clock })
          positions[c.direction]! += bytes
          assert.ok(connection.pending <= tight.maxPending!, `pending ${connection.pending}`)
          assert.ok(connection.retainedBytes() <= retainedBound, `retained ${connection.retainedBytes()} > ${retainedBound}`)
        }
        connection.close()
      }),
      { numRuns: runs * 3 },
    )
  })

  it('valid sessions mangled (bytes flipped, records cut short) never throw and stay within the limits', () => {
    fc.assert(
      fc.property(session, sizes, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }), (s, cut, flips) => {
        const { turns } = serialise(s)
        const chunks = records(turns, cut)
        for (const [where, value] of flips) {
          const c = chunks[where % chunks.length]
          if (c !== undefined && c.data.length > 0) {
            const copy = Uint8Array.from(c.data)
            copy[where % copy.length] = value
            c.data = copy
          }
        }
        const parser = new MysqlParser<null>(() => {}, tight)
        const connection = parser.connection(null, 'client')
        for (const c of chunks) {
          connection.push(c)
          assert.ok(connection.retainedBytes() <= retainedBound)
        }
        connection.close()
      }),
      { numRuns: runs },
    )
  })
})
