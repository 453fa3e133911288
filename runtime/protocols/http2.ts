/**
 * HTTP/2 stream parser: turns the two byte streams of a connection, as the kernel captured them,
 * into one exchange per stream (request headers, response headers, trailers, reset), for HTTP/2
 * and gRPC spans.
 *
 * It is pure TypeScript for plugin isolates (V8 builtins only). The input is the `sockdata`
 * records of one connection: each says how many bytes the call moved (`bytes`) but carries only
 * the first of them (`data`), and its `position` in its direction's stream. Frames are followed by
 * their lengths, so DATA split across reads, records cut at the capture size and frames larger
 * than a record keep their place; only when a frame boundary falls in bytes that were not
 * captured (or records were lost) does a direction lose its place, and then it waits for a record
 * that starts with a plausible frame header (a boundary cannot be found by scanning HTTP/2).
 *
 * Records come in the order their calls returned, so at the client end a response may come before
 * the record of the send that carried its request: what the server sent on a stream above every
 * one seen waits (a few streams, until a higher stream's request comes) for that request.
 *
 * Header blocks go through one HPACK decoder per direction (./hpack.ts). When header blocks may
 * have been missed (the parser started mid-connection, lost records, a cut block), the dynamic
 * table is unknown: fields referring to entries from before resolve to undefined, are counted in
 * `unresolvedHeaders`, and mark their message `unresolved`.
 *
 * Cost and memory: no DATA byte is copied; a header block is copied only when it spans frames or
 * records (up to `maxHeaderBlock`); only pseudo-headers, content-type, grpc-status, grpc-message
 * and the asked-for headers become strings. At most `maxStreams` streams are followed per
 * connection. Malformed input is counted in `Http2Parser.errors` by reason and never throws.
 *
 * ```ts
 * const parser = new Http2Parser<Conn>((exchange, conn, side) => emitSpan(conn, exchange, side), { headers: ['traceparent'] })
 * const connection = parser.connection(conn, 'server')
 * connection.push(chunk)
 * connection.close()
 * ```
 */
import { HPACK_CUT, HPACK_ERROR, HPACK_UNRESOLVED, HpackDecoder, type HpackSink } from './hpack.ts'
import type { SockChunk } from './sockdata.ts'

export interface Http2Request {
  streamId: number
  /** pseudo-headers; undefined when absent or unresolved (mid-connection HPACK) */
  method?: string
  path?: string
  scheme?: string
  authority?: string
  /** regular headers named in options.headers (lower case), first value */
  headers: Record<string, string>
  /** some header of the request block could not be resolved (unknown dynamic-table entry) */
  unresolved: boolean
  /** boot ns: the first HEADERS frame's chunk startNs / the chunk that ended the request (END_STREAM) endNs */
  startNs: number
  endNs: number
  /** the thread and thread context of the chunk that carried the request's HEADERS */
  tid: number
  context: number
}

export interface Http2Response {
  /** :status of the first (non-1xx) HEADERS */
  status?: number
  /** options.headers names, from the response HEADERS (and from trailers for names they did not carry) */
  headers: Record<string, string>
  /** from trailers (or a trailers-only response): grpc-status, and grpc-message percent-decoded */
  grpcStatus?: number
  grpcMessage?: string
  unresolved: boolean
  /** first response HEADERS */
  startNs: number
  /** the chunk that ended the stream (END_STREAM or RST_STREAM) */
  endNs: number
}

export interface Http2Exchange {
  request: Http2Request
  response?: Http2Response
  /** RST_STREAM error code, from either side, when the stream was reset */
  resetCode?: number
  /** boot ns: the record of the RST_STREAM, or the connection's close, that ended a stream without its response's end */
  cutNs?: number
  /** the stream did not end normally: connection closed, records lost, GOAWAY past its id */
  incomplete?: 'closed' | 'lost' | 'goaway'
  /** DATA payload bytes each way (padding excluded) */
  requestBytes: number
  responseBytes: number
  /** gRPC messages each way (5-byte length-prefixed), counted while their prefixes were captured */
  requestMessages: number
  responseMessages: number
}

export interface Http2Options<C> {
  /** regular header names to keep (lower case), e.g. ['content-type', 'traceparent', 'user-agent', 'grpc-status', 'grpc-message'] */
  headers: readonly string[]
  /** a request's HEADERS were seen (span ids are chosen here) */
  onRequest?(request: Http2Request, context: C, side: 'client' | 'server'): void
  /** streams followed per connection (default 1000); past it the oldest ends as lost */
  maxStreams?: number
  /** bytes of one header block kept when it spans frames or records (default 65536) */
  maxHeaderBlock?: number
}

/** Why input was counted: malformed, cut, lost or dropped, by reason. */
export type Http2ErrorReason =
  | 'preface' // bytes at position 0 started the client preface but did not finish it
  | 'position' // a record's position is before the end of the previous one of its direction
  | 'lost' // records were lost (a gap in positions, or the loss flag)
  | 'unseen-frames' // a frame started in bytes beyond the capture: the direction lost its place
  | 'resync-skipped' // a record skipped while waiting for one that starts with a frame header
  | 'continuation' // a CONTINUATION without its HEADERS, or another frame inside a header block
  | 'header-block-cut' // a header block partly uncaptured, or longer than maxHeaderBlock
  | 'header-block' // a header block that does not decode (see the hpack-* reasons)
  | 'padding' // a pad length longer than its frame
  | 'stream-overflow' // a stream ended as lost because maxStreams were open
  | 'unmatched-response' // response HEADERS for a stream not followed
  | 'role' // the preface or a request came from the side known to be the server

/** The 17 gRPC status codes' names (grpc/doc/statuscodes.md), by code. */
const GRPC_STATUS_NAMES = [
  'OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS',
  'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE',
  'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED',
]

