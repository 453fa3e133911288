/**
 * Debian's PostgreSQL 15 for end-to-end tests and benchmarks: a cluster made by `initdb` as the
 * unprivileged `postgres` user in a temporary directory, the server started as that user on a free
 * 127.0.0.1 port (its unix socket in the same directory), TCP connections authenticated with
 * scram-sha-256, and with `tls` an `ssl=on` listener whose self-signed certificate openssl makes here.
 *
 *   const pg = await startPostgres({ tls: true })
 *   t.after(() => pg.stop())
 *   await pg.psql(['-c', 'SELECT 1'])              // over TCP, with the password, no TLS
 *   await pg.pgbench(['-t', '10', '-M', 'prepared', '-f', script])
 *
 * Readiness: `pg_isready` against the TCP port, polled. `stop()` stops the server (fast shutdown,
 * SIGKILL after 20 s) and removes the directory.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { chmod, chown, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { freePort } from './otelcol.ts'
import { pollUntil } from './poll.ts'

const run = promisify(execFile)

export const POSTGRES_BIN = '/usr/lib/postgresql/15/bin'
/** The test cluster's superuser (TCP logins use its password) and its database. */
export const POSTGRES_USER = 'periscope'
export const POSTGRES_DATABASE = 'periscope_test'

export interface PostgresOptions {
  /** `ssl=on` with a self-signed certificate; clients choose with sslmode. Default false. */
  tls?: boolean
  /** The superuser's password; default a random one. */
  password?: string
  /** `max_connections`; default 100 (PostgreSQL's own). */
  maxConnections?: number
  /**
   * A second login role authenticated with `password` (cleartext on the wire, unlike scram), to
   * prove a traced password message is never exported.
   */
  cleartextUser?: { name: string; password: string }
}

export interface ClientResult {
  stdout: string
  stderr: string
  /** 0 on success; psql's and pgbench's exit status otherwise. */
  code: number
  /** The client process's pid (its spans carry it as process.pid). */
  pid: number
}

export interface PostgresServer {
  readonly port: number
  readonly host: '127.0.0.1'
  readonly password: string
  readonly database: string
  readonly user: string
  /** The cluster directory (data, socket, certificate). */
  readonly dir: string
  /** The postmaster's pid. */
  readonly pid: number
  /** `postgresql://user:password@127.0.0.1:port/database?sslmode=...`. */
  url(options?: { sslmode?: 'disable' | 'require'; database?: string }): string
  /** Runs psql over TCP (sslmode disable unless given) with `args`; ON_ERROR_STOP is not set. */
  psql(args: string[], options?: { sslmode?: 'disable' | 'require'; input?: string; database?: string; user?: { name: string; password: string } }): Promise<ClientResult>
  /** Runs pgbench over TCP against the test database with `args`. */
  pgbench(args: string[], options?: { sslmode?: 'disable' | 'require' }): Promise<ClientResult>
  /** The server's log so far (for failure messages). */
  log(): string
  stop(): Promise<void>
}

/** Runs `command` as the postgres user (the server refuses to run as root). */
function asPostgres(command: string, args: string[], options: { cwd?: string } = {}): Promise<{ stdout: string; stderr: string }> {
  return run('runuser', ['-u', 'postgres', '--', command, ...args], { cwd: options.cwd ?? '/', maxBuffer: 16 * 1024 * 1024 }).catch((error: Error & { stderr?: string; stdout?: string }) => {
    throw new Error(`${command} ${args.join(' ')} as user postgres failed: ${error.message}\n${error.stdout ?? ''}${error.stderr ?? ''}`)
  })
}

