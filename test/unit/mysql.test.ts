/**
 * The MySQL / MariaDB parser (runtime/protocols/mysql.ts) on exact bytes: real sessions recorded
 * between real clients and MariaDB 10.11 (test/unit/mysql-captures.ts), and packets built from the
 * protocol documentation for what those clients did not do (CLIENT_DEPRECATE_EOF, a MySQL 8
 * server, query attributes, TLS, compression, 16 MiB packets, rows larger than the capture,
 * lost records, connections seen from their middle). Every operation handed over is compared in
 * full, times included.
 */
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import * as esbuild from 'esbuild'
import ivm from 'isolated-vm'
import { COM_CHANGE_USER, COM_INIT_DB, COM_PING, COM_QUERY, COM_STMT_EXECUTE, COM_STMT_PREPARE, COM_STMT_FETCH, type MysqlOperation } from '../../runtime/protocols/mysql.ts'
import { utf8 } from '../../runtime/protocols/bytes.ts'
import { cliSession, infileSession, multiResultSession, mysql2Session } from './mysql-captures.ts'
import {
  CAPS_41, COMPRESS, CONNECT_WITH_DB, DEPRECATE_EOF, EGRESS, INGRESS, QUERY_ATTRIBUTES, SESSION_TRACK,
  MysqlWire, bytesOf, columnDefinition, eof, err, greeting, handshakeResponse, hex, lenenc, ok, packet, packets, query, resultSet, sslRequest, textRow, u16le, u32le,
  type Handed, type RecordTimes,
} from './mysql-wire.ts'

type Session = [direction: 'c' | 's', hex: string][]

/** Feeds a recorded session; `split` cuts each recorded read into records of at most that many bytes. */
function replay(session: Session, options: { split?: number; role?: 'client' | 'unknown' } = {}): { wire: MysqlWire; times: RecordTimes[] } {
  const wire = new MysqlWire(options.role ?? 'client')
  const times: RecordTimes[] = []
  for (const [direction, text] of session) {
    const bytes = hex(text)
    const size = options.split ?? bytes.length
    for (let at = 0; at < bytes.length; at += size) times.push(wire.send(direction === 'c' ? EGRESS : INGRESS, bytes.subarray(at, at + size)))
  }
  return { wire, times }
}

function operation(fields: Partial<MysqlOperation> & { command: number; startNs: number; endNs: number }): Handed {
  return { textBytesCut: 0, tid: 0, context: 0, side: 'client', namespace: undefined, ...fields } as Handed
}

/** Operations without their times, to compare runs that cut records differently. */
function untimed(operations: Handed[]): Omit<Handed, 'startNs' | 'endNs'>[] {
  return operations.map(({ startNs: _s, endNs: _e, ...rest }) => rest)
}

/** Times of recorded reads (one record each when not split): the first's start to the last's end. */
function between(times: RecordTimes[], first: number, last: number): { startNs: number; endNs: number } {
  return { startNs: times[first]!.startNs, endNs: times[last]!.endNs }
}

