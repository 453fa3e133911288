/**
 * The Go HTTPS/h2c fixture of test/bpf/fixtures/go-tls/ for the Go TLS kernel tests: built once
 * per source (and Go version) into ~/.cache/periscope-peers/, plain and stripped (-s -w); its
 * processes, whose stdout lines say where they are; and the HTTP/2 frames of a byte stream.
 */
import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { root, waitFor } from './kernel.ts'

const SOURCE = join(root, 'test/bpf/fixtures/go-tls')

export interface GoFixture {
  /** with its symbol table */
  plain: string
  /** built with -ldflags='-s -w': no .symtab, only .gopclntab names its functions */
  stripped: string
}

/** Builds the fixture unless the cache has this source's build; returns the two binaries. */
export function buildGoFixture(): GoFixture {
  const hash = createHash('sha256')
  for (const file of ['go.mod', 'main.go']) hash.update(readFileSync(join(SOURCE, file)))
  hash.update(execFileSync('go', ['version'], { encoding: 'utf8' }))
  const dir = join(homedir(), '.cache/periscope-peers', `go-tls-${hash.digest('hex').slice(0, 16)}`)
  const fixture = { plain: join(dir, 'go-tls'), stripped: join(dir, 'go-tls-stripped') }
  mkdirSync(dir, { recursive: true })
  for (const [out, flags] of [[fixture.plain, []], [fixture.stripped, ['-ldflags=-s -w']]] as const) {
    if (existsSync(out)) continue
    // built beside, then renamed: a build cut short never passes for a cached binary
    execFileSync('go', ['build', ...flags, '-o', `${out}.tmp`, '.'], { cwd: SOURCE, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, CGO_ENABLED: '0' } })
    renameSync(`${out}.tmp`, out)
  }
  return fixture
}

/** A self-signed certificate for localhost (Go checks the subject alternative name). */
export function makeCertificate(dir: string): { cert: string; key: string } {
  const cert = join(dir, 'cert.pem'), key = join(dir, 'key.pem')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost'], { stdio: 'ignore' })
  return { cert, key }
}

/** The body the fixture's client sends as request `index` (and the server echoes back). */
export function requestBody(index: number, size: number): Buffer {
  const pattern = `<request ${index} of ${size} bytes>`
  return Buffer.from(pattern.repeat(Math.floor(size / pattern.length) + 1).slice(0, size))
}

const running = new Set<GoProcess>()

/** Kills the fixture processes a failed test left running. */
export function killGoProcesses(): void {
  for (const process of running) process.child.kill('SIGKILL')
}

export class GoProcess {
  readonly child: ChildProcessWithoutNullStreams
  readonly lines: string[] = []
  stderr = ''
  exitCode: number | null | undefined

  constructor(binary: string, args: string[]) {
    this.child = spawn(binary, args)
    let pending = ''
    this.child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      pending += chunk
      for (let newline = pending.indexOf('\n'); newline >= 0; newline = pending.indexOf('\n')) {
        this.lines.push(pending.slice(0, newline))
        pending = pending.slice(newline + 1)
      }
    })
    this.child.stderr.setEncoding('utf8').on('data', (chunk: string) => { this.stderr += chunk })
    // 'close', not 'exit': 'exit' may come before the last stdout data is read
    this.child.on('close', (code) => {
      this.exitCode = code
      running.delete(this)
    })
    running.add(this)
  }

  get pid(): number {
    return this.child.pid!
  }

  /** The first line starting with `prefix`, once printed. */
  async line(prefix: string, timeoutMs = 30_000): Promise<string> {
    const find = () => this.lines.find((l) => l.startsWith(prefix))
    await waitFor(() => find() !== undefined || this.exitCode !== undefined, `"${prefix}" from ${this.child.spawnfile} ${this.pid}`, timeoutMs)
    const line = find()
    if (line === undefined) throw new Error(`${this.child.spawnfile} ${this.pid} exited (${this.exitCode}) before printing "${prefix}": ${this.stderr}`)
    return line
  }

  /** Lets a client waiting for a line on stdin go on. */
  resume(): void {
    this.child.stdin.write('\n')
  }

  async exited(): Promise<number | null> {
    await waitFor(() => this.exitCode !== undefined, `${this.child.spawnfile} ${this.pid} to exit`, 30_000)
    return this.exitCode!
  }

  stop(): void {
    this.child.kill()
  }
}

/** Starts a server (TLS with a certificate, else h2c) and resolves with it and its port. */
export async function startGoServer(binary: string, certificate?: { cert: string; key: string }): Promise<{ server: GoProcess; port: number }> {
  const server = new GoProcess(binary, certificate === undefined ? ['server-h2c'] : ['server', certificate.cert, certificate.key])
  return { server, port: Number((await server.line('listening ')).split(' ')[1]) }
}

/**
 * Starts a client, which waits on stdin once it printed "ready"; a pausing one waits again after
 * its first request, once it printed "first done".
 */
export async function startGoClient(binary: string, port: number, ca: string, protocol: 'h1' | 'h2' | 'h2c', sizes: number[], options: { pausing?: boolean } = {}): Promise<GoProcess> {
  const client = new GoProcess(binary, [options.pausing === true ? 'client-pausing' : 'client', String(port), ca, protocol, ...sizes.map(String)])
  await client.line('ready')
  return client
}

export interface Frame {
  type: number
  flags: number
  stream: number
  payload: Buffer
}

export const FRAME_DATA = 0, FRAME_HEADERS = 1
export const PREFACE = 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'

/** The HTTP/2 frames of a byte stream that starts at a frame boundary; throws on a cut frame. */
export function http2Frames(bytes: Buffer): Frame[] {
  const frames: Frame[] = []
  let at = 0
  while (at < bytes.length) {
    if (at + 9 > bytes.length) throw new Error(`a frame header cut at byte ${at} of ${bytes.length}`)
    const length = bytes.readUIntBE(at, 3)
    if (at + 9 + length > bytes.length) throw new Error(`a frame of ${length} bytes at byte ${at} runs past the stream's ${bytes.length}`)
    frames.push({ type: bytes[at + 3]!, flags: bytes[at + 4]!, stream: bytes.readUInt32BE(at + 5) & 0x7fffffff, payload: bytes.subarray(at + 9, at + 9 + length) })
    at += 9 + length
  }
  return frames
}

/** DATA payloads by stream, in order. */
export function dataByStream(frames: Frame[]): Map<number, Buffer> {
  const streams = new Map<number, Buffer>()
  for (const frame of frames) {
    if (frame.type !== FRAME_DATA) continue
    streams.set(frame.stream, Buffer.concat([streams.get(frame.stream) ?? Buffer.alloc(0), frame.payload]))
  }
  return streams
}
