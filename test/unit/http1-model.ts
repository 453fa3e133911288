/**
 * A model of valid HTTP/1 conversations for the parser's property tests: fast-check arbitraries
 * for exchanges, their serialisation to wire bytes, the cutting of each direction's stream into
 * records, and the exchanges the parser must report, computed from the model and the record
 * boundaries alone (never from the parser).
 */
import fc from 'fast-check'
import { EGRESS, INGRESS, type Http1Chunk, type Http1Exchange, type Http1Role } from '../../runtime/protocols/http1.ts'
import { wire } from './http1-wire.ts'

export const wantedHeaders = ['host', 'user-agent', 'traceparent', 'content-type']

export type Body =
  | { kind: 'none' }
  | { kind: 'length'; data: string }
  | { kind: 'chunked'; chunks: string[]; extension: boolean; trailers: [string, string][] }
  /** Response only, and only the last one: the body runs until the connection closes. */
  | { kind: 'close'; data: string }

export interface ExchangeModel {
  method: string
  target: string
  version: '1.0' | '1.1'
  requestHeaders: [string, string][]
  requestBody: Body
  /** 1xx responses before the final one. */
  interim: number[]
  status: number
  reason: string | undefined
  responseVersion: '1.0' | '1.1'
  responseHeaders: [string, string][]
  responseBody: Body
}

export interface Conversation {
  exchanges: ExchangeModel[]
  role: Http1Role
  /** Which direction carries requests when the role is unknown. */
  requestsEgress: boolean
}

const headerNames = ['Host', 'User-Agent', 'traceparent', 'Content-Type', 'Accept', 'X-Request-Id', 'Cookie']
const headerValue = fc.stringMatching(/^[!-~]([ -~]{0,20}[!-~])?$/)
const header = fc.tuple(fc.mixedCase(fc.constantFrom(...headerNames)), headerValue)
const lowerWord = fc.stringMatching(/^[a-z]{1,20}$/)

const body = fc.oneof(
  fc.constant<Body>({ kind: 'none' }),
  fc.record({ kind: fc.constant('length' as const), data: fc.stringMatching(/^[a-z]{0,40}$/) }),
  fc.record({
    kind: fc.constant('chunked' as const),
    chunks: fc.array(lowerWord, { maxLength: 4 }),
    extension: fc.boolean(),
    trailers: fc.array(fc.tuple(fc.constantFrom('Expires', 'X-Checksum'), headerValue), { maxLength: 2 }),
  }),
)

const exchange: fc.Arbitrary<ExchangeModel> = fc.record({
  method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'PURGE'),
  target: fc.stringMatching(/^\/[!-~]{0,30}$/),
  version: fc.constantFrom('1.0' as const, '1.1' as const),
  requestHeaders: fc.array(header, { maxLength: 6 }),
  requestBody: body,
  interim: fc.subarray([100, 102, 103]),
  status: fc.constantFrom(200, 201, 204, 301, 304, 400, 404, 500, 503),
  reason: fc.option(fc.stringMatching(/^[A-Za-z ]{0,12}$/), { nil: undefined }),
  responseVersion: fc.constantFrom('1.0' as const, '1.1' as const),
  responseHeaders: fc.array(header, { maxLength: 6 }),
  responseBody: body,
})

/** A keep-alive conversation; its last response may run until close. */
export const conversation: fc.Arbitrary<Conversation> = fc
  .record({
    exchanges: fc.array(exchange, { minLength: 1, maxLength: 6 }),
    role: fc.constantFrom<Http1Role>('client', 'server', 'unknown'),
    requestsEgress: fc.boolean(),
    lastUntilClose: fc.boolean(),
    closeData: fc.stringMatching(/^[a-z]{0,30}$/),
  })
  .map(({ exchanges, role, requestsEgress, lastUntilClose, closeData }) => {
    const last = exchanges[exchanges.length - 1]!
    if (lastUntilClose && !bodyless(last)) last.responseBody = { kind: 'close', data: closeData }
    return { exchanges, role, requestsEgress: role === 'unknown' ? requestsEgress : role === 'client' }
  })

function bodyless(exchange: ExchangeModel): boolean {
  return exchange.method === 'HEAD' || exchange.status === 204 || exchange.status === 304
}

/** One message on the wire: where its head ends, and the whole of it. */
interface WireMessage {
  text: string
  headLength: number
}

