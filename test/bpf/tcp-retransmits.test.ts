/**
 * Retransmits on the real kernel: a client and a server in two network namespaces of the test's
 * own, joined by a veth pair that loses 10% of the packets each way (test/peers/netns.ts: netem,
 * or an XDP program where this kernel lacks netem). The tcp object sees every namespace, so the
 * client's retransmits show on its port key, and the data still arrives whole.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { after, before, test } from 'node:test'
import { openLibraryObject, type LibraryObject } from '../../runtime/library/index.ts'
import { pollUntil } from '../peers/poll.ts'
import { VethLink } from '../peers/netns.ts'
import { inboundKey, outboundKey, portStats, waitForStats } from './tcp-peers.ts'

const BYTES = 2 * 1024 * 1024

/** Reads one connection to its end, answers with the byte count, and exits; prints its port first. */
const SERVER = `
const server = require('node:net').createServer((socket) => {
  let received = 0
  socket.on('data', (chunk) => { received += chunk.length })
  socket.on('end', () => socket.end(String(received), () => server.close()))
})
server.listen(0, process.argv[1], () => console.log(server.address().port))
`
/** Sends argv[3] bytes to argv[1]:argv[2], half-closes, prints the server's answer. */
const CLIENT = `
const socket = require('node:net').connect({ host: process.argv[1], port: Number(process.argv[2]) }, () => socket.end(Buffer.alloc(Number(process.argv[3]), 'x')))
let answer = ''
socket.on('data', (chunk) => { answer += chunk })
socket.on('close', () => console.log(answer))
`

let tcp: LibraryObject
let link: VethLink

before(async () => {
  tcp = await openLibraryObject('tcp')
  link = await VethLink.create({ lossPercent: 10 })
})
after(async () => {
  await link?.remove()
  await tcp?.close()
})

/** Starts SERVER in namespace b of `on` and resolves to its port. */
async function startServer(on: VethLink): Promise<number> {
  const server = on.spawn('b', process.execPath, ['-e', SERVER, on.addressB])
  let serverOut = ''
  server.stdout!.on('data', (chunk) => { serverOut += chunk })
  await pollUntil(() => /^\d+\n/.test(serverOut), { what: 'the server in namespace b to listen', timeoutMs: 30_000, failed: () => server.exitCode === null ? undefined : `the server exited with ${server.exitCode}` })
  return Number(serverOut.trim())
}

test('the retransmit counter rises on a lossy link, and the bytes still arrive exactly', async (t) => {
  t.diagnostic(`loss induced by ${link.lossBy}${link.lossBy === 'xdp' ? ' (this kernel has no sch_netem)' : ''}`)
  const port = await startServer(link)

  const client = link.spawn('a', process.execPath, ['-e', CLIENT, link.addressB, String(port), String(BYTES)])
  let answer = ''
  client.stdout!.on('data', (chunk) => { answer += chunk })
  const [code] = await once(client, 'exit')
  assert.equal(code, 0)
  assert.equal(answer.trim(), String(BYTES), 'the server received every byte')

  const clientEnd = await waitForStats(tcp, outboundKey(port), (s) => s.closed === 1, 'the client end to close')
  const serverEnd = await waitForStats(tcp, inboundKey(port), (s) => s.closed === 1, 'the server end to close')
  assert.ok(clientEnd.retransmits > 0, `the client retransmitted ${clientEnd.retransmits} segments`)
  t.diagnostic(`retransmits: client ${clientEnd.retransmits}, server ${serverEnd.retransmits}`)
  assert.equal(clientEnd.opened, 1)
  assert.equal(serverEnd.opened, 1)
  assert.equal(serverEnd.bytes_received, BYTES)
  assert.equal(clientEnd.bytes_received, String(BYTES).length)
  // the kernel's bytes_sent counts retransmitted bytes again
  assert.ok(clientEnd.bytes_sent > BYTES, `the client sent ${clientEnd.bytes_sent} bytes for ${BYTES}`)
  assert.equal(portStats(tcp, outboundKey(port))!.resets_received, 0)
})

test('a handshake whose answers never arrive retransmits the SYN at the client and the SYN-ACK at the server', async (t) => {
  const deaf = await VethLink.create({ lossPercent: { a: 100 } })
  t.after(() => deaf.remove())
  const port = await startServer(deaf)
  // the client in a hears nothing: its connect hangs until remove() kills it
  deaf.spawn('a', process.execPath, ['-e', CLIENT, deaf.addressB, String(port), '1'])
  // both retransmit after the initial 1 s timeout
  const client = await waitForStats(tcp, outboundKey(port), (s) => s.retransmits >= 1, 'the client to send its SYN again')
  const server = await waitForStats(tcp, inboundKey(port), (s) => s.retransmits >= 1, 'the server to send its SYN-ACK again')
  assert.deepEqual([client.opened, server.opened], [0, 0], 'no handshake completed')
})