describe('MySQL parser: real MariaDB sessions', () => {
  it('the mariadb client: queries with their rows, COM_INIT_DB changing the namespace, errors with code and SQL state', () => {
    const { wire, times } = replay(cliSession)
    wire.connection.close()
    // reads: 0 greeting, 1 login, 2 OK, then a command and its answer each
    assert.deepEqual(wire.operations, [
      operation({ command: COM_QUERY, text: 'select id, name from items where price > 1.5', namespace: 'shop', rows: 1, ...between(times, 3, 4) }),
      operation({ command: COM_QUERY, text: 'SELECT DATABASE()', namespace: 'shop', rows: 1, ...between(times, 5, 6) }),
      operation({ command: COM_INIT_DB, text: 'other', namespace: 'shop', ...between(times, 7, 8) }),
      operation({ command: COM_QUERY, text: 'select * from nosuch', namespace: 'other', error: { code: 1146, sqlState: '42S02', message: "Table 'other.nosuch' doesn't exist" }, ...between(times, 9, 10) }),
      operation({
        command: COM_QUERY, text: 'selec broken', namespace: 'other', ...between(times, 11, 12),
        error: { code: 1064, sqlState: '42000', message: "You have an error in your SQL syntax; check the manual that corresponds to your MariaDB server version for the right syntax to use near 'selec broken' at line 1" },
      }),
      operation({ command: COM_QUERY, text: 'select 1', namespace: 'other', rows: 1, ...between(times, 13, 14) }),
      operation({ command: COM_QUERY, text: 'select 2', namespace: 'other', rows: 1, ...between(times, 15, 16) }),
    ])
    assert.deepEqual(wire.connection.server, { version: '10.11.19-MariaDB-0+deb12u1', mariadb: true })
    assert.equal(wire.connection.user, 'app')
    assert.equal(wire.connection.database, 'other')
    assert.deepEqual(wire.errors(), {})
    assert.deepEqual(wire.stats(), {})
  })

  it("mysql2's execute(): the prepare's text carried to each COM_STMT_EXECUTE by statement id; a failed prepare is an error", () => {
    const { wire, times } = replay(mysql2Session)
    const select = 'SELECT id, name FROM items WHERE price > ?'
    const insert = 'INSERT INTO items (name, price) VALUES (?, ?)'
    assert.deepEqual(wire.operations, [
      operation({ command: COM_STMT_PREPARE, text: select, statementId: 1, namespace: 'shop', ...between(times, 3, 4) }),
      operation({ command: COM_STMT_EXECUTE, text: select, statementId: 1, namespace: 'shop', rows: 1, ...between(times, 5, 6) }),
      operation({ command: COM_STMT_EXECUTE, text: select, statementId: 1, namespace: 'shop', rows: 2, ...between(times, 7, 8) }),
      operation({ command: COM_STMT_PREPARE, text: insert, statementId: 2, namespace: 'shop', ...between(times, 9, 10) }),
      operation({ command: COM_STMT_EXECUTE, text: insert, statementId: 2, namespace: 'shop', affectedRows: 1, ...between(times, 11, 12) }),
      operation({ command: COM_STMT_PREPARE, text: 'SELECT * FROM nosuch WHERE id = ?', namespace: 'shop', error: { code: 1146, sqlState: '42S02', message: "Table 'shop.nosuch' doesn't exist" }, ...between(times, 13, 14) }),
      operation({ command: COM_QUERY, text: 'SELECT COUNT(*) AS n FROM items', namespace: 'shop', rows: 1, ...between(times, 15, 16) }),
    ])
    assert.equal(wire.connection.statementCount, 2)
    assert.deepEqual(wire.errors(), {})
  })

  it('multiple results of one COM_QUERY (SERVER_MORE_RESULTS_EXISTS) are one operation, ending with the last result', () => {
    const { wire, times } = replay(multiResultSession)
    // the answer came in two reads: 4 and 5
    assert.deepEqual(wire.operations, [operation({
      command: COM_QUERY, text: 'SELECT 1 AS a; UPDATE items SET price = price WHERE id = 0; SELECT name FROM items WHERE id = 1', namespace: 'shop', rows: 2, ...between(times, 3, 5),
    })])
  })

  it('LOAD DATA LOCAL INFILE: the file upload and a MariaDB progress report are part of the one operation, which is no error', () => {
    const { wire, times } = replay(infileSession)
    assert.deepEqual(wire.operations, [operation({
      command: COM_QUERY, text: "LOAD DATA LOCAL INFILE '/tmp/mcap/items.tsv' INTO TABLE items (@x, name, price)", namespace: 'shop', affectedRows: 1, ...between(times, 3, 7),
    })])
    assert.deepEqual(wire.errors(), {})
  })

  it('the same operations whatever the record boundaries: every session cut into records of 1 to 40 bytes', () => {
    for (const session of [cliSession, mysql2Session, multiResultSession, infileSession]) {
      const whole = replay(session).wire
      for (let split = 1; split <= 40; split++) {
        const cut = replay(session, { split }).wire
        assert.deepEqual(untimed(cut.operations), untimed(whole.operations), `records of ${split} bytes`)
        assert.deepEqual(cut.errors(), {})
      }
    }
  })

  it('an unknown role is decided by the greeting: the side that receives it is the client', () => {
    const { wire } = replay(cliSession, { role: 'unknown' })
    assert.equal(wire.connection.role, 'client')
    assert.equal(wire.operations.length, 7)
    assert.ok(wire.operations.every((op) => op.side === 'client'))
  })

  it('the server side of the same session: commands are what it received', () => {
    const wire = new MysqlWire('unknown')
    for (const [direction, text] of mysql2Session) wire.send(direction === 'c' ? INGRESS : EGRESS, hex(text))
    assert.equal(wire.connection.role, 'server')
    assert.equal(wire.operations.length, 7)
    assert.ok(wire.operations.every((op) => op.side === 'server'))
  })
})

/** A wire past a MariaDB or MySQL handshake with these capabilities. */
function loggedIn(options: { capabilities?: number; version?: string; database?: string } = {}): MysqlWire {
  const capabilities = options.capabilities ?? CAPS_41 | CONNECT_WITH_DB
  const wire = new MysqlWire('client')
  wire.send(INGRESS, packet(0, greeting(options.version ?? '5.5.5-11.4.2-MariaDB', 0xffffffff & ~1)))
  wire.send(EGRESS, packet(1, handshakeResponse({ capabilities, user: 'reporting', auth: hex('00112233445566778899aabbccddeeff00112233'), database: options.database ?? 'shop' })))
  wire.send(INGRESS, packet(2, ok()))
  return wire
}

/** One command and its answer, each in one record; returns the operation's times. */
function exchange(wire: MysqlWire, command: Uint8Array, answer: Uint8Array[], options: { capture?: number } = {}): RecordTimes {
  const sent = wire.send(EGRESS, packet(0, command))
  const received = wire.send(INGRESS, packets(1, answer), options)
  return { startNs: sent.startNs, endNs: received.endNs }
}

