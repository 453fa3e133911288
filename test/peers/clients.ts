/**
 * Real HTTP clients for end-to-end tests and benchmarks:
 * - `runCurl`: Debian's curl as a child process, one or several URLs in one invocation (curl then
 *   reuses one keep-alive connection for URLs of the same host), with what curl reports per transfer.
 * - `connectHttp`: a raw TCP (or TLS) connection from this process, for what curl cannot do on
 *   purpose: a request written in several small writes, each read by the server on its own, and
 *   pipelined requests written back to back before any response is read.
 * - `runWrk`: Debian's wrk, with its exact figures read from a Lua `done()` hook.
 */
import { execFile, spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { connect as netConnect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect as tlsConnect } from 'node:tls'

export interface CurlOptions {
  /** `--http1.0`. */
  http10?: boolean
  /** Verify the server against this PEM certificate (`--cacert`); without it, https URLs are fetched with `-k`. */
  cacert?: string
  /** `-X`; default GET, or POST when `body` is given. */
  method?: string
  /** A request body (`--data-binary`), sent with every URL of the invocation. */
  body?: string | Buffer
  /** Request headers, e.g. `{ traceparent: '00-…-01' }`. */
  headers?: Record<string, string>
  /** `--limit-rate`, e.g. '2k': curl reads (and writes a body) in small pieces at that rate. */
  limitRate?: string
  /** Anything else curl accepts, placed before the URLs. */
  extraArgs?: string[]
  /** Kill curl after this long; default 30 s. */
  timeoutS?: number
}

/** One URL's transfer, as curl's `-w %{json}` and `%{header_json}` report it. */
export interface CurlTransfer {
  url: string
  /** 0 when there was no response (a refused connection). */
  status: number
  /** curl's exit code for this transfer (0 ok, 7 could not connect, …). */
  exitCode: number
  /** curl's message when the transfer failed. */
  error?: string
  /** The response's version ('1.1' from nginx even to an HTTP/1.0 request); '0' without a response. */
  httpVersion: string
  /** This end of the connection: match it against nginx's `remotePort`. */
  localPort: number
  remotePort: number
  /** New connections this transfer opened: 0 when it reused the previous transfer's. */
  newConnections: number
  /** Body bytes received (after chunked decoding). */
  bodyBytes: number
  /** Response header bytes received. */
  headerBytes: number
  /**
   * curl's size_request: the request's headers, plus its body when curl sent the body with them
   * (not when it waited for `100 Continue` first, as it does for bodies over 1 MiB).
   */
  requestBytes: number
  /** Request body bytes sent. */
  uploadBytes: number
  /** Response headers, names in lower case. */
  headers: Record<string, string[]>
  totalS: number
}

export interface CurlRun {
  /** curl's pid: the process its CLIENT spans belong to. */
  pid: number
  /** The process's exit code: that of the last transfer. */
  exitCode: number
  transfers: CurlTransfer[]
  stderr: string
}

const RECORD = '\x1e'
const UNIT = '\x1f'

/** Runs curl once for all `urls`; resolves even when transfers fail (see each transfer's exitCode). */
export function runCurl(urls: string | readonly string[], options: CurlOptions = {}): Promise<CurlRun> {
  const list = typeof urls === 'string' ? [urls] : urls
  const args = ['-s', '-S', '--no-progress-meter', '-w', `%{json}${UNIT}%{header_json}${RECORD}`]
  if (options.http10 === true) args.push('--http1.0')
  if (options.cacert !== undefined) args.push('--cacert', options.cacert)
  else if (list.some((url) => url.startsWith('https:'))) args.push('-k')
  if (options.method !== undefined) args.push('-X', options.method)
  if (options.body !== undefined) args.push('--data-binary', '@-')
  for (const [name, value] of Object.entries(options.headers ?? {})) args.push('-H', `${name}: ${value}`)
  if (options.limitRate !== undefined) args.push('--limit-rate', options.limitRate)
  args.push(...(options.extraArgs ?? []))
  for (const url of list) args.push('-o', '/dev/null', url)
  return new Promise((resolve, reject) => {
    const child = execFile('curl', args, { timeout: (options.timeoutS ?? 30) * 1000, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error !== null && typeof error.code !== 'number') {
        reject(new Error(`curl ${args.join(' ')} failed to run: ${error.message}. Is curl installed (scripts/setup.sh --test)?`))
        return
      }
      try {
        const transfers = stdout.split(RECORD).slice(0, -1).map(parseTransfer)
        if (transfers.length !== list.length) throw new Error(`curl reported ${transfers.length} transfers for ${list.length} URLs`)
        resolve({ pid: child.pid!, exitCode: child.exitCode ?? -1, transfers, stderr })
      } catch (parseError) {
        reject(new Error(`curl ${args.join(' ')}: cannot read its -w output (${(parseError as Error).message}):\n${stdout}\n${stderr}`))
      }
    })
    if (options.body !== undefined) child.stdin!.end(options.body)
    else child.stdin!.end()
  })
}

