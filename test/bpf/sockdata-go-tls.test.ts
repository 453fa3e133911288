/**
 * The sockdata object's Go crypto/tls uprobes on the real kernel, with a Go HTTPS server and
 * client from the standard library (test/bpf/fixtures/go-tls/): the plaintext of
 * (*Conn).Write/Read comes out flagged TLS on the socket's connection, classified by its first
 * bytes (HTTP/1.1, or HTTP/2 from the preface), and no ciphertext leaves the kernel; also from
 * a stripped binary. Also the mid-stream HTTP/2 rule for connections found by the start-up scan
 * (or whose TLS plaintext the uprobes came too late for: mark_tls_midstream), the `executables`
 * iterator, and followGoTls in a plugin. Go's ingress reads return at most one TLS record
 * (16 KiB), so with a 16 KiB capture each end's ingress is its whole stream, and every egress
 * record is checked against the other end's ingress.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, realpathSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, beforeEach, test } from 'node:test'
import { decodeSockEvent } from '../../bpf/lib/sockdata.types.ts'
import type { ObjectProvider } from '../../runtime/bus.ts'
import { openLibraryObject } from '../../runtime/library/index.ts'
import { forEachRecord } from '../../runtime/bpf/batch.ts'
import { bootToWallOffsetNs } from '../../runtime/bpf/clock.ts'
import { attachUprobe, attachUprobeReturns, type Link } from '../../runtime/bpf/links.ts'
import {
  FRAME_HEADERS, GoProcess, PREFACE, buildGoFixture, dataByStream, http2Frames, killGoProcesses, makeCertificate, requestBody,
  startGoClient, startGoServer, type GoFixture,
} from './go-tls-fixture.ts'
import { startHarness } from '../plugin-harness.ts'
import { root, waitFor } from './kernel.ts'
import {
  CLOSE, Capture, DATA, EGRESS, FLAG_PREEXISTING, FLAG_TLS, FLAG_TRUNCATED, HTTP, HTTP2, INGRESS, OPEN, type Rec, exchange, killPeers, recv, send, startClient, startServer, toRec,
} from './sockdata-peers.ts'

const CAPTURE_BYTES = 16384
/** x86-64 */
const SYS_RECVFROM = 45
/** request (and echoed response) bodies: small ones, one over a TLS record, on one keep-alive connection */
const SIZES = [11, 300, 20_000, 5]
/**
 * Connections opened before the object: no DATA frame over the capture size (an h2c read takes a
 * whole frame), and request 1's answer over the 4 KiB the Go client reads at a time
 */
const MID_STREAM_SIZES = [11, 10_000, 300, 5]
/**
 * Writes of the fixture's deep client, each from a new goroutine one frame deeper than the last:
 * enough to go past the 2 KiB a goroutine's stack starts with, so that Write's own prologue is
 * where some of them run out of stack
 */
const DEEP_WRITES = 64

let capture: Capture
let fixture: GoFixture
let certificate: { cert: string; key: string }
const work = mkdtempSync(join(tmpdir(), 'periscope-go-tls-'))

before(async () => {
  fixture = buildGoFixture()
  certificate = makeCertificate(work)
  capture = await Capture.open()
})
beforeEach(() => capture.reset())
after(async () => {
  killGoProcesses()
  killPeers()
  await capture?.close()
  rmSync(work, { recursive: true, force: true })
})

/** The Go TLS programs on a binary, as followGoTls attaches them: Write's entry, Read's entry and each of its return instructions. */
function attachGoTls(binary: string, object = capture): Link[] {
  const program = object.library.object
  return [
    attachUprobe(program, 'go_tls_write', binary, { symbol: 'crypto/tls.(*Conn).Write' }),
    attachUprobe(program, 'go_tls_read', binary, { symbol: 'crypto/tls.(*Conn).Read' }),
    ...attachUprobeReturns(program, 'go_tls_read_ret', binary, { symbol: 'crypto/tls.(*Conn).Read' }).links,
  ]
}

/** Data records of a process in one direction on one ring, in order. */
const flow = (records: Rec[], stream: string, direction: number) => records.filter((r) => r.stream === stream && r.kind === DATA && r.direction === direction)

