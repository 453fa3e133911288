/**
 * The PostgreSQL parser (runtime/protocols/postgres.ts), two sources of bytes:
 * - real sessions of psql 15 and pgbench 15 against PostgreSQL 15, recorded through a proxy by
 *   postgres-record-captures.ts (postgres-captures.json): every operation is compared in full;
 * - messages written from the protocol documentation (postgres-wire.ts) for what those sessions do
 *   not show: SSLRequest answers, TLS, pipelining, portals, cleartext passwords, cut and lost records.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { findBoundary, type PostgresOperation } from '../../runtime/protocols/postgres.ts'
import { utf8 } from '../../runtime/protocols/bytes.ts'
import {
  EGRESS, INGRESS, Wire, authCleartext, authOk, backendKey, bind, bindComplete, closeComplete, closeStatement, commandComplete, copyData, copyDone,
  copyInResponse, copyOutResponse, dataRow, describe as describeMessage, emptyQuery, errorResponse, execute, gssEncRequest, join, noData, notice,
  notification, parameterStatus, parse, parseComplete, password, portalSuspended, query, ready, recordBytes, rowDescription, session, sessions,
  sslRequest, startup, sync, terminate,
} from './postgres-wire.ts'

/** Times of the i-th record of a replayed session (Wire: 10 ns a record, 10 ns apart). */
const at = (i: number) => ({ startNs: 20 * i + 10, endNs: 20 * i + 20 })
const between = (request: number, answer: number) => ({ startNs: at(request).startNs, endNs: at(answer).endNs })

function replay(name: string, connection: 'first' | 'last' = 'last'): Wire {
  const wire = new Wire('client')
  for (const record of session(name, connection).records) wire.send(record.direction, recordBytes(record))
  wire.connection.close()
  return wire
}

function op(fields: Partial<PostgresOperation> & { startNs: number; endNs: number }): PostgresOperation {
  return { kind: 'query', text: undefined, textCut: false, commands: [], completed: 0, rows: 0, tid: 0, context: 0, ...fields }
}

function q(text: string, commands: string[], rows: number, times: { startNs: number; endNs: number }): PostgresOperation {
  return op({ text, commands, completed: commands.length, rows, ...times })
}

const SELECT_ACCOUNT = 'SELECT abalance FROM pgbench_accounts WHERE aid = $1;'
const UPDATE_ACCOUNT = 'UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = $1;'