export async function startPostgres(options: PostgresOptions = {}): Promise<PostgresServer> {
  const dir = await mkdtemp(join(tmpdir(), 'periscope-postgres-'))
  // the postgres user owns the cluster; the directory must be reachable by it
  await chmod(dir, 0o755)
  const { uid, gid } = await postgresIds()
  await chown(dir, uid, gid)
  const data = join(dir, 'data')
  const password = options.password ?? `pw-${Math.random().toString(36).slice(2, 12)}`
  const passwordFile = join(dir, 'password')
  await writeFile(passwordFile, password + '\n', { mode: 0o600 })
  await chown(passwordFile, uid, gid)
  let server: ChildProcess | undefined
  let log = ''
  const stop = async (): Promise<void> => {
    const child = server
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve))
      // SIGINT: fast shutdown (clients disconnected, no checkpoint wait)
      child.kill('SIGINT')
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
      await exited
      clearTimeout(timer)
    }
    await rm(dir, { recursive: true, force: true })
  }
  try {
    await asPostgres(join(POSTGRES_BIN, 'initdb'), ['-D', data, '-U', POSTGRES_USER, '--pwfile', passwordFile, '-A', 'scram-sha-256', '--auth-local=trust', '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync'])
    const port = await freePort()
    const settings = [
      `port = ${port}`,
      `listen_addresses = '127.0.0.1'`,
      `unix_socket_directories = '${dir}'`,
      `max_connections = ${options.maxConnections ?? 100}`,
      `fsync = off`,
      `synchronous_commit = off`,
      `full_page_writes = off`,
      `logging_collector = off`,
      `log_min_messages = warning`,
    ]
    if (options.tls === true) {
      await asPostgres('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
        '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', join(data, 'server.key'), '-out', join(data, 'server.crt')])
      await chmod(join(data, 'server.key'), 0o600)
      settings.push(`ssl = on`, `ssl_cert_file = 'server.crt'`, `ssl_key_file = 'server.key'`)
    }
    await writeFile(join(data, 'postgresql.auto.conf'), settings.join('\n') + '\n')
    await chown(join(data, 'postgresql.auto.conf'), uid, gid)
    const cleartext = options.cleartextUser
    const hba = [
      'local all all trust',
      ...cleartext === undefined ? [] : [`host all ${cleartext.name} 127.0.0.1/32 password`],
      'host all all 127.0.0.1/32 scram-sha-256',
    ]
    await writeFile(join(data, 'pg_hba.conf'), hba.join('\n') + '\n')
    await chown(join(data, 'pg_hba.conf'), uid, gid)
    // started directly with the postgres user's ids, so signals reach the postmaster itself
    const child = spawn(join(POSTGRES_BIN, 'postgres'), ['-D', data], { cwd: '/', uid, gid, env: { PATH: process.env.PATH, LANG: 'C.UTF-8' }, stdio: ['ignore', 'pipe', 'pipe'] })
    server = child
    child.stdout!.on('data', (d: Buffer) => (log += d.toString()))
    child.stderr!.on('data', (d: Buffer) => (log += d.toString()))
    await waitReady(port, child, () => log)
    const base = { host: '127.0.0.1' as const, port, password, user: POSTGRES_USER, database: POSTGRES_DATABASE, dir }
    const env = (sslmode: string, user = { name: POSTGRES_USER, password }): NodeJS.ProcessEnv =>
      ({ ...process.env, PGPASSWORD: user.password, PGSSLMODE: sslmode, PGHOST: '127.0.0.1', PGPORT: String(port), PGUSER: user.name, PGCONNECT_TIMEOUT: '20' })
    // the test database, made over the unix socket (trust) so no traced TCP traffic comes of it
    const overSocket = (sql: string) => asPostgres(join(POSTGRES_BIN, 'psql'), ['-h', dir, '-p', String(port), '-U', POSTGRES_USER, '-d', 'postgres', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-c', sql])
    await overSocket(`CREATE DATABASE ${POSTGRES_DATABASE}`)
    if (cleartext !== undefined) {
      await overSocket(`CREATE ROLE ${cleartext.name} LOGIN PASSWORD '${cleartext.password.replaceAll("'", "''")}'`)
      await overSocket(`GRANT ALL ON DATABASE ${POSTGRES_DATABASE} TO ${cleartext.name}`)
    }
    return {
      ...base,
      pid: child.pid!,
      url: (o = {}) => `postgresql://${POSTGRES_USER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${o.database ?? POSTGRES_DATABASE}?sslmode=${o.sslmode ?? 'disable'}`,
      psql: (args, o = {}) => client(join(POSTGRES_BIN, 'psql'), ['-X', '-d', o.database ?? POSTGRES_DATABASE, ...args], env(o.sslmode ?? 'disable', o.user), o.input),
      pgbench: (args, o = {}) => client(join(POSTGRES_BIN, 'pgbench'), [...args, POSTGRES_DATABASE], env(o.sslmode ?? 'disable')),
      log: () => log,
      stop,
    }
  } catch (error) {
    await stop()
    throw error
  }
}

async function postgresIds(): Promise<{ uid: number; gid: number }> {
  const { stdout } = await run('id', ['-u', 'postgres']).catch(() => {
    throw new Error('there is no postgres user: install PostgreSQL with `scripts/setup.sh --test` (Debian package postgresql)')
  })
  const { stdout: group } = await run('id', ['-g', 'postgres'])
  return { uid: Number(stdout.trim()), gid: Number(group.trim()) }
}

async function waitReady(port: number, child: ChildProcess, log: () => string): Promise<void> {
  await pollUntil(() => run(join(POSTGRES_BIN, 'pg_isready'), ['-h', '127.0.0.1', '-p', String(port), '-t', '2']).then(() => true, () => false), {
    what: `postgres to accept connections on 127.0.0.1:${port}`,
    timeoutMs: 60_000,
    intervalMs: 100,
    failed: () => (child.exitCode !== null || child.signalCode !== null ? `postgres exited during start-up (${child.exitCode ?? child.signalCode})` : undefined),
    details: log,
  })
}

/** Runs a client to its end; resolves with its output, exit code and pid (never rejects on a non-zero exit). */
function client(binary: string, args: string[], env: NodeJS.ProcessEnv, input?: string): Promise<ClientResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, { env, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
    child.once('error', (error) => reject(new Error(`${binary} could not start: ${error.message}`)))
    child.once('close', (code, signal) => resolve({ stdout, stderr, code: code ?? (signal === null ? -1 : 128), pid: child.pid! }))
    if (input !== undefined) child.stdin!.end(input)
  })
}
