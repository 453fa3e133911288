/**
 * The tcp object on the real kernel: loopback connections of this process with known byte
 * counts, read back from port_stats by the ports this test's servers own (other tests load the
 * machine with their own connections, on other ports).
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { createServer, type AddressInfo, type Socket } from 'node:net'
import { after, before, test } from 'node:test'
import { decodeTcpPortStats, TCP_PORT_STATS_SIZE } from '../../bpf/lib/tcp.types.ts'
import { openLibraryObject, type LibraryObject } from '../../runtime/library/index.ts'
import { root, waitFor } from './kernel.ts'
import { TCP_DIRECTION_INBOUND, TCP_DIRECTION_OUTBOUND, TCP_OVERFLOW_CONNS, TCP_OVERFLOW_PORT_STATS, TCP_RTT_BOUNDARIES_S, TCP_STATE_BITS } from '../../runtime/protocols/tcp.ts'
import {
  TCP_CLOSE, TCP_ESTABLISHED, TCP_LISTEN, TCP_SYN_RECV, TCP_SYN_SENT,
  closedPort, exchange, inboundKey, openConnection, outboundKey, overflowCount, portStats, rttObservations, startReplyServer, transitionCount, waitForStats,
} from './tcp-peers.ts'

let tcp: LibraryObject

before(async () => {
  tcp = await openLibraryObject('tcp')
})
after(() => tcp?.close())

test('the constants of runtime/protocols/tcp.ts are those of bpf/lib/tcp.h', () => {
  const header = readFileSync(`${root}/bpf/lib/tcp.h`, 'utf8')
  const value = (name: string) => Number(new RegExp(`\\b${name}\\s*=?\\s*\\(?(\\d+)`).exec(header)?.[1])
  assert.deepEqual(
    [value('TCP_DIRECTION_INBOUND'), value('TCP_DIRECTION_OUTBOUND'), value('TCP_OVERFLOW_PORT_STATS'), value('TCP_OVERFLOW_CONNS'), value('TCP_STATE_BITS'), value('TCP_RTT_BOUNDARIES')],
    [TCP_DIRECTION_INBOUND, TCP_DIRECTION_OUTBOUND, TCP_OVERFLOW_PORT_STATS, TCP_OVERFLOW_CONNS, TCP_STATE_BITS, TCP_RTT_BOUNDARIES_S.length],
  )
  const empty = decodeTcpPortStats(new DataView(new ArrayBuffer(TCP_PORT_STATS_SIZE)), 0)
  assert.equal(empty.rtt_buckets.length, TCP_RTT_BOUNDARIES_S.length + 1)
})

test('N connections of known sizes give exactly N opened and closed at each end, and their bytes', async () => {
  const connections = 20
  const request = 3000
  const reply = 70_000
  const server = await startReplyServer(reply)
  try {
    const replies = await Promise.all(Array.from({ length: connections }, () => exchange(server.port, request)))
    assert.deepEqual(replies, Array(connections).fill(reply))
    const done = (s: { closed: number }) => s.closed === connections
    const serverEnd = await waitForStats(tcp, inboundKey(server.port), done, 'the server ends to close')
    const clientEnd = await waitForStats(tcp, outboundKey(server.port), done, 'the client ends to close')
    for (const [end, sent, received] of [[serverEnd, reply, request], [clientEnd, request, reply]] as const) {
      assert.equal(end.opened, connections)
      assert.equal(end.bytes_received, connections * received)
      // sent bytes count retransmissions again (RFC 4898's DataOctetsOut): a loaded machine makes
      // even loopback send tail loss probes
      if (end.retransmits === 0) assert.equal(end.bytes_sent, connections * sent)
      else assert.ok(end.bytes_sent > connections * sent, `${end.bytes_sent} bytes sent with ${end.retransmits} retransmits`)
      assert.equal(end.resets_sent + end.resets_received, 0)
      // one observation per connection, at its close: loopback RTTs are below 1 s even on a loaded machine
      assert.equal(rttObservations(end), connections)
      assert.ok(end.rtt_buckets.slice(21).every((n) => n === 0), `loopback RTTs in buckets ${end.rtt_buckets}`)
      assert.ok(end.rtt_sum_us > 0)
    }
    // every segment one end sent (a retransmitted one again), the other received, the handshake's
    // too, except that the SYN-ACK goes out of the listener's request socket, not the connection
    assert.equal(clientEnd.segments_sent, serverEnd.segments_received)
    assert.equal(serverEnd.segments_sent + connections, clientEnd.segments_received)
    assert.ok(clientEnd.segments_sent >= connections * 3, `${clientEnd.segments_sent} segments for ${connections} connections`)
  } finally {
    await server.close()
  }
})

test('IPv6 connections are counted as IPv4 ones, and a refused one\'s reset by its port', async () => {
  const server = await startReplyServer(4000, '::1')
  try {
    await Promise.all(Array.from({ length: 3 }, () => exchange(server.port, 1500, '::1')))
    const serverEnd = await waitForStats(tcp, inboundKey(server.port), (s) => s.closed === 3, 'the server ends to close')
    const clientEnd = await waitForStats(tcp, outboundKey(server.port), (s) => s.closed === 3, 'the client ends to close')
    assert.deepEqual([serverEnd.opened, serverEnd.bytes_received, clientEnd.opened, clientEnd.bytes_received], [3, 4500, 3, 12_000])
  } finally {
    await server.close()
  }
  const port = await closedPort()
  await assert.rejects(openConnection(port, '::1'), { code: 'ECONNREFUSED' })
  await waitForStats(tcp, inboundKey(port), (s) => s.resets_sent === 1, 'the reset sent for the port nothing listens on')
})

test('a live connection is rolled up at each collection and its close adds only the rest', async () => {
  const server = await startReplyServer(0)
  const socket = await openConnection(server.port)
  try {
    socket.write(Buffer.alloc(1000))
    await waitFor(() => server.received() === 1000, 'the server to read 1000 bytes')
    const output = await tcp.runIterator('collect')
    assert.equal(output, '', 'the connection was tracked since it opened: nothing to adopt')
    const live = portStats(tcp, inboundKey(server.port))!
    assert.equal(live.bytes_received, 1000)
    assert.equal(live.opened, 1)
    assert.equal(live.closed, 0)
    assert.equal(portStats(tcp, outboundKey(server.port))!.opened, 1)
    // a second collection with nothing new adds nothing
    await tcp.runIterator('collect')
    assert.equal(portStats(tcp, inboundKey(server.port))!.bytes_received, 1000)

    socket.end(Buffer.alloc(500))
    const closed = await waitForStats(tcp, inboundKey(server.port), (s) => s.closed === 1, 'the server end to close')
    assert.equal(closed.bytes_received, 1500)
  } finally {
    socket.destroy()
    await server.close()
  }
})

test('the peer\'s FIN is not counted as a byte received, on a live half-closed connection and at its close', async () => {
  let serverEnd: Socket | undefined
  const server = createServer({ allowHalfOpen: true }, (socket) => { serverEnd = socket; socket.resume() })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  const client = await openConnection(port)
  try {
    client.end(Buffer.alloc(800))
    await waitFor(() => serverEnd?.readableEnded === true, 'the server to read the client\'s FIN')
    await tcp.runIterator('collect')
    assert.equal(portStats(tcp, inboundKey(port))!.bytes_received, 800, 'rolled up while half-closed')
    serverEnd!.end()
    const closed = await waitForStats(tcp, inboundKey(port), (s) => s.closed === 1, 'the server end to close')
    assert.equal(closed.bytes_received, 800)
    assert.equal(portStats(tcp, outboundKey(port))!.bytes_received, 0)
  } finally {
    client.destroy()
    serverEnd?.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
})

test('a connection opened before the object loaded is adopted by the start-up scan and counted from then on', async () => {
  const server = await startReplyServer(0)
  const socket = await openConnection(server.port)
  let late: LibraryObject | undefined
  try {
    socket.write(Buffer.alloc(300))
    await waitFor(() => server.received() === 300, 'the server to read the bytes sent before load')
    late = await openLibraryObject('tcp')
    const adopted = portStats(late, inboundKey(server.port))
    assert.equal(adopted, undefined, 'adopting adds nothing to port_stats')
    socket.end(Buffer.alloc(700))
    const serverEnd = await waitForStats(late, inboundKey(server.port), (s) => s.closed === 1, 'the server end to close')
    assert.equal(serverEnd.opened, 0)
    assert.equal(serverEnd.bytes_received, 700)
    const clientEnd = await waitForStats(late, outboundKey(server.port), (s) => s.closed === 1, 'the client end to close')
    assert.equal(clientEnd.opened, 0)
  } finally {
    socket.destroy()
    await late?.close()
    await server.close()
  }
})

test('resets: an aborted connection and a refused one, each end counted once', async () => {
  const server = await startReplyServer(0)
  try {
    const socket = await openConnection(server.port)
    await waitForStats(tcp, inboundKey(server.port), (s) => s.opened === 1, 'the server end to open')
    socket.resetAndDestroy()
    const serverEnd = await waitForStats(tcp, inboundKey(server.port), (s) => s.closed === 1, 'the server end to close on the reset')
    assert.equal(serverEnd.resets_received, 1)
    assert.equal(serverEnd.resets_sent, 0)
    const clientEnd = portStats(tcp, outboundKey(server.port))!
    assert.deepEqual([clientEnd.resets_sent, clientEnd.resets_received, clientEnd.closed], [1, 0, 1])
  } finally {
    await server.close()
  }

  // nothing listens: the kernel answers the SYN with a reset from no socket
  const port = await closedPort()
  await assert.rejects(openConnection(port), { code: 'ECONNREFUSED' })
  const refused = await waitForStats(tcp, outboundKey(port), (s) => s.resets_received === 1, 'the client to receive the reset')
  assert.deepEqual([refused.opened, refused.closed], [0, 0], 'a refused connection never opened')
  const answered = portStats(tcp, inboundKey(port))!
  assert.deepEqual([answered.resets_sent, answered.resets_received, answered.opened], [1, 0, 0], 'the reset sent for the port nothing listens on')
})

test('state transitions are counted from and to each state', async () => {
  const before = [transitionCount(tcp, TCP_SYN_SENT, TCP_ESTABLISHED), transitionCount(tcp, TCP_SYN_RECV, TCP_ESTABLISHED), transitionCount(tcp, TCP_CLOSE, TCP_LISTEN)]
  const server = await startReplyServer(10)
  try {
    await Promise.all(Array.from({ length: 5 }, () => exchange(server.port, 10)))
  } finally {
    await server.close()
  }
  // the counts are the whole host's: other tests' connections can only add to them
  const after = [transitionCount(tcp, TCP_SYN_SENT, TCP_ESTABLISHED), transitionCount(tcp, TCP_SYN_RECV, TCP_ESTABLISHED), transitionCount(tcp, TCP_CLOSE, TCP_LISTEN)]
  assert.ok(after[0]! - before[0]! >= 5, `SYN_SENT → ESTABLISHED: ${before[0]} → ${after[0]}`)
  assert.ok(after[1]! - before[1]! >= 5, `SYN_RECV → ESTABLISHED: ${before[1]} → ${after[1]}`)
  assert.ok(after[2]! - before[2]! >= 1, `CLOSE → LISTEN: ${before[2]} → ${after[2]}`)
})

test('a full connection table is counted, and its connections are still counted opened and closed', async () => {
  const small = await openLibraryObject('tcp', { maxEntries: { conns: 1 } })
  const server = await startReplyServer(0)
  const sockets = await Promise.all(Array.from({ length: 4 }, () => openConnection(server.port)))
  try {
    // eight ends, one slot (which other tests' connections may take too)
    await waitForStats(small, inboundKey(server.port), (s) => s.opened === 4, 'the server ends to open')
    assert.ok(overflowCount(small, TCP_OVERFLOW_CONNS) >= 7, `${overflowCount(small, TCP_OVERFLOW_CONNS)} untracked connections`)
    for (const socket of sockets) socket.end()
    await waitForStats(small, inboundKey(server.port), (s) => s.closed === 4, 'the server ends to close')
    await waitForStats(small, outboundKey(server.port), (s) => s.closed === 4, 'the client ends to close')
  } finally {
    for (const socket of sockets) socket.destroy()
    await server.close()
    await small.close()
  }
})

test('a full port table is counted', async () => {
  const small = await openLibraryObject('tcp', { maxEntries: { port_stats: 1 } })
  const server = await startReplyServer(0)
  try {
    // two port keys (the server's end and the client's) and one slot
    await exchange(server.port, 1)
    await waitFor(() => overflowCount(small, TCP_OVERFLOW_PORT_STATS) >= 1, 'an overflow of port_stats')
    assert.ok(portStats(small, inboundKey(server.port)) === undefined || portStats(small, outboundKey(server.port)) === undefined)
  } finally {
    await server.close()
    await small.close()
  }
})