/**
 * One direction of a connection as one process saw it, whole: contiguous records, none
 * truncated, starting at `from`; returns its bytes.
 */
function wholeStream(records: Rec[], from = 0): Buffer {
  let position = from
  for (const r of records) {
    assert.equal(r.position, position, `a record at ${r.position}, expected ${position}`)
    assert.equal(r.flags & FLAG_TRUNCATED, 0, `the record at ${r.position} was truncated`)
    assert.equal(r.captured, r.bytes)
    position += r.bytes
  }
  return Buffer.concat(records.map((r) => r.data))
}

/**
 * One direction as the sending process wrote it, against the stream the other end read (which
 * starts at `peerFrom` of it): contiguous from `from`, each record's captured bytes exactly
 * the stream's there, truncated at the capture size and flagged so.
 */
function assertEgress(records: Rec[], peerStream: Buffer, from: number, peerFrom = 0): void {
  let position = from
  for (const r of records) {
    assert.equal(r.position, position, `egress record at ${r.position}, expected ${position}`)
    assert.equal(r.captured, Math.min(r.bytes, CAPTURE_BYTES))
    assert.equal(r.flags & FLAG_TRUNCATED, r.captured < r.bytes ? FLAG_TRUNCATED : 0)
    assert.ok(r.data.equals(peerStream.subarray(r.position - peerFrom, r.position - peerFrom + r.captured)), `egress record at ${r.position} differs from what the other end read`)
    position += r.bytes
  }
  assert.equal(position - peerFrom, peerStream.length, 'the egress records add up to what the other end read')
}

/** HTTP/1.1 messages of a stream: each head and its Content-Length body; `partial`: up to the first one not yet whole, instead of failing on it. */
function http1Messages(stream: Buffer, options: { partial?: boolean } = {}): { head: string; body: Buffer }[] {
  const messages: { head: string; body: Buffer }[] = []
  let at = 0
  while (at < stream.length) {
    const end = stream.indexOf('\r\n\r\n', at)
    if (options.partial === true && end < 0) break
    assert.ok(end > 0, `an HTTP/1.1 head at byte ${at}`)
    const head = stream.subarray(at, end + 4).toString()
    const length = Number(/\r\nContent-Length: (\d+)\r\n/.exec(head)?.[1])
    if (options.partial === true && end + 4 + length > stream.length) break
    messages.push({ head, body: stream.subarray(end + 4, end + 4 + length) })
    at = end + 4 + length
  }
  return messages
}

/** How many HTTP/1.1 messages the records' bytes hold whole so far (a message whose body is still on its way is not counted). */
function wholeMessages(records: Rec[]): number {
  return http1Messages(Buffer.concat(records.map((r) => r.data)), { partial: true }).length
}

/**
 * Every record of the process is plaintext on `ring` (flagged TLS) or its connection's open and
 * close (a process that exits closes its sockets without close(2): no close record).
 */
function assertNoCiphertext(records: Rec[], ring: string): void {
  assert.deepEqual(records.filter((r) => r.stream !== ring).map((r) => [r.stream, r.kind]).filter(([, kind]) => kind !== CLOSE), [['connections', OPEN]])
  assert.deepEqual(new Set(records.filter((r) => r.stream === ring).map((r) => [r.kind, r.flags & ~FLAG_TRUNCATED].join())), new Set([`${DATA},${FLAG_TLS}`]))
}

test('the Go structures the kernel programs read: offsets and the *net.TCPConn type hash, by reflection', () => {
  assert.deepEqual(execFileSync(fixture.plain, ['layout'], { encoding: 'utf8' }).trim().split('\n'), [
    'tls.Conn.conn 0 net.Conn',
    'net.TCPConn.conn 0 net.conn',
    'net.conn.fd 0 *net.netFD',
    'net.netFD.pfd 0 poll.FD',
    'poll.FD.Sysfd 16 int',
    // GO_TCP_CONN_HASH in bpf/lib/sockdata.bpf.c
    'itab.Hash *net.TCPConn 0x43fdf3b9',
  ])
})

