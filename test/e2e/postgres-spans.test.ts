// PostgreSQL client spans end to end: Debian's PostgreSQL 15 (a cluster this test makes with
// initdb, scram-sha-256 over TCP, TLS on), driven by the real psql and pgbench, traced by
// `periscope run` with only the shipped postgres plugin, exported to a real Collector. Every
// statement a client sent must be exactly one span of that client's pid, with the semantic-
// convention attributes; errors carry their SQLSTATE; no literal or password the test used may
// appear in anything Periscope or the Collector wrote.
import assert from 'node:assert/strict'
import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import { attributesOf, flatten, startCollector, type Collector } from '../peers/otelcol.ts'
import { startPeriscope, type Periscope } from '../peers/periscope.ts'
import { POSTGRES_DATABASE, startPostgres, type ClientResult, type PostgresServer } from '../peers/postgres.ts'
import { pollUntil } from '../peers/poll.ts'

type Json = Record<string, unknown>

interface Span {
  name: string
  kind: number
  attributes: Record<string, unknown>
  resource: Record<string, unknown>
  error: boolean
  statusMessage: string
  startNs: bigint
}

function spansOf(lines: Json[]): Span[] {
  return flatten('traces', lines).map(({ item, resource }) => ({
    name: item.name as string,
    kind: item.kind as number,
    attributes: attributesOf(item.attributes),
    resource,
    error: (item.status as { code?: number } | undefined)?.code === 2,
    statusMessage: String((item.status as { message?: string } | undefined)?.message ?? ''),
    startNs: BigInt(item.startTimeUnixNano as string),
  }))
}

const SPAN_KIND_CLIENT = 3
const pidOf = (span: Span): number => Number(span.attributes['process.pid'])

/** Secrets this test puts on the wire: none may be exported. */
const SUPERUSER_PASSWORD = 'superuser-pw-5f1c9a'
const CLEARTEXT_USER = { name: 'plainuser', password: 'cleartext-pw-77e2b4' }
const STRING_LITERAL = 'literal-secret-xyz'
const OTHER_LITERAL = 'other-secret-q9'
const NUMBER_LITERAL = '987654321'
const TLS_LITERAL = 'tls-secret-abc'
const CLEARTEXT_LITERAL = 'cleartext-user-literal-k2'

/** The pgbench script: two statements a transaction, so -t N gives 2N spans per client. */
const PGBENCH_SCRIPT = [
  '\\set aid random(1, 100000)',
  'SELECT abalance FROM pgbench_accounts WHERE aid = :aid;',
  'UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;',
  '',
].join('\n')
/** The same two statements in one pipeline (\startpipeline): both Executes before one Sync. */
const PGBENCH_PIPELINE_SCRIPT = [
  '\\set aid random(1, 100000)',
  '\\startpipeline',
  'SELECT abalance FROM pgbench_accounts WHERE aid = :aid;',
  'UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;',
  '\\endpipeline',
  '',
].join('\n')
const TRANSACTIONS = 50
const CLIENTS = 2