/** A gRPC status code's name (`NOT_FOUND` for 5), or undefined for a code gRPC does not define. */
export function grpcStatusName(code: number): string | undefined {
  return GRPC_STATUS_NAMES[code]
}

/** HTTP/2 error codes' names (RFC 9113 7), by code. */
const HTTP2_ERROR_NAMES = [
  'NO_ERROR', 'PROTOCOL_ERROR', 'INTERNAL_ERROR', 'FLOW_CONTROL_ERROR', 'SETTINGS_TIMEOUT', 'STREAM_CLOSED',
  'FRAME_SIZE_ERROR', 'REFUSED_STREAM', 'CANCEL', 'COMPRESSION_ERROR', 'CONNECT_ERROR', 'ENHANCE_YOUR_CALM',
  'INADEQUATE_SECURITY', 'HTTP_1_1_REQUIRED',
]

/** An RST_STREAM or GOAWAY error code's name (`CANCEL` for 8), or undefined for an unknown code. */
export function http2ErrorName(code: number): string | undefined {
  return HTTP2_ERROR_NAMES[code]
}

const EGRESS = 0
const INGRESS = 1

// frame types (RFC 9113 6)
const DATA = 0
const HEADERS = 1
const PRIORITY = 2
const RST_STREAM = 3
const SETTINGS = 4
const PUSH_PROMISE = 5
const PING = 6
const GOAWAY = 7
const WINDOW_UPDATE = 8
const CONTINUATION = 9

// flags
const END_STREAM = 0x1
const ACK = 0x1
const END_HEADERS = 0x4
const PADDED = 0x8
const PRIORITY_FLAG = 0x20

const SETTINGS_HEADER_TABLE_SIZE = 1
const SETTINGS_MAX_FRAME_SIZE = 5
const DEFAULT_MAX_FRAME_SIZE = 16384
const FRAME_HEADER_BYTES = 9

/** The client connection preface (RFC 9113 3.4). */
const PREFACE = Uint8Array.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', (c) => c.charCodeAt(0))

// what a direction is doing
const PREFACE_STATE = 0 // matching the client preface at position 0
const FRAME_HEAD = 1 // reading a frame header
const FRAME_PAYLOAD = 2 // reading (or skipping) a payload
const SYNC = 3 // place lost: waiting for a record that starts with a frame header

// what is done with a payload
const SKIP = 0
const COUNT_DATA = 1
const BLOCK = 2
const CONTROL = 3

/** Control-frame payload bytes kept (SETTINGS entries, RST_STREAM and GOAWAY codes). */
const CONTROL_BYTES = 240

// names the HPACK decoders decode, by index; the options' headers follow
const NAME_METHOD = 0
const NAME_PATH = 1
const NAME_SCHEME = 2
const NAME_AUTHORITY = 3
const NAME_STATUS = 4
const NAME_CONTENT_TYPE = 5
const NAME_GRPC_STATUS = 6
const NAME_GRPC_MESSAGE = 7
const BUILTIN_NAMES = [':method', ':path', ':scheme', ':authority', ':status', 'content-type', 'grpc-status', 'grpc-message']

/** Parses the connections of one plugin; shares options, counters and the handlers among them. */
export class Http2Parser<C> {
  /** malformed/truncated/lost/... counts by reason, for self-metrics */
  readonly errors: Record<string, number> = {}
  /** @internal */
  readonly onExchange: (exchange: Http2Exchange, context: C, side: 'client' | 'server') => void
  /** @internal */
  readonly onRequest: ((request: Http2Request, context: C, side: 'client' | 'server') => void) | undefined
  /** @internal every name the decoders decode */
  readonly names: readonly string[]
  /** @internal for each decoded name, the key it is kept under in `headers`, if asked for */
  readonly headerKeys: (string | undefined)[]
  /** @internal */
  readonly maxStreams: number
  /** @internal */
  readonly maxHeaderBlock: number
  /** @internal */
  unresolved = 0

  constructor(onExchange: (exchange: Http2Exchange, context: C, side: 'client' | 'server') => void, options: Http2Options<C>) {
    this.onExchange = onExchange
    this.onRequest = options.onRequest
    this.maxStreams = positive(options.maxStreams, 1000, 'maxStreams')
    this.maxHeaderBlock = positive(options.maxHeaderBlock, 65536, 'maxHeaderBlock')
    const names = [...BUILTIN_NAMES]
    const headerKeys: (string | undefined)[] = BUILTIN_NAMES.map(() => undefined)
    for (const header of options.headers) {
      const name = header.toLowerCase()
      if (!/^[!#$%&'*+\-.^_`|~0-9a-z]+$/.test(name)) {
        throw new Error(`Http2Parser: header name ${JSON.stringify(header)} is not an HTTP token; list names such as 'user-agent'`)
      }
      const index = names.indexOf(name)
      if (index >= 0) {
        headerKeys[index] = name
        continue
      }
      names.push(name)
      headerKeys.push(name)
    }
    this.names = names
    this.headerKeys = headerKeys
  }

  /** header fields whose name or value could not be resolved (mid-connection HPACK), for self-metrics */
  get unresolvedHeaders(): number {
    return this.unresolved
  }

  /** role from the kernel: 'client' (this end connected), 'server', 'unknown' (decide from the preface / who sends :method) */
  connection(context: C, role: 'client' | 'server' | 'unknown', options?: { midStream?: boolean }): Http2Connection {
    return new Connection(this, context, role, options?.midStream === true)
  }

  /** @internal */
  count(reason: Http2ErrorReason): void {
    this.errors[reason] = (this.errors[reason] ?? 0) + 1
  }
}

export interface Http2Connection {
  push(chunk: SockChunk): void
  /** the connection closed: open streams end as incomplete 'closed' */
  close(endNs?: number): void
  /** streams open now */
  readonly openStreams: number
}

function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || value < 1) throw new Error(`Http2Parser: ${name} must be a positive integer, got ${value}`)
  return value
}

