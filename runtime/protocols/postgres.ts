/**
 * PostgreSQL v3 wire protocol, client side: turns the two byte streams of a connection, as the
 * kernel captured them, into database operations: one per simple-protocol Query (`Q`) and one per
 * extended-protocol Execute (`E`), each with its statement text, its command tags, its error
 * (SQLSTATE) and its times.
 *
 * It is pure TypeScript for plugin isolates (V8 builtins only). The input is the `sockdata`
 * records of one connection: each record says how many bytes the call moved (`bytes`) but carries
 * only the first `data.length` of them, and its `position` in its direction's stream. Every message
 * after the startup one is a type byte and a 4-byte length, so the parser skips what it does not
 * need by length, across records, without seeing it. When it cannot follow a direction (records
 * lost, or a record cut by the capture size beyond the message it was in, or garbage) it counts why
 * in `PostgresParser.errors` and looks for the next message boundary: a place where a chain of
 * well-formed messages of that direction starts. It never throws.
 *
 * Pairing: the server answers the frontend's messages in order, so each message that gets an
 * answer waits in a queue (`P` for ParseComplete, `B` BindComplete, `D` the description, `E`
 * CommandComplete, `C` CloseComplete, `S` and `Q` ReadyForQuery). After an ErrorResponse in the
 * extended protocol the server skips everything up to the next Sync: the error belongs to the first
 * Execute of that stretch (or to the Parse/Bind/Describe that failed when no Execute follows it),
 * and the Executes after it are never run, so they give no operation.
 *
 * Secrets: password messages (`p`: cleartext, MD5, SASL) are skipped by length and never decoded;
 * Bind parameter values are read only as far as the portal and statement names.
 *
 * ```ts
 * const parser = new PostgresParser<Conn>((operation, conn) => emitSpan(conn, operation))
 * const connection = parser.connection(conn, 'client')
 * connection.push({ direction: EGRESS, position, bytes, data, startNs, endNs, loss, tls, tid })
 * connection.close()
 * ```
 */
import { latin1, utf8 } from './bytes.ts'

/** The process sent these bytes. */
export const EGRESS = 0
/** The process received these bytes. */
export const INGRESS = 1

/** One send or receive on the connection, in the order the calls completed. */
export interface PostgresChunk {
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
  /** Records of this direction were dropped before this one. */
  loss?: boolean
  /** Plaintext from the OpenSSL uprobes (the stream restarts at position 0 when TLS begins). */
  tls?: boolean
  /** The calling thread. */
  tid?: number
  /** The record's thread context (the HTTP request its thread was serving; 0 for none). */
  context?: number
}

export interface PostgresError {
  /** SQLSTATE, the `C` field (e.g. `42601`); '' when the message had none. */
  code: string
  /** The `M` field: it may quote the statement's values, so it is not safe to export as is. */
  message: string
  /** `V` (or `S`): ERROR, FATAL, PANIC. */
  severity: string
}

export interface PostgresOperation {
  /** `query`: a simple-protocol Query; `execute`: an Execute; `prepare`: a Parse, Bind or Describe that failed with no Execute after it. */
  kind: 'query' | 'execute' | 'prepare'
  /** The statement text, up to `maxTextBytes`; undefined when its Parse was not seen. */
  text: string | undefined
  /** The text was longer than kept (or than captured). */
  textCut: boolean
  /** The prepared statement's name ('' for the unnamed one); only for `execute` and `prepare`. */
  statement?: string
  /** The first word of each CommandComplete tag (`SELECT`, `INSERT`, `CREATE`...), in order, at most 64. */
  commands: string[]
  /** CommandComplete and EmptyQueryResponse messages: the statements the server completed. */
  completed: number
  /** Rows the server sent (DataRow messages). */
  rows: number
  error?: PostgresError
  /** Entry of the call that sent the request's first message, exit of the call that carried its answer's end. */
  startNs: number
  endNs: number
  /** The thread that sent the request, and its context (the record's, 0 for none). */
  tid: number
  context: number
  /**
   * Set when the answer was not seen to its end: `closed`, the connection closed first; `lost`,
   * records of it were lost; `unseen`, it lay beyond the capture size of a record (the operation
   * ended, as the next request shows, but its tags and error are unknown).
   */
  incomplete?: 'closed' | 'lost' | 'unseen'
}

/** Why input was counted as malformed or could not be followed. */
export type PostgresErrorReason =
  | 'lost' // records of a direction were lost (loss flag or a gap in positions)
  | 'capture-cut' // a record was cut by the capture size past the end of the message it was in
  | 'message-type' // a type byte that the direction does not send
  | 'message-length' // a length below 4 or above the maximum
  | 'startup' // a startup message with an unknown protocol code or a malformed body
  | 'message-body' // a message whose fields do not parse
  | 'unmatched-response' // an answer with no request waiting for it

