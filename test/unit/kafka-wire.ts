/**
 * Kafka frames for the parser's tests: the captured conversations of real Kafka 4.1.1 tools
 * (kafka-captures.json, recorded by test/peers/kafka/capture.ts) and frames written here from the
 * protocol's message schemas for versions and cases the capture lacks (older versions with topic
 * names, acks=0, control batches, several topics). `replay` feeds frames to a parser connection
 * the way `sockdata` records arrive: positions advancing by byte count, optionally split into
 * several records and cut to a capture size.
 */
import { readFileSync } from 'node:fs'
import { EGRESS, INGRESS, KafkaParser, type KafkaOperation, type KafkaParserOptions } from '../../runtime/protocols/kafka.ts'

export { EGRESS, INGRESS }

export interface Frame {
  direction: typeof EGRESS | typeof INGRESS
  bytes: Uint8Array
}

export interface CapturedConnection {
  /** The client id of its first request. */
  clientId: string
  frames: Frame[]
}

/** The captured conversations, client side: requests are egress, responses ingress. */
export function capturedConnections(): CapturedConnection[] {
  const json = JSON.parse(readFileSync(new URL('./kafka-captures.json', import.meta.url), 'utf8')) as { connections: { frames: { direction: string; hex: string }[] }[] }
  return json.connections.map(({ frames }) => {
    const converted = frames.map((f) => ({ direction: f.direction === 'request' ? EGRESS : INGRESS, bytes: new Uint8Array(Buffer.from(f.hex, 'hex')) } as Frame))
    const first = converted[0]!.bytes
    const idLength = (first[12]! << 8) | first[13]!
    return { clientId: Buffer.from(first.subarray(14, 14 + idLength)).toString('latin1'), frames: converted }
  })
}

export interface Record_ {
  direction: number
  bytes: Uint8Array
  /** Bytes lost before this record in its direction. */
  lostBefore?: number
  context?: number
}

/** Each frame as one record, or split at `cuts` (frame-relative offsets) into several. */
export function recordsOf(frames: readonly Frame[], split: (frame: Frame, index: number) => number[] = () => []): Record_[] {
  const out: Record_[] = []
  frames.forEach((frame, index) => {
    let from = 0
    for (const cut of [...split(frame, index).filter((c) => c > 0 && c < frame.bytes.length).sort((a, b) => a - b), frame.bytes.length]) {
      if (cut > from) out.push({ direction: frame.direction, bytes: frame.bytes.subarray(from, cut) })
      from = cut
    }
  })
  return out
}

/** As a Java client reads: a response's 4-byte size alone, then its body. */
export function javaReads(frame: Frame): number[] {
  return frame.direction === INGRESS ? [4] : []
}

export interface Replayed {
  operations: (KafkaOperation & { connection: number })[]
  errors: Record<string, number>
}

/**
 * Feeds the records of each connection (in order) to one parser, each record cut to
 * `captureBytes`, then closes the connections. Record i gets times 10i and 10i + 5.
 */
export function replay(connections: readonly Record_[][], options: { captureBytes?: number; role?: 'client' | 'unknown'; midStream?: boolean; parser?: KafkaParserOptions; startPositions?: number[][] } = {}): Replayed {
  const operations: Replayed['operations'] = []
  const parser = new KafkaParser<number>((operation, connection) => operations.push({ ...operation, topics: operation.topics.map((t) => ({ ...t })), connection }), options.parser)
  let clock = 0
  connections.forEach((records, index) => {
    const connection = parser.connection(index, options.role ?? 'client', options.midStream)
    const positions = [...(options.startPositions?.[index] ?? [0, 0])]
    for (const record of records) {
      const lost = record.lostBefore ?? 0
      positions[record.direction]! += lost
      const data = options.captureBytes === undefined ? record.bytes : record.bytes.subarray(0, options.captureBytes)
      connection.push({ direction: record.direction, position: positions[record.direction]!, bytes: record.bytes.length, data, startNs: clock * 10, endNs: clock * 10 + 5, loss: lost > 0, context: record.context ?? 0 })
      clock++
      positions[record.direction]! += record.bytes.length
    }
    connection.close(clock * 10)
  })
  const errors = Object.fromEntries(Object.entries(parser.errors).filter(([, n]) => n !== 0))
  return { operations, errors }
}

