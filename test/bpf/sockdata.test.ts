/**
 * The sockdata object on the real kernel. Two python3 processes (test/bpf/fixtures/sockdata-peer.py)
 * talk over loopback with known bytes, and the records are checked field by field. This process
 * is Periscope here (openLibraryObject wrote its tgid into self_tgids), so the traffic under test
 * runs in children; tests that need "nothing was sent" drain the rings after the children have
 * finished, when every record their syscalls produced is already in the ring.
 */
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createServer, connect, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, beforeEach, test } from 'node:test'
import { decodeSockEvent } from '../../bpf/lib/sockdata.types.ts'
import { forEachRecord } from '../../runtime/bpf/batch.ts'
import { attachUprobe, type Link } from '../../runtime/bpf/links.ts'
import { waitFor } from './kernel.ts'
import {
  AF_INET, AF_INET6, AF_UNIX, CLIENT, CLOSE, CONNECT_FAILED, Capture, DATA, EGRESS, FLAG_LOSS, FLAG_PREEXISTING, FLAG_SENDFILE, FLAG_TLS, FLAG_TRUNCATED,
  HTTP, HTTP2, INGRESS, KAFKA, MYSQL, OPEN, POSTGRES, Peer, REDIS, REQUEST, RESPONSE, type Rec, SERVER, type Step,
  exchange, hex, killPeers, recv, requestResponse, send, startClient, startServer, toRec,
} from './sockdata-peers.ts'

const PYTHON = '/usr/bin/python3'
const ECONNREFUSED = 111

let capture: Capture
const work = mkdtempSync(join(tmpdir(), 'periscope-sockdata-'))

before(async () => {
  capture = await Capture.open()
})
beforeEach(() => capture.reset())
after(async () => {
  killPeers()
  await capture?.close()
  rmSync(work, { recursive: true, force: true })
})

/** Data records of a process in one direction on one ring, in order. */
const flow = (pid: number, stream: string, direction: number) => capture.of(pid, stream).filter((r) => r.kind === DATA && r.direction === direction)

/** The positions of consecutive records are the bytes before each: nothing lost, nothing twice. */
function assertContiguous(records: Rec[], startAt = 0): void {
  let position = startAt
  for (const r of records) {
    assert.equal(r.position, position, `record at ${r.position}, expected ${position}`)
    position += r.bytes
  }
}