export interface PostgresStats {
  /** Times a direction lost its place and looked for the next message boundary. */
  resyncs: number
  /** Bytes read while looking for a message boundary. */
  skippedBytes: number
  /** Requests dropped because `maxPending` were already waiting. */
  queueOverflows: number
  /** Executes skipped by the server after an earlier error before Sync (no operation for them). */
  skippedAfterError: number
  /** Connections encrypted with GSSAPI: not followed. */
  gssEncrypted: number
  /** Connections that switched to TLS after an SSLRequest. */
  tlsStarted: number
  /** "client" connections whose first record was a startup message received: the server's end. */
  roleCorrected: number
}

export interface PostgresOptions {
  /** Statement text bytes kept per query or Parse (default 16384). */
  maxTextBytes?: number
  /** Messages waiting for their answers per connection (default 256). */
  maxPending?: number
  /** Named prepared statements and portals remembered per connection (default 256 each). */
  maxStatements?: number
}

/** Called once per operation, in request order per connection, from inside `push` and `close`. */
export type PostgresOperationHandler<C> = (operation: PostgresOperation, context: C) => void

export type PostgresRole = 'client' | 'server' | 'unknown'

const SSL_REQUEST = 80877103
const GSSENC_REQUEST = 80877104
const CANCEL_REQUEST = 80877102
/** PostgreSQL refuses messages over 1 GB; the startup packet is at most 10000 bytes. */
const MAX_LENGTH = 0x40000000
const MAX_STARTUP = 10000
const MAX_COMMANDS = 64
/** Bytes kept of the bodies whose fields the parser reads, other than statement text. */
const NAMES_BYTES = 256
const ERROR_BYTES = 1024

/** Message types each side sends (after startup), as a lookup table. */
const FRONTEND = new Uint8Array(256)
for (const c of 'QPBDECSHXFdcfp') FRONTEND[c.charCodeAt(0)] = 1
const BACKEND = new Uint8Array(256)
for (const c of 'RKSZTDCIE123ntsGHWdcNAVv') BACKEND[c.charCodeAt(0)] = 1

/** Fixed lengths (with the length field itself) of messages that have one; 0: any. */
const FRONTEND_LENGTH = new Uint32Array(256)
for (const c of 'SHXc') FRONTEND_LENGTH[c.charCodeAt(0)] = 4
const BACKEND_LENGTH = new Uint32Array(256)
for (const c of '123nsIc') BACKEND_LENGTH[c.charCodeAt(0)] = 4
BACKEND_LENGTH['Z'.charCodeAt(0)] = 5
BACKEND_LENGTH['K'.charCodeAt(0)] = 12

const code = (c: string): number => c.charCodeAt(0)
const Q = code('Q'), P = code('P'), B = code('B'), D = code('D'), E = code('E'), C = code('C'), S = code('S'), F = code('F')
const Z = code('Z'), T = code('T'), I = code('I'), N = code('N'), n = code('n'), s = code('s')
const PARSE_COMPLETE = code('1'), BIND_COMPLETE = code('2'), CLOSE_COMPLETE = code('3'), DATA_ROW = D, PASSWORD = code('p')
const SSL_YES = S, SSL_NO = N, GSS_YES = code('G')

/** The untyped startup message: the pseudo type of the frontend's first message. */
const STARTUP = 0

/** Frontend phases */
const PHASE_STARTUP = 0 // an untyped startup, SSLRequest, GSSENCRequest or CancelRequest is due
const PHASE_ANSWER = 1 // waiting for the one-byte answer to SSLRequest or GSSENCRequest
const PHASE_TLS = 2 // TLS accepted: the socket's bytes are ciphertext until plaintext records come
const PHASE_TYPED = 3 // typed messages
const PHASE_OPAQUE = 4 // GSSAPI encryption or a cancel request: nothing more to read

interface Pending {
  type: number
  /** The backend's desync count when this was sent. */
  epoch?: number
  operation?: PostgresOperation
  /** P: the statement's name and text, for an error span when it fails with no Execute after it. */
  statement?: string
  text?: string
  textCut?: boolean
  startNs: number
  tid: number
  context: number
}

/** One direction's framing: where the next message starts and what of the current one is kept. */
class Reader {
  /** The next record's expected position; -1 before the first record. */
  expected = -1
  synced = true
  /** The current message's type (STARTUP for the untyped one) and length field so far. */
  header = new Uint8Array(5)
  headerHave = 0
  type = -1
  /** Body bytes of the current message not read yet. */
  remaining = 0
  /** Body bytes kept of the current message, and how many of them to keep. */
  body: Uint8Array = new Uint8Array(0)
  bodyHave = 0
  keep = 0
  /** Part of the body was not captured. */
  cut = false
  /** Times of the record that carried the current message's first byte. */
  startNs = 0
  endNs = 0
  tid = 0
  context = 0