function parseTransfer(record: string): CurlTransfer {
  const [json, headerJson] = record.split(UNIT)
  const w = JSON.parse(json!) as Record<string, string | number | null>
  const headers = JSON.parse(headerJson!) as Record<string, string[]>
  return {
    url: String(w.url),
    status: Number(w.http_code),
    exitCode: Number(w.exitcode),
    error: typeof w.errormsg === 'string' ? w.errormsg : undefined,
    httpVersion: String(w.http_version),
    localPort: Number(w.local_port),
    remotePort: Number(w.remote_port),
    newConnections: Number(w.num_connects),
    bodyBytes: Number(w.size_download),
    headerBytes: Number(w.size_header),
    requestBytes: Number(w.size_request),
    uploadBytes: Number(w.size_upload),
    headers,
    totalS: Number(w.time_total),
  }
}

/** One response read by an HttpConnection. */
export interface RawResponse {
  status: number
  /** '1.1' or '1.0'. */
  version: string
  /** Header names in lower case; repeated headers joined with ', '. */
  headers: Record<string, string>
  /** The body, chunked framing removed. */
  body: Buffer
  chunked: boolean
  /** Bytes of the response on the wire: status line, headers, body and chunk framing. */
  wireBytes: number
}

/**
 * A client connection from this process. `send` writes pieces one write() each; with
 * `separateReads` it waits after each piece until the server's process has read it off its socket
 * (its receive queue in /proc/net/tcp is empty again), so the server sees one read per piece.
 */
export interface HttpConnection {
  /** This end's port: match it against nginx's `remotePort`. */
  readonly localPort: number
  /** Writes each piece with its own write() call. */
  send(pieces: readonly (string | Buffer)[], options?: { separateReads?: boolean }): Promise<void>
  /**
   * Reads the next `count` responses. Pass `heads` (one boolean per response) for answers to HEAD
   * requests, which have no body. A 1xx response counts as one response.
   */
  responses(count: number, heads?: readonly boolean[]): Promise<RawResponse[]>
  /** `send([request])` then one response. */
  request(request: string | Buffer): Promise<RawResponse>
  /** Resolves when the server closed its side. */
  closed(): Promise<void>
  close(): Promise<void>
}

/** `GET <path> HTTP/1.1` with Host, and any extra header lines. */
export function getRequest(path: string, headers: Record<string, string> = {}): string {
  return `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`
}

/** Opens a TCP (or, with `tls`, TLS without certificate checks) connection to 127.0.0.1:`port`. */
export async function connectHttp(port: number, options: { tls?: boolean; timeoutMs?: number } = {}): Promise<HttpConnection> {
  const timeoutMs = options.timeoutMs ?? 10_000
  const socket: Socket = await new Promise((resolve, reject) => {
    const s: Socket = options.tls === true
      ? tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false, servername: 'localhost' }, () => resolve(s))
      : netConnect({ port, host: '127.0.0.1', noDelay: true }, () => resolve(s))
    s.once('error', reject)
  })
  let pending = Buffer.alloc(0)
  let ended = false
  let failure: Error | undefined
  let wake: (() => void) | undefined
  socket.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk])
    wake?.()
  })
  socket.on('end', () => {
    ended = true
    wake?.()
  })
  socket.on('error', (error) => {
    failure = error
    wake?.()
  })
  const localPort = socket.localPort!
  const more = (what: string): Promise<void> => {
    if (failure !== undefined) return Promise.reject(new Error(`connection from port ${localPort}: ${failure.message} while waiting for ${what}`))
    if (ended) return Promise.reject(new Error(`connection from port ${localPort}: the server closed it while ${what} was expected (${pending.length} bytes unread)`))
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`connection from port ${localPort}: no ${what} within ${timeoutMs} ms (${pending.length} bytes unread: ${JSON.stringify(pending.subarray(0, 200).toString('latin1'))})`)), timeoutMs)
      wake = () => {
        clearTimeout(timer)
        wake = undefined
        resolve()
      }
    })
  }
  const write = (piece: string | Buffer): Promise<void> =>
    new Promise((resolve, reject) => socket.write(piece, (error) => (error ? reject(error) : resolve())))

  const connection: HttpConnection = {
    localPort,
    async send(pieces, sendOptions = {}) {
      for (const piece of pieces) {
        await write(piece)
        if (sendOptions.separateReads === true) await serverHasRead(port, localPort, timeoutMs)
      }
    },
    async responses(count, heads = []) {
      const out: RawResponse[] = []
      while (out.length < count) {
        const parsed = parseResponse(pending, heads[out.length] === true, ended)
        if (parsed === undefined) {
          await more(`response ${out.length + 1} of ${count}`)
          continue
        }
        out.push(parsed)
        pending = pending.subarray(parsed.wireBytes)
      }
      return out
    },
    async request(request) {
      await connection.send([request])
      return (await connection.responses(1))[0]!
    },
    async closed() {
      while (!ended) await more('the server to close')
    },
    close() {
      return new Promise((resolve) => {
        if (socket.destroyed) return resolve()
        socket.once('close', () => resolve())
        socket.end()
        socket.destroy()
      })
    },
  }
  return connection
}