test('a request and its response: exact records on both ends, and their open and close on connections', async () => {
  capture.want(HTTP)
  const { server, client, port, clientPort } = await exchange(...requestResponse())

  const [request] = flow(client.pid, 'http', EGRESS)
  assert.deepEqual(capture.of(client.pid, 'http').map((r) => [r.direction, r.bytes]), [[EGRESS, REQUEST.length], [INGRESS, RESPONSE.length]])
  assert.deepEqual(capture.of(server.pid, 'http').map((r) => [r.direction, r.bytes]), [[INGRESS, REQUEST.length], [EGRESS, RESPONSE.length]])
  const clientEnd = { pid: client.pid, tid: client.pid, comm: 'python3', family: AF_INET, local: '127.0.0.1', remote: '127.0.0.1', local_port: clientPort, remote_port: port, role: CLIENT, protocol: HTTP, flags: 0, kind: DATA }
  const serverEnd = { ...clientEnd, pid: server.pid, tid: server.pid, local_port: port, remote_port: clientPort, role: SERVER }
  const check = (r: Rec, end: typeof clientEnd, direction: number, text: string) => {
    assert.deepEqual({ ...r, start_ns: 0, end_ns: 0, conn_id: 0, fd: 0, stream: '', data: null, context: 0 }, { ...end, start_ns: 0, end_ns: 0, conn_id: 0, fd: 0, stream: '', data: null, context: 0, direction, position: 0, bytes: text.length, captured: text.length })
    assert.equal(r.data.toString(), text)
    assert.ok(r.start_ns > 0 && r.start_ns <= r.end_ns, `start ${r.start_ns} <= end ${r.end_ns}`)
    assert.ok(r.fd >= 3)
  }
  const [clientOut, clientIn] = capture.of(client.pid, 'http')
  const [serverIn, serverOut] = capture.of(server.pid, 'http')
  check(clientOut, clientEnd, EGRESS, REQUEST)
  check(clientIn, clientEnd, INGRESS, RESPONSE)
  check(serverIn, serverEnd, INGRESS, REQUEST)
  check(serverOut, serverEnd, EGRESS, RESPONSE)
  assert.equal(request.conn_id, clientIn.conn_id)
  assert.equal(clientOut.fd, clientIn.fd)
  assert.equal(serverIn.conn_id, serverOut.conn_id)
  assert.notEqual(clientOut.conn_id, serverIn.conn_id)
  // the server answered after the request arrived
  assert.ok(serverIn.end_ns <= serverOut.start_ns)
  // the server's request and its response carry the request's thread context; the client served none
  assert.ok(serverIn.context > 0)
  assert.equal(serverOut.context, serverIn.context)
  assert.deepEqual([clientOut.context, clientIn.context], [0, 0])

  const lifecycle = (pid: number) => capture.of(pid, 'connections').map((r) => [r.kind, r.conn_id, r.fd, r.role, r.protocol, r.bytes, r.captured, r.data.length, r.local_port, r.remote_port])
  assert.deepEqual(lifecycle(client.pid), [
    [OPEN, clientOut.conn_id, clientOut.fd, CLIENT, 0, 0, 0, 0, clientPort, port],
    [CLOSE, clientOut.conn_id, clientOut.fd, CLIENT, HTTP, 0, 0, 0, clientPort, port],
  ])
  assert.deepEqual(lifecycle(server.pid), [
    [OPEN, serverIn.conn_id, serverIn.fd, SERVER, 0, 0, 0, 0, port, clientPort],
    [CLOSE, serverIn.conn_id, serverIn.fd, SERVER, HTTP, 0, 0, 0, port, clientPort],
  ])
})

test('a connection the kernel closes (its process exited without close(), or exec\'d with it close-on-exec) gets its close record then', async () => {
  capture.want(HTTP)
  const lifecycle = (pid: number) => capture.of(pid, 'connections').map((r) => [r.kind, r.conn_id, r.fd, r.role, r.protocol])
  /** A request and its response; the client's socket then ends as `end` says; the server closes its own. */
  const run = async (end: Record<string, unknown>) => {
    const [serverSteps, clientSteps] = requestResponse()
    const { server, port } = startServer(serverSteps)
    const { client } = await startClient(await port, clientSteps, end)
    await server.finished()
    await client.line('done')
    const [sent] = flow(client.pid, 'http', EGRESS)
    return { client, opened: [OPEN, sent!.conn_id, sent!.fd, CLIENT, 0], closed: [CLOSE, sent!.conn_id, sent!.fd, CLIENT, HTTP] }
  }

  // exit_group from a process of two threads: the close comes at the last thread's exit
  const exited = await run({ end: 'exit', thread: true })
  await exited.client.finished()
  assert.deepEqual(lifecycle(exited.client.pid), [exited.opened, exited.closed])

  // exec: Python's sockets are close-on-exec, so the connection is closed before the new image runs
  const cloexec = await run({ end: 'exec' })
  await cloexec.client.line('exec')
  assert.deepEqual(lifecycle(cloexec.client.pid), [cloexec.opened, cloexec.closed])
  cloexec.client.resume()
  await cloexec.client.finished()
  assert.deepEqual(lifecycle(cloexec.client.pid), [cloexec.opened, cloexec.closed], 'one close, not another at the exit')

  // an inheritable socket stays open across the exec, and closes at the new image's exit
  const kept = await run({ end: 'exec', inheritable: true })
  await kept.client.line('exec')
  assert.deepEqual(lifecycle(kept.client.pid), [kept.opened])
  kept.client.resume()
  await kept.client.finished()
  assert.deepEqual(lifecycle(kept.client.pid), [kept.opened, kept.closed])
})