function serialiseBody(body: Body): { framing: string; wire: string } {
  switch (body.kind) {
    case 'none':
      return { framing: '', wire: '' }
    case 'length':
      return { framing: `Content-Length: ${body.data.length}\r\n`, wire: body.data }
    case 'close':
      return { framing: '', wire: body.data }
    case 'chunked': {
      const extension = body.extension ? ';name="v"' : ''
      const chunks = body.chunks.map((chunk) => `${chunk.length.toString(16)}${extension}\r\n${chunk}\r\n`).join('')
      const trailers = body.trailers.map(([name, value]) => `${name}: ${value}\r\n`).join('')
      return { framing: 'Transfer-Encoding: chunked\r\n', wire: `${chunks}0\r\n${trailers}\r\n` }
    }
  }
}

function message(startLine: string, headers: [string, string][], framing: string, bodyWire: string): WireMessage {
  const head = `${startLine}\r\n${headers.map(([name, value]) => `${name}: ${value}\r\n`).join('')}${framing}\r\n`
  return { text: head + bodyWire, headLength: head.length }
}

export function serialiseRequest(exchange: ExchangeModel): WireMessage {
  const { framing, wire: bodyWire } = serialiseBody(exchange.requestBody)
  return message(`${exchange.method} ${exchange.target} HTTP/${exchange.version}`, exchange.requestHeaders, framing, bodyWire)
}

/** The interim responses, then the final one. */
export function serialiseResponses(exchange: ExchangeModel): WireMessage[] {
  const interim = exchange.interim.map((status) => message(`HTTP/1.1 ${status} Interim`, [], '', ''))
  const statusLine = `HTTP/${exchange.responseVersion} ${exchange.status}${exchange.reason === undefined ? '' : ` ${exchange.reason}`}`
  if (!bodyless(exchange)) {
    const { framing, wire: bodyWire } = serialiseBody(exchange.responseBody)
    // a response without any framing runs until close (RFC 9112 6.3), so an empty one says so
    const length = exchange.responseBody.kind === 'none' ? 'Content-Length: 0\r\n' : framing
    return [...interim, message(statusLine, exchange.responseHeaders, length, bodyWire)]
  }
  // HEAD's response may announce the length a GET would have had; it still has no body
  const announced = exchange.method === 'HEAD' && exchange.responseBody.kind === 'length' ? `Content-Length: ${exchange.responseBody.data.length + 7}\r\n` : ''
  return [...interim, message(statusLine, exchange.responseHeaders, announced, '')]
}

/** Where one message lies in its direction's stream. */
interface Placed {
  start: number
  headEnd: number
  end: number
}

export interface Streams {
  requests: string
  responses: string
  /** Per exchange: its request, its final response, and where its first response message starts. */
  placed: { request: Placed; response: Placed; firstResponseStart: number }[]
  /** Every message of each direction, in order (interim responses included). */
  requestMessages: Placed[]
  responseMessages: Placed[]
}

export function serialise(conv: Conversation): Streams {
  let requests = ''
  let responses = ''
  const placed: Streams['placed'] = []
  const requestMessages: Placed[] = []
  const responseMessages: Placed[] = []
  for (const exchange of conv.exchanges) {
    const req = serialiseRequest(exchange)
    const request = { start: requests.length, headEnd: requests.length + req.headLength, end: requests.length + req.text.length }
    requests += req.text
    requestMessages.push(request)
    const firstResponseStart = responses.length
    let response: Placed | undefined
    for (const res of serialiseResponses(exchange)) {
      response = { start: responses.length, headEnd: responses.length + res.headLength, end: responses.length + res.text.length }
      responses += res.text
      responseMessages.push(response)
    }
    placed.push({ request, response: response!, firstResponseStart })
  }
  return { requests, responses, placed, requestMessages, responseMessages }
}

/** A record before it gets its place in time: a slice of one direction's stream. */
export interface Piece {
  start: number
  end: number
  /** Bytes of it captured (the rest is only counted). */
  captured: number
}

/** Cuts a stream into pieces whose sizes cycle through `sizes`. */
export function cutEvenly(length: number, sizes: number[]): Piece[] {
  const pieces: Piece[] = []
  for (let at = 0, i = 0; at < length; i++) {
    const end = Math.min(length, at + sizes[i % sizes.length]!)
    pieces.push({ start: at, end, captured: end - at })
    at = end
  }
  return pieces
}

/**
 * Cuts a stream so each message starts a record and its head is in that record, capturing only
 * `capture` bytes of each record (at least the longest head): bodies are partly uncaptured.
 */