/**
 * gRPC length-prefixed messages in one direction of a stream: a flag byte and a 4-byte length
 * before each, counted as they go by in DATA.
 */
class MessageFraming {
  /** Bytes left of the current message. */
  left = 0
  /** Bytes of the next prefix read, and its length so far. */
  prefixRead = 0
  prefixLength = 0
  /** A prefix went uncaptured: messages are no longer counted. */
  lost = false

  /** Reads `data[i, i + n)`; returns how many messages started in it. */
  read(data: Uint8Array, i: number, n: number): number {
    if (this.lost) return 0
    const end = i + n
    let messages = 0
    while (i < end) {
      if (this.left > 0) {
        const take = Math.min(this.left, end - i)
        this.left -= take
        i += take
        continue
      }
      if (this.prefixRead > 0) this.prefixLength = this.prefixLength * 256 + data[i]!
      i++
      if (++this.prefixRead < 5) continue
      this.left = this.prefixLength
      this.prefixRead = this.prefixLength = 0
      messages++
    }
    return messages
  }

  /** `n` message bytes were not captured: inside a message they are skipped, past its end the framing is lost. */
  skip(n: number): void {
    if (this.left >= n && this.prefixRead === 0) this.left -= n
    else this.lost = true
  }
}

/** One stream followed: its exchange and, for gRPC, its messages each way. */
class Stream {
  readonly exchange: Http2Exchange
  /** Indexed like directions: requests 0, responses 1; null when the stream is not gRPC. */
  readonly framing: [MessageFraming, MessageFraming] | null
  /** Frames in uncaptured stretches may have carried its end: if it never ends, it was lost rather than closed. */
  suspect = false

  constructor(exchange: Http2Exchange, grpc: boolean) {
    this.exchange = exchange
    this.framing = grpc ? [new MessageFraming(), new MessageFraming()] : null
  }
}

/**
 * What the server sent on a stream whose request record has not come yet. At the client end, a
 * send's record is made when the call returns, and a response may be read before that: these wait
 * (a few, briefly) for the request.
 */
interface EarlyEvent {
  /** Response HEADERS (`fields` set), END_STREAM on DATA, or RST_STREAM (`code` set). */
  fields?: BlockFields
  endStream: boolean
  code?: number
  startNs: number
  endNs: number
}

/** Streams whose response may come before the request's record. */
const MAX_EARLY_STREAMS = 64

/** Fields of the header block being decoded. */
class BlockFields {
  method: string | undefined = undefined
  path: string | undefined = undefined
  scheme: string | undefined = undefined
  authority: string | undefined = undefined
  status: string | undefined = undefined
  contentType: string | undefined = undefined
  grpcStatus: string | undefined = undefined
  grpcMessage: string | undefined = undefined
  headers: Record<string, string> = {}
  unresolved = false

  clear(): void {
    this.method = this.path = this.scheme = this.authority = this.status = undefined
    this.contentType = this.grpcStatus = this.grpcMessage = undefined
    this.headers = {}
    this.unresolved = false
  }

  /** A copy that outlives the next block. */
  copy(): BlockFields {
    const copy = new BlockFields()
    copy.method = this.method
    copy.path = this.path
    copy.scheme = this.scheme
    copy.authority = this.authority
    copy.status = this.status
    copy.contentType = this.contentType
    copy.grpcStatus = this.grpcStatus
    copy.grpcMessage = this.grpcMessage
    copy.headers = this.headers
    copy.unresolved = this.unresolved
    return copy
  }

  hasPseudo(): boolean {
    return this.method !== undefined || this.path !== undefined || this.scheme !== undefined || this.authority !== undefined || this.status !== undefined
  }
}

class Connection<C> implements Http2Connection {
  readonly parser: Http2Parser<C>
  readonly context: C
  readonly directions: [Direction<C>, Direction<C>]
  /** Streams followed, oldest first. */
  readonly streams = new Map<number, Stream>()
  /** The direction that carries requests (client to server), or -1 while unknown. */
  requestDirection = -1
  /** The highest stream id a request was seen on: a HEADERS on a lower one is not a new stream. */
  highestStream = 0
  /** Header blocks decoded so far (a preface seen before any means the connection starts here). */
  blocksDecoded = 0
  /** By stream id, what the server sent before the request's record came; oldest first. */
  private readonly early = new Map<number, EarlyEvent[]>()
  private closed = false

  constructor(parser: Http2Parser<C>, context: C, role: 'client' | 'server' | 'unknown', midStream: boolean) {
    this.parser = parser
    this.context = context
    this.directions = [new Direction(this, EGRESS, midStream), new Direction(this, INGRESS, midStream)]
    if (role === 'client') this.requestDirection = EGRESS
    else if (role === 'server') this.requestDirection = INGRESS
  }

  get openStreams(): number {
    return this.streams.size
  }

  push(chunk: SockChunk): void {
    if (this.closed || chunk.bytes <= 0) return
    this.directions[chunk.direction === EGRESS ? EGRESS : INGRESS].push(chunk)
  }

  close(endNs?: number): void {
    if (this.closed) return
    this.closed = true
    this.dropEarly()
    for (const stream of [...this.streams.values()]) {
      const response = stream.exchange.response
      if (response !== undefined && endNs !== undefined) response.endNs = endNs
      stream.exchange.cutNs = endNs
      this.end(stream, stream.suspect ? 'lost' : 'closed')
    }
  }