/** Big-endian writer of the protocol's primitive types. */
export class Writer {
  readonly #bytes: number[] = []

  int8(v: number): this {
    this.#bytes.push(v & 0xff)
    return this
  }

  int16(v: number): this {
    return this.int8(v >> 8).int8(v)
  }

  int32(v: number): this {
    return this.int16(v >> 16).int16(v)
  }

  int64(v: number): this {
    return this.int32(Math.floor(v / 2 ** 32)).int32(v >>> 0)
  }

  uvarint(v: number): this {
    while (v >= 0x80) {
      this.int8((v & 0x7f) | 0x80)
      v = Math.floor(v / 128)
    }
    return this.int8(v)
  }

  raw(bytes: Uint8Array | readonly number[]): this {
    for (const b of bytes) this.#bytes.push(b)
    return this
  }

  /** string / nullable string: compact (uvarint length + 1) or int16 length. */
  string(compact: boolean, text: string | null): this {
    if (text === null) return compact ? this.uvarint(0) : this.int16(-1)
    const bytes = Buffer.from(text, 'latin1')
    ;(compact ? this.uvarint(bytes.length + 1) : this.int16(bytes.length)).raw(bytes)
    return this
  }

  /** bytes / records: compact (uvarint length + 1) or int32 length. */
  bytes(compact: boolean, bytes: Uint8Array | null): this {
    if (bytes === null) return compact ? this.uvarint(0) : this.int32(-1)
    return (compact ? this.uvarint(bytes.length + 1) : this.int32(bytes.length)).raw(bytes)
  }

  array(compact: boolean, length: number): this {
    return compact ? this.uvarint(length + 1) : this.int32(length)
  }

  uuid(hex: string): this {
    return this.raw(Buffer.from(hex, 'hex'))
  }

  /** An empty tagged-field block. */
  tags(): this {
    return this.uvarint(0)
  }

