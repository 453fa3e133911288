/**
 * HTTP/1.0 and HTTP/1.1 stream parser: turns the two byte streams of a connection, as the kernel
 * captured them, into request/response exchanges.
 *
 * It is pure TypeScript for plugin isolates (V8 builtins only). The input is the `sockdata`
 * records of one connection: each record says how many bytes the call moved (`bytes`) but carries
 * only the first `captured` of them (`data`), and its `position` in its direction's stream. So the
 * parser counts bodies by `bytes` without seeing them, notices lost records as a gap in positions,
 * and resynchronises on the next message start after anything it cannot follow.
 *
 * Cost and memory: no body byte is copied or kept; header values are kept only for the names the
 * caller asks for, up to a cap per message; a line is copied only when it is split across records,
 * up to a cap; at most `maxPending` requests wait for responses per connection. What a cap cut is
 * counted in `Http1Parser.stats`. Malformed input is counted in `Http1Parser.errors` by reason and
 * never throws.
 *
 * ```ts
 * const parser = new Http1Parser<Conn>((exchange, conn) => emitSpan(conn, exchange), { headers: ['host'] })
 * const connection = parser.connection(conn, 'server')
 * connection.push({ direction: INGRESS, position, bytes, data, startNs, endNs })
 * connection.close()
 * ```
 */
import { ascii, equalsBytes, equalsLowerCase, indexOfByte, latin1 } from './bytes.ts'

/** The process sent these bytes. */
export const EGRESS = 0
/** The process received these bytes. */
export const INGRESS = 1

/** One send or receive on the connection, in the order the calls completed. */
export interface Http1Chunk {
  /** `EGRESS` (0) or `INGRESS` (1). */
  direction: number
  /** Bytes of this direction before this call; a jump means records were lost. */
  position: number
  /** Bytes the call moved. */
  bytes: number
  /** The first bytes of the call (all of them when it was small enough to capture). */
  data: Uint8Array
  /** Boot-clock ns at the call's entry and exit. */
  startNs: number
  endNs: number
  /** Records of this direction were dropped before this one; the position gap says how many bytes. */
  loss?: boolean
  /** The calling thread, passed on as the `tid` of a message whose head ends in this call. */
  tid?: number
  /** The record's thread context (sockdata's `context`), passed on like `tid`. */
  context?: number
}

/** `client`: this process connected, so it sends the requests. `server`: it accepted. */
export type Http1Role = 'client' | 'server' | 'unknown'

export type Http1Version = '1.0' | '1.1'

export interface Http1Request {
  method: string
  /** As on the wire (`/path?query`, `host:port` for CONNECT, an absolute URL through a proxy), capped at `maxTargetBytes`. */
  target: string
  version: Http1Version
  /** The asked-for headers present, by lower-case name; repeated ones joined with `, `. */
  headers: Record<string, string>
  /** Body bytes on the wire (with chunked framing and trailers), counted whether captured or not. */
  bodyBytes: number
  /** Entry of the call that carried the first byte, exit of the call that carried the last. */
  startNs: number
  endNs: number
  /** The `tid` of the call that carried the end of the head (0 if not given). */
  tid: number
  /** The `context` of that call (0 if not given). */
  context: number
}

export interface Http1Response {
  status: number
  version: Http1Version
  headers: Record<string, string>
  bodyBytes: number
  startNs: number
  endNs: number
  tid: number
  context: number
}

export interface Http1Exchange {
  request: Http1Request
  /** The final response (1xx interim responses other than 101 are skipped). */
  response?: Http1Response
  /**
   * Set when the exchange did not finish as seen: `closed`, the connection closed first; `lost`,
   * bytes of it were lost or could not be followed, so its end (and maybe its response) is unknown.
   */
  incomplete?: 'closed' | 'lost'
}

export interface Http1Options<C = unknown> {
  /** Header names whose values to keep, any case; others are read only for framing. */
  headers?: readonly string[]
  /** Header value bytes kept per message, all names together (default 4096). */
  maxHeaderBytes?: number
  /** Request-target bytes kept (default 4096). */
  maxTargetBytes?: number
  /** Bytes kept of one line split across records (default 16384); also the longest start line found when resynchronising. */
  maxLineBytes?: number
  /** A head (start line and headers) or trailer section longer than this is malformed (default 65536). */
  maxHeadBytes?: number
  /** Requests waiting for their responses per connection (default 32). */
  maxPending?: number
  /** See `Http1RequestHandler`. */
  onRequest?: Http1RequestHandler<C>
}

/** Why input was counted as malformed. */
export type Http1ErrorReason =
  | 'start-line' // a line where a request or status line was due did not parse
  | 'header-line' // a header line without a colon or with an invalid name
  | 'head-too-long' // head or trailers longer than maxHeadBytes
  | 'content-length' // an invalid or conflicting Content-Length
  | 'transfer-encoding' // a request whose last transfer coding is not chunked
  | 'chunk-size' // an invalid chunk-size line
  | 'chunk-end' // chunk data not followed by CRLF
  | 'position' // a record's position is before the end of the previous one of its direction

export interface Http1Stats {
  /** Final responses that matched no request: sent before capture began, or their request was lost or not queued. */
  unmatchedResponses: number
  /** Bytes missing between records (lost records). */
  lostBytes: number
  /** Times a direction lost its place and looked for the next message start. */
  resyncs: number
  /** Bytes read while looking for a message start. */
  skippedBytes: number
  /** Header value bytes not kept: the message's `maxHeaderBytes` was reached. */
  headerBytesCut: number
  /** Request-target bytes beyond `maxTargetBytes`. */
  targetBytesCut: number
  /** Bytes of split lines beyond `maxLineBytes`. */
  lineBytesCut: number
  /** Requests not queued because `maxPending` requests were already waiting. */
  queueOverflows: number
  /** Heads longer than the capture: their remaining headers are unknown and the message's end is inferred. */
  headsCut: number
  /** Messages that started in uncaptured bytes, so they were never seen. */
  unseenStarts: number
  /** Connections that left HTTP/1 (101 Switching Protocols, or a CONNECT tunnel). */
  upgrades: number
}

