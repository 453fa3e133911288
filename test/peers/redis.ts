/**
 * Debian's redis-server for end-to-end tests and benchmarks: started as a child process on a free
 * 127.0.0.1 port with its own temporary directory, no persistence (no RDB snapshots, no AOF), and
 * optionally a password (`requirepass`) or TLS only (a self-signed certificate made here by
 * openssl). Ready once it answers PING; `stop()` ends it and removes the directory. `cli` and
 * `benchmark` run Debian's redis-cli and redis-benchmark against it (over TLS with `tls`).
 *
 *   const redis = await startRedis({ password: 'hunter2' })
 *   t.after(() => redis.stop())
 *   const run = await redis.cli(['SET', 'k', 'v'])          // run.pid, run.stdout
 *   const bench = await redis.benchmark({ tests: ['set'], requests: 10_000, pipeline: 16 })
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { connect } from 'node:net'
import { connect as connectTls } from 'node:tls'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { freePort } from './otelcol.ts'
import { pollUntil } from './poll.ts'

export const REDIS_SERVER = '/usr/bin/redis-server'
export const REDIS_CLI = '/usr/bin/redis-cli'
export const REDIS_BENCHMARK = '/usr/bin/redis-benchmark'

export interface RedisOptions {
  /** `requirepass`: every connection must AUTH first. */
  password?: string
  /** Listen for TLS only (`tls-port`, no plain port), with a self-signed certificate for 127.0.0.1; clients need no certificate. */
  tls?: boolean
}

export interface ClientRun {
  /** The client process: its spans carry this `process.pid`. */
  pid: number
  code: number | null
  stdout: string
  stderr: string
}

export interface BenchmarkOptions {
  /** `-t`: e.g. ['set'], ['set', 'get']. */
  tests: string[]
  /** `-n`: requests of each test, in all. */
  requests: number
  /** `-c`: parallel connections (default 50, redis-benchmark's own). */
  clients?: number
  /** `-P`: commands sent per round trip (default 1). */
  pipeline?: number
  /** `-r`: keys are `key:<0..keyspace-1>` instead of one `key:__rand_int__` (default: no -r). */
  keyspace?: number
  /** `-d`: bytes of each SET value (default 3, redis-benchmark's own). */
  dataSize?: number
  /** `--threads` (default: none, one thread). */
  threads?: number
  /** Runs it on these CPUs only (taskset's list, e.g. '0'); default: wherever the scheduler puts it. */
  cpus?: string
}

export interface BenchmarkRow {
  /** As redis-benchmark names it: `SET`, `GET`. */
  test: string
  requestsPerSecond: number
  latencyMs: { avg: number; min: number; p50: number; p95: number; p99: number; max: number }
}

export interface BenchmarkRun extends ClientRun {
  rows: BenchmarkRow[]
}

export interface Redis {
  readonly port: number
  readonly pid: number
  readonly dir: string
  readonly password?: string
  /** With `tls`: the certificate (PEM) the server presents; redis-cli --cacert accepts it. */
  readonly certPath?: string
  /** Runs redis-cli with these arguments (the password, if any, from REDISCLI_AUTH, so it is not in argv); `input` goes to its stdin. */
  cli(args: string[], options?: { input?: string | Buffer; auth?: boolean }): Promise<ClientRun>
  /** Runs redis-benchmark --csv and parses its rows; rejects when it fails. */
  benchmark(options: BenchmarkOptions): Promise<BenchmarkRun>
  /** redis-server's log, for failure messages. */
  log(): string
  /** SIGTERM (SIGKILL after 10 s), waits for the exit, removes the directory. */
  stop(): Promise<void>
}

/** Sends PING (after AUTH with a password) on a fresh connection; true when the server answered PONG. */
function ping(port: number, password: string | undefined, tls: boolean): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tls ? connectTls({ port, host: '127.0.0.1', rejectUnauthorized: false }) : connect(port, '127.0.0.1')
    let reply = ''
    const done = (ok: boolean): void => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(2000, () => done(false))
    socket.once('error', () => done(false))
    socket.once(tls ? 'secureConnect' : 'connect', () => {
      const auth = password === undefined ? '' : resp(['AUTH', password])
      socket.write(auth + resp(['PING']))
    })
    socket.on('data', (chunk: Buffer) => {
      reply += chunk.toString('latin1')
      if (reply.includes('+PONG\r\n')) done(true)
      else if (reply.includes('-')) done(false)
    })
  })
}

/** A command as a RESP array of bulk strings. */
export function resp(args: (string | Buffer)[]): string {
  let out = `*${args.length}\r\n`
  for (const arg of args) out += `$${Buffer.byteLength(arg)}\r\n${Buffer.isBuffer(arg) ? arg.toString('latin1') : arg}\r\n`
  return out
}