  side(): 'client' | 'server' {
    return this.requestDirection === EGRESS ? 'client' : 'server'
  }

  /** The client preface came in `direction`. */
  preface(direction: number): void {
    if (this.blocksDecoded === 0) for (const each of this.directions) each.decoder.reset()
    if (this.requestDirection === -1) this.requestDirection = direction
    else if (this.requestDirection !== direction) this.parser.count('role')
  }

  /** Records of a direction were lost: any stream may have ended or been reset in them. */
  lost(): void {
    this.parser.count('lost')
    this.dropEarly()
    for (const stream of [...this.streams.values()]) this.end(stream, 'lost')
  }

  /** Frames went by uncaptured: streams open now may end unseen. */
  unseenFrames(): void {
    for (const stream of this.streams.values()) stream.suspect = true
  }

  /** A header block was decoded in `direction`; `fields` holds it until the next block. */
  headerBlock(direction: number, streamId: number, endStream: boolean, fields: BlockFields, startNs: number, chunk: SockChunk): void {
    this.blocksDecoded++
    if (this.requestDirection === -1) {
      if (fields.method !== undefined) this.requestDirection = direction
      else if (fields.status !== undefined) this.requestDirection = 1 - direction
      else return
    }
    if (direction === this.requestDirection) this.requestHeaders(streamId, endStream, fields, startNs, chunk)
    else if (this.streams.has(streamId) || !this.mayComeEarly(streamId)) this.responseHeaders(streamId, endStream, fields, startNs, chunk.endNs)
    else this.keepEarly(streamId, { fields: fields.copy(), endStream, startNs, endNs: chunk.endNs })
  }

  /** Whether the request of a stream not followed may still come: a client stream above every one seen. */
  private mayComeEarly(streamId: number): boolean {
    return streamId % 2 === 1 && streamId > this.highestStream
  }

  private keepEarly(streamId: number, event: EarlyEvent): void {
    const events = this.early.get(streamId)
    if (events !== undefined) return void events.push(event)
    if (this.early.size >= MAX_EARLY_STREAMS) {
      this.parser.count('unmatched-response')
      this.early.delete(this.early.keys().next().value!)
    }
    this.early.set(streamId, [event])
  }

  /** The stream's request came: what its server sent before applies now; lower streams' requests will not come. */
  private replayEarly(streamId: number): void {
    for (const id of this.early.keys()) {
      if (id >= streamId) continue
      this.early.delete(id)
      this.parser.count('unmatched-response')
    }
    const events = this.early.get(streamId)
    if (events === undefined) return
    this.early.delete(streamId)
    for (const event of events) {
      if (!this.streams.has(streamId)) return
      if (event.fields !== undefined) this.responseHeaders(streamId, event.endStream, event.fields, event.startNs, event.endNs)
      else if (event.code !== undefined) this.reset(1 - this.requestDirection, streamId, event.code, event.endNs)
      else this.endResponse(this.streams.get(streamId)!, event.endNs)
    }
  }

  /** Responses whose requests never came. */
  private dropEarly(): void {
    for (let n = this.early.size; n > 0; n--) this.parser.count('unmatched-response')
    this.early.clear()
  }

  private requestHeaders(streamId: number, endStream: boolean, fields: BlockFields, startNs: number, chunk: SockChunk): void {
    const open = this.streams.get(streamId)
    if (open !== undefined) {
      // trailers of the request
      open.exchange.request.unresolved ||= fields.unresolved
      if (endStream) open.exchange.request.endNs = chunk.endNs
      return
    }
    // a lower id is a stream already ended (or not followed): these are its trailers
    if (streamId <= this.highestStream || streamId % 2 === 0) return
    // without a pseudo-header (and nothing unresolved that may have been one), trailers of a stream never seen
    if (!fields.hasPseudo() && !fields.unresolved) return
    if (fields.status !== undefined) return this.parser.count('role')
    this.highestStream = streamId
    if (this.streams.size >= this.parser.maxStreams) {
      this.parser.count('stream-overflow')
      this.end(this.streams.values().next().value!, 'lost')
    }
    const request: Http2Request = {
      streamId,
      method: fields.method,
      path: fields.path,
      scheme: fields.scheme,
      authority: fields.authority,
      headers: fields.headers,
      unresolved: fields.unresolved,
      startNs,
      endNs: chunk.endNs,
      tid: chunk.tid,
      context: chunk.context,
    }
    const exchange: Http2Exchange = { request, requestBytes: 0, responseBytes: 0, requestMessages: 0, responseMessages: 0 }
    const grpc = fields.contentType !== undefined && fields.contentType.startsWith('application/grpc')
    this.streams.set(streamId, new Stream(exchange, grpc))
    this.parser.onRequest?.(request, this.context, this.side())
    if (this.early.size > 0) this.replayEarly(streamId)
  }

  private responseHeaders(streamId: number, endStream: boolean, fields: BlockFields, startNs: number, endNs: number): void {
    const stream = this.streams.get(streamId)
    if (stream === undefined) {
      // a pushed stream's response (even id), or one whose request was not seen
      if (streamId % 2 === 1) this.parser.count('unmatched-response')
      return
    }
    const exchange = stream.exchange
    let response = exchange.response
    if (response === undefined) {
      const status = fields.status === undefined ? undefined : parseStatus(fields.status)
      // 1xx: informational, a final response follows
      if (status !== undefined && status < 200 && !endStream) return
      response = { status, headers: fields.headers, unresolved: fields.unresolved, startNs, endNs }
      exchange.response = response
    } else {
      // trailers
      response.unresolved ||= fields.unresolved
      for (const name in fields.headers) response.headers[name] ??= fields.headers[name]!
    }
    if (fields.grpcStatus !== undefined) {
      const code = parseStatus(fields.grpcStatus)
      if (code !== undefined) response.grpcStatus = code
    }
    if (fields.grpcMessage !== undefined) response.grpcMessage = percentDecoded(fields.grpcMessage)
    if (endStream) {
      response.endNs = endNs
      this.end(stream, undefined)
    }
  }