  reset(): void {
    this.headerHave = 0
    this.type = -1
    this.remaining = 0
    this.bodyHave = 0
    this.keep = 0
    this.cut = false
  }
}

export class PostgresParser<C> {
  readonly errors: Record<PostgresErrorReason, number> = {
    lost: 0,
    'capture-cut': 0,
    'message-type': 0,
    'message-length': 0,
    startup: 0,
    'message-body': 0,
    'unmatched-response': 0,
  }
  readonly stats: PostgresStats = { resyncs: 0, skippedBytes: 0, queueOverflows: 0, skippedAfterError: 0, gssEncrypted: 0, tlsStarted: 0, roleCorrected: 0 }
  readonly onOperation: PostgresOperationHandler<C>
  readonly maxTextBytes: number
  readonly maxPending: number
  readonly maxStatements: number

  constructor(onOperation: PostgresOperationHandler<C>, options: PostgresOptions = {}) {
    this.onOperation = onOperation
    this.maxTextBytes = options.maxTextBytes ?? 16384
    this.maxPending = options.maxPending ?? 256
    this.maxStatements = options.maxStatements ?? 256
  }

  /** The parser state of one connection; `role` is the kernel's: `client` when this process connected. */
  connection(context: C, role: PostgresRole): PostgresConnection<C> {
    return new PostgresConnection(this, context, role)
  }
}

export class PostgresConnection<C> {
  /** From the startup message. */
  database: string | undefined
  user: string | undefined
  applicationName: string | undefined
  /** The connection switched to TLS after an SSLRequest. */
  tls = false
  /** `client` once this end is known to be the frontend; `server` connections are not parsed. */
  role: PostgresRole
  readonly #parser: PostgresParser<C>
  readonly #context: C
  readonly #frontend = new Reader()
  readonly #backend = new Reader()
  #phase = PHASE_STARTUP
  readonly #queue: Pending[] = []
  /** Prepared statements' text by name; portals' statement name and text by name. */
  readonly #statements = new Map<string, { text: string; cut: boolean }>()
  readonly #portals = new Map<string, { statement: string; text: string | undefined; cut: boolean }>()
  /** The first request message since the last Execute or Sync: where an Execute's time starts. */
  #segmentStartNs = -1
  #segmentTid = 0
  #segmentContext = 0
  /** After an error in the extended protocol, until the client's Sync: the server skips what comes. */
  #skipping = false
  /** Times the backend direction lost its place: answers in between may have been unseen. */
  #backendDesyncs = 0
  /** End of the last backend record: the end of answers whose own end was not seen. */
  #lastBackendEndNs = 0
  #lossSinceSync = false

  constructor(parser: PostgresParser<C>, context: C, role: PostgresRole) {
    this.#parser = parser
    this.#context = context
    this.role = role
  }

  /** Requests waiting for their answers. */
  get pending(): number {
    return this.#queue.length
  }