describe('PostgreSQL client spans from psql and pgbench', { timeout: 600_000 }, () => {
  let collector: Collector
  let pg: PostgresServer
  let periscope: Periscope
  let scratch: string
  /** UPDATE pgbench_accounts spans this test made: the histogram's count for that series. */
  let updates = 0
  /** Every client process this test ran against the server. */
  const clients = new Set<number>()
  /** A psql session that connected and queried before Periscope started. */
  let early: { child: ChildProcessWithoutNullStreams; output: () => string } | undefined

  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'periscope-pg-e2e-'))
    await writeFile(join(scratch, 'two.sql'), PGBENCH_SCRIPT)
    await writeFile(join(scratch, 'pipeline.sql'), PGBENCH_PIPELINE_SCRIPT)
    collector = await startCollector()
    pg = await startPostgres({ tls: true, password: SUPERUSER_PASSWORD, cleartextUser: CLEARTEXT_USER })
    early = await startEarlySession(pg.url())
    periscope = await startPeriscope({ endpoint: collector.httpEndpoint, shipped: ['postgres'], ready: /running 1 of \d+ plugins/ })
    await periscope.waitForOutput(/tracing PostgreSQL clients \(TLS through OpenSSL uprobes too\)/, 'the postgres plugin to start')
  })

  after(async () => {
    early?.child.kill('SIGKILL')
    await periscope?.stop()
    await pg?.stop()
    await collector?.stop()
    if (scratch !== undefined) await rm(scratch, { recursive: true, force: true })
  })

  /** A psql query whose span, once exported, follows everything traced before it. */
  async function barrier(): Promise<void> {
    const run = await pg.psql(['-c', 'SELECT 1'])
    clients.add(run.pid)
    assert.equal(run.code, 0, run.stderr)
    await collector.waitFor('traces', (lines) => spansOf(lines).some((s) => pidOf(s) === run.pid), 60_000)
  }

  /** Polls until the client's spans number at least `count`; then they must number exactly `count`. */
  async function spansOfClient(run: ClientResult, count: number, timeoutMs = 60_000): Promise<Span[]> {
    assert.equal(run.code, 0, `client failed:\n${run.stdout}\n${run.stderr}`)
    clients.add(run.pid)
    let found: Span[] = []
    await collector.waitFor('traces', (lines) => {
      found = spansOf(lines).filter((s) => pidOf(s) === run.pid)
      return found.length >= count
    }, timeoutMs).catch((error: Error) => {
      throw new Error(`${error.message}\n${found.length} span(s) of pid ${run.pid}: ${found.map((s) => s.name).join(', ')}\nperiscope output:\n${periscope.output().slice(-3000)}`)
    })
    // a span invented later would come before a later client's: wait for one, then count again
    await barrier()
    // in the order the client sent them (export batches may arrive out of order)
    found = spansOf(await collector.read('traces')).filter((s) => pidOf(s) === run.pid).sort((a, b) => (a.startNs < b.startNs ? -1 : a.startNs > b.startNs ? 1 : 0))
    assert.equal(found.length, count, `spans of pid ${run.pid}: ${found.map((s) => s.name).join(', ')}`)
    for (const span of found) {
      assert.equal(span.kind, SPAN_KIND_CLIENT)
      assert.equal(span.attributes['db.system.name'], 'postgresql')
      assert.equal(span.attributes['server.address'], '127.0.0.1')
      assert.equal(span.attributes['server.port'], pg.port)
      assert.equal(span.attributes['network.peer.address'], '127.0.0.1')
      assert.equal(Number(span.resource['process.pid']), run.pid)
    }
    return found
  }

  it('psql: each statement one span, literals masked, the syntax error an error with SQLSTATE 42601', async () => {
    const script = [
      'CREATE TABLE notes (id bigint, note text);',
      `INSERT INTO notes VALUES (${NUMBER_LITERAL}, '${STRING_LITERAL}');`,
      `SELECT note FROM notes WHERE id = ${NUMBER_LITERAL} AND note <> '${OTHER_LITERAL}';`,
      'SELEC oops;',
      `BEGIN \\; UPDATE notes SET note = '${OTHER_LITERAL}' WHERE id = ${NUMBER_LITERAL} \\; COMMIT;`,
      '',
    ].join('\n')
    const run = await pg.psql([], { input: script })
    assert.match(run.stderr, /syntax error at or near "SELEC"/)
    const spans = await spansOfClient(run, 5)
    const view = spans.map((s) => [s.name, s.attributes['db.operation.name'], s.attributes['db.collection.name'], s.attributes['db.query.text'], s.attributes['db.namespace']])
    assert.deepEqual(view, [
      ['CREATE notes', 'CREATE', 'notes', 'CREATE TABLE notes (id bigint, note text);', POSTGRES_DATABASE],
      ['INSERT notes', 'INSERT', 'notes', 'INSERT INTO notes VALUES (?, ?);', POSTGRES_DATABASE],
      ['SELECT notes', 'SELECT', 'notes', 'SELECT note FROM notes WHERE id = ? AND note <> ?;', POSTGRES_DATABASE],
      ['SELEC', 'SELEC', undefined, 'SELEC oops;', POSTGRES_DATABASE],
      ['BATCH', 'BATCH', undefined, 'BEGIN ; UPDATE notes SET note = ? WHERE id = ? ; COMMIT;', POSTGRES_DATABASE],
    ])
    const failed = spans[3]!
    assert.equal(failed.error, true)
    assert.equal(failed.attributes['db.response.status_code'], '42601')
    assert.equal(failed.attributes['error.type'], '42601')
    assert.equal(failed.statusMessage, 'ERROR SQLSTATE 42601')
    assert.deepEqual(spans.filter((s) => s !== failed).map((s) => [s.error, s.attributes['db.response.status_code']]), Array(4).fill([false, undefined]))
    assert.equal(spans[4]!.attributes['db.operation.batch.size'], 3)
  })

  it('pgbench -i: its COPY of 100,000 rows (CopyData far beyond the capture size) is one COPY span, its spans kept apart from the runs by pid', async () => {
    const run = await pg.pgbench(['-i', '-s', '1', '-q'])
    clients.add(run.pid)
    assert.equal(run.code, 0, run.stderr)
    let spans: Span[] = []
    await collector.waitFor('traces', (lines) => {
      spans = spansOf(lines).filter((s) => pidOf(s) === run.pid)
      return spans.some((s) => s.name === 'COPY pgbench_accounts')
    }, 60_000)
    const copy = spans.filter((s) => s.name === 'COPY pgbench_accounts')
    assert.equal(copy.length, 1)
    assert.equal(copy[0]!.error, false)
  })

  for (const mode of ['simple', 'extended', 'prepared'] as const) {
    it(`pgbench -M ${mode} -t ${TRANSACTIONS} -c ${CLIENTS}: exactly transactions × statements spans`, async () => {
      const run = await pg.pgbench(['-n', '-M', mode, '-t', String(TRANSACTIONS), '-c', String(CLIENTS), '-j', '1', '-f', join(scratch, 'two.sql')])
      assert.match(run.stdout, new RegExp(`number of transactions actually processed: ${TRANSACTIONS * CLIENTS}/${TRANSACTIONS * CLIENTS}`))
      const spans = await spansOfClient(run, TRANSACTIONS * CLIENTS * 2)
      updates += TRANSACTIONS * CLIENTS
      const byName = new Map<string, number>()
      for (const s of spans) byName.set(s.name, (byName.get(s.name) ?? 0) + 1)
      assert.deepEqual(Object.fromEntries(byName), { 'SELECT pgbench_accounts': TRANSACTIONS * CLIENTS, 'UPDATE pgbench_accounts': TRANSACTIONS * CLIENTS })
      const placeholder = mode === 'simple' ? '?' : '$1'
      const texts = new Set(spans.map((s) => s.attributes['db.query.text']))
      assert.deepEqual([...texts].sort(), [
        `SELECT abalance FROM pgbench_accounts WHERE aid = ${placeholder};`,
        `UPDATE pgbench_accounts SET abalance = abalance + ? WHERE aid = ${placeholder};`,
      ].sort())
      for (const s of spans) {
        assert.equal(s.attributes['db.namespace'], POSTGRES_DATABASE)
        assert.equal(s.error, false)
      }
    })
  }

  it(`pgbench -M prepared with \\startpipeline: exactly transactions × statements spans`, async () => {
    const run = await pg.pgbench(['-n', '-M', 'prepared', '-t', String(TRANSACTIONS), '-c', String(CLIENTS), '-j', '1', '-f', join(scratch, 'pipeline.sql')])
    assert.match(run.stdout, new RegExp(`number of transactions actually processed: ${TRANSACTIONS * CLIENTS}/${TRANSACTIONS * CLIENTS}`))
    const spans = await spansOfClient(run, TRANSACTIONS * CLIENTS * 2)
    updates += TRANSACTIONS * CLIENTS
    const byName = new Map<string, number>()
    for (const s of spans) byName.set(s.name, (byName.get(s.name) ?? 0) + 1)
    assert.deepEqual(Object.fromEntries(byName), { 'SELECT pgbench_accounts': TRANSACTIONS * CLIENTS, 'UPDATE pgbench_accounts': TRANSACTIONS * CLIENTS })
  })

  it('TLS (sslmode=require): libpq over libssl is traced through the OpenSSL uprobes', async () => {
    const run = await pg.psql(['-c', `SELECT length('${TLS_LITERAL}') AS n, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`], { sslmode: 'require' })
    assert.match(run.stdout, / t\n/, 'the connection is TLS')
    const [span] = await spansOfClient(run, 1)
    assert.equal(span!.name, 'SELECT pg_stat_ssl')
    assert.equal(span!.attributes['db.query.text'], 'SELECT length(?) AS n, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')
    assert.equal(span!.attributes['db.namespace'], POSTGRES_DATABASE)
  })

  it('TLS pgbench -M prepared: exactly transactions × statements spans from the plaintext of libssl', async () => {
    const run = await pg.pgbench(['-n', '-M', 'prepared', '-t', String(TRANSACTIONS), '-c', '1', '-f', join(scratch, 'two.sql')], { sslmode: 'require' })
    assert.match(run.stdout, new RegExp(`number of transactions actually processed: ${TRANSACTIONS}/${TRANSACTIONS}`))
    const spans = await spansOfClient(run, TRANSACTIONS * 2)
    updates += TRANSACTIONS
    assert.deepEqual(new Set(spans.map((s) => s.name)), new Set(['SELECT pgbench_accounts', 'UPDATE pgbench_accounts']))
    for (const s of spans) assert.equal(s.attributes['db.namespace'], POSTGRES_DATABASE)
  })

  it('a cleartext password login: the password message is never exported', async () => {
    const run = await pg.psql(['-c', `SELECT '${CLEARTEXT_LITERAL}' AS x`], { user: CLEARTEXT_USER })
    const [span] = await spansOfClient(run, 1)
    assert.equal(span!.attributes['db.query.text'], 'SELECT ? AS x')
  })

  it('db.client.operation.duration counts every UPDATE pgbench made', async () => {
    await collector.waitFor('metrics', (lines) => histogramCount(lines, pg.port, 'UPDATE', 'pgbench_accounts') === updates, 60_000).catch((error: Error) => {
      throw new Error(`${error.message}\nlast count: ${histogramCount([], pg.port, 'UPDATE', 'pgbench_accounts')}, want ${updates}`)
    })
  })

  it('a session opened before Periscope: its later queries are spans (the kernel recognises a whole query mid-stream)', async () => {
    const session = early!
    clients.add(session.child.pid!)
    for (const n of [1, 2, 3]) {
      session.child.stdin.write(`SELECT 'early-${n}' AS x;\n`)
      await waitForText(session.output, `early-${n}`)
    }
    const spans = await spansOfClient({ pid: session.child.pid!, code: 0, stdout: '', stderr: '' }, 3)
    assert.deepEqual(spans.map((s) => [s.name, s.attributes['db.query.text'], s.attributes['db.system.name']]), Array(3).fill(['SELECT', 'SELECT ? AS x;', 'postgresql']))
    session.child.stdin.end()
  })

  it("the plugin's own gauges: TLS connections followed, and no malformed message (only records cut by the capture size)", async () => {
    // 2 TLS clients: psql, pgbench (its check connection and its client)
    await collector.waitFor('metrics', (lines) => gauge(lines, 'periscope.postgres.tls_connections') >= 3, 60_000)
    const lines = await collector.read('metrics')
    for (const reason of ['message-type', 'message-length', 'startup', 'message-body', 'unmatched-response', 'lost']) {
      assert.equal(gauge(lines, 'periscope.postgres.parse_errors', { reason }), 0, `parse_errors{reason=${reason}}`)
    }
  })

  it("no span comes from anything but the test's clients (the server's backends are the other end)", async () => {
    const spans = spansOf(await collector.read('traces')).filter((s) => s.attributes['server.port'] === pg.port || s.attributes['db.system.name'] === 'postgresql')
    const strangers = spans.filter((s) => !clients.has(pidOf(s)))
    assert.deepEqual(strangers.map((s) => `${s.name} pid ${pidOf(s)} ${String(s.resource['process.command'] ?? '')}`), [])
  })

  it('no password or literal the test used appears in the data directory or the Collector output', async () => {
    for (const secret of [SUPERUSER_PASSWORD, CLEARTEXT_USER.password, STRING_LITERAL, OTHER_LITERAL, NUMBER_LITERAL, TLS_LITERAL, CLEARTEXT_LITERAL]) {
      for (const dir of [periscope.dir, collector.outDir]) {
        const found = await grep(secret, dir)
        assert.equal(found, '', `${secret} found in ${dir}:\n${found}`)
      }
    }
    // the literals did reach the server: the grep is not vacuous
    const check = await pg.psql(['-At', '-c', `SELECT note FROM notes WHERE id = ${NUMBER_LITERAL}`])
    assert.equal(check.stdout.trim(), OTHER_LITERAL)
  })
})

