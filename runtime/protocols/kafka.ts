/**
 * Kafka wire protocol, client side, from `sockdata` records: size-prefixed request frames (api
 * key, version, correlation id, client id) paired with their response frames by correlation id.
 * Produce and Fetch are decoded into operations (topics, record counts from the record batch
 * headers, error codes per partition); Metadata responses teach the topic ids (Produce v13+ and
 * Fetch v13+ name topics by id only); every other request is skipped by its length and makes no
 * operation. Field layouts follow the message schemas of Kafka 4.1 (Produce v3–v13, Fetch
 * v4–v18, Metadata v10–v13; flexible versions use compact types and tagged fields).
 *
 * A record carries at most the capture size of its call (`data.length` may be < `bytes`): the rest
 * of a frame is not seen, but its length still is, so the parser stays on frame boundaries and
 * decodes what the known prefix holds; counts it cannot see whole are reported as inexact. After
 * lost records, or when a connection is first seen mid-stream, the parser waits for a record that
 * starts with a plausible frame (a request header, or a response whose correlation id is pending)
 * and goes on from there. Malformed input is counted by reason in `errors`; nothing throws.
 */
import { latin1 } from './bytes.ts'

export const EGRESS = 0
export const INGRESS = 1

export const API_PRODUCE = 0
export const API_FETCH = 1
export const API_METADATA = 3
export const API_API_VERSIONS = 18

/** One `sockdata` record as the parser needs it; the caller may reuse the object. */
export interface KafkaChunk {
  /** EGRESS: this process sent it; INGRESS: it received it. */
  direction: number
  /** Bytes of this direction before this record. */
  position: number
  /** The call's byte count; `data` may hold fewer (the capture size). */
  bytes: number
  data: Uint8Array
  startNs: number
  endNs: number
  /** Records of this direction were lost before this one. */
  loss: boolean
  /** The record's `context` (the HTTP request its thread was serving), 0 for none. */
  context: number
}

export type KafkaRole = 'client' | 'server' | 'unknown'

export interface KafkaTopic {
  /** The name, from the frame or, for a topic id, from a Metadata response seen before. */
  name?: string
  /** The topic id as 32 hex digits (Produce and Fetch v13+). */
  id?: string
  partitions: number
  /** The first partition's index (-1 before any). */
  partition: number
  /** Records in the batches seen (control batches excluded). */
  records: number
  /** The first nonzero partition error code, else 0. */
  errorCode: number
  /** The partition of `errorCode`. */
  errorPartition: number
}

export interface KafkaOperation {
  apiKey: typeof API_PRODUCE | typeof API_FETCH
  apiVersion: number
  correlationId: number
  clientId: string
  /** The request's first record's start. */
  startNs: number
  /** The response's last record's end, else the request's. */
  endNs: number
  /** The request's first record's `context`. */
  context: number
  topics: KafkaTopic[]
  /** Records in all topics' batches seen. */
  records: number
  /** Every batch header was seen (no frame truncated before the end of its record data). */
  recordsExact: boolean
  /** Bytes of record data in the frame (all partitions), seen or not. */
  recordBytes: number
  /** The response's top-level error (Fetch v7+), else the first topic's nonzero one, else 0. */
  errorCode: number
  /** Produce: the request's acks (0: the broker sends no response). */
  acks?: number
  /** `response`: answered; `no_response`: acks=0; `closed` / `lost`: the answer was not seen. */
  outcome: 'response' | 'no_response' | 'closed' | 'lost'
}

export const kafkaParseErrorReasons = [
  /** a frame's 4-byte size is negative or beyond `maxFrameBytes` */
  'bad_frame_size',
  /** a frame's header (size, api key, version, correlation id, client id) was not captured */
  'truncated_header',
  /** a frame's body was cut by the capture size before the fields looked for */
  'truncated_body',
  /** records were lost or the connection was first seen mid-stream: bytes skipped to the next frame */
  'resync',
  /** a request's header is not a Kafka request (api key, version or client id out of range) */
  'bad_request',
  /** a response's correlation id matches no request sent */
  'unknown_correlation_id',
  /** requests whose responses were never seen (lost records, or more pending than `maxPending`) */
  'unanswered',
  /** a frame's fields run past its end or hold impossible values */
  'malformed',
  /** a Produce or Fetch version this parser does not decode */
  'unsupported_version',
  /** record data in the pre-2017 message format (magic 0/1): not counted */
  'legacy_message_format',
  /** a topic id no Metadata response named */
  'unknown_topic_id',
  /** a bug: an exception caught inside the parser (the connection resynchronises) */
  'internal',
] as const
export type KafkaParseErrorReason = typeof kafkaParseErrorReasons[number]

export interface KafkaParserOptions {
  /**
   * Bytes of one frame kept for decoding, per direction of a connection; past it, the frame is
   * decoded as truncated. The default holds a size record and the largest capture (16384).
   */
  maxFrameHead?: number
  /** Requests awaiting their response per connection. */
  maxPending?: number
  /** Topic ids remembered (from Metadata responses), shared by all connections. */
  maxTopicIds?: number
  /** Frames larger than this are taken as garbage (Kafka's default socket.request.max.bytes is 100 MiB). */
  maxFrameBytes?: number
}