  push(chunk: PostgresChunk): void {
    if (this.role === 'server') return
    if (this.#phase === PHASE_OPAQUE) return
    const tls = chunk.tls === true
    if (tls !== this.tls) {
      // ciphertext after the server accepted TLS (or a late record of the plaintext before it)
      if (!tls) return
      this.#startTls()
    } else if (this.#phase === PHASE_TLS) return
    const frontend = this.#isFrontend(chunk)
    if (frontend === undefined) return
    const reader = frontend ? this.#frontend : this.#backend
    if (!frontend) this.#lastBackendEndNs = chunk.endNs
    if (reader.expected >= 0 && (chunk.loss === true || chunk.position !== reader.expected)) {
      this.#parser.errors.lost++
      this.#lose(reader, 'lost')
    } else if (reader.expected < 0 && chunk.position !== 0) {
      // first seen mid-stream (Periscope started while the connection was open)
      if (frontend) this.#phase = PHASE_TYPED
      this.#desync(reader)
    } else if (reader.expected < 0 && frontend && this.#phase === PHASE_STARTUP && chunk.data.length > 0 && FRONTEND[chunk.data[0]!] === 1) {
      // a connection found open at start-up: its positions count from then, and its first
      // message is a typed one (the kernel recognised it as a whole query); a startup message
      // starts with its length's high byte, 0, which is no message type
      this.#phase = PHASE_TYPED
      this.#desync(reader)
    }
    reader.expected = chunk.position + chunk.bytes
    this.#read(reader, frontend, chunk)
  }

  /** The connection closed: requests still waiting end as `closed`. */
  close(): void {
    const queue = this.#queue
    while (queue.length > 0) {
      const item = queue.shift()!
      if (item.operation !== undefined) this.#finish(item.operation, this.#lastBackendEndNs || item.startNs, 'closed')
    }
  }

  /** Whether the chunk is the frontend's (true), the backend's (false), or undecided (undefined). */
  #isFrontend(chunk: PostgresChunk): boolean | undefined {
    if (this.role === 'client') {
      // the kernel may take the end of an accepted connection for a client (a server process that
      // inherited it, forked after accept): a startup message received first says otherwise
      if (chunk.direction === INGRESS && chunk.position === 0 && this.#frontend.expected < 0 && this.#backend.expected < 0 && startupCode(chunk.data, chunk.bytes) !== -1) {
        this.role = 'server'
        this.#parser.stats.roleCorrected++
        return undefined
      }
      return chunk.direction === EGRESS
    }
    // the side whose first bytes are a startup message, or a message only the frontend sends
    const data = chunk.data
    if (chunk.position === 0 && startupCode(data, chunk.bytes) !== -1) {
      this.role = chunk.direction === EGRESS ? 'client' : 'server'
    } else if (data.length >= 5 && BACKEND[data[0]!] === 0 && FRONTEND[data[0]!] === 1) {
      this.role = chunk.direction === EGRESS ? 'client' : 'server'
    } else if (data.length >= 5 && FRONTEND[data[0]!] === 0 && BACKEND[data[0]!] === 1) {
      this.role = chunk.direction === INGRESS ? 'client' : 'server'
    } else return undefined
    if (this.role === 'server') return undefined
    if (chunk.position !== 0 || chunk.direction !== EGRESS || startupCode(data, chunk.bytes) === -1) this.#phase = PHASE_TYPED
    return chunk.direction === EGRESS
  }

  #startTls(): void {
    this.tls = true
    this.#parser.stats.tlsStarted++
    this.#phase = PHASE_STARTUP
    // the plaintext stream restarts at position 0 in both directions
    for (const reader of [this.#frontend, this.#backend]) {
      reader.reset()
      reader.expected = -1
      reader.synced = true
    }
  }

  #read(reader: Reader, frontend: boolean, chunk: PostgresChunk): void {
    const data = chunk.data
    let at = 0
    if (!reader.synced) {
      at = findBoundary(data, 0, frontend, data.length < chunk.bytes)
      if (at < 0) {
        this.#parser.stats.skippedBytes += chunk.bytes
        return
      }
      this.#parser.stats.skippedBytes += at
      reader.synced = true
      reader.reset()
    }
    while (at < data.length) {
      if (this.#phase === PHASE_ANSWER) {
        // the client waits for the answer: nothing it sends meanwhile is a message
        if (frontend) return
        if (!this.#sslAnswer(data[at++]!)) return
        continue
      }
      if (reader.remaining === 0 && reader.type < 0) {
        at = this.#readHeader(reader, frontend, chunk, at)
        if (!reader.synced) return this.#resyncWithin(reader, frontend, chunk, at)
        continue
      }
      at = this.#readBody(reader, frontend, chunk, at)
    }
    const unseen = chunk.bytes - data.length
    if (unseen <= 0) return
    if (reader.type >= 0 && reader.headerHave === 0 && unseen <= reader.remaining) {
      // the rest of this record lies inside the current message's body
      reader.remaining -= unseen
      reader.cut = true
      if (reader.remaining === 0) this.#dispatch(reader, frontend)
      return
    }
    this.#parser.errors['capture-cut']++
    this.#lose(reader, 'unseen')
  }

  /** After a desync inside a record: looks for a boundary in what is left of it. */
  #resyncWithin(reader: Reader, frontend: boolean, chunk: PostgresChunk, from: number): void {
    const at = findBoundary(chunk.data, from, frontend, chunk.data.length < chunk.bytes)
    if (at < 0) {
      this.#parser.stats.skippedBytes += chunk.data.length - from
      return
    }
    this.#parser.stats.skippedBytes += at - from
    reader.synced = true
    reader.reset()
    const rest = chunk.data.subarray(at)
    const tail: PostgresChunk = { ...chunk, data: rest, bytes: chunk.bytes - at }
    this.#read(reader, frontend, tail)
  }