/**
 * Called once per exchange, in request order per connection. `side` is the connection's role:
 * `server` when this process received the request. Called from inside `push` and `close`: what
 * it throws propagates out of them.
 */
export type Http1ExchangeHandler<C> = (exchange: Http1Exchange, context: C, side: 'client' | 'server') => void

/**
 * Called when a request's head has been read, before its body and response: the moment a server
 * starts working on it (for trace context). The same object arrives later in its exchange, with
 * `bodyBytes` and `endNs` final.
 */
export type Http1RequestHandler<C> = (request: Http1Request, context: C, side: 'client' | 'server') => void

const CR = 13
const LF = 10
const SP = 32
const HT = 9
const COLON = 58
const COMMA = 44

// stream states
const SYNC = 0 // looking for a message start anywhere
const IDLE = 1 // a message start is due
const HEAD = 2 // start line and header lines
const BODY_LENGTH = 3 // Content-Length body
const CHUNK_SIZE = 4 // hex digits of a chunk-size line
const CHUNK_EXT = 5 // rest of a chunk-size line
const CHUNK_DATA = 6
const CHUNK_END = 7 // CRLF after chunk data
const TRAILERS = 8
const UNTIL_CLOSE = 9 // response body delimited by the connection's close
const BLIND = 10 // body whose end is not visible: it ends at the next message start
const STOPPED = 11 // the connection left HTTP/1

// what a direction carries
const UNKNOWN = 0
const REQUESTS = 1
const RESPONSES = 2

/** RFC 9110 tchar: what a method or header name may contain. */
const TOKEN = new Uint8Array(256)
for (const c of "!#$%&'*+-.^_`|~") TOKEN[c.charCodeAt(0)] = 1
for (let c = 48; c <= 57; c++) TOKEN[c] = 1
for (let c = 65; c <= 90; c++) TOKEN[c] = TOKEN[c + 32] = 1

/** Hex digit values, 255 for non-digits. */
const HEX = new Uint8Array(256).fill(255)
for (let c = 0; c < 10; c++) HEX[48 + c] = c
for (let c = 0; c < 6; c++) HEX[65 + c] = HEX[97 + c] = 10 + c

/** Methods interned so the common ones cost no string; also the only ones trusted after junk when resynchronising. */
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'CONNECT', 'TRACE'].map((name) => ({ name, bytes: ascii(name) }))
const HTTP_1 = ascii('HTTP/1.')
const CONTENT_LENGTH = ascii('content-length')
const TRANSFER_ENCODING = ascii('transfer-encoding')
const CHUNKED = ascii('chunked')
const EXPECT = ascii('expect')
const CONTINUE = ascii('100-continue')
/** The headers that frame a message, by name length (their lengths differ). */
const FRAMING_BY_LENGTH: (Uint8Array | undefined)[] = []
for (const name of [CONTENT_LENGTH, TRANSFER_ENCODING, EXPECT]) FRAMING_BY_LENGTH[name.length] = name
/** A chunked body's last chunk and empty trailers, as a sender writes them. */
const LAST_CHUNK = ascii('\r\n0\r\n\r\n')
/** The largest Content-Length or chunk size taken: 2^53 - 1 keeps the arithmetic exact. */
const MAX_LENGTH_DIGITS = 15
const MAX_CHUNK_SIZE_DIGITS = 13
/** Chunk extensions are rare and short; a long one means the stream is not chunked framing. */
const MAX_CHUNK_EXTENSION = 4096

interface Limits {
  maxHeaderBytes: number
  maxTargetBytes: number
  maxLineBytes: number
  maxHeadBytes: number
  maxPending: number
}

interface WantedHeader {
  name: string
  bytes: Uint8Array
}

/** Parses the connections of one plugin; shares options, counters and the exchange handler among them. */
export class Http1Parser<C = unknown> {
  readonly errors: Record<Http1ErrorReason, number> = {
    'start-line': 0,
    'header-line': 0,
    'head-too-long': 0,
    'content-length': 0,
    'transfer-encoding': 0,
    'chunk-size': 0,
    'chunk-end': 0,
    position: 0,
  }
  readonly stats: Http1Stats = {
    unmatchedResponses: 0,
    lostBytes: 0,
    resyncs: 0,
    skippedBytes: 0,
    headerBytesCut: 0,
    targetBytesCut: 0,
    lineBytesCut: 0,
    queueOverflows: 0,
    headsCut: 0,
    unseenStarts: 0,
    upgrades: 0,
  }
  /** @internal */
  readonly limits: Limits
  /** @internal wanted headers indexed by name length, so most header lines cost one array read */
  readonly wantedByLength: (WantedHeader[] | undefined)[] = []
  /** @internal */
  readonly onExchange: Http1ExchangeHandler<C>
  /** @internal */
  readonly onRequest: Http1RequestHandler<C> | undefined

  constructor(onExchange: Http1ExchangeHandler<C>, options: Http1Options<C> = {}) {
    this.onExchange = onExchange
    this.onRequest = options.onRequest
    this.limits = {
      maxHeaderBytes: limit(options.maxHeaderBytes, 4096, 0, 'maxHeaderBytes'),
      maxTargetBytes: limit(options.maxTargetBytes, 4096, 1, 'maxTargetBytes'),
      maxLineBytes: limit(options.maxLineBytes, 16384, 64, 'maxLineBytes'),
      maxHeadBytes: limit(options.maxHeadBytes, 65536, 64, 'maxHeadBytes'),
      maxPending: limit(options.maxPending, 32, 1, 'maxPending'),
    }
    for (const header of options.headers ?? []) this.want(header)
  }

  /** State for one connection; `context` comes back with each of its exchanges. */
  connection(context: C, role: Http1Role = 'unknown'): Http1Connection<C> {
    return new Http1Connection(this, context, role)
  }

  private want(header: string): void {
    const name = header.toLowerCase()
    if (!/^[!#$%&'*+\-.^_`|~0-9a-z]+$/.test(name)) {
      throw new Error(`Http1Parser: header name ${JSON.stringify(header)} is not an HTTP token; list names such as 'user-agent'`)
    }
    const list = (this.wantedByLength[name.length] ??= [])
    if (!list.some((wanted) => wanted.name === name)) list.push({ name, bytes: ascii(name) })
  }
}

function limit(value: number | undefined, fallback: number, min: number, name: string): number {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || value < min) throw new Error(`Http1Parser: ${name} must be an integer of at least ${min}, got ${value}`)
  return value
}

