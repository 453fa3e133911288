/**
 * Real HTTP/2 traffic for the parser tests: a `node:http2` client and server (nghttp2 at both
 * ends) talk through a raw TCP proxy that records every read of each direction, so the tests feed
 * the parser the bytes a real peer sent, cut where the kernel would have cut them.
 */
import http2 from 'node:http2'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import type { SockChunk } from '../../runtime/protocols/sockdata.ts'
import { pollUntil } from '../peers/poll.ts'

/** One read of the proxy: `c2s` the client sent, `s2c` the server sent. */
export interface Record {
  direction: 'c2s' | 's2c'
  data: Uint8Array
}

export interface Capture {
  records: Record[]
}

/**
 * Runs `script` against a server whose streams `handler` answers, through a recording proxy, and
 * returns what crossed it once both ends have closed.
 */
export async function capture(
  handler: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, rawHeaders: string[], session: http2.ServerHttp2Session) => void,
  script: (session: http2.ClientHttp2Session) => Promise<void>,
  settings: { server?: http2.Settings; client?: http2.Settings } = {},
): Promise<Capture> {
  const server = http2.createServer({ settings: settings.server })
  server.on('stream', (stream, headers, _flags, rawHeaders) => handler(stream, headers, rawHeaders as unknown as string[], stream.session as http2.ServerHttp2Session))
  server.on('sessionError', () => {})
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const records: Record[] = []
  let open = 0
  const proxy = net.createServer((downstream) => {
    open += 2
    const upstream = net.connect((server.address() as AddressInfo).port, '127.0.0.1')
    downstream.on('data', (data) => {
      records.push({ direction: 'c2s', data: Uint8Array.from(data) })
      upstream.write(data)
    })
    upstream.on('data', (data) => {
      records.push({ direction: 's2c', data: Uint8Array.from(data) })
      downstream.write(data)
    })
    for (const [socket, other] of [[downstream, upstream], [upstream, downstream]] as const) {
      socket.on('error', () => other.destroy())
      socket.on('end', () => other.end())
      socket.on('close', () => {
        open--
        other.destroy()
      })
    }
  })
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  const session = http2.connect(`http://127.0.0.1:${(proxy.address() as AddressInfo).port}`, { settings: settings.client })
  session.on('error', () => {})
  try {
    await script(session)
  } finally {
    // a GOAWAY received may have closed it already
    if (!session.destroyed) {
      await new Promise<void>((resolve) => {
        session.once('close', resolve)
        session.close()
      })
    }
    await pollUntil(() => open === 0, { what: 'the proxied connection to close', timeoutMs: 30_000, intervalMs: 5 })
    proxy.close()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
  return { records }
}

/** Sends a request and waits for its end; the response's raw headers and body length. */
export function request(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: Uint8Array): Promise<{ rawHeaders: string[]; bodyBytes: number; trailers: string[] }> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers, { endStream: body === undefined })
    let rawHeaders: string[] = []
    let trailers: string[] = []
    let bodyBytes = 0
    stream.on('response', (_headers, _flags, raw) => (rawHeaders = raw as unknown as string[]))
    stream.on('trailers', (_headers, _flags, raw) => (trailers = raw as unknown as string[]))
    stream.on('data', (data: Buffer) => (bodyBytes += data.length))
    stream.on('error', reject)
    // a stream reset or refused ends without 'end'
    stream.on('close', () => resolve({ rawHeaders, bodyBytes, trailers }))
    if (body !== undefined) stream.end(body)
  })
}

export interface ChunkOptions {
  /** Bytes captured of each record (default: all). */
  capture?: number
  /** Cut each record at every frame boundary inside it, as one send per frame. */
  byFrame?: boolean
}

/**
 * The records as the parser receives them at one end: `client` sends c2s (egress), `server`
 * sends s2c. Positions count each direction's bytes; times increase by 1000 ns per record.
 */
export function chunksOf(records: readonly Record[], end: 'client' | 'server', options: ChunkOptions = {}): SockChunk[] {
  const pieces = options.byFrame === true ? byFrame(records) : records
  const positions = [0, 0]
  return pieces.map((record, index) => {
    const direction = (record.direction === 'c2s') === (end === 'client') ? 0 : 1
    const position = positions[direction]!
    positions[direction] = position + record.data.length
    const data = options.capture === undefined ? record.data : record.data.subarray(0, options.capture)
    return { direction, position, bytes: record.data.length, data, startNs: (index + 1) * 1000, endNs: (index + 1) * 1000 + 500, loss: false, tls: false, tid: 7, context: index }
  })
}

/** Splits records at the frame boundaries inside them (the client preface is a boundary too). */
export function byFrame(records: readonly Record[]): Record[] {
  // where the next frame starts, in each direction's stream
  const next = { c2s: 24, s2c: 0 }
  const offset = { c2s: 0, s2c: 0 }
  const header = { c2s: [] as number[], s2c: [] as number[] }
  const out: Record[] = []
  for (const record of records) {
    const dir = record.direction
    let start = 0
    for (let i = 0; i < record.data.length; i++) {
      const at = offset[dir] + i
      if (at === next[dir] && i > start) {
        out.push({ direction: dir, data: record.data.subarray(start, i) })
        start = i
      }
      if (at >= next[dir] && at < next[dir] + 9) header[dir].push(record.data[i]!)
      if (header[dir].length === 9) {
        const [a, b, c] = header[dir]
        next[dir] += 9 + ((a! << 16) | (b! << 8) | c!)
        header[dir] = []
      }
    }
    out.push({ direction: dir, data: record.data.subarray(start) })
    offset[dir] += record.data.length
  }
  return out
}

/** Every header block of one direction, in order: [stream id, block bytes, flags of the first frame]. */
export function headerBlocks(records: readonly Record[], direction: 'c2s' | 's2c'): { stream: number; type: number; block: Uint8Array }[] {
  const bytes = concat(records.filter((record) => record.direction === direction).map((record) => record.data))
  const blocks: { stream: number; type: number; block: Uint8Array }[] = []
  let at = direction === 'c2s' ? 24 : 0
  let current: { stream: number; type: number; parts: Uint8Array[] } | undefined
  while (at + 9 <= bytes.length) {
    const length = (bytes[at]! << 16) | (bytes[at + 1]! << 8) | bytes[at + 2]!
    const type = bytes[at + 3]!
    const flags = bytes[at + 4]!
    const stream = ((bytes[at + 5]! & 0x7f) << 24) | (bytes[at + 6]! << 16) | (bytes[at + 7]! << 8) | bytes[at + 8]!
    let payload = bytes.subarray(at + 9, at + 9 + length)
    at += 9 + length
    if (type !== 1 && type !== 5 && type !== 9) continue
    if (type !== 9) {
      let skip = 0
      let pad = 0
      if (flags & 0x8) {
        pad = payload[0]!
        skip = 1
      }
      if (type === 1 && flags & 0x20) skip += 5
      if (type === 5) skip += 4
      payload = payload.subarray(skip, payload.length - pad)
      current = { stream, type, parts: [] }
    }
    current!.parts.push(payload)
    if (flags & 0x4) {
      blocks.push({ stream: current!.stream, type: current!.type, block: concat(current!.parts) })
      current = undefined
    }
  }
  return blocks
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0))
  let at = 0
  for (const part of parts) {
    out.set(part, at)
    at += part.length
  }
  return out
}

/** A flat [name, value, name, value...] list as pairs. */
export function pairs(raw: readonly string[]): [string, string][] {
  const out: [string, string][] = []
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i]!, raw[i + 1]!])
  return out
}
