/**
 * The sockdata object's thread context, TLS upgrades and server roles, on the real kernel. A python3 server
 * (fixtures/sockdata-middle.py) pings a RESP backend while it serves each HTTP request and once
 * after: the calls inside a request carry that request's context, the calls after it none. A
 * PostgreSQL-shaped connection that switches to TLS after its SSLRequest sends no ciphertext.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { after, before, beforeEach, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { waitFor } from './kernel.ts'
import { CLIENT, Capture, DATA, EGRESS, FLAG_LOSS, HTTP, INGRESS, MYSQL, POSTGRES, REDIS, REQUEST, RESPONSE, SERVER, exchange, hex, killPeers, recv, send, startClient, startServer } from './sockdata-peers.ts'

const MIDDLE = fileURLToPath(new URL('./fixtures/sockdata-middle.py', import.meta.url))
const FORKING_SERVER = fileURLToPath(new URL('./fixtures/sockdata-forking-server.py', import.meta.url))
const PING = '*1\r\n$4\r\nPING\r\n'
const PONG = '+PONG\r\n'

let capture: Capture

before(async () => {
  capture = await Capture.open()
})
beforeEach(() => capture.reset())
after(async () => {
  killPeers()
  await capture?.close()
})

/** Runs the middle server against `backendPort`; resolves with its pid and listening port. */
async function startMiddle(backendPort: number, rounds: number): Promise<{ pid: number; port: number; done: Promise<void> }> {
  const child = spawn('/usr/bin/python3', [MIDDLE, String(backendPort), String(REQUEST.length), hex(RESPONSE), String(rounds)])
  let out = ''
  let err = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { out += chunk })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { err += chunk })
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
  await waitFor(() => /listening \d+/.test(out) || child.exitCode !== null, 'the middle server to listen', 10_000)
  const match = /listening (\d+)/.exec(out)
  if (match === null) throw new Error(`the middle server exited (${child.exitCode}): ${err}`)
  const done = exited.then((code) => assert.equal(code, 0, `the middle server failed: ${err}`))
  return { pid: child.pid!, port: Number(match[1]), done }
}

test('client calls made while a thread serves an HTTP request carry its context; calls after the response carry none', async () => {
  capture.want(HTTP)
  capture.want(REDIS)
  const rounds = 2
  const { server: backend, port: backendPort } = startServer(Array.from({ length: rounds * 2 }, () => [recv(PING), send(PONG)]).flat())
  const middle = await startMiddle(await backendPort, rounds)
  const { client } = await startClient(middle.port, Array.from({ length: rounds }, () => [send(REQUEST), recv(RESPONSE)]).flat())
  await Promise.all([middle.done, backend.finished(), client.finished()])

  const served = capture.of(middle.pid, 'http').filter((r) => r.kind === DATA)
  assert.deepEqual(served.map((r) => r.direction), [INGRESS, EGRESS, INGRESS, EGRESS])
  const [first, second] = [served[0]!.context, served[2]!.context]
  assert.ok(first > 0 && second > 0 && first !== second, `two requests, two contexts: ${first}, ${second}`)
  assert.deepEqual(served.map((r) => r.context), [first, first, second, second])
  const calls = capture.of(middle.pid, 'redis').filter((r) => r.kind === DATA)
  assert.deepEqual(calls.map((r) => [r.direction, r.context]), [
    [EGRESS, first], [INGRESS, first], [EGRESS, 0], [INGRESS, 0],
    [EGRESS, second], [INGRESS, second], [EGRESS, 0], [INGRESS, 0],
  ])
  // the backend and the front client served nothing while they talked
  for (const pid of [backend.pid, client.pid]) assert.deepEqual(capture.of(pid).filter((r) => r.kind === DATA && r.stream !== 'http').map((r) => r.context).filter((c) => c !== 0), [])
  assert.deepEqual(capture.of(client.pid, 'http').map((r) => r.context).filter((c) => c !== 0), [])
})

test('a PostgreSQL connection that switches to TLS after its SSLRequest sends no ciphertext', async () => {
  capture.want(POSTGRES)
  const sslRequest = Buffer.from('0000000804d2162f', 'hex')
  // the first bytes of a ClientHello and of a ServerHello: TLS handshake records, version 3.x
  const clientHello = Buffer.from('160301002a0100002603030102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f2000000000', 'hex')
  const serverHello = Buffer.from('160303002a0200002603030102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f2000000000', 'hex')
  const more = Buffer.from('170303000a00112233445566778899', 'hex')
  const { server, client } = await exchange(
    [recv(sslRequest), send('S'), recv(clientHello), send(serverHello), recv(more), send(more)],
    [send(sslRequest), recv('S'), send(clientHello), recv(serverHello), send(more), recv(more)],
  )
  const data = (pid: number) => capture.of(pid, 'postgres').filter((r) => r.kind === DATA).map((r) => [r.direction, r.data.toString('hex')])
  assert.deepEqual(data(client.pid), [[EGRESS, hex(sslRequest)], [INGRESS, hex('S')]])
  assert.deepEqual(data(server.pid), [[INGRESS, hex(sslRequest)], [EGRESS, hex('S')]])
})