/** One request and what is known of its response, queued until both are done. */
class Pending {
  readonly exchange: Http1Exchange
  requestDone = false
  responseDone = false
  /** A final response has started for it. */
  answered = false
  /** Requests after this one that did not fit in the queue: their responses are skipped. */
  droppedAfter = 0
  /** Header and target bytes held, for `retainedBytes`. */
  storedBytes = 0
  constructor(exchange: Http1Exchange) {
    this.exchange = exchange
  }
}

/** Both directions of one connection, and the requests waiting for responses. */
export class Http1Connection<C = unknown> {
  readonly context: C
  /** @internal */
  readonly parser: Http1Parser<C>
  /** @internal indexed by direction */
  readonly streams: [MessageStream, MessageStream]
  /** @internal oldest first */
  readonly queue: Pending[] = []
  /** @internal final responses to skip: their requests were dropped from a full queue */
  skipResponses = 0
  private closed = false

  /** @internal use `Http1Parser.connection` */
  constructor(parser: Http1Parser<C>, context: C, role: Http1Role) {
    this.parser = parser
    this.context = context
    this.streams = [new MessageStream(this, EGRESS), new MessageStream(this, INGRESS)]
    if (role !== 'unknown') this.decide(role === 'client' ? EGRESS : INGRESS)
  }

  /** The role found so far: the side that sends requests is the client. */
  get role(): Http1Role {
    const carries = this.streams[EGRESS].carries
    return carries === REQUESTS ? 'client' : carries === RESPONSES ? 'server' : 'unknown'
  }

  /** Requests waiting for their responses. */
  get pending(): number {
    return this.queue.length
  }

  /** Bytes this connection holds: line buffers and the queued requests' kept text. Bounded by the limits. */
  retainedBytes(): number {
    let bytes = this.streams[0].lineCapacity() + this.streams[1].lineCapacity()
    for (const entry of this.queue) bytes += entry.storedBytes
    return bytes
  }

  /** Feeds one record. Records of a direction must come in position order. */
  push(chunk: Http1Chunk): void {
    if (this.closed || chunk.bytes <= 0) return
    const stream = this.streams[chunk.direction === EGRESS ? EGRESS : INGRESS]
    stream.push(chunk)
  }

  /**
   * The connection closed: a response delimited by the close ends here, and every exchange still
   * open is handed over with `incomplete: 'closed'`. Later records are ignored.
   */
  close(): void {
    if (this.closed) return
    this.closed = true
    const requests = this.streams.find((stream) => stream.carries === REQUESTS)
    requests?.onClose()
    for (const stream of this.streams) if (stream !== requests) stream.onClose()
    this.flush('closed')
  }

  /** @internal the first start line seen says which direction carries requests */
  decide(requestDirection: number): void {
    this.streams[requestDirection]!.carries = REQUESTS
    this.streams[1 - requestDirection]!.carries = RESPONSES
  }

  /** @internal a request line was read: queue its exchange */
  enqueue(request: Http1Request): Pending | null {
    if (this.queue.length >= this.parser.limits.maxPending) {
      this.parser.stats.queueOverflows++
      // its response will come: keep the count so it is not paired with the next request
      this.queue[this.queue.length - 1]!.droppedAfter++
      return null
    }
    const entry = new Pending({ request })
    this.queue.push(entry)
    return entry
  }

  /**
   * @internal a final status line was read at `seenNs`: the oldest unanswered request gets it. A
   * request that started after the response was already read cannot be its request: that response
   * answers a request that was lost, so it is left unmatched rather than paired wrongly.
   */
  answer(response: Http1Response, seenNs: number): Pending | null {
    if (this.skipResponses > 0) {
      this.skipResponses--
      this.parser.stats.unmatchedResponses++
      return null
    }
    for (const entry of this.queue) {
      if (entry.answered) continue
      if (entry.exchange.request.startNs > seenNs) break
      entry.answered = true
      entry.exchange.response = response
      this.skipResponses += entry.droppedAfter
      return entry
    }
    this.parser.stats.unmatchedResponses++
    return null
  }

  /** @internal */
  requestHead(entry: Pending): void {
    this.parser.onRequest?.(entry.exchange.request, this.context, this.side())
  }

  /** @internal */
  requestDone(entry: Pending): void {
    entry.requestDone = true
    this.emitReady()
  }

  /** @internal */
  responseDone(entry: Pending): void {
    entry.responseDone = true
    const requests = this.streams[0].entry === entry ? this.streams[0] : this.streams[1].entry === entry ? this.streams[1] : null
    requests?.answeredWhileOpen()
    this.emitReady()
  }

  /** @internal responses may have been lost: no queued request can be paired safely any more */
  responsesLost(): void {
    this.flush('lost')
  }

  /** @internal 101 or a CONNECT tunnel: what follows is another protocol */
  stop(): void {
    this.parser.stats.upgrades++
    for (const stream of this.streams) stream.stop()
  }

  /** Exchanges exist only once a start line decided the role. */
  private side(): 'client' | 'server' {
    return this.streams[EGRESS].carries === REQUESTS ? 'client' : 'server'
  }

  private emitReady(): void {
    while (this.queue.length > 0 && this.queue[0]!.requestDone && this.queue[0]!.responseDone) {
      this.parser.onExchange(this.queue.shift()!.exchange, this.context, this.side())
    }
  }

  private flush(incomplete: 'closed' | 'lost'): void {
    const entries = this.queue.splice(0)
    this.skipResponses = 0
    for (const entry of entries) {
      for (const stream of this.streams) if (stream.entry === entry) stream.detach()
      if (!(entry.requestDone && entry.responseDone)) entry.exchange.incomplete ??= incomplete
      this.parser.onExchange(entry.exchange, this.context, this.side())
    }
  }
}

/** What a stream uses of its parser: the same for every context type. */
interface SharedState {
  readonly errors: Record<Http1ErrorReason, number>
  readonly stats: Http1Stats
  readonly limits: Limits
  readonly wantedByLength: (WantedHeader[] | undefined)[]
}