describe('PostgreSQL parser: recorded psql and pgbench sessions', () => {
  it('psql: one operation per Query with its tags, rows and error; COPY, notices and notifications do not disturb it', () => {
    const wire = replay('psql')
    assert.equal(wire.connection.database, 'periscope_test')
    assert.equal(wire.connection.user, 'periscope')
    assert.equal(wire.connection.applicationName, 'psql')
    assert.deepEqual(wire.operations, [
      q('SELECT 1 AS one;', ['SELECT'], 1, between(6, 7)),
      op({ text: 'SELEC broken;', error: { code: '42601', message: 'syntax error at or near "SELEC"', severity: 'ERROR' }, ...between(8, 9) }),
      q('CREATE TABLE items (id int PRIMARY KEY, name text);', ['CREATE'], 0, between(10, 11)),
      q("INSERT INTO items VALUES (1, 'first-secret'), (2, 'second');", ['INSERT'], 0, between(12, 13)),
      // psql's \; sends the three statements in one Query: one operation, three completions
      q("BEGIN ; UPDATE items SET name = 'changed' WHERE id = 2 ; COMMIT;", ['BEGIN', 'UPDATE', 'COMMIT'], 0, between(14, 15)),
      // CopyInResponse, then the client's CopyData and CopyDone, then CommandComplete
      q('COPY items FROM STDIN;', ['COPY'], 0, between(16, 19)),
      q('COPY items TO STDOUT;', ['COPY'], 0, between(20, 21)),
      // the NoticeResponse came in a read of its own before the CommandComplete
      q("DO $$ BEGIN RAISE NOTICE 'a notice'; END $$;", ['DO'], 0, between(22, 24)),
      q('LISTEN channel;', ['LISTEN'], 0, between(25, 26)),
      // the NotificationResponse arrives with NOTIFY's own answer
      q("NOTIFY channel, 'ping';", ['NOTIFY'], 0, between(27, 28)),
      q('SELECT count(*) FROM items;', ['SELECT'], 1, between(29, 30)),
    ])
    assert.deepEqual(wire.errors(), {})
    assert.deepEqual(wire.stats(), {})
    assert.equal(wire.connection.pending, 0)
  })

  it('pgbench -M prepared: one operation per Execute, the named statements reused without Parse carry their text', () => {
    const wire = replay('pgbench-prepared')
    // records: 6 Parse P_0 + Sync, 8 Bind/Describe/Execute/Sync, 10 Parse P_1, 12 Bind..., then Binds of P_0 and P_1 only
    const select = (times: { startNs: number; endNs: number }) => op({ kind: 'execute', text: SELECT_ACCOUNT, statement: 'P_0', commands: ['SELECT'], completed: 1, rows: 1, ...times })
    const update = (times: { startNs: number; endNs: number }) => op({ kind: 'execute', text: UPDATE_ACCOUNT, statement: 'P_1', commands: ['UPDATE'], completed: 1, ...times })
    assert.deepEqual(wire.operations, [
      select(between(8, 9)), update(between(12, 13)),
      select(between(14, 15)), update(between(16, 17)),
      select(between(18, 19)), update(between(20, 21)),
    ])
    assert.deepEqual(wire.errors(), {})
    // no Parse in the last four transactions: the text came from the statements parsed before
    const parses = session('pgbench-prepared').records.slice(14).filter((r) => r.direction === EGRESS && recordBytes(r)[0] === 'P'.charCodeAt(0))
    assert.equal(parses.length, 0)
  })

  it('pgbench -M extended: the unnamed statement, parsed again for each Execute', () => {
    const wire = replay('pgbench-extended')
    assert.deepEqual(wire.operations, [
      op({ kind: 'execute', text: SELECT_ACCOUNT, statement: '', commands: ['SELECT'], completed: 1, rows: 1, ...between(6, 7) }),
      op({ kind: 'execute', text: UPDATE_ACCOUNT, statement: '', commands: ['UPDATE'], completed: 1, ...between(8, 9) }),
      op({ kind: 'execute', text: SELECT_ACCOUNT, statement: '', commands: ['SELECT'], completed: 1, rows: 1, ...between(10, 11) }),
      op({ kind: 'execute', text: UPDATE_ACCOUNT, statement: '', commands: ['UPDATE'], completed: 1, ...between(12, 13) }),
    ])
    assert.deepEqual(wire.errors(), {})
  })

  it('pgbench -M simple: the values are in the query text', () => {
    const wire = replay('pgbench-simple')
    assert.equal(wire.operations.length, 4)
    assert.deepEqual(wire.operations.map((o) => [o.kind, o.text?.replace(/\d+;$/, 'N;'), o.commands]), [
      ['query', 'SELECT abalance FROM pgbench_accounts WHERE aid = N;', ['SELECT']],
      ['query', 'UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = N;', ['UPDATE']],
      ['query', 'SELECT abalance FROM pgbench_accounts WHERE aid = N;', ['SELECT']],
      ['query', 'UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = N;', ['UPDATE']],
    ])
  })

  it('pgbench \\startpipeline: two Executes before one Sync, both answered in one read', () => {
    const wire = replay('pgbench-prepared-pipeline')
    // records: 6 and 8 Parse P_0 and P_1 (each with its Sync), 10 and 12 Bind/Describe/Execute of both then one Sync
    const select = (times: { startNs: number; endNs: number }) => op({ kind: 'execute', text: SELECT_ACCOUNT, statement: 'P_0', commands: ['SELECT'], completed: 1, rows: 1, ...times })
    const update = (times: { startNs: number; endNs: number }) => op({ kind: 'execute', text: UPDATE_ACCOUNT, statement: 'P_1', commands: ['UPDATE'], completed: 1, ...times })
    assert.deepEqual(wire.operations, [select(between(10, 11)), update(between(10, 11)), select(between(12, 13)), update(between(12, 13))])
    assert.deepEqual(wire.errors(), {})
  })

  it("pgbench's extra connection (startup and Terminate only) gives no operation", () => {
    for (const name of ['pgbench-prepared', 'pgbench-extended', 'pgbench-simple', 'pgbench-prepared-pipeline']) {
      const wire = replay(name, 'first')
      assert.deepEqual(wire.operations, [], name)
      assert.equal(wire.connection.database, 'periscope_test')
    }
  })

  it('a Parse that fails with no Execute after it is an operation of its own; the Execute of the missing statement fails too', () => {
    const wire = replay('pgbench-prepared-syntax-error')
    assert.deepEqual(wire.operations, [
      op({ kind: 'prepare', text: 'SELEC 1;', statement: 'P_0', error: { code: '42601', message: 'syntax error at or near "SELEC"', severity: 'ERROR' }, ...between(6, 7) }),
      op({ kind: 'execute', text: 'SELEC 1;', statement: 'P_0', error: { code: '26000', message: 'prepared statement "P_0" does not exist', severity: 'ERROR' }, ...between(8, 9) }),
    ])
    assert.deepEqual(wire.errors(), {})
  })

  it('an Execute that fails gets the ErrorResponse; ReadyForQuery in a read of its own is not an answer to anything else', () => {
    const wire = replay('pgbench-extended-division-by-zero')
    assert.deepEqual(wire.operations, [
      op({ kind: 'execute', text: 'SELECT 1 / 0;', statement: '', error: { code: '22012', message: 'division by zero', severity: 'ERROR' }, ...between(6, 7) }),
    ])
    assert.deepEqual(wire.errors(), {})
    assert.equal(wire.connection.pending, 0)
  })

  it('every recorded session, each record cut into one-byte records, gives the same operations', () => {
    for (const recorded of sessions) {
      const whole = new Wire('client')
      const bytewise = new Wire('client')
      for (const record of recorded.records) {
        const bytes = recordBytes(record)
        whole.send(record.direction, bytes)
        for (let i = 0; i < bytes.length; i++) bytewise.send(record.direction, bytes.subarray(i, i + 1))
      }
      const shape = (o: PostgresOperation) => ({ ...o, startNs: 0, endNs: 0 })
      assert.deepEqual(bytewise.operations.map(shape), whole.operations.map(shape), recorded.name)
      assert.deepEqual(bytewise.errors(), {}, recorded.name)
    }
  })
})