  /** END_STREAM on a DATA frame. */
  dataEnd(direction: number, streamId: number, endNs: number): void {
    if (this.requestDirection === -1) return
    const stream = this.streams.get(streamId)
    if (stream === undefined) {
      if (direction !== this.requestDirection && this.early.has(streamId)) this.keepEarly(streamId, { endStream: true, startNs: endNs, endNs })
      return
    }
    if (direction === this.requestDirection) stream.exchange.request.endNs = endNs
    else this.endResponse(stream, endNs)
  }

  private endResponse(stream: Stream, endNs: number): void {
    const response = stream.exchange.response
    if (response !== undefined) response.endNs = endNs
    this.end(stream, undefined)
  }

  /** RST_STREAM, from either side. */
  reset(direction: number, streamId: number, code: number, endNs: number): void {
    const stream = this.streams.get(streamId)
    if (stream === undefined) {
      // the server refused a stream before its request's record came
      const fromServer = this.requestDirection !== -1 && direction !== this.requestDirection
      if (fromServer && this.mayComeEarly(streamId)) this.keepEarly(streamId, { endStream: true, code, startNs: endNs, endNs })
      return
    }
    stream.exchange.resetCode = code
    stream.exchange.cutNs = endNs
    const response = stream.exchange.response
    if (response !== undefined) response.endNs = endNs
    this.end(stream, undefined)
  }

  /** GOAWAY from the server: the client's streams above `lastStreamId` were not processed. */
  goaway(direction: number, lastStreamId: number): void {
    if (this.requestDirection === -1 || direction === this.requestDirection) return
    for (const stream of [...this.streams.values()]) {
      if (stream.exchange.request.streamId > lastStreamId) this.end(stream, 'goaway')
    }
  }

  /** The stream's DATA frames, for the byte and message counts. */
  stream(streamId: number): Stream | undefined {
    return this.streams.get(streamId)
  }

  private end(stream: Stream, incomplete: 'closed' | 'lost' | 'goaway' | undefined): void {
    const exchange = stream.exchange
    this.streams.delete(exchange.request.streamId)
    if (incomplete !== undefined) exchange.incomplete = incomplete
    this.parser.onExchange(exchange, this.context, this.side())
  }
}

/** One direction of a connection: its frames and its HPACK decoder. */
class Direction<C> implements HpackSink {
  readonly connection: Connection<C>
  readonly parser: Http2Parser<C>
  readonly direction: number
  readonly decoder: HpackDecoder
  state = FRAME_HEAD
  /** Position of the next byte; -1 before the first record. */
  expected = -1
  /** The largest frame the receiving end allows (its SETTINGS_MAX_FRAME_SIZE), for telling a frame header. */
  maxFrameSize = DEFAULT_MAX_FRAME_SIZE
  private prefaceMatched = 0

  // the frame being read
  private readonly head = new Uint8Array(FRAME_HEADER_BYTES)
  private headRead = 0
  private frameLength = 0
  private frameType = 0
  private frameFlags = 0
  private frameStream = 0
  private payloadRead = 0
  private payloadMode = SKIP
  /** DATA and header frames: padding bytes at the end (-1 until the pad length is read) */
  private padLength = 0
  /** Header frames: bytes before the fragment (pad length, priority, promised stream) */
  private fragmentStart = 0
  private readonly control = new Uint8Array(CONTROL_BYTES)
  private controlRead = 0

  // the header block being assembled
  private inBlock = false
  private blockStream = 0
  private blockEndStream = false
  private blockPush = false
  private blockStartNs = 0
  private block = new Uint8Array(0)
  private blockLength = 0
  /** Bytes of the block were not captured (or did not fit): only what came before is decoded. */
  private blockCut = false
  /** The block sits whole in the current record: decoded from there, uncopied. */
  private directData: Uint8Array | null = null
  private directStart = 0
  private directEnd = 0

  private readonly fields = new BlockFields()

  constructor(connection: Connection<C>, direction: number, midStream: boolean) {
    this.connection = connection
    this.parser = connection.parser
    this.direction = direction
    this.decoder = new HpackDecoder({ names: connection.parser.names, errors: connection.parser.errors })
    if (midStream) {
      this.decoder.unsync()
      this.state = SYNC
    }
  }

  push(chunk: SockChunk): void {
    const data = chunk.data
    const captured = Math.min(data.length, chunk.bytes)
    if (this.expected < 0) {
      this.begin(chunk, captured)
    } else if (chunk.position !== this.expected || chunk.loss) {
      if (chunk.position < this.expected && !chunk.loss) {
        this.parser.count('position')
        // a record already read: nothing new in it
        if (chunk.position + chunk.bytes <= this.expected) return
      }
      this.loseSync()
      this.connection.lost()
    }
    this.expected = chunk.position + chunk.bytes
    if (this.state === SYNC && !this.resume(data, captured)) {
      this.parser.count('resync-skipped')
      return
    }
    this.feed(data, captured, chunk)
    if (chunk.bytes > captured) this.unseen(chunk.bytes - captured, chunk)
  }