/** What a stream uses of its connection. */
interface StreamOwner {
  readonly parser: SharedState
  readonly queue: Pending[]
  decide(requestDirection: number): void
  enqueue(request: Http1Request): Pending | null
  requestHead(entry: Pending): void
  answer(response: Http1Response, seenNs: number): Pending | null
  requestDone(entry: Pending): void
  responseDone(entry: Pending): void
  responsesLost(): void
  stop(): void
}

/** One direction of a connection: a sequence of requests, or of responses. */
class MessageStream {
  readonly connection: StreamOwner
  readonly parser: SharedState
  readonly limits: Limits
  readonly direction: number
  state = SYNC
  carries = UNKNOWN
  /** Position of the next byte; -1 before the first record. */
  expected = -1
  /** Exit time of the previous record: the last byte seen when the next record shows a gap. */
  lastEndNs = 0

  // a line split across records
  line: Uint8Array | null = null
  lineLength = 0
  lineStartNs = 0

  // the message being read; entry and message are null when it is read only for framing
  entry: Pending | null = null
  message: Http1Request | Http1Response | null = null
  messageStartNs = 0
  readingRequest = false
  sawStartLine = false
  headBytes = 0
  storedBytes = 0
  bodyBytes = 0
  status = 0
  contentLength = -1
  badContentLength = false
  chunked = false
  otherCoding = false
  expectContinue = false
  remaining = 0
  chunkDigits = 0
  chunkExtension = 0
  sawCR = false

  // the start line just parsed
  method = ''
  target = ''
  version: Http1Version = '1.1'

  constructor(connection: StreamOwner, direction: number) {
    this.connection = connection
    this.parser = connection.parser
    this.limits = connection.parser.limits
    this.direction = direction
  }

  lineCapacity(): number {
    return this.line === null ? 0 : this.line.length
  }

  push(chunk: Http1Chunk): void {
    if (this.state === STOPPED) return
    if (this.expected >= 0 && chunk.position !== this.expected) this.jump(chunk)
    const data = chunk.data
    const captured = Math.min(data.length, chunk.bytes)
    if (this.state === BLIND && this.startsMessage(data, captured)) this.finishMessage(this.lastEndNs)
    this.feed(data, captured, chunk)
    if (chunk.bytes > captured) this.unseen(chunk.bytes - captured, false, chunk.endNs)
    else if (this.state === BLIND && this.chunked && endsWith(data, captured, LAST_CHUNK)) this.finishMessage(chunk.endNs)
    this.expected = chunk.position + chunk.bytes
    this.lastEndNs = chunk.endNs
  }

  /** The record does not follow the previous one: bytes were lost, or positions went backwards. */
  private jump(chunk: Http1Chunk): void {
    const gap = chunk.position - this.expected
    if (gap > 0) {
      this.parser.stats.lostBytes += gap
      this.unseen(gap, true, this.lastEndNs)
      return
    }
    this.parser.errors.position++
    this.desync(this.lastEndNs)
  }

  private feed(data: Uint8Array, n: number, chunk: Http1Chunk): void {
    let i = 0
    while (i < n) {
      switch (this.state) {
        case SYNC:
          i = this.sync(data, i, n, chunk)
          break
        case IDLE:
          i = this.idle(data, i, n, chunk)
          break
        case HEAD:
        case TRAILERS:
          i = this.lines(data, i, n, chunk)
          break
        case BODY_LENGTH:
        case CHUNK_DATA:
          i = this.counted(i, n, chunk)
          break
        case CHUNK_SIZE:
        case CHUNK_EXT:
        case CHUNK_END:
          i = this.chunkFraming(data, i, n, chunk)
          break
        case UNTIL_CLOSE:
        case BLIND:
          this.bodyBytes += n - i
          i = n
          break
        default: // STOPPED
          i = n
      }
    }
  }

  /**
   * `count` bytes were not seen: lost (a position gap) or not captured (the rest of a large call).
   * A body of known length absorbs them; otherwise the stream lost its place.
   */
  private unseen(count: number, lost: boolean, endNs: number): void {
    switch (this.state) {
      case BODY_LENGTH:
      case CHUNK_DATA:
        return this.unseenInCounted(count, lost, endNs)
      case UNTIL_CLOSE:
        this.bodyBytes += count
        return
      case BLIND:
        if (lost) return this.desync(endNs)
        this.bodyBytes += count
        return
      case HEAD:
        if (lost || !this.sawStartLine) return this.desync(endNs)
        this.parser.stats.headsCut++
        if (this.readingRequest && this.entry !== null) this.connection.requestHead(this.entry)
        return this.blind(count)
      case CHUNK_END:
        if (!lost && count <= (this.sawCR ? 1 : 2)) return this.unseenChunkEnd(count)
        return lost ? this.desync(endNs) : this.blind(count)
      case CHUNK_SIZE:
      case CHUNK_EXT:
      case TRAILERS:
        return lost ? this.desync(endNs) : this.blind(count)
      case IDLE:
        if (!lost) this.parser.stats.unseenStarts++
        return this.desync(endNs)
      case SYNC:
        // a line does not continue across unseen bytes
        this.parser.stats.skippedBytes += this.lineLength
        this.lineLength = 0
        return
    }
  }

  private unseenInCounted(count: number, lost: boolean, endNs: number): void {
    if (count <= this.remaining) {
      this.remaining -= count
      this.bodyBytes += count
      if (this.remaining === 0) this.countedEnd(endNs)
      return
    }
    if (lost) return this.desync(endNs)
    const rest = count - this.remaining
    this.bodyBytes += this.remaining
    this.remaining = 0
    if (this.state === CHUNK_DATA) {
      this.state = CHUNK_END
      this.sawCR = false
      // a writer usually puts the CRLF after chunk data in the same call
      return rest <= 2 ? this.unseenChunkEnd(rest) : this.blind(rest)
    }
    this.finishMessage(endNs)
    this.parser.stats.unseenStarts++
    this.desync(endNs)
  }