/** A client connected and authenticated (cleartext password, as `password` auth asks). */
function connected(options: ConstructorParameters<typeof Wire>[1] = {}): Wire {
  const wire = new Wire('client', options)
  wire.send(EGRESS, startup({ user: 'alice', database: 'shop', application_name: 'app' }))
  wire.send(INGRESS, authCleartext())
  wire.send(EGRESS, password('hunter2-secret'))
  wire.send(INGRESS, join(authOk(), parameterStatus('server_version', '15.18'), backendKey(), ready()))
  return wire
}

describe('PostgreSQL parser: startup, SSLRequest and TLS', () => {
  it('keeps database and user from the startup message and nothing of the password message', () => {
    const wire = connected()
    wire.send(EGRESS, query('SELECT 1'))
    const r = wire.send(INGRESS, join(rowDescription('x'), dataRow('1'), commandComplete('SELECT 1'), ready()))
    assert.equal(wire.connection.database, 'shop')
    assert.equal(wire.connection.user, 'alice')
    assert.equal(wire.operations.length, 1)
    assert.equal(wire.operations[0]!.endNs, r.endNs)
    assert.doesNotMatch(JSON.stringify({ operations: wire.operations, connection: wire.connection }), /hunter2/)
  })

  it('the database defaults to the user name when the startup message names none', () => {
    const wire = new Wire('client')
    wire.send(EGRESS, startup({ user: 'bob' }))
    assert.equal(wire.connection.database, 'bob')
  })

  it("SSLRequest answered N: the startup message follows in plain text", () => {
    const wire = new Wire('client')
    wire.send(EGRESS, sslRequest())
    wire.send(INGRESS, Uint8Array.of('N'.charCodeAt(0)))
    wire.send(EGRESS, startup({ user: 'u', database: 'plain' }))
    wire.send(INGRESS, join(authOk(), ready()))
    wire.send(EGRESS, query('SELECT 2'))
    wire.send(INGRESS, join(commandComplete('SELECT 1'), ready()))
    assert.equal(wire.connection.database, 'plain')
    assert.equal(wire.connection.tls, false)
    assert.deepEqual(wire.operations.map((o) => o.text), ['SELECT 2'])
    assert.deepEqual(wire.errors(), {})
  })

  it('SSLRequest answered S: ciphertext is ignored, the plaintext records (from OpenSSL) restart at position 0', () => {
    const wire = new Wire('client')
    wire.send(EGRESS, sslRequest())
    wire.send(INGRESS, Uint8Array.of('S'.charCodeAt(0)))
    // a TLS ClientHello and the server's answer, as the socket carries them
    wire.send(EGRESS, Uint8Array.of(0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5))
    wire.send(INGRESS, Uint8Array.of(0x16, 0x03, 0x03, 0x00, 0x02, 9, 9))
    wire.positions[EGRESS] = 0
    wire.positions[INGRESS] = 0
    wire.send(EGRESS, startup({ user: 'u', database: 'secure' }), { tls: true })
    wire.send(INGRESS, join(authOk(), ready()), { tls: true })
    const request = wire.send(EGRESS, query('SELECT 3'), { tls: true })
    const answer = wire.send(INGRESS, join(commandComplete('SELECT 1'), ready()), { tls: true })
    assert.equal(wire.connection.tls, true)
    assert.equal(wire.connection.database, 'secure')
    assert.deepEqual(wire.operations, [op({ text: 'SELECT 3', commands: ['SELECT'], completed: 1, startNs: request.startNs, endNs: answer.endNs })])
    assert.deepEqual(wire.errors(), {})
    assert.deepEqual(wire.stats(), { tlsStarted: 1 })
  })

  it('GSSENCRequest answered G: the encrypted connection is not followed', () => {
    const wire = new Wire('client')
    wire.send(EGRESS, gssEncRequest())
    wire.send(INGRESS, Uint8Array.of('G'.charCodeAt(0)))
    wire.send(EGRESS, Uint8Array.from({ length: 40 }, (_, i) => i))
    assert.deepEqual(wire.operations, [])
    assert.deepEqual(wire.errors(), {})
    assert.deepEqual(wire.stats(), { gssEncrypted: 1 })
  })

  it('a role the kernel did not know is decided by who sent the startup message; the server side gives nothing', () => {
    const client = new Wire('unknown')
    client.send(EGRESS, startup({ user: 'u', database: 'd' }))
    client.send(INGRESS, join(authOk(), ready()))
    client.send(EGRESS, query('SELECT 1'))
    client.send(INGRESS, join(commandComplete('SELECT 1'), ready()))
    assert.equal(client.connection.role, 'client')
    assert.equal(client.operations.length, 1)

    const server = new Wire('unknown')
    server.send(INGRESS, startup({ user: 'u', database: 'd' }))
    server.send(EGRESS, join(authOk(), ready()))
    server.send(INGRESS, query('SELECT 1'))
    server.send(EGRESS, join(commandComplete('SELECT 1'), ready()))
    assert.equal(server.connection.role, 'server')
    assert.deepEqual(server.operations, [])
  })
})