export interface KafkaConnection {
  push(chunk: KafkaChunk): void
  /** The connection closed: Produce requests still awaiting their response end as `closed`. */
  close(endNs: number): void
}

/** Kafka's error names by code (Errors.java of Kafka 4.1); -1 is UNKNOWN_SERVER_ERROR. */
const errorNames = [
  'NONE', 'OFFSET_OUT_OF_RANGE', 'CORRUPT_MESSAGE', 'UNKNOWN_TOPIC_OR_PARTITION', 'INVALID_FETCH_SIZE',
  'LEADER_NOT_AVAILABLE', 'NOT_LEADER_OR_FOLLOWER', 'REQUEST_TIMED_OUT', 'BROKER_NOT_AVAILABLE',
  'REPLICA_NOT_AVAILABLE', 'MESSAGE_TOO_LARGE', 'STALE_CONTROLLER_EPOCH', 'OFFSET_METADATA_TOO_LARGE',
  'NETWORK_EXCEPTION', 'COORDINATOR_LOAD_IN_PROGRESS', 'COORDINATOR_NOT_AVAILABLE', 'NOT_COORDINATOR',
  'INVALID_TOPIC_EXCEPTION', 'RECORD_LIST_TOO_LARGE', 'NOT_ENOUGH_REPLICAS', 'NOT_ENOUGH_REPLICAS_AFTER_APPEND',
  'INVALID_REQUIRED_ACKS', 'ILLEGAL_GENERATION', 'INCONSISTENT_GROUP_PROTOCOL', 'INVALID_GROUP_ID',
  'UNKNOWN_MEMBER_ID', 'INVALID_SESSION_TIMEOUT', 'REBALANCE_IN_PROGRESS', 'INVALID_COMMIT_OFFSET_SIZE',
  'TOPIC_AUTHORIZATION_FAILED', 'GROUP_AUTHORIZATION_FAILED', 'CLUSTER_AUTHORIZATION_FAILED', 'INVALID_TIMESTAMP',
  'UNSUPPORTED_SASL_MECHANISM', 'ILLEGAL_SASL_STATE', 'UNSUPPORTED_VERSION', 'TOPIC_ALREADY_EXISTS',
  'INVALID_PARTITIONS', 'INVALID_REPLICATION_FACTOR', 'INVALID_REPLICA_ASSIGNMENT', 'INVALID_CONFIG',
  'NOT_CONTROLLER', 'INVALID_REQUEST', 'UNSUPPORTED_FOR_MESSAGE_FORMAT', 'POLICY_VIOLATION',
  'OUT_OF_ORDER_SEQUENCE_NUMBER', 'DUPLICATE_SEQUENCE_NUMBER', 'INVALID_PRODUCER_EPOCH', 'INVALID_TXN_STATE',
  'INVALID_PRODUCER_ID_MAPPING', 'INVALID_TRANSACTION_TIMEOUT', 'CONCURRENT_TRANSACTIONS',
  'TRANSACTION_COORDINATOR_FENCED', 'TRANSACTIONAL_ID_AUTHORIZATION_FAILED', 'SECURITY_DISABLED',
  'OPERATION_NOT_ATTEMPTED', 'KAFKA_STORAGE_ERROR', 'LOG_DIR_NOT_FOUND', 'SASL_AUTHENTICATION_FAILED',
  'UNKNOWN_PRODUCER_ID', 'REASSIGNMENT_IN_PROGRESS', 'DELEGATION_TOKEN_AUTH_DISABLED', 'DELEGATION_TOKEN_NOT_FOUND',
  'DELEGATION_TOKEN_OWNER_MISMATCH', 'DELEGATION_TOKEN_REQUEST_NOT_ALLOWED', 'DELEGATION_TOKEN_AUTHORIZATION_FAILED',
  'DELEGATION_TOKEN_EXPIRED', 'INVALID_PRINCIPAL_TYPE', 'NON_EMPTY_GROUP', 'GROUP_ID_NOT_FOUND',
  'FETCH_SESSION_ID_NOT_FOUND', 'INVALID_FETCH_SESSION_EPOCH', 'LISTENER_NOT_FOUND', 'TOPIC_DELETION_DISABLED',
  'FENCED_LEADER_EPOCH', 'UNKNOWN_LEADER_EPOCH', 'UNSUPPORTED_COMPRESSION_TYPE', 'STALE_BROKER_EPOCH',
  'OFFSET_NOT_AVAILABLE', 'MEMBER_ID_REQUIRED', 'PREFERRED_LEADER_NOT_AVAILABLE', 'GROUP_MAX_SIZE_REACHED',
  'FENCED_INSTANCE_ID', 'ELIGIBLE_LEADERS_NOT_AVAILABLE', 'ELECTION_NOT_NEEDED', 'NO_REASSIGNMENT_IN_PROGRESS',
  'GROUP_SUBSCRIBED_TO_TOPIC', 'INVALID_RECORD', 'UNSTABLE_OFFSET_COMMIT', 'THROTTLING_QUOTA_EXCEEDED',
  'PRODUCER_FENCED', 'RESOURCE_NOT_FOUND', 'DUPLICATE_RESOURCE', 'UNACCEPTABLE_CREDENTIAL',
  'INCONSISTENT_VOTER_SET', 'INVALID_UPDATE_VERSION', 'FEATURE_UPDATE_FAILED', 'PRINCIPAL_DESERIALIZATION_FAILURE',
  'SNAPSHOT_NOT_FOUND', 'POSITION_OUT_OF_RANGE', 'UNKNOWN_TOPIC_ID', 'DUPLICATE_BROKER_REGISTRATION',
  'BROKER_ID_NOT_REGISTERED', 'INCONSISTENT_TOPIC_ID', 'INCONSISTENT_CLUSTER_ID', 'TRANSACTIONAL_ID_NOT_FOUND',
  'FETCH_SESSION_TOPIC_ID_ERROR', 'INELIGIBLE_REPLICA', 'NEW_LEADER_ELECTED', 'OFFSET_MOVED_TO_TIERED_STORAGE',
  'FENCED_MEMBER_EPOCH', 'UNRELEASED_INSTANCE_ID', 'UNSUPPORTED_ASSIGNOR', 'STALE_MEMBER_EPOCH',
  'MISMATCHED_ENDPOINT_TYPE', 'UNSUPPORTED_ENDPOINT_TYPE', 'UNKNOWN_CONTROLLER_ID', 'UNKNOWN_SUBSCRIPTION_ID',
  'TELEMETRY_TOO_LARGE', 'INVALID_REGISTRATION', 'TRANSACTION_ABORTABLE', 'INVALID_RECORD_STATE',
  'SHARE_SESSION_NOT_FOUND', 'INVALID_SHARE_SESSION_EPOCH', 'FENCED_STATE_EPOCH', 'INVALID_VOTER_KEY',
  'DUPLICATE_VOTER', 'VOTER_NOT_FOUND', 'INVALID_REGULAR_EXPRESSION', 'REBOOTSTRAP_REQUIRED', 'STREAMS_INVALID_TOPOLOGY',
  'STREAMS_INVALID_TOPOLOGY_EPOCH', 'STREAMS_TOPOLOGY_FENCED', 'SHARE_SESSION_LIMIT_REACHED',
]