test('executables lists each process once with the absolute path of its executable', async () => {
  const server = (await startGoServer(fixture.plain, certificate)).server
  try {
    assert.equal(await capture.library.runIterator('executables', { pid: server.pid }), `${server.pid} ${realpathSync(fixture.plain)}\n`)
    const everyone = (await capture.library.runIterator('executables')).trim().split('\n')
    assert.ok(everyone.includes(`${server.pid} ${realpathSync(fixture.plain)}`))
    // leaders only: one line per process, however many threads the Go runtime started
    const pids = everyone.map((line) => line.slice(0, line.indexOf(' ')))
    assert.equal(new Set(pids).size, pids.length)
    // Periscope (this process) is left out
    assert.ok(!pids.includes(String(process.pid)))
  } finally {
    server.stop()
  }
})

for (const variant of ['plain', 'stripped'] as const) {
  test(`HTTPS/1.1 in Go (${variant} binary): the plaintext of crypto/tls on both ends, flagged TLS, no ciphertext`, async () => {
    const binary = fixture[variant]
    capture.want(HTTP, { captureBytes: CAPTURE_BYTES })
    const links = attachGoTls(binary)
    const { server, port } = await startGoServer(binary, certificate)
    try {
      const client = await startGoClient(binary, port, certificate.cert, 'h1', SIZES)
      client.resume()
      assert.equal(await client.line('done'), 'done HTTP/1.1')
      assert.equal(await client.exited(), 0, client.stderr)
      await waitFor(() => capture.of(server.pid, 'connections').some((r) => r.kind === CLOSE), 'the server to close the connection', 30_000)

      const clientRecords = capture.of(client.pid), serverRecords = capture.of(server.pid)
      const requests = wholeStream(flow(serverRecords, 'http', INGRESS))
      const responses = wholeStream(flow(clientRecords, 'http', INGRESS))
      assertEgress(flow(clientRecords, 'http', EGRESS), requests, 0)
      assertEgress(flow(serverRecords, 'http', EGRESS), responses, 0)
      assert.deepEqual(http1Messages(requests).map((m) => [m.head.split('\r\n')[0], m.body.toString()]),
        SIZES.map((size, i) => [`POST /echo/${i} HTTP/1.1`, requestBody(i, size).toString()]))
      assert.deepEqual(http1Messages(responses).map((m) => [m.head, m.body.toString()]),
        SIZES.map((size, i) => [`HTTP/1.1 200 OK\r\nContent-Length: ${size}\r\nContent-Type: application/octet-stream\r\n\r\n`, requestBody(i, size).toString()]))
      // one keep-alive connection each end, the one its open record named
      for (const records of [clientRecords, serverRecords]) {
        const opened = records.find((r) => r.kind === OPEN)!
        assert.deepEqual(new Set(records.map((r) => r.conn_id)), new Set([opened.conn_id]))
        assertNoCiphertext(records, 'http')
      }
      // each call's start is its entry, before its end
      assert.ok([...clientRecords, ...serverRecords].every((r) => r.start_ns > 0 && r.start_ns <= r.end_ns))
    } finally {
      for (const link of links) link.detach()
      server.stop()
    }
  })
}

test('a (*tls.Conn).Write whose prologue grows the goroutine\'s stack, and so runs from its entry twice, is one record', async () => {
  capture.want(HTTP, { captureBytes: CAPTURE_BYTES })
  const links = attachGoTls(fixture.plain)
  const { server, port } = await startGoServer(fixture.plain, certificate)
  try {
    const client = new GoProcess(fixture.plain, ['client-deep', String(port), certificate.cert, String(DEEP_WRITES)])
    assert.equal(await client.line('done'), 'done')
    assert.equal(await client.exited(), 0, client.stderr)
    await waitFor(() => capture.of(server.pid, 'connections').some((r) => r.kind === CLOSE), 'the server to close the connection', 30_000)

    const clientRecords = capture.of(client.pid), serverRecords = capture.of(server.pid)
    const requests = wholeStream(flow(serverRecords, 'http', INGRESS))
    const egress = flow(clientRecords, 'http', EGRESS)
    // the head, then one record per Write
    assert.deepEqual(egress.map((r) => r.bytes), [egress[0]!.bytes, ...Array.from({ length: DEEP_WRITES }, (_, i) => 100 + i)])
    assertEgress(egress, requests, 0)
    assertEgress(flow(serverRecords, 'http', EGRESS), wholeStream(flow(clientRecords, 'http', INGRESS)), 0)
  } finally {
    for (const link of links) link.detach()
    server.stop()
  }
})