describe('PostgreSQL parser: a role the kernel got wrong', () => {
  it('a "client" whose first record is a startup message it received is the server end (a backend forked by the postmaster): no operation', () => {
    const wire = new Wire('client')
    wire.send(INGRESS, startup({ user: 'u', database: 'd' }))
    wire.send(EGRESS, join(authOk(), parameterStatus('server_version', '15'), backendKey(), ready()))
    for (let i = 0; i < 3; i++) {
      wire.send(INGRESS, join(parse('', 'SELECT 1'), bind('', ''), execute(''), sync()))
      wire.send(EGRESS, join(parseComplete(), bindComplete(), dataRow('1'), commandComplete('SELECT 1'), errorResponse('22012', 'x'), ready()))
    }
    assert.equal(wire.connection.role, 'server')
    assert.deepEqual(wire.operations, [])
    assert.deepEqual(wire.errors(), {})
    assert.deepEqual(wire.stats(), { roleCorrected: 1 })
  })
})

describe('PostgreSQL parser: extended protocol', () => {
  it('pipelined Executes before one Sync: one operation each, answered in one read', () => {
    const wire = connected()
    const sent = wire.send(EGRESS, join(
      parse('', 'INSERT INTO t VALUES ($1)'), bind('', '', ['7']), execute(''),
      parse('q2', 'SELECT * FROM t'), bind('', 'q2'), describeMessage('P', ''), execute(''),
      sync(),
    ))
    const answer = wire.send(INGRESS, join(
      parseComplete(), bindComplete(), commandComplete('INSERT 0 1'),
      parseComplete(), bindComplete(), rowDescription('a'), dataRow('7'), dataRow('8'), commandComplete('SELECT 2'),
      ready(),
    ))
    const times = { startNs: sent.startNs, endNs: answer.endNs }
    assert.deepEqual(wire.operations, [
      op({ kind: 'execute', text: 'INSERT INTO t VALUES ($1)', statement: '', commands: ['INSERT'], completed: 1, ...times }),
      op({ kind: 'execute', text: 'SELECT * FROM t', statement: 'q2', commands: ['SELECT'], completed: 1, rows: 2, ...times }),
    ])
    assert.deepEqual(wire.errors(), {})
    assert.equal(wire.connection.pending, 0)
    assert.doesNotMatch(JSON.stringify(wire.operations), /"7"/)
  })

  it('an error in the first Execute of a pipeline: the server skips the rest up to Sync, which gives no operation', () => {
    const wire = connected()
    wire.send(EGRESS, join(parse('', 'SELECT 1/0'), bind('', ''), execute(''), parse('', 'SELECT 2'), bind('', ''), execute(''), sync()))
    wire.send(INGRESS, join(parseComplete(), bindComplete(), errorResponse('22012', 'division by zero'), ready()))
    wire.send(EGRESS, join(parse('', 'SELECT 3'), bind('', ''), execute(''), sync()))
    wire.send(INGRESS, join(parseComplete(), bindComplete(), dataRow('3'), commandComplete('SELECT 1'), ready()))
    assert.deepEqual(wire.operations.map((o) => [o.text, o.error?.code, o.commands]), [['SELECT 1/0', '22012', []], ['SELECT 3', undefined, ['SELECT']]])
    assert.deepEqual(wire.stats(), { skippedAfterError: 1 })
    assert.deepEqual(wire.errors(), {})
  })

  it('messages the client sends after the error arrived and before its Sync are skipped too', () => {
    const wire = connected()
    wire.send(EGRESS, join(parse('', 'SELECT 1/0'), bind('', ''), execute('')))
    wire.send(INGRESS, join(parseComplete(), bindComplete(), errorResponse('22012', 'division by zero')))
    wire.send(EGRESS, join(bind('', ''), execute(''), sync()))
    wire.send(INGRESS, ready('I'))
    assert.deepEqual(wire.operations.map((o) => o.error?.code), ['22012'])
    assert.deepEqual(wire.stats(), { skippedAfterError: 1 })
    assert.deepEqual(wire.errors(), {})
  })

  it('a named statement prepared once is executed by Bind alone, until Close', () => {
    const wire = connected()
    wire.send(EGRESS, join(parse('find', 'SELECT name FROM users WHERE id = $1'), describeMessage('S', 'find'), sync()))
    wire.send(INGRESS, join(parseComplete(), message_t(), rowDescription('name'), ready()))
    for (const id of ['1', '2']) {
      wire.send(EGRESS, join(bind('', 'find', [id]), execute(''), sync()))
      wire.send(INGRESS, join(bindComplete(), dataRow('n'), commandComplete('SELECT 1'), ready()))
    }
    wire.send(EGRESS, join(closeStatement('find'), sync()))
    wire.send(INGRESS, join(closeComplete(), ready()))
    wire.send(EGRESS, join(bind('', 'find', ['3']), execute(''), sync()))
    wire.send(INGRESS, join(errorResponse('26000', 'prepared statement "find" does not exist'), ready()))
    assert.deepEqual(wire.operations.map((o) => [o.kind, o.text, o.statement, o.error?.code]), [
      ['execute', 'SELECT name FROM users WHERE id = $1', 'find', undefined],
      ['execute', 'SELECT name FROM users WHERE id = $1', 'find', undefined],
      // closed: its text is forgotten with it
      ['execute', undefined, 'find', '26000'],
    ])
    assert.deepEqual(wire.errors(), {})
  })

  it('an Execute with a row limit ends at PortalSuspended; the next Execute of the portal is another operation', () => {
    const wire = connected()
    wire.send(EGRESS, join(parse('', 'SELECT g FROM generate_series(1, 3) g'), bind('c', ''), execute('c', 2), sync()))
    wire.send(INGRESS, join(parseComplete(), bindComplete(), dataRow('1'), dataRow('2'), portalSuspended(), ready('T')))
    wire.send(EGRESS, join(execute('c', 2), sync()))
    wire.send(INGRESS, join(dataRow('3'), commandComplete('SELECT 1'), ready('T')))
    assert.deepEqual(wire.operations.map((o) => [o.text, o.rows, o.commands]), [
      ['SELECT g FROM generate_series(1, 3) g', 2, []],
      ['SELECT g FROM generate_series(1, 3) g', 1, ['SELECT']],
    ])
    assert.deepEqual(wire.errors(), {})
  })

  it('Describe with NoData, an empty query and a Query in between keep the answers in order', () => {
    const wire = connected()
    wire.send(EGRESS, join(parse('', ''), bind('', ''), describeMessage('P', ''), execute(''), sync()))
    wire.send(INGRESS, join(parseComplete(), bindComplete(), noData(), emptyQuery(), ready()))
    wire.send(EGRESS, query('UPDATE t SET a = 1'))
    wire.send(INGRESS, join(notice('hello'), commandComplete('UPDATE 3'), ready()))
    assert.deepEqual(wire.operations.map((o) => [o.kind, o.text, o.completed, o.commands]), [
      ['execute', '', 1, []],
      ['query', 'UPDATE t SET a = 1', 1, ['UPDATE']],
    ])
    assert.deepEqual(wire.errors(), {})
  })
})