export function cutByMessage(messages: Placed[], sizes: number[], capture: number): Piece[] {
  const pieces: Piece[] = []
  let i = 0
  for (const placed of messages) {
    let at = placed.start
    let end = Math.min(placed.end, placed.headEnd + sizes[i++ % sizes.length]!)
    while (at < placed.end) {
      pieces.push({ start: at, end, captured: Math.min(end - at, capture) })
      at = end
      end = Math.min(placed.end, at + sizes[i++ % sizes.length]!)
    }
  }
  return pieces
}

export interface TimedRecord extends Piece {
  direction: number
  /** Order of arrival; times and tid come from it. */
  index: number
}

/**
 * Interleaves the two directions as a real peer would order them: a response record goes only
 * after the request records that its responses need (`need(exchange)` bytes of the request
 * stream), otherwise as `choices` say.
 */
export function interleave(streams: Streams, requestPieces: Piece[], responsePieces: Piece[], requestDirection: number, choices: boolean[], need: (placed: Streams['placed'][number]) => number): TimedRecord[] {
  const needFor = responsePieces.map((piece) => {
    let needed = 0
    for (const placed of streams.placed) if (placed.firstResponseStart < piece.end) needed = Math.max(needed, need(placed))
    return needed
  })
  const records: TimedRecord[] = []
  let q = 0
  let r = 0
  let sentRequestBytes = 0
  while (q < requestPieces.length || r < responsePieces.length) {
    const responseReady = r < responsePieces.length && needFor[r]! <= sentRequestBytes
    const takeResponse = responseReady && (q >= requestPieces.length || choices[records.length % choices.length]!)
    if (takeResponse) {
      records.push({ ...responsePieces[r++]!, direction: 1 - requestDirection, index: records.length })
    } else {
      const piece = requestPieces[q++]!
      sentRequestBytes = piece.end
      records.push({ ...piece, direction: requestDirection, index: records.length })
    }
  }
  return records
}

export const startNsOf = (index: number) => 1000 + 10 * index
export const endNsOf = (index: number) => 1005 + 10 * index

/** The chunk the parser gets for a record. */
export function chunkOf(streams: Streams, record: TimedRecord, requestDirection: number, position: number): Http1Chunk {
  const text = record.direction === requestDirection ? streams.requests : streams.responses
  return {
    direction: record.direction,
    position,
    bytes: record.end - record.start,
    data: wire(text.slice(record.start, record.start + record.captured)),
    startNs: startNsOf(record.index),
    endNs: endNsOf(record.index),
    tid: record.index,
  }
}

function keptHeaders(headers: [string, string][]): Record<string, string> {
  const kept: Record<string, string> = {}
  for (const [name, value] of headers) {
    const lower = name.toLowerCase()
    if (!wantedHeaders.includes(lower)) continue
    kept[lower] = kept[lower] === undefined ? value : `${kept[lower]}, ${value}`
  }
  return kept
}

/** The exchanges the parser must report, from the model and where the records fall. */
export function expectedExchanges(conv: Conversation, streams: Streams, records: TimedRecord[], requestDirection: number): (Http1Exchange & { side: string })[] {
  const recordAt = (direction: number, offset: number) => records.find((record) => record.direction === direction && record.start <= offset && offset < record.end)!
  const timing = (direction: number, placed: Placed) => ({
    startNs: startNsOf(recordAt(direction, placed.start).index),
    endNs: endNsOf(recordAt(direction, placed.end - 1).index),
    tid: recordAt(direction, placed.headEnd - 1).index,
    context: 0,
  })
  const responseDirection = 1 - requestDirection
  return conv.exchanges.map((exchange, i) => {
    const { request, response } = streams.placed[i]!
    return {
      request: {
        method: exchange.method,
        target: exchange.target,
        version: exchange.version,
        headers: keptHeaders(exchange.requestHeaders),
        bodyBytes: request.end - request.headEnd,
        ...timing(requestDirection, request),
      },
      response: {
        status: exchange.status,
        version: exchange.responseVersion,
        headers: keptHeaders(exchange.responseHeaders),
        bodyBytes: response.end - response.headEnd,
        ...timing(responseDirection, response),
      },
      side: requestDirection === EGRESS ? 'client' : 'server',
    }
  })
}

export function requestDirectionOf(conv: Conversation): number {
  return conv.requestsEgress ? EGRESS : INGRESS
}