/** A Kafka error code's name (`UNKNOWN_SERVER_ERROR` for -1), or the code as text when unknown. */
export function kafkaErrorName(code: number): string {
  if (code === -1) return 'UNKNOWN_SERVER_ERROR'
  return errorNames[code] ?? String(code)
}

/**
 * Each api key's newest version in Kafka 4.1 (-1: not a client API): a request header naming an
 * unknown key, or a version far past the newest, is not Kafka. Versions up to `versionSlack` past
 * the newest pass, so newer clients still parse.
 */
const newestVersions = [
  13, 18, 10, 13, -1, -1, -1, -1, 10, 10, 6, 9, 4, 5, 6, 5, 5, 1, 4, 7, 6, 2, 6, 4, 5, 4, 5, 1, 5, 3, 3, 3, 4, 2, 2, 4,
  2, 3, 3, 2, 2, 3, 2, 2, 1, 1, 0, 0, 1, 1, 0, 0, 2, 1, 1, 2, 3, 2, 0, 1, 2, 0, 4, 1, 0, 0, 2, 0, 1, 1, 0, 0, 0, 0, 1,
  0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
]
const versionSlack = 8

/** The first flexible version (compact types, tagged fields) of the APIs whose bodies are decoded. */
function flexible(apiKey: number, version: number): boolean {
  switch (apiKey) {
    case API_PRODUCE: return version >= 9
    case API_FETCH: return version >= 12
    case API_METADATA: return version >= 9
    case API_API_VERSIONS: return version >= 3
  }
  return false
}

const hexDigits = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'))

/** Topic ids to names, learned from Metadata responses; the oldest forgotten past `max`. */
export class TopicNames {
  readonly #names = new Map<string, string>()
  readonly #max: number

  constructor(max: number) {
    this.#max = max
  }

  get(id: string): string | undefined {
    return this.#names.get(id)
  }

