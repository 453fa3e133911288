/**
 * A Go gRPC peer for end-to-end tests and benchmarks: the program of ./grpc-go (grpc-go's own
 * helloworld and routeguide example services), built once with the machine's Go and cached under
 * ~/.cache/periscope-peers/grpc-go-<hash of its sources> (PERISCOPE_PEERS_DIR), as a normal binary
 * and a stripped one (`-ldflags=-s -w`: no .symtab, only .gopclntab names the functions). The
 * modules come from the Go module proxy on a cold cache (go.sum pins them) into Go's module cache.
 *
 *   const server = await startGrpcGoServer({ tls: true })
 *   t.after(() => server.stop())
 *   const run = await runGrpcGoClient(server, 'unary')   // run.pid, run.rpcs: one per RPC it made
 *   const load = await runGrpcGoLoad(server, { connections: 2, concurrency: 32, durationMs: 5000 })
 *
 * The server listens on 127.0.0.1:0 and prints the address it bound; it is ready once it has (the
 * listener queues connections from then on). The client runs a scenario on ONE connection (it
 * fails if it dialed twice) and prints one JSON line per RPC: the test compares Periscope's spans
 * with what the client did. See ./grpc-go/server.go for the outcomes the server offers and
 * ./grpc-go/client.go for the scenarios.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { mkdir, mkdtemp, rename, rm } from 'node:fs/promises'
import { homedir, tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { makeCertificate } from './nginx.ts'
import { pollUntil } from './poll.ts'

const SOURCES = fileURLToPath(new URL('./grpc-go/', import.meta.url))
const exec = promisify(execFile)

/** The scenarios of ./grpc-go/client.go. */
export type GrpcGoScenario =
  /** SayHello: OK, NOT_FOUND, INTERNAL, a plain Go error (UNKNOWN), DEADLINE_EXCEEDED from the handler, a slow handler past the client's 200 ms deadline; then GetFeature. */
  | 'unary'
  /** ListFeatures (5 replies 50 ms apart), RecordRoute (5 points 50 ms apart), RouteChat (5 notes 50 ms apart, each echoed). */
  | 'streams'
  /** 100 SayHello released together, each answered after 50 ms. */
  | 'concurrent'

/** What ./grpc-go/client.go's scenarios are made of, for expectations. */
export const GRPC_GO_SCENARIO = {
  streamMessages: 5,
  streamIntervalMs: 50,
  slowDeadlineMs: 200,
  concurrentCalls: 100,
} as const

/** One RPC as the client saw it (a JSON line of the client). */
export interface GrpcGoRpc {
  /** Full method name, `/helloworld.Greeter/SayHello`. */
  method: string
  /** The SayHello name (which chose the outcome), or the RouteGuide method's name. */
  request: string
  /** The gRPC status code the client got: 4 also when its own deadline expired. */
  code: number
  status: string
  /** Wall-clock ns: before the call was made, and when the client had its status. */
  startUnixNs: bigint
  endUnixNs: bigint
  /** Messages the client sent and received on the call. */
  sent: number
  received: number
  /** The client's end of the one connection, `127.0.0.1:<port>`. */
  local: string
}

export interface GrpcGoClientRun {
  /** The client process: its spans carry this `process.pid`. */
  pid: number
  rpcs: GrpcGoRpc[]
  stderr: string
}

export interface GrpcGoLoad {
  pid: number
  calls: number
  seconds: number
  callsPerSecond: number
  p50Ms: number
  p99Ms: number
  /** The load client's CPU (user + system): tracing's kernel side runs in its syscalls. */
  cpuSeconds: number
}

export interface GrpcGoServer {
  /** `127.0.0.1:<port>` */
  readonly address: string
  readonly port: number
  readonly pid: number
  /** The binary the server (and its clients) run: the stripped one with `stripped`. */
  readonly binary: string
  /** With `tls`: the self-signed certificate the server presents; clients trust it. */
  readonly certPath?: string
  /** The server's stdout and stderr, for failure messages. */
  output(): string
  /** SIGTERM (SIGKILL after 10 s), waits for the exit, removes the certificate directory. */
  stop(): Promise<void>
}