for (const variant of ['plain', 'stripped'] as const) {
  test(`HTTP/2 over Go TLS (ALPN h2, ${variant} binary): the plaintext goes to the http2 ring from the client preface`, async () => {
    const binary = fixture[variant]
    capture.want(HTTP2, { captureBytes: CAPTURE_BYTES })
    const links = attachGoTls(binary)
    const { server, port } = await startGoServer(binary, certificate)
    try {
      const client = await startGoClient(binary, port, certificate.cert, 'h2', SIZES)
      client.resume()
      assert.equal(await client.line('done'), 'done HTTP/2.0')
      assert.equal(await client.exited(), 0, client.stderr)
      await waitFor(() => capture.of(server.pid, 'connections').some((r) => r.kind === CLOSE), 'the server to close the connection', 30_000)

      const clientRecords = capture.of(client.pid), serverRecords = capture.of(server.pid)
      const toServer = wholeStream(flow(serverRecords, 'http2', INGRESS))
      const toClient = wholeStream(flow(clientRecords, 'http2', INGRESS))
      assert.ok(toServer.subarray(0, PREFACE.length).equals(Buffer.from(PREFACE)), 'the server read the preface first')
      assertEgress(flow(clientRecords, 'http2', EGRESS), toServer, 0)
      // the server may write its SETTINGS before it read the preface, which classifies the connection
      const serverEgress = flow(serverRecords, 'http2', EGRESS)
      assertEgress(serverEgress, toClient.subarray(serverEgress[0]!.position), serverEgress[0]!.position, serverEgress[0]!.position)
      const requestFrames = http2Frames(toServer.subarray(PREFACE.length)), responseFrames = http2Frames(toClient)
      const requestData = dataByStream(requestFrames), responseData = dataByStream(responseFrames)
      assert.deepEqual(requestFrames.filter((f) => f.type === FRAME_HEADERS).map((f) => f.stream), SIZES.map((_, i) => 2 * i + 1))
      for (const [i, size] of SIZES.entries()) {
        assert.deepEqual(requestData.get(2 * i + 1)?.toString(), requestBody(i, size).toString(), `request ${i}`)
        assert.deepEqual(responseData.get(2 * i + 1)?.toString(), requestBody(i, size).toString(), `response ${i}`)
      }
      for (const records of [clientRecords, serverRecords]) assertNoCiphertext(records, 'http2')
    } finally {
      for (const link of links) link.detach()
      server.stop()
    }
  })
}

/**
 * A connection of the fixture's pausing client opened before a sockdata object: request 0 goes
 * before the object opens, the others after, with the Go TLS uprobes on it for 'h2'. Positions
 * count from the scan (h2c), or from the first plaintext once the ciphertext was seen (h2).
 * h2c: both ends' records from position 0, each direction the same bytes at both ends. h2: the
 * goroutines that read are parked in (*Conn).Read when the uprobes come, and those calls, whose
 * entry was not seen, go unrecorded: a frame header, say, whose payload would follow mid-frame.
 * So a direction goes out from its first record that starts a frame; what each end read is the
 * tail of what the other wrote.
 *
 * `lateUprobes`: the object is open from the start (the connection is not the scan's), only the
 * uprobes come after request 0, as when followGoTls attaches to a Go service that has just
 * started; 'marked' runs mark_tls_midstream for both processes then, as followGoTls does.
 */
/** The boot clock (what bpf_ktime_get_boot_ns reads) now, from the wall clock and the runtime's offset. */
const bootNowNs = (): bigint => BigInt(Date.now()) * 1_000_000n - BigInt(bootToWallOffsetNs())
const u32 = (value: number): Uint8Array => { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, value, true); return b }
const u64 = (value: bigint): Uint8Array => { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, value, true); return b }