describe('MySQL parser: handshakes', () => {
  it('MySQL 8 with CLIENT_DEPRECATE_EOF: result sets end with an OK, a prepare without EOFs ends at its last definition', () => {
    const wire = loggedIn({ version: '8.0.36', capabilities: CAPS_41 | CONNECT_WITH_DB | DEPRECATE_EOF })
    assert.deepEqual(wire.connection.server, { version: '8.0.36', mariadb: false })
    const a = exchange(wire, query('SELECT name FROM items'), resultSet(['name'], [textRow(['apple']), textRow(['pear'])], { deprecateEof: true }))
    const b = exchange(wire, query('SELECT name FROM items WHERE 0'), resultSet(['name'], [], { deprecateEof: true }))
    const prepareOk = bytesOf([0], u32le(9), u16le(2), u16le(1), [0], u16le(0))
    const c = exchange(wire, bytesOf([0x16], 'SELECT id, name FROM items WHERE id = ?'), [prepareOk, columnDefinition('?'), columnDefinition('id'), columnDefinition('name')])
    const d = exchange(wire, bytesOf([0x17], u32le(9), [0], u32le(1), [0], [1], u16le(3), u32le(7)), [bytesOf(lenenc(2)), columnDefinition('id'), columnDefinition('name'), bytesOf([0], [0], lenenc(7), lenenc(4), 'kiwi'), ok({ header: 0xfe })])
    assert.deepEqual(wire.operations, [
      operation({ command: COM_QUERY, text: 'SELECT name FROM items', namespace: 'shop', rows: 2, ...a }),
      operation({ command: COM_QUERY, text: 'SELECT name FROM items WHERE 0', namespace: 'shop', rows: 0, ...b }),
      operation({ command: COM_STMT_PREPARE, text: 'SELECT id, name FROM items WHERE id = ?', statementId: 9, namespace: 'shop', ...c }),
      operation({ command: COM_STMT_EXECUTE, text: 'SELECT id, name FROM items WHERE id = ?', statementId: 9, namespace: 'shop', rows: 1, ...d }),
    ])
    assert.deepEqual(wire.errors(), {})
  })

  it('a greeting cut by the capture before its upper capability flags: the client\'s CLIENT_DEPRECATE_EOF still holds', () => {
    const wire = new MysqlWire('client')
    const hello = packet(0, greeting('5.5.5-10.11.19-MariaDB', 0xfffffffe))
    // the capture ends two bytes into the capability flags' upper half
    wire.send(INGRESS, hello, { capture: 4 + 1 + '5.5.5-10.11.19-MariaDB'.length + 1 + 4 + 8 + 1 + 2 + 1 + 2 })
    wire.send(EGRESS, packet(1, handshakeResponse({ capabilities: CAPS_41 | DEPRECATE_EOF, user: 'u', auth: new Uint8Array(20) })))
    wire.send(INGRESS, packet(2, ok()))
    assert.equal(wire.connection.server?.version, '10.11.19-MariaDB')
    // a prepare whose one parameter definition ends it: no EOF with CLIENT_DEPRECATE_EOF
    const t = exchange(wire, bytesOf([0x16], 'SELECT ?'), [bytesOf([0], u32le(1), u16le(0), u16le(1), [0], u16le(0)), columnDefinition('?')])
    assert.deepEqual(wire.operations, [operation({ command: COM_STMT_PREPARE, text: 'SELECT ?', statementId: 1, ...t })])
  })

  it('MySQL 8 query attributes before the statement text are skipped', () => {
    const wire = loggedIn({ version: '8.0.36', capabilities: CAPS_41 | QUERY_ATTRIBUTES })
    // no attributes: count 0, one parameter set
    const a = exchange(wire, bytesOf([0x03], [0, 1], 'SELECT 1'), resultSet(['1'], [textRow(['1'])]))
    // two attributes: a string and a LONGLONG, then the text
    const attributes = bytesOf([2, 1], [0], [1], u16le(0xfe), lenenc(3), 'app', u16le(0x08), lenenc(2), 'id', lenenc(5), 'lemon', u32le(42), u32le(0))
    const b = exchange(wire, bytesOf([0x03], attributes, 'SELECT 2'), resultSet(['2'], [textRow(['2'])]))
    assert.deepEqual(wire.operations.map((op) => op.text), ['SELECT 1', 'SELECT 2'])
    assert.deepEqual([wire.operations[0]!.startNs, wire.operations[1]!.endNs], [a.startNs, b.endNs])
    assert.deepEqual(wire.errors(), {})
  })

  it('an SSL request stops parsing: the ciphertext after it is neither parsed nor counted as malformed', () => {
    const wire = new MysqlWire('client')
    wire.send(INGRESS, packet(0, greeting('8.0.36', 0xffffffff)))
    wire.send(EGRESS, packet(1, sslRequest(CAPS_41)))
    wire.send(EGRESS, hex('160301020001000200000303'))
    wire.send(INGRESS, hex('160303007a020000760303'))
    assert.equal(wire.connection.stopped, true)
    assert.deepEqual(wire.stats(), { tls: 1 })
    assert.deepEqual(wire.errors(), {})
    assert.deepEqual(wire.operations, [])
  })

  it('a compressed protocol stops parsing after the OK', () => {
    const wire = loggedIn({ capabilities: CAPS_41 | COMPRESS })
    wire.send(EGRESS, hex('0d00000000000003534c454354203120'))
    assert.equal(wire.connection.stopped, true)
    assert.deepEqual(wire.stats(), { compressed: 1 })
    assert.deepEqual(wire.operations, [])
  })

  it('auth switch and more-data exchanges lead to the OK; the auth data is never read; a refused login stops', () => {
    const wire = new MysqlWire('client')
    wire.send(INGRESS, packet(0, greeting('8.0.36', 0xffffffff)))
    wire.send(EGRESS, packet(1, handshakeResponse({ capabilities: CAPS_41 | CONNECT_WITH_DB, user: 'u', auth: new Uint8Array(32).fill(7), database: 'inventory' })))
    wire.send(INGRESS, packet(2, bytesOf([0xfe], 'caching_sha2_password', [0], 'nonce-nonce-nonce-no', [0])))
    wire.send(EGRESS, packet(3, new Uint8Array(32).fill(9)))
    wire.send(INGRESS, packet(4, Uint8Array.of(0x01, 0x04)))
    wire.send(EGRESS, packet(5, bytesOf('plaintext-over-tls-only', [0])))
    wire.send(INGRESS, packet(6, ok()))
    const t = exchange(wire, Uint8Array.of(0x0e), [ok()])
    assert.deepEqual(wire.operations, [operation({ command: COM_PING, namespace: 'inventory', ...t })])
    assert.equal(wire.connection.user, 'u')

    const refused = new MysqlWire('client')
    refused.send(INGRESS, packet(0, greeting('8.0.36', 0xffffffff)))
    refused.send(EGRESS, packet(1, handshakeResponse({ capabilities: CAPS_41, user: 'u', auth: new Uint8Array(20) })))
    refused.send(INGRESS, packet(2, err(1045, '28000', "Access denied for user 'u'@'localhost'")))
    assert.equal(refused.connection.stopped, true)
    assert.deepEqual(refused.stats(), { authFailures: 1 })
  })

  it('session state tracking: `USE other` by COM_QUERY changes the namespace of later operations', () => {
    const wire = loggedIn({ capabilities: CAPS_41 | CONNECT_WITH_DB | SESSION_TRACK })
    exchange(wire, query('USE other'), [ok({ schema: 'other' })])
    exchange(wire, query('SELECT 1'), resultSet(['1'], [textRow(['1'])]))
    assert.deepEqual(wire.operations.map((op) => op.namespace), ['shop', 'other'])
    assert.equal(wire.connection.database, 'other')
  })

  it('COM_CHANGE_USER: the new user and database once the server accepts them', () => {
    const wire = loggedIn()
    const changeUser = bytesOf([0x11], 'auditor', [0], [20], new Uint8Array(20).fill(3), 'audit', [0], u16le(45), 'mysql_native_password', [0])
    exchange(wire, changeUser, [ok()])
    exchange(wire, query('SELECT 1'), resultSet(['1'], [textRow(['1'])]))
    assert.deepEqual(wire.operations.map((op) => [op.command, op.namespace]), [[COM_CHANGE_USER, 'shop'], [COM_QUERY, 'audit']])
    assert.equal(wire.connection.user, 'auditor')
  })
})

