// MySQL / MariaDB client spans end to end: Debian's MariaDB 10.11 (a server this test starts
// with its own data directory, a password login over TCP), driven by the real `mariadb` client
// and by Node's mysql2 (prepared statements: COM_STMT_PREPARE + COM_STMT_EXECUTE) in a process
// of its own, traced by `periscope run` with only the shipped mysql plugin, exported to a real
// Collector. Every statement a client ran must be exactly one span of that client's pid, with the
// semantic-convention attributes; errors carry their error number; a result far larger than the
// capture does not desynchronise what follows; no literal, parameter or password the test used
// may appear in anything Periscope or the Collector wrote.
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { client, startMariadb, type ClientResult, type MariadbServer } from '../peers/mariadb.ts'
import { attributesOf, collectorSpans as spansOf, flatten, startCollector, type Collector, type CollectorSpan as Span } from '../peers/otelcol.ts'
import { startPeriscope, type Periscope } from '../peers/periscope.ts'
import { pollUntil } from '../peers/poll.ts'

type Json = Record<string, unknown>

const pidOf = (span: Span): number => Number(span.attributes['process.pid'])
const root = fileURLToPath(new URL('../../', import.meta.url))

/** Secrets this test puts on the wire: none may be exported. */
const PASSWORD = 'mariadb-pw-3c8e1f'
const STRING_LITERAL = 'mysql-literal-secret-k4'
const NUMBER_LITERAL = '918273645'
const PARAMETER_VALUE = 'execute-parameter-secret-w7'
const TEXT_PROTOCOL_LITERAL = 'mysql2-query-literal-z3'
const TLS_LITERAL = 'tls-literal-secret-p5'

/** Rows of the big table, each larger than the default 4096-byte capture. */
const BIG_ROWS = 3000
const BIG_ROW_BYTES = 5000
/** execute() calls of one statement by the mysql2 client (one prepare, this many executes). */
const EXECUTES = 40

/** The mysql2 client: prepared statements through execute(), run as a process of its own. */
const MYSQL2_CLIENT = `
import mysql from ${JSON.stringify(join(root, 'node_modules/mysql2/promise.js'))}
const { PORT, MYSQL_PWD, USER, EXECUTES, PARAMETER_VALUE, TEXT_PROTOCOL_LITERAL } = process.env
const connection = await mysql.createConnection({ host: '127.0.0.1', port: Number(PORT), user: USER, password: MYSQL_PWD, database: 'shop' })
const out = { selected: 0, inserted: 0, failed: 0, counted: 0 }
for (let i = 0; i < Number(EXECUTES); i++) {
  const [rows] = await connection.execute('SELECT id, name FROM items WHERE price > ?', [i % 2 === 0 ? 0.5 : 100])
  out.selected += rows.length
}
const [result] = await connection.execute('INSERT INTO items (name, price) VALUES (?, ?)', [PARAMETER_VALUE, 42.25])
out.inserted = result.affectedRows
try {
  await connection.execute('SELECT id FROM nosuch WHERE id = ?', [1])
} catch (error) {
  out.failed = error.errno
}
const [counted] = await connection.query("SELECT COUNT(*) AS n FROM items WHERE name <> '" + TEXT_PROTOCOL_LITERAL + "'")
out.counted = Number(counted[0].n)
await connection.end()
console.log(JSON.stringify(out))
`

/**
 * A mysql2 client that connects and prepares a statement before Periscope starts, then, once the
 * file GO exists, runs three queries and two executions of that statement on the same connection.
 */
const EARLY_CLIENT = `
import mysql from ${JSON.stringify(join(root, 'node_modules/mysql2/promise.js'))}
import { existsSync } from 'node:fs'
const { PORT, MYSQL_PWD, USER, GO } = process.env
const connection = await mysql.createConnection({ host: '127.0.0.1', port: Number(PORT), user: USER, password: MYSQL_PWD, database: 'shop' })
await connection.execute('SELECT name FROM items WHERE id = ?', [1])
console.log('ready')
while (!existsSync(GO)) await new Promise((resolve) => setTimeout(resolve, 20))
for (const id of [1, 2, 3]) await connection.query('SELECT price FROM items WHERE id = ' + id)
for (const id of [1, 2]) await connection.execute('SELECT name FROM items WHERE id = ?', [id])
await connection.end()
console.log('done')
`

