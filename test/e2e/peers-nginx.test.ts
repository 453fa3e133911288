// The real-server harness the HTTP end-to-end tests and the overhead benchmark stand on
// (test/peers/nginx.ts, test/peers/clients.ts): Debian's nginx answers every documented location as
// documented, its access log holds exactly the requests made (matched by the client's port), TLS
// serves the certificate the harness made, the reverse proxy reaches the backend with the
// traceparent, the raw client's writes and pipelining reach nginx as intended, wrk's count agrees
// with the access log, and stop() leaves no nginx process or file behind.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { connectHttp, getRequest, runCurl, runWrk } from '../peers/clients.ts'
import { NGINX_BIG_BODY, NGINX_ECHO_REPLY, NGINX_SMALL_PAGE, startNginx } from '../peers/nginx.ts'
import type { AccessLogEntry, Nginx, NginxOptions } from '../peers/nginx.ts'

const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'

async function nginxFor(t: TestContext, options: NginxOptions = {}): Promise<Nginx> {
  const nginx = await startNginx(options)
  t.after(() => nginx.stop())
  return nginx
}

/** Every process whose command line mentions `text`. */
function processesMentioning(text: string): string[] {
  const found: string[] = []
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ')
      if (cmdline.includes(text)) found.push(`${pid} ${cmdline}`)
    } catch {}
  }
  return found
}

const summary = (entries: AccessLogEntry[]): string[][] =>
  entries.map((e) => [e.method, e.uri, e.protocol, String(e.status), String(e.remotePort), String(e.connectionRequests)])

test('every location answers as documented on one keep-alive connection, and the access log holds exactly those requests', async (t) => {
  const nginx = await nginxFor(t)
  const paths = ['/', '/big', '/status/404', '/status/500', '/chunked', '/chunked-big']
  const run = await runCurl(paths.map((path) => nginx.baseUrl + path), { headers: { traceparent: TRACEPARENT } })
  assert.equal(run.exitCode, 0, run.stderr)
  const [page, big, missing, failed, chunked, chunkedBig] = run.transfers
  assert.deepEqual(run.transfers.map((x) => x.status), [200, 200, 404, 500, 200, 200])
  assert.deepEqual(run.transfers.map((x) => x.newConnections), [1, 0, 0, 0, 0, 0], 'curl reused its first connection for every URL')
  assert.equal(new Set(run.transfers.map((x) => x.localPort)).size, 1)
  assert.equal(page!.bodyBytes, Buffer.byteLength(NGINX_SMALL_PAGE))
  assert.deepEqual(page!.headers['content-length'], [String(Buffer.byteLength(NGINX_SMALL_PAGE))])
  assert.equal(big!.bodyBytes, 65536)
  assert.equal(NGINX_BIG_BODY.length, 65536)
  assert.match(String(missing!.headers['content-type']), /text\/html/)
  assert.equal(failed!.bodyBytes, 'internal error\n'.length)
  assert.deepEqual(failed!.headers.connection, ['keep-alive'], 'the 500 keeps the connection open')
  for (const transfer of [chunked!, chunkedBig!]) {
    assert.deepEqual(transfer.headers['transfer-encoding'], ['chunked'])
    assert.equal(transfer.headers['content-length'], undefined)
  }
  assert.equal(chunked!.bodyBytes, Buffer.byteLength(NGINX_SMALL_PAGE))
  assert.equal(chunkedBig!.bodyBytes, 65536)

  const entries = await nginx.waitForAccessLog(paths.length)
  const port = String(page!.localPort)
  assert.deepEqual(summary(entries), paths.map((path, i) => ['GET', path, 'HTTP/1.1', String(run.transfers[i]!.status), port, String(i + 1)]))
  assert.ok(entries.every((e) => e.scheme === 'http' && e.serverPort === nginx.port && e.traceparent === TRACEPARENT && e.upstreamAddress === undefined))
  assert.ok(entries.every((e) => nginx.workerPids().includes(e.workerPid)))
  assert.equal(new Set(entries.map((e) => e.connection)).size, 1)
  for (const [i, entry] of entries.entries()) {
    const transfer = run.transfers[i]!
    const payload = transfer.headerBytes + transfer.bodyBytes
    if (entry.uri.startsWith('/chunked')) assert.ok(entry.bytesSent > payload, `chunk framing is counted in ${entry.line}`)
    else assert.equal(entry.bytesSent, payload, entry.line)
    assert.equal(entry.requestLength, transfer.requestBytes, entry.line)
  }
  // the readiness probe is not logged, and nothing else appears later
  const again = await runCurl(nginx.baseUrl + '/')
  assert.equal((await nginx.waitForAccessLog(paths.length + 1)).length, paths.length + 1)
  assert.equal(nginx.accessLog().at(-1)!.remotePort, again.transfers[0]!.localPort)
})