/** ParameterDescription: a statement Describe's first answer. */
function message_t(): Uint8Array {
  return join(Uint8Array.of('t'.charCodeAt(0)), Uint8Array.of(0, 0, 0, 10, 0, 1, 0, 0, 0, 23))
}

describe('PostgreSQL parser: COPY and asynchronous messages', () => {
  it('CopyData in both directions is skipped by length, even when it looks like messages', () => {
    const wire = connected()
    wire.send(EGRESS, query('COPY t FROM STDIN'))
    wire.send(INGRESS, copyInResponse())
    // CopyData whose payload is a complete Query message and a Z: must not be read as either
    wire.send(EGRESS, join(copyData('Q\0\0\0\x0dSELECT 9;\0'), copyData('Z\0\0\0\x05I'), copyDone()))
    wire.send(INGRESS, join(commandComplete('COPY 2'), ready()))
    wire.send(EGRESS, query('COPY t TO STDOUT'))
    wire.send(INGRESS, join(copyOutResponse(), copyData('C\0\0\0\x0dSELECT 1\0'), copyDone(), commandComplete('COPY 1'), ready()))
    assert.deepEqual(wire.operations.map((o) => [o.text, o.commands]), [['COPY t FROM STDIN', ['COPY']], ['COPY t TO STDOUT', ['COPY']]])
    assert.deepEqual(wire.errors(), {})
  })

  it('a notification, a notice and a parameter change while idle are not answers', () => {
    const wire = connected()
    wire.send(INGRESS, join(notification('ch', 'payload'), notice('idle notice'), parameterStatus('TimeZone', 'UTC')))
    wire.send(EGRESS, query('SELECT 1'))
    wire.send(INGRESS, join(commandComplete('SELECT 1'), ready()))
    assert.deepEqual(wire.operations.map((o) => o.text), ['SELECT 1'])
    assert.deepEqual(wire.errors(), {})
  })

  it('a FATAL error with nothing waiting (a failed login) is no operation', () => {
    const wire = new Wire('client')
    wire.send(EGRESS, startup({ user: 'u', database: 'd' }))
    wire.send(INGRESS, authCleartext())
    wire.send(EGRESS, password('wrong'))
    wire.send(INGRESS, errorResponse('28P01', 'password authentication failed for user "u"', 'FATAL'))
    wire.connection.close()
    assert.deepEqual(wire.operations, [])
    assert.deepEqual(wire.errors(), {})
  })

  it('a query still waiting when the connection closes ends as closed', () => {
    const wire = connected()
    const sent = wire.send(EGRESS, query('SELECT pg_sleep(10)'))
    const last = wire.send(INGRESS, rowDescription('pg_sleep'))
    wire.connection.close()
    assert.deepEqual(wire.operations, [op({ text: 'SELECT pg_sleep(10)', incomplete: 'closed', startNs: sent.startNs, endNs: last.endNs })])
  })

  it('Terminate ends the stream without an operation', () => {
    const wire = connected()
    wire.send(EGRESS, terminate())
    wire.connection.close()
    assert.deepEqual(wire.operations, [])
    assert.deepEqual(wire.errors(), {})
  })
})