  /** The first record: at 0 the client preface or frames; after 0 (a server's SETTINGS went unseen), frames. */
  private begin(chunk: SockChunk, captured: number): void {
    if (chunk.loss) {
      this.loseSync()
      return
    }
    if (chunk.position === 0 && captured > 0 && chunk.data[0] === PREFACE[0]) {
      this.state = PREFACE_STATE
      this.prefaceMatched = 0
    } else if (chunk.position !== 0 && this.state !== SYNC) {
      // frames, but the first record must show it: a record cut anywhere would misread
      this.state = SYNC
    }
  }

  /** In SYNC: whether this record starts with frame headers; if so, frames are read from it. */
  private resume(data: Uint8Array, captured: number): boolean {
    if (!plausibleFrames(data, captured, this.maxFrameSize)) {
      this.decoder.unsync()
      return false
    }
    this.state = FRAME_HEAD
    this.headRead = 0
    return true
  }

  /** The place in the stream is lost: header blocks may have been missed. */
  private loseSync(): void {
    this.state = SYNC
    this.inBlock = false
    this.decoder.unsync()
  }

  private feed(data: Uint8Array, n: number, chunk: SockChunk): void {
    let i = 0
    while (i < n) {
      if (this.state === FRAME_PAYLOAD) {
        const take = Math.min(this.frameLength - this.payloadRead, n - i)
        this.consume(data, i, take)
        this.payloadRead += take
        i += take
        if (this.payloadRead === this.frameLength) this.frameEnd(chunk)
      } else if (this.state === FRAME_HEAD) {
        const take = Math.min(FRAME_HEADER_BYTES - this.headRead, n - i)
        for (let k = 0; k < take; k++) this.head[this.headRead + k] = data[i + k]!
        this.headRead += take
        i += take
        if (this.headRead === FRAME_HEADER_BYTES) this.frameStart(data, i, n, chunk)
      } else if (this.state === PREFACE_STATE) {
        i = this.matchPreface(data, i, n)
      } else {
        return
      }
    }
  }

  private matchPreface(data: Uint8Array, i: number, n: number): number {
    while (i < n && this.prefaceMatched < PREFACE.length) {
      if (data[i] !== PREFACE[this.prefaceMatched]) {
        this.parser.count('preface')
        this.loseSync()
        return n
      }
      i++
      this.prefaceMatched++
    }
    if (this.prefaceMatched === PREFACE.length) {
      this.state = FRAME_HEAD
      this.headRead = 0
      this.connection.preface(this.direction)
    }
    return i
  }

  /** A frame header was read; `data[i, n)` is what the record holds after it. */
  private frameStart(data: Uint8Array, i: number, n: number, chunk: SockChunk): void {
    const head = this.head
    this.frameLength = (head[0]! << 16) | (head[1]! << 8) | head[2]!
    this.frameType = head[3]!
    this.frameFlags = head[4]!
    this.frameStream = ((head[5]! & 0x7f) << 24) | (head[6]! << 16) | (head[7]! << 8) | head[8]!
    this.payloadRead = 0
    this.headRead = 0
    this.state = FRAME_PAYLOAD
    const type = this.frameType
    if (this.inBlock && type !== CONTINUATION) {
      // a header block must end before any other frame: its decoder state is lost
      this.parser.count('continuation')
      this.inBlock = false
      this.decoder.unsync()
    }
    if (type === DATA) this.dataStart()
    else if (type === HEADERS || type === PUSH_PROMISE) this.blockStart(data, i, n, chunk)
    else if (type === CONTINUATION) this.continuationStart()
    else if (type === RST_STREAM || type === SETTINGS || type === GOAWAY) this.controlStart()
    else this.payloadMode = SKIP
    if (this.frameLength === 0) this.frameEnd(chunk)
  }

  private dataStart(): void {
    this.payloadMode = COUNT_DATA
    this.padLength = (this.frameFlags & PADDED) !== 0 ? -1 : 0
    // unpadded, every byte is data: counted now, captured or not
    if (this.padLength === 0) this.countData(this.frameLength)
  }

  private blockStart(data: Uint8Array, i: number, n: number, chunk: SockChunk): void {
    const flags = this.frameFlags
    this.payloadMode = BLOCK
    this.inBlock = true
    this.blockStream = this.frameStream
    this.blockEndStream = (flags & END_STREAM) !== 0 && this.frameType === HEADERS
    this.blockPush = this.frameType === PUSH_PROMISE
    this.blockStartNs = chunk.startNs
    this.blockLength = 0
    this.blockCut = false
    this.padLength = (flags & PADDED) !== 0 ? -1 : 0
    this.fragmentStart = ((flags & PADDED) !== 0 ? 1 : 0) + (this.frameType === PUSH_PROMISE ? 4 : (flags & PRIORITY_FLAG) !== 0 ? 5 : 0)
    this.directData = null
    // the usual case: the whole block in one frame, within this record
    if ((flags & END_HEADERS) !== 0 && this.frameLength <= n - i) {
      const start = i + this.fragmentStart
      const pad = (flags & PADDED) !== 0 ? data[i]! : 0
      const end = i + this.frameLength - pad
      if (start > end) return
      this.directData = data
      this.directStart = start
      this.directEnd = end
    }
  }

  private continuationStart(): void {
    this.payloadMode = BLOCK
    this.padLength = 0
    this.fragmentStart = 0
    this.directData = null
    if (!this.inBlock || this.frameStream !== this.blockStream) {
      // its HEADERS was not seen (or belongs to another stream): a fragment of an unknown block
      this.parser.count('continuation')
      this.inBlock = false
      this.payloadMode = SKIP
      this.decoder.unsync()
    }
  }

  private controlStart(): void {
    this.payloadMode = CONTROL
    this.controlRead = 0
  }