export interface GrpcGoBinaries {
  binary: string
  /** Built with `-ldflags=-s -w`: no symbol table, no DWARF. */
  stripped: string
}

function cacheRoot(): string {
  return process.env.PERISCOPE_PEERS_DIR ?? join(homedir(), '.cache/periscope-peers')
}

/** Go from PATH, else where the official tarball puts it. */
function goEnv(): NodeJS.ProcessEnv {
  const path = [process.env.PATH ?? '', '/usr/local/go/bin'].filter((p) => p !== '').join(delimiter)
  // go.sum pins every module: a build must not change go.mod or go.sum
  return { ...process.env, PATH: path, GOFLAGS: '-mod=readonly' }
}

/** A hash of the peer's sources and the Go version: a change to either builds a new cache entry. */
async function sourceHash(): Promise<string> {
  let version: string
  try {
    version = (await exec('go', ['env', 'GOVERSION'], { env: goEnv() })).stdout.trim()
  } catch (error) {
    throw new Error(`running go failed: ${(error as Error).message}. The Go gRPC peer needs Go 1.26+ (https://go.dev/dl, or scripts/setup.sh --test)`)
  }
  const hash = createHash('sha256').update(version)
  for (const name of readdirSync(SOURCES).filter((n) => n.endsWith('.go') || n === 'go.mod' || n === 'go.sum').sort()) {
    hash.update(`\0${name}\0`).update(readFileSync(join(SOURCES, name)))
  }
  return hash.digest('hex').slice(0, 16)
}

let binaries: Promise<GrpcGoBinaries> | undefined

/**
 * The peer's two binaries, built on a cold cache (a minute or so, the modules fetched from the Go
 * module proxy the first time). A build that fails leaves nothing behind: the binaries land in a
 * scratch directory renamed into place only when both are built.
 */
export function grpcGoBinaries(): Promise<GrpcGoBinaries> {
  binaries ??= (async () => {
    const dir = join(cacheRoot(), `grpc-go-${await sourceHash()}`)
    const built = { binary: join(dir, 'grpc-peer'), stripped: join(dir, 'grpc-peer-stripped') }
    if (existsSync(built.binary) && existsSync(built.stripped)) return built
    await mkdir(cacheRoot(), { recursive: true })
    const scratch = await mkdtemp(join(cacheRoot(), 'grpc-go-build-'))
    process.stderr.write(`building the Go gRPC peer (test/peers/grpc-go) into ${dir} (once; the first build fetches grpc-go from the Go module proxy)\n`)
    try {
      for (const [name, flags] of [['grpc-peer', []], ['grpc-peer-stripped', ['-ldflags=-s -w']]] as const) {
        await exec('go', ['build', '-trimpath', '-buildvcs=false', ...flags, '-o', join(scratch, name), '.'],
          { cwd: SOURCES, env: goEnv(), maxBuffer: 16 * 1024 * 1024, timeout: 20 * 60_000 })
      }
      // a build of another test process may have landed first: its binaries are the same
      await rename(scratch, dir).catch((error: NodeJS.ErrnoException) => {
        if (!(error.code === 'ENOTEMPTY' || error.code === 'EEXIST') || !existsSync(built.binary) || !existsSync(built.stripped)) throw error
      })
    } catch (error) {
      const { message, stderr } = error as Error & { stderr?: string }
      throw new Error(`building the Go gRPC peer failed (go build in ${SOURCES}; it needs Go 1.26+ and the Go module proxy on a cold module cache): ${message}\n${stderr?.slice(-4000) ?? ''}`)
    } finally {
      await rm(scratch, { recursive: true, force: true })
    }
    return built
  })()
  binaries.catch(() => (binaries = undefined))
  return binaries
}