async function midStream(protocol: 'h2c' | 'h2', lateUprobes?: 'marked' | 'unmarked'): Promise<void> {
  let object = lateUprobes === undefined ? undefined : await Capture.open({ subscribe: false })
  const seen: Rec[] = []
  const subscribe = (capture: Capture) => {
    capture.want(HTTP2, { captureBytes: CAPTURE_BYTES })
    for (const stream of ['http2', 'connections']) {
      capture.library.subscribe(stream, (batch) => forEachRecord(batch, (view, offset, size) => seen.push(toRec(stream, decodeSockEvent(view, offset, size)))))
    }
  }
  if (object !== undefined) subscribe(object)
  const { server, port } = await startGoServer(fixture.plain, protocol === 'h2' ? certificate : undefined)
  const links: Link[] = []
  const beforeClientNs = bootNowNs()
  try {
    const client = await startGoClient(fixture.plain, port, certificate.cert, protocol, MID_STREAM_SIZES, { pausing: true })
    client.resume()
    await client.line('first done')
    if (object === undefined) {
      object = await Capture.open({ subscribe: false })
      subscribe(object)
    }
    if (protocol === 'h2') links.push(...attachGoTls(fixture.plain, object))
    if (lateUprobes === 'marked') {
      // with the uprobes "on" before the handshake (tls_attached_ns of a time before the client
      // started), the connection was seen whole and stays unmarked; with them on now, it is marked
      const attachedNs = object.library.object.map('tls_attached_ns')
      for (const [pid, since, marks] of [[client.pid, beforeClientNs, ''], [server.pid, beforeClientNs, ''], [client.pid, bootNowNs(), 'one'], [server.pid, bootNowNs(), 'one']] as const) {
        attachedNs.update(u32(pid), u64(since))
        try {
          const marked = await object.library.runIterator('mark_tls_midstream', { pid })
          if (marks === '') assert.equal(marked, '', `pid ${pid}: its connection's handshake came after the attach`)
          else assert.match(marked, new RegExp(`^${pid} \\d+\n$`))
        } finally {
          attachedNs.delete(u32(pid))
        }
      }
    }
    client.resume()
    assert.equal(await client.line('done'), 'done HTTP/2.0')
    assert.equal(await client.exited(), 0, client.stderr)
    const mine = (pid: number) => seen.filter((r) => r.pid === pid)
    const opened = lateUprobes === undefined ? [] : [`connections,${OPEN},0`]
    if (lateUprobes === 'unmarked') {
      // the preface went before the uprobes came: never recognised, nothing goes out (the client
      // has exited: every call of both ends is done)
      object.library.drainStreams()
      for (const pid of [client.pid, server.pid]) assert.deepEqual(mine(pid).map((r) => [r.stream, r.kind, r.flags].join()), opened)
      return
    }
    await waitFor(() => mine(server.pid).some((r) => r.kind === CLOSE), 'the server to close the connection', 30_000)

    for (const [sender, receiver, what] of [[client.pid, server.pid, 'requests'], [server.pid, client.pid, 'responses']] as const) {
      const egress = flow(mine(sender), 'http2', EGRESS), ingress = flow(mine(receiver), 'http2', INGRESS)
      const sent = wholeStream(egress), read = wholeStream(ingress, ingress[0]?.position)
      assert.equal(egress[0]?.position, 0, `${what}: the first written`)
      if (protocol === 'h2c') assert.equal(ingress[0]?.position, 0, `${what}: the first read`)
      assert.ok(read.equals(sent.subarray(sent.length - read.length)), `${what}: what was read is the tail of what was written`)
      // request 0 went before the scan, on stream 1
      for (const bytes of [sent, read]) {
        const data = dataByStream(http2Frames(bytes))
        assert.deepEqual([...data.keys()], [3, 5, 7])
        for (const [i, size] of MID_STREAM_SIZES.entries()) if (i > 0) assert.equal(data.get(2 * i + 1)?.toString(), requestBody(i, size).toString(), `${what}: ${i}`)
      }
    }
    const flags = FLAG_PREEXISTING | (protocol === 'h2' ? FLAG_TLS : 0)
    // the server closes its end; the client exits without close(), and its exit closes its end
    // (before the server's close, on the same ring)
    for (const pid of [client.pid, server.pid]) {
      assert.deepEqual(new Set(mine(pid).map((r) => [r.stream, r.kind, r.flags].join())),
        new Set([...opened, `http2,${DATA},${flags}`, `connections,${CLOSE},${FLAG_PREEXISTING}`]))
    }
  } finally {
    for (const link of links) link.detach()
    await object?.close()
    server.stop()
  }
}