  set(id: string, name: string): void {
    if (this.#names.get(id) === name) return
    this.#names.delete(id)
    if (this.#names.size >= this.#max) this.#names.delete(this.#names.keys().next().value!)
    this.#names.set(id, name)
  }

  get size(): number {
    return this.#names.size
  }
}

/**
 * Bounds-checked reads over a frame's known prefix. A read past the known bytes sets `short`
 * (truncated by the capture size) or, past the frame's end, `bad`, and returns 0: decoders read
 * on and check the flags where it matters, so no exception is thrown for short input.
 */
class Reader {
  buf: Uint8Array = new Uint8Array(0)
  at = 0
  /** Bytes of the frame known (captured). */
  known = 0
  /** The frame's full length. */
  end = 0
  short = false
  bad = false

  reset(buf: Uint8Array, known: number, end: number, at: number): void {
    this.buf = buf
    this.known = known
    this.end = end
    this.at = at
    this.short = false
    this.bad = false
  }

  get ok(): boolean {
    return !this.short && !this.bad
  }

  /** Whether `n` more bytes are readable; flags the reader when they are not. */
  #need(n: number): boolean {
    if (n < 0 || this.at + n > this.end) {
      this.bad = true
      return false
    }
    if (this.at + n > this.known) {
      this.short = true
      return false
    }
    return true
  }

  skip(n: number): void {
    if (n < 0 || this.at + n > this.end) this.bad = true
    else if (this.at + n > this.known) this.short = true
    this.at += n
  }

  int8(): number {
    if (!this.#need(1)) return 0
    return this.buf[this.at++]!
  }

  int16(): number {
    if (!this.#need(2)) return 0
    const b = this.buf
    const v = (b[this.at]! << 8) | b[this.at + 1]!
    this.at += 2
    return (v << 16) >> 16
  }

  int32(): number {
    if (!this.#need(4)) return 0
    const b = this.buf
    const v = (b[this.at]! << 24) | (b[this.at + 1]! << 16) | (b[this.at + 2]! << 8) | b[this.at + 3]!
    this.at += 4
    return v
  }

  uvarint(): number {
    let value = 0
    for (let shift = 0; shift < 35; shift += 7) {
      if (!this.#need(1)) return 0
      const byte = this.buf[this.at++]!
      value += (byte & 0x7f) * 2 ** shift
      if ((byte & 0x80) === 0) return value
    }
    this.bad = true
    return 0
  }

  /** An array's length: int32 (-1 null → 0) or compact (uvarint length + 1, 0 null → 0). */
  arrayLength(compact: boolean): number {
    const n = compact ? this.uvarint() - 1 : this.int32()
    if (n < -1) this.bad = true
    return n < 0 ? 0 : n
  }

  /** A (nullable) string's or bytes' length, same encodings; -1 for null. */
  length(compact: boolean, wide = false): number {
    const n = compact ? this.uvarint() - 1 : wide ? this.int32() : this.int16()
    if (n < -1) this.bad = true
    return n
  }

  /** Skips a (nullable) string. */
  skipString(compact: boolean): void {
    const n = this.length(compact)
    if (n > 0) this.skip(n)
  }

  /** A topic id as hex text; the last one's text is reused (a client names few topics). */
  uuid(): string | undefined {
    if (!this.#need(16)) return undefined
    const text = this.#lastUuid.text(this.buf, this.at, 16, hexText)
    this.at += 16
    return text
  }

  /** A topic name (latin-1); the last one's text is reused. */
  topicName(compact: boolean): string | undefined {
    const n = this.length(compact)
    if (n < 0 || !this.#need(n)) return undefined
    const text = this.#lastName.text(this.buf, this.at, n, latin1)
    this.at += n
    return text
  }

  readonly #lastUuid = new LastText()
  readonly #lastName = new LastText()

  skipTaggedFields(): void {
    const count = this.uvarint()
    for (let i = 0; i < count && this.ok; i++) {
      this.uvarint()
      this.skip(this.uvarint())
    }
  }
}

function hexText(bytes: Uint8Array, start: number, end: number): string {
  let text = ''
  for (let i = start; i < end; i++) text += hexDigits[bytes[i]!]
  return text
}

/** The text of the bytes decoded last, kept with a copy of them so the same bytes are not decoded again. */
class LastText {
  #bytes = new Uint8Array(0)
  #text = ''

  text(buf: Uint8Array, at: number, length: number, decode: (bytes: Uint8Array, start: number, end: number) => string): string {
    const last = this.#bytes
    let same = last.length === length
    for (let i = 0; same && i < length; i++) same = last[i] === buf[at + i]
    if (!same) {
      this.#bytes = buf.slice(at, at + length)
      this.#text = decode(buf, at, at + length)
    }
    return this.#text
  }
}

/** Record batch (magic 2) header offsets. */
const BATCH_LENGTH = 8
const BATCH_MAGIC = 16
const BATCH_ATTRIBUTES = 21
const BATCH_RECORDS_COUNT = 57
const BATCH_HEADER = 61
const CONTROL_BATCH = 0x20

interface RecordCount {
  records: number
  /** Every batch header in the data was seen. */
  exact: boolean
  legacy: boolean
}

/**
 * Records in the batches of `[from, from + length)` of a frame whose first `known` bytes were
 * captured. A last batch running past the data is a partial one (a Fetch response may end with
 * one, which the consumer drops too): not counted.
 */
function countRecords(buf: Uint8Array, known: number, from: number, length: number, out: RecordCount): void {
  const end = from + length
  let at = from
  while (at + BATCH_HEADER <= end) {
    if (at + BATCH_HEADER > known) {
      out.exact = false
      return
    }
    if (buf[at + BATCH_MAGIC] !== 2) {
      out.legacy = true
      out.exact = false
      return
    }
    const batchLength = readInt32(buf, at + BATCH_LENGTH)
    if (batchLength < BATCH_HEADER - 12) {
      out.exact = false
      return
    }
    const next = at + 12 + batchLength
    if (next > end) return
    if ((buf[at + BATCH_ATTRIBUTES + 1]! & CONTROL_BATCH) === 0) out.records += Math.max(0, readInt32(buf, at + BATCH_RECORDS_COUNT))
    at = next
  }
}

function readInt32(buf: Uint8Array, at: number): number {
  return (buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!
}

/** A direction of a connection: where its frames start and the known prefix of the current one. */
class Stream {
  /** At a frame boundary the parser trusts. */
  synced = false
  /** The first frame after a resynchronisation: if it does not decode, sync is dropped again. */
  probation = false
  /** Position of the next record expected; -1 before the first. */
  next = -1
  /** The current frame has begun (its first byte was seen). */
  inFrame = false
  frameStart = 0
  /** Position just past the current frame; -1 until its size is known. */
  frameEnd = -1
  head: Uint8Array
  headLength = 0
  /** Bytes of the current frame after `headLength` were not captured (or did not fit). */
  gap = false
  startNs = 0
  /** The `context` of the frame's first record. */
  startContext = 0

  constructor(initial: number) {
    this.head = new Uint8Array(initial)
  }

  endFrame(): void {
    this.inFrame = false
    this.frameEnd = -1
    this.headLength = 0
    this.gap = false
  }

  unsync(): void {
    this.synced = false
    this.probation = false
    this.endFrame()
  }
}

/** A request awaiting its response. */
interface Pending {
  correlationId: number
  apiKey: number
  apiVersion: number
  /** Produce and Fetch: the operation the response completes. */
  operation?: KafkaOperation
}

export class KafkaParser<C> {
  readonly errors: Record<KafkaParseErrorReason, number> = Object.fromEntries(kafkaParseErrorReasons.map((r) => [r, 0])) as Record<KafkaParseErrorReason, number>
  readonly topicNames: TopicNames
  readonly #onOperation: (operation: KafkaOperation, context: C) => void
  readonly #maxFrameHead: number
  readonly #maxPending: number
  readonly #maxFrameBytes: number
  readonly #reader = new Reader()
  readonly #count: RecordCount = { records: 0, exact: true, legacy: false }

  constructor(onOperation: (operation: KafkaOperation, context: C) => void, options: KafkaParserOptions = {}) {
    this.#onOperation = onOperation
    this.#maxFrameHead = options.maxFrameHead ?? 16384 + 64
    this.#maxPending = options.maxPending ?? 64
    this.#maxFrameBytes = options.maxFrameBytes ?? 100 * 1024 * 1024
    this.topicNames = new TopicNames(options.maxTopicIds ?? 10000)
  }

  /**
   * A connection's parser state. `midStream`: it was open before its first record was seen (found
   * at start-up), so position 0 of its records is not the start of a frame.
   */
  connection(context: C, role: KafkaRole, midStream = false): KafkaConnection {
    return new Connection(this, context, role, midStream)
  }

  /** @internal */
  count(reason: KafkaParseErrorReason): void {
    this.errors[reason]++
  }

  /** @internal */
  emit(operation: KafkaOperation, context: C): void {
    this.#onOperation(operation, context)
  }

  /** @internal */
  get maxFrameHead(): number {
    return this.#maxFrameHead
  }

  /** @internal */
  get maxPending(): number {
    return this.#maxPending
  }

  /** @internal */
  get maxFrameBytes(): number {
    return this.#maxFrameBytes
  }

  /** @internal */
  get reader(): Reader {
    return this.#reader
  }

  /** @internal records of `[from, from + length)`, added to `topic` and `operation` */
  countInto(buf: Uint8Array, known: number, from: number, length: number, topic: KafkaTopic, operation: KafkaOperation): void {
    const count = this.#count
    count.records = 0
    count.exact = true
    count.legacy = false
    countRecords(buf, known, from, length, count)
    if (count.legacy) this.count('legacy_message_format')
    topic.records += count.records
    operation.records += count.records
    operation.recordBytes += length
    if (!count.exact) operation.recordsExact = false
  }
}

class Connection<C> implements KafkaConnection {
  readonly #parser: KafkaParser<C>
  readonly #context: C
  #role: KafkaRole
  readonly #streams: [Stream, Stream]
  readonly #pending: Pending[] = []
  /** A client sends the same client id in every request: decoded once. */
  readonly #clientId = new LastText()
  readonly #midStream: boolean

  constructor(parser: KafkaParser<C>, context: C, role: KafkaRole, midStream: boolean) {
    this.#midStream = midStream
    this.#parser = parser
    this.#context = context
    this.#role = role
    this.#streams = [new Stream(256), new Stream(256)]
  }

  push(chunk: KafkaChunk): void {
    if (this.#role === 'server') return
    try {
      this.#push(chunk)
    } catch {
      this.#parser.count('internal')
      this.#streams[0].unsync()
      this.#streams[1].unsync()
    }
  }

  close(endNs: number): void {
    for (const pending of this.#pending) {
      const operation = pending.operation
      if (operation === undefined || operation.apiKey !== API_PRODUCE) continue
      operation.outcome = 'closed'
      operation.endNs = Math.max(operation.endNs, endNs)
      this.#parser.emit(operation, this.#context)
    }
    this.#pending.length = 0
  }

  #push(chunk: KafkaChunk): void {
    const direction = chunk.direction === INGRESS ? INGRESS : EGRESS
    const stream = this.#streams[direction]
    const recordStart = chunk.position
    const recordEnd = recordStart + chunk.bytes
    const captured = Math.min(chunk.data.length, chunk.bytes)
    if (this.#role === 'unknown' && direction === INGRESS && stream.next === -1 && captured >= 10 &&
        this.#plausibleRequest(chunk.data, captured, readInt32(chunk.data, 0))) {
      // an end found at start-up whose role was not decided, receiving requests: a server
      this.#role = 'server'
      return
    }
    if (stream.next === -1) {
      if (recordStart === 0 && !chunk.loss && !this.#midStream) stream.synced = true
    } else if (chunk.loss || recordStart !== stream.next) {
      this.#discontinuity(stream, recordStart)
    }
    stream.next = recordEnd
    let position = recordStart
    while (position < recordEnd) {
      if (!stream.synced) {
        if (position !== recordStart || !this.#plausibleFrameStart(direction, chunk.data, captured, chunk.bytes)) {
          this.#parser.count('resync')
          return
        }
        stream.synced = true
        stream.probation = true
      }
      if (!stream.inFrame) {
        stream.inFrame = true
        stream.frameStart = position
        stream.frameEnd = -1
        stream.startNs = chunk.startNs
        stream.startContext = chunk.context
      }
      // until the size is known, only its 4 bytes belong to the frame for sure
      const frameLeft = stream.frameEnd === -1 ? stream.frameStart + 4 - position : stream.frameEnd - position
      const take = Math.min(recordEnd - position, frameLeft)
      const offset = position - recordStart
      this.#append(stream, chunk.data, offset, Math.max(0, Math.min(take, captured - offset)), take)
      position += take
      if (stream.frameEnd === -1) {
        if (position < stream.frameStart + 4) continue
        if (stream.headLength < 4) {
          // the size itself was not captured: the next frame's start is unknown
          this.#parser.count('truncated_header')
          stream.unsync()
          return
        }
        const size = readInt32(stream.head, 0)
        if (size < 4 || size > this.#parser.maxFrameBytes) {
          this.#parser.count('bad_frame_size')
          stream.unsync()
          return
        }
        stream.frameEnd = stream.frameStart + 4 + size
        continue
      }
      if (position >= stream.frameEnd) {
        const ok = this.#frame(direction, stream, chunk.endNs)
        if (stream.probation) {
          stream.probation = false
          if (!ok) {
            stream.unsync()
            return
          }
        }
        stream.endFrame()
      }
    }
  }

  /** Copies the captured part of a frame's bytes into its head, while the head is contiguous and has room. */
  #append(stream: Stream, data: Uint8Array, offset: number, capturedLength: number, length: number): void {
    if (stream.gap) return
    const room = this.#parser.maxFrameHead - stream.headLength
    const copy = Math.min(capturedLength, room)
    if (copy > 0) {
      if (stream.headLength + copy > stream.head.length) {
        const grown = new Uint8Array(Math.min(this.#parser.maxFrameHead, Math.max(stream.head.length * 2, stream.headLength + copy)))
        grown.set(stream.head.subarray(0, stream.headLength))
        stream.head = grown
      }
      stream.head.set(offset === 0 && copy === data.length ? data : data.subarray(offset, offset + copy), stream.headLength)
      stream.headLength += copy
    }
    if (copy < length) stream.gap = true
  }

  #discontinuity(stream: Stream, position: number): void {
    this.#parser.count('resync')
    // lost bytes inside the current frame: its end is still known, only its middle is missing
    if (stream.synced && stream.inFrame && stream.frameEnd !== -1 && position <= stream.frameEnd) {
      stream.gap = true
      return
    }
    stream.unsync()
  }

  /**
   * Whether a record starting at an unknown point begins a frame: a request header for the
   * request direction, a response to a pending request for the other (a 4-byte record is the
   * size alone, as Java clients read it; the frame's correlation id then decides).
   */
  #plausibleFrameStart(direction: number, data: Uint8Array, captured: number, bytes: number): boolean {
    if (captured < 4) return false
    const size = readInt32(data, 0)
    if (size < 4 || size > this.#parser.maxFrameBytes) return false
    if (direction === EGRESS) return captured >= 10 && this.#plausibleRequest(data, captured, size)
    if (this.#pending.length === 0) return false
    if (bytes === 4) return true
    if (captured < 8) return false
    return this.#pendingIndex(readInt32(data, 4)) >= 0
  }

  #plausibleRequest(data: Uint8Array, captured: number, size: number): boolean {
    const apiKey = (data[4]! << 8) | data[5]!
    const version = (data[6]! << 8) | data[7]!
    const newest = newestVersions[apiKey]
    if (newest === undefined || newest < 0 || version > newest + versionSlack) return false
    if (captured < 14) return true
    const idLength = (data[12]! << 8) | data[13]!
    if (idLength === 0xffff) return true
    if (14 + idLength > size + 4) return false
    for (let i = 14; i < Math.min(captured, 14 + idLength); i++) if (data[i]! < 0x20 || data[i]! > 0x7e) return false
    return true
  }

  #pendingIndex(correlationId: number): number {
    const pending = this.#pending
    for (let i = 0; i < pending.length; i++) if (pending[i]!.correlationId === correlationId) return i
    return -1
  }

  /** A whole frame went by; decodes what its head holds. False when it is not what it should be. */
  #frame(direction: number, stream: Stream, endNs: number): boolean {
    const reader = this.#parser.reader
    reader.reset(stream.head, stream.headLength, stream.frameEnd - stream.frameStart, 4)
    if (direction === EGRESS) return this.#request(reader, stream.startNs, endNs, stream.startContext)
    return this.#response(reader, endNs)
  }

  #request(reader: Reader, startNs: number, endNs: number, context: number): boolean {
    const parser = this.#parser
    if (reader.known < 14) {
      parser.count('truncated_header')
      return false
    }
    const size = reader.end - 4
    if (!this.#plausibleRequest(reader.buf, reader.known, size)) {
      if (this.#role === 'unknown') {
        // an unknown end whose egress is not requests is a server: its records are not ours
        this.#role = 'server'
        return true
      }
      parser.count('bad_request')
      return false
    }
    this.#role = 'client'
    const apiKey = reader.int16()
    const apiVersion = reader.int16()
    const correlationId = reader.int32()
    const clientId = this.#readClientId(reader)
    if (!reader.ok) {
      parser.count('truncated_header')
      return false
    }
    let operation: KafkaOperation | undefined
    if (apiKey === API_PRODUCE || apiKey === API_FETCH) {
      operation = {
        apiKey, apiVersion, correlationId, clientId, startNs, endNs, context,
        topics: [], records: 0, recordsExact: true, recordBytes: 0, errorCode: 0, outcome: 'response',
      }
      if (apiKey === API_PRODUCE) {
        if (apiVersion < 3) {
          parser.count('unsupported_version')
          operation = undefined
        } else {
          if (flexible(apiKey, apiVersion)) reader.skipTaggedFields()
          this.#produceRequest(reader, operation)
          if (operation.acks === 0) {
            operation.outcome = 'no_response'
            parser.emit(operation, this.#context)
            return true
          }
        }
      }
    }
    const pending = this.#pending
    if (pending.length >= parser.maxPending) {
      parser.count('unanswered')
      pending.shift()
    }
    pending.push({ correlationId, apiKey, apiVersion, operation })
    return true
  }

  #readClientId(reader: Reader): string {
    const length = reader.int16()
    if (length <= 0) return ''
    const at = reader.at
    reader.skip(length)
    return reader.ok ? this.#clientId.text(reader.buf, at, length, latin1) : ''
  }


  #produceRequest(reader: Reader, operation: KafkaOperation): void {
    const parser = this.#parser
    const compact = flexible(API_PRODUCE, operation.apiVersion)
    const byId = operation.apiVersion >= 13
    reader.skipString(compact)
    operation.acks = reader.int16()
    reader.int32()
    const topicCount = reader.arrayLength(compact)
    // the last partition's records were counted: what the capture cut after them holds no count
    let lastCounted = false
    for (let t = 0; t < topicCount && reader.ok; t++) {
      const topic = this.#topic(reader, compact, byId)
      if (topic === undefined) break
      operation.topics.push(topic)
      const partitionCount = reader.arrayLength(compact)
      for (let p = 0; p < partitionCount && reader.ok; p++) {
        const partition = reader.int32()
        const length = reader.length(compact, true)
        if (!reader.ok) break
        if (topic.partitions === 0) topic.partition = partition
        topic.partitions++
        if (length > 0) {
          parser.countInto(reader.buf, reader.known, reader.at, Math.min(length, reader.end - reader.at), topic, operation)
          reader.skip(length)
          if (t === topicCount - 1 && p === partitionCount - 1) lastCounted = true
        }
        if (compact) reader.skipTaggedFields()
      }
      if (compact) reader.skipTaggedFields()
    }
    this.#finishBody(reader, operation, lastCounted)
  }

  /** A topic's name or id; `resolve`: the id's name from Metadata seen before (counted when unknown). */
  #topic(reader: Reader, compact: boolean, byId: boolean, resolve = true): KafkaTopic | undefined {
    const topic: KafkaTopic = { partitions: 0, partition: -1, records: 0, errorCode: 0, errorPartition: -1 }
    if (byId) {
      const id = reader.uuid()
      if (id === undefined) return undefined
      topic.id = id
      if (!resolve) return topic
      topic.name = this.#parser.topicNames.get(id)
      if (topic.name === undefined) this.#parser.count('unknown_topic_id')
    } else {
      topic.name = reader.topicName(compact)
      if (topic.name === undefined) return undefined
    }
    return topic
  }

  /**
   * A body that stopped early: counted as truncated (capture size) or malformed, and its counts
   * inexact, unless the capture cut only what followed the last partition's records (`lastCounted`).
   */
  #finishBody(reader: Reader, operation: KafkaOperation, lastCounted = false): void {
    if (reader.bad) {
      this.#parser.count('malformed')
      operation.recordsExact = false
    } else if (reader.short && !lastCounted) {
      this.#parser.count('truncated_body')
      operation.recordsExact = false
    }
  }

  #response(reader: Reader, endNs: number): boolean {
    const parser = this.#parser
    if (reader.known < 8) {
      parser.count('truncated_header')
      return false
    }
    const correlationId = reader.int32()
    const index = this.#pendingIndex(correlationId)
    if (index < 0) {
      parser.count('unknown_correlation_id')
      return false
    }
    // Kafka answers a connection's requests in order: the ones before this were not seen answered
    for (let i = 0; i < index; i++) this.#unanswered(this.#pending.shift()!)
    const pending = this.#pending.shift()!
    const { apiKey, apiVersion, operation } = pending
    if (flexible(apiKey, apiVersion) && apiKey !== API_API_VERSIONS) reader.skipTaggedFields()
    if (apiKey === API_METADATA) {
      this.#metadataResponse(reader, apiVersion)
      return true
    }
    if (operation === undefined) return true
    operation.endNs = endNs
    if (apiKey === API_PRODUCE) this.#produceResponse(reader, operation)
    else if (apiVersion < 4) parser.count('unsupported_version')
    else this.#fetchResponse(reader, operation)
    parser.emit(operation, this.#context)
    return true
  }

  #unanswered(pending: Pending): void {
    this.#parser.count('unanswered')
    const operation = pending.operation
    if (operation?.apiKey !== API_PRODUCE) return
    operation.outcome = 'lost'
    this.#parser.emit(operation, this.#context)
  }

  #produceResponse(reader: Reader, operation: KafkaOperation): void {
    const version = operation.apiVersion
    const compact = flexible(API_PRODUCE, version)
    const topicCount = reader.arrayLength(compact)
    for (let t = 0; t < topicCount && reader.ok; t++) {
      const answered = this.#topic(reader, compact, version >= 13, false)
      if (answered === undefined) break
      const topic = requestTopic(operation, answered)
      const partitionCount = reader.arrayLength(compact)
      for (let p = 0; p < partitionCount && reader.ok; p++) {
        const partition = reader.int32()
        const errorCode = reader.int16()
        reader.skip(version >= 5 ? 24 : 16)
        if (version >= 8) {
          const recordErrors = reader.arrayLength(compact)
          for (let e = 0; e < recordErrors && reader.ok; e++) {
            reader.int32()
            reader.skipString(compact)
            if (compact) reader.skipTaggedFields()
          }
          reader.skipString(compact)
        }
        if (compact) reader.skipTaggedFields()
        if (errorCode !== 0 && reader.ok) noteError(topic ?? answered, operation, errorCode, partition)
      }
      if (compact) reader.skipTaggedFields()
    }
    this.#finishBody(reader, operation)
  }

  #fetchResponse(reader: Reader, operation: KafkaOperation): void {
    const version = operation.apiVersion
    const compact = flexible(API_FETCH, version)
    reader.int32()
    if (version >= 7) {
      operation.errorCode = reader.int16()
      reader.int32()
    }
    const topicCount = reader.arrayLength(compact)
    let lastCounted = false
    for (let t = 0; t < topicCount && reader.ok; t++) {
      const topic = this.#topic(reader, compact, version >= 13)
      if (topic === undefined) break
      operation.topics.push(topic)
      const partitionCount = reader.arrayLength(compact)
      for (let p = 0; p < partitionCount && reader.ok; p++) {
        const partition = reader.int32()
        const errorCode = reader.int16()
        reader.skip(version >= 5 ? 24 : 16)
        const aborted = reader.arrayLength(compact)
        for (let a = 0; a < aborted && reader.ok; a++) {
          reader.skip(16)
          if (compact) reader.skipTaggedFields()
        }
        if (version >= 11) reader.int32()
        const length = reader.length(compact, true)
        if (!reader.ok) break
        if (topic.partitions === 0) topic.partition = partition
        topic.partitions++
        if (errorCode !== 0) noteError(topic, operation, errorCode, partition)
        if (length > 0) {
          this.#parser.countInto(reader.buf, reader.known, reader.at, Math.min(length, reader.end - reader.at), topic, operation)
          reader.skip(length)
          if (t === topicCount - 1 && p === partitionCount - 1) lastCounted = true
        }
        if (compact) reader.skipTaggedFields()
      }
      if (compact) reader.skipTaggedFields()
    }
    this.#finishBody(reader, operation, lastCounted)
  }