describe('MySQL/MariaDB client spans from the mariadb client and mysql2', { timeout: 600_000 }, () => {
  let collector: Collector
  let db: MariadbServer
  let periscope: Periscope
  let scratch: string
  let early: { pid: number; done: Promise<ClientResult> }
  /** Every client process this test ran (spansOfClient's). */
  const clientPids = new Set<number>()
  /** `SELECT items` spans in the shop database: the histogram's count for that series. */
  let selectItems = 0

  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'periscope-mysql-e2e-'))
    await writeFile(join(scratch, 'client.mjs'), MYSQL2_CLIENT)
    await writeFile(join(scratch, 'early.mjs'), EARLY_CLIENT)
    collector = await startCollector()
    db = await startMariadb({ password: PASSWORD, databases: ['shop', 'other'] })
    await db.sql([
      'CREATE TABLE shop.items (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(200), price DECIMAL(10,2))',
      "INSERT INTO shop.items (name, price) VALUES ('apple', 1.25), ('pear', 2.50)",
      'CREATE TABLE other.notes (id INT PRIMARY KEY, note VARCHAR(200))',
      "INSERT INTO other.notes VALUES (7, 'seven')",
      'CREATE TABLE shop.pages (id INT PRIMARY KEY, body TEXT)',
      `INSERT INTO shop.pages SELECT seq, REPEAT('b', ${BIG_ROW_BYTES}) FROM shop.seq_1_to_${BIG_ROWS}`,
    ].join(';\n'))
    early = await startEarlyClient()
    periscope = await startPeriscope({ endpoint: collector.httpEndpoint, shipped: ['mysql'], ready: /running 1 of \d+ plugins/ })
    await periscope.waitForOutput(/tracing MySQL and MariaDB clients on the whole host/, 'the mysql plugin to start')
  })

  /** The early client, connected and waiting for GO when this resolves. */
  async function startEarlyClient(): Promise<{ pid: number; done: Promise<ClientResult> }> {
    const child = spawn(join(root, 'node_modules/.bin/node'), [join(scratch, 'early.mjs')], {
      env: { ...process.env, PORT: String(db.port), MYSQL_PWD: PASSWORD, USER: db.user, GO: join(scratch, 'go') },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
    const done = new Promise<ClientResult>((resolve) => child.once('close', (code) => resolve({ stdout, stderr, code: code ?? -1, pid: child.pid! })))
    await pollUntil(() => stdout.includes('ready'), {
      what: 'the early mysql2 client to get ready',
      timeoutMs: 30_000,
      failed: () => (child.exitCode !== null ? `the early mysql2 client exited (${child.exitCode})` : undefined),
      details: () => `${stdout}\n${stderr}`,
    })
    return { pid: child.pid!, done }
  }

  after(async () => {
    await periscope?.stop()
    await db?.stop()
    await collector?.stop()
    if (scratch !== undefined) await rm(scratch, { recursive: true, force: true })
  })

  /** A query whose span, once exported, follows everything traced before it. */
  async function barrier(): Promise<void> {
    const run = await db.mariadb(['-e', 'SELECT 1'])
    assert.equal(run.code, 0, run.stderr)
    await collector.waitFor('traces', (lines) => spansOf(lines).some((s) => pidOf(s) === run.pid), 60_000)
  }

  /** Polls until the client's spans number at least `count`; then they must number exactly `count`. */
  async function spansOfClient(run: ClientResult, count: number, system = 'mariadb', timeoutMs = 60_000): Promise<Span[]> {
    clientPids.add(run.pid)
    let found: Span[] = []
    await collector.waitFor('traces', (lines) => {
      found = spansOf(lines).filter((s) => pidOf(s) === run.pid)
      return found.length >= count
    }, timeoutMs).catch((error: Error) => {
      throw new Error(`${error.message}\n${found.length} span(s) of pid ${run.pid}: ${found.map((s) => s.name).join(', ')}\nperiscope output:\n${periscope.output().slice(-3000)}`)
    })
    // a span invented later would come before a later client's: wait for one, then count again
    await barrier()
    found = spansOf(await collector.read('traces')).filter((s) => pidOf(s) === run.pid)
    assert.equal(found.length, count, `spans of pid ${run.pid}: ${found.map((s) => s.name).join(', ')}`)
    for (const span of found) {
      assert.equal(span.kind, 'client')
      assert.equal(span.attributes['db.system.name'], system)
      assert.equal(span.attributes['server.address'], '127.0.0.1')
      assert.equal(span.attributes['server.port'], db.port)
      assert.equal(span.attributes['network.peer.address'], '127.0.0.1')
      assert.equal(Number(span.resource['process.pid']), run.pid)
    }
    return found
  }

  const view = (s: Span): unknown[] => [s.name, s.attributes['db.operation.name'], s.attributes['db.collection.name'], s.attributes['db.query.text'], s.attributes['db.namespace'], s.attributes['db.response.returned_rows']]

  it('a connection opened before Periscope started is followed from its next command; what came before (database, server, prepared text) is unknown', async () => {
    await writeFile(join(scratch, 'go'), '')
    const run = await early.done
    assert.equal(run.code, 0, run.stderr)
    const spans = await spansOfClient(run, 5, 'mysql')
    assert.deepEqual(spans.map((s) => [s.name, s.attributes['db.query.text'], s.attributes['db.namespace'], s.attributes['db.response.returned_rows'], s.error]), [
      ['SELECT items', 'SELECT price FROM items WHERE id = ?', undefined, 1, false],
      ['SELECT items', 'SELECT price FROM items WHERE id = ?', undefined, 1, false],
      ['SELECT items', 'SELECT price FROM items WHERE id = ?', undefined, 0, false],
      ['mysql', undefined, undefined, 1, false],
      ['mysql', undefined, undefined, 1, false],
    ])
  })

  it('the mariadb client: each statement one span, literals masked, `use` changes the namespace, errors carry 1146 and 1064', async () => {
    const script = [
      `INSERT INTO items (name, price) VALUES ('${STRING_LITERAL}', 12.50);`,
      `SELECT name FROM items WHERE name = '${STRING_LITERAL}' AND price < ${NUMBER_LITERAL};`,
      'use other',
      'SELECT note FROM notes WHERE id = 7;',
      'SELECT * FROM nosuch;',
      'SELEC broken;',
      '',
    ].join('\n')
    const run = await db.mariadb(['--force'], { input: script, database: 'shop' })
    assert.match(run.stderr, /ERROR 1146 \(42S02\) at line 5/)
    assert.match(run.stderr, /ERROR 1064 \(42000\) at line 6/)
    // the client sends statements without their delimiter; `use` is its own command: it asks
    // SELECT DATABASE(), then sends COM_INIT_DB (no span)
    const spans = await spansOfClient(run, 6)
    selectItems += 1
    assert.deepEqual(spans.map(view), [
      ['INSERT items', 'INSERT', 'items', 'INSERT INTO items (name, price) VALUES (?, ?)', 'shop', undefined],
      ['SELECT items', 'SELECT', 'items', 'SELECT name FROM items WHERE name = ? AND price < ?', 'shop', 1],
      ['SELECT', 'SELECT', undefined, 'SELECT DATABASE()', 'shop', 1],
      ['SELECT notes', 'SELECT', 'notes', 'SELECT note FROM notes WHERE id = ?', 'other', 1],
      ['SELECT nosuch', 'SELECT', 'nosuch', 'SELECT * FROM nosuch', 'other', undefined],
      ['SELEC', 'SELEC', undefined, 'SELEC broken', 'other', undefined],
    ])
    assert.deepEqual(spans.map((s) => [s.error, s.attributes['db.response.status_code'], s.attributes['error.type'], s.statusMessage]), [
      [false, undefined, undefined, ''],
      [false, undefined, undefined, ''],
      [false, undefined, undefined, ''],
      [false, undefined, undefined, ''],
      [true, '1146', '1146', 'ERROR 1146 (42S02)'],
      [true, '1064', '1064', 'ERROR 1064 (42000)'],
    ])
  })

  it('mysql2 execute(): one prepare, then each COM_STMT_EXECUTE one span with the prepared text; a failed prepare is an error span', async () => {
    const run = await client(join(root, 'node_modules/.bin/node'), [join(scratch, 'client.mjs')], {
      ...process.env, PORT: String(db.port), MYSQL_PWD: PASSWORD, USER: db.user, EXECUTES: String(EXECUTES), PARAMETER_VALUE, TEXT_PROTOCOL_LITERAL,
    })
    assert.equal(run.code, 0, run.stderr)
    const out = JSON.parse(run.stdout) as { selected: number; inserted: number; failed: number; counted: number }
    assert.deepEqual(out, { selected: 3 * EXECUTES / 2, inserted: 1, failed: 1146, counted: 4 })
    const spans = await spansOfClient(run, EXECUTES + 3)
    selectItems += EXECUTES
    const select = spans.slice(0, EXECUTES)
    assert.deepEqual(new Set(select.map((s) => JSON.stringify(view(s).slice(0, 5)))), new Set([JSON.stringify(['SELECT items', 'SELECT', 'items', 'SELECT id, name FROM items WHERE price > ?', 'shop'])]))
    // the even calls (price > 0.5) returned the three rows, the odd ones (price > 100) none
    assert.deepEqual(select.map((s) => s.attributes['db.response.returned_rows']), Array.from({ length: EXECUTES }, (_, i) => (i % 2 === 0 ? 3 : 0)))
    assert.deepEqual(spans.slice(EXECUTES).map(view), [
      ['INSERT items', 'INSERT', 'items', 'INSERT INTO items (name, price) VALUES (?, ?)', 'shop', undefined],
      ['SELECT nosuch', 'SELECT', 'nosuch', 'SELECT id FROM nosuch WHERE id = ?', 'shop', undefined],
      ['SELECT items', 'SELECT', 'items', 'SELECT COUNT(*) AS n FROM items WHERE name <> ?', 'shop', 1],
    ])
    selectItems += 1
    const failed = spans[EXECUTES + 1]!
    assert.deepEqual([failed.error, failed.attributes['db.response.status_code'], failed.statusMessage], [true, '1146', 'ERROR 1146 (42S02)'])
    assert.ok(spans.filter((s) => s !== failed).every((s) => !s.error))
  })

  it(`a result of ${BIG_ROWS} rows of ${BIG_ROW_BYTES} bytes (far beyond the capture) is one span, and the queries after it on the connection parse right`, async () => {
    const script = [
      'SELECT id, body FROM pages;',
      'SELECT COUNT(*) FROM pages WHERE id > 10;',
      'SELECT name FROM items WHERE id = 2;',
      'SELECT * FROM pages_missing;',
      '',
    ].join('\n')
    const run = await db.mariadb(['--force'], { input: script, database: 'shop' })
    assert.equal(run.stdout.split('\n').filter((line) => line.endsWith('b'.repeat(BIG_ROW_BYTES))).length, BIG_ROWS)
    const spans = await spansOfClient(run, 4)
    selectItems += 1
    assert.deepEqual(spans.map((s) => view(s).slice(0, 5)), [
      ['SELECT pages', 'SELECT', 'pages', 'SELECT id, body FROM pages', 'shop'],
      ['SELECT pages', 'SELECT', 'pages', 'SELECT COUNT(*) FROM pages WHERE id > ?', 'shop'],
      ['SELECT items', 'SELECT', 'items', 'SELECT name FROM items WHERE id = ?', 'shop'],
      ['SELECT pages_missing', 'SELECT', 'pages_missing', 'SELECT * FROM pages_missing', 'shop'],
    ])
    // the big result's rows are counted only when its end could be followed through the capture
    assert.ok([undefined, BIG_ROWS].includes(spans[0]!.attributes['db.response.returned_rows'] as number | undefined))
    assert.deepEqual(spans.slice(1).map((s) => [s.attributes['db.response.returned_rows'], s.attributes['db.response.status_code']]), [[1, undefined], [1, undefined], [undefined, '1146']])
    assert.deepEqual(spans.map((s) => s.error), [false, false, false, true])
    // one after the other on the connection: the big result's span ends before the next begins
    for (let i = 1; i < spans.length; i++) assert.ok(spans[i - 1]!.endNs <= spans[i]!.startNs, `span ${i - 1} ends before span ${i} starts`)
  })

  it('db.client.operation.duration counts every SELECT on items in shop', async () => {
    await collector.waitFor('metrics', (lines) => histogramCount(lines, db.port, 'SELECT', 'items') === selectItems, 60_000).catch((error: Error) => {
      throw new Error(`${error.message}\nlast count: ${histogramCount([], db.port, 'SELECT', 'items')}, want ${selectItems}`)
    })
  })

  it('a connection that switches to TLS (SSL request) gives no span and no parse error: it is counted as untraced', async () => {
    // a server of its own: the mariadb client uses TLS whenever the server offers it
    const secure = await startMariadb({ password: PASSWORD, tls: true })
    try {
      const run = await secure.mariadb(['--ssl', '--ssl-verify-server-cert=0', '-e', `SELECT '${TLS_LITERAL}' AS x; SHOW SESSION STATUS LIKE 'Ssl_version'`])
      assert.equal(run.code, 0, run.stderr)
      assert.match(run.stdout, /Ssl_version\tTLSv1\.[23]/, 'the session is TLS')
      await spansOfClient(run, 0)
      await collector.waitFor('metrics', (lines) => (latestGauges(lines, 'periscope.mysql.untraced_connections', 'reason').tls ?? 0) >= 1, 60_000).catch((error: Error) => {
        throw new Error(`${error.message}\nperiscope output:\n${periscope.output().slice(-3000)}`)
      })
    } finally {
      await secure.stop()
    }
  })

  it('the plugin reports no parse error for any of this traffic, and no span of any other process', async () => {
    let errors: Record<string, number> = {}
    await collector.waitFor('metrics', (lines) => {
      errors = latestGauges(lines, 'periscope.mysql.parse_errors', 'reason')
      return Object.keys(errors).length > 0
    }, 60_000)
    assert.deepEqual(Object.entries(errors).filter(([, n]) => n !== 0), [], `parse errors: ${JSON.stringify(errors)}`)
    // nor a span of anything but the test's clients: the kernel takes other length-prefixed
    // protocols seen from their middle (esbuild's IPC) for MySQL, and the parser must reject them
    const spans = spansOf(await collector.read('traces'))
    const clients = new Set(spans.filter((span) => clientPids.has(pidOf(span))).map((span) => span.resource['process.command']))
    assert.deepEqual([...clients].sort(), ['MainThread', 'mariadb'].sort(), 'the commands of the test clients (Node names its main thread MainThread)')
    const others = spans.filter((span) => !clients.has(span.resource['process.command']))
    assert.deepEqual(others.map((span) => `${span.resource['process.command']} (${pidOf(span)}): ${span.name}`), [])
    assert.deepEqual(Object.keys(errors).sort(), ['command', 'greeting', 'handshake', 'position', 'response', 'resync', 'sequence', 'unexpected-response'])
  })

  it('no password, literal or parameter value the test used appears in the data directory or the Collector output', async () => {
    for (const secret of [PASSWORD, STRING_LITERAL, NUMBER_LITERAL, PARAMETER_VALUE, TEXT_PROTOCOL_LITERAL, TLS_LITERAL]) {
      for (const dir of [periscope.dir, collector.outDir]) {
        const found = await grep(secret, dir)
        assert.equal(found, '', `${secret} found in ${dir}:\n${found}`)
      }
    }
    // the values did reach the server: the grep is not vacuous
    const check = await db.sql(`SELECT COUNT(*) FROM shop.items WHERE name IN ('${STRING_LITERAL}', '${PARAMETER_VALUE}')`)
    assert.match(check, /\n2\n/)
  })

  it('mask_literals: false exports statements as sent, and the server error messages', async () => {
    // after the secrets check: this run exports literals on purpose
    await periscope.stop()
    periscope = await startPeriscope({
      endpoint: collector.httpEndpoint, shipped: ['mysql'], ready: /running 1 of \d+ plugins/,
      config: { plugins: { mysql: { config: { mask_literals: false } } } },
    })
    await periscope.waitForOutput(/tracing MySQL and MariaDB clients/, 'the mysql plugin to start')
    const run = await db.mariadb(['--force'], { input: "SELECT name FROM items WHERE name = 'visible' AND price > 2;\nSELECT * FROM nosuch_raw;\n", database: 'shop' })
    const spans = await spansOfClient(run, 2)
    assert.deepEqual(spans.map((s) => [s.attributes['db.query.text'], s.statusMessage]), [
      ["SELECT name FROM items WHERE name = 'visible' AND price > 2", ''],
      ['SELECT * FROM nosuch_raw', "ERROR 1146 (42S02): Table 'shop.nosuch_raw' doesn't exist"],
    ])
  })
})