  /** Reads the type byte and length field; returns the offset after what it read. */
  #readHeader(reader: Reader, frontend: boolean, chunk: PostgresChunk, at: number): number {
    const data = chunk.data
    const untyped = frontend && this.#phase === PHASE_STARTUP
    const headerLength = untyped ? 4 : 5
    if (reader.headerHave === 0) {
      reader.startNs = chunk.startNs
      reader.tid = chunk.tid ?? 0
      reader.context = chunk.context ?? 0
    }
    while (reader.headerHave < headerLength && at < data.length) reader.header[reader.headerHave++] = data[at++]!
    if (reader.headerHave < headerLength) return at
    const header = reader.header
    const type = untyped ? STARTUP : header[0]!
    const lengthAt = untyped ? 0 : 1
    const length = ((header[lengthAt]! << 24) | (header[lengthAt + 1]! << 16) | (header[lengthAt + 2]! << 8) | header[lengthAt + 3]!) >>> 0
    if (!untyped && (frontend ? FRONTEND : BACKEND)[type] === 0) {
      this.#parser.errors['message-type']++
      this.#desync(reader)
      return at
    }
    const fixed = untyped ? 0 : (frontend ? FRONTEND_LENGTH : BACKEND_LENGTH)[type]!
    if (length < 4 || length > (untyped ? MAX_STARTUP : MAX_LENGTH) || (fixed !== 0 && length !== fixed) || (untyped && length < 8)) {
      this.#parser.errors[untyped ? 'startup' : 'message-length']++
      this.#desync(reader)
      return at
    }
    reader.type = type
    reader.headerHave = 0
    reader.remaining = length - 4
    reader.bodyHave = 0
    reader.cut = false
    reader.keep = this.#keepBytes(type, frontend)
    reader.endNs = chunk.endNs
    if (reader.remaining === 0) this.#dispatch(reader, frontend)
    return at
  }

  /** Body bytes of a message to keep: what its fields need; 0 for passwords and rows. */
  #keepBytes(type: number, frontend: boolean): number {
    if (frontend) {
      if (type === Q || type === P) return this.#parser.maxTextBytes + NAMES_BYTES
      if (type === STARTUP) return MAX_STARTUP
      if (type === B || type === D || type === E || type === C) return NAMES_BYTES
      return 0
    }
    if (type === C) return NAMES_BYTES
    if (type === E) return ERROR_BYTES
    if (type === Z) return 1
    return 0
  }

  #readBody(reader: Reader, frontend: boolean, chunk: PostgresChunk, at: number): number {
    const data = chunk.data
    const available = Math.min(reader.remaining, data.length - at)
    reader.endNs = chunk.endNs
    if (reader.keep > 0) {
      if (reader.bodyHave === 0 && available === reader.remaining && available <= reader.keep) {
        // the whole body is in this record: read it in place
        reader.remaining = 0
        this.#dispatchBody(reader, frontend, data, at, at + available)
        return at + available
      }
      const wanted = Math.min(available, reader.keep - reader.bodyHave)
      if (wanted > 0) {
        if (reader.body.length < reader.bodyHave + wanted) {
          const grown = new Uint8Array(Math.min(reader.keep, Math.max(reader.body.length * 2, reader.bodyHave + wanted, 64)))
          grown.set(reader.body.subarray(0, reader.bodyHave))
          reader.body = grown
        }
        reader.body.set(data.subarray(at, at + wanted), reader.bodyHave)
        reader.bodyHave += wanted
      }
      if (wanted < available) reader.cut = true
    }
    reader.remaining -= available
    if (reader.remaining === 0) this.#dispatch(reader, frontend)
    return at + available
  }

  #dispatch(reader: Reader, frontend: boolean): void {
    this.#dispatchBody(reader, frontend, reader.body, 0, reader.bodyHave)
  }

  #dispatchBody(reader: Reader, frontend: boolean, body: Uint8Array, start: number, end: number): void {
    const type = reader.type
    reader.type = -1
    if (frontend) this.#onFrontend(reader, type, body, start, end)
    else this.#onBackend(reader, type, body, start, end)
    reader.bodyHave = 0
    reader.cut = false
  }

  /** Reads the one-byte answer to an SSLRequest or GSSENCRequest; false when the plain stream ends with it. */
  #sslAnswer(answer: number): boolean {
    if (answer === SSL_YES) {
      // the socket carries ciphertext from now on; plaintext records (tls) restart the streams
      this.#phase = PHASE_TLS
    } else if (answer === GSS_YES) {
      this.#phase = PHASE_OPAQUE
      this.#parser.stats.gssEncrypted++
    } else if (answer === SSL_NO) {
      this.#phase = PHASE_STARTUP
    } else {
      // a server too old for SSLRequest answers with an ErrorResponse and closes
      this.#parser.errors.startup++
      this.#phase = PHASE_OPAQUE
    }
    return this.#phase === PHASE_STARTUP
  }

  #onFrontend(reader: Reader, type: number, body: Uint8Array, start: number, end: number): void {
    if (type === STARTUP) return this.#onStartup(body, start, end)
    if (type === PASSWORD || type === code('H') || type === code('X') || type === code('d') || type === code('c') || type === code('f')) return
    if (this.#segmentStartNs < 0) {
      this.#segmentStartNs = reader.startNs
      this.#segmentTid = reader.tid
      this.#segmentContext = reader.context
    }
    const startNs = this.#segmentStartNs
    const tid = this.#segmentTid
    const context = this.#segmentContext
    switch (type) {
      case Q: {
        const text = cString(body, start, end)
        this.#statements.delete('')
        this.#enqueue({ type, startNs, tid, context, operation: this.#operation('query', text === undefined ? utf8(body, start, end) : text.value, text === undefined || reader.cut, undefined, startNs, tid, context) })
        this.#segmentStartNs = -1
        return
      }
      case P: {
        const name = cString(body, start, end)
        const text = name === undefined ? undefined : cString(body, name.next, end)
        if (name === undefined) {
          this.#parser.errors['message-body']++
          this.#enqueue({ type, startNs, tid, context })
          return
        }
        const value = text?.value ?? utf8(body, name.next, end)
        const cut = text === undefined || reader.cut
        this.#remember(this.#statements, name.value, { text: value, cut })
        this.#enqueue({ type, startNs, tid, context, statement: name.value, text: value, textCut: cut })
        return
      }
      case B: {
        const portalEnd = nulAt(body, start, end)
        const statementEnd = portalEnd < 0 ? -1 : nulAt(body, portalEnd + 1, end)
        if (statementEnd < 0) {
          this.#parser.errors['message-body']++
          this.#enqueue({ type, startNs, tid, context })
          return
        }
        const portal = utf8(body, start, portalEnd)
        const statement = utf8(body, portalEnd + 1, statementEnd)
        const known = this.#statements.get(statement)
        const bound = this.#portals.get(portal)
        if (bound === undefined) this.#remember(this.#portals, portal, { statement, text: known?.text, cut: known?.cut ?? false })
        else {
          // the same portal bound again (the unnamed one, every time): updated in place
          bound.statement = statement
          bound.text = known?.text
          bound.cut = known?.cut ?? false
        }
        this.#enqueue({ type, startNs, tid, context, statement })
        return
      }
      case E: {
        const portalEnd = nulAt(body, start, end)
        const bound = portalEnd < 0 ? undefined : this.#portals.get(utf8(body, start, portalEnd))
        if (portalEnd < 0) this.#parser.errors['message-body']++
        this.#segmentStartNs = -1
        if (this.#skipping) {
          this.#parser.stats.skippedAfterError++
          return
        }
        this.#enqueue({ type, startNs, tid, context, operation: this.#operation('execute', bound?.text, bound?.cut ?? false, bound?.statement, startNs, tid, context) })
        return
      }
      case C: {
        if (end - start >= 2) {
          const name = cString(body, start + 1, end)
          if (name !== undefined) (body[start] === S ? this.#statements : this.#portals).delete(name.value)
        }
        this.#enqueue({ type, startNs, tid, context })
        return
      }
      case S:
        this.#skipping = false
        this.#enqueue({ type, startNs, tid, context })
        this.#segmentStartNs = -1
        return
      default:
        // Describe, FunctionCall
        this.#enqueue({ type, startNs, tid, context })
    }
  }

  #onStartup(body: Uint8Array, start: number, end: number): void {
    const protocol = end - start >= 4 ? ((body[start]! << 24) | (body[start + 1]! << 16) | (body[start + 2]! << 8) | body[start + 3]!) >>> 0 : -1
    if (protocol === SSL_REQUEST || protocol === GSSENC_REQUEST) {
      this.#phase = PHASE_ANSWER
      return
    }
    if (protocol === CANCEL_REQUEST) {
      this.#phase = PHASE_OPAQUE
      return
    }
    if (protocol >>> 16 !== 3) {
      this.#parser.errors.startup++
      this.#phase = PHASE_OPAQUE
      return
    }
    this.#phase = PHASE_TYPED
    // key\0value\0 pairs, then \0; the password is never here (it comes in a `p` message)
    let at = start + 4
    while (at < end && body[at] !== 0) {
      const key = cString(body, at, end)
      if (key === undefined) break
      const value = cString(body, key.next, end)
      if (value === undefined) break
      if (key.value === 'database') this.database = value.value
      else if (key.value === 'user') this.user = value.value
      else if (key.value === 'application_name') this.applicationName = value.value
      at = value.next
    }
    this.database ??= this.user
  }

  #onBackend(reader: Reader, type: number, body: Uint8Array, start: number, end: number): void {
    const head = this.#queue[0]
    switch (type) {
      case PARSE_COMPLETE:
      case BIND_COMPLETE:
      case CLOSE_COMPLETE:
      case n:
        if (head === undefined) break
        this.#expectHead(type === PARSE_COMPLETE ? P : type === BIND_COMPLETE ? B : type === CLOSE_COMPLETE ? C : D)
        return
      case T:
        // a Describe's row description; a Query's comes before its rows and ends nothing
        if (head?.type === D) this.#queue.shift()
        return
      case DATA_ROW:
        if (head?.operation !== undefined) head.operation.rows++
        return
      case C:
      case I:
        if (head?.operation === undefined) break
        head.operation.completed++
        if (type === C && head.operation.commands.length < MAX_COMMANDS) head.operation.commands.push(firstWord(body, start, end))
        if (head.type === E) {
          this.#queue.shift()
          this.#finish(head.operation, reader.endNs, undefined)
        }
        return
      case s:
        if (head?.type !== E) break
        this.#queue.shift()
        this.#finish(head.operation!, reader.endNs, undefined)
        return
      case E:
        this.#onError(reader, parseError(body, start, end))
        return
      case Z:
        this.#onReady(reader)
        return
      default:
        // Authentication, ParameterStatus, BackendKeyData, NoticeResponse, NotificationResponse,
        // ParameterDescription (t), copy responses and data, FunctionCallResponse,
        // NegotiateProtocolVersion: no operation starts or ends with them
        return
    }
    this.#parser.errors['unmatched-response']++
  }

  /** An answer for the head of the queue, which must be of `type`. */
  #expectHead(type: number): void {
    const head = this.#queue[0]!
    if (head.type === type) this.#queue.shift()
    else this.#parser.errors['unmatched-response']++
  }

  #onError(reader: Reader, error: PostgresError): void {
    const queue = this.#queue
    const head = queue[0]
    if (head === undefined || head.type === S) {
      // FATAL at startup (wrong password) or shutdown: no request waits for it
      return
    }
    if (head.type === Q || head.type === F) {
      if (head.operation !== undefined) head.operation.error ??= error
      return
    }
    // extended protocol: the server skips to Sync; the error is the first Execute's of the stretch
    let blamed: PostgresOperation | undefined
    while (queue.length > 0 && queue[0]!.type !== S && queue[0]!.type !== Q) {
      const item = queue.shift()!
      if (item.type !== E) continue
      if (blamed === undefined) blamed = item.operation
      else this.#parser.stats.skippedAfterError++
    }
    // what the client sends before its Sync is skipped too
    if (queue.length === 0) this.#skipping = true
    if (blamed === undefined && head.type !== C) {
      // a Parse, Bind or Describe failed with no Execute after it: the statement is the span
      blamed = this.#operation('prepare', head.text ?? this.#statementText(head.statement), head.textCut ?? false, head.statement, head.startNs, head.tid, head.context)
    }
    if (blamed === undefined) return
    blamed.error = error
    this.#finish(blamed, reader.endNs, undefined)
  }

  #onReady(reader: Reader): void {
    const queue = this.#queue
    // answers not seen before this Sync's (skipped after an error, or unseen): they end here
    while (queue.length > 0) {
      const item = queue.shift()!
      const last = item.type === S || item.type === Q || item.type === F
      if (item.operation !== undefined) this.#finish(item.operation, reader.endNs, item.type === Q || item.type === F ? undefined : 'unseen')
      if (last) return
    }
  }

  #statementText(name: string | undefined): string | undefined {
    return name === undefined ? undefined : this.#statements.get(name)?.text
  }

  #operation(kind: PostgresOperation['kind'], text: string | undefined, textCut: boolean, statement: string | undefined, startNs: number, tid: number, context: number): PostgresOperation {
    const operation: PostgresOperation = { kind, text, textCut, commands: [], completed: 0, rows: 0, startNs, endNs: startNs, tid, context }
    if (statement !== undefined) operation.statement = statement
    return operation
  }

  #enqueue(item: Pending): void {
    const queue = this.#queue
    if (queue.length >= this.#parser.maxPending) {
      this.#parser.stats.queueOverflows++
      queue.shift()
    }
    item.epoch = this.#backendDesyncs
    if (item.type === Q || item.type === S || item.type === F) this.#endUnseen()
    queue.push(item)
  }

  /**
   * A request that ends a unit (Query, Sync, FunctionCall) is sent while earlier units wait, and
   * the backend lost its place after the last of them was sent: their answers came (a client that
   * does not pipeline waits for them), unseen, in what was lost or cut. They end now.
   */
  #endUnseen(): void {
    const queue = this.#queue
    let last = queue.length - 1
    while (last >= 0 && queue[last]!.type !== Q && queue[last]!.type !== S && queue[last]!.type !== F) last--
    if (last < 0 || this.#backendDesyncs === queue[last]!.epoch) return
    const reason = this.#lossSinceSync ? 'lost' : 'unseen'
    this.#lossSinceSync = false
    for (const item of queue.splice(0, last + 1)) {
      if (item.operation !== undefined) this.#finish(item.operation, this.#lastBackendEndNs, reason)
    }
  }

  #finish(operation: PostgresOperation, endNs: number, incomplete: PostgresOperation['incomplete']): void {
    operation.endNs = Math.max(endNs, operation.startNs)
    if (incomplete !== undefined) operation.incomplete = incomplete
    this.#parser.onOperation(operation, this.#context)
  }

  #remember<V>(map: Map<string, V>, key: string, value: V): void {
    map.delete(key)
    if (map.size >= this.#parser.maxStatements) map.delete(map.keys().next().value!)
    map.set(key, value)
  }

  /** This direction cannot be followed: its place is lost until the next message boundary. */
  #lose(reader: Reader, why: 'lost' | 'unseen'): void {
    if (why === 'lost') this.#lossSinceSync = true
    this.#desync(reader)
    if (reader === this.#frontend) {
      // requests may be missing: the segment's start is not known
      this.#segmentStartNs = -1
    }
  }

  #desync(reader: Reader): void {
    if (reader === this.#backend) this.#backendDesyncs++
    reader.synced = false
    reader.reset()
    this.#parser.stats.resyncs++
    if (reader === this.#frontend && this.#phase !== PHASE_TYPED && this.#phase !== PHASE_OPAQUE) this.#phase = PHASE_TYPED
  }
}