test('writev, readv, sendmsg and recvmsg_into are gathered across their iovecs; sendmmsg and recvmmsg give one record per message', async () => {
  capture.want(HTTP)
  const first = ['GET /gather HTTP/1.1\r\n', 'Host: a\r\n', 'X-Part: 3\r\n\r\n']
  const second = ['GET /second', ' HTTP/1.1\r\n', '\r\n']
  const third = [['GET /m1 HTTP/1.1\r\n', '\r\n'], ['GET /m2 HTTP/1.1\r\n\r\n']]
  const length = (parts: string[]) => parts.join('').length
  const { server, port } = startServer([
    ['wait'], ['readv', [5, 10, 100]],
    ['wait'], ['recvmsg_into', [4, 4, 200]],
    ['wait'], ['recvmmsg', [[4, 6], [100]]], send(RESPONSE),
  ])
  const { client } = await startClient(await port, [
    ['writev', first.map(hex)], ['wait'],
    ['sendmsg', second.map(hex)], ['wait'],
    ['sendmmsg', third.map((parts) => parts.map(hex))], ['wait'], recv(RESPONSE),
  ])
  // each read runs only once the data it reads is in the socket: one call gets all of it
  await client.line('waiting', 1)
  server.resume()
  assert.equal(await server.line('readv '), `readv ${length(first)}`)
  client.resume()
  await client.line('waiting', 2)
  server.resume()
  assert.equal(await server.line('recvmsg_into '), `recvmsg_into ${length(second)}`)
  client.resume()
  await client.line('waiting', 3)
  server.resume()
  // the first message takes 10 bytes across its two iovecs, the second the rest
  const sentByMmsg = third.flat().join('')
  assert.equal(await server.line('recvmmsg '), `recvmmsg 10 ${sentByMmsg.length - 10}`)
  client.resume()
  await Promise.all([server.finished(), client.finished()])

  const sent = flow(client.pid, 'http', EGRESS)
  assert.deepEqual(sent.map((r) => r.data.toString()), [first.join(''), second.join(''), third[0].join(''), third[1].join('')])
  assert.deepEqual(sent.map((r) => r.bytes), sent.map((r) => r.captured))
  assertContiguous(sent)
  const received = flow(server.pid, 'http', INGRESS)
  assert.deepEqual(received.slice(0, 2).map((r) => [r.data.toString(), r.bytes, r.position]), [
    [first.join(''), length(first), 0],
    [second.join(''), length(second), length(first)],
  ])
  assert.deepEqual(received.slice(2).map((r) => [r.data.toString(), r.bytes]), [[sentByMmsg.slice(0, 10), 10], [sentByMmsg.slice(10), sentByMmsg.length - 10]])
  assertContiguous(received)
})

test('IPv6 connections carry 16-byte addresses; unix stream sockets are followed too, without addresses or role', async () => {
  capture.want(HTTP)
  const { client, server, port, clientPort } = await exchange(...requestResponse(), { family: 'inet6' })
  const loopback6 = '00000000000000000000000000000001'
  assert.deepEqual(capture.of(client.pid, 'http').map((r) => [r.family, r.local, r.remote, r.local_port, r.remote_port, r.role, r.data.toString()]), [
    [AF_INET6, loopback6, loopback6, clientPort, port, CLIENT, REQUEST],
    [AF_INET6, loopback6, loopback6, clientPort, port, CLIENT, RESPONSE],
  ])
  assert.deepEqual(capture.of(server.pid, 'http').map((r) => [r.family, r.local_port, r.remote_port, r.role]), [[AF_INET6, port, clientPort, SERVER], [AF_INET6, port, clientPort, SERVER]])

  const pair = new Peer({ role: 'pair', request: hex(REQUEST), response: hex(RESPONSE) })
  await pair.finished()
  const records = capture.of(pair.pid, 'http')
  assert.deepEqual(records.map((r) => [r.family, r.direction, r.role, r.local_port, r.remote_port, r.position, r.data.toString()]), [
    [AF_UNIX, EGRESS, 0, 0, 0, 0, REQUEST],
    [AF_UNIX, INGRESS, 0, 0, 0, 0, REQUEST],
    [AF_UNIX, EGRESS, 0, 0, 0, 0, RESPONSE],
    [AF_UNIX, INGRESS, 0, 0, 0, 0, RESPONSE],
  ])
  // the two ends are two connections
  assert.equal(new Set(records.map((r) => r.conn_id)).size, 2)
})