test('POST bodies are read and answered, HTTP/1.0 is answered and closed', async (t) => {
  const nginx = await nginxFor(t)
  const body = Buffer.alloc(10_000, 'p')
  const post = await runCurl(nginx.baseUrl + '/echo', { body })
  assert.equal(post.transfers[0]!.status, 200)
  assert.equal(post.transfers[0]!.uploadBytes, body.length)
  const old = await runCurl([nginx.baseUrl + '/', nginx.baseUrl + '/big'], { http10: true })
  // nginx answers HTTP/1.0 requests with an HTTP/1.1 status line, and closes
  assert.deepEqual(old.transfers.map((x) => [x.status, x.newConnections, x.headers.connection?.[0]]), [[200, 1, 'close'], [200, 1, 'close']])
  const entries = await nginx.waitForAccessLog(3)
  assert.deepEqual(entries.map((e) => [e.method, e.uri, e.protocol, e.status, e.remotePort]), [
    ['POST', '/echo', 'HTTP/1.1', 200, post.transfers[0]!.localPort],
    ['GET', '/', 'HTTP/1.0', 200, old.transfers[0]!.localPort],
    ['GET', '/big', 'HTTP/1.0', 200, old.transfers[1]!.localPort],
  ])
  assert.equal(post.transfers[0]!.bodyBytes, NGINX_ECHO_REPLY.length)
  assert.equal(entries[0]!.requestLength, post.transfers[0]!.requestBytes, 'nginx read the whole body before it answered')
  assert.ok(entries[0]!.requestLength > body.length)
})

test('TLS serves the self-signed P-256 certificate the harness made, and curl verifies it', async (t) => {
  const nginx = await nginxFor(t, { tls: true })
  const text = execFileSync('openssl', ['x509', '-in', nginx.certPath, '-noout', '-text'], { encoding: 'utf8' })
  assert.match(text, /Subject: CN ?= ?localhost/)
  assert.match(text, /NIST CURVE: P-256|prime256v1/)
  assert.match(text, /IP Address:127\.0\.0\.1/)
  const run = await runCurl([nginx.tlsUrl + '/', nginx.tlsUrl + '/chunked-big'], { cacert: nginx.certPath })
  assert.equal(run.exitCode, 0, run.stderr)
  assert.deepEqual(run.transfers.map((x) => [x.status, x.bodyBytes, x.newConnections]), [[200, Buffer.byteLength(NGINX_SMALL_PAGE), 1], [200, 65536, 0]])
  const plain = await runCurl(nginx.baseUrl + '/')
  const entries = await nginx.waitForAccessLog(3)
  assert.deepEqual(entries.map((e) => [e.scheme, e.serverPort, e.uri, e.remotePort]), [
    ['https', nginx.tlsPort, '/', run.transfers[0]!.localPort],
    ['https', nginx.tlsPort, '/chunked-big', run.transfers[0]!.localPort],
    ['http', nginx.port, '/', plain.transfers[0]!.localPort],
  ])
  const tls = await connectHttp(nginx.tlsPort!, { tls: true })
  t.after(() => tls.close())
  const response = await tls.request(getRequest('/chunked'))
  assert.equal(response.body.toString(), NGINX_SMALL_PAGE)
  assert.equal(response.chunked, true)
})