/**
 * The first offset at or after `from` where a chain of well-formed messages of the direction starts:
 * each has a known type and a length that fits, and the chain ends exactly at the end of `data`
 * (or, when the record was cut, or the last message continues in the next record, runs on past
 * it after at least two whole messages). -1 when there is none.
 */
export function findBoundary(data: Uint8Array, from: number, frontend: boolean, cut: boolean): number {
  const types = frontend ? FRONTEND : BACKEND
  const fixed = frontend ? FRONTEND_LENGTH : BACKEND_LENGTH
  for (let start = from; start < data.length; start++) {
    let at = start
    let whole = 0
    for (;;) {
      if (at === data.length) {
        if (whole > 0) return start
        break
      }
      if (at + 5 > data.length) {
        if (whole >= 2 || (cut && whole >= 1)) return start
        break
      }
      const type = data[at]!
      if (types[type] === 0) break
      const length = ((data[at + 1]! << 24) | (data[at + 2]! << 16) | (data[at + 3]! << 8) | data[at + 4]!) >>> 0
      if (length < 4 || length > MAX_LENGTH || (fixed[type] !== 0 && length !== fixed[type])) break
      const next = at + 1 + length
      if (next > data.length) {
        if (whole >= 2 || (cut && whole >= 1)) return start
        break
      }
      whole++
      at = next
    }
  }
  return -1
}

