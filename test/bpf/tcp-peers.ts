/**
 * What the tcp object's tests share: a server that answers each connection's request, once the
 * client has sent it all, with a reply of a known size; clients that open connections and say
 * exactly how many bytes went each way; and readers of the object's maps by the port keys a test
 * owns, since other tests load the machine with their own connections.
 */
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net'
import { decodeTcpPortStats, encodeTcpPortKey, type TcpPortStats } from '../../bpf/lib/tcp.types.ts'
import type { LibraryObject } from '../../runtime/library/index.ts'
import { waitFor } from './kernel.ts'

import { TCP_DIRECTION_INBOUND as INBOUND, TCP_DIRECTION_OUTBOUND as OUTBOUND, TCP_STATE_BITS } from '../../runtime/protocols/tcp.ts'
/** TCP states (include/net/tcp_states.h) */
export const TCP_ESTABLISHED = 1
export const TCP_SYN_SENT = 2
export const TCP_SYN_RECV = 3
export const TCP_CLOSE = 7
export const TCP_LISTEN = 10

/** The port key of the server's end of the connections to `port` (the client's port is not kept). */
export const inboundKey = (port: number) => ({ local_port: port, remote_port: 0, direction: INBOUND })
/** The port key of the client's end of the connections to `port`. */
export const outboundKey = (port: number) => ({ local_port: 0, remote_port: port, direction: OUTBOUND })

export function portStats(tcp: LibraryObject, key: { local_port: number; remote_port: number; direction: number }): TcpPortStats | undefined {
  const bytes = new Uint8Array(8)
  encodeTcpPortKey(key, new DataView(bytes.buffer), 0)
  const value = tcp.map('port_stats').lookup(bytes)
  return value === undefined ? undefined : decodeTcpPortStats(new DataView(value.buffer, value.byteOffset, value.byteLength), 0)
}

function u64At(tcp: LibraryObject, map: string, index: number): number {
  const key = new Uint8Array(4)
  new DataView(key.buffer).setUint32(0, index, true)
  const value = tcp.map(map).lookup(key)!
  return Number(new DataView(value.buffer, value.byteOffset, 8).getBigUint64(0, true))
}

export const transitionCount = (tcp: LibraryObject, from: number, to: number): number => u64At(tcp, 'transitions', (from << TCP_STATE_BITS) | to)
export const overflowCount = (tcp: LibraryObject, which: number): number => u64At(tcp, 'overflows', which)

/** Polls until the port key's stats satisfy `condition` (close transitions end after the sockets' 'close' events). */
export async function waitForStats(tcp: LibraryObject, key: Parameters<typeof portStats>[1], condition: (stats: TcpPortStats) => boolean, what: string): Promise<TcpPortStats> {
  let stats: TcpPortStats | undefined
  await waitFor(() => (stats = portStats(tcp, key)) !== undefined && condition(stats), `${what} (last seen: ${JSON.stringify(stats)})`, 20_000)
  return stats!
}

/** A server that reads each connection's request to its end, then writes `replyBytes` and closes. */
export async function startReplyServer(replyBytes: number, host = '127.0.0.1'): Promise<{ server: Server; port: number; received: () => number; close: () => Promise<void> }> {
  let received = 0
  const sockets = new Set<Socket>()
  const server = createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    socket.on('data', (chunk) => { received += chunk.length })
    socket.on('end', () => socket.end(Buffer.alloc(replyBytes, 'r')))
  })
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, host, resolve))
  const port = (server.address() as AddressInfo).port
  const close = async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
  return { server, port, received: () => received, close }
}

/** Opens a connection, sends `requestBytes`, half-closes and reads the reply to its end; resolves to the reply's length once the socket closed. */
export function exchange(port: number, requestBytes: number, host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    let replied = 0
    const socket = connect({ port, host }, () => socket.end(Buffer.alloc(requestBytes, 'q')))
    socket.on('data', (chunk) => { replied += chunk.length })
    socket.on('error', reject)
    socket.on('close', () => resolve(replied))
  })
}

/** An open connection, once connected. */
export function openConnection(port: number, host = '127.0.0.1'): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host }, () => resolve(socket))
    socket.once('error', reject)
  })
}

/** A port nothing listens on now: listened on, then closed. */
export async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

/** Sum of the RTT histogram's bucket counts. */
export const rttObservations = (stats: TcpPortStats): number => stats.rtt_buckets.reduce((sum, n) => sum + n, 0)