/**
 * Parses one response at the start of `data`; undefined until it is complete. A body without
 * Content-Length or chunked framing ends when the server closes (`ended`).
 */
function parseResponse(data: Buffer, head: boolean, ended: boolean): RawResponse | undefined {
  const headEnd = data.indexOf('\r\n\r\n')
  if (headEnd < 0) return undefined
  const lines = data.subarray(0, headEnd).toString('latin1').split('\r\n')
  const statusLine = /^HTTP\/(1\.[01]) (\d{3})/.exec(lines[0]!)
  if (statusLine === null) throw new Error(`not an HTTP/1 response: ${JSON.stringify(lines[0])}`)
  const headers: Record<string, string> = {}
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':')
    const name = line.slice(0, colon).trim().toLowerCase()
    const value = line.slice(colon + 1).trim()
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`
  }
  const status = Number(statusLine[2])
  const start = headEnd + 4
  const response = (body: Buffer, end: number, chunked = false): RawResponse => ({ status, version: statusLine[1]!, headers, body, chunked, wireBytes: end })
  if (head || status < 200 || status === 204 || status === 304) return response(Buffer.alloc(0), start)
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) return parseChunked(data, start, response)
  if (headers['content-length'] !== undefined) {
    const end = start + Number(headers['content-length'])
    return data.length < end ? undefined : response(data.subarray(start, end), end)
  }
  return ended ? response(data.subarray(start), data.length) : undefined
}

function parseChunked(data: Buffer, start: number, response: (body: Buffer, end: number, chunked: boolean) => RawResponse): RawResponse | undefined {
  const parts: Buffer[] = []
  let at = start
  for (;;) {
    const lineEnd = data.indexOf('\r\n', at)
    if (lineEnd < 0) return undefined
    const size = parseInt(data.subarray(at, lineEnd).toString('latin1'), 16)
    if (Number.isNaN(size)) throw new Error(`bad chunk size line ${JSON.stringify(data.subarray(at, lineEnd).toString('latin1'))}`)
    at = lineEnd + 2
    if (size === 0) {
      // no trailers from nginx: the last chunk is followed by an empty line
      if (data.length < at + 2) return undefined
      return response(Buffer.concat(parts), at + 2, true)
    }
    if (data.length < at + size + 2) return undefined
    parts.push(data.subarray(at, at + size))
    at += size + 2
  }
}

/** The tx_queue and rx_queue of the 127.0.0.1 TCP socket local:remote, from /proc/net/tcp. */
async function tcpQueues(localPort: number, remotePort: number): Promise<{ tx: number; rx: number } | undefined> {
  const hex = (port: number): string => port.toString(16).toUpperCase().padStart(4, '0')
  const local = `0100007F:${hex(localPort)}`
  const remote = `0100007F:${hex(remotePort)}`
  for (const line of (await readFile('/proc/net/tcp', 'utf8')).split('\n')) {
    const fields = line.trim().split(/\s+/)
    if (fields[1] === local && fields[2] === remote) {
      const [tx, rx] = fields[4]!.split(':').map((n) => parseInt(n, 16))
      return { tx: tx!, rx: rx! }
    }
  }
  return undefined
}

/**
 * Waits until what this end wrote was acknowledged (the client socket's send queue is empty) and the
 * server's process has read all of it (the server socket's receive queue is empty). With TLS the
 * server reads a record in pieces, and the same two conditions still mean it has taken the write.
 */
async function serverHasRead(serverPort: number, clientPort: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const client = await tcpQueues(clientPort, serverPort)
    const server = await tcpQueues(serverPort, clientPort)
    if (client === undefined || server === undefined) throw new Error(`the connection 127.0.0.1:${clientPort} → 127.0.0.1:${serverPort} is not in /proc/net/tcp (closed?)`)
    if (client.tx === 0 && server.rx === 0) return
    if (Date.now() > deadline) throw new Error(`the server on port ${serverPort} did not read what port ${clientPort} wrote within ${timeoutMs} ms (send queue ${client.tx}, server receive queue ${server.rx})`)
    await new Promise((resolve) => setTimeout(resolve, 1))
  }
}

export interface WrkOptions {
  url: string
  /** Default 2. */
  threads?: number
  /** Default 50. */
  connections?: number
  durationS: number
  /** Request headers. */
  headers?: Record<string, string>
  /** wrk's per-request timeout; default 2 s (wrk's own default). */
  timeoutS?: number
}

/**
 * What wrk counted. `requests` are responses wrk read in full before it stopped: wrk stops each
 * thread's loop up to 100 ms after the duration (its rate timer), and requests in flight then (at
 * most one per connection: wrk does not pipeline) are answered and logged by the server but not
 * counted. So the server's log has between `requests` and `requests + connections` lines for a run.
 */
export interface WrkResult {
  /** wrk's pid. */
  pid: number
  requests: number
  /** Wall time of the run as wrk measured it, seconds. */
  durationS: number
  requestsPerSecond: number
  bytes: number
  errors: { connect: number; read: number; write: number; timeout: number; status: number }
  /** wrk's latency distribution (corrected for coordinated omission, as wrk prints it), microseconds. */
  latencyUs: { min: number; mean: number; stdev: number; max: number; p50: number; p75: number; p90: number; p99: number; p999: number }
  /** wrk's own report. */
  output: string
}

const WRK_DONE = `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('PERISCOPE_WRK {"requests":%d,"durationUs":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d},' ..
    '"latencyUs":{"min":%d,"mean":%.3f,"stdev":%.3f,"max":%d,"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p999":%d}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.timeout, e.status,
    latency.min, latency.mean, latency.stdev, latency.max, latency:percentile(50), latency:percentile(75),
    latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end
`

/** Runs wrk to completion and returns its exact counts; rejects when wrk fails or prints no summary. */
export async function runWrk(options: WrkOptions): Promise<WrkResult> {
  const dir = await mkdtemp(join(tmpdir(), 'periscope-wrk-'))
  try {
    const script = join(dir, 'done.lua')
    await writeFile(script, WRK_DONE)
    const args = [
      '-t', String(options.threads ?? 2), '-c', String(options.connections ?? 50), '-d', `${options.durationS}s`,
      '--timeout', `${options.timeoutS ?? 2}s`, '--latency', '-s', script,
      ...Object.entries(options.headers ?? {}).flatMap(([name, value]) => ['-H', `${name}: ${value}`]),
      options.url,
    ]
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', (error) => reject(new Error(`running wrk failed: ${error.message}. Install it with scripts/setup.sh --test (Debian's wrk)`)))
      child.once('close', (exitCode) => resolve(exitCode))
    })
    const summary = /^PERISCOPE_WRK (.*)$/m.exec(output)
    if (code !== 0 || summary === null) throw new Error(`wrk ${args.join(' ')} exited with ${code} and no summary:\n${output}`)
    const figures = JSON.parse(summary[1]!) as Omit<WrkResult, 'pid' | 'durationS' | 'requestsPerSecond' | 'output'> & { durationUs: number }
    const durationS = figures.durationUs / 1e6
    return {
      pid: child.pid!,
      requests: figures.requests,
      durationS,
      requestsPerSecond: figures.requests / durationS,
      bytes: figures.bytes,
      errors: figures.errors,
      latencyUs: figures.latencyUs,
      output: output.replace(/^PERISCOPE_WRK .*\n/m, ''),
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}