  /** Unseen bytes that can only be the CR and LF after chunk data. */
  private unseenChunkEnd(count: number): void {
    this.bodyBytes += count
    if (count === 1 && !this.sawCR) {
      this.sawCR = true
      return
    }
    this.state = CHUNK_SIZE
    this.chunkDigits = 0
    this.remaining = 0
  }

  /** The framing continues where it cannot be seen: the message ends where the next one starts. */
  private blind(count: number): void {
    this.bodyBytes += count
    this.state = BLIND
    this.lineLength = 0
  }

  /**
   * @internal the request being read got its whole response. If its end was out of sight, it had
   * ended. If it asked `Expect: 100-continue` and sent no body yet, the refusal means it never
   * will (RFC 9110 10.1.1); a body sent anyway is skipped up to the next request.
   */
  answeredWhileOpen(): void {
    if (this.state === BLIND) {
      this.finishMessage(this.lastEndNs)
      this.state = SYNC
    } else if (this.expectContinue && this.bodyBytes === 0 && (this.state === BODY_LENGTH || this.state === CHUNK_SIZE)) {
      this.finishMessage(this.lastEndNs)
      this.state = BLIND
    }
  }

  /** Whether a record starts with a message of the kind this stream carries (to end a blind body). */
  private startsMessage(data: Uint8Array, n: number): boolean {
    let lf = indexOfByte(data, LF, 0, n)
    if (lf >= 0) {
      if (lf > 0 && data[lf - 1] === CR) lf--
      return this.carries === RESPONSES ? statusLineShape(data, 0, lf) : requestLineShape(data, 0, lf) > 0
    }
    // the line runs past the capture: only a known method or the version is evidence enough
    if (this.carries === RESPONSES) return n >= 13 && statusLineShape(data, 0, 12)
    return knownMethodEnding(data, 0, indexOfByte(data, SP, 0, Math.min(n, 8))) === 0
  }

  /** Lost our place: end the message in progress as lost and look for the next message start. */
  desync(endNs: number): void {
    this.parser.stats.resyncs++
    if (this.entry !== null) {
      this.entry.exchange.incomplete = 'lost'
      this.finishMessage(endNs)
    } else {
      this.resetMessage()
    }
    this.state = SYNC
    this.lineLength = 0
    // responses may be among what was skipped, so the queue can no longer be paired in order
    if (this.carries === RESPONSES) this.connection.responsesLost()
  }

  private fail(reason: Http1ErrorReason, endNs: number): void {
    this.parser.errors[reason]++
    this.desync(endNs)
  }

  /** @internal the exchange is handed over early: keep reading the message for framing only */
  detach(): void {
    if (this.message !== null) this.writeProgress(this.lastEndNs)
    this.entry = null
    this.message = null
  }

  stop(): void {
    this.resetMessage()
    this.state = STOPPED
    this.line = null
    this.lineLength = 0
  }

  onClose(): void {
    if (this.entry === null) return
    if (this.state === UNTIL_CLOSE || this.state === BLIND) return this.finishMessage(this.lastEndNs)
    this.entry.exchange.incomplete ??= 'closed'
    this.finishMessage(this.lastEndNs)
  }

  // ---- looking for a message start

  private sync(data: Uint8Array, i: number, n: number, chunk: Http1Chunk): number {
    const lf = indexOfByte(data, LF, i, n)
    const end = lf < 0 ? n : lf + 1
    if (lf < 0) {
      this.appendLine(data, i, n, true, chunk.startNs)
      return n
    }
    if (this.lineLength === 0) {
      this.syncLine(data, i, lf, i, chunk.startNs, chunk)
      return end
    }
    this.appendLine(data, i, lf, true, chunk.startNs)
    // the last lf - i bytes of the line are this record's; appendLine may have cut the front
    this.syncLine(this.line!, 0, this.lineLength, this.lineLength - (lf - i), this.lineStartNs, chunk)
    this.lineLength = 0
    return end
  }

  /**
   * Looks for a message start that ends the line `[a, b)` (its LF at b). `fresh` is where this
   * record's bytes begin in `buf`: a start found before it began in an earlier record, which
   * started at `earlierNs`.
   */
  private syncLine(buf: Uint8Array, a: number, b: number, fresh: number, earlierNs: number, chunk: Http1Chunk): void {
    const lineEnd = b + 1
    if (b > a && buf[b - 1] === CR) b--
    let at = this.carries === RESPONSES ? -1 : this.findRequestLine(buf, a, b)
    let kind = REQUESTS
    if (at < 0 && this.carries !== REQUESTS) {
      at = this.findStatusLine(buf, a, b)
      kind = RESPONSES
    }
    this.parser.stats.skippedBytes += (at < 0 ? lineEnd : at) - a
    if (at < 0) return
    this.state = HEAD
    this.headBytes = b - at
    this.messageStartNs = at < fresh ? earlierNs : chunk.startNs
    this.startMessage(kind, chunk)
  }

  /** A request line ending at `b`, maybe after junk: the offset where it starts, or -1. */
  private findRequestLine(buf: Uint8Array, a: number, b: number): number {
    const versionAt = b - 8
    if (versionAt - 3 < a || buf[versionAt - 1] !== SP || !isVersion(buf, versionAt)) return -1
    let targetStart = versionAt - 1
    while (targetStart > a && buf[targetStart - 1] !== SP) targetStart--
    const methodEnd = targetStart - 1
    if (methodEnd <= a) return -1
    let methodStart = methodEnd
    while (methodStart > a && TOKEN[buf[methodStart - 1]!] === 1) methodStart--
    const start = knownMethodEnding(buf, methodStart, methodEnd)
    // an unknown method is trusted only when nothing precedes it on the line
    const at = start >= 0 ? start : methodStart === a ? a : -1
    return at >= 0 && this.parseRequestLine(buf, at, b) ? at : -1
  }

  /** A status line running to `b`, maybe after junk: the offset where it starts, or -1. */
  private findStatusLine(buf: Uint8Array, a: number, b: number): number {
    for (let at = indexOfByte(buf, 72, a, b); at >= 0 && b - at >= 12; at = indexOfByte(buf, 72, at + 1, b)) {
      if (this.parseStatusLine(buf, at, b)) return at
    }
    return -1
  }

  // ---- heads

