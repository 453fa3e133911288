/**
 * Node HTTP/2 peers for end-to-end tests, each its own process (so its pid is its own, apart from
 * the test's and Periscope's), run with the project's Node (node_modules/.bin/node):
 * - `startGrpcNodeServer`: an @grpc/grpc-js server of `periscope.test.Echo`
 *   (test/peers/grpc-node/echo-service.ts), plaintext (h2c) or TLS with a self-signed certificate.
 * - `startGrpcNodeClient`: an @grpc/grpc-js client with one channel (one connection) kept open;
 *   `run(calls)` makes unary, server-, client- and bidirectional-streaming calls on it and gives
 *   back each call's status and wall-clock start and end as the client saw them.
 * - `startH2Server` / `startH2Client`: plain node:http2 (no gRPC), for non-gRPC HTTP/2 on one
 *   session the test keeps open.
 *
 *   const server = await startGrpcNodeServer({ tls: true })
 *   const client = await startGrpcNodeClient(server)
 *   const [rpc] = await client.run([{ kind: 'say', name: 'a', outcome: 'not-found' }])   // rpc.code === 5
 *   await client.stop(); await server.stop()
 *
 * Node links OpenSSL statically: the TLS plaintext is what the node binary's own SSL_write and
 * SSL_read see. Node drives them through memory BIOs, so no socket syscall happens inside them.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { makeCertificate } from './nginx.ts'
import { pollUntil } from './poll.ts'
import type { SayOutcome } from './grpc-node/echo-service.ts'

export { ECHO_SERVICE } from './grpc-node/echo-service.ts'

const root = fileURLToPath(new URL('../../', import.meta.url))
const NODE = join(root, 'node_modules/.bin/node')
const SCRIPTS = join(root, 'test/peers/grpc-node')

/** A call the client makes; see test/peers/grpc-node/echo-service.ts for what the server does. */
export type GrpcCall =
  /** Unary `Say`; `deadlineMs` sets the client's deadline; `metadata` adds request headers. */
  | { kind: 'say'; name: string; outcome: SayOutcome; delayMs?: number; deadlineMs?: number; metadata?: Record<string, string> }
  /** Server streaming: `count` messages, `intervalMs` apart. */
  | { kind: 'count'; count: number; intervalMs: number }
  /** Client streaming: `values` messages, each after `intervalMs`, then the end. */
  | { kind: 'sum'; values: number; intervalMs: number }
  /** Bidirectional: `messages` messages, each after `intervalMs`, each echoed. */
  | { kind: 'chat'; messages: number; intervalMs: number }

/** One call as the client saw it. */
export interface GrpcResult {
  /** The call's index in its batch. */
  index: number
  /** `/periscope.test.Echo/Say` */
  method: string
  /** The gRPC status code the client got (4 for its own deadline). */
  code: number
  details: string
  /** Messages received (replies; for Sum, the count the server summed). */
  received: number
  /** Wall-clock ns: before the call was made, and when its status arrived. */
  startNs: bigint
  endNs: bigint
}

/** One request of the plain HTTP/2 client. */
export interface H2Request { method: string; path: string; headers?: Record<string, string> }

export interface H2Result {
  index: number
  method: string
  path: string
  status: number
  startNs: bigint
  endNs: bigint
}

type Line = Record<string, unknown> & { event: string }

/** A peer script as a child process writing JSON lines. */
class LineProcess {
  readonly lines: Line[] = []
  readonly child: ChildProcess
  #stderr = ''
  readonly #exited: Promise<void>

  readonly what: string