test('the raw client: a request in several writes is read piece by piece, pipelined requests are answered in order', async (t) => {
  // what the server side sees, shown on a server that reports each read
  const reads: number[] = []
  const server = createServer((socket) => socket.on('data', (chunk) => reads.push(chunk.length)))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => server.close())
  const probe = await connectHttp((server.address() as { port: number }).port)
  await probe.send(['GE', 'T / HT', 'TP/1.1\r\n', 'Host: x\r\n\r\n'], { separateReads: true })
  assert.deepEqual(reads, [2, 6, 8, 11])
  await probe.close()

  const nginx = await nginxFor(t)
  const conn = await connectHttp(nginx.port!)
  t.after(() => conn.close())
  const pieces = ['GET /b', 'ig HTTP/1.1\r\nHo', 'st: 127.0.0.1\r\ntraceparent: ', `${TRACEPARENT}\r\n`, '\r\n']
  await conn.send(pieces, { separateReads: true })
  const [split] = await conn.responses(1)
  assert.equal(split!.status, 200)
  assert.ok(split!.body.equals(NGINX_BIG_BODY))
  await conn.send([getRequest('/chunked-big') + getRequest('/status/404') + getRequest('/')])
  const pipelined = await conn.responses(3)
  assert.deepEqual(pipelined.map((r) => [r.status, r.chunked, r.body.length]), [[200, true, 65536], [404, false, pipelined[1]!.body.length], [200, false, Buffer.byteLength(NGINX_SMALL_PAGE)]])
  assert.ok(pipelined[0]!.body.equals(NGINX_BIG_BODY))
  const entries = await nginx.waitForAccessLog(4)
  assert.deepEqual(summary(entries), [
    ['GET', '/big', 'HTTP/1.1', '200', String(conn.localPort), '1'],
    ['GET', '/chunked-big', 'HTTP/1.1', '200', String(conn.localPort), '2'],
    ['GET', '/status/404', 'HTTP/1.1', '404', String(conn.localPort), '3'],
    ['GET', '/', 'HTTP/1.1', '200', String(conn.localPort), '4'],
  ])
  assert.equal(entries[0]!.requestLength, pieces.join('').length)
  assert.equal(entries[0]!.traceparent, TRACEPARENT)
  assert.deepEqual(entries.map((e) => e.bytesSent), [split!.wireBytes, ...pipelined.map((r) => r.wireBytes)])
  const last = await conn.request(getRequest('/', { Connection: 'close' }))
  assert.equal(last.headers.connection, 'close')
  await conn.closed()
})

test('the reverse proxy reaches the backend over a kept-alive upstream connection and forwards traceparent', async (t) => {
  const nginx = await nginxFor(t, { proxy: true })
  const backend = nginx.backend!
  assert.ok(backend.port !== undefined && backend.port !== nginx.port)
  const run = await runCurl([nginx.baseUrl + '/proxy/big', nginx.baseUrl + '/proxy/status/500'], { headers: { traceparent: TRACEPARENT } })
  assert.deepEqual(run.transfers.map((x) => [x.status, x.bodyBytes]), [[200, 65536], [500, 'internal error\n'.length]])
  const front = await nginx.waitForAccessLog(2)
  const back = await backend.waitForAccessLog(2)
  assert.deepEqual(front.map((e) => [e.uri, e.status, e.upstreamAddress, e.traceparent]), [
    ['/proxy/big', 200, `127.0.0.1:${backend.port}`, TRACEPARENT],
    ['/proxy/status/500', 500, `127.0.0.1:${backend.port}`, TRACEPARENT],
  ])
  assert.deepEqual(back.map((e) => [e.uri, e.status, e.protocol, e.traceparent, e.connectionRequests]), [
    ['/big', 200, 'HTTP/1.1', TRACEPARENT, 1],
    ['/status/500', 500, 'HTTP/1.1', TRACEPARENT, 2],
  ])
  assert.equal(back[0]!.remotePort, back[1]!.remotePort, 'one upstream connection, kept alive')
  assert.notEqual(back[0]!.remotePort, run.transfers[0]!.localPort)
  assert.ok(back.every((e) => backend.workerPids().includes(e.workerPid)))
})