describe('MySQL parser: large results and what the capture cuts', () => {
  /** `count` rows of `size` bytes each in a text result of one column. */
  function rows(count: number, size: number): Uint8Array[] {
    return Array.from({ length: count }, (_, i) => textRow([String(i).padEnd(size - 4, 'x')]))
  }

  /** Bytes cut into records of `size` bytes, as a receiving client reads them. */
  function receive(wire: MysqlWire, bytes: Uint8Array, size: number, capture: number): RecordTimes[] {
    const times: RecordTimes[] = []
    for (let at = 0; at < bytes.length; at += size) times.push(wire.send(INGRESS, bytes.subarray(at, at + size), { capture }))
    return times
  }

  it('thousands of rows read 16 KiB at a time with 4 KiB captured: the end is not visible, so the operation ends at the last record before the next command, which parses right', () => {
    const wire = loggedIn()
    const sent = wire.send(EGRESS, packet(0, query('SELECT name FROM items')))
    const answer = packets(1, resultSet(['name'], rows(5000, 100)))
    const times = receive(wire, answer, 16384, 4096)
    assert.equal(wire.operations.length, 0, 'nothing handed over while the rows are still being read')
    const next = exchange(wire, query('SELECT 1'), resultSet(['1'], [textRow(['1'])]), { capture: 4096 })
    assert.deepEqual(wire.operations, [
      operation({ command: COM_QUERY, text: 'SELECT name FROM items', namespace: 'shop', incomplete: 'unfollowed', startNs: sent.startNs, endNs: times.at(-1)!.endNs }),
      operation({ command: COM_QUERY, text: 'SELECT 1', namespace: 'shop', rows: 1, ...next }),
    ])
    assert.deepEqual(wire.errors(), {})
    assert.deepEqual(wire.stats(), { resyncs: 1, unfollowed: 1 })
  })

  it('rows larger than the capture, each read in one record, are skipped by length and counted exactly', () => {
    const wire = loggedIn()
    const sent = wire.send(EGRESS, packet(0, query('SELECT body FROM pages')))
    const result = resultSet(['body'], rows(50, 40_000))
    let seq = 1
    let last: RecordTimes | undefined
    for (const payload of result) last = wire.send(INGRESS, packet(seq++, payload), { capture: 4096 })
    assert.deepEqual(wire.operations, [operation({ command: COM_QUERY, text: 'SELECT body FROM pages', namespace: 'shop', rows: 50, startNs: sent.startNs, endNs: last!.endNs })])
    assert.deepEqual(wire.errors(), {})
    assert.deepEqual(wire.stats(), {})
  })

  it('a row of 40 MiB in 16 MiB - 1 continuation packets is one row; a 16 MiB - 1 row ends with an empty packet', () => {
    const wire = loggedIn()
    const big = textRow(['y'.repeat(40 * 1024 * 1024)])
    const exact = textRow(['z'.repeat(0xffffff - 4)])
    assert.equal(exact.length, 0xffffff)
    wire.send(EGRESS, packet(0, query('SELECT blob_column FROM files')))
    const answer = packets(1, resultSet(['blob_column'], [big, exact, textRow(['small'])]))
    // records of a million bytes: the continuation packets' headers fall in uncaptured bytes, so
    // the framing is lost; a second run reads each packet in a record of its own
    const times = receive(wire, answer, 1_000_000, 1024)
    assert.equal(wire.operations.length, 0)
    const next = exchange(wire, query('SELECT 1'), resultSet(['1'], [textRow(['1'])]))
    assert.equal(wire.operations[0]!.incomplete, 'unfollowed')
    assert.equal(wire.operations[0]!.endNs, times.at(-1)!.endNs)
    assert.deepEqual(wire.operations[1], operation({ command: COM_QUERY, text: 'SELECT 1', namespace: 'shop', rows: 1, ...next }))

    const aligned = loggedIn()
    aligned.send(EGRESS, packet(0, query('SELECT blob_column FROM files')))
    let seq = 1
    for (const payload of resultSet(['blob_column'], [big, exact, textRow(['small'])])) {
      const framed = packet(seq, payload)
      seq += Math.floor(payload.length / 0xffffff) + 1
      // each physical packet in a record of its own, only its first 64 bytes captured
      for (let at = 0; at < framed.length; at += 0xffffff + 4) aligned.send(INGRESS, framed.subarray(at, at + 0xffffff + 4), { capture: 64 })
    }
    assert.deepEqual(aligned.operations.map((op) => [op.rows, op.incomplete]), [[3, undefined]])
    assert.deepEqual(aligned.errors(), {})
  })

  it('a statement longer than the capture keeps its captured text and counts the cut bytes; the answer still pairs', () => {
    const wire = loggedIn()
    const statement = `INSERT INTO items (name) VALUES ${Array.from({ length: 2000 }, (_, i) => `('n${i}')`).join(', ')}`
    const sent = wire.send(EGRESS, packet(0, query(statement)), { capture: 4096 })
    const answered = wire.send(INGRESS, packet(1, ok({ affectedRows: 2000 })))
    assert.deepEqual(wire.operations, [operation({
      command: COM_QUERY, text: statement.slice(0, 4096 - 5), textBytesCut: statement.length - (4096 - 5), namespace: 'shop', affectedRows: 2000, startNs: sent.startNs, endNs: answered.endNs,
    })])
    assert.deepEqual(wire.stats(), { textBytesCut: statement.length - (4096 - 5) })
  })

  it('a LOCAL INFILE upload larger than the capture: the server\'s OK after it is still read', () => {
    const wire = loggedIn()
    const sent = wire.send(EGRESS, packet(0, query("LOAD DATA LOCAL INFILE 'big.tsv' INTO TABLE items")))
    wire.send(INGRESS, packet(1, bytesOf([0xfb], 'big.tsv')))
    // three 9000-byte packets and the empty one in one send, 4096 bytes of it captured
    wire.send(EGRESS, packets(2, [new Uint8Array(9000).fill(65), new Uint8Array(9000).fill(66), new Uint8Array(9000).fill(67), new Uint8Array(0)]), { capture: 4096 })
    const answered = wire.send(INGRESS, packet(6, ok({ affectedRows: 300 })))
    const next = exchange(wire, query('SELECT 1'), resultSet(['1'], [textRow(['1'])]))
    assert.deepEqual(wire.operations, [
      operation({ command: COM_QUERY, text: "LOAD DATA LOCAL INFILE 'big.tsv' INTO TABLE items", namespace: 'shop', affectedRows: 300, startNs: sent.startNs, endNs: answered.endNs }),
      operation({ command: COM_QUERY, text: 'SELECT 1', namespace: 'shop', rows: 1, ...next }),
    ])
    assert.deepEqual(wire.errors(), {})
  })

  it('a COM_STMT_FETCH (cursor) answer is rows until EOF', () => {
    const wire = loggedIn()
    exchange(wire, bytesOf([0x16], 'SELECT name FROM items'), [bytesOf([0], u32le(4), u16le(1), u16le(0), [0], u16le(0)), columnDefinition('name'), eof()])
    // execute with a read-only cursor: definitions, then an EOF saying the cursor is open
    exchange(wire, bytesOf([0x17], u32le(4), [1], u32le(1)), [bytesOf([1]), columnDefinition('name'), eof(0x42)])
    const fetched = exchange(wire, bytesOf([0x1c], u32le(4), u32le(2)), [bytesOf([0, 0], lenenc(5), 'apple'), bytesOf([0, 0], lenenc(4), 'pear'), eof(0x42)])
    assert.deepEqual(wire.operations.map((op) => [op.command, op.text, op.rows]), [
      [COM_STMT_PREPARE, 'SELECT name FROM items', undefined],
      [COM_STMT_EXECUTE, 'SELECT name FROM items', 0],
      [COM_STMT_FETCH, 'SELECT name FROM items', 2],
    ])
    assert.equal(wire.operations[2]!.endNs, fetched.endNs)
    assert.deepEqual(wire.errors(), {})
  })
})