  /** Payload bytes `data[i, i + take)`, the frame's bytes from `payloadRead`. */
  private consume(data: Uint8Array, i: number, take: number): void {
    if (take === 0) return
    const mode = this.payloadMode
    if (mode === COUNT_DATA) return this.consumeData(data, i, take)
    if (mode === BLOCK) return this.consumeFragment(data, i, take)
    if (mode === CONTROL) {
      const keep = Math.min(take, CONTROL_BYTES - this.controlRead)
      for (let k = 0; k < keep; k++) this.control[this.controlRead + k] = data[i + k]!
      this.controlRead += keep
    }
  }

  private consumeData(data: Uint8Array, i: number, take: number): void {
    let from = this.payloadRead
    if (this.padLength < 0 && from === 0) {
      this.readPadLength(data[i]!, this.frameLength - 1)
      from = 1
      i++
      take--
    }
    const stream = this.connection.stream(this.frameStream)
    if (stream?.framing == null || this.padLength < 0) return
    const a = Math.max(from, this.dataOffset())
    const b = Math.min(from + take, this.frameLength - this.padLength)
    if (b <= a) return
    const requests = this.direction === this.connection.requestDirection
    const messages = stream.framing[requests ? 0 : 1].read(data, i + (a - from), b - a)
    if (requests) stream.exchange.requestMessages += messages
    else stream.exchange.responseMessages += messages
  }

  /** Where a DATA frame's data starts in its payload. */
  private dataOffset(): number {
    return (this.frameFlags & PADDED) !== 0 ? 1 : 0
  }

  /** The pad length byte was read; the padding and what it pads take `room` bytes. */
  private readPadLength(pad: number, room: number): void {
    if (pad > room) {
      this.parser.count('padding')
      pad = 0
    }
    this.padLength = pad
    if (this.payloadMode === COUNT_DATA) this.countData(this.frameLength - 1 - pad)
  }

  private countData(bytes: number): void {
    const stream = this.connection.stream(this.frameStream)
    if (stream === undefined) return
    if (this.direction === this.connection.requestDirection) stream.exchange.requestBytes += bytes
    else stream.exchange.responseBytes += bytes
  }

  /** DATA payload bytes `[from, from + n)` not captured. */
  private skipMessages(from: number, n: number): void {
    const stream = this.connection.stream(this.frameStream)
    if (stream?.framing == null) return
    const skipped = Math.min(from + n, this.frameLength - this.padLength) - Math.max(from, this.dataOffset())
    if (skipped > 0) stream.framing[this.direction === this.connection.requestDirection ? 0 : 1].skip(skipped)
  }

  private consumeFragment(data: Uint8Array, i: number, take: number): void {
    if (!this.inBlock || this.directData !== null) return
    let from = this.payloadRead
    if (this.padLength < 0 && from === 0) {
      this.readPadLength(data[i]!, this.frameLength - this.fragmentStart)
      from = 1
      i++
      take--
    }
    const fragmentEnd = this.frameLength - this.padLength
    const a = Math.max(from, this.fragmentStart)
    const b = Math.min(from + take, fragmentEnd)
    if (b > a) this.appendBlock(data, i + (a - from), b - a)
  }

  private appendBlock(data: Uint8Array, start: number, length: number): void {
    if (this.blockCut) return
    if (this.blockLength + length > this.parser.maxHeaderBlock) {
      length = this.parser.maxHeaderBlock - this.blockLength
      this.blockCut = true
    }
    if (this.block.length < this.blockLength + length) {
      const grown = new Uint8Array(Math.min(this.parser.maxHeaderBlock, Math.max(256, this.block.length * 2, this.blockLength + length)))
      grown.set(this.block.subarray(0, this.blockLength))
      this.block = grown
    }
    this.block.set(data.subarray(start, start + length), this.blockLength)
    this.blockLength += length
  }

  private frameEnd(chunk: SockChunk): void {
    this.state = FRAME_HEAD
    this.headRead = 0
    const type = this.frameType
    if (type === DATA) {
      if ((this.frameFlags & END_STREAM) !== 0) this.connection.dataEnd(this.direction, this.frameStream, chunk.endNs)
    } else if (type === HEADERS || type === PUSH_PROMISE || type === CONTINUATION) {
      if (this.inBlock && (this.frameFlags & END_HEADERS) !== 0) this.blockEnd(chunk)
    } else if (type === RST_STREAM) {
      if (this.controlRead >= 4) this.connection.reset(this.direction, this.frameStream, readUint32(this.control, 0), chunk.endNs)
    } else if (type === SETTINGS) {
      if ((this.frameFlags & ACK) === 0) this.settings()
    } else if (type === GOAWAY) {
      if (this.controlRead >= 8) this.connection.goaway(this.direction, readUint32(this.control, 0) & 0x7fffffff)
    }
  }

  /** SETTINGS say what their sender accepts: they bind what the other direction carries. */
  private settings(): void {
    const other = this.connection.directions[1 - this.direction]
    for (let at = 0; at + 6 <= this.controlRead; at += 6) {
      const id = (this.control[at]! << 8) | this.control[at + 1]!
      const value = readUint32(this.control, at + 2)
      if (id === SETTINGS_HEADER_TABLE_SIZE) other.decoder.announceLimit(value)
      else if (id === SETTINGS_MAX_FRAME_SIZE && value > other.maxFrameSize && value <= 0xffffff) other.maxFrameSize = value
    }
  }

  private blockEnd(chunk: SockChunk): void {
    this.inBlock = false
    const fields = this.fields
    fields.clear()
    let status: number
    if (this.directData !== null) {
      status = this.decoder.decode(this.directData, this.directStart, this.directEnd, this)
      this.directData = null
    } else {
      status = this.decoder.decode(this.block, 0, this.blockLength, this)
    }
    if (this.blockCut) {
      this.parser.count('header-block-cut')
      // the fields after the cut are unknown, and may have changed the table
      fields.unresolved = true
      this.decoder.unsync()
    } else if (status === HPACK_CUT || status === HPACK_ERROR) {
      this.parser.count('header-block')
      fields.unresolved = true
    }
    if (this.blockPush) return
    this.connection.headerBlock(this.direction, this.blockStream, this.blockEndStream, fields, this.blockStartNs, chunk)
  }