/** Files under `dir` containing `text` (grep -r), '' when none. */
async function grep(text: string, dir: string): Promise<string> {
  return promisify(execFile)('grep', ['-r', '-a', '-l', '-F', text, dir]).then(({ stdout }) => stdout, (error: { code?: number; stdout?: string }) => {
    if (error.code === 1) return ''
    throw error
  })
}

/** The last value of a gauge of the postgres plugin (with these attributes). */
function gauge(lines: Json[], name: string, wanted: Record<string, string> = {}): number {
  let value = -1
  for (const { item } of flatten('metrics', lines)) {
    if (item.name !== name) continue
    for (const point of ((item.gauge as Json | undefined)?.dataPoints as Json[] | undefined) ?? []) {
      const attributes = attributesOf(point.attributes)
      if (Object.entries(wanted).some(([k, v]) => attributes[k] !== v)) continue
      value = Number(point.asInt ?? point.asDouble)
    }
  }
  return value
}

/** The largest count of the db.client.operation.duration points of this server, operation and table (cumulative). */
function histogramCount(lines: Json[], port: number, operation: string, collection: string): number {
  let count = 0
  for (const { item } of flatten('metrics', lines)) {
    if (item.name !== 'db.client.operation.duration') continue
    for (const point of ((item.histogram as Json | undefined)?.dataPoints as Json[] | undefined) ?? []) {
      const attributes = attributesOf(point.attributes)
      if (attributes['server.port'] !== port || attributes['db.operation.name'] !== operation || attributes['db.collection.name'] !== collection) continue
      count = Math.max(count, Number(point.count))
    }
  }
  return count
}

/** psql connected over TCP and answered one query, its stdin open for more. */
async function startEarlySession(url: string): Promise<{ child: ChildProcessWithoutNullStreams; output: () => string }> {
  const child = spawn('/usr/bin/psql', ['-X', '-q', '-A', '-t', url])
  let output = ''
  child.stdout.on('data', (d: Buffer) => { output += d.toString() })
  child.stderr.on('data', (d: Buffer) => { output += d.toString() })
  child.stdin.write("SELECT 'early-0';\n")
  await waitForText(() => output, 'early-0')
  return { child, output: () => output }
}

async function waitForText(output: () => string, text: string): Promise<void> {
  await pollUntil(() => output().includes(text), { what: `psql to print ${text}`, timeoutMs: 20_000, details: output })
}