describe('MySQL parser: lost records and connections seen from the middle', () => {
  it('a lost record inside a result set: that operation is `lost`, the next command and its answer parse right', () => {
    const wire = loggedIn()
    const answer = packets(1, resultSet(['name'], Array.from({ length: 100 }, (_, i) => textRow([`row ${i}`]))))
    const sent = wire.send(EGRESS, packet(0, query('SELECT name FROM items')))
    const first = wire.send(INGRESS, answer.subarray(0, 300))
    // 300 bytes never arrive
    const last = wire.send(INGRESS, answer.subarray(600), { gapBefore: 300 })
    const next = exchange(wire, query('SELECT 2'), resultSet(['2'], [textRow(['2'])]))
    assert.ok(first.endNs < last.endNs)
    assert.deepEqual(wire.operations, [
      operation({ command: COM_QUERY, text: 'SELECT name FROM items', namespace: 'shop', incomplete: 'lost', startNs: sent.startNs, endNs: last.endNs }),
      operation({ command: COM_QUERY, text: 'SELECT 2', namespace: 'shop', rows: 1, ...next }),
    ])
    assert.deepEqual(wire.stats(), { lostBytes: 300, resyncs: 1 })
    assert.deepEqual(wire.errors(), {})
  })

  it('the handshake response lost: the connection is followed from the next command, capabilities unknown', () => {
    const wire = new MysqlWire('client')
    wire.send(INGRESS, packet(0, greeting('5.5.5-10.11.19-MariaDB', 0xfffffffe)))
    const login = packet(1, handshakeResponse({ capabilities: CAPS_41 | CONNECT_WITH_DB, user: 'u', auth: new Uint8Array(20), database: 'shop' }))
    wire.positions[EGRESS] += login.length
    // the server's OK is out of sequence (packet 1 was not seen): counted, and that direction waits for a command
    wire.send(INGRESS, packet(2, ok()))
    const first = exchange(wire, query('SELECT 1'), resultSet(['1'], [textRow(['1'])]))
    const next = exchange(wire, query('SELECT 2'), resultSet(['2'], [textRow(['2'])]))
    assert.deepEqual(wire.operations, [
      operation({ command: COM_QUERY, text: 'SELECT 1', rows: 1, ...first }),
      operation({ command: COM_QUERY, text: 'SELECT 2', rows: 1, ...next }),
    ])
    assert.equal(wire.connection.capabilities, undefined)
    assert.deepEqual(wire.errors(), { sequence: 1 })
  })

  it('answers lost across LOCAL INFILE uploads: later answers are not paired with the wrong commands', () => {
    const wire = loggedIn()
    const load = query("LOAD DATA LOCAL INFILE 'a.tsv' INTO TABLE items")
    wire.send(EGRESS, packet(0, load))
    wire.send(INGRESS, packet(1, bytesOf([0xfb], 'a.tsv')))
    wire.send(EGRESS, packet(2, new Uint8Array(0)))
    // the first upload's OK never arrives
    wire.positions[INGRESS] += packet(3, ok({ affectedRows: 1 })).length
    wire.send(EGRESS, packet(0, load))
    wire.send(INGRESS, packet(1, bytesOf([0xfb], 'a.tsv')))
    wire.send(EGRESS, packet(2, new Uint8Array(0)))
    wire.send(INGRESS, packet(3, ok({ affectedRows: 1 })))
    const next = exchange(wire, query('SELECT * FROM nosuch'), [err(1146, '42S02', "Table 'shop.nosuch' doesn't exist")])
    assert.deepEqual(wire.operations.map((op) => [op.text, op.incomplete, op.error?.code]), [
      ["LOAD DATA LOCAL INFILE 'a.tsv' INTO TABLE items", 'lost', undefined],
      ["LOAD DATA LOCAL INFILE 'a.tsv' INTO TABLE items", 'lost', undefined],
      ['SELECT * FROM nosuch', undefined, 1146],
    ])
    assert.equal(wire.operations[2]!.endNs, next.endNs)
  })

  it('pipelined COM_STMT_PREPARE and COM_STMT_EXECUTE of statement -1 (MariaDB): both answered in order, the execute with the prepared text', () => {
    const wire = loggedIn()
    const sent = wire.send(EGRESS, bytesOf(packet(0, bytesOf([0x16], 'SELECT name FROM items WHERE id = ?')), packet(0, bytesOf([0x17], u32le(0xffffffff), [0], u32le(1), [0], [1], u16le(3), u32le(2)))))
    const prepared = packets(1, [bytesOf([0], u32le(5), u16le(1), u16le(1), [0], u16le(0)), columnDefinition('?'), eof(), columnDefinition('name'), eof()])
    const executed = packets(1, [bytesOf([1]), columnDefinition('name'), eof(), bytesOf([0, 0], lenenc(4), 'pear'), eof()])
    const first = wire.send(INGRESS, prepared)
    const second = wire.send(INGRESS, executed)
    assert.deepEqual(wire.operations, [
      operation({ command: COM_STMT_PREPARE, text: 'SELECT name FROM items WHERE id = ?', statementId: 5, namespace: 'shop', startNs: sent.startNs, endNs: first.endNs }),
      operation({ command: COM_STMT_EXECUTE, text: 'SELECT name FROM items WHERE id = ?', statementId: 0xffffffff, namespace: 'shop', rows: 1, startNs: sent.startNs, endNs: second.endNs }),
    ])
    assert.deepEqual(wire.errors(), {})
  })

  it('seen from its middle, an execute of statement -1 whose pipelined prepare was missed: the prepare\'s answer is not taken for the execute\'s', () => {
    const wire = new MysqlWire('client')
    wire.positions[EGRESS] = 700
    wire.positions[INGRESS] = 900
    wire.send(EGRESS, packet(0, bytesOf([0x17], u32le(0xffffffff), [0], u32le(1))))
    wire.send(INGRESS, bytesOf(packets(1, [bytesOf([0], u32le(5), u16le(0), u16le(0), [0], u16le(0))]), packets(1, [ok({ affectedRows: 2 })])))
    const next = exchange(wire, query('SELECT 1'), resultSet(['1'], [textRow(['1'])]))
    assert.deepEqual(wire.operations, [operation({ command: COM_QUERY, text: 'SELECT 1', rows: 1, ...next })])
    // answers seen with no command known to them, on a connection seen from its middle, are expected
    assert.deepEqual(wire.errors(), {})
  })

  it('lost commands: their answers are not paired with the wrong commands', () => {
    const wire = loggedIn()
    wire.send(EGRESS, packet(0, query('SELECT 1')))
    // the client's next command was lost, and the answers to both arrive
    wire.send(INGRESS, packets(1, resultSet(['1'], [textRow(['1'])])))
    wire.send(INGRESS, packet(1, ok({ affectedRows: 3 })))
    const next = exchange(wire, query('SELECT 3'), resultSet(['3'], [textRow(['3'])]))
    // the OK was for a command never seen: counted, not handed over
    assert.deepEqual(wire.operations.map((op) => [op.text, op.rows, op.affectedRows, op.incomplete]), [['SELECT 1', 1, undefined, undefined], ['SELECT 3', 1, undefined, undefined]])
    assert.equal(wire.operations[1]!.endNs, next.endNs)
    assert.deepEqual(wire.errors(), { 'unexpected-response': 1 })
  })

  it('a connection first seen in its middle: answers before the first command are skipped, then commands parse', () => {
    const wire = new MysqlWire('client')
    wire.positions[EGRESS] = 5000
    wire.positions[INGRESS] = 90_000
    // the tail of some result set, then a command and its answer
    wire.send(INGRESS, packets(7, [textRow(['tail']), eof()]))
    const next = exchange(wire, query('SELECT 1'), resultSet(['1'], [textRow(['1'])]))
    assert.deepEqual(wire.operations, [operation({ command: COM_QUERY, text: 'SELECT 1', rows: 1, ...next })])
    assert.equal(wire.connection.server, undefined)
  })

  it('a connection the kernel found open: positions start at 0, the first record a command; it is followed from there', () => {
    const wire = new MysqlWire('client')
    const first = exchange(wire, query('SELECT 1'), resultSet(['1'], [textRow(['1'])]))
    const next = exchange(wire, bytesOf([0x17], u32le(4), [0], u32le(1)), [ok({ affectedRows: 1 })])
    assert.deepEqual(wire.operations, [
      operation({ command: COM_QUERY, text: 'SELECT 1', rows: 1, ...first }),
      operation({ command: COM_STMT_EXECUTE, statementId: 4, affectedRows: 1, ...next }),
    ])
    assert.deepEqual(wire.errors(), {})
    assert.equal(wire.connection.server, undefined)
  })

  it('another protocol that looks like a MySQL command from its middle (esbuild\'s length-prefixed IPC) is rejected at its first answer: no operation, no parse error', () => {
    const wire = new MysqlWire('client')
    // a 4-byte little-endian length and a payload whose first byte is 3, like a COM_QUERY
    wire.send(EGRESS, bytesOf(u32le(12), [3], 'abcdefghijk'))
    wire.send(INGRESS, bytesOf(u32le(8), [5], 'reply12'))
    wire.send(EGRESS, bytesOf(u32le(12), [3], 'abcdefghijk'))
    wire.connection.close()
    assert.deepEqual(wire.operations, [])
    assert.deepEqual(wire.errors(), {})
    assert.deepEqual(wire.stats(), { rejected: 1, resyncs: 2 })
    assert.equal(wire.connection.stopped, true)
  })

  it('a connection first seen in its middle, with an unknown role: the side that sends a command is the client', () => {
    const wire = new MysqlWire('unknown')
    wire.positions[EGRESS] = 5000
    wire.positions[INGRESS] = 90_000
    const next = exchange(wire, query('SELECT 1'), resultSet(['1'], [textRow(['1'])]))
    assert.equal(wire.connection.role, 'client')
    assert.deepEqual(wire.operations, [operation({ command: COM_QUERY, text: 'SELECT 1', rows: 1, ...next })])
  })

  it('a prepare seen without the handshake ends at its last definition when no EOF follows (CLIENT_DEPRECATE_EOF unknown)', () => {
    const wire = new MysqlWire('client')
    wire.positions[EGRESS] = 10
    wire.positions[INGRESS] = 10
    const prepare = exchange(wire, bytesOf([0x16], 'SELECT name FROM items WHERE id = ?'), [bytesOf([0], u32le(3), u16le(1), u16le(1), [0], u16le(0)), columnDefinition('?'), columnDefinition('name')])
    const execute = exchange(wire, bytesOf([0x17], u32le(3), [0], u32le(1), [0], [1], u16le(3), u32le(1)), [bytesOf([1]), columnDefinition('name'), bytesOf([0, 0], lenenc(5), 'apple'), ok({ header: 0xfe })])
    assert.deepEqual(wire.operations, [
      operation({ command: COM_STMT_PREPARE, text: 'SELECT name FROM items WHERE id = ?', statementId: 3, ...prepare }),
      operation({ command: COM_STMT_EXECUTE, text: 'SELECT name FROM items WHERE id = ?', statementId: 3, rows: 1, ...execute }),
    ])
    assert.deepEqual(wire.errors(), {})
  })

  it('an execute of a statement prepared before capture has no text; it is counted', () => {
    const wire = loggedIn()
    exchange(wire, bytesOf([0x17], u32le(77), [0], u32le(1)), [ok({ affectedRows: 1 })])
    assert.deepEqual(wire.operations.map((op) => [op.command, op.text, op.statementId, op.affectedRows]), [[COM_STMT_EXECUTE, undefined, 77, 1]])
    assert.deepEqual(wire.stats(), { unknownStatements: 1 })
  })

  it("an operation's tid and context are those of the record that sent the command's first byte", () => {
    const wire = loggedIn()
    const command = packet(0, query('SELECT 1'))
    const sent = wire.send(EGRESS, command.subarray(0, 6), { tid: 41, context: 9 })
    wire.send(EGRESS, command.subarray(6), { tid: 43, context: 10 })
    const received = wire.send(INGRESS, packets(1, resultSet(['1'], [textRow(['1'])])), { tid: 42, context: 11 })
    assert.deepEqual(wire.operations, [operation({ command: COM_QUERY, text: 'SELECT 1', namespace: 'shop', rows: 1, tid: 41, context: 9, startNs: sent.startNs, endNs: received.endNs })])
  })

  it('closing with a command unanswered hands it over as closed', () => {
    const wire = loggedIn()
    const sent = wire.send(EGRESS, packet(0, query('SELECT SLEEP(10)')))
    wire.connection.close()
    assert.deepEqual(wire.operations, [operation({ command: COM_QUERY, text: 'SELECT SLEEP(10)', namespace: 'shop', incomplete: 'closed', startNs: sent.startNs, endNs: sent.endNs })])
  })

  it('closing in the middle of a result that was being followed hands it over as closed, not unfollowed', () => {
    const wire = loggedIn()
    const sent = wire.send(EGRESS, packet(0, query('SELECT name FROM items')))
    const answer = packets(1, resultSet(['name'], [textRow(['apple']), textRow(['pear'])]))
    const part = wire.send(INGRESS, answer.subarray(0, answer.length - 12))
    wire.connection.close()
    assert.deepEqual(wire.operations, [operation({ command: COM_QUERY, text: 'SELECT name FROM items', namespace: 'shop', incomplete: 'closed', startNs: sent.startNs, endNs: part.endNs })])
  })

  it('prepared statements beyond maxStatements forget the least recently prepared', () => {
    const wire = new MysqlWire('client', { maxStatements: 2 })
    wire.send(INGRESS, packet(0, greeting('8.0.36', 0xffffffff)))
    wire.send(EGRESS, packet(1, handshakeResponse({ capabilities: CAPS_41, user: 'u', auth: new Uint8Array(20) })))
    wire.send(INGRESS, packet(2, ok()))
    for (const id of [1, 2, 3]) exchange(wire, bytesOf([0x16], `SELECT ${id}`), [bytesOf([0], u32le(id), u16le(0), u16le(0), [0], u16le(0))])
    for (const id of [1, 3]) exchange(wire, bytesOf([0x17], u32le(id), [0], u32le(1)), [ok()])
    assert.deepEqual(wire.operations.slice(3).map((op) => op.text), [undefined, 'SELECT 3'])
    assert.deepEqual(wire.stats(), { statementsEvicted: 1, unknownStatements: 1 })
    assert.equal(wire.connection.statementCount, 2)
  })
})

