/**
 * Debian's nginx for end-to-end tests and benchmarks: started as a child process with a generated
 * configuration in its own temporary directory (pid file, temp paths, error and access logs), on
 * free 127.0.0.1 ports, plain HTTP and/or TLS with a self-signed certificate made here by openssl,
 * and HTTP/2 listeners (TLS with ALPN h2, and h2c with prior knowledge) with `http2`.
 *
 *   const nginx = await startNginx({ tls: true, proxy: true })
 *   t.after(() => nginx.stop())
 *   ... curl nginx.baseUrl + '/big', nginx.tlsUrl + '/' ...
 *   const lines = await nginx.waitForAccessLog(3)
 *
 * Locations (the same on the backend, which serves plain HTTP only):
 * - `/`: NGINX_SMALL_PAGE, with Content-Length.
 * - `/big`: NGINX_BIG_BODY (64 KiB), with Content-Length; `sendfile` says how nginx writes it.
 * - `/status/404`: a file that does not exist (nginx's own 404 page).
 * - `/status/500`: `return 500` with the body "internal error\n". A body is given so that nginx
 *   keeps the connection open: its built-in 500 page closes keep-alive connections.
 * - `/echo`: POST (or GET); nginx reads the whole request body (Content-Length or chunked, up to
 *   16 MiB; beyond 1 MiB it goes to a temp file) before it answers 200 NGINX_ECHO_REPLY, so
 *   `requestLength` counts the body. Other methods get 405.
 * - `/chunked`: NGINX_SMALL_PAGE with `Transfer-Encoding: chunked` (one data chunk); SSI is on for
 *   it, and SSI drops Content-Length, so HTTP/1.1 answers are chunked (HTTP/1.0 ones end at close).
 * - `/chunked-big`: NGINX_BIG_BODY chunked the same way, in several chunks.
 * - `/proxy/<path>` (with `proxy: true`): `/<path>` of the backend nginx, over HTTP/1.1 with a
 *   keep-alive upstream pool; every request header (traceparent included) is passed on.
 * - `/periscope-ready`: 204, not logged: the readiness probe's request, made once per listener at
 *   start on its own connection.
 *
 * The access log has one tab-separated line per request (NGINX_LOG_FORMAT), written by the worker
 * right after the response, unbuffered: `waitForAccessLog` polls until the expected lines are there.
 */