describe('PostgreSQL parser: cut, lost and mid-stream records', () => {
  it('a query longer than the capture: its text is what was captured, and the next one parses', () => {
    const wire = connected()
    const long = `SELECT '${'x'.repeat(10000)}'`
    wire.send(EGRESS, query(long), { captured: 4096 })
    wire.send(INGRESS, join(commandComplete('SELECT 1'), ready()))
    wire.send(EGRESS, query('SELECT 2'))
    wire.send(INGRESS, join(commandComplete('SELECT 1'), ready()))
    assert.equal(wire.operations.length, 2)
    assert.equal(wire.operations[0]!.textCut, true)
    assert.equal(wire.operations[0]!.text, long.slice(0, 4096 - 5))
    assert.deepEqual([wire.operations[1]!.text, wire.operations[1]!.textCut], ['SELECT 2', false])
    assert.deepEqual(wire.errors(), {})
  })

  it('a query longer than maxTextBytes is kept up to it', () => {
    const wire = connected({ maxTextBytes: 100 })
    wire.send(EGRESS, query('SELECT ' + '1,'.repeat(200) + '1'))
    wire.send(INGRESS, join(commandComplete('SELECT 1'), ready()))
    assert.equal(wire.operations[0]!.textCut, true)
    assert.ok(wire.operations[0]!.text!.startsWith('SELECT 1,1,'))
    assert.ok(wire.operations[0]!.text!.length <= 100 + 256)
  })

  it('a result read cut by the capture with its ReadyForQuery unseen: the operation ends when the next request is sent', () => {
    const wire = connected()
    wire.send(EGRESS, query('SELECT * FROM big'))
    const rows = join(rowDescription('v'), ...Array.from({ length: 400 }, (_, i) => dataRow(`row-${i}-`.padEnd(40, '.'))), commandComplete('SELECT 400'), ready())
    const cut = wire.send(INGRESS, rows, { captured: 4096 })
    wire.send(EGRESS, query('SELECT 1'))
    const answer = wire.send(INGRESS, join(dataRow('1'), commandComplete('SELECT 1'), ready()))
    assert.deepEqual(wire.operations.map((o) => [o.text, o.incomplete, o.commands, o.endNs]), [
      ['SELECT * FROM big', 'unseen', [], cut.endNs],
      ['SELECT 1', undefined, ['SELECT'], answer.endNs],
    ])
    assert.deepEqual(wire.errors(), { 'capture-cut': 1 })
  })

  it('a result cut inside a record whose rest arrives in the next read: the place is found again at its CommandComplete', () => {
    const wire = connected()
    wire.send(EGRESS, query('SELECT * FROM big'))
    const rows = join(rowDescription('v'), ...Array.from({ length: 200 }, (_, i) => dataRow(`row-${i}-`.padEnd(40, '.'))))
    wire.send(INGRESS, rows, { captured: 1000 })
    // the next read starts inside a DataRow: garbage until a chain of messages reaches its end
    const tail = join(Uint8Array.from(Buffer.from('.....tail of a row')), dataRow('last'), commandComplete('SELECT 201'), ready())
    const end = wire.send(INGRESS, tail)
    assert.deepEqual(wire.operations.map((o) => [o.text, o.incomplete, o.commands, o.endNs]), [['SELECT * FROM big', undefined, ['SELECT'], end.endNs]])
    assert.deepEqual(wire.errors(), { 'capture-cut': 1 })
  })

  it('lost records: counted, the direction found again at the next message boundary', () => {
    const wire = connected()
    wire.send(EGRESS, query('SELECT lost'))
    // the answer's record was lost: the next answer's record carries the loss flag and a gap
    wire.positions[INGRESS] += 30
    wire.send(EGRESS, query('SELECT 2'))
    wire.send(INGRESS, join(commandComplete('SELECT 1'), ready()), { loss: true })
    wire.send(EGRESS, query('SELECT 3'))
    wire.send(INGRESS, join(commandComplete('SELECT 1'), ready()))
    assert.deepEqual(wire.errors(), { lost: 1 })
    // SELECT lost took SELECT 2's answer (the lost one cannot be told apart); SELECT 3 is whole
    assert.deepEqual(wire.operations.at(-1)!.text, 'SELECT 3')
    assert.equal(wire.operations.at(-1)!.incomplete, undefined)
  })

  it('a connection first seen mid-stream: the first whole message chain starts the parse', () => {
    const wire = new Wire('client')
    wire.send(EGRESS, query('SELECT 1'), { position: 5000 })
    wire.send(INGRESS, join(commandComplete('SELECT 1'), ready()), { position: 9000 })
    assert.deepEqual(wire.operations.map((o) => o.text), ['SELECT 1'])
    assert.equal(wire.connection.database, undefined)
  })

  it('garbage in place of a message: counted, and the next request is parsed', () => {
    const wire = connected()
    wire.send(EGRESS, Uint8Array.from(Buffer.from('\xff\xfe this is not a message')))
    wire.send(EGRESS, query('SELECT 1'))
    wire.send(INGRESS, join(commandComplete('SELECT 1'), ready()))
    assert.deepEqual(wire.operations.map((o) => o.text), ['SELECT 1'])
    assert.deepEqual(wire.errors(), { 'message-type': 1 })
  })
})

describe('PostgreSQL parser: helpers', () => {
  it('findBoundary finds the first chain of messages reaching the end of the data', () => {
    const data = join(Uint8Array.of(1, 2, 3), commandComplete('SELECT 1'), ready())
    assert.equal(findBoundary(data, 0, false, false), 3)
    assert.equal(findBoundary(data, 0, true, false), -1)
    assert.equal(findBoundary(Uint8Array.of(90, 0, 0, 0, 5), 0, false, false), -1)
  })

  it('utf8 decodes multi-byte text and replaces invalid bytes', () => {
    const bytes = Uint8Array.from(Buffer.from("SELECT 'žluťoučký 🐘'"))
    assert.equal(utf8(bytes, 0, bytes.length), "SELECT 'žluťoučký 🐘'")
    // an invalid byte is U+FFFD; a character cut at the end (a capture's limit) is dropped
    assert.equal(utf8(Uint8Array.of(0x41, 0xff, 0xc3), 0, 3), 'A\ufffd')
    assert.equal(utf8(Uint8Array.of(0x41, 0xff, 0xc3, 0x41), 0, 4), 'A\ufffd\ufffdA')
  })
})
