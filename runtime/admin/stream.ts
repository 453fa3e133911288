/**
 * Streaming a topic over one admin connection: each subscription holds its object open, decodes
 * every record with the generated decoders and writes one JSON line per event. A client that
 * stops reading has its events skipped and counted as lost instead of buffered.
 */
import type net from 'node:net'
import { pathToFileURL } from 'node:url'
import { forEachRecord, type RecordBatch } from '../bpf/batch.ts'
import { type Bus, splitTopic } from '../bus.ts'
import type { Logger } from '../plugins/log.ts'

/** Bytes a streaming client may leave unread before its events are skipped (and counted as lost). */
const MAX_PENDING_STREAM_BYTES = 4 * 1024 * 1024

type Decoder = (view: DataView, offset: number, size?: number) => object

/** JSON with 64-bit integers (bigint) as decimal strings. */
export function toJson(message: object): string {
  return JSON.stringify(message, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))
}

/** The decoder table (bpf/lib/index.types.ts or a test's), imported on the first subscription. */
export class DecoderTable {
  readonly #path: string
  #table: Promise<Record<string, Decoder>> | undefined

  constructor(path: string) {
    this.#path = path
  }

  async decoderFor(topic: string): Promise<Decoder> {
    this.#table ??= import(pathToFileURL(this.#path).href).then((m: { decoders: Record<string, Decoder> }) => m.decoders)
    const table = await this.#table
    const decode = table[topic]
    if (decode === undefined) {
      throw new Error(`no decoder for '${topic}' in ${this.#path}; topics with decoders: ${Object.keys(table).join(', ')} (run \`npm run build\` after adding a record type)`)
    }
    return decode
  }
}

/** The subscriptions of one connection, by the id of the request that made each. */
export class ConnectionStreams {
  readonly #socket: net.Socket
  readonly #bus: Bus
  readonly #decoders: DecoderTable
  readonly #user: string
  readonly #log: Logger
  readonly #stops = new Map<number, () => void>()
  #closed = false

  constructor(options: { socket: net.Socket; bus: Bus; decoders: DecoderTable; user: string; log: Logger }) {
    this.#socket = options.socket
    this.#bus = options.bus
    this.#decoders = options.decoders
    this.#user = options.user
    this.#log = options.log
  }

  async subscribe(id: number, topic: unknown): Promise<{ subscribed: string }> {
    if (typeof topic !== 'string') throw new Error("subscribe needs params.topic, like 'exec:events'")
    const { object } = splitTopic(topic)
    const decode = await this.#decoders.decoderFor(topic)
    // holding the object keeps it open (and its stream flowing) while the client listens
    const user = `${this.#user}:${id}`
    await this.#bus.acquire(object, user)
    let unsubscribe: () => void
    try {
      // the connection may have gone while the object opened: nothing would ever release it
      if (this.#closed) throw new Error('the connection closed before the subscription started')
      unsubscribe = this.#bus.subscribe(topic, this.#writer(id, decode))
    } catch (error) {
      await this.#bus.release(object, user)
      throw error
    }
    this.#stops.set(id, () => {
      unsubscribe()
      this.#bus.release(object, user).catch((e: Error) => this.#log.error(`admin: release ${object}: ${e.message}`))
    })
    return { subscribed: topic }
  }

  unsubscribe(id: unknown): { unsubscribed: number } {
    const stop = typeof id === 'number' ? this.#stops.get(id) : undefined
    if (stop === undefined) throw new Error(`unsubscribe: no subscription with id ${String(id)} on this connection`)
    stop()
    this.#stops.delete(id as number)
    return { unsubscribed: id as number }
  }

  closeAll(): void {
    this.#closed = true
    for (const stop of this.#stops.values()) stop()
    this.#stops.clear()
  }

  /** One write per batch, one JSON line per event. */
  #writer(id: number, decode: Decoder): (batch: RecordBatch) => void {
    const socket = this.#socket
    let behind = 0
    return (batch) => {
      if (socket.destroyed) return
      if (socket.writableLength > MAX_PENDING_STREAM_BYTES) {
        // the count goes out as soon as the client has caught up, even if no batch follows
        if (behind === 0) {
          socket.once('drain', () => {
            if (behind > 0 && !socket.destroyed) socket.write(`${toJson({ id, lost: behind })}\n`)
            behind = 0
          })
        }
        behind += batch.count
        return
      }
      const lines: string[] = []
      if (batch.lost + behind > 0) lines.push(toJson({ id, lost: batch.lost + behind }))
      behind = 0
      forEachRecord(batch, (view, offset, size) => lines.push(toJson({ id, event: decode(view, offset, size) })))
      if (lines.length > 0) socket.write(`${lines.join('\n')}\n`)
    }
  }
}