import { execFile, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { request as httpRequest } from 'node:http'
import { connect as http2Connect } from 'node:http2'
import { request as httpsRequest } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { freePort } from './otelcol.ts'

export const NGINX_BINARY = '/usr/sbin/nginx'

/** The body of `/` and `/chunked`. */
export const NGINX_SMALL_PAGE = '<!doctype html>\n<html><body><p>Periscope test page</p></body></html>\n'

/** The body of `/echo`'s answer. */
export const NGINX_ECHO_REPLY = 'received\n'

/** The body of `/big` and `/chunked-big`: 1024 numbered lines of 64 bytes, 64 KiB. */
export const NGINX_BIG_BODY: Buffer = Buffer.from(
  Array.from({ length: 1024 }, (_, i) => `big body line ${String(i).padStart(4, '0')} `.padEnd(63, '.') + '\n').join(''),
)

/** Tab-separated; the fields in AccessLogEntry's order. */
export const NGINX_LOG_FORMAT = [
  '$msec', '$pid', '$server_port', '$remote_port', '$scheme', '$request_method', '$request_uri', '$server_protocol',
  '$status', '$request_length', '$bytes_sent', '$body_bytes_sent', '$request_time', '$connection',
  '$connection_requests', '$upstream_addr', '$http_traceparent',
].join('\t')

export interface NginxOptions {
  /** `worker_processes`; default 1. */
  workerProcesses?: number
  /** A plain HTTP listener; default true. */
  http?: boolean
  /** A TLS listener with a self-signed ECDSA P-256 certificate for CN=localhost and IP 127.0.0.1; default false. */
  tls?: boolean
  /**
   * Keep-alive of client connections: nginx's defaults (75 s idle, 1000 requests a connection, after
   * which nginx answers with `Connection: close`) unless set; false turns keep-alive off.
   */
  keepalive?: { timeoutS?: number; requests?: number } | false
  /** `sendfile` for static files (only on plain HTTP: TLS always writes); default false, nginx's own default. */
  sendfile?: boolean
  /** Start a second nginx (plain HTTP, one worker) and serve it under `/proxy/`; default false. */
  proxy?: boolean
  /** Idle connections kept open to the backend per worker (`keepalive` in the upstream block); default 16. */
  upstreamKeepalive?: number
  /**
   * Two more listeners speaking HTTP/2 only: over TLS with ALPN h2 (`h2Url`, for `curl --http2`)
   * and h2c with prior knowledge (`h2cUrl`, for `curl --http2-prior-knowledge`); default false.
   * The same locations as the others.
   */
  http2?: boolean
}

export interface AccessLogEntry {
  /** `$msec`: when the request finished (the log write), ms since the epoch, ms resolution. */
  timeMs: number
  /** `$pid`: the worker that served it. */
  workerPid: number
  serverPort: number
  /** The client's port: the local port of the connection on the client's side. */
  remotePort: number
  scheme: 'http' | 'https'
  /** '' when nginx could not read one (a malformed request). */
  method: string
  /** `$request_uri`: path and query as the client sent them. */
  uri: string
  /** `HTTP/1.1`, `HTTP/1.0`; '' when none. */
  protocol: string
  status: number
  /** `$request_length`: request line, headers and body, bytes. */
  requestLength: number
  /** `$bytes_sent`: the whole response, headers included (chunk framing included). */
  bytesSent: number
  bodyBytesSent: number
  requestTimeMs: number
  /** `$connection`: the connection's serial number in this nginx. */
  connection: number
  /** `$connection_requests`: 1 for the first request on a connection. */
  connectionRequests: number
  /** `$upstream_addr` for proxied requests (`127.0.0.1:<backend port>`). */
  upstreamAddress?: string
  /** The request's `traceparent` header. */
  traceparent?: string
  line: string
}

export interface Nginx {
  /** Plain HTTP port (with `http`, the default). */
  readonly port?: number
  /** TLS port (with `tls`). */
  readonly tlsPort?: number
  /** `http://127.0.0.1:<port>` (with `http`). */
  readonly baseUrl?: string
  /** `https://127.0.0.1:<tlsPort>` (with `tls`). */
  readonly tlsUrl?: string
  /** With `http2`: the port and URL of HTTP/2 over TLS (`https://127.0.0.1:<h2Port>`), and of h2c with prior knowledge (`http://127.0.0.1:<h2cPort>`). */
  readonly h2Port?: number
  readonly h2Url?: string
  readonly h2cPort?: number
  readonly h2cUrl?: string
  /** The master process. */
  readonly pid: number
  /** The self-signed certificate (PEM) the TLS listener serves; curl --cacert accepts it for 127.0.0.1 and localhost. */
  readonly certPath: string
  readonly dir: string
  readonly accessLogPath: string
  /** With `proxy`: the backend, stopped by this nginx's stop(). */
  readonly backend?: Nginx
  /** The worker processes' pids (the master's children), read now. */
  workerPids(): number[]
  /** Every access-log line so far, parsed (a line still being written is left out). */
  accessLog(): AccessLogEntry[]
  /** Polls until `done(entries)` (or at least `count` lines); rejects on timeout with the lines and error log. */
  waitForAccessLog(done: number | ((entries: AccessLogEntry[]) => boolean), timeoutMs?: number): Promise<AccessLogEntry[]>
  /** nginx's error log and stderr, for failure messages. */
  errors(): string
  /** Fast shutdown (SIGTERM), waits for the master and every worker to exit, removes the directory. */
  stop(): Promise<void>
}

/** Parses one NGINX_LOG_FORMAT line; throws naming the line when it does not have that shape. */
export function parseAccessLogLine(line: string): AccessLogEntry {
  const fields = line.split('\t')
  if (fields.length !== 17) throw new Error(`nginx access log line has ${fields.length} fields, expected 17 (NGINX_LOG_FORMAT): ${JSON.stringify(line)}`)
  const text = (i: number): string => (fields[i] === '-' ? '' : unescapeNginx(fields[i]!))
  const number = (i: number): number => {
    const value = Number(fields[i])
    if (fields[i] === '' || !Number.isFinite(value)) throw new Error(`nginx access log field ${i + 1} is not a number in ${JSON.stringify(line)}`)
    return value
  }
  const scheme = fields[4]
  if (scheme !== 'http' && scheme !== 'https') throw new Error(`nginx access log scheme ${scheme} is neither http nor https in ${JSON.stringify(line)}`)
  return {
    timeMs: Math.round(number(0) * 1000),
    workerPid: number(1),
    serverPort: number(2),
    remotePort: number(3),
    scheme,
    method: text(5),
    uri: text(6),
    protocol: text(7),
    status: number(8),
    requestLength: number(9),
    bytesSent: number(10),
    bodyBytesSent: number(11),
    requestTimeMs: Math.round(number(12) * 1000),
    connection: number(13),
    connectionRequests: number(14),
    upstreamAddress: text(15) || undefined,
    traceparent: text(16) || undefined,
    line,
  }
}

/** nginx's default log escaping writes `"`, `\` and bytes outside 32..126 as \xHH. */
function unescapeNginx(value: string): string {
  if (!value.includes('\\x')) return value
  const bytes: number[] = []
  for (let i = 0; i < value.length; i++) {
    if (value[i] === '\\' && value[i + 1] === 'x' && /^[0-9A-Fa-f]{2}$/.test(value.slice(i + 2, i + 4))) {
      bytes.push(parseInt(value.slice(i + 2, i + 4), 16))
      i += 3
    } else {
      bytes.push(...Buffer.from(value[i]!))
    }
  }
  return Buffer.from(bytes).toString('latin1')
}

/** Parses an access log's complete lines. */
export function parseAccessLog(text: string): AccessLogEntry[] {
  const lines = text.split('\n')
  lines.pop()
  return lines.filter((line) => line !== '').map(parseAccessLogLine)
}

interface Layout {
  dir: string
  port?: number
  tlsPort?: number
  h2Port?: number
  h2cPort?: number
  backendPort?: number
  certPath: string
  keyPath: string
  user?: string
}

function keepaliveDirectives(keepalive: NginxOptions['keepalive']): string[] {
  if (keepalive === false) return ['keepalive_timeout 0;']
  const out: string[] = []
  if (keepalive?.timeoutS !== undefined) out.push(`keepalive_timeout ${keepalive.timeoutS}s;`)
  if (keepalive?.requests !== undefined) out.push(`keepalive_requests ${keepalive.requests};`)
  return out
}

function configuration(options: NginxOptions, at: Layout): string {
  const { dir } = at
  const www = join(dir, 'www')
  const listens = [
    ...(at.port === undefined ? [] : [`listen 127.0.0.1:${at.port};`]),
    ...(at.tlsPort === undefined ? [] : [`listen 127.0.0.1:${at.tlsPort} ssl;`]),
    // nginx 1.22's syntax (Debian 12): `http2` on the listen line; without `ssl`, h2c with prior knowledge
    ...(at.h2Port === undefined ? [] : [`listen 127.0.0.1:${at.h2Port} ssl http2;`]),
    ...(at.h2cPort === undefined ? [] : [`listen 127.0.0.1:${at.h2cPort} http2;`]),
    ...(at.tlsPort === undefined && at.h2Port === undefined ? [] : [`ssl_certificate ${at.certPath};`, `ssl_certificate_key ${at.keyPath};`]),
  ]
  const proxy = at.backendPort === undefined ? [] : [
    'location /proxy/ {',
    '  proxy_pass http://backend/;',
    '  proxy_http_version 1.1;',
    '  proxy_set_header Connection "";',
    '  proxy_set_header Host $host;',
    '}',
  ]
  const upstream = at.backendPort === undefined ? [] : [
    `upstream backend { server 127.0.0.1:${at.backendPort}; keepalive ${options.upstreamKeepalive ?? 16}; }`,
  ]
  return [
    ...(at.user === undefined ? [] : [`user ${at.user};`]),
    `worker_processes ${options.workerProcesses ?? 1};`,
    `pid ${join(dir, 'nginx.pid')};`,
    `lock_file ${join(dir, 'nginx.lock')};`,
    `error_log ${join(dir, 'error.log')} warn;`,
    'events { worker_connections 4096; }',
    'http {',
    `  log_format periscope '${NGINX_LOG_FORMAT.replaceAll('\t', '\\t')}';`,
    `  access_log ${join(dir, 'access.log')} periscope;`,
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((kind) => `  ${kind}_temp_path ${join(dir, 'temp', kind)};`),
    '  default_type text/html;',
    `  sendfile ${options.sendfile === true ? 'on' : 'off'};`,
    ...keepaliveDirectives(options.keepalive).map((line) => `  ${line}`),
    ...upstream.map((line) => `  ${line}`),
    '  server {',
    ...listens.map((line) => `    ${line}`),
    `    root ${www};`,
    '    index index.html;',
    '    location = /periscope-ready { access_log off; return 204; }',
    '    location = /status/500 { return 500 "internal error\\n"; }',
    // `return` alone would answer first and discard the body afterwards (so $request_length would
    // miss it). The mirror reads the whole body first (its subrequest stays inside nginx); then the
    // static handler refuses POST, and the named location answers, keeping the method in the log.
    `    location = /echo { client_body_buffer_size 1m; client_max_body_size 16m; mirror /periscope-mirror; mirror_request_body on; error_page 405 =200 @echo; }`,
    `    location @echo { return 200 "${NGINX_ECHO_REPLY.replaceAll('\n', '\\n')}"; }`,
    '    location = /periscope-mirror { internal; return 204; }',
    `    location = /chunked { ssi on; alias ${join(www, 'index.html')}; }`,
    `    location = /chunked-big { ssi on; alias ${join(www, 'big')}; }`,
    ...proxy.map((line) => `    ${line}`),
    '  }',
    '}',
    '',
  ].join('\n')
}

const run = promisify(execFile)

/** A self-signed ECDSA P-256 certificate for CN=localhost, DNS localhost and IP 127.0.0.1, in `dir` (cert.pem, key.pem). */
export async function makeCertificate(dir: string): Promise<{ certPath: string; keyPath: string }> {
  const certPath = join(dir, 'cert.pem')
  const keyPath = join(dir, 'key.pem')
  try {
    await run('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-keyout', keyPath, '-out', certPath,
    ])
  } catch (error) {
    throw new Error(`making a self-signed certificate with openssl failed: ${(error as Error).message}. Install openssl (scripts/setup.sh --test)`)
  }
  return { certPath, keyPath }
}

