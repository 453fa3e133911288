/**
 * The sockdata cgroup filter on the real kernel: a protocol claimed for a cgroup sends only the
 * records of processes in that cgroup or below it, data and connection lifecycle alike. The test
 * makes its own cgroup v2 directories (test/peers/cgroup.ts) and moves python peers
 * (test/bpf/sockdata-peers.ts) into them before their first syscall; peers left outside stay in
 * this process's cgroup. Records made in softirq (a non-blocking connect timing out) and by the
 * start-up scan's connections are covered, since neither runs in the connection's process.
 */
import assert from 'node:assert/strict'
import { after, before, beforeEach, test } from 'node:test'
import { TestCgroup } from '../peers/cgroup.ts'
import {
  CONNECT_FAILED, CLOSE, Capture, DATA, EGRESS, FLAG_PREEXISTING, HTTP, INGRESS, OPEN, Peer, REQUEST, RESPONSE, type Rec,
  killPeers, recv, registeringPeers, requestResponse, send, startClient, startServer,
} from './sockdata-peers.ts'

const ETIMEDOUT = 110

let capture: Capture
let cgroup: TestCgroup
let inner: TestCgroup

before(async () => {
  capture = await Capture.open()
  cgroup = TestCgroup.create()
  inner = cgroup.child('inner')
})
beforeEach(() => capture.reset())
after(async () => {
  killPeers()
  try {
    await cgroup?.remove()
  } finally {
    await capture?.close()
  }
})

/** Runs `start` with every peer it spawns moved into `into` before its first syscall. */
const inCgroup = <T>(into: TestCgroup, start: () => T): Promise<T> => registeringPeers((pid) => into.add(pid), async () => start())

/** A process's records by ring (order holds within a ring only): [ring, kind, direction, bytes, payload]. */
function records(pid: number, from = capture): unknown[][] {
  const fields = (r: Rec) => [r.stream, r.kind, r.direction, r.bytes, r.data.toString()]
  return [...from.of(pid, 'http'), ...from.of(pid, 'connections')].map(fields)
}

const serverRecords = [
  ['http', DATA, INGRESS, REQUEST.length, REQUEST],
  ['http', DATA, EGRESS, RESPONSE.length, RESPONSE],
  ['connections', OPEN, 0, 0, ''],
  ['connections', CLOSE, 0, 0, ''],
]
const clientRecords = [
  ['http', DATA, EGRESS, REQUEST.length, REQUEST],
  ['http', DATA, INGRESS, RESPONSE.length, RESPONSE],
  ['connections', OPEN, 0, 0, ''],
  ['connections', CLOSE, 0, 0, ''],
]

test('a claimed cgroup: its processes and those of the cgroups below it are traced, data and lifecycle; others are not', async () => {
  capture.want(HTTP, { cgroupFilter: true })
  capture.targetCgroup(HTTP, cgroup.id)

  // a server in the claimed cgroup itself, its client outside
  const first = await inCgroup(cgroup, () => startServer(requestResponse()[0]))
  assert.deepEqual(cgroup.pids(), [first.server.pid])
  const outsideClient = await startClient(await first.port, requestResponse()[1])
  await Promise.all([first.server.finished(), outsideClient.client.finished()])

  // a server outside, its client in a cgroup below the claimed one
  const second = startServer(requestResponse()[0])
  const port = await second.port
  const innerClient = await inCgroup(inner, () => startClient(port, requestResponse()[1]))
  await Promise.all([second.server.finished(), innerClient.client.finished()])

  assert.deepEqual(records(first.server.pid), serverRecords)
  assert.deepEqual(records(innerClient.client.pid), clientRecords)
  assert.deepEqual(capture.of(outsideClient.client.pid), [])
  assert.deepEqual(capture.of(second.server.pid), [])
})