describe('utf8', () => {
  it('decodes what TextDecoder decodes, including cut and invalid sequences', () => {
    const decoder = new TextDecoder()
    for (const text of ['plain', 'naïve café', '日本語のテキスト', 'emoji 🎉 and 𝄞', 'x'.repeat(20000) + 'é'.repeat(10000)]) {
      const bytes = new TextEncoder().encode(text)
      assert.equal(utf8(bytes, 0, bytes.length), text)
    }
    assert.equal(utf8(Uint8Array.of(0x61, 0xff, 0x62), 0, 3), decoder.decode(Uint8Array.of(0x61, 0xff, 0x62)))
    assert.equal(utf8(Uint8Array.of(0x61, 0xe6, 0x97), 0, 3), 'a', 'a character cut at the end is dropped')
  })
})

const protocolsDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../runtime/protocols')

/** The recorded mysql2 session and a UTF-8 statement, fed inside the isolate. */
const isolateDriver = `
import { MysqlParser, EGRESS, INGRESS } from 'periscope/protocols/mysql'
const session = ${JSON.stringify(mysql2Session)}
const hex = (text) => Uint8Array.from(text.match(/../g), (pair) => parseInt(pair, 16))
const operations = []
const parser = new MysqlParser((operation, context, side) => operations.push({ command: operation.command, text: operation.text, rows: operation.rows, error: operation.error?.code, context, side }))
const connection = parser.connection('c1', 'client')
const positions = [0, 0]
const push = (direction, data) => {
  connection.push({ direction, position: positions[direction], bytes: data.length, data, startNs: 1, endNs: 2 })
  positions[direction] += data.length
}
for (const [direction, text] of session.slice(0, -1)) push(direction === 'c' ? EGRESS : INGRESS, hex(text))
// COM_QUERY "SELECT 'café ☕'" (UTF-8) answered by an OK
push(EGRESS, Uint8Array.of(0x13, 0, 0, 0, 0x03, ...[..."SELECT 'caf"].map((c) => c.charCodeAt(0)), 0xc3, 0xa9, 0x20, 0xe2, 0x98, 0x95, 0x27))
push(INGRESS, Uint8Array.of(7, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0))
globalThis.result = JSON.stringify({ operations, errors: parser.errors, textDecoder: typeof TextDecoder, buffer: typeof Buffer })
`

