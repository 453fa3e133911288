/**
 * runtime/protocols/client-streams.ts: when the database and messaging plugins end a connection's
 * parser stream. A close comes on `sockdata:connections`, read apart from the protocol's ring, so
 * it may come before the connection's last data records, or before its first: the stream ends
 * CLOSE_GRACE_MS after the close was read, or after its first record for an early close.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ClientStreams, type ClientConn, type SockRecord } from '../../runtime/protocols/client-streams.ts'
import { CLOSE_GRACE_MS } from '../../runtime/protocols/deferred-closes.ts'
import { ROLE_CLIENT, ROLE_SERVER, SOCK_CLOSE, SOCK_DATA } from '../../runtime/protocols/sockdata.ts'

/** The streams' calls, in order: `push <conn> <bytes>` and `close <conn> <endNs>`. */
function recorder(): { streams: ClientStreams<ClientConn>; calls: string[] } {
  const calls: string[] = []
  const streams = new ClientStreams<ClientConn>(16, (client) => ({
    client,
    stream: {
      push: (chunk) => { calls.push(`push ${client.connId} ${chunk.bytes}`) },
      close: (endNs) => { calls.push(`close ${client.connId} ${endNs}`) },
    },
  }), { closeEvicted: true })
  return { streams, calls }
}

const data = (connId: number, bytes: number, role = ROLE_CLIENT): SockRecord => ({
  kind: SOCK_DATA, role, conn_id: connId, pid: 7, comm: 'client', family: 2, remote_addr: new Uint8Array([127, 0, 0, 1]), remote_port: 6379,
  direction: 0, position: 0, bytes, data: new Uint8Array(bytes), start_ns: 1, end_ns: 2, flags: 0, tid: 7, context: 0,
})
const close = (connId: number, endNs: number) => ({ kind: SOCK_CLOSE, conn_id: connId, end_ns: endNs })

test('a close ends the stream CLOSE_GRACE_MS after it was read, and data that comes meanwhile still reaches the stream', () => {
  const { streams, calls } = recorder()
  streams.onRecord(data(1, 10))
  const readAt = Date.now()
  streams.onConnectionEvent(close(1, 500))
  streams.closeDue(readAt + CLOSE_GRACE_MS - 1)
  // the reply, read after the close
  streams.onRecord(data(1, 20))
  assert.deepEqual(calls, ['push 1 10', 'push 1 20'])
  streams.closeDue(readAt + CLOSE_GRACE_MS + 1000)
  assert.deepEqual(calls, ['push 1 10', 'push 1 20', 'close 1 500'])
  // closed once
  streams.closeDue(readAt + 10 * CLOSE_GRACE_MS)
  assert.equal(calls.length, 3)
})

test('a close read before any data of its connection waits for the first record, then its grace', () => {
  const { streams, calls } = recorder()
  streams.onConnectionEvent(close(2, 900))
  streams.closeDue(Date.now() + 10 * CLOSE_GRACE_MS)
  assert.deepEqual(calls, [])
  const firstAt = Date.now()
  streams.onRecord(data(2, 5))
  streams.closeDue(firstAt + CLOSE_GRACE_MS - 1)
  assert.deepEqual(calls, ['push 2 5'])
  streams.closeDue(Date.now() + CLOSE_GRACE_MS + 1000)
  assert.deepEqual(calls, ['push 2 5', 'close 2 900'])
})

test("the server's end makes no stream; other events on the connections ring change nothing", () => {
  const { streams, calls } = recorder()
  streams.onRecord(data(3, 5, ROLE_SERVER))
  streams.onRecord(data(4, 5))
  streams.onConnectionEvent({ kind: SOCK_DATA, conn_id: 4, end_ns: 1 })
  streams.closeDue(Date.now() + 10 * CLOSE_GRACE_MS)
  assert.deepEqual(calls, ['push 4 5'])
})