test('reads and writes of plain files and pipes are not captured, even when they look like HTTP', async () => {
  capture.want(HTTP)
  const files = new Peer({ role: 'files', path: join(work, 'request.txt'), data: hex(REQUEST) })
  await files.finished()
  assert.deepEqual(capture.of(files.pid), [])
})

test('only claimed protocols leave the kernel, each on its own ring', async () => {
  capture.want(REDIS)
  const http = await exchange(...requestResponse())
  // the connection's lifecycle goes out while its protocol is unknown; its data and close do not
  for (const pid of [http.client.pid, http.server.pid]) assert.deepEqual(capture.of(pid).map((r) => [r.stream, r.kind]), [['connections', OPEN]])

  const ping = '*1\r\n$4\r\nPING\r\n'
  const redis = await exchange([recv(ping), send('+PONG\r\n')], [send(ping), recv('+PONG\r\n')])
  // order holds within a ring, not across rings
  const records = (stream: string) => capture.of(redis.client.pid, stream).map((r) => [r.kind, r.direction, r.protocol, r.data.toString()])
  assert.deepEqual(records('redis'), [[DATA, EGRESS, REDIS, ping], [DATA, INGRESS, REDIS, '+PONG\r\n']])
  assert.deepEqual(records('connections'), [[OPEN, 0, 0, ''], [CLOSE, 0, REDIS, '']])
  assert.deepEqual(capture.of(redis.client.pid).filter((r) => r.stream !== 'redis' && r.stream !== 'connections'), [])
})

test('each protocol is recognised from its first bytes and routed to its ring', async () => {
  for (const protocol of [HTTP, HTTP2, REDIS, POSTGRES, MYSQL, KAFKA]) capture.want(protocol)
  const startup = Buffer.concat([Buffer.from('0000000000030000', 'hex'), Buffer.from('user\0postgres\0database\0db\0\0')])
  startup.writeUInt32BE(startup.length, 0)
  const greetingBody = Buffer.concat([Buffer.from([10]), Buffer.from('8.0.36\0'), Buffer.alloc(20, 1)])
  // ApiVersions v0: size, api key 18, version 0, correlation id 1, client id "test"
  const apiVersions = Buffer.from('0000000e00120000000000010004' + hex('test'), 'hex')
  const cases: { ring: string; protocol: number; serverFirst?: boolean; client: Buffer; server: Buffer }[] = [
    { ring: 'http2', protocol: HTTP2, client: Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), server: Buffer.from('000000040000000000', 'hex') },
    { ring: 'postgres', protocol: POSTGRES, client: startup, server: Buffer.from('520000000800000000', 'hex') },
    // MySQL's server speaks first: its greeting, packet 0 of protocol 10
    { ring: 'mysql', protocol: MYSQL, serverFirst: true, client: Buffer.from([5, 0, 0, 1, 1, 2, 3, 4, 5]), server: Buffer.concat([Buffer.from([greetingBody.length, 0, 0, 0]), greetingBody]) },
    { ring: 'kafka', protocol: KAFKA, client: apiVersions, server: Buffer.from('00000006000000010000', 'hex') },
  ]
  for (const c of cases) {
    const steps: [Step[], Step[]] = c.serverFirst === true
      ? [[send(c.server), recv(c.client)], [recv(c.server), send(c.client)]]
      : [[recv(c.client), send(c.server)], [send(c.client), recv(c.server)]]
    const { server, client } = await exchange(...steps)
    const expected = c.serverFirst === true ? [[c.ring, c.protocol, INGRESS, hex(c.server)], [c.ring, c.protocol, EGRESS, hex(c.client)]] : [[c.ring, c.protocol, EGRESS, hex(c.client)], [c.ring, c.protocol, INGRESS, hex(c.server)]]
    const data = (pid: number) => capture.of(pid).filter((r) => r.kind === DATA).map((r) => [r.stream, r.protocol, r.direction, r.data.toString('hex')])
    assert.deepEqual(data(client.pid), expected, `${c.ring}: the client's records`)
    assert.deepEqual(data(server.pid), expected.map(([ring, protocol, direction, bytes]) => [ring, protocol, 1 - (direction as number), bytes]), `${c.ring}: the server's records`)
  }
})