test('an h2c connection opened before the object is classified HTTP/2 mid-stream from a whole frame', () => midStream('h2c'))

test('an HTTP/2 connection over Go TLS opened before the object: its plaintext is classified mid-stream', () => midStream('h2'))

test('an HTTP/2 connection over Go TLS whose preface went before the uprobes came is never recognised…', () => midStream('h2', 'unmarked'))

test('…unless mark_tls_midstream takes it as found mid-stream once the uprobes are on', () => midStream('h2', 'marked'))

/** An HTTP/2 frame header and payload. */
function frame(type: number, flags: number, stream: number, payload: Buffer, length = payload.length): Buffer {
  const header = Buffer.alloc(9)
  header.writeUIntBE(length, 0, 3)
  header[3] = type
  header[4] = flags
  header.writeUInt32BE(stream, 5)
  return Buffer.concat([header, payload])
}

const SETTINGS = frame(4, 0, 0, Buffer.from('000300000064000400010000', 'hex'))

test('HTTP/2 mid-stream takes only a whole plausible frame, and only on a connection found by the start-up scan', async () => {
  const cases: [string, Buffer, boolean][] = [
    ['SETTINGS on stream 0', SETTINGS, true],
    ['HEADERS on stream 3 with END_HEADERS, then DATA', Buffer.concat([frame(1, 4, 3, Buffer.from('82868441', 'hex')), frame(0, 1, 3, Buffer.from('hi'))]), true],
    ['PING', frame(6, 0, 0, Buffer.alloc(8, 7)), true],
    ['WINDOW_UPDATE', frame(8, 0, 0, Buffer.from('00010000', 'hex')), true],
    ['a HEADERS frame\'s header alone, read before its payload', frame(1, 4, 3, Buffer.alloc(0), 20), true],
    ['a frame header and part of its payload', frame(1, 4, 3, Buffer.from('82'), 20), false],
    ['SETTINGS on stream 1', frame(4, 0, 1, Buffer.alloc(6)), false],
    ['SETTINGS of 7 bytes', frame(4, 0, 0, Buffer.alloc(7)), false],
    ['HEADERS on stream 0', frame(1, 4, 0, Buffer.from('82', 'hex')), false],
    ['HEADERS with a flag HEADERS does not define', frame(1, 0x42, 5, Buffer.from('82', 'hex')), false],
    ['DATA whose stream has the reserved bit', frame(0, 0, 0x80000003, Buffer.from('hi')), false],
    ['a frame longer than the record', frame(0, 0, 3, Buffer.from('hi'), 100), false],
    ['PING of 7 bytes', frame(6, 0, 0, Buffer.alloc(7)), false],
    ['type 10', frame(10, 0, 0, Buffer.alloc(4)), false],
    ['PRIORITY', frame(2, 0, 3, Buffer.alloc(5)), false],
  ]
  const pairs = await Promise.all(cases.map(async ([, bytes]) => {
    const { server, port: listening } = startServer([['wait'], recv(bytes)])
    const port = await listening
    const { client } = await startClient(port, [['wait'], send(bytes)])
    await Promise.all([server.line('waiting'), client.line('waiting')])
    return { server, client }
  }))
  const late = await Capture.open({ subscribe: false })
  try {
    late.want(HTTP2)
    const seen: Rec[] = []
    late.library.subscribe('http2', (batch) => forEachRecord(batch, (view, offset, size) => seen.push(toRec('http2', decodeSockEvent(view, offset, size)))))
    for (const { server, client } of pairs) {
      server.resume()
      client.resume()
    }
    await Promise.all(pairs.flatMap(({ server, client }) => [server.finished(), client.finished()]))
    const expected = cases.filter(([, , http2]) => http2).length * 2
    await waitFor(() => seen.length >= expected, `${expected} records on the http2 ring`, 10_000)
    assert.deepEqual(cases.map(([name], i) => [name, seen.filter((r) => r.pid === pairs[i]!.client.pid || r.pid === pairs[i]!.server.pid).map((r) => [r.direction, r.flags, r.data.toString('hex')]).sort((a, b) => Number(a[0]) - Number(b[0]))]),
      cases.map(([name, bytes, http2]) => [name, http2 ? [[EGRESS, FLAG_PREEXISTING, bytes.toString('hex')], [INGRESS, FLAG_PREEXISTING, bytes.toString('hex')]] : []]))
  } finally {
    await late.close()
  }

  // the same SETTINGS frame first on a new connection: not HTTP/2, which starts with the preface
  capture.want(HTTP2)
  const fresh = await exchange([recv(SETTINGS)], [send(SETTINGS)])
  assert.deepEqual([...capture.of(fresh.client.pid, 'http2'), ...capture.of(fresh.server.pid, 'http2')], [])
})