/** One request on its own connection; true on the expected status. */
function probe(url: string, status: number): Promise<boolean> {
  return new Promise((resolve) => {
    const request = (url.startsWith('https:') ? httpsRequest : httpRequest)(url, { agent: false, rejectUnauthorized: false, timeout: 2000 }, (response) => {
      response.resume()
      response.once('end', () => resolve(response.statusCode === status))
    })
    request.once('error', () => resolve(false))
    request.once('timeout', () => request.destroy())
    request.end()
  })
}

/** One HTTP/2 request with prior knowledge on its own connection; true on the expected status. */
function probeH2c(url: string, status: number): Promise<boolean> {
  return new Promise((resolve) => {
    const session = http2Connect(url)
    const done = (ok: boolean): void => {
      session.destroy()
      resolve(ok)
    }
    // an idle connection is given up, as probe's requests are: the poll around it asks again
    session.setTimeout(2000, () => done(false))
    session.once('error', () => done(false))
    const request = session.request({ ':path': new URL(url).pathname })
    request.once('response', (headers) => done(headers[':status'] === status))
    request.once('error', () => done(false))
    request.end()
  })
}

function childrenOf(pid: number): number[] {
  try {
    const text = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim()
    return text === '' ? [] : text.split(' ').map(Number)
  } catch {
    return []
  }
}

