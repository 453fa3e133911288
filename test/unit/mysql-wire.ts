/**
 * MySQL protocol test helpers: packet builders written from the protocol documentation
 * (dev.mysql.com/doc/dev/mysql-server/latest/PAGE_PROTOCOL.html and mariadb.com/kb "Clients &
 * Communication Protocols"), and `MysqlWire`, which feeds records to one parser connection with
 * positions and times as the kernel would give them and collects what it hands over.
 */
import { MysqlParser, type MysqlConnection, type MysqlOperation, type MysqlOptions, type MysqlRole } from '../../runtime/protocols/mysql.ts'

export const EGRESS = 0
export const INGRESS = 1

const encoder = new TextEncoder()

export function bytesOf(...parts: (Uint8Array | number[] | string)[]): Uint8Array {
  const arrays = parts.map((part) => (typeof part === 'string' ? encoder.encode(part) : part instanceof Uint8Array ? part : Uint8Array.from(part)))
  const out = new Uint8Array(arrays.reduce((n, a) => n + a.length, 0))
  let at = 0
  for (const a of arrays) {
    out.set(a, at)
    at += a.length
  }
  return out
}

export function hex(text: string): Uint8Array {
  return Uint8Array.from(text.match(/../g) ?? [], (pair) => parseInt(pair, 16))
}

export function u16le(value: number): number[] {
  return [value & 0xff, (value >> 8) & 0xff]
}

export function u32le(value: number): number[] {
  return [value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, (value >>> 24) & 0xff]
}

export function lenenc(value: number): number[] {
  if (value < 0xfb) return [value]
  if (value < 0x10000) return [0xfc, ...u16le(value)]
  if (value < 0x1000000) return [0xfd, value & 0xff, (value >> 8) & 0xff, (value >> 16) & 0xff]
  return [0xfe, ...u32le(value), 0, 0, 0, 0]
}

export function lenencString(text: string | Uint8Array): Uint8Array {
  const body = typeof text === 'string' ? encoder.encode(text) : text
  return bytesOf(lenenc(body.length), body)
}

/** One logical packet framed from `seq` on: split into 16 MiB - 1 pieces, with an empty one after an exact multiple. */
export function packet(seq: number, payload: Uint8Array): Uint8Array {
  const pieces: Uint8Array[] = []
  let at = 0
  for (;;) {
    const length = Math.min(0xffffff, payload.length - at)
    pieces.push(bytesOf([length & 0xff, (length >> 8) & 0xff, (length >> 16) & 0xff, seq & 0xff]), payload.subarray(at, at + length))
    seq++
    at += length
    if (length < 0xffffff) break
  }
  return bytesOf(...pieces)
}

/** Packets of consecutive sequence ids from `seq`; a 16 MiB payload takes several. */
export function packets(seq: number, payloads: Uint8Array[]): Uint8Array {
  const out: Uint8Array[] = []
  for (const payload of payloads) {
    out.push(packet(seq, payload))
    seq += Math.floor(payload.length / 0xffffff) + 1
  }
  return bytesOf(...out)
}

export const CAPS_41 = 0x200 | 0x8000 | 0x80000 | 0x200000 // PROTOCOL_41, SECURE_CONNECTION, PLUGIN_AUTH, LENENC client data
export const CONNECT_WITH_DB = 0x8
export const SESSION_TRACK = 0x800000
export const DEPRECATE_EOF = 0x1000000
export const QUERY_ATTRIBUTES = 0x8000000
export const SSL = 0x800
export const COMPRESS = 0x20

/** Protocol 10 greeting. */
export function greeting(version: string, capabilities: number): Uint8Array {
  return bytesOf(
    [10], version, [0], u32le(7), 'abcdefgh', [0], u16le(capabilities & 0xffff), [45], u16le(2), u16le(capabilities >>> 16),
    [21], new Array(10).fill(0), 'ijklmnopqrst', [0], 'mysql_native_password', [0],
  )
}