/** The protocol code of a startup-like message at the start of a stream, or -1. */
function startupCode(data: Uint8Array, bytes: number): number {
  if (data.length < 8) return -1
  const length = ((data[0]! << 24) | (data[1]! << 16) | (data[2]! << 8) | data[3]!) >>> 0
  const protocol = ((data[4]! << 24) | (data[5]! << 16) | (data[6]! << 8) | data[7]!) >>> 0
  if ((protocol === SSL_REQUEST || protocol === GSSENC_REQUEST) && length === 8) return protocol
  if (protocol === CANCEL_REQUEST && length === 16) return protocol
  if (protocol >>> 16 === 3 && length >= 8 && length <= Math.max(bytes, data.length) && length <= MAX_STARTUP) return protocol
  return -1
}

/** The index of the first NUL in bytes[start, end), or -1. */
function nulAt(bytes: Uint8Array, start: number, end: number): number {
  const nul = bytes.indexOf(0, start)
  return nul < 0 || nul >= end ? -1 : nul
}

/** A NUL-terminated string at `start`, decoded as UTF-8, and the offset after its NUL; undefined without a NUL. */
function cString(bytes: Uint8Array, start: number, end: number): { value: string; next: number } | undefined {
  const nul = bytes.indexOf(0, start)
  if (nul < 0 || nul >= end) return undefined
  return { value: utf8(bytes, start, nul), next: nul + 1 }
}