function run(binary: string, args: string[], env: Record<string, string>, input?: string | Buffer): Promise<ClientRun> {
  return new Promise((resolve, reject) => {
    // without input, stdin is /dev/null: a pipe's end('') could meet a client already gone (EPIPE)
    const child = spawn(binary, args, { env: { ...process.env, ...env }, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    child.once('error', (error) => reject(new Error(`running ${binary} failed: ${error.message}`)))
    child.once('close', (code) => resolve({ pid: child.pid!, code, stdout, stderr }))
    if (input !== undefined) {
      // a client that exits before reading all its input answers with its exit code, not EPIPE here
      child.stdin!.once('error', (error: NodeJS.ErrnoException) => { if (error.code !== 'EPIPE') reject(error) })
      child.stdin!.end(input)
    }
  })
}

/** Rows of redis-benchmark --csv: a header line, then `"SET","123.45","0.2",...` per test. */
export function parseBenchmarkCsv(text: string): BenchmarkRow[] {
  const lines = text.split('\n').map((line) => line.trim()).filter((line) => line.startsWith('"'))
  const header = lines.shift()
  if (header !== '"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"') {
    throw new Error(`redis-benchmark --csv printed an unexpected header (Debian 12's redis-benchmark 7.0 was expected): ${JSON.stringify(header)}\n${text.slice(-2000)}`)
  }
  return lines.map((line) => {
    const fields = line.split(',').map((field) => field.replace(/^"|"$/g, ''))
    const number = (i: number): number => {
      const value = Number(fields[i])
      if (!Number.isFinite(value)) throw new Error(`redis-benchmark --csv field ${i + 1} is not a number in ${JSON.stringify(line)}`)
      return value
    }
    return {
      test: fields[0]!,
      requestsPerSecond: number(1),
      latencyMs: { avg: number(2), min: number(3), p50: number(4), p95: number(5), p99: number(6), max: number(7) },
    }
  })
}

/** A self-signed ECDSA P-256 certificate for 127.0.0.1 (cert.pem, key.pem in `dir`); its path. */
async function makeCertificate(dir: string): Promise<string> {
  const certPath = join(dir, 'cert.pem')
  try {
    await promisify(execFile)('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', certPath,
    ])
  } catch (error) {
    throw new Error(`making a self-signed certificate with openssl failed: ${(error as Error).message}. Install openssl (scripts/setup.sh --test)`)
  }
  return certPath
}

export async function startRedis(options: RedisOptions = {}): Promise<Redis> {
  for (const binary of [REDIS_SERVER, REDIS_CLI, REDIS_BENCHMARK]) {
    if (!existsSync(binary)) throw new Error(`${binary} is missing; install Debian's redis with: scripts/setup.sh --test (or apt-get install -y redis-server redis-tools)`)
  }
  const dir = await mkdtemp(join(tmpdir(), 'periscope-redis-'))
  const port = await freePort()
  const logPath = join(dir, 'redis.log')
  const args = [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--logfile', logPath, '--daemonize', 'no',
    // no persistence: nothing is written besides the log, and nothing forks in the background
    '--save', '', '--appendonly', 'no',
  ]
  if (options.password !== undefined) args.push('--requirepass', options.password)
  const certPath = options.tls === true ? await makeCertificate(dir) : undefined
  if (certPath !== undefined) {
    args.splice(args.indexOf('--port'), 2, '--port', '0', '--tls-port', String(port))
    args.push('--tls-cert-file', certPath, '--tls-key-file', join(dir, 'key.pem'), '--tls-ca-cert-file', certPath, '--tls-auth-clients', 'no')
  }
  const tlsArgs = certPath === undefined ? [] : ['--tls', '--cacert', certPath]
  const child: ChildProcess = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const log = (): string => {
    let text = ''
    try {
      text = readFileSync(logPath, 'utf8')
    } catch {}
    return `redis-server log (${logPath}):\n${text.slice(-3000)}${stderr === '' ? '' : `\nstderr:\n${stderr.slice(-2000)}`}`
  }
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
      await exited
      clearTimeout(timer)
    }
    await rm(dir, { recursive: true, force: true })
  }
  try {
    await pollUntil(() => ping(port, options.password, certPath !== undefined), {
      what: `redis-server on 127.0.0.1:${port} to answer PING`,
      timeoutMs: 20_000,
      failed: () => (child.exitCode !== null || child.signalCode !== null ? `redis-server exited during start-up (${child.exitCode ?? child.signalCode})` : undefined),
      details: log,
    })
  } catch (error) {
    await stop()
    throw error
  }
  const authEnv = (auth: boolean): Record<string, string> => (options.password !== undefined && auth ? { REDISCLI_AUTH: options.password } : {})
  return {
    port,
    pid: child.pid!,
    dir,
    password: options.password,
    certPath,
    cli: (cliArgs, cliOptions = {}) => run(REDIS_CLI, ['-h', '127.0.0.1', '-p', String(port), ...tlsArgs, ...cliArgs], authEnv(cliOptions.auth ?? true), cliOptions.input),
    async benchmark(bench) {
      const benchArgs = ['-h', '127.0.0.1', '-p', String(port), ...tlsArgs, '--csv', '-t', bench.tests.join(','), '-n', String(bench.requests)]
      if (bench.clients !== undefined) benchArgs.push('-c', String(bench.clients))
      if (bench.pipeline !== undefined) benchArgs.push('-P', String(bench.pipeline))
      if (bench.keyspace !== undefined) benchArgs.push('-r', String(bench.keyspace))
      if (bench.dataSize !== undefined) benchArgs.push('-d', String(bench.dataSize))
      if (bench.threads !== undefined) benchArgs.push('--threads', String(bench.threads))
      if (options.password !== undefined) benchArgs.push('-a', options.password)
      // taskset execs the binary: the pid stays redis-benchmark's
      const result = bench.cpus === undefined ? await run(REDIS_BENCHMARK, benchArgs, {}) : await run('taskset', ['-c', bench.cpus, REDIS_BENCHMARK, ...benchArgs], {})
      if (result.code !== 0) throw new Error(`redis-benchmark ${bench.tests.join(',')} exited with ${result.code}:\n${result.stderr.slice(-2000)}\n${result.stdout.slice(-2000)}\n${log()}`)
      return { ...result, rows: parseBenchmarkCsv(result.stdout) }
    },
    log,
    stop,
  }
}
