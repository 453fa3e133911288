/**
 * Records the byte streams of real psql and pgbench sessions against a real PostgreSQL 15 into
 * test/unit/postgres-captures.json, the input of test/unit/postgres.test.ts. A TCP proxy between
 * client and server keeps every read of either side as one record, in the order they happened.
 *
 *   node_modules/.bin/node test/unit/postgres-record-captures.ts [session names]
 *
 * With names, only those sessions are recorded again and replace their earlier recordings (the
 * others are kept as they are). Run it again only when the sessions below change; the tests assert
 * on what these sessions send.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer, connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startPostgres, type PostgresServer } from '../peers/postgres.ts'

export interface CapturedRecord {
  /** 0: the client sent it (egress of the client); 1: the server sent it. */
  direction: 0 | 1
  hex: string
}

export interface CapturedSession {
  name: string
  /** What the client ran. */
  command: string
  records: CapturedRecord[]
}

/** A proxy on a free port; each accepted connection's reads become records of `sink`. */
async function recordingProxy(target: number): Promise<{ port: number; take(): Promise<CapturedRecord[][]>; close(): Promise<void> }> {
  let connections: CapturedRecord[][] = []
  let open = 0
  const sockets = new Set<Socket>()
  const server = createServer((client) => {
    const records: CapturedRecord[] = []
    connections.push(records)
    const upstream = connect(target, '127.0.0.1')
    sockets.add(client).add(upstream)
    open++
    client.once('close', () => open--)
    client.on('data', (data) => {
      records.push({ direction: 0, hex: data.toString('hex') })
      upstream.write(data)
    })
    upstream.on('data', (data) => {
      records.push({ direction: 1, hex: data.toString('hex') })
      client.write(data)
    })
    client.on('close', () => upstream.end())
    upstream.on('close', () => client.end())
    client.on('error', () => upstream.destroy())
    upstream.on('error', () => client.destroy())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  return {
    port,
    /** The connections since the last call, once all of them have closed. */
    async take() {
      while (open > 0) await new Promise((resolve) => setTimeout(resolve, 10))
      const taken = connections
      connections = []
      return taken
    },
    close: () => {
      for (const socket of sockets) socket.destroy()
      return new Promise((resolve) => server.close(() => resolve()))
    },
  }
}

/** The psql session: simple queries, an error, a multi-statement query, COPY both ways, a notice, a notification. */
export const PSQL_SCRIPT = [
  'SELECT 1 AS one;',
  'SELEC broken;',
  'CREATE TABLE items (id int PRIMARY KEY, name text);',
  "INSERT INTO items VALUES (1, 'first-secret'), (2, 'second');",
  "BEGIN \\; UPDATE items SET name = 'changed' WHERE id = 2 \\; COMMIT;",
  'COPY items FROM STDIN;',
  '3\tcopied-three',
  '4\tcopied-four',
  '\\.',
  'COPY items TO STDOUT;',
  "DO $$ BEGIN RAISE NOTICE 'a notice'; END $$;",
  'LISTEN channel;',
  "NOTIFY channel, 'ping';",
  'SELECT count(*) FROM items;',
  '',
].join('\n')

/** The same two statements in one pipeline: both sent before the one Sync of \endpipeline. */
export const PGBENCH_PIPELINE_SCRIPT = [
  '\\set aid random(1, 100000)',
  '\\startpipeline',
  'SELECT abalance FROM pgbench_accounts WHERE aid = :aid;',
  'UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;',
  '\\endpipeline',
  '',
].join('\n')

/** The pgbench script: two statements a transaction. */
export const PGBENCH_SCRIPT = [
  '\\set aid random(1, 100000)',
  'SELECT abalance FROM pgbench_accounts WHERE aid = :aid;',
  'UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;',
  '',
].join('\n')

async function sessions(pg: PostgresServer, dir: string): Promise<{ name: string; command: string; run: (port: string) => Promise<unknown> }[]> {
  const script = join(dir, 'two.sql')
  const divide = join(dir, 'divide.sql')
  const broken = join(dir, 'broken.sql')
  const pipeline = join(dir, 'pipeline.sql')
  await writeFile(script, PGBENCH_SCRIPT)
  await writeFile(pipeline, PGBENCH_PIPELINE_SCRIPT)
  await writeFile(divide, 'SELECT 1 / 0;\n')
  await writeFile(broken, 'SELEC 1;\n')
  const bench = (mode: string, file: string, transactions: number) => async (port: string) =>
    pg.pgbench(['-p', port, '-n', '-t', String(transactions), '-M', mode, '-f', file])
  return [
    { name: 'psql', command: 'psql -f <PSQL_SCRIPT>', run: (port) => pg.psql(['-p', port], { input: PSQL_SCRIPT }) },
    { name: 'pgbench-prepared', command: 'pgbench -M prepared -t 3 -f <PGBENCH_SCRIPT>', run: bench('prepared', script, 3) },
    { name: 'pgbench-extended', command: 'pgbench -M extended -t 2 -f <PGBENCH_SCRIPT>', run: bench('extended', script, 2) },
    { name: 'pgbench-simple', command: 'pgbench -M simple -t 2 -f <PGBENCH_SCRIPT>', run: bench('simple', script, 2) },
    { name: 'pgbench-prepared-syntax-error', command: 'pgbench -M prepared -t 1 -f <SELEC 1;>', run: bench('prepared', broken, 1) },
    { name: 'pgbench-prepared-pipeline', command: 'pgbench -M prepared -t 2 -f <PGBENCH_PIPELINE_SCRIPT>', run: bench('prepared', pipeline, 2) },
    { name: 'pgbench-extended-division-by-zero', command: 'pgbench -M extended -t 1 -f <SELECT 1 / 0;>', run: bench('extended', divide, 1) },
  ]
}

async function main(only: string[]): Promise<void> {
  const path = fileURLToPath(new URL('./postgres-captures.json', import.meta.url))
  const kept: CapturedSession[] = only.length === 0 ? [] : (JSON.parse(await readFile(path, 'utf8')) as CapturedSession[]).filter((s) => !only.includes(s.name))
  const pg = await startPostgres({ password: 'capture-password' })
  const dir = await mkdtemp(join(tmpdir(), 'periscope-pg-capture-'))
  const proxy = await recordingProxy(pg.port)
  const out: CapturedSession[] = []
  try {
    await pg.pgbench(['-i', '-s', '1', '-q'])
    for (const session of (await sessions(pg, dir)).filter((s) => only.length === 0 || only.includes(s.name))) {
      await session.run(String(proxy.port))
      const connections = await proxy.take()
      // pgbench opens one connection per client plus none other with -n; psql one
      for (const records of connections) out.push({ name: session.name, command: session.command, records })
    }
  } finally {
    await proxy.close()
    await pg.stop()
    await rm(dir, { recursive: true, force: true })
  }
  await writeFile(path, JSON.stringify([...kept, ...out], null, 1) + '\n')
  console.log(`wrote ${out.length} sessions (and kept ${kept.length}) to ${path}`)
}

if (import.meta.main) await main(process.argv.slice(2))
