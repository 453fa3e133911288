/**
 * Feeds records to the Redis parser (runtime/protocols/redis.ts) the way the plugin does, and
 * returns what it reported as plain objects, for the parser's tests.
 */
import { EGRESS, RedisParser, type RedisCommand, type RedisConnection, type RedisOptions, type RedisRole } from '../../runtime/protocols/redis.ts'

export interface FeedRecord {
  /** 0: the client sent it (EGRESS), 1: it received it. */
  direction: number
  /** The call's byte count; default: all of `data`. */
  bytes?: number
  /** Latin-1 text: one character a byte. */
  data: string
  /** Bytes lost before this record (its position jumps by this much). */
  lostBefore?: number
}

export type Reported = Pick<RedisCommand, 'name' | 'known' | 'key' | 'arguments' | 'outcome' | 'errorPrefix' | 'errorMessage' | 'database' | 'startNs' | 'endNs' | 'tid'> & { side: string }

export interface Fed {
  commands: Reported[]
  /** Only the counters that are not zero. */
  errors: Record<string, number>
  stats: Record<string, number>
  connection: RedisConnection<null>
  parser: RedisParser<null>
}

export function bytesOf(text: string): Uint8Array {
  return Uint8Array.from(text, (c) => c.charCodeAt(0))
}

/**
 * Feeds `records` in order: record i is sent at 10·i ns and completes at 10·i + 5, with tid
 * 100 + i; each direction's positions advance by byte count (plus `lostBefore`). Then closes the
 * connection unless `open`.
 */
export function feed(records: readonly FeedRecord[], options: RedisOptions & { role?: RedisRole; midStream?: boolean; open?: boolean; capture?: number } = {}): Fed {
  const commands: Reported[] = []
  const parser = new RedisParser<null>((command, _context, side) => commands.push(plain(command, side)), options)
  const connection = parser.connection(null, options.role ?? 'client', { midStream: options.midStream })
  const positions = [0, 0]
  records.forEach((record, i) => {
    const bytes = record.bytes ?? record.data.length
    positions[record.direction]! += record.lostBefore ?? 0
    const data = bytesOf(options.capture === undefined ? record.data : record.data.slice(0, options.capture))
    connection.push({ direction: record.direction, position: positions[record.direction]!, bytes, data, startNs: 10 * i, endNs: 10 * i + 5, tid: 100 + i })
    positions[record.direction]! += bytes
  })
  if (options.open !== true) connection.close()
  return { commands, errors: nonZero(parser.errors), stats: nonZero({ ...parser.stats }), connection, parser }
}

/** Records from [direction, bytes, data] tuples, as in redis-captures.ts. */
export function recordsOf(tuples: readonly (readonly [number, number, string])[]): FeedRecord[] {
  return tuples.map(([direction, bytes, data]) => ({ direction, bytes, data }))
}

/** A command as a RESP array of bulk strings. */
export function command(...args: string[]): string {
  return `*${args.length}\r\n${args.map((arg) => `$${arg.length}\r\n${arg}\r\n`).join('')}`
}

export const out = (data: string): FeedRecord => ({ direction: EGRESS, data })
export const back = (data: string): FeedRecord => ({ direction: 1 - EGRESS, data })

function plain(command: RedisCommand, side: string): Reported {
  const { name, known, key, arguments: args, outcome, errorPrefix, errorMessage, database, startNs, endNs, tid } = command
  return { name, known, key, arguments: args, outcome, errorPrefix, errorMessage, database, startNs, endNs, tid, side }
}

function nonZero(counts: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(counts).filter(([, n]) => n !== 0))
}

/** The fields most tests compare: name, key, outcome and error prefix, as one line each. */
export function summary(commands: readonly Reported[]): string[] {
  return commands.map((c) => [c.name, c.key === undefined ? '' : `key=${c.key}`, `args=${c.arguments}`, c.outcome, c.errorPrefix ?? '', c.database === undefined ? 'db?' : `db${c.database}`].filter((field) => field !== '').join(' '))
}
