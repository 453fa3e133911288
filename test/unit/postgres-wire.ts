/**
 * Test helpers for the PostgreSQL parser: messages built from the protocol's layout (type byte,
 * big-endian length with itself, body), the recorded real sessions of postgres-captures.json, and
 * a feeder that hands records to a parser connection with consecutive positions and times.
 */
import { PostgresParser, type PostgresChunk, type PostgresOperation, type PostgresOptions, type PostgresRole } from '../../runtime/protocols/postgres.ts'
import captures from './postgres-captures.json' with { type: 'json' }
import type { CapturedSession } from './postgres-record-captures.ts'

export const EGRESS = 0
export const INGRESS = 1

/** A field of a message body: a string is sent NUL-terminated, numbers are given as bytes. */
type Field = string | Uint8Array

/** A NUL-terminated string. */
function cstr(text: string): Uint8Array {
  return Uint8Array.from([...Buffer.from(text, 'utf8'), 0])
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const part of parts) {
    out.set(part, at)
    at += part.length
  }
  return out
}

export function int32(value: number): Uint8Array {
  return Uint8Array.of(value >>> 24, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff)
}

export function int16(value: number): Uint8Array {
  return Uint8Array.of((value >>> 8) & 0xff, value & 0xff)
}

/** A typed message: `type`, length, then the fields. */
export function message(type: string, ...fields: Field[]): Uint8Array {
  const body = concat(fields.map((f) => (typeof f === 'string' ? cstr(f) : f)))
  return concat([Uint8Array.of(type.charCodeAt(0)), int32(body.length + 4), body])
}

/** The untyped startup message of protocol 3.0 with these parameters. */
export function startup(parameters: Record<string, string>): Uint8Array {
  const body = concat([int32(0x00030000), ...Object.entries(parameters).flatMap(([k, v]) => [cstr(k), cstr(v)]), Uint8Array.of(0)])
  return concat([int32(body.length + 4), body])
}

export const sslRequest = (): Uint8Array => concat([int32(8), int32(80877103)])
export const gssEncRequest = (): Uint8Array => concat([int32(8), int32(80877104)])

// frontend
export const query = (sql: string): Uint8Array => message('Q', sql)
export const parse = (name: string, sql: string): Uint8Array => message('P', name, sql, int16(0))
/** Bind with text parameters (their values travel in the Bind, as with every real client). */
export const bind = (portal: string, statement: string, values: string[] = []): Uint8Array =>
  message('B', portal, statement, int16(0), int16(values.length), ...values.flatMap((v) => [int32(Buffer.byteLength(v)), Uint8Array.from(Buffer.from(v))]), int16(0))
export const describe = (kind: 'S' | 'P', name: string): Uint8Array => message('D', Uint8Array.of(kind.charCodeAt(0)), name)
export const execute = (portal: string, maxRows = 0): Uint8Array => message('E', portal, int32(maxRows))
export const sync = (): Uint8Array => message('S')
export const closeStatement = (name: string): Uint8Array => message('C', Uint8Array.of('S'.charCodeAt(0)), name)
export const terminate = (): Uint8Array => message('X')
export const password = (text: string): Uint8Array => message('p', text)
export const copyData = (bytes: string): Uint8Array => message('d', Uint8Array.from(Buffer.from(bytes)))
export const copyDone = (): Uint8Array => message('c')

// backend
export const authOk = (): Uint8Array => message('R', int32(0))
export const authCleartext = (): Uint8Array => message('R', int32(3))
export const parameterStatus = (name: string, value: string): Uint8Array => message('S', name, value)
export const backendKey = (): Uint8Array => message('K', int32(4242), int32(77))
export const ready = (status: 'I' | 'T' | 'E' = 'I'): Uint8Array => message('Z', Uint8Array.of(status.charCodeAt(0)))
export const parseComplete = (): Uint8Array => message('1')
export const bindComplete = (): Uint8Array => message('2')
export const closeComplete = (): Uint8Array => message('3')
export const noData = (): Uint8Array => message('n')
export const portalSuspended = (): Uint8Array => message('s')
export const rowDescription = (column: string): Uint8Array => message('T', int16(1), column, int32(0), int16(0), int32(25), int16(-1), int32(-1), int16(0))
export const dataRow = (value: string): Uint8Array => message('D', int16(1), int32(Buffer.byteLength(value)), Uint8Array.from(Buffer.from(value)))
export const commandComplete = (tag: string): Uint8Array => message('C', tag)
export const emptyQuery = (): Uint8Array => message('I')
export const errorResponse = (code: string, text: string, severity = 'ERROR'): Uint8Array =>
  message('E', 'S' + severity, 'V' + severity, 'C' + code, 'M' + text, Uint8Array.of(0))
export const notice = (text: string): Uint8Array => message('N', 'SNOTICE', 'VNOTICE', 'C00000', 'M' + text, Uint8Array.of(0))
export const notification = (channel: string, payload: string): Uint8Array => message('A', int32(99), channel, payload)
export const copyInResponse = (): Uint8Array => message('G', Uint8Array.of(0), int16(0))
export const copyOutResponse = (): Uint8Array => message('H', Uint8Array.of(0), int16(0))

export const join = (...parts: Uint8Array[]): Uint8Array => concat(parts)

/** A connection fed record by record; each record takes 10 ns and starts 10 ns after the previous one ended. */
export class Wire {
  readonly operations: PostgresOperation[] = []
  readonly parser: PostgresParser<null>
  readonly connection
  readonly positions = [0, 0]
  clock = 0

  constructor(role: PostgresRole = 'client', options: PostgresOptions = {}) {
    this.parser = new PostgresParser<null>((operation) => this.operations.push(operation), options)
    this.connection = this.parser.connection(null, role)
  }

  /** Sends one record of `bytes` (all of it captured unless `captured` says fewer); returns its times. */
  send(direction: number, bytes: Uint8Array, options: { captured?: number; tls?: boolean; loss?: boolean; position?: number; tid?: number; context?: number } = {}): { startNs: number; endNs: number } {
    const startNs = (this.clock += 10)
    const endNs = (this.clock += 10)
    const position = options.position ?? this.positions[direction]!
    const chunk: PostgresChunk = {
      direction,
      position,
      bytes: bytes.length,
      data: bytes.subarray(0, options.captured ?? bytes.length),
      startNs,
      endNs,
      loss: options.loss ?? false,
      tls: options.tls ?? false,
      tid: options.tid ?? 0,
      context: options.context ?? 0,
    }
    this.connection.push(chunk)
    this.positions[direction] = position + bytes.length
    return { startNs, endNs }
  }

  /** The counters that are not zero. */
  errors(): Record<string, number> {
    return Object.fromEntries(Object.entries(this.parser.errors).filter(([, n]) => n !== 0))
  }

  stats(): Record<string, number> {
    return Object.fromEntries(Object.entries(this.parser.stats).filter(([, n]) => n !== 0))
  }
}

export const sessions = captures as CapturedSession[]

/** The recorded session by name; `connection` picks one of a run's connections (pgbench opens two). */
export function session(name: string, connection: 'first' | 'last' = 'last'): CapturedSession {
  const found = sessions.filter((s) => s.name === name)
  if (found.length === 0) throw new Error(`no recorded session ${name} in postgres-captures.json`)
  return connection === 'first' ? found[0]! : found.at(-1)!
}

export function recordBytes(record: { hex: string }): Uint8Array {
  return Uint8Array.from(Buffer.from(record.hex, 'hex'))
}