test('connections a forked child serves are the server end, for every connection the listener accepted', async () => {
  capture.want(HTTP)
  const connections = 3
  const server = spawn('/usr/bin/python3', [FORKING_SERVER, String(REQUEST.length), hex(RESPONSE), String(connections)])
  let out = ''
  server.stdout.setEncoding('utf8').on('data', (chunk: string) => { out += chunk })
  const exited = new Promise<number | null>((resolve) => server.once('exit', resolve))
  await waitFor(() => /listening \d+/.test(out), 'the forking server to listen', 10_000)
  const port = Number(/listening (\d+)/.exec(out)![1])
  const clients = []
  for (let i = 0; i < connections; i++) {
    // one at a time: each accept (and the listener's LISTEN -> SYN_RECV clone) happens before the next child serves
    const { client } = await startClient(port, [send(REQUEST), recv(RESPONSE)])
    await client.finished()
    clients.push(client)
  }
  assert.equal(await exited, 0)
  const children = [...out.matchAll(/child (\d+)/g)].map((m) => Number(m[1]))
  assert.equal(children.length, connections)
  for (const child of children) {
    assert.deepEqual(capture.of(child, 'http').filter((r) => r.kind === DATA).map((r) => [r.direction, r.role]), [[INGRESS, SERVER], [EGRESS, SERVER]], `child ${child}`)
  }
  for (const client of clients) assert.deepEqual(capture.of(client.pid, 'http').map((r) => r.role), [CLIENT, CLIENT])
})

test('a protocol wanted at the client end only: records of the accepting end stay in the kernel; wanted again, its next record says bytes were missed', async () => {
  capture.want(REDIS, { clientEndOnly: true })
  const { server, port: listening } = startServer([recv(PING), send(PONG), ['wait'], recv(PING), send(PONG)])
  const { client } = await startClient(await listening, [send(PING), recv(PONG), ['wait'], send(PING), recv(PONG)])
  await Promise.all([server.line('waiting'), client.line('waiting')])
  const data = (pid: number) => capture.of(pid, 'redis').filter((r) => r.kind === DATA).map((r) => [r.direction, r.role, r.position, r.flags & FLAG_LOSS])
  assert.deepEqual(data(client.pid), [[EGRESS, CLIENT, 0, 0], [INGRESS, CLIENT, 0, 0]])
  assert.deepEqual(data(server.pid), [])
  capture.want(REDIS)
  server.resume()
  client.resume()
  await Promise.all([server.finished(), client.finished()])
  // the server's first receive began before the connection was classified, so it was counted at
  // its exit; its first send was dropped at its entry: not counted, and flagged as a gap
  assert.deepEqual(data(server.pid), [[INGRESS, SERVER, PING.length, 0], [EGRESS, SERVER, 0, FLAG_LOSS]])
  assert.deepEqual(data(client.pid).slice(2), [[EGRESS, CLIENT, PING.length, 0], [INGRESS, CLIENT, PONG.length, 0]])
})

test('a PostgreSQL or MySQL connection found open at start is recognised from a whole query; a new connection is not', async () => {
  const query = (text: string) => {
    const message = Buffer.concat([Buffer.from('Q'), Buffer.alloc(4), Buffer.from(`${text}\0`)])
    message.writeUInt32BE(message.length - 1, 1)
    return message
  }
  // ReadyForQuery, idle
  const ready = Buffer.from('5a0000000549', 'hex')
  const comQuery = (text: string) => {
    const packet = Buffer.concat([Buffer.alloc(4), Buffer.from([3]), Buffer.from(text)])
    packet.writeUIntLE(packet.length - 4, 0, 3)
    return packet
  }
  // an OK packet, sequence 1
  const ok = Buffer.from('0700000100000002000000', 'hex')
  for (const [ring, request, reply] of [['postgres', query('SELECT 1'), ready], ['mysql', comQuery('SELECT 1'), ok]] as const) {
    // opened before the object below: its records are mid-stream to it
    const { server, port: listening } = startServer([['wait'], recv(request), send(reply), ['wait'], recv(request), send(reply)])
    const { client } = await startClient(await listening, [['wait'], send(request), recv(reply), ['wait'], send(request), recv(reply)])
    await Promise.all([server.line('waiting'), client.line('waiting')])
    const late = await Capture.open()
    try {
      late.want(POSTGRES)
      late.want(MYSQL)
      server.resume()
      client.resume()
      await Promise.all([server.line('waiting', 2), client.line('waiting', 2)])
      // a new connection that starts with the same bytes is nothing known
      const fresh = await exchange([recv(request), send(reply)], [send(request), recv(reply)])
      server.resume()
      client.resume()
      await Promise.all([server.finished(), client.finished()])
      const data = (pid: number) => late.of(pid).filter((r) => r.kind === DATA).map((r) => [r.stream, r.direction, r.data.toString('hex')])
      assert.deepEqual(data(client.pid), [[ring, EGRESS, hex(request)], [ring, INGRESS, hex(reply)], [ring, EGRESS, hex(request)], [ring, INGRESS, hex(reply)]], ring)
      assert.deepEqual(data(fresh.client.pid), [], `${ring}: a new connection`)
    } finally {
      await late.close()
    }
  }
})
