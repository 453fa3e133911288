/**
 * Debian's MariaDB server for end-to-end tests: a data directory made by `mariadb-install-db` in a
 * temporary directory, `mariadbd` started on a free 127.0.0.1 port with its unix socket, pid file
 * and error log in that directory (it drops to the `mysql` user itself), a database and a user
 * with a password for TCP logins, made as root over the unix socket. With `tls`, the server also
 * offers TLS with a self-signed certificate openssl makes here (clients choose with --ssl).
 *
 *   const db = await startMariadb({ databases: ['shop', 'other'] })
 *   t.after(() => db.stop())
 *   await db.sql('CREATE TABLE shop.items (id INT PRIMARY KEY)')   // root, unix socket
 *   const run = await db.mariadb(['-e', 'SELECT 1'])               // the app user, over TCP
 *
 * The password reaches the clients through MYSQL_PWD, never their command line. Readiness:
 * `mariadb-admin ping` over the socket, polled. `stop()` shuts the server down (SIGTERM, SIGKILL
 * after 30 s) and removes the directory.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { chmod, chown, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { freePort } from './otelcol.ts'
import { pollUntil } from './poll.ts'

const run = promisify(execFile)

export const MARIADB_SERVER = '/usr/sbin/mariadbd'
export const MARIADB_CLIENT = '/usr/bin/mariadb'
/** The login the TCP clients use, and its database. */
export const MARIADB_USER = 'periscope'
export const MARIADB_DATABASE = 'periscope_test'

export interface MariadbOptions {
  /** The app user's password; default a random one. */
  password?: string
  /** Databases made besides MARIADB_DATABASE; the app user gets every privilege on all of them. */
  databases?: string[]
  /** Offer TLS (a self-signed certificate for 127.0.0.1); default false. */
  tls?: boolean
}

export interface ClientResult {
  stdout: string
  stderr: string
  /** 0 on success; the client's exit status otherwise. */
  code: number
  /** The client process's pid (its spans carry it as process.pid). */
  pid: number
}

export interface MariadbServer {
  readonly host: '127.0.0.1'
  readonly port: number
  readonly user: string
  readonly password: string
  readonly database: string
  /** The directory of the data, socket, pid file and error log. */
  readonly dir: string
  readonly socket: string
  /** mariadbd's pid. */
  readonly pid: number
  /**
   * Runs the `mariadb` client as the app user over TCP (`--protocol=TCP -h 127.0.0.1 -P port`),
   * in batch mode, with `args` after the connection options; `database` (default
   * MARIADB_DATABASE, null for none) is passed as `-D`. Never rejects on a non-zero exit.
   */
  mariadb(args: string[], options?: { input?: string; database?: string | null; env?: NodeJS.ProcessEnv }): Promise<ClientResult>
  /** Runs statements as root over the unix socket, for setting up; rejects on an error. */
  sql(statements: string): Promise<string>
  /** The error log so far, for failure messages. */
  log(): string
  stop(): Promise<void>
}