  /** HpackSink: one field of the block being decoded. */
  field(name: number, _text: string | undefined, value: string | undefined): void {
    const fields = this.fields
    if (name === HPACK_UNRESOLVED) {
      fields.unresolved = true
      this.parser.unresolved++
      return
    }
    if (name < 0 || value === undefined) return
    switch (name) {
      case NAME_METHOD: fields.method ??= value; break
      case NAME_PATH: fields.path ??= value; break
      case NAME_SCHEME: fields.scheme ??= value; break
      case NAME_AUTHORITY: fields.authority ??= value; break
      case NAME_STATUS: fields.status ??= value; break
      case NAME_CONTENT_TYPE: fields.contentType ??= value; break
      case NAME_GRPC_STATUS: fields.grpcStatus ??= value; break
      case NAME_GRPC_MESSAGE: fields.grpcMessage ??= value; break
    }
    const key = this.parser.headerKeys[name]
    if (key !== undefined) fields.headers[key] ??= value
  }

  /** `n` bytes after the captured part of the record. */
  private unseen(n: number, chunk: SockChunk): void {
    if (this.state === SYNC) return
    if (this.state === FRAME_PAYLOAD) {
      const left = this.frameLength - this.payloadRead
      this.skipPayload(this.payloadRead, Math.min(n, left))
      this.payloadRead += Math.min(n, left)
      if (n <= left) {
        if (this.payloadRead === this.frameLength) this.frameEnd(chunk)
        return
      }
      // the frame ends in the uncaptured bytes (its flags are known), and the next one starts there
      this.frameEnd(chunk)
    }
    // a header block continued in the uncaptured bytes: its first fields are known
    if (this.inBlock) {
      this.blockCut = true
      this.blockEnd(chunk)
    }
    this.parser.count('unseen-frames')
    this.loseSync()
    this.connection.unseenFrames()
  }

  /** Payload bytes `[from, from + n)` of the current frame were not captured. */
  private skipPayload(from: number, n: number): void {
    if (n === 0) return
    if (this.payloadMode === BLOCK) {
      if (this.inBlock) this.blockCut = true
      if (this.padLength < 0) this.padLength = 0
    } else if (this.payloadMode === COUNT_DATA) {
      if (this.padLength < 0) {
        // the pad length itself was not captured: count the frame as data
        this.padLength = 0
        this.countData(this.frameLength - 1)
      }
      this.skipMessages(from, n)
    } else if (this.payloadMode === CONTROL) {
      this.controlRead = 0
    }
  }
}

/** Whether the captured record `data[0, n)` starts with frame headers (each frame whole within it must look right too). */
function plausibleFrames(data: Uint8Array, n: number, maxFrameSize: number): boolean {
  if (n < FRAME_HEADER_BYTES) return false
  let at = 0
  while (at + FRAME_HEADER_BYTES <= n) {
    const length = (data[at]! << 16) | (data[at + 1]! << 8) | data[at + 2]!
    if (!plausibleFrame(length, data[at + 3]!, data[at + 4]!, data[at + 5]!, readUint32(data, at + 5) & 0x7fffffff, maxFrameSize)) return false
    at += FRAME_HEADER_BYTES + length
  }
  return true
}

function plausibleFrame(length: number, type: number, flags: number, reservedByte: number, stream: number, maxFrameSize: number): boolean {
  if ((reservedByte & 0x80) !== 0 || length > maxFrameSize) return false
  switch (type) {
    case DATA: return stream !== 0 && (flags & ~(END_STREAM | PADDED)) === 0
    case HEADERS: return stream !== 0 && (flags & ~(END_STREAM | END_HEADERS | PADDED | PRIORITY_FLAG)) === 0
    case PRIORITY: return stream !== 0 && flags === 0 && length === 5
    case RST_STREAM: return stream !== 0 && flags === 0 && length === 4
    case SETTINGS: return stream === 0 && (flags & ~ACK) === 0 && length % 6 === 0 && (flags === 0 || length === 0)
    case PUSH_PROMISE: return stream !== 0 && (flags & ~(END_HEADERS | PADDED)) === 0 && length >= 4
    case PING: return stream === 0 && (flags & ~ACK) === 0 && length === 8
    case GOAWAY: return stream === 0 && flags === 0 && length >= 8
    case WINDOW_UPDATE: return flags === 0 && length === 4
    case CONTINUATION: return stream !== 0 && (flags & ~END_HEADERS) === 0
    default: return false
  }
}

function readUint32(bytes: Uint8Array, at: number): number {
  return ((bytes[at]! << 24) >>> 0) + (bytes[at + 1]! << 16) + (bytes[at + 2]! << 8) + bytes[at + 3]!
}

/** A status code: decimal digits only, at most 3 for :status... or 9 for grpc-status. */
function parseStatus(text: string): number | undefined {
  if (text.length === 0 || text.length > 9) return undefined
  let value = 0
  for (let i = 0; i < text.length; i++) {
    const digit = text.charCodeAt(i) - 48
    if (digit < 0 || digit > 9) return undefined
    value = value * 10 + digit
  }
  return value
}

/** grpc-message is percent-encoded UTF-8; left as sent when it is not valid. */
function percentDecoded(text: string): string {
  if (text.indexOf('%') < 0) return text
  try {
    return decodeURIComponent(text)
  } catch {
    return text
  }
}
