/**
 * Feeds hand-made records to an HTTP/1 parser connection as the sockdata object would: each
 * direction's position advances by the call's byte count, and each record gets the next slot of a
 * fake boot clock, so a test can name the exact times an exchange must carry.
 */
import { EGRESS, Http1Parser, INGRESS, type Http1Connection, type Http1Exchange, type Http1Options, type Http1Role } from '../../runtime/protocols/http1.ts'

export { EGRESS, INGRESS }

/** What a test sees of an exchange: the exchange and the side the callback named. */
export interface Seen extends Http1Exchange {
  side: 'client' | 'server'
}

export interface RecordTimes {
  startNs: number
  endNs: number
}

export interface SendOptions {
  /** The call's byte count when it is more than the text (the rest was not captured). */
  bytes?: number
  /** Bytes lost before this record: its position jumps by this much. */
  lostBefore?: number
  tid?: number
  context?: number
  /** Times other than the next slot, for records that arrive out of time order. */
  times?: RecordTimes
}

/** Latin-1 bytes of a string: tests write wire bytes as JS strings. */
export function wire(text: string): Uint8Array {
  return Uint8Array.from(text, (c) => c.charCodeAt(0))
}

export class Wire {
  readonly parser: Http1Parser<string>
  readonly connection: Http1Connection<string>
  readonly exchanges: Seen[] = []
  readonly positions = [0, 0]
  private clock = 0

  constructor(role: Http1Role = 'client', options: Http1Options<string> = {}) {
    this.parser = new Http1Parser<string>((exchange, context, side) => {
      if (context !== 'conn') throw new Error(`exchange for context ${context}`)
      this.exchanges.push({ ...exchange, side })
    }, { headers: ['host', 'user-agent', 'traceparent', 'content-type'], ...options })
    this.connection = this.parser.connection('conn', role)
  }

  /** Record n (from 1) runs from n*100 to n*100+10 ns. */
  send(direction: number, text: string | Uint8Array, options: SendOptions = {}): RecordTimes {
    const data = typeof text === 'string' ? wire(text) : text
    const bytes = options.bytes ?? data.length
    this.positions[direction]! += options.lostBefore ?? 0
    this.clock += 1
    const times = options.times ?? { startNs: this.clock * 100, endNs: this.clock * 100 + 10 }
    this.connection.push({
      direction,
      position: this.positions[direction]!,
      bytes,
      data,
      ...times,
      loss: options.lostBefore !== undefined,
      tid: options.tid,
      context: options.context,
    })
    this.positions[direction]! += bytes
    return times
  }

  /** Sends `text` as consecutive records of `size` bytes; returns the first and the last record's times. */
  sendInPieces(direction: number, text: string, size: number): { first: RecordTimes; last: RecordTimes } {
    let first: RecordTimes | undefined
    let last: RecordTimes | undefined
    for (let at = 0; at < text.length; at += size) {
      last = this.send(direction, text.slice(at, at + size))
      first ??= last
    }
    return { first: first!, last: last! }
  }

  /** The parser's error counts that are not zero. */
  errors(): Record<string, number> {
    return Object.fromEntries(Object.entries(this.parser.errors).filter(([, count]) => count !== 0))
  }

  /** The parser's stats that are not zero. */
  stats(): Record<string, number> {
    return Object.fromEntries(Object.entries(this.parser.stats).filter(([, count]) => count !== 0))
  }
}