test('a connection whose first four records are nothing known is never sent, whatever follows', async () => {
  capture.want(HTTP)
  const junk = 'ping'
  const pingPong: [Step[], Step[]] = [[recv(junk), send(junk), recv(junk), send(junk)], [send(junk), recv(junk), send(junk), recv(junk)]]
  const { server, client } = await exchange([...pingPong[0], ...requestResponse()[0]], [...pingPong[1], ...requestResponse()[1]])
  for (const pid of [server.pid, client.pid]) assert.deepEqual(capture.of(pid).map((r) => [r.stream, r.kind]), [['connections', OPEN]])
})

test('an excluded port (either end) and the pid filter keep records in the kernel', async () => {
  capture.want(HTTP)
  const { server: listener, port: listening } = startServer(requestResponse()[0])
  const port = await listening
  const key = new Uint8Array(8)
  new DataView(key.buffer).setUint32(0, HTTP, true)
  new DataView(key.buffer).setUint32(4, port, true)
  capture.library.object.map('excluded_ports').update(key, new Uint8Array([1]))
  const { client } = await startClient(port, requestResponse()[1])
  await Promise.all([listener.finished(), client.finished()])
  for (const pid of [listener.pid, client.pid]) assert.deepEqual(capture.of(pid, 'http'), [])

  capture.reset()
  capture.want(HTTP, { pidFilter: true })
  const { server, port: filtered } = startServer(requestResponse()[0])
  capture.target(HTTP, server.pid)
  const other = await startClient(await filtered, requestResponse()[1])
  await Promise.all([server.finished(), other.client.finished()])
  assert.deepEqual(capture.of(server.pid, 'http').map((r) => r.data.toString()), [REQUEST, RESPONSE])
  assert.deepEqual(capture.of(other.client.pid), [])
})