/** Command tags' first words that need no new string each time. */
const COMMON_COMMANDS = ['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'BEGIN', 'COMMIT', 'ROLLBACK', 'SET', 'FETCH', 'COPY', 'MERGE'].map((name) => ({ name, bytes: Uint8Array.from(name, (c) => c.charCodeAt(0)) }))

/** The first word of a CommandComplete tag (`INSERT 0 1` → `INSERT`). */
function firstWord(bytes: Uint8Array, start: number, end: number): string {
  let at = start
  while (at < end && bytes[at] !== 32 && bytes[at] !== 0) at++
  for (const known of COMMON_COMMANDS) {
    if (known.bytes.length !== at - start) continue
    let same = true
    for (let i = 0; i < known.bytes.length && same; i++) same = bytes[start + i] === known.bytes[i]
    if (same) return known.name
  }
  return latin1(bytes, start, at)
}

/** ErrorResponse fields: a type byte and a NUL-terminated string each, then a NUL. */
function parseError(bytes: Uint8Array, start: number, end: number): PostgresError {
  const error: PostgresError = { code: '', message: '', severity: '' }
  let at = start
  while (at < end && bytes[at] !== 0) {
    const field = bytes[at]!
    const value = cString(bytes, at + 1, end)
    if (value === undefined) break
    if (field === 67 /* C */) error.code = value.value
    else if (field === 77 /* M */) error.message = value.value
    else if (field === 86 /* V */ || (field === 83 /* S */ && error.severity === '')) error.severity = value.value
    at = value.next
  }
  return error
}