  private idle(data: Uint8Array, i: number, n: number, chunk: Http1Chunk): number {
    // RFC 9112 2.2: empty lines before a request line are ignored
    while (i < n && (data[i] === CR || data[i] === LF)) i++
    if (i < n) {
      this.state = HEAD
      this.sawStartLine = false
      this.headBytes = 0
      this.messageStartNs = chunk.startNs
    }
    return i
  }

  private lines(data: Uint8Array, i: number, n: number, chunk: Http1Chunk): number {
    const lf = indexOfByte(data, LF, i, n)
    const end = lf < 0 ? n : lf + 1
    this.headBytes += end - i
    if (this.state === TRAILERS) this.bodyBytes += end - i
    if (this.headBytes > this.limits.maxHeadBytes) {
      this.fail('head-too-long', chunk.endNs)
      return end
    }
    if (lf < 0) {
      this.appendLine(data, i, n, false, chunk.startNs)
      return n
    }
    if (this.lineLength === 0) {
      this.onLine(data, i, lf, chunk)
    } else {
      this.appendLine(data, i, lf, false, chunk.startNs)
      this.onLine(this.line!, 0, this.lineLength, chunk)
      this.lineLength = 0
    }
    return end
  }

  private onLine(buf: Uint8Array, a: number, b: number, chunk: Http1Chunk): void {
    if (b > a && buf[b - 1] === CR) b--
    if (this.state === TRAILERS) {
      if (a === b) this.finishMessage(chunk.endNs)
      return
    }
    if (!this.sawStartLine) return this.onStartLine(buf, a, b, chunk)
    if (a === b) return this.endHead(chunk)
    this.onHeaderLine(buf, a, b, chunk)
  }

  private onStartLine(buf: Uint8Array, a: number, b: number, chunk: Http1Chunk): void {
    if (this.carries !== RESPONSES && this.parseRequestLine(buf, a, b)) return this.startMessage(REQUESTS, chunk)
    if (this.carries !== REQUESTS && this.parseStatusLine(buf, a, b)) return this.startMessage(RESPONSES, chunk)
    this.parser.errors['start-line']++
    const lineStartNs = this.messageStartNs
    this.desync(chunk.endNs)
    // the start may follow junk on the same line
    this.syncLine(buf, a, b, b, lineStartNs, chunk)
  }

  private startMessage(kind: number, chunk: Http1Chunk): void {
    if (this.carries === UNKNOWN) this.connection.decide(kind === REQUESTS ? this.direction : 1 - this.direction)
    this.sawStartLine = true
    this.readingRequest = kind === REQUESTS
    if (kind === REQUESTS) return this.startRequest()
    if (this.status < 200 && this.status !== 101) return // interim: read for framing only
    const response: Http1Response = {
      status: this.status,
      version: this.version,
      headers: {},
      bodyBytes: 0,
      startNs: this.messageStartNs,
      endNs: this.messageStartNs,
      tid: 0,
      context: 0,
    }
    this.entry = this.connection.answer(response, chunk.endNs)
    if (this.entry !== null) this.message = response
  }

  private startRequest(): void {
    const request: Http1Request = {
      method: this.method,
      target: this.target,
      version: this.version,
      headers: {},
      bodyBytes: 0,
      startNs: this.messageStartNs,
      endNs: this.messageStartNs,
      tid: 0,
      context: 0,
    }
    this.entry = this.connection.enqueue(request)
    if (this.entry === null) return
    this.message = request
    this.entry.storedBytes = this.target.length
  }

  /** Fills method, target and version from an exact request line. */
  private parseRequestLine(buf: Uint8Array, a: number, b: number): boolean {
    const methodEnd = requestLineShape(buf, a, b)
    if (methodEnd < 0) return false
    const targetEnd = b - 9
    this.method = internMethod(buf, a, methodEnd)
    this.version = buf[b - 1] === 49 ? '1.1' : '1.0'
    const kept = Math.min(targetEnd - methodEnd - 1, this.limits.maxTargetBytes)
    this.parser.stats.targetBytesCut += targetEnd - methodEnd - 1 - kept
    this.target = latin1(buf, methodEnd + 1, methodEnd + 1 + kept)
    return true
  }

  /** Fills status and version from an exact status line (`HTTP/1.1 200 OK`, reason optional). */
  private parseStatusLine(buf: Uint8Array, a: number, b: number): boolean {
    if (!statusLineShape(buf, a, b)) return false
    this.status = (buf[a + 9]! - 48) * 100 + (buf[a + 10]! - 48) * 10 + (buf[a + 11]! - 48)
    this.version = buf[a + 7] === 49 ? '1.1' : '1.0'
    return true
  }

  private onHeaderLine(buf: Uint8Array, a: number, b: number, chunk: Http1Chunk): void {
    // obsolete line folding (RFC 9112 5.2) continues the previous value: nothing to frame by
    if (buf[a] === SP || buf[a] === HT) return
    // one pass checks the name and finds the colon, which is not a token character
    let colon = a
    while (colon < b && TOKEN[buf[colon]!] === 1) colon++
    if (colon === a || colon === b || buf[colon] !== COLON) return this.fail('header-line', chunk.endNs)
    const nameLength = colon - a
    const framing = FRAMING_BY_LENGTH[nameLength]
    const wanted = this.message === null ? undefined : this.parser.wantedByLength[nameLength]
    // most header lines are neither: their values are never looked at
    if (framing === undefined && wanted === undefined) return
    let valueStart = colon + 1
    let valueEnd = b
    while (valueStart < valueEnd && (buf[valueStart] === SP || buf[valueStart] === HT)) valueStart++
    while (valueEnd > valueStart && (buf[valueEnd - 1] === SP || buf[valueEnd - 1] === HT)) valueEnd--
    if (framing !== undefined && equalsLowerCase(buf, a, framing)) this.onFramingHeader(framing, buf, valueStart, valueEnd)
    if (wanted === undefined) return
    for (const header of wanted) {
      if (equalsLowerCase(buf, a, header.bytes)) return this.keepHeader(header.name, buf, valueStart, valueEnd)
    }
  }