/** HandshakeResponse41 with a lenenc auth response. */
export function handshakeResponse(options: { capabilities: number; user: string; auth: Uint8Array; database?: string }): Uint8Array {
  const filler = new Array(19).fill(0)
  return bytesOf(
    u32le(options.capabilities), u32le(16 * 1024 * 1024), [45], filler, u32le(0),
    options.user, [0], lenencString(options.auth), options.database === undefined ? [] : bytesOf(options.database, [0]),
    'mysql_native_password', [0],
  )
}

export function sslRequest(capabilities: number): Uint8Array {
  return bytesOf(u32le(capabilities | SSL), u32le(16 * 1024 * 1024), [45], new Array(23).fill(0))
}

export function ok(options: { affectedRows?: number; status?: number; header?: number; schema?: string } = {}): Uint8Array {
  const status = (options.status ?? 2) | (options.schema === undefined ? 0 : 0x4000)
  const head = bytesOf([options.header ?? 0], lenenc(options.affectedRows ?? 0), lenenc(0), u16le(status), u16le(0))
  if (options.schema === undefined) return head
  const entry = bytesOf([1], lenencString(lenencString(options.schema)))
  return bytesOf(head, [0], lenencString(entry))
}

export function eof(status = 2): Uint8Array {
  return bytesOf([0xfe], u16le(0), u16le(status))
}

export function err(code: number, sqlState: string, message: string): Uint8Array {
  return bytesOf([0xff], u16le(code), '#', sqlState, message)
}

export function columnDefinition(name: string): Uint8Array {
  return bytesOf(lenencString('def'), lenencString('shop'), lenencString('items'), lenencString('items'), lenencString(name), lenencString(name), [0x0c], u16le(33), u32le(200), [0xfd], u16le(0), [0], u16le(0))
}

export function textRow(values: (string | null)[]): Uint8Array {
  return bytesOf(...values.map((value) => (value === null ? Uint8Array.of(0xfb) : lenencString(value))))
}

export function query(text: string): Uint8Array {
  return bytesOf([0x03], text)
}

/** A text result set's packets: column count, definitions, EOF unless deprecateEof, rows, and the end (EOF or OK). */
export function resultSet(columns: string[], rows: Uint8Array[], options: { deprecateEof?: boolean; status?: number } = {}): Uint8Array[] {
  const end = options.deprecateEof === true ? ok({ header: 0xfe, status: options.status }) : eof(options.status)
  return [bytesOf(lenenc(columns.length)), ...columns.map(columnDefinition), ...(options.deprecateEof === true ? [] : [eof()]), ...rows, end]
}

export interface RecordTimes {
  startNs: number
  endNs: number
}

/** Operations as the handler got them, with the side. */
export type Handed = MysqlOperation & { side: 'client' | 'server' }

/** One connection fed record by record, positions per direction and increasing times kept here. */
export class MysqlWire {
  readonly parser: MysqlParser<null>
  readonly connection: MysqlConnection<null>
  readonly operations: Handed[] = []
  readonly positions = [0, 0]
  private clock = 1000

  constructor(role: MysqlRole = 'client', options: MysqlOptions = {}) {
    this.parser = new MysqlParser<null>((operation, _context, side) => this.operations.push({ ...operation, side }), options)
    this.connection = this.parser.connection(null, role)
  }

  /** One record carrying `bytes`, of which only `capture` are captured; returns its times. */
  send(direction: number, bytes: Uint8Array, options: { capture?: number; tid?: number; context?: number; gapBefore?: number } = {}): RecordTimes {
    const startNs = (this.clock += 10)
    const endNs = (this.clock += 5)
    this.positions[direction]! += options.gapBefore ?? 0
    this.connection.push({
      direction,
      position: this.positions[direction]!,
      bytes: bytes.length,
      data: options.capture === undefined ? bytes : bytes.subarray(0, options.capture),
      startNs,
      endNs,
      tid: options.tid ?? 0,
      context: options.context ?? 0,
    })
    this.positions[direction]! += bytes.length
    return { startNs, endNs }
  }

  errors(): Record<string, number> {
    return Object.fromEntries(Object.entries(this.parser.errors).filter(([, n]) => n !== 0))
  }

  stats(): Record<string, number> {
    return Object.fromEntries(Object.entries(this.parser.stats).filter(([, n]) => n !== 0))
  }
}