test('options: worker processes and keep-alive limits', async (t) => {
  const nginx = await nginxFor(t, { workerProcesses: 2, keepalive: { requests: 2 } })
  assert.equal(nginx.workerPids().length, 2)
  const run = await runCurl([1, 2, 3].map(() => nginx.baseUrl + '/'))
  assert.deepEqual(run.transfers.map((x) => [x.newConnections, x.headers.connection?.[0]]), [[1, 'keep-alive'], [0, 'close'], [1, 'keep-alive']])
  const closed = await nginxFor(t, { keepalive: false })
  const once = await runCurl([closed.baseUrl + '/', closed.baseUrl + '/'])
  assert.deepEqual(once.transfers.map((x) => [x.newConnections, x.headers.connection?.[0]]), [[1, 'close'], [1, 'close']])
})

test('wrk 2 s: its count agrees with the access log, within the requests in flight when it stopped', async (t) => {
  const nginx = await nginxFor(t)
  const connections = 50
  const wrk = await runWrk({ url: nginx.baseUrl + '/', threads: 2, connections, durationS: 2 })
  assert.deepEqual(wrk.errors, { connect: 0, read: 0, write: 0, timeout: 0, status: 0 })
  assert.ok(wrk.requests > 1000, `wrk made only ${wrk.requests} requests`)
  assert.ok(wrk.latencyUs.p50 > 0 && wrk.latencyUs.p50 <= wrk.latencyUs.p99 && wrk.latencyUs.p99 <= wrk.latencyUs.max)
  // nginx logs a request once it has answered it; wrk has exited, so every answer is logged by now
  // or within moments
  const entries = await nginx.waitForAccessLog((lines) => lines.length >= wrk.requests)
  const inFlight = entries.length - wrk.requests
  t.diagnostic(`wrk counted ${wrk.requests} requests, nginx logged ${entries.length}: ${inFlight} answered after wrk stopped reading`)
  assert.ok(inFlight >= 0 && inFlight <= connections, `nginx logged ${entries.length} requests, wrk counted ${wrk.requests}: more than ${connections} apart`)
  assert.ok(entries.every((e) => e.status === 200 && e.uri === '/'))
  // wrk read whole responses only: its bytes are those of `requests` of the logged responses
  // (a connection's 1000th says `Connection: close` instead of `keep-alive`, 5 bytes less)
  const sizes = entries.map((e) => e.bytesSent).sort((a, b) => a - b)
  const sum = (list: number[]): number => list.reduce((a, b) => a + b, 0)
  assert.ok(wrk.bytes >= sum(sizes.slice(0, wrk.requests)) && wrk.bytes <= sum(sizes.slice(-wrk.requests)), `wrk read ${wrk.bytes} bytes`)
  // nginx closes a keep-alive connection after 1000 requests, and wrk reconnects
  const perConnection = Map.groupBy(entries, (e) => e.connection)
  assert.ok(perConnection.size >= connections)
  assert.ok([...perConnection.values()].every((list) => list.length <= 1000))
})

test('stop() ends the master and its workers and removes the directory', async (t) => {
  const nginx = await nginxFor(t, { tls: true, proxy: true, workerProcesses: 2 })
  const pids = [nginx.pid, ...nginx.workerPids(), nginx.backend!.pid, ...nginx.backend!.workerPids()]
  assert.equal(pids.length, 5, 'two masters, two workers in front, one in the backend')
  const dirs = [nginx.dir, nginx.backend!.dir]
  await nginx.stop()
  assert.deepEqual(pids.filter((pid) => existsSync(`/proc/${pid}/cmdline`) && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('nginx')), [])
  for (const dir of dirs) {
    assert.equal(existsSync(dir), false)
    assert.deepEqual(processesMentioning(dir), [])
  }
})