  done(): Uint8Array {
    return Uint8Array.from(this.#bytes)
  }
}

/** A magic-2 record batch header claiming `count` records, followed by `count` filler records of 8 bytes. */
export function recordBatch(count: number, options: { control?: boolean; baseOffset?: number } = {}): Uint8Array {
  const records = new Uint8Array(count * 8).fill(0x2a)
  return new Writer()
    .int64(options.baseOffset ?? 0).int32(49 + records.length).int32(0).int8(2).int32(0)
    .int16(options.control === true ? 0x20 : 0).int32(count - 1).int64(0).int64(0).int64(-1).int16(-1).int32(-1).int32(count)
    .raw(records).done()
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  return Uint8Array.from(parts.flatMap((p) => [...p]))
}

function sized(body: Uint8Array): Uint8Array {
  return concat(new Writer().int32(body.length).done(), body)
}

export function requestFrame(apiKey: number, version: number, correlationId: number, clientId: string | null, flexibleHeader: boolean, body: Uint8Array): Frame {
  const header = new Writer().int16(apiKey).int16(version).int32(correlationId).string(false, clientId)
  if (flexibleHeader) header.tags()
  return { direction: EGRESS, bytes: sized(concat(header.done(), body)) }
}

export function responseFrame(correlationId: number, flexibleHeader: boolean, body: Uint8Array): Frame {
  const header = new Writer().int32(correlationId)
  if (flexibleHeader) header.tags()
  return { direction: INGRESS, bytes: sized(concat(header.done(), body)) }
}

export interface TopicSpec {
  name?: string
  id?: string
  partitions: { index: number; errorCode?: number; batches?: Uint8Array[] }[]
}

function topicKey(w: Writer, version: number, byIdFrom: number, compact: boolean, topic: TopicSpec): void {
  if (version >= byIdFrom) w.uuid(topic.id!)
  else w.string(compact, topic.name!)
}

export function produceRequest(version: number, correlationId: number, clientId: string, acks: number, topics: TopicSpec[]): Frame {
  const compact = version >= 9
  const w = new Writer().string(compact, null).int16(acks).int32(30000).array(compact, topics.length)
  for (const topic of topics) {
    topicKey(w, version, 13, compact, topic)
    w.array(compact, topic.partitions.length)
    for (const p of topic.partitions) {
      w.int32(p.index).bytes(compact, concat(...(p.batches ?? [])))
      if (compact) w.tags()
    }
    if (compact) w.tags()
  }
  if (compact) w.tags()
  return requestFrame(0, version, correlationId, clientId, compact, w.done())
}

export function produceResponse(version: number, correlationId: number, topics: TopicSpec[]): Frame {
  const compact = version >= 9
  const w = new Writer().array(compact, topics.length)
  for (const topic of topics) {
    topicKey(w, version, 13, compact, topic)
    w.array(compact, topic.partitions.length)
    for (const p of topic.partitions) {
      w.int32(p.index).int16(p.errorCode ?? 0).int64(0).int64(-1)
      if (version >= 5) w.int64(0)
      if (version >= 8) w.array(compact, 0).string(compact, null)
      if (compact) w.tags()
    }
    if (compact) w.tags()
  }
  w.int32(0)
  if (compact) w.tags()
  return responseFrame(correlationId, compact, w.done())
}

export function fetchRequest(version: number, correlationId: number, clientId: string): Frame {
  // the parser reads only a Fetch request's header: an empty body serves
  return requestFrame(1, version, correlationId, clientId, version >= 12, new Uint8Array(0))
}

export function fetchResponse(version: number, correlationId: number, errorCode: number, topics: TopicSpec[]): Frame {
  const compact = version >= 12
  const w = new Writer().int32(0)
  if (version >= 7) w.int16(errorCode).int32(0)
  w.array(compact, topics.length)
  for (const topic of topics) {
    topicKey(w, version, 13, compact, topic)
    w.array(compact, topic.partitions.length)
    for (const p of topic.partitions) {
      w.int32(p.index).int16(p.errorCode ?? 0).int64(100).int64(100)
      if (version >= 5) w.int64(0)
      w.array(compact, 0)
      if (version >= 11) w.int32(-1)
      w.bytes(compact, p.batches === undefined ? null : concat(...p.batches))
      if (compact) w.tags()
    }
    if (compact) w.tags()
  }
  if (compact) w.tags()
  return responseFrame(correlationId, compact, w.done())
}

export function metadataRequest(version: number, correlationId: number, clientId: string): Frame {
  return requestFrame(3, version, correlationId, clientId, version >= 9, new Uint8Array(0))
}

/** Metadata v10+ (flexible, with topic ids): one broker, the topics with one partition each. */
export function metadataResponse(version: number, correlationId: number, topics: { name: string; id: string }[]): Frame {
  const w = new Writer().int32(0).array(true, 1).int32(1).string(true, '127.0.0.1').int32(9092).string(true, null).tags()
    .string(true, 'cluster').int32(1).array(true, topics.length)
  for (const topic of topics) {
    w.int16(0).string(true, topic.name).uuid(topic.id).int8(0).array(true, 1)
      .int16(0).int32(0).int32(1).int32(0).array(true, 1).int32(1).array(true, 1).int32(1).array(true, 0).tags()
      .int32(-2147483648).tags()
  }
  if (version <= 10) w.int32(-2147483648)
  if (version >= 13) w.int16(0)
  w.tags()
  return responseFrame(correlationId, true, w.done())
}