test("Periscope's own traffic is not captured at either end, while its children's is", async () => {
  capture.want(HTTP)
  // Periscope (this process) serves: its client is not traced
  const server = createServer((socket) => {
    socket.once('data', () => socket.end(RESPONSE))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  try {
    const { client } = await startClient((server.address() as AddressInfo).port, requestResponse()[1])
    await client.finished()
    assert.deepEqual(capture.of(client.pid), [])
  } finally {
    server.close()
  }
  // Periscope connects: the server it talks to is not traced
  const { server: peer, port } = startServer(requestResponse()[0])
  const socket = connect(await port, '127.0.0.1')
  socket.write(REQUEST)
  let answer = ''
  socket.setEncoding('utf8').on('data', (chunk: string) => { answer += chunk })
  await peer.finished()
  await waitFor(() => answer === RESPONSE, 'the response in this process')
  socket.destroy()
  assert.deepEqual(capture.of(peer.pid), [])
  assert.deepEqual(capture.of(process.pid), [])
  // the same exchange between two children is traced
  const control = await exchange(...requestResponse())
  assert.equal(capture.of(control.client.pid, 'http').length, 2)
})

test('a refused connect gives a connect-failed record, blocking or not', async () => {
  capture.want(HTTP)
  // a port nothing listens on: bound and closed here
  const probe = createServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const port = (probe.address() as AddressInfo).port
  await new Promise<void>((resolve) => probe.close(() => resolve()))

  const blocking = new Peer({ role: 'client', port })
  assert.equal(await blocking.line('connect failed'), `connect failed ${ECONNREFUSED}`)
  await blocking.exited()
  const nonblocking = new Peer({ role: 'client', port, nonblocking: true })
  assert.equal(await nonblocking.line('connect '), `connect ${ECONNREFUSED}`)
  await nonblocking.exited()
  for (const peer of [blocking, nonblocking]) {
    const records = capture.of(peer.pid, 'connections').filter((r) => r.kind === CONNECT_FAILED)
    assert.equal(records.length, 1, `one connect-failed record for ${peer.lines.join(' | ')}`)
    const [failed] = records
    assert.deepEqual([failed.bytes, failed.role, failed.protocol, failed.remote, failed.remote_port, failed.family, failed.comm, failed.tid, failed.captured],
      [ECONNREFUSED, CLIENT, 0, '127.0.0.1', port, AF_INET, 'python3', peer.pid, 0])
    assert.ok(failed.conn_id > 0 && failed.start_ns <= failed.end_ns)
    // no close follows a failed connect
    assert.deepEqual(capture.of(peer.pid, 'connections').filter((r) => r.kind === CLOSE), [])
  }
})

test('a connection opened before the object is found by the start-up scan: role, pre-existing flag, position 0', async () => {
  const { server, port: listening } = startServer([['wait'], ...requestResponse()[0]])
  const port = await listening
  const { client, clientPort } = await startClient(port, [['wait'], ...requestResponse()[1]])
  await Promise.all([server.line('waiting'), client.line('waiting')])

  const late = await Capture.open({ subscribe: false })
  try {
    const scan = late.log.find((line) => line.startsWith('sockdata: start-up scan found '))
    assert.match(scan ?? '', /^sockdata: start-up scan found [1-9]\d* listening TCP sockets, [1-9]\d* TCP connections opened before Periscope$/)
    late.want(HTTP)
    const seen: Rec[] = []
    for (const stream of ['http', 'connections']) {
      late.library.subscribe(stream, (batch) => forEachRecord(batch, (view, offset, size) => seen.push(toRec(stream, decodeSockEvent(view, offset, size)))))
    }
    server.resume()
    client.resume()
    await Promise.all([server.finished(), client.finished()])
    const mine = (pid: number) => seen.filter((r) => r.pid === pid)
    await waitFor(() => mine(client.pid).length === 3 && mine(server.pid).length === 3, 'the late object\'s records')
    // order holds within a ring, not across rings
    const fields = (r: Rec) => [r.stream, r.kind, r.direction, r.role, r.flags, r.position, r.local_port, r.remote_port, r.data.toString()]
    const byRing = (pid: number) => [...mine(pid).filter((r) => r.stream === 'http'), ...mine(pid).filter((r) => r.stream === 'connections')].map(fields)
    assert.deepEqual(byRing(client.pid), [
      ['http', DATA, EGRESS, CLIENT, FLAG_PREEXISTING, 0, clientPort, port, REQUEST],
      ['http', DATA, INGRESS, CLIENT, FLAG_PREEXISTING, 0, clientPort, port, RESPONSE],
      ['connections', CLOSE, 0, CLIENT, FLAG_PREEXISTING, 0, clientPort, port, ''],
    ])
    assert.deepEqual(byRing(server.pid), [
      ['http', DATA, INGRESS, SERVER, FLAG_PREEXISTING, 0, port, clientPort, REQUEST],
      ['http', DATA, EGRESS, SERVER, FLAG_PREEXISTING, 0, port, clientPort, RESPONSE],
      ['connections', CLOSE, 0, SERVER, FLAG_PREEXISTING, 0, port, clientPort, ''],
    ])
  } finally {
    await late.close()
  }
})

test('a sendmmsg of more messages than the syscall path records per call: the gap is flagged on the next record', async () => {
  capture.want(HTTP)
  const messages = Array.from({ length: 10 }, (_, i) => `GET /m${i} HTTP/1.1\r\n\r\n`)
  const total = messages.join('').length
  const { client } = await exchange([['recv', total + REQUEST.length]], [['sendmmsg', messages.map((m) => [hex(m)])], send(REQUEST)])
  const sent = flow(client.pid, 'http', EGRESS).map((r) => [r.data.toString(), r.flags & FLAG_LOSS])
  // the syscall tracepoints read 8 messages of a call; the socket functions see each message
  if (capture.library.programs().some((p) => p.name === 'exit_sendmmsg')) {
    assert.deepEqual(sent, [...messages.slice(0, 8).map((m) => [m, 0]), [REQUEST, FLAG_LOSS]])
  } else {
    assert.deepEqual(sent, [...messages, REQUEST].map((m) => [m, 0]))
  }
})

test('sendfile gives a record with its byte count and no payload, at the right position', async () => {
  capture.want(HTTP)
  const body = Buffer.alloc(5000, 'b')
  const file = join(work, 'body.bin')
  writeFileSync(file, body)
  const headers = `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`
  const { server } = await exchange([recv(REQUEST), send(headers), ['sendfile', file]], [send(REQUEST), ['recv', headers.length + body.length]])
  assert.deepEqual(flow(server.pid, 'http', EGRESS).map((r) => [r.bytes, r.captured, r.flags, r.position, r.data.toString()]), [
    [headers.length, headers.length, 0, 0, headers],
    [body.length, 0, FLAG_SENDFILE, headers.length, ''],
  ])
})

test('data is cut at the capture size, with the full byte count and the cut flagged', async () => {
  capture.want(HTTP, { captureBytes: 100 })
  const response = `HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n${'z'.repeat(1000)}`
  const { server } = await exchange([recv(REQUEST), send(response)], [send(REQUEST), recv(response)])
  assert.deepEqual(flow(server.pid, 'http', EGRESS).map((r) => [r.bytes, r.captured, r.flags, r.data.toString()]), [
    [response.length, 100, FLAG_TRUNCATED, response.slice(0, 100)],
  ])
  assert.deepEqual(flow(server.pid, 'http', INGRESS).map((r) => [r.bytes, r.captured, r.flags]), [[REQUEST.length, REQUEST.length, 0]])
})

test('records dropped on a full ring are counted, and the next record of that direction carries the loss flag', async () => {
  // one page of ring: three 1000-byte records fill it while nobody reads; only the client's
  // records go in, or other HTTP traffic on the host (a load test) would fill it first
  const small = await Capture.open({ maxEntries: { http: 4096 }, subscribe: false })
  try {
    small.want(HTTP, { pidFilter: true })
    const chunk = `POST /upload HTTP/1.1\r\nContent-Length: ${1000 - 44}\r\n\r\n`.padEnd(1000, 'p')
    assert.equal(chunk.length, 1000)
    const { server, port } = startServer([['wait'], ['recv', 11_000], send(RESPONSE)])
    const { client } = await startClient(await port, [['wait'], ...Array.from({ length: 10 }, () => send(chunk)), ['wait'], send(chunk), recv(RESPONSE)])
    small.target(HTTP, client.pid)
    client.resume()
    await client.line('waiting', 2)
    assert.ok(small.library.stats().dropped > 0, 'the ring overflowed')
    small.subscribe()
    const sent = () => small.of(client.pid, 'http').filter((r) => r.direction === EGRESS)
    assert.ok(sent().length >= 1 && sent().length <= 3, `${sent().length} records fit`)
    assertContiguous(sent())
    assert.ok(sent().every((r) => (r.flags & FLAG_LOSS) === 0))
    server.resume()
    client.resume()
    await Promise.all([server.finished(), client.finished()])
    const last = sent().at(-1)!
    assert.deepEqual([last.position, last.bytes, last.flags], [10_000, 1000, FLAG_LOSS])
  } finally {
    await small.close()
  }
})

/** A python3 that has imported ssl (so maps libssl), until `stop`. */
async function pythonWithSsl(): Promise<{ pid: number; stop(): void }> {
  const python = spawn(PYTHON, ['-c', 'import ssl, sys; print("ready", flush=True); sys.stdin.readline()'])
  let ready = false
  python.stdout.on('data', () => { ready = true })
  await waitFor(() => ready, 'python to import ssl')
  return { pid: python.pid!, stop: () => python.kill() }
}

test('mapped_libraries lists the libssl a process maps, and the libraries ring reports the mapping', async () => {
  capture.want(HTTP)
  const python = await pythonWithSsl()
  try {
    const expected = realpathSync('/usr/lib/x86_64-linux-gnu/libssl.so.3')
    assert.equal(await capture.library.runIterator('mapped_libraries', { pid: python.pid }), `${python.pid} ${expected}\n`)
    const everyone = await capture.library.runIterator('mapped_libraries')
    assert.ok(everyone.split('\n').includes(`${python.pid} ${expected}`))

    capture.of(python.pid)
    const mapped = capture.libraries.filter((e) => e.pid === python.pid)
    const stat = statSync(expected)
    assert.deepEqual(mapped.map((e) => [e.path, e.inode, e.comm]), [[expected, stat.ino, 'python3']])
    // the kernel's dev_t is MAJOR << 20 | MINOR; user space's packs them differently
    const kernelDev = mapped[0].dev
    const major = kernelDev >>> 20, minor = kernelDev & 0xfffff
    assert.equal((major << 8) | (minor & 0xff) | ((minor & ~0xff) << 12), stat.dev)
  } finally {
    python.stop()
  }
})

test('an iterator limited to a process that does not exist prints nothing; a program that is not an iterator is refused by name', async () => {
  assert.equal(await capture.library.runIterator('mapped_libraries', { pid: 0x7ffffffe }), '')
  await assert.rejects(capture.library.runIterator('enter_connect'), {
    message: 'attach iterator enter_connect: it is a "tracepoint/syscalls/sys_enter_connect" program, not an iterator (SEC("iter/…"))',
  })
})

test('TLS: OpenSSL plaintext through the uprobes, on the socket\'s connection; ciphertext never leaves the kernel', async () => {
  capture.want(HTTP)
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(work, 'key.pem'), '-out', join(work, 'cert.pem'), '-days', '1', '-subj', '/CN=localhost'], { stdio: 'ignore' })
  const tls = { tls: { cert: join(work, 'cert.pem'), key: join(work, 'key.pem') } }

  // without uprobes: the handshake and the encrypted exchange classify as TLS and stay in the kernel
  const hidden = await exchange(...requestResponse(), tls)
  for (const pid of [hidden.client.pid, hidden.server.pid]) {
    assert.deepEqual(capture.of(pid).map((r) => [r.stream, r.kind, r.protocol]), [['connections', OPEN, 0], ['connections', CLOSE, 0]])
  }

  // the libssl python's ssl module maps, as the mapped_libraries iterator finds it
  const python = await pythonWithSsl()
  const [line] = (await capture.library.runIterator('mapped_libraries', { pid: python.pid })).split('\n')
  python.stop()
  const library = line.slice(line.indexOf(' ') + 1)
  const links: Link[] = []
  try {
    for (const symbol of ['SSL_write', 'SSL_read', 'SSL_write_ex', 'SSL_read_ex']) {
      const program = symbol.toLowerCase()
      links.push(attachUprobe(capture.library.object, program, library, { symbol }))
      links.push(attachUprobe(capture.library.object, `${program}_ret`, library, { symbol, retprobe: true }))
    }
    const { server, client, port, clientPort } = await exchange(...requestResponse(), tls)
    const opened = (pid: number) => capture.of(pid, 'connections').find((r) => r.kind === OPEN)!
    assert.deepEqual(capture.of(client.pid, 'http').map((r) => [r.direction, r.flags, r.position, r.bytes, r.data.toString(), r.conn_id, r.role, r.local_port, r.remote_port]), [
      [EGRESS, FLAG_TLS, 0, REQUEST.length, REQUEST, opened(client.pid).conn_id, CLIENT, clientPort, port],
      [INGRESS, FLAG_TLS, 0, RESPONSE.length, RESPONSE, opened(client.pid).conn_id, CLIENT, clientPort, port],
    ])
    assert.deepEqual(capture.of(server.pid, 'http').map((r) => [r.direction, r.flags, r.position, r.data.toString(), r.conn_id, r.role]), [
      [INGRESS, FLAG_TLS, 0, REQUEST, opened(server.pid).conn_id, SERVER],
      [EGRESS, FLAG_TLS, 0, RESPONSE, opened(server.pid).conn_id, SERVER],
    ])
    // nothing else: no ciphertext on any ring
    for (const pid of [client.pid, server.pid]) {
      assert.deepEqual(capture.of(pid).filter((r) => r.stream !== 'http').map((r) => r.kind), [OPEN, CLOSE])
    }
  } finally {
    for (const link of links) link.detach()
  }
})