describe('MySQL parser in a plugin isolate', () => {
  it('bundles with no Node import and parses inside a bare isolate, UTF-8 statements included', async () => {
    const bundle = await esbuild.build({
      stdin: { contents: isolateDriver, resolveDir: protocolsDir, loader: 'ts' },
      bundle: true,
      write: false,
      format: 'iife',
      platform: 'neutral',
      target: 'es2024',
      alias: { 'periscope/protocols': protocolsDir },
      logLevel: 'silent',
    })
    const isolate = new ivm.Isolate({ memoryLimit: 16 })
    try {
      const context = await isolate.createContext()
      await context.eval(bundle.outputFiles[0]!.text)
      const result = JSON.parse(await context.eval('result', { copy: true }))
      const select = 'SELECT id, name FROM items WHERE price > ?'
      const insert = 'INSERT INTO items (name, price) VALUES (?, ?)'
      const common = { context: 'c1', side: 'client' }
      assert.deepEqual(result, {
        operations: [
          { command: COM_STMT_PREPARE, text: select, ...common },
          { command: COM_STMT_EXECUTE, text: select, rows: 1, ...common },
          { command: COM_STMT_EXECUTE, text: select, rows: 2, ...common },
          { command: COM_STMT_PREPARE, text: insert, ...common },
          { command: COM_STMT_EXECUTE, text: insert, ...common },
          { command: COM_STMT_PREPARE, text: 'SELECT * FROM nosuch WHERE id = ?', error: 1146, ...common },
          { command: COM_QUERY, text: 'SELECT COUNT(*) AS n FROM items', rows: 1, ...common },
          { command: COM_QUERY, text: "SELECT 'café ☕'", ...common },
        ],
        errors: { position: 0, sequence: 0, greeting: 0, handshake: 0, command: 0, response: 0, 'unexpected-response': 0, resync: 0 },
        textDecoder: 'undefined',
        buffer: 'undefined',
      })
    } finally {
      isolate.dispose()
    }
  })
})