/** Starts the server on a free 127.0.0.1 port, plaintext HTTP/2 (h2c) or TLS with a self-signed certificate. */
export async function startGrpcGoServer(options: { tls?: boolean; stripped?: boolean } = {}): Promise<GrpcGoServer> {
  const built = await grpcGoBinaries()
  const binary = options.stripped === true ? built.stripped : built.binary
  const dir = await mkdtemp(join(tmpdir(), 'periscope-grpc-go-'))
  const args = ['-mode', 'server', '-listen', '127.0.0.1:0']
  let certPath: string | undefined
  if (options.tls === true) {
    const certificate = await makeCertificate(dir)
    certPath = certificate.certPath
    args.push('-tls', `${certificate.certPath},${certificate.keyPath}`)
  }
  const child: ChildProcess = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const output = (): string => `grpc-peer server stdout:\n${stdout.slice(-2000)}\nstderr:\n${stderr.slice(-3000)}`
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
      await exited
      clearTimeout(timer)
    }
    await rm(dir, { recursive: true, force: true })
  }
  let address = ''
  try {
    await pollUntil(() => (address = /^(127\.0\.0\.1:\d+)$/m.exec(stdout)?.[1] ?? '') !== '', {
      what: `the Go gRPC server (${binary}) to print the address it listens on`,
      timeoutMs: 20_000,
      failed: () => (child.exitCode !== null || child.signalCode !== null ? `the server exited (${child.exitCode ?? child.signalCode})` : undefined),
      details: output,
    })
  } catch (error) {
    await stop()
    throw error
  }
  return { address, port: Number(address.split(':')[1]), pid: child.pid!, binary, certPath, output, stop }
}

interface Exited { pid: number; code: number | null; stdout: string; stderr: string }

function runPeer(binary: string, args: string[], timeoutMs: number): Promise<Exited> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.once('error', (error) => reject(new Error(`running ${binary} failed: ${error.message}`)))
    child.once('close', (code) => {
      clearTimeout(timer)
      resolve({ pid: child.pid!, code, stdout, stderr })
    })
  })
}

function clientArgs(server: GrpcGoServer, mode: string): string[] {
  return ['-mode', mode, '-target', server.address, ...(server.certPath === undefined ? [] : ['-ca', server.certPath])]
}

/** Runs a client scenario against `server` (same binary, over TLS when the server is); rejects when the client fails. */
export async function runGrpcGoClient(server: GrpcGoServer, scenario: GrpcGoScenario): Promise<GrpcGoClientRun> {
  const run = await runPeer(server.binary, [...clientArgs(server, 'client'), '-scenario', scenario], 120_000)
  if (run.code !== 0) throw new Error(`the Go gRPC client (${scenario}) exited with ${run.code}:\n${run.stderr.slice(-3000)}\n${run.stdout.slice(-2000)}\n${server.output()}`)
  const rpcs = run.stdout.trim().split('\n').map((line): GrpcGoRpc => {
    const raw = JSON.parse(line) as Omit<GrpcGoRpc, 'startUnixNs' | 'endUnixNs'> & { startUnixNs: string; endUnixNs: string }
    return { ...raw, startUnixNs: BigInt(raw.startUnixNs), endUnixNs: BigInt(raw.endUnixNs) }
  })
  return { pid: run.pid, rpcs, stderr: run.stderr }
}

/** Unary SayHello load from `concurrency` goroutines over `connections` connections for `durationMs`. */
export async function runGrpcGoLoad(server: GrpcGoServer, options: {
  connections: number
  concurrency: number
  durationMs: number
  /** Runs it on these CPUs only (taskset's list, e.g. '0'); default: wherever the scheduler puts it. */
  cpus?: string
}): Promise<GrpcGoLoad> {
  const args = [...clientArgs(server, 'load'), '-connections', String(options.connections), '-concurrency', String(options.concurrency), '-duration', `${options.durationMs}ms`]
  // taskset execs the binary: the pid stays the load client's
  const run = options.cpus === undefined
    ? await runPeer(server.binary, args, options.durationMs + 60_000)
    : await runPeer('taskset', ['-c', options.cpus, server.binary, ...args], options.durationMs + 60_000)
  if (run.code !== 0) throw new Error(`the Go gRPC load client exited with ${run.code}:\n${run.stderr.slice(-3000)}\n${server.output()}`)
  return { pid: run.pid, ...(JSON.parse(run.stdout) as Omit<GrpcGoLoad, 'pid'>) }
}