  private onFramingHeader(name: Uint8Array, buf: Uint8Array, start: number, end: number): void {
    if (name === CONTENT_LENGTH) this.onContentLength(buf, start, end)
    else if (name === TRANSFER_ENCODING) this.onTransferEncoding(buf, start, end)
    else this.expectContinue = end - start === CONTINUE.length && equalsLowerCase(buf, start, CONTINUE)
  }

  /** Keeps a value, joining repeats with `, `; separators count against the cap too. */
  private keepHeader(name: string, buf: Uint8Array, start: number, end: number): void {
    const headers = this.message!.headers
    const previous = headers[name]
    const separator = previous === undefined ? 0 : 2
    const room = this.limits.maxHeaderBytes - this.storedBytes - separator
    const kept = Math.max(0, Math.min(end - start, room))
    this.parser.stats.headerBytesCut += end - start - kept
    if (room < 0 || (kept === 0 && end > start)) return
    const value = latin1(buf, start, start + kept)
    headers[name] = previous === undefined ? value : `${previous}, ${value}`
    this.storedBytes += separator + kept
    if (this.entry !== null) this.entry.storedBytes += separator + kept
  }

  /** RFC 9112 6.3: a list of identical lengths is one length; anything else invalid is an error. */
  private onContentLength(buf: Uint8Array, start: number, end: number): void {
    let at = start
    while (at <= end) {
      let next = indexOfByte(buf, COMMA, at, end)
      if (next < 0) next = end
      let digitsStart = at
      let digitsEnd = next
      while (digitsStart < digitsEnd && (buf[digitsStart] === SP || buf[digitsStart] === HT)) digitsStart++
      while (digitsEnd > digitsStart && (buf[digitsEnd - 1] === SP || buf[digitsEnd - 1] === HT)) digitsEnd--
      const length = parseDecimal(buf, digitsStart, digitsEnd)
      if (length < 0 || (this.contentLength >= 0 && length !== this.contentLength)) {
        this.badContentLength = true
        return
      }
      this.contentLength = length
      at = next + 1
    }
  }

  /** Only the last coding frames the body (RFC 9112 6.1); the last header line wins. */
  private onTransferEncoding(buf: Uint8Array, start: number, end: number): void {
    let last = start
    for (let comma = indexOfByte(buf, COMMA, start, end); comma >= 0; comma = indexOfByte(buf, COMMA, comma + 1, end)) last = comma + 1
    while (last < end && (buf[last] === SP || buf[last] === HT)) last++
    if (last === end) return
    this.chunked = end - last === CHUNKED.length && equalsLowerCase(buf, last, CHUNKED)
    this.otherCoding = !this.chunked
  }

  private endHead(chunk: Http1Chunk): void {
    if (this.message !== null) {
      this.message.tid = chunk.tid ?? 0
      this.message.context = chunk.context ?? 0
    }
    if (!this.readingRequest) return this.endResponseHead(chunk)
    if (this.entry !== null) this.connection.requestHead(this.entry)
    this.endRequestHead(chunk)
  }

  /** RFC 9112 6.3: chunked, else Content-Length, else no body. */
  private endRequestHead(chunk: Http1Chunk): void {
    if (this.chunked) return this.startChunks()
    if (this.otherCoding) return this.fail('transfer-encoding', chunk.endNs)
    if (this.badContentLength) return this.fail('content-length', chunk.endNs)
    if (this.contentLength > 0) return this.startCounted(this.contentLength)
    this.finishMessage(chunk.endNs)
  }

  /** RFC 9112 6.3, for a response: no body, tunnel, chunked, Content-Length, or until close. */
  private endResponseHead(chunk: Http1Chunk): void {
    const status = this.status
    if (status < 200 && status !== 101) {
      this.resetMessage()
      this.state = IDLE
      return
    }
    const method = this.entry?.exchange.request.method
    if (status === 101 || (method === 'CONNECT' && status < 300)) {
      this.finishMessage(chunk.endNs)
      return this.connection.stop()
    }
    if (method === 'HEAD' || status === 204 || status === 304) return this.finishMessage(chunk.endNs)
    if (this.chunked) return this.startChunks()
    if (this.otherCoding) {
      this.state = UNTIL_CLOSE
      return
    }
    if (this.badContentLength) return this.fail('content-length', chunk.endNs)
    if (this.contentLength === 0) return this.finishMessage(chunk.endNs)
    if (this.contentLength > 0) return this.startCounted(this.contentLength)
    this.state = UNTIL_CLOSE
  }

  // ---- bodies

  private startCounted(length: number): void {
    this.state = BODY_LENGTH
    this.remaining = length
  }

  private startChunks(): void {
    this.state = CHUNK_SIZE
    this.chunkDigits = 0
    this.remaining = 0
    this.headBytes = 0
  }

  private counted(i: number, n: number, chunk: Http1Chunk): number {
    const take = Math.min(this.remaining, n - i)
    this.remaining -= take
    this.bodyBytes += take
    if (this.remaining === 0) this.countedEnd(chunk.endNs)
    return i + take
  }

  private countedEnd(endNs: number): void {
    if (this.state === BODY_LENGTH) return this.finishMessage(endNs)
    this.state = CHUNK_END
    this.sawCR = false
  }

  /** Chunk-size lines and the CRLF after chunk data, a byte at a time since they are a few bytes. */
  private chunkFraming(data: Uint8Array, i: number, n: number, chunk: Http1Chunk): number {
    while (i < n) {
      const c = data[i++]!
      this.bodyBytes++
      if (this.state === CHUNK_END) {
        if (c === CR && !this.sawCR) {
          this.sawCR = true
        } else if (c === LF) {
          this.state = CHUNK_SIZE
          this.chunkDigits = 0
          this.remaining = 0
        } else {
          this.fail('chunk-end', chunk.endNs)
          return i
        }
      } else if (this.state === CHUNK_SIZE && HEX[c]! < 16) {
        if (++this.chunkDigits > MAX_CHUNK_SIZE_DIGITS) return this.chunkSizeError(i, chunk)
        this.remaining = this.remaining * 16 + HEX[c]!
      } else if (this.state === CHUNK_SIZE) {
        if (this.chunkDigits === 0) return this.chunkSizeError(i, chunk)
        this.state = CHUNK_EXT
        this.chunkExtension = 0
        if (c === LF) return this.chunkSizeLineEnd(i)
      } else if (c === LF) {
        return this.chunkSizeLineEnd(i)
      } else if (++this.chunkExtension > MAX_CHUNK_EXTENSION) {
        return this.chunkSizeError(i, chunk)
      }
    }
    return i
  }