test('an HTTP/2 direction found mid-stream goes out from a record that starts a frame, not after a call in flight when the object opened', async () => {
  const headers = frame(1, 4, 3, Buffer.alloc(21, 0x82)), ping = frame(6, 0, 0, Buffer.alloc(8, 1))
  // the client is inside one recv of 20 bytes when the object opens: that call goes unrecorded
  const { server, port: listening } = startServer([['wait'], send(headers), recv(SETTINGS), send(ping)])
  const port = await listening
  const { client } = await startClient(port, [['recv_waitall', 20], send(SETTINGS), recv(headers.subarray(20)), recv(ping)])
  await server.line('waiting')
  await waitFor(() => readFileSync(`/proc/${client.pid}/syscall`, 'utf8').startsWith(`${SYS_RECVFROM} `), 'the client to block in recvfrom', 10_000)
  const late = await Capture.open({ subscribe: false })
  try {
    late.want(HTTP2)
    const seen: Rec[] = []
    late.library.subscribe('http2', (batch) => forEachRecord(batch, (view, offset, size) => seen.push(toRec('http2', decodeSockEvent(view, offset, size)))))
    server.resume()
    await Promise.all([server.finished(), client.finished()])
    await waitFor(() => seen.filter((r) => r.pid === client.pid).length >= 2, 'the client\'s records', 10_000)
    // the SETTINGS it wrote classified the connection; the rest of the HEADERS frame it then read is skipped, counted.
    // sock_recv_length sees the recv in flight end, before anything was classified, and counts its 20 bytes too;
    // the syscall tracepoints missed its entry, and so the whole call
    const endsOnly = late.log.some((line) => line.startsWith('sockdata: socket data from the sock_recv_length'))
    assert.deepEqual(seen.filter((r) => r.pid === client.pid).map((r) => [r.direction, r.position, r.bytes, r.data.toString('hex')]), [
      [EGRESS, 0, SETTINGS.length, SETTINGS.toString('hex')],
      [INGRESS, endsOnly ? headers.length : headers.length - 20, ping.length, ping.toString('hex')],
    ])
  } finally {
    await late.close()
  }
})

/**
 * A plugin that follows Go TLS as plugins/http2.ts does, and logs what the test needs: each http
 * record of the server's port (payload in hex; other tests' traffic is left out), the files the
 * follower has uprobes on whenever they change, and its warnings.
 */