  constructor(what: string, script: string, args: string[]) {
    this.what = what
    this.child = spawn(NODE, [join(SCRIPTS, script), ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
    this.child.stderr!.on('data', (chunk: Buffer) => (this.#stderr += chunk.toString()))
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      try {
        this.lines.push(JSON.parse(line) as Line)
      } catch {
        this.#stderr += `(not JSON on stdout) ${line}\n`
      }
    })
    this.#exited = new Promise((resolve) => this.child.once('exit', () => resolve()))
  }

  get pid(): number {
    return this.child.pid!
  }

  #exitReason(): string | undefined {
    const { exitCode, signalCode } = this.child
    return exitCode === null && signalCode === null ? undefined : `${this.what} exited (${exitCode ?? signalCode})`
  }

  details(): string {
    return `${this.what} stderr:\n${this.#stderr.slice(-3000)}\nlast lines: ${JSON.stringify(this.lines.slice(-5))}`
  }

  /** The lines of `event` from `from` on, once there are `count` of them. */
  async waitFor(event: string, count: number, from = 0, timeoutMs = 30_000): Promise<Line[]> {
    const matching = (): Line[] => this.lines.slice(from).filter((line) => line.event === event)
    await pollUntil(() => matching().length >= count, {
      what: `${count} "${event}" line(s) from ${this.what} (pid ${this.pid})`,
      timeoutMs,
      failed: () => this.#exitReason(),
      details: () => this.details(),
    })
    return matching()
  }

  /** Writes one stdin line, and resolves with the lines of `event` it gave, once `batch` says it is done. */
  async batch(input: unknown, event: string, timeoutMs: number): Promise<Line[]> {
    const from = this.lines.length
    this.child.stdin!.write(`${JSON.stringify(input)}\n`)
    await this.waitFor('batch', 1, from, timeoutMs)
    return this.lines.slice(from).filter((line) => line.event === event)
  }

  /** Ends stdin (the clients close their connection and exit), then SIGTERM after `graceMs`, SIGKILL after 10 s more. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.#exitReason() !== undefined) return
    this.child.stdin!.end()
    const term = setTimeout(() => this.child.kill('SIGTERM'), graceMs)
    const kill = setTimeout(() => this.child.kill('SIGKILL'), graceMs + 10_000)
    await this.#exited
    clearTimeout(term)
    clearTimeout(kill)
  }
}

export interface GrpcNodeServer {
  readonly pid: number
  readonly port: number
  /** `127.0.0.1:<port>` */
  readonly target: string
  readonly tls: boolean
  /** With `tls`: the self-signed certificate (CN=localhost, IP 127.0.0.1) clients trust. */
  readonly certPath?: string
  stop(): Promise<void>
}

/** Starts the grpc-js server and resolves once it listens. */
export async function startGrpcNodeServer(options: { tls?: boolean } = {}): Promise<GrpcNodeServer> {
  const dir = await mkdtemp(join(tmpdir(), 'periscope-grpc-node-'))
  const certificate = options.tls === true ? await makeCertificate(dir) : undefined
  const tls = certificate === undefined ? undefined : { cert: certificate.certPath, key: certificate.keyPath }
  const peer = new LineProcess(`grpc-js server${tls === undefined ? '' : ' (TLS)'}`, 'server.ts', [JSON.stringify({ tls })])
  const stop = async (): Promise<void> => {
    await peer.stop(0)
    await rm(dir, { recursive: true, force: true })
  }
  try {
    const [ready] = await peer.waitFor('ready', 1)
    const port = Number(ready!.port)
    return {
      pid: peer.pid,
      port,
      target: `127.0.0.1:${port}`,
      tls: tls !== undefined,
      certPath: certificate?.certPath,
      stop,
    }
  } catch (error) {
    await stop()
    throw error
  }
}

export interface GrpcNodeClient {
  readonly pid: number
  /** Makes the calls on the client's one channel, one after the other or all at once; resolves with each call's result, by index. */
  run(calls: GrpcCall[], options?: { parallel?: boolean; timeoutMs?: number }): Promise<GrpcResult[]>
  /** Closes the channel and waits for the process to exit. */
  stop(): Promise<void>
}

/** Starts a grpc-js client of `server` and resolves once its channel is connected. */
export async function startGrpcNodeClient(server: GrpcNodeServer): Promise<GrpcNodeClient> {
  const tls = server.tls ? { ca: server.certPath!, serverName: 'localhost' } : undefined
  const peer = new LineProcess(`grpc-js client of ${server.target}`, 'client.ts', [JSON.stringify({ target: server.target, tls })])
  try {
    await peer.waitFor('ready', 1)
  } catch (error) {
    await peer.stop(0)
    throw error
  }
  return {
    pid: peer.pid,
    async run(calls, options = {}) {
      const lines = await peer.batch({ calls, parallel: options.parallel === true }, 'rpc', options.timeoutMs ?? 60_000)
      return lines
        .map((line) => ({ ...(line as unknown as GrpcResult), startNs: BigInt(line.startNs as string), endNs: BigInt(line.endNs as string) }))
        .sort((a, b) => a.index - b.index)
    },
    stop: () => peer.stop(),
  }
}

export interface H2Server {
  readonly pid: number
  readonly port: number
  /** `http://127.0.0.1:<port>` */
  readonly url: string
  stop(): Promise<void>
}

/** Starts the plain node:http2 server (h2c) and resolves once it listens. */
export async function startH2Server(): Promise<H2Server> {
  const peer = new LineProcess('node:http2 server', 'h2-server.ts', [])
  try {
    const [ready] = await peer.waitFor('ready', 1)
    const port = Number(ready!.port)
    return { pid: peer.pid, port, url: `http://127.0.0.1:${port}`, stop: () => peer.stop(0) }
  } catch (error) {
    await peer.stop(0)
    throw error
  }
}

export interface H2Client {
  readonly pid: number
  /** Makes the requests one after the other on the client's one session. */
  run(requests: H2Request[], timeoutMs?: number): Promise<H2Result[]>
  stop(): Promise<void>
}

/** Starts a node:http2 client with one session to `url`, resolved once connected. */
export async function startH2Client(url: string): Promise<H2Client> {
  const peer = new LineProcess(`node:http2 client of ${url}`, 'h2-client.ts', [url])
  try {
    await peer.waitFor('ready', 1)
  } catch (error) {
    await peer.stop(0)
    throw error
  }
  return {
    pid: peer.pid,
    async run(requests, timeoutMs = 30_000) {
      const lines = await peer.batch({ requests }, 'request', timeoutMs)
      return lines.map((line) => ({ ...(line as unknown as H2Result), startNs: BigInt(line.startNs as string), endNs: BigInt(line.endNs as string) }))
    },
    stop: () => peer.stop(),
  }
}