  private chunkSizeError(i: number, chunk: Http1Chunk): number {
    this.fail('chunk-size', chunk.endNs)
    return i
  }

  private chunkSizeLineEnd(i: number): number {
    if (this.remaining === 0) {
      this.state = TRAILERS
      this.headBytes = 0
    } else {
      this.state = CHUNK_DATA
    }
    return i
  }

  private finishMessage(endNs: number): void {
    const entry = this.entry
    const isRequest = this.readingRequest
    if (this.message !== null) this.writeProgress(endNs)
    this.resetMessage()
    this.state = IDLE
    if (entry === null) return
    if (isRequest) this.connection.requestDone(entry)
    else this.connection.responseDone(entry)
  }

  private writeProgress(endNs: number): void {
    this.message!.bodyBytes = this.bodyBytes
    this.message!.endNs = endNs
  }

  private resetMessage(): void {
    this.entry = null
    this.message = null
    this.readingRequest = false
    this.sawStartLine = false
    this.headBytes = 0
    this.storedBytes = 0
    this.bodyBytes = 0
    this.status = 0
    this.contentLength = -1
    this.badContentLength = false
    this.chunked = false
    this.otherCoding = false
    this.expectContinue = false
    this.remaining = 0
  }

  // ---- lines split across records

  /**
   * Appends to the line buffer. Heads keep a long line's start (name and value come first);
   * resynchronising keeps its end (a start line ends the line). The buffer grows only as needed.
   */
  private appendLine(data: Uint8Array, from: number, to: number, keepEnd: boolean, startNs: number): void {
    if (this.lineLength === 0) this.lineStartNs = startNs
    const max = this.limits.maxLineBytes
    let length = to - from
    if (keepEnd) {
      if (length >= max) {
        this.parser.stats.skippedBytes += this.lineLength + length - max
        from = to - max
        length = max
        this.lineLength = 0
      } else if (this.lineLength + length > max) {
        const keep = max - length
        this.parser.stats.skippedBytes += this.lineLength - keep
        this.line!.copyWithin(0, this.lineLength - keep, this.lineLength)
        this.lineLength = keep
      }
    } else if (this.lineLength + length > max) {
      this.parser.stats.lineBytesCut += this.lineLength + length - max
      length = max - this.lineLength
    }
    if (length <= 0) return
    this.reserveLine(this.lineLength + length)
    this.line!.set(data.subarray(from, from + length), this.lineLength)
    this.lineLength += length
  }

  private reserveLine(size: number): void {
    if (this.line !== null && this.line.length >= size) return
    let capacity = Math.max(256, this.line?.length ?? 0)
    while (capacity < size) capacity *= 2
    const line = new Uint8Array(Math.min(capacity, this.limits.maxLineBytes))
    if (this.line !== null) line.set(this.line.subarray(0, this.lineLength))
    this.line = line
  }
}

/** Whether `[a, b)` is a request line (`GET /x HTTP/1.1`): where its method ends, or -1. */
function requestLineShape(buf: Uint8Array, a: number, b: number): number {
  let methodEnd = a
  while (methodEnd < b && TOKEN[buf[methodEnd]!] === 1) methodEnd++
  const versionAt = b - 8
  if (methodEnd === a || buf[methodEnd] !== SP || versionAt - 2 <= methodEnd) return -1
  if (buf[versionAt - 1] !== SP || !isVersion(buf, versionAt)) return -1
  for (let i = methodEnd + 1; i < versionAt - 1; i++) {
    const c = buf[i]!
    if (c <= SP || c === 0x7f) return -1
  }
  return methodEnd
}

/** Whether `[a, b)` is a status line: `HTTP/1.1 200`, then a reason phrase or nothing. */
function statusLineShape(buf: Uint8Array, a: number, b: number): boolean {
  if (b - a < 12 || !isVersion(buf, a) || buf[a + 8] !== SP) return false
  const d0 = buf[a + 9]! - 48
  const d1 = buf[a + 10]! - 48
  const d2 = buf[a + 11]! - 48
  if (d0 < 1 || d0 > 9 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9) return false
  if (b - a > 12 && buf[a + 12] !== SP) return false
  for (let i = a + 13; i < b; i++) {
    const c = buf[i]!
    if ((c < SP && c !== HT) || c === 0x7f) return false
  }
  return true
}

/** `HTTP/1.0` or `HTTP/1.1` at `at`. */
function isVersion(buf: Uint8Array, at: number): boolean {
  return equalsBytes(buf, at, HTTP_1) && (buf[at + 7] === 48 || buf[at + 7] === 49)
}

/** Where a known method that ends at `end` starts within `[start, end)`, or -1. */
function knownMethodEnding(buf: Uint8Array, start: number, end: number): number {
  for (const method of METHODS) {
    const at = end - method.bytes.length
    if (at >= start && equalsBytes(buf, at, method.bytes)) return at
  }
  return -1
}

function internMethod(buf: Uint8Array, start: number, end: number): string {
  for (const method of METHODS) {
    if (method.bytes.length === end - start && equalsBytes(buf, start, method.bytes)) return method.name
  }
  return latin1(buf, start, end)
}

/** Decimal digits only, at most 15 of them; -1 otherwise. */
function parseDecimal(buf: Uint8Array, start: number, end: number): number {
  if (end === start || end - start > MAX_LENGTH_DIGITS) return -1
  let value = 0
  for (let i = start; i < end; i++) {
    const digit = buf[i]! - 48
    if (digit < 0 || digit > 9) return -1
    value = value * 10 + digit
  }
  return value
}

function endsWith(data: Uint8Array, n: number, suffix: Uint8Array): boolean {
  if (n >= suffix.length) return equalsBytes(data, n - suffix.length, suffix)
  // a record holding only the last chunk: its CRLF before was the end of the previous record
  return n === suffix.length - 2 && equalsBytes(data, 0, suffix.subarray(2))
}