test('a pid filter and a cgroup filter together pass a process that either names, and no other', async () => {
  capture.want(HTTP, { cgroupFilter: true, pidFilter: true })
  capture.targetCgroup(HTTP, cgroup.id)
  const first = await inCgroup(inner, () => startServer(requestResponse()[0]))
  const port = await first.port
  const { client } = await registeringPeers((pid) => capture.target(HTTP, pid), () => startClient(port, requestResponse()[1]))
  await Promise.all([first.server.finished(), client.finished()])
  const second = startServer(requestResponse()[0])
  const other = await startClient(await second.port, requestResponse()[1])
  await Promise.all([second.server.finished(), other.client.finished()])

  assert.deepEqual(records(first.server.pid), serverRecords)
  assert.deepEqual(records(client.pid), clientRecords)
  assert.deepEqual(capture.of(second.server.pid), [])
  assert.deepEqual(capture.of(other.client.pid), [])
})

test('a process moved into the cgroup after it connected is traced from the move on, by the cgroup it is in now', async () => {
  capture.want(HTTP, { cgroupFilter: true })
  capture.targetCgroup(HTTP, cgroup.id)
  const { server, port } = startServer(requestResponse()[0])
  const { client } = await startClient(await port, [['wait'], send(REQUEST), recv(RESPONSE)])
  await client.line('waiting')
  inner.add(client.pid)
  client.resume()
  await Promise.all([server.finished(), client.finished()])

  // connected outside the cgroup: no open record; everything after the move goes out
  assert.deepEqual(records(client.pid), clientRecords.filter(([, kind]) => kind !== OPEN))
  assert.deepEqual(capture.of(server.pid), [])
})

test("a non-blocking connect that times out in the kernel's timer (softirq) is reported by the connecting thread's cgroup", async () => {
  capture.want(HTTP, { cgroupFilter: true })
  capture.targetCgroup(HTTP, cgroup.id)
  // a listener that never accepts, whose queue of one is full: later SYNs are dropped unanswered
  const { server: listener, port: listening } = startServer([], { backlog: 0, hold: true })
  const port = await listening
  const { client: filler } = await startClient(port, [['wait']])
  await filler.line('waiting')

  const connecting = { role: 'client', port, nonblocking: true, user_timeout_ms: 100 }
  const [traced, untraced] = [await inCgroup(inner, () => new Peer(connecting)), new Peer(connecting)]
  for (const peer of [traced, untraced]) {
    assert.equal(await peer.line('connect_ex '), 'connect_ex 115')
    assert.equal(await peer.line('connect '), `connect ${ETIMEDOUT}`)
    await peer.exited()
  }
  filler.resume()
  listener.resume()
  await Promise.all([filler.finished(), listener.finished()])

  const lifecycle = (pid: number) => capture.of(pid).map((r) => [r.stream, r.kind, r.bytes, r.tid, r.comm, r.remote_port])
  assert.deepEqual(lifecycle(traced.pid), [
    ['connections', OPEN, 0, traced.pid, 'python3', port],
    ['connections', CONNECT_FAILED, ETIMEDOUT, traced.pid, 'python3', port],
  ])
  assert.deepEqual(capture.of(untraced.pid), [])
  assert.deepEqual(capture.of(filler.pid), [])
  assert.deepEqual(capture.of(listener.pid), [])
})

test("connections found by the start-up scan are filtered by their own process's cgroup", async () => {
  const first = await inCgroup(cgroup, () => startServer([['wait'], ...requestResponse()[0]]))
  const { client } = await startClient(await first.port, [['wait'], ...requestResponse()[1]])
  await Promise.all([first.server.line('waiting'), client.line('waiting')])

  const late = await Capture.open()
  try {
    late.want(HTTP, { cgroupFilter: true })
    late.targetCgroup(HTTP, cgroup.id)
    first.server.resume()
    client.resume()
    await Promise.all([first.server.finished(), client.finished()])
    assert.deepEqual(records(first.server.pid, late), serverRecords.filter(([, kind]) => kind !== OPEN))
    assert.ok(late.of(first.server.pid).every((r) => r.flags === FLAG_PREEXISTING), 'every record of the scanned connection is flagged pre-existing')
    assert.deepEqual(late.of(client.pid), [])
  } finally {
    await late.close()
  }
})