/** Field 22 of /proc/<pid>/stat: start time, which tells a process from a later one with its pid. */
function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
  } catch {
    return undefined
  }
}

async function poll(condition: () => boolean | Promise<boolean>, what: string, timeoutMs: number, details: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${details()}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** Workers run as www-data when nginx starts as root, as Debian's packaged nginx runs them. */
function workerUser(): string | undefined {
  if (process.getuid?.() !== 0) return undefined
  return /^www-data:/m.test(readFileSync('/etc/group', 'utf8')) ? 'www-data www-data' : 'nobody nogroup'
}

async function prepareDirectory(options: NginxOptions, dir: string): Promise<Layout> {
  // the workers (www-data) read the site and the certificate; the master (root) writes the logs
  await chmod(dir, 0o755)
  await mkdir(join(dir, 'www'), { mode: 0o755 })
  await mkdir(join(dir, 'temp'), { mode: 0o755 })
  await writeFile(join(dir, 'www', 'index.html'), NGINX_SMALL_PAGE, { mode: 0o644 })
  await writeFile(join(dir, 'www', 'big'), NGINX_BIG_BODY, { mode: 0o644 })
  await writeFile(join(dir, 'www', 'echo'), NGINX_ECHO_REPLY, { mode: 0o644 })
  const { certPath, keyPath } = await makeCertificate(dir)
  await chmod(keyPath, 0o600)
  return {
    dir,
    port: options.http === false ? undefined : await freePort(),
    tlsPort: options.tls === true ? await freePort() : undefined,
    h2Port: options.http2 === true ? await freePort() : undefined,
    h2cPort: options.http2 === true ? await freePort() : undefined,
    certPath,
    keyPath,
    user: workerUser(),
  }
}

/** Starts nginx (and its backend with `proxy`) and resolves once every listener answers and every worker runs. */
export async function startNginx(options: NginxOptions = {}): Promise<Nginx> {
  if (!existsSync(NGINX_BINARY)) throw new Error(`${NGINX_BINARY} is missing; install Debian's nginx with: scripts/setup.sh --test (or apt-get install -y nginx)`)
  if (options.http === false && options.tls !== true && options.http2 !== true) throw new Error('startNginx: with http: false, tls or http2 must be true, or nginx has no listener')
  const backend = options.proxy === true ? await startNginx({ keepalive: options.keepalive, sendfile: options.sendfile }) : undefined
  try {
    return await startOne(options, backend)
  } catch (error) {
    await backend?.stop()
    throw error
  }
}

async function startOne(options: NginxOptions, backend: Nginx | undefined): Promise<Nginx> {
  const dir = await mkdtemp(join(tmpdir(), 'periscope-nginx-'))
  const layout = { ...(await prepareDirectory(options, dir)), backendPort: backend?.port }
  const confPath = join(dir, 'nginx.conf')
  await writeFile(confPath, configuration(options, layout))
  const accessLogPath = join(dir, 'access.log')
  const errorLogPath = join(dir, 'error.log')

  const child: ChildProcess = spawn(NGINX_BINARY, ['-c', confPath, '-p', dir, '-e', errorLogPath, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const pid = child.pid
  if (pid === undefined) throw new Error(`spawning ${NGINX_BINARY} failed`)
  const errors = (): string => {
    let log = ''
    try {
      log = readFileSync(errorLogPath, 'utf8')
    } catch {}
    return `nginx error log (${errorLogPath}):\n${log.slice(-3000)}${stderr === '' ? '' : `\nnginx stderr:\n${stderr.slice(-2000)}`}`
  }
  const workers = (): number[] => childrenOf(pid)
  const workerCount = options.workerProcesses ?? 1
  const port = layout.port
  const tlsPort = layout.tlsPort
  const baseUrl = port === undefined ? undefined : `http://127.0.0.1:${port}`
  const tlsUrl = tlsPort === undefined ? undefined : `https://127.0.0.1:${tlsPort}`
  const h2Url = layout.h2Port === undefined ? undefined : `https://127.0.0.1:${layout.h2Port}`
  const h2cUrl = layout.h2cPort === undefined ? undefined : `http://127.0.0.1:${layout.h2cPort}`

  const stop = async (): Promise<void> => {
    const running = workers().map((worker) => ({ worker, started: startTimeOf(worker) }))
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
      await exited
      clearTimeout(timer)
    }
    // a master that was killed leaves its workers running: end them too
    for (const { worker, started } of running) if (startTimeOf(worker) === started) process.kill(worker, 'SIGKILL')
    await poll(() => running.every(({ worker, started }) => startTimeOf(worker) !== started), 'the nginx workers to exit', 10_000, errors)
    await rm(dir, { recursive: true, force: true })
    await backend?.stop()
  }

  try {
    await poll(async () => {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`nginx exited during start-up (${child.exitCode ?? child.signalCode}).\n${errors()}`)
      if (workers().length !== workerCount) return false
      // the TLS h2 listener also answers HTTP/1.1 to a client that does not offer h2 in ALPN
      for (const url of [baseUrl, tlsUrl, h2Url]) if (url !== undefined && !(await probe(`${url}/periscope-ready`, 204))) return false
      if (h2cUrl !== undefined && !(await probeH2c(`${h2cUrl}/periscope-ready`, 204))) return false
      return true
    }, `nginx (${confPath}) to answer on ${[port, tlsPort, layout.h2Port, layout.h2cPort].filter((p) => p !== undefined).join(' and ')} with ${workerCount} worker(s)`, 20_000, errors)
  } catch (error) {
    await stop()
    throw error
  }

  const accessLog = (): AccessLogEntry[] => {
    try {
      return parseAccessLog(readFileSync(accessLogPath, 'utf8'))
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return []
      throw error
    }
  }
  return {
    port,
    tlsPort,
    baseUrl,
    tlsUrl,
    h2Port: layout.h2Port,
    h2Url,
    h2cPort: layout.h2cPort,
    h2cUrl,
    pid,
    certPath: layout.certPath,
    dir,
    accessLogPath,
    backend,
    workerPids: workers,
    accessLog,
    async waitForAccessLog(done, timeoutMs = 10_000) {
      const check = typeof done === 'number' ? (entries: AccessLogEntry[]) => entries.length >= done : done
      let entries: AccessLogEntry[] = []
      await poll(() => check((entries = accessLog())), `nginx access log lines (${accessLogPath})`, timeoutMs, () =>
        `${entries.length} line(s):\n${entries.map((e) => e.line).join('\n').slice(-3000)}\n${errors()}`)
      return entries
    },
    errors,
    stop,
  }
}