export async function startMariadb(options: MariadbOptions = {}): Promise<MariadbServer> {
  for (const binary of [MARIADB_SERVER, MARIADB_CLIENT, '/usr/bin/mariadb-install-db', '/usr/bin/mariadb-admin']) {
    if (!existsSync(binary)) throw new Error(`${binary} is missing; install Debian's MariaDB with: scripts/setup.sh --test (or apt-get install -y mariadb-server mariadb-client)`)
  }
  const dir = await mkdtemp(join(tmpdir(), 'periscope-mariadb-'))
  // mariadbd runs as mysql: it must reach the directory and own the data
  await chmod(dir, 0o755)
  const { uid, gid } = await mysqlIds()
  await chown(dir, uid, gid)
  const data = join(dir, 'data')
  const socket = join(dir, 'mariadbd.sock')
  const errorLog = join(dir, 'error.log')
  const password = options.password ?? `pw-${Math.random().toString(36).slice(2, 12)}`
  let server: ChildProcess | undefined
  let output = ''
  const log = (): string => {
    let text = ''
    try {
      text = readFileSync(errorLog, 'utf8')
    } catch {}
    return `mariadbd error log (${errorLog}):\n${text.slice(-3000)}${output === '' ? '' : `\nmariadbd output:\n${output.slice(-2000)}`}`
  }
  const stop = async (): Promise<void> => {
    const child = server
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
      await exited
      clearTimeout(timer)
    }
    await rm(dir, { recursive: true, force: true })
  }
  try {
    await run('mariadb-install-db', ['--no-defaults', '--user=mysql', `--datadir=${data}`, '--auth-root-authentication-method=socket', '--skip-test-db'], { maxBuffer: 16 * 1024 * 1024 })
      .catch((error: Error & { stdout?: string; stderr?: string }) => {
        throw new Error(`mariadb-install-db --datadir=${data} failed: ${error.message}\n${error.stdout ?? ''}${error.stderr ?? ''}`)
      })
    const port = await freePort()
    const tls = options.tls === true ? await makeCertificate(dir, uid, gid) : []
    const child = spawn(MARIADB_SERVER, [
      '--no-defaults', '--user=mysql', `--datadir=${data}`, `--socket=${socket}`, `--pid-file=${join(dir, 'mariadbd.pid')}`,
      `--log-error=${errorLog}`, `--port=${port}`, '--bind-address=127.0.0.1', '--skip-name-resolve', '--innodb-buffer-pool-size=64M',
      '--innodb-flush-log-at-trx-commit=0', '--max-allowed-packet=64M', ...tls,
    ], { cwd: '/', env: { PATH: process.env.PATH }, stdio: ['ignore', 'pipe', 'pipe'] })
    server = child
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()))
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()))
    await waitReady(socket, child, log)
    const sql = async (statements: string): Promise<string> => {
      const { stdout } = await run(MARIADB_CLIENT, ['--no-defaults', '-S', socket, '-u', 'root', '--batch', '-e', statements], { maxBuffer: 64 * 1024 * 1024 })
        .catch((error: Error & { stderr?: string }) => {
          throw new Error(`mariadb (root, socket) failed on: ${statements.slice(0, 300)}\n${error.message}\n${error.stderr ?? ''}`)
        })
      return stdout
    }
    const databases = [MARIADB_DATABASE, ...options.databases ?? []]
    const quoted = password.replaceAll('\\', '\\\\').replaceAll("'", "\\'")
    await sql([
      ...databases.map((name) => `CREATE DATABASE \`${name}\``),
      `CREATE USER '${MARIADB_USER}'@'127.0.0.1' IDENTIFIED BY '${quoted}'`,
      ...databases.map((name) => `GRANT ALL ON \`${name}\`.* TO '${MARIADB_USER}'@'127.0.0.1'`),
    ].join(';\n'))
    return {
      host: '127.0.0.1',
      port,
      user: MARIADB_USER,
      password,
      database: MARIADB_DATABASE,
      dir,
      socket,
      pid: child.pid!,
      mariadb: (args, o = {}) => {
        const database = o.database === undefined ? MARIADB_DATABASE : o.database
        const connection = ['--no-defaults', '--protocol=TCP', '-h', '127.0.0.1', '-P', String(port), '-u', MARIADB_USER, '--batch', ...database === null ? [] : ['-D', database]]
        return client(MARIADB_CLIENT, [...connection, ...args], { ...process.env, ...o.env, MYSQL_PWD: password }, o.input)
      },
      sql,
      log,
      stop,
    }
  } catch (error) {
    await stop()
    throw error
  }
}

/** A self-signed certificate the mysql user can read; the server options that use it. */
async function makeCertificate(dir: string, uid: number, gid: number): Promise<string[]> {
  const certPath = join(dir, 'cert.pem')
  const keyPath = join(dir, 'key.pem')
  await run('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', keyPath, '-out', certPath,
  ]).catch((error: Error) => {
    throw new Error(`making a self-signed certificate with openssl failed: ${error.message}. Install openssl (scripts/setup.sh --test)`)
  })
  for (const file of [certPath, keyPath]) await chown(file, uid, gid)
  await chmod(keyPath, 0o600)
  return [`--ssl-cert=${certPath}`, `--ssl-key=${keyPath}`]
}

async function mysqlIds(): Promise<{ uid: number; gid: number }> {
  const { stdout } = await run('id', ['-u', 'mysql']).catch(() => {
    throw new Error('there is no mysql user: install MariaDB with `scripts/setup.sh --test` (Debian package mariadb-server)')
  })
  const { stdout: group } = await run('id', ['-g', 'mysql'])
  return { uid: Number(stdout.trim()), gid: Number(group.trim()) }
}

async function waitReady(socket: string, child: ChildProcess, log: () => string): Promise<void> {
  await pollUntil(() => run('mariadb-admin', ['--no-defaults', '-S', socket, '-u', 'root', '--connect-timeout=2', 'ping']).then(() => true, () => false), {
    what: `mariadbd to answer on ${socket}`,
    timeoutMs: 60_000,
    intervalMs: 100,
    failed: () => (child.exitCode !== null || child.signalCode !== null ? `mariadbd exited during start-up (${child.exitCode ?? child.signalCode})` : undefined),
    details: log,
  })
}

/** Runs a client to its end; resolves with its output, exit code and pid (never rejects on a non-zero exit). */
export function client(binary: string, args: string[], env: NodeJS.ProcessEnv, input?: string): Promise<ClientResult> {
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