const followerPlugin = (port: number) => `import { definePlugin } from 'periscope/plugin'
import { followGoTls } from 'periscope/protocols/go-tls-follow'
import { PROTOCOL_HTTP, claimProtocol } from 'periscope/protocols/sockdata'
export default definePlugin({
  name: 'go-tls-follower',
  objects: ['sockdata', 'exec'],
  async setup(ctx) {
    await claimProtocol(ctx, PROTOCOL_HTTP, { captureBytes: ${CAPTURE_BYTES}, targetPids: [], targetCgroupIds: [], excludedPorts: [] })
    ctx.on('sockdata:http', (e) => {
      if (e.local_port !== ${port} && e.remote_port !== ${port}) return
      let data = ''
      for (const byte of e.data) data += byte.toString(16).padStart(2, '0')
      ctx.emit.log({ body: JSON.stringify({ pid: e.pid, kind: e.kind, direction: e.direction, position: e.position, bytes: e.bytes, captured: e.captured, flags: e.flags, data }) })
    })
    const follower = await followGoTls(ctx, (message) => ctx.emit.log({ body: 'warning ' + message }))
    let files: string | undefined
    ctx.every('50ms', () => {
      const now = follower.files.sort().join(',')
      if (now !== files) ctx.emit.log({ body: 'files ' + now })
      files = now
    })
  },
})
`

test('followGoTls attaches to a Go binary already running and to a stripped one started later, and detaches when they exit', async () => {
  const provider: ObjectProvider = { open: (name, settings) => openLibraryObject(name, { settings, log: () => {} }) }
  const { server, port } = await startGoServer(fixture.plain, certificate)
  const h = await startHarness({ provider, decodersPath: join(root, 'bpf/lib/index.types.ts'), plugins: { 'go-tls-follower.ts': followerPlugin(port) } })
  try {
    const logs = () => h.sink.signals('go-tls-follower').logs.map((l) => String(l.body))
    // other Go programs on the host (the Go toolchain, esbuild, ...) are followed too
    const following = (path: string) => logs().filter((l) => l.startsWith('files ')).at(-1)?.slice('files '.length).split(',').includes(path) ?? false
    const plain = realpathSync(fixture.plain), stripped = realpathSync(fixture.stripped)
    // the server ran before the plugin: found by the executables iterator at its start
    await h.waitFor(() => following(plain), 'the running server\'s binary to be followed', 60_000)
    // the stripped client starts now: found by its exec, its functions by .gopclntab
    const client = await startGoClient(fixture.stripped, port, certificate.cert, 'h1', SIZES)
    await h.waitFor(() => following(stripped), 'the stripped client\'s binary to be followed', 60_000)
    client.resume()
    assert.equal(await client.line('done'), 'done HTTP/1.1')
    assert.equal(await client.exited(), 0, client.stderr)

    const records = (pid: number): Rec[] => logs().filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Rec & { data: string })
      .filter((r) => r.pid === pid).map((r) => ({ ...r, stream: 'http', data: Buffer.from(r.data, 'hex') }))
    // every request and response read whole: more bytes than the bodies alone came after three
    // of the four messages, and the fourth's records could still be on their way
    await h.waitFor(() => wholeMessages(flow(records(server.pid), 'http', INGRESS)) === SIZES.length &&
      wholeMessages(flow(records(client.pid), 'http', INGRESS)) === SIZES.length, 'both ends\' records', 30_000)
    const requests = wholeStream(flow(records(server.pid), 'http', INGRESS))
    const responses = wholeStream(flow(records(client.pid), 'http', INGRESS))
    assertEgress(flow(records(client.pid), 'http', EGRESS), requests, 0)
    assertEgress(flow(records(server.pid), 'http', EGRESS), responses, 0)
    assert.deepEqual(http1Messages(responses).map((m) => m.body.toString()), SIZES.map((size, i) => requestBody(i, size).toString()))
    assert.ok([...records(server.pid), ...records(client.pid)].every((r) => (r.flags & ~FLAG_TRUNCATED) === FLAG_TLS))

    // the client exited: its file is let go; then the server's
    await h.waitFor(() => !following(stripped), 'the exited client\'s binary to be let go', 30_000)
    assert.ok(following(plain))
    server.stop()
    await server.exited()
    await h.waitFor(() => !following(plain), 'the exited server\'s binary to be let go', 30_000)
    assert.deepEqual(logs().filter((l) => l.startsWith('warning ')), [])
  } finally {
    server.stop()
    await h.close()
  }
})