/** Files under `dir` containing `text` (grep -r), '' when none. */
async function grep(text: string, dir: string): Promise<string> {
  return promisify(execFile)('grep', ['-r', '-a', '-l', '-F', text, dir]).then(({ stdout }) => stdout, (error: { code?: number; stdout?: string }) => {
    if (error.code === 1) return ''
    throw error
  })
}

/** The largest count of the db.client.operation.duration points of this server, operation and table in `shop` (cumulative). */
function histogramCount(lines: Json[], port: number, operation: string, collection: string): number {
  let count = 0
  for (const { item } of flatten('metrics', lines)) {
    if (item.name !== 'db.client.operation.duration') continue
    for (const point of ((item.histogram as Json | undefined)?.dataPoints as Json[] | undefined) ?? []) {
      const attributes = attributesOf(point.attributes)
      if (attributes['server.port'] !== port || attributes['db.operation.name'] !== operation || attributes['db.collection.name'] !== collection) continue
      if (attributes['db.namespace'] !== 'shop' || attributes['db.system.name'] !== 'mariadb') continue
      count = Math.max(count, Number(point.count))
    }
  }
  return count
}

/** The last value of a gauge per value of its `key` attribute. */
function latestGauges(lines: Json[], name: string, key: string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const { item } of flatten('metrics', lines)) {
    if (item.name !== name) continue
    for (const point of ((item.gauge as Json | undefined)?.dataPoints as Json[] | undefined) ?? []) {
      const value = point.asInt ?? point.asDouble
      out[String(attributesOf(point.attributes)[key])] = Number(value)
    }
  }
  return out
}