  /** Metadata v10+ names each topic's id: Produce and Fetch v13+ carry only the id. */
  #metadataResponse(reader: Reader, version: number): void {
    if (version < 10) return
    reader.int32()
    const brokers = reader.arrayLength(true)
    for (let b = 0; b < brokers && reader.ok; b++) {
      reader.int32()
      reader.skipString(true)
      reader.int32()
      reader.skipString(true)
      reader.skipTaggedFields()
    }
    reader.skipString(true)
    reader.int32()
    const topics = reader.arrayLength(true)
    for (let t = 0; t < topics && reader.ok; t++) {
      const errorCode = reader.int16()
      const name = reader.topicName(true)
      const id = reader.uuid()
      if (name !== undefined && id !== undefined && errorCode === 0) this.#parser.topicNames.set(id, name)
      reader.int8()
      const partitions = reader.arrayLength(true)
      for (let p = 0; p < partitions && reader.ok; p++) {
        reader.skip(14)
        for (let list = 0; list < 3 && reader.ok; list++) reader.skip(4 * reader.arrayLength(true))
        reader.skipTaggedFields()
      }
      reader.int32()
      reader.skipTaggedFields()
    }
    if (reader.bad) this.#parser.count('malformed')
    else if (reader.short) this.#parser.count('truncated_body')
  }
}

/** The request's entry for a topic its response names. */
function requestTopic(operation: KafkaOperation, answered: KafkaTopic): KafkaTopic | undefined {
  for (const topic of operation.topics) {
    if (answered.id === undefined ? topic.name === answered.name : topic.id === answered.id) return topic
  }
  return undefined
}

function noteError(topic: KafkaTopic, operation: KafkaOperation, errorCode: number, partition: number): void {
  if (topic.errorCode === 0) {
    topic.errorCode = errorCode
    topic.errorPartition = partition
  }
  if (operation.errorCode === 0) operation.errorCode = errorCode
}
