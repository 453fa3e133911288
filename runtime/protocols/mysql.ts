/**
 * MySQL / MariaDB client/server protocol parser: turns the two byte streams of a connection, as
 * the kernel captured them, into the commands the client sent and how the server answered each.
 *
 * It is pure TypeScript for plugin isolates (V8 builtins only). The input is the `sockdata`
 * records of one connection: each record says how many bytes the call moved (`bytes`) but carries
 * only the first `captured` of them (`data`), and its `position` in its direction's stream.
 *
 * What it follows:
 * - Packets: a 3-byte length and a sequence id; a payload of 16 MiB - 1 continues in the next
 *   packet. Payloads are skipped by their length, so rows and statements longer than the capture
 *   cost nothing and keep the framing.
 * - The handshake: the server greeting (version: MariaDB or MySQL; capabilities), the client's
 *   handshake response (user, and the database with CLIENT_CONNECT_WITH_DB; the auth response is
 *   skipped, never decoded or kept), auth switch and more-data exchanges until OK or ERR. An SSL
 *   request means the rest is ciphertext: parsing stops there (counted in `stats.tls`); so does a
 *   compressed protocol (`stats.compressed`) or replication (`stats.replication`).
 * - Commands: COM_QUERY (statement text; MySQL 8 query attributes skipped), COM_INIT_DB (changes
 *   the namespace), COM_STMT_PREPARE (the text is kept per statement id from its PREPARE_OK),
 *   COM_STMT_EXECUTE (carries that text), COM_STMT_CLOSE/RESET/FETCH, COM_PING, COM_QUIT,
 *   COM_CHANGE_USER, COM_RESET_CONNECTION and the others by their response shape.
 * - Responses: OK (affected rows; the schema from session state tracking), ERR (code, SQL state,
 *   message; MariaDB progress reports are not errors), EOF, result sets (column count, column
 *   definitions, text or binary rows until EOF or OK, with or without CLIENT_DEPRECATE_EOF, with
 *   or without cached metadata), multiple results (SERVER_MORE_RESULTS_EXISTS), and LOCAL INFILE.
 *   Pipelined commands (MariaDB's prepare and execute of statement -1) are answered in order.
 *
 * When it loses its place (a packet header in the uncaptured part of a record, a sequence id out
 * of order, garbage, a connection seen from its middle), that direction goes blind and realigns
 * at its first record after one of the other direction: the protocol takes turns, so a client's
 * send after the server's answer starts a command, and the server's first send after a command
 * starts its response. A response followed blind still ends right: at the last record the client
 * received before its next command (`incomplete: 'unfollowed'`). Lost records end every command
 * waiting as `lost`: which one the answers after the gap belong to is not known. Malformed input
 * is counted in `MysqlParser.errors` by reason; nothing throws.
 *
 * Memory per connection: the prefix of one packet per direction (at most `maxTextBytes`), the
 * commands waiting for answers (at most `maxPending`) and the prepared statements' text (at most
 * `maxStatements`, least recently prepared forgotten first).
 *
 * ```ts
 * const parser = new MysqlParser<Conn>((operation, conn) => emitSpan(conn, operation))
 * const connection = parser.connection(conn, 'client')
 * connection.push({ direction: EGRESS, position, bytes, data, startNs, endNs })
 * connection.close()
 * ```
 */
import { latin1, utf8 } from './bytes.ts'

/** The process sent these bytes. */
export const EGRESS = 0
/** The process received these bytes. */
export const INGRESS = 1

/** One send or receive on the connection, in the order the calls completed. */
export interface MysqlChunk {
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
  /** The calling thread, passed on as the `tid` of a command sent in this call. */
  tid?: number
  /** The record's `context` (the HTTP request its thread was serving), passed on with a command sent in this call. */
  context?: number
}

/** `client`: this process connected, so it sends the commands. `server`: it accepted. */
export type MysqlRole = 'client' | 'server' | 'unknown'

export const COM_QUIT = 0x01
export const COM_INIT_DB = 0x02
export const COM_QUERY = 0x03
export const COM_FIELD_LIST = 0x04
export const COM_STATISTICS = 0x09
export const COM_PING = 0x0e
export const COM_CHANGE_USER = 0x11
export const COM_BINLOG_DUMP = 0x12
export const COM_STMT_PREPARE = 0x16
export const COM_STMT_EXECUTE = 0x17
export const COM_STMT_SEND_LONG_DATA = 0x18
export const COM_STMT_CLOSE = 0x19
export const COM_STMT_RESET = 0x1a
export const COM_SET_OPTION = 0x1b
export const COM_STMT_FETCH = 0x1c
export const COM_BINLOG_DUMP_GTID = 0x1e
export const COM_RESET_CONNECTION = 0x1f
/** MariaDB's array-bound execute. */
export const COM_STMT_BULK_EXECUTE = 0xfa

/** Capability flags (the negotiated ones are the client's, which asks only for what the server offers). */
export const CLIENT_CONNECT_WITH_DB = 0x8
export const CLIENT_COMPRESS = 0x20
export const CLIENT_PROTOCOL_41 = 0x200
export const CLIENT_SSL = 0x800
export const CLIENT_SECURE_CONNECTION = 0x8000
export const CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA = 0x200000
export const CLIENT_SESSION_TRACK = 0x800000
export const CLIENT_DEPRECATE_EOF = 0x1000000
export const CLIENT_ZSTD_COMPRESSION_ALGORITHM = 0x4000000
export const CLIENT_QUERY_ATTRIBUTES = 0x8000000

/** Server status flags of OK and EOF packets. */
export const SERVER_STATUS_CURSOR_EXISTS = 0x40
export const SERVER_MORE_RESULTS_EXISTS = 0x8
export const SERVER_SESSION_STATE_CHANGED = 0x4000

const SESSION_TRACK_SCHEMA = 1
/** ERR code of a MariaDB progress report, sent during long commands: not an error. */
const PROGRESS_REPORT = 0xffff
/** A payload of this length continues in the next packet. */
const MAX_PAYLOAD = 0xffffff
/** A statement id that means "the statement prepared last" (MariaDB's prepare-and-execute pipelining). */
const LAST_PREPARED = 0xffffffff

export interface MysqlServer {
  /** The greeting's version, without MariaDB's `5.5.5-` replication prefix. */
  version: string
  mariadb: boolean
}

export interface MysqlError {
  /** The server's error number, e.g. 1064 (syntax) or 1146 (no such table). */
  code: number
  /** SQLSTATE, e.g. `42S02`; '' when the packet had none. */
  sqlState: string
  message: string
}

/** One command and its response, handed over once the response ended (or could not be followed). */
export interface MysqlOperation {
  /** COM_QUERY, COM_STMT_EXECUTE, ... (the command byte). */
  command: number
  /**
   * COM_QUERY and COM_STMT_PREPARE: the statement; COM_STMT_EXECUTE and COM_STMT_FETCH: the
   * prepared statement's text when its prepare was seen; COM_INIT_DB: the schema. UTF-8 decoded.
   */
  text?: string
  /** Bytes of the text not seen: beyond the capture or `maxTextBytes`. */
  textBytesCut: number
  /** Prepared statement commands: the id (COM_STMT_PREPARE: from its PREPARE_OK). */
  statementId?: number
  /** The database in effect when the command was sent. */
  namespace?: string
  /** Entry of the call that sent the command's first byte, exit of the call that received the response's last. */
  startNs: number
  endNs: number
  /** The thread that sent the command (0 if not given). */
  tid: number
  /** The `context` of the record that sent the command (0 if not given). */
  context: number
  /** The ERR that ended the response. */
  error?: MysqlError
  /** Rows of the result sets, when every row packet was seen. */
  rows?: number
  /** OK packets' affected rows, summed over the results. */
  affectedRows?: number
  /**
   * Set when the response was not seen to its end: `unfollowed`, its end was not visible (cut
   * from the capture) but the client went on, so it ended at the last record received before
   * that; `lost`, records were lost, so its outcome is unknown; `closed`, the connection closed
   * before any answer.
   */
  incomplete?: 'unfollowed' | 'lost' | 'closed'
}

export interface MysqlOptions {
  /** Statement bytes kept per command and per prepared statement (default 16384). */
  maxTextBytes?: number
  /** Commands waiting for their responses per connection (default 16). */
  maxPending?: number
  /** Prepared statements' texts kept per connection (default 256). */
  maxStatements?: number
}

/** Why input was counted as malformed. */
export type MysqlErrorReason =
  | 'position' // a record's position is before the end of the previous one of its direction
  | 'sequence' // a packet's sequence id is not the next one
  | 'greeting' // a server greeting that does not parse
  | 'handshake' // a handshake response that does not parse
  | 'command' // an unknown command byte, or a command packet too short for its fields
  | 'response' // a response packet that does not fit what the command's response allows
  | 'unexpected-response' // a response packet while no command waits for one
  | 'resync' // after a turn of the other side, the record did not start with a packet that fits

export interface MysqlStats {
  /** Bytes missing between records (lost records). */
  lostBytes: number
  /** Times a direction lost its place and waited for the other side's turn. */
  resyncs: number
  /** Responses whose end was not visible (handed over with `incomplete: 'unfollowed'`). */
  unfollowed: number
  /** Connections that switched to TLS (SSL request): their ciphertext is not parsed. */
  tls: number
  /** Connections that negotiated compression: not parsed past the handshake. */
  compressed: number
  /** Replication streams (binlog dump): not parsed. */
  replication: number
  /** Connections whose handshake the server refused (ERR to the handshake). */
  authFailures: number
  /**
   * Connections seen from their middle whose first command's answer did not parse: taken for
   * another protocol that looked like MySQL, not parsed further, their operations not handed over.
   */
  rejected: number
  /** Commands not queued because `maxPending` waited already. */
  queueOverflows: number
  /** Prepared statements forgotten to stay within `maxStatements`. */
  statementsEvicted: number
  /** Executions of statements whose prepare was not seen (or was forgotten). */
  unknownStatements: number
  /** Statement bytes not kept (beyond the capture or `maxTextBytes`). */
  textBytesCut: number
}

export type MysqlOperationHandler<C> = (operation: MysqlOperation, context: C, side: 'client' | 'server') => void

/** Parses the connections of one plugin; shares options, counters and the handler among them. */
export class MysqlParser<C = unknown> {
  readonly errors: Record<MysqlErrorReason, number> = {
    position: 0,
    sequence: 0,
    greeting: 0,
    handshake: 0,
    command: 0,
    response: 0,
    'unexpected-response': 0,
    resync: 0,
  }
  readonly stats: MysqlStats = {
    lostBytes: 0,
    resyncs: 0,
    unfollowed: 0,
    tls: 0,
    compressed: 0,
    replication: 0,
    authFailures: 0,
    rejected: 0,
    queueOverflows: 0,
    statementsEvicted: 0,
    unknownStatements: 0,
    textBytesCut: 0,
  }
  /** @internal */
  readonly limits: Required<MysqlOptions>
  /** @internal */
  readonly onOperation: MysqlOperationHandler<C>

  constructor(onOperation: MysqlOperationHandler<C>, options: MysqlOptions = {}) {
    this.onOperation = onOperation
    this.limits = {
      maxTextBytes: limit(options.maxTextBytes, 16384, 64, 'maxTextBytes'),
      maxPending: limit(options.maxPending, 16, 1, 'maxPending'),
      maxStatements: limit(options.maxStatements, 256, 1, 'maxStatements'),
    }
  }

  /** State for one connection; `context` comes back with each of its operations. */
  connection(context: C, role: MysqlRole = 'unknown'): MysqlConnection<C> {
    return new MysqlConnection(this, context, role)
  }
}

function limit(value: number | undefined, fallback: number, min: number, name: string): number {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || value < min) throw new Error(`MysqlParser: ${name} must be an integer of at least ${min}, got ${value}`)
  return value
}

// connection phases
const GREETING = 0 // the server's greeting is due
const LOGIN = 1 // the client's handshake response (or SSL request) is due
const AUTH = 2 // auth exchanges until the server's OK or ERR
const COMMANDS = 3
const STOPPED = 4 // TLS, compression, replication, a refused login: nothing more is parsed

// what the next response packet of the oldest waiting command can be
const R_FIRST = 0 // OK, ERR, EOF, LOCAL INFILE request, or a result set's column count
const R_COLUMNS = 1 // `left` column definitions
const R_AFTER_COLUMNS = 2 // an EOF (without CLIENT_DEPRECATE_EOF), else the first row or the end
const R_ROWS = 3 // rows until EOF/OK or ERR
const R_PREPARE = 4 // PREPARE_OK or ERR
const R_PREPARE_PARAMS = 5 // `left` parameter definitions, then an EOF unless CLIENT_DEPRECATE_EOF
const R_PREPARE_PARAMS_EOF = 6
const R_PREPARE_COLUMNS = 7
const R_PREPARE_COLUMNS_EOF = 8
const R_INFILE = 9 // the client sends the file, ending with an empty packet
const R_INFILE_DONE = 10 // OK or ERR after the file
const R_FIELD_LIST = 11 // column definitions until EOF
const R_ANY = 12 // one packet of any content (COM_STATISTICS)
const R_AUTH = 13 // COM_CHANGE_USER: auth exchanges until OK or ERR

/** A command waiting for its response, and how far the response got. */
class Pending {
  readonly operation: MysqlOperation
  state: number
  /** Definitions still to come in R_COLUMNS / R_PREPARE_* states. */
  left = 0
  /** PREPARE_OK's column count, for after its parameter definitions. */
  columns = 0
  /** Some byte of the response was received. */
  answered = false
  /** The connection's count of response records when the command was sent. */
  readonly responseRecordsBefore: number
  /** The sequence id its response starts with: one past the command's last packet. */
  responseSeq = 1
  /** COM_INIT_DB, COM_CHANGE_USER, `USE db`, session tracking: an OK changes the namespace... */
  changesNamespace = false
  /** ...to this (undefined: to one not seen, its name cut from the capture). */
  newNamespace?: string
  constructor(operation: MysqlOperation, state: number, responseRecords: number) {
    this.operation = operation
    this.state = state
    this.responseRecordsBefore = responseRecords
  }
}

// what shows that a connection speaks MySQL
const NO_EVIDENCE = 0
/** Seen from its middle, a record that looks like a whole command: operations wait for proof. */
const GUESSED = 1
/** The greeting, or a command answered as the protocol says. */
const PROVEN = 2

// packet reader states
const HEADER = 0
const PAYLOAD = 1
const BLIND = 2
const DONE = 3

/** Packet framing of one direction: headers, payload prefixes kept for interpretation, the rest skipped by count. */
class PacketReader {
  readonly direction: number
  state = HEADER
  /** Position of the next byte; -1 before the first record. */
  expected = -1
  /** Blind: a record of the other direction came since, so this one's next record starts a message. */
  realign = false
  /** Realigning on the first record of a connection seen from its middle, which may start anywhere. */
  guessing = false
  readonly header = new Uint8Array(4)
  headerHave = 0
  /** The sequence id this direction's next packet must have; -1: any (after realigning). */
  nextSeq = 0
  length = 0
  seq = 0
  /** Payload bytes of the current packet not yet read. */
  remaining = 0
  /** The current packet continues a logical packet (the previous one was MAX_PAYLOAD long). */
  continuation = false
  /** Bytes of the logical packet so far. */
  logicalLength = 0
  /** The logical packet's first bytes, when they are not all in one record. */
  prefix: Uint8Array
  prefixHave = 0
  prefixWant = 0
  /** The prefix lies in the current record's data from here (-1: it is in `prefix`). */
  prefixAt = -1
  /** Exit of the last record of this direction. */
  lastEndNs = 0

  constructor(direction: number, maxPrefix: number) {
    this.direction = direction
    this.prefix = new Uint8Array(Math.min(maxPrefix, 256))
  }

  /** Bytes held for this direction. */
  capacity(): number {
    return this.prefix.length
  }

  reset(): void {
    this.state = HEADER
    this.headerHave = 0
    this.remaining = 0
    this.continuation = false
    this.logicalLength = 0
    this.prefixHave = 0
    this.prefixWant = 0
    this.prefixAt = -1
  }
}

/** Both directions of one connection, and what the handshake and commands established. */
export class MysqlConnection<C = unknown> {
  readonly context: C
  /** The greeting's version and whether it is MariaDB; undefined until a greeting was seen. */
  server?: MysqlServer
  /** The user of the handshake response (or COM_CHANGE_USER). */
  user?: string
  /** The current database: from the handshake, COM_INIT_DB, `USE`, or session state tracking. */
  database?: string
  /** The negotiated capability flags (the handshake response's); undefined when the handshake was not seen. */
  capabilities?: number
  private readonly parser: MysqlParser<C>
  private readonly readers: [PacketReader, PacketReader]
  /** `EGRESS` or `INGRESS`: the direction commands travel; -1 until decided. */
  private requests = -1
  private phase = GREETING
  private serverCapabilities = 0
  private readonly queue: Pending[] = []
  /** Prepared statements' text by id, least recently prepared first. */
  private readonly statements = new Map<number, string>()
  /** The statement of the last COM_STMT_PREPARE sent: what statement id -1 executes. */
  private lastPrepared: string | undefined
  /** The command byte of the previous command read in order, -1 when the commands lost their place since. */
  private previousCommand = -1
  /** Records of the response direction so far: tells a command the server had a turn after from a pipelined one. */
  private responseRecords = 0
  /** The command being read across records, before it is queued. */
  private commandStartNs = 0
  private commandTid = 0
  private commandContext = 0
  private closed = false
  private evidence = NO_EVIDENCE

  /** @internal use `MysqlParser.connection` */
  constructor(parser: MysqlParser<C>, context: C, role: MysqlRole) {
    this.parser = parser
    this.context = context
    this.readers = [new PacketReader(EGRESS, parser.limits.maxTextBytes), new PacketReader(INGRESS, parser.limits.maxTextBytes)]
    if (role === 'client') this.requests = EGRESS
    else if (role === 'server') this.requests = INGRESS
  }

  /** The role found so far: the side that sends commands is the client. */
  get role(): MysqlRole {
    return this.requests === EGRESS ? 'client' : this.requests === INGRESS ? 'server' : 'unknown'
  }

  /** Commands waiting for their responses. */
  get pending(): number {
    return this.queue.length
  }

  /** Prepared statements whose text is kept. */
  get statementCount(): number {
    return this.statements.size
  }

  /** Parsing stopped for good: TLS, compression, replication, or a refused login. */
  get stopped(): boolean {
    return this.phase === STOPPED
  }

  /** Bytes this connection holds: packet prefixes, waiting commands' and prepared statements' text. Bounded by the limits. */
  retainedBytes(): number {
    let bytes = this.readers[0].capacity() + this.readers[1].capacity()
    for (const entry of this.queue) bytes += 2 * (entry.operation.text?.length ?? 0)
    for (const text of this.statements.values()) bytes += 2 * text.length
    return bytes
  }

  /** Feeds one record. Records of a direction must come in position order. */
  push(chunk: MysqlChunk): void {
    if (this.closed || chunk.bytes <= 0 || this.phase === STOPPED) return
    const direction = chunk.direction === EGRESS ? EGRESS : INGRESS
    const reader = this.readers[direction]
    const other = this.readers[1 - direction]!
    // the protocol takes turns: the other side's next record starts a message
    if (other.state === BLIND) other.realign = true
    if (direction !== this.requests) this.responseRecords++
    this.checkPosition(reader, chunk)
    if (reader.state === BLIND) {
      if (!reader.realign || !this.realign(reader, chunk)) {
        // an answer the client received, even if it cannot be read
        if (direction !== this.requests && this.queue.length > 0) this.queue[0]!.answered = true
        this.afterRecord(reader, chunk)
        return
      }
    }
    this.read(reader, chunk)
    this.afterRecord(reader, chunk)
  }

  /**
   * The connection closed: every command still waiting is handed over, `unfollowed` when its
   * answer was being received but could not be read to its end, else `closed`. Later records are
   * ignored.
   */
  close(): void {
    if (this.closed) return
    this.closed = true
    if (this.waitsOnlyForOptionalEof()) {
      const head = this.queue.shift()!
      this.finish(head, head.operation.endNs, undefined)
    }
    const responses = this.requests < 0 ? undefined : this.readers[1 - this.requests]
    for (const entry of this.queue.splice(0)) {
      const endNs = Math.max(entry.operation.startNs, responses?.lastEndNs ?? 0)
      this.finish(entry, endNs, entry.answered && responses?.state === BLIND ? 'unfollowed' : 'closed')
    }
  }

  // ---- framing ----

  private checkPosition(reader: PacketReader, chunk: MysqlChunk): void {
    if (reader.expected < 0) {
      // the first record of this direction: a connection seen from its middle starts blind, and
      // realigns on this very record if it starts a message that fits. The kernel's positions of
      // a connection it found open start at 0, so a first record that is not the greeting (the
      // client never speaks first) tells the middle too.
      if (chunk.position > 0 || (this.phase === GREETING && (reader.direction === this.requests || notGreeting(chunk.data)))) {
        this.blind(reader, false)
        reader.realign = true
        reader.guessing = true
        if (this.phase === GREETING) this.phase = COMMANDS
      }
    } else if (chunk.position > reader.expected) {
      this.parser.stats.lostBytes += chunk.position - reader.expected
      this.blind(reader, true, reader.direction === this.requests ? 0 : chunk.endNs)
    } else if (chunk.position < reader.expected) {
      this.parser.errors.position++
      this.blind(reader, true, reader.direction === this.requests ? 0 : chunk.endNs)
    }
    reader.expected = chunk.position + chunk.bytes
  }

  private afterRecord(reader: PacketReader, chunk: MysqlChunk): void {
    reader.lastEndNs = chunk.endNs
    if (reader.state === PAYLOAD && reader.prefixAt >= 0) {
      // the record's data is not ours to keep: the prefix moves to the buffer
      this.copyPrefix(reader, chunk.data, reader.prefixAt, reader.prefixHave)
      reader.prefixAt = -1
    }
  }

  /** Packets in the record's captured bytes, then its uncaptured rest skipped by count. */
  private read(reader: PacketReader, chunk: MysqlChunk): void {
    const data = chunk.data
    const captured = Math.min(data.length, chunk.bytes)
    let at = 0
    while (at < captured && reader.state !== BLIND && reader.state !== DONE) {
      if (reader.state === HEADER) {
        if (reader.headerHave === 0 && at + 4 <= captured) {
          // the common case: the whole header in this record
          reader.length = data[at]! | (data[at + 1]! << 8) | (data[at + 2]! << 16)
          reader.seq = data[at + 3]!
          at += 4
        } else {
          while (reader.headerHave < 4 && at < captured) reader.header[reader.headerHave++] = data[at++]!
          if (reader.headerHave < 4) break
          const h = reader.header
          reader.headerHave = 0
          reader.length = h[0]! | (h[1]! << 8) | (h[2]! << 16)
          reader.seq = h[3]!
        }
        if (!this.startPacket(reader, chunk)) return
        if (reader.remaining === 0) this.endPacket(reader, chunk, data)
        continue
      }
      const n = Math.min(reader.remaining, captured - at)
      if (reader.prefixHave < reader.prefixWant && !reader.continuation) this.takePrefix(reader, data, at, n)
      at += n
      reader.remaining -= n
      if (reader.remaining === 0) this.endPacket(reader, chunk, data)
    }
    let unseen = chunk.bytes - captured
    if (unseen <= 0 || reader.state === BLIND || reader.state === DONE) return
    if (reader.state === PAYLOAD && reader.remaining >= unseen) {
      reader.remaining -= unseen
      // bytes after the uncaptured ones are not contiguous with the prefix
      reader.prefixWant = reader.prefixHave
      if (reader.remaining === 0) this.endPacket(reader, chunk, data)
      unseen = 0
    }
    // a packet header lies in the uncaptured bytes: the framing is lost until the next turn
    if (unseen > 0) this.blind(reader, false)
  }

  /** A packet header was read (`length`, `seq`): checks its sequence id and sets up the payload. */
  private startPacket(reader: PacketReader, chunk: MysqlChunk): boolean {
    if (!reader.continuation && this.phase === COMMANDS) {
      if (reader.direction === this.requests && !this.expectsClientData()) {
        // a command starts the exchange's numbering
        if (reader.seq !== 0) return this.malformed(reader, 'sequence')
        reader.nextSeq = 0
        this.commandStartNs = chunk.startNs
        this.commandTid = chunk.tid ?? 0
        this.commandContext = chunk.context ?? 0
      } else if (reader.direction !== this.requests && this.queue.length === 0) {
        return this.malformed(reader, 'unexpected-response')
      }
    }
    if (reader.nextSeq >= 0 && reader.seq !== reader.nextSeq) return this.malformed(reader, 'sequence')
    reader.nextSeq = (reader.seq + 1) & 0xff
    // the handshake, a LOCAL INFILE upload and COM_CHANGE_USER's auth are conversations: each
    // side's packets number on from the other's
    if (this.phase !== COMMANDS || this.conversing()) this.readers[1 - reader.direction]!.nextSeq = reader.nextSeq
    reader.remaining = reader.length
    reader.state = PAYLOAD
    if (!reader.continuation) {
      reader.logicalLength = 0
      reader.prefixHave = 0
      reader.prefixAt = -1
      reader.prefixWant = Math.min(reader.length, this.prefixWanted(reader))
    }
    reader.logicalLength += reader.length
    return true
  }

  /** Payload bytes to interpret: a row or a definition needs only its first bytes, a statement its text. */
  private prefixWanted(reader: PacketReader): number {
    if (reader.direction === this.requests || this.phase !== COMMANDS) return this.parser.limits.maxTextBytes
    const state = this.queue[0]?.state
    return state === R_COLUMNS || state === R_ROWS || state === R_AFTER_COLUMNS || state === R_FIELD_LIST || state === R_PREPARE_PARAMS || state === R_PREPARE_COLUMNS
      ? Math.min(ROW_PREFIX_BYTES, this.parser.limits.maxTextBytes)
      : this.parser.limits.maxTextBytes
  }

  private takePrefix(reader: PacketReader, data: Uint8Array, at: number, n: number): void {
    const take = Math.min(n, reader.prefixWant - reader.prefixHave)
    if (reader.prefixHave === 0 && reader.prefixAt < 0) {
      // the common case: the prefix is read where it lies, copied only if the packet outlives the record
      reader.prefixAt = at
      reader.prefixHave = take
      return
    }
    if (reader.prefixAt >= 0) {
      // it started in this record and continues: contiguous, so it stays in place
      reader.prefixHave += take
      return
    }
    this.copyPrefix(reader, data, at, take, reader.prefixHave)
    reader.prefixHave += take
  }

  private copyPrefix(reader: PacketReader, data: Uint8Array, from: number, n: number, to = 0): void {
    if (reader.prefix.length < to + n) {
      const grown = new Uint8Array(Math.min(this.parser.limits.maxTextBytes, Math.max(to + n, 2 * reader.prefix.length)))
      grown.set(reader.prefix.subarray(0, to))
      reader.prefix = grown
    }
    reader.prefix.set(data.subarray(from, from + n), to)
  }

  /** A physical packet ended: a logical packet ends with it unless it was MAX_PAYLOAD long. */
  private endPacket(reader: PacketReader, chunk: MysqlChunk, data: Uint8Array): void {
    reader.state = HEADER
    if (reader.length === MAX_PAYLOAD) {
      reader.continuation = true
      return
    }
    reader.continuation = false
    const bytes = reader.prefixAt >= 0 ? data : reader.prefix
    const start = reader.prefixAt >= 0 ? reader.prefixAt : 0
    reader.prefixAt = -1
    const packet = PACKET
    packet.bytes = bytes
    packet.start = start
    packet.seen = reader.prefixHave
    packet.length = reader.logicalLength
    packet.cut = reader.logicalLength - reader.prefixHave
    packet.endNs = chunk.endNs
    if (reader.direction === this.requests) this.onRequestPacket(reader, packet)
    else this.onResponsePacket(reader, packet)
  }

  /**
   * Loses this direction's place; the next record after the other side's turn starts a message.
   * `lost`: records were lost, so the commands waiting are handed over as lost, ended by
   * `endNs` at the latest (the record that showed the gap).
   */
  private blind(reader: PacketReader, lost: boolean, endNs = 0): void {
    if (reader.state === DONE) return
    if (reader.state !== BLIND) this.parser.stats.resyncs++
    reader.reset()
    reader.state = BLIND
    reader.realign = false
    reader.nextSeq = -1
    if (this.requests < 0) return
    if (reader.direction === this.requests) {
      this.previousCommand = -1
      // lost commands would pair their answers with the wrong ones: follow none until the next
      // command; what was only cut from the capture (the rest of a long command or of a LOCAL
      // INFILE upload) is answered next
      const responses = this.readers[1 - this.requests]!
      this.blind(responses, lost, endNs)
      responses.realign = !lost
      return
    }
    if (!lost) return
    // which command the answers after the gap belong to is unknown until the next command
    for (const entry of this.queue) entry.operation.incomplete = 'lost'
    reader.lastEndNs = Math.max(reader.lastEndNs, endNs)
    this.endUnfollowed(true)
  }

  private malformed(reader: PacketReader, reason: MysqlErrorReason): false {
    if (this.evidence !== PROVEN) {
      // a connection taken for MySQL from its middle that does not keep to the protocol is not MySQL
      this.parser.stats.rejected++
      this.stop(undefined)
      return false
    }
    this.parser.errors[reason]++
    this.blind(reader, false)
    return false
  }

  /**
   * A blind direction's record after the other side's turn: whether it starts a message that fits
   * what is due. Commands start with sequence id 0 and a known command byte; a response is due
   * only while a command waits for one.
   */
  private realign(reader: PacketReader, chunk: MysqlChunk): boolean {
    reader.realign = false
    // a record that may start anywhere (the first seen, or one lost in the handshake) must look
    // like a whole command, as clients send them
    const guessing = this.requests < 0 || (reader.direction === this.requests && (reader.guessing || this.phase !== COMMANDS))
    reader.guessing = false
    if (guessing) {
      const data = chunk.data
      const length = data.length < 5 ? -1 : data[0]! | (data[1]! << 8) | (data[2]! << 16)
      if (length + 4 !== chunk.bytes || data[3] !== 0 || COMMAND_RESPONSES[data[4]!] === undefined) return this.resyncFailed()
      // the side whose record is a command is the client, and the handshake is over
      if (this.requests < 0) this.requests = reader.direction
      this.phase = COMMANDS
      if (this.evidence === NO_EVIDENCE) this.evidence = GUESSED
    }
    if (reader.direction === this.requests) {
      // the server had its turn: a LOCAL INFILE upload under way ended in what was not seen
      const head = this.queue[0]
      if (head?.state === R_INFILE) head.state = R_INFILE_DONE
    } else {
      const head = this.queue[0]
      if (head === undefined || this.phase !== COMMANDS) return this.resyncFailed()
      if (head.state === R_INFILE || head.state === R_INFILE_DONE) {
        // a LOCAL INFILE upload whose end the capture hid: this is the server's answer to it
        head.state = R_INFILE_DONE
        reader.reset()
        reader.nextSeq = -1
        return true
      }
      // only the start of an answer can be recognised
      if (head.answered) return this.resyncFailed()
      reader.reset()
      reader.nextSeq = head.responseSeq
      return true
    }
    reader.reset()
    return true
  }

  private resyncFailed(): false {
    // seen from its middle, answers to commands not seen are expected, not malformed
    if (this.evidence === PROVEN) this.parser.errors.resync++
    return false
  }

  /**
   * The client sent a command while the responses could not be followed: the commands the server
   * had a turn after are over, ended at the last record received (their answers lost if none of
   * it came); commands pipelined since, with no answer yet, still wait, unless `all`.
   */
  private endUnfollowed(all = false): void {
    const responses = this.readers[1 - this.requests]!
    while (this.queue.length > 0 && (all || this.queue[0]!.responseRecordsBefore < this.responseRecords)) {
      const entry = this.queue.shift()!
      if (!entry.answered) entry.operation.incomplete ??= 'lost'
      this.finish(entry, Math.max(entry.operation.startNs, responses.lastEndNs), entry.operation.incomplete ?? 'unfollowed')
    }
  }

  /** Whether the exchange under way is a conversation (LOCAL INFILE upload, COM_CHANGE_USER auth) rather than command and response. */
  private conversing(): boolean {
    const state = this.queue[0]?.state
    return state === R_INFILE || state === R_AUTH
  }

  /** Whether the client may send data packets that are not commands now (LOCAL INFILE, auth). */
  private expectsClientData(): boolean {
    const head = this.queue[0]
    return head !== undefined && (head.state === R_INFILE || (head.state === R_AUTH && head.answered))
  }

  /**
   * Without the handshake, a prepare's response may or may not end with an EOF: the one state
   * where a new command, not the server, says that the response was over.
   */
  private waitsOnlyForOptionalEof(): boolean {
    const head = this.queue[0]
    return head !== undefined && this.capabilities === undefined && (head.state === R_PREPARE_PARAMS_EOF || head.state === R_PREPARE_COLUMNS_EOF)
  }

  // ---- client packets ----

  private onRequestPacket(reader: PacketReader, packet: Packet): void {
    switch (this.phase) {
      case LOGIN: return this.onHandshakeResponse(reader, packet)
      case AUTH: return // auth data: never read
      case COMMANDS: break
      default: return
    }
    const head = this.queue[0]
    if (head !== undefined && head.state === R_INFILE) {
      // the file's content; an empty packet ends it
      if (packet.length === 0) head.state = R_INFILE_DONE
      return
    }
    if (head !== undefined && head.state === R_AUTH && head.answered) return
    this.onCommand(reader, packet)
  }

  private onCommand(reader: PacketReader, packet: Packet): void {
    // a command whose first byte was not captured: its answer cannot be read either
    if (packet.seen === 0) return this.blind(reader, false)
    const { bytes, start } = packet
    const command = bytes[start]!
    const responseState = COMMAND_RESPONSES[command]
    if (responseState === undefined) return void this.malformed(reader, 'command')
    if (this.waitsOnlyForOptionalEof()) {
      // the prepare's response ended without an EOF, at its last definition
      const head = this.queue.shift()!
      this.finish(head, head.operation.endNs, undefined)
    }
    if (this.readers[1 - this.requests]!.state === BLIND) this.endUnfollowed()
    if (command === COM_BINLOG_DUMP || command === COM_BINLOG_DUMP_GTID) return this.stop('replication')
    const operation: MysqlOperation = {
      command,
      textBytesCut: 0,
      namespace: this.database,
      startNs: this.commandStartNs,
      endNs: packet.endNs,
      tid: this.commandTid,
      context: this.commandContext,
    }
    const entry = new Pending(operation, responseState, this.responseRecords)
    if (responseState === R_ROWS) operation.rows = 0
    switch (command) {
      case COM_QUERY:
        this.readQuery(operation, packet)
        if (operation.text !== undefined) this.useSchema(entry, operation)
        break
      case COM_STMT_PREPARE:
        this.readText(operation, packet, 1)
        this.lastPrepared = operation.text
        break
      case COM_INIT_DB:
        this.readText(operation, packet, 1)
        entry.changesNamespace = true
        if (operation.textBytesCut === 0) entry.newNamespace = operation.text
        break
      case COM_STMT_EXECUTE:
      case COM_STMT_FETCH:
      case COM_STMT_RESET:
      case COM_STMT_CLOSE:
      case COM_STMT_SEND_LONG_DATA:
      case COM_STMT_BULK_EXECUTE:
        if (packet.length < 5) return void this.malformed(reader, 'command')
        this.readStatementId(operation, packet)
        break
      case COM_CHANGE_USER:
        entry.changesNamespace = true
        entry.newNamespace = this.readChangeUser(packet)
        break
    }
    const previous = this.previousCommand
    this.previousCommand = command
    if (command === COM_STMT_CLOSE) {
      this.statements.delete(operation.statementId!)
      return
    }
    if (operation.statementId === LAST_PREPARED && previous !== COM_STMT_PREPARE) {
      // pipelined behind a prepare that was not seen, whose answer comes first: neither answer
      // can be paired, so none is followed until the next command
      const responses = this.readers[1 - this.requests]!
      this.blind(responses, false)
      responses.realign = false
      return
    }
    if (responseState === NO_RESPONSE) return
    if (this.queue.length >= this.parser.limits.maxPending) {
      this.parser.stats.queueOverflows++
      // answers to commands no longer queued would pair with the wrong ones: follow none of them
      this.blind(this.readers[1 - this.requests]!, true)
    }
    entry.responseSeq = reader.nextSeq
    // a command pipelined behind others is answered after them
    if (this.queue.length === 0) this.readers[1 - this.requests]!.nextSeq = entry.responseSeq
    this.queue.push(entry)
  }

  /** `USE db` by COM_QUERY, for servers that do not track session state: the schema it selects, if the capture kept all of it. */
  private useSchema(entry: Pending, operation: MysqlOperation): void {
    const schema = useStatementSchema(operation.text!)
    if (schema === undefined) return
    entry.changesNamespace = true
    if (operation.textBytesCut === 0) entry.newNamespace = schema
  }

  /** COM_QUERY: the text, after MySQL 8's query attributes when the client negotiated them. */
  private readQuery(operation: MysqlOperation, packet: Packet): void {
    let at = packet.start + 1
    if (this.capabilities !== undefined && (this.capabilities & CLIENT_QUERY_ATTRIBUTES) !== 0) {
      at = skipQueryAttributes(packet.bytes, at, packet.start + packet.seen)
      if (at < 0) {
        // the attributes run past what was captured: the text was not seen
        operation.textBytesCut = packet.length
        this.parser.stats.textBytesCut += packet.length
        return
      }
    }
    this.readText(operation, packet, at - packet.start)
  }

  private readText(operation: MysqlOperation, packet: Packet, offset: number): void {
    const end = packet.start + packet.seen
    const from = Math.min(packet.start + offset, end)
    operation.text = utf8(packet.bytes, from, end)
    operation.textBytesCut = packet.cut
    this.parser.stats.textBytesCut += packet.cut
  }

  /** The statement id, unless the capture cut it; executions get the prepared text. */
  private readStatementId(operation: MysqlOperation, packet: Packet): void {
    if (packet.seen < 5) return
    const id = u32(packet.bytes, packet.start + 1)
    operation.statementId = id
    if (operation.command === COM_STMT_EXECUTE || operation.command === COM_STMT_FETCH || operation.command === COM_STMT_BULK_EXECUTE) {
      const text = id === LAST_PREPARED ? this.lastPrepared : this.statements.get(id)
      if (text === undefined) this.parser.stats.unknownStatements++
      else operation.text = text
    }
  }

  /** COM_CHANGE_USER: the user and the database it asks for (the auth response is skipped, never read). */
  private readChangeUser(packet: Packet): string | undefined {
    const { bytes } = packet
    const end = packet.start + packet.seen
    let at = packet.start + 1
    const userEnd = indexOfZero(bytes, at, end)
    if (userEnd < 0) return undefined
    this.user = utf8(bytes, at, userEnd)
    at = userEnd + 1
    if (this.capabilities === undefined || (this.capabilities & CLIENT_SECURE_CONNECTION) !== 0) {
      if (at >= end) return undefined
      at += 1 + bytes[at]!
    } else {
      const authEnd = indexOfZero(bytes, at, end)
      if (authEnd < 0) return undefined
      at = authEnd + 1
    }
    const databaseEnd = indexOfZero(bytes, at, end)
    if (databaseEnd < 0) return undefined
    return databaseEnd === at ? undefined : utf8(bytes, at, databaseEnd)
  }

  // ---- server packets ----

  private onResponsePacket(reader: PacketReader, packet: Packet): void {
    switch (this.phase) {
      case GREETING: return this.onGreeting(reader, packet)
      case LOGIN: return void this.malformed(reader, 'unexpected-response')
      case AUTH: return this.onAuthResponse(packet)
      case COMMANDS: break
      default: return
    }
    const entry = this.queue[0]
    if (entry === undefined) return void this.malformed(reader, 'unexpected-response')
    entry.answered = true
    if (packet.seen === 0) {
      // its first byte was not captured: what it was, and so what follows, is unknown
      return this.blind(reader, false)
    }
    const first = packet.bytes[packet.start]!
    switch (entry.state) {
      case R_FIRST:
      case R_INFILE_DONE:
        return this.onFirstPacket(reader, entry, packet, first)
      case R_COLUMNS:
        if (first === 0xff) return this.onError(entry, packet)
        if (--entry.left === 0) entry.state = R_AFTER_COLUMNS
        return
      case R_AFTER_COLUMNS:
        entry.state = R_ROWS
        if (first === 0xfe && packet.length === 5) {
          // the EOF after the definitions; an open cursor means the rows come by COM_STMT_FETCH
          if (packet.seen < 5) return this.blind(reader, false)
          if ((u16(packet.bytes, packet.start + 3) & SERVER_STATUS_CURSOR_EXISTS) !== 0) this.complete(entry, packet)
          return
        }
        return this.onRow(entry, packet, first)
      case R_ROWS:
        return this.onRow(entry, packet, first)
      case R_PREPARE:
        return this.onPrepareOk(reader, entry, packet, first)
      case R_PREPARE_PARAMS:
      case R_PREPARE_COLUMNS:
        if (--entry.left === 0) this.afterPrepareDefinitions(entry, packet, entry.state === R_PREPARE_PARAMS ? R_PREPARE_PARAMS_EOF : R_PREPARE_COLUMNS_EOF)
        return
      case R_PREPARE_PARAMS_EOF:
      case R_PREPARE_COLUMNS_EOF:
        if (first !== 0xfe || packet.length !== 5) {
          // without the handshake: no EOF came (CLIENT_DEPRECATE_EOF), this is the first column definition
          if (this.capabilities !== undefined || entry.state !== R_PREPARE_PARAMS_EOF || entry.columns === 0) return void this.malformed(reader, 'response')
          entry.state = R_PREPARE_COLUMNS
          entry.left = entry.columns
          if (--entry.left === 0) this.afterPrepareDefinitions(entry, packet, R_PREPARE_COLUMNS_EOF)
          return
        }
        if (entry.state === R_PREPARE_PARAMS_EOF && entry.columns > 0) {
          entry.state = R_PREPARE_COLUMNS
          entry.left = entry.columns
          return
        }
        return this.complete(entry, packet)
      case R_FIELD_LIST:
        if (first === 0xff) return this.onError(entry, packet)
        if (first === 0xfe && packet.length < 9) return this.complete(entry, packet)
        return
      case R_ANY:
        return this.complete(entry, packet)
      case R_AUTH:
        return this.onChangeUserResponse(entry, packet, first)
      case R_INFILE:
        return void this.malformed(reader, 'response')
    }
  }

  /** The first packet of a result: OK, ERR, EOF, a LOCAL INFILE request, or a result set. */
  private onFirstPacket(reader: PacketReader, entry: Pending, packet: Packet, first: number): void {
    if (first === 0x00 && packet.length >= 7) return this.onOk(entry, packet)
    if (first === 0xff) return this.onError(entry, packet)
    if (first === 0xfe && packet.length < 9) return this.complete(entry, packet)
    if (first === 0xfb && entry.state === R_FIRST && entry.operation.command === COM_QUERY) {
      // the client uploads the file in packets numbered on from this one
      entry.state = R_INFILE
      this.readers[this.requests]!.nextSeq = reader.nextSeq
      return
    }
    // a result set: its column count, then maybe "metadata follows" (MySQL 8 optional metadata, MariaDB cached metadata)
    const count = lengthEncoded(packet.bytes, packet.start, packet.start + packet.seen)
    const countBytes = lengthEncodedSize(first)
    // the count cut by the capture: what follows cannot be counted
    if (count < 0 && packet.cut > 0 && first >= 0xfc) return this.blind(reader, false)
    if (count <= 0 || (packet.length !== countBytes && packet.length !== countBytes + 1)) return void this.malformed(reader, 'response')
    const metadata = packet.length === countBytes + 1 ? packet.bytes[packet.start + countBytes] : 1
    if (metadata === undefined) return this.blind(reader, false)
    entry.operation.rows ??= 0
    if (metadata === 0) {
      entry.state = R_AFTER_COLUMNS
      return
    }
    entry.state = R_COLUMNS
    entry.left = count
  }

  private onRow(entry: Pending, packet: Packet, first: number): void {
    if (first === 0xfe && packet.length < MAX_PAYLOAD) {
      // the end of the rows: an EOF, or an OK with CLIENT_DEPRECATE_EOF
      if (packet.length === 5) {
        // whether more results follow is in the status flags
        if (packet.seen < 5) return this.blind(this.readers[1 - this.requests]!, false)
        return this.endResult(entry, packet, u16(packet.bytes, packet.start + 3))
      }
      return this.onOk(entry, packet)
    }
    if (first === 0xff) return this.onError(entry, packet)
    if (entry.operation.rows !== undefined) entry.operation.rows++
  }

  private onOk(entry: Pending, packet: Packet): void {
    const ok = readOk(packet, this.capabilities)
    if (ok === undefined) {
      // the status flags were not captured: whether more results follow is unknown
      return this.blind(this.readers[1 - this.requests]!, false)
    }
    if (ok.affectedRows > 0) entry.operation.affectedRows = (entry.operation.affectedRows ?? 0) + ok.affectedRows
    if (ok.schema !== undefined) {
      entry.changesNamespace = true
      entry.newNamespace = ok.schema
    }
    this.endResult(entry, packet, ok.status)
  }

  /** A result ended with these status flags: the response ends too unless more results follow. */
  private endResult(entry: Pending, packet: Packet, status: number): void {
    if ((status & SERVER_MORE_RESULTS_EXISTS) !== 0) {
      entry.state = R_FIRST
      return
    }
    this.complete(entry, packet)
  }

  private onError(entry: Pending, packet: Packet): void {
    const error = readError(packet)
    // MariaDB reports the progress of long commands as ERR packets with code 0xffff
    if (error?.code === PROGRESS_REPORT) return
    entry.operation.error = error ?? { code: 0, sqlState: '', message: '' }
    entry.changesNamespace = false
    this.complete(entry, packet)
  }

  private onPrepareOk(reader: PacketReader, entry: Pending, packet: Packet, first: number): void {
    if (first === 0xff) return this.onError(entry, packet)
    if (first !== 0x00 || packet.length < 12) return void this.malformed(reader, 'response')
    if (packet.seen < 9) return this.blind(reader, false)
    const { bytes, start } = packet
    const id = u32(bytes, start + 1)
    entry.operation.statementId = id
    const text = entry.operation.text
    if (text !== undefined) this.remember(id, text)
    const columns = u16(bytes, start + 5)
    const params = u16(bytes, start + 7)
    // MySQL 8 with optional metadata: a 0 here means no definitions follow
    const metadata = packet.length >= 13 && packet.seen >= 13 ? bytes[start + 12]! : 1
    entry.columns = metadata === 0 ? 0 : columns
    if (metadata !== 0 && params > 0) {
      entry.state = R_PREPARE_PARAMS
      entry.left = params
    } else if (entry.columns > 0) {
      entry.state = R_PREPARE_COLUMNS
      entry.left = entry.columns
    } else {
      this.complete(entry, packet)
    }
  }

  /** The last definition of a PREPARE_OK's list: an EOF follows unless CLIENT_DEPRECATE_EOF. */
  private afterPrepareDefinitions(entry: Pending, packet: Packet, eofState: number): void {
    const deprecateEof = this.capabilities !== undefined && (this.capabilities & CLIENT_DEPRECATE_EOF) !== 0
    if (!deprecateEof) {
      // without the handshake an EOF may or may not come: the next command settles it
      entry.state = eofState
      entry.operation.endNs = packet.endNs
      return
    }
    if (eofState === R_PREPARE_PARAMS_EOF && entry.columns > 0) {
      entry.state = R_PREPARE_COLUMNS
      entry.left = entry.columns
      return
    }
    this.complete(entry, packet)
  }

  private onChangeUserResponse(entry: Pending, packet: Packet, first: number): void {
    if (first === 0xff) return this.onError(entry, packet)
    if (first === 0x00 && packet.length >= 7) {
      this.statements.clear()
      return this.onOk(entry, packet)
    }
    // an auth switch or more auth data: the client answers, then the server again
  }

  private remember(id: number, text: string): void {
    this.statements.delete(id)
    if (this.statements.size >= this.parser.limits.maxStatements) {
      this.statements.delete(this.statements.keys().next().value!)
      this.parser.stats.statementsEvicted++
    }
    this.statements.set(id, text)
  }

  private complete(entry: Pending, packet: Packet): void {
    const operation = entry.operation
    if (operation.error === undefined) {
      if (entry.changesNamespace) this.database = entry.newNamespace
      if (operation.command === COM_RESET_CONNECTION) this.statements.clear()
    }
    this.queue.shift()
    const next = this.queue[0]
    if (next !== undefined) this.readers[1 - this.requests]!.nextSeq = next.responseSeq
    this.finish(entry, packet.endNs, operation.incomplete)
  }

  private finish(entry: Pending, endNs: number, incomplete: MysqlOperation['incomplete']): void {
    if (this.evidence !== PROVEN) {
      // taken for MySQL from its middle: an answer read to its end as the protocol says proves it
      if (incomplete !== undefined) return
      this.evidence = PROVEN
    }
    const operation = entry.operation
    operation.endNs = Math.max(endNs, operation.endNs)
    if (incomplete !== undefined) {
      operation.incomplete = incomplete
      // rows counted before the end was lost are not the result's count
      if (operation.rows !== undefined) delete operation.rows
      if (incomplete === 'unfollowed') this.parser.stats.unfollowed++
    }
    this.parser.onOperation(operation, this.context, this.requests === INGRESS ? 'server' : 'client')
  }

  // ---- handshake ----

  private onGreeting(reader: PacketReader, packet: Packet): void {
    const { bytes, start, seen } = packet
    const end = start + seen
    if (seen > 0 && bytes[start] === 0xff) {
      // refused before any handshake ("Host ... is blocked", too many connections)
      this.parser.stats.authFailures++
      return this.stop(undefined)
    }
    const versionEnd = seen > 0 && bytes[start] === 10 ? indexOfZero(bytes, start + 1, end) : -1
    const whole = versionEnd >= 0 && versionEnd + 1 + 4 + 8 + 1 + 2 <= end
    if (!whole && (packet.cut === 0 || seen === 0 || bytes[start] !== 10)) {
      this.parser.errors.greeting++
      return this.stop(undefined)
    }
    // a greeting cut by the capture leaves the version and the server's capabilities unknown
    this.serverCapabilities = 0xffffffff
    if (versionEnd >= 0) {
      const version = latin1(bytes, start + 1, versionEnd)
      const mariadb = /mariadb/i.test(version)
      this.server = { version: mariadb && version.startsWith('5.5.5-') ? version.slice(6) : version, mariadb }
    }
    if (whole) {
      // the client asks only for what the server offers: capabilities not captured are taken as offered
      const at = versionEnd + 1 + 4 + 8 + 1
      const upper = at + 2 + 1 + 2 + 2 <= end ? u16(bytes, at + 5) : 0xffff
      this.serverCapabilities = (u16(bytes, at) | (upper << 16)) >>> 0
    }
    if (this.requests < 0) this.requests = 1 - reader.direction
    this.phase = LOGIN
    this.evidence = PROVEN
  }

  private onHandshakeResponse(reader: PacketReader, packet: Packet): void {
    const { bytes, start, seen } = packet
    const end = start + seen
    if (seen < 4) {
      if (packet.cut === 0) return void this.malformedHandshake(reader)
      // cut by the capture: capabilities, user and database unknown
      this.phase = AUTH
      return
    }
    const capabilities = u32(bytes, start)
    if ((capabilities & CLIENT_PROTOCOL_41) === 0) {
      // a pre-4.1 client: its packets have other layouts, which nothing current uses
      this.parser.errors.handshake++
      return this.stop(undefined)
    }
    if (packet.length === 32 && (capabilities & CLIENT_SSL) !== 0) {
      // an SSL request: what follows is a TLS handshake and ciphertext
      return this.stop('tls')
    }
    this.capabilities = capabilities & this.serverCapabilities
    const userEnd = seen > 32 ? indexOfZero(bytes, start + 32, end) : -1
    if (userEnd < 0) {
      // the user did not fit in the capture; the exchange can still be followed
      this.phase = AUTH
      return
    }
    this.user = utf8(bytes, start + 32, userEnd)
    this.database = this.handshakeDatabase(bytes, userEnd + 1, end)
    this.phase = AUTH
  }

  /** The database named after the auth response, which is skipped by its length, never decoded. */
  private handshakeDatabase(bytes: Uint8Array, at: number, end: number): string | undefined {
    const capabilities = this.capabilities!
    if ((capabilities & CLIENT_CONNECT_WITH_DB) === 0 || at >= end) return undefined
    if ((capabilities & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA) !== 0) {
      const length = lengthEncoded(bytes, at, end)
      if (length < 0) return undefined
      at += lengthEncodedSize(bytes[at]!) + length
    } else if ((capabilities & CLIENT_SECURE_CONNECTION) !== 0) {
      at += 1 + bytes[at]!
    } else {
      const authEnd = indexOfZero(bytes, at, end)
      if (authEnd < 0) return undefined
      at = authEnd + 1
    }
    const databaseEnd = indexOfZero(bytes, at, end)
    if (databaseEnd <= at) return undefined
    return utf8(bytes, at, databaseEnd)
  }

  private malformedHandshake(reader: PacketReader): void {
    this.parser.errors.handshake++
    this.blind(reader, false)
    this.phase = COMMANDS
  }

  private onAuthResponse(packet: Packet): void {
    if (packet.seen === 0) return
    const first = packet.bytes[packet.start]!
    if (first === 0xff) {
      this.parser.stats.authFailures++
      return this.stop(undefined)
    }
    // 0xfe: auth switch; 0x01: more data (caching_sha2, ed25519...): the client answers
    if (first !== 0x00 || packet.length < 7) return
    const ok = readOk(packet, this.capabilities)
    if (ok?.schema !== undefined) this.database = ok.schema
    const capabilities = this.capabilities ?? 0
    if ((capabilities & (CLIENT_COMPRESS | CLIENT_ZSTD_COMPRESSION_ALGORITHM)) !== 0) return this.stop('compressed')
    this.phase = COMMANDS
  }

  private stop(reason: 'tls' | 'compressed' | 'replication' | undefined): void {
    if (reason !== undefined) this.parser.stats[reason]++
    this.phase = STOPPED
    for (const reader of this.readers) {
      reader.reset()
      reader.state = DONE
    }
  }
}

/** The logical packet handed to the interpreters: its first `seen` bytes at `bytes[start]`. */
interface Packet {
  bytes: Uint8Array
  start: number
  seen: number
  /** The payload's whole length. */
  length: number
  /** Bytes of the payload not in `seen`. */
  cut: number
  /** Exit of the record that carried its last byte. */
  endNs: number
}

/** One packet object for every packet: interpreters read it synchronously and keep nothing of it. */
const PACKET: Packet = { bytes: new Uint8Array(0), start: 0, seen: 0, length: 0, cut: 0, endNs: 0 }

/** Enough of a row or definition packet to read an EOF, an OK's status or an ERR's message. */
const ROW_PREFIX_BYTES = 512

const NO_RESPONSE = -1
/** What each command's response starts with; NO_RESPONSE for commands the server does not answer. */
const COMMAND_RESPONSES: (number | undefined)[] = []
for (const command of [0x02, 0x03, 0x05, 0x06, 0x07, 0x08, 0x0a, 0x0c, 0x0d, 0x0e, 0x15, 0x17, 0x1a, 0x1b, 0x1f, 0xfa]) COMMAND_RESPONSES[command] = R_FIRST
COMMAND_RESPONSES[COM_STMT_FETCH] = R_ROWS
COMMAND_RESPONSES[COM_STMT_PREPARE] = R_PREPARE
COMMAND_RESPONSES[COM_FIELD_LIST] = R_FIELD_LIST
COMMAND_RESPONSES[COM_STATISTICS] = R_ANY
COMMAND_RESPONSES[COM_CHANGE_USER] = R_AUTH
for (const command of [COM_QUIT, COM_STMT_SEND_LONG_DATA, COM_STMT_CLOSE, COM_BINLOG_DUMP, COM_BINLOG_DUMP_GTID]) COMMAND_RESPONSES[command] = NO_RESPONSE

interface OkPacket {
  affectedRows: number
  status: number
  /** The schema session state tracking reported, else undefined. */
  schema: string | undefined
}

/** One result object for every OK packet: callers read it at once and keep nothing of it. */
const OK: OkPacket = { affectedRows: 0, status: 0, schema: undefined }

/** An OK packet's affected rows, status flags, and the schema when session state tracking reported one; undefined when the status was not captured. */
function readOk(packet: Packet, capabilities: number | undefined): OkPacket | undefined {
  const { bytes, start } = packet
  const end = start + packet.seen
  let at = start + 1
  const affectedRows = lengthEncoded(bytes, at, end)
  if (affectedRows < 0) return undefined
  at += lengthEncodedSize(bytes[at]!)
  if (at >= end) return undefined
  at += lengthEncodedSize(bytes[at]!) // last insert id
  if (at + 4 > end) return undefined
  const status = u16(bytes, at)
  at += 4 // status, warnings
  const result = OK
  result.affectedRows = affectedRows
  result.status = status
  result.schema = undefined
  const tracking = capabilities === undefined || (capabilities & CLIENT_SESSION_TRACK) !== 0
  if (!tracking || (status & SERVER_SESSION_STATE_CHANGED) === 0 || at >= end) return result
  const infoLength = lengthEncoded(bytes, at, end)
  if (infoLength < 0) return result
  at += lengthEncodedSize(bytes[at]!) + infoLength
  const stateLength = lengthEncoded(bytes, at, end)
  if (stateLength < 0) return result
  at += lengthEncodedSize(bytes[at]!)
  const stateEnd = Math.min(end, at + stateLength)
  while (at + 2 <= stateEnd) {
    const type = bytes[at]!
    const dataLength = lengthEncoded(bytes, at + 1, stateEnd)
    if (dataLength < 0) break
    const dataAt = at + 1 + lengthEncodedSize(bytes[at + 1]!)
    if (type === SESSION_TRACK_SCHEMA) {
      const nameLength = lengthEncoded(bytes, dataAt, stateEnd)
      const nameAt = dataAt + (nameLength < 0 ? 0 : lengthEncodedSize(bytes[dataAt]!))
      if (nameLength >= 0 && nameAt + nameLength <= stateEnd) result.schema = utf8(bytes, nameAt, nameAt + nameLength)
    }
    at = dataAt + dataLength
  }
  return result
}

/** Whether a record's first bytes show it does not start with a greeting (packet 0 of protocol 10). */
function notGreeting(data: Uint8Array): boolean {
  return data.length >= 5 && (data[3] !== 0 || data[4] !== 10)
}

/** The first 0 in `bytes[from, end)`, or -1. */
function indexOfZero(bytes: Uint8Array, from: number, end: number): number {
  const at = bytes.indexOf(0, from)
  return at < 0 || at >= end ? -1 : at
}

function readError(packet: Packet): MysqlError | undefined {
  const { bytes, start } = packet
  const end = start + packet.seen
  if (end - start < 3) return undefined
  const code = u16(bytes, start + 1)
  let at = start + 3
  let sqlState = ''
  if (at + 6 <= end && bytes[at] === 0x23) {
    sqlState = latin1(bytes, at + 1, at + 6)
    at += 6
  }
  return { code, sqlState, message: utf8(bytes, at, end) }
}

/** `USE db` in a COM_QUERY: the schema it selects (for servers that do not track session state). */
function useStatementSchema(text: string): string | undefined {
  const match = /^\s*use\s+(?:`((?:[^`]|``)+)`|([^\s;`]+))\s*;?\s*$/i.exec(text)
  if (match === null) return undefined
  return match[1] !== undefined ? match[1].replaceAll('``', '`') : match[2]
}

/**
 * Skips MySQL 8 query attributes (CLIENT_QUERY_ATTRIBUTES) at the start of a COM_QUERY payload:
 * the index of the statement text, or -1 when the attributes run past `end`.
 */
function skipQueryAttributes(bytes: Uint8Array, at: number, end: number): number {
  const count = lengthEncoded(bytes, at, end)
  if (count < 0) return -1
  at += lengthEncodedSize(bytes[at]!)
  if (lengthEncoded(bytes, at, end) < 0) return -1
  at += lengthEncodedSize(bytes[at]!) // parameter set count, always 1
  if (count === 0) return at
  const nullBitmap = at
  at += (count + 7) >> 3
  if (at >= end || bytes[at] !== 1) return -1 // new-params-bound flag: types and names follow
  at++
  const typesAt = at
  for (let i = 0; i < count; i++) {
    at += 2
    const nameLength = lengthEncoded(bytes, at, end)
    if (nameLength < 0) return -1
    at += lengthEncodedSize(bytes[at]!) + nameLength
  }
  let typeAt = typesAt
  for (let i = 0; i < count; i++) {
    const type = bytes[typeAt]!
    typeAt += 2
    const nameLength = lengthEncoded(bytes, typeAt, end)
    typeAt += lengthEncodedSize(bytes[typeAt]!) + nameLength
    if (((bytes[nullBitmap + (i >> 3)]! >> (i & 7)) & 1) === 1) continue
    const size = binaryValueSize(type, bytes, at, end)
    if (size < 0) return -1
    at += size
  }
  return at <= end ? at : -1
}

/** Bytes of one binary-protocol value of `type` at `at`, or -1 when it runs past `end`. */
function binaryValueSize(type: number, bytes: Uint8Array, at: number, end: number): number {
  switch (type) {
    case 0x01: return 1 // TINY
    case 0x02: case 0x0d: return 2 // SHORT, YEAR
    case 0x03: case 0x04: case 0x09: return 4 // LONG, FLOAT, INT24
    case 0x05: case 0x08: return 8 // DOUBLE, LONGLONG
    case 0x07: case 0x0a: case 0x0b: case 0x0c: // TIMESTAMP, DATE, TIME, DATETIME: a length byte first
      return at < end ? 1 + bytes[at]! : -1
    case 0x06: return 0 // NULL
    default: {
      const length = lengthEncoded(bytes, at, end)
      return length < 0 ? -1 : lengthEncodedSize(bytes[at]!) + length
    }
  }
}

/** A length-encoded integer at `at`, or -1 when it is not complete before `end` or is NULL/invalid. Lengths past 2^53 read as -1. */
function lengthEncoded(bytes: Uint8Array, at: number, end: number): number {
  if (at >= end) return -1
  const first = bytes[at]!
  if (first < 0xfb) return first
  if (first === 0xfc) return at + 3 <= end ? bytes[at + 1]! | (bytes[at + 2]! << 8) : -1
  if (first === 0xfd) return at + 4 <= end ? bytes[at + 1]! | (bytes[at + 2]! << 8) | (bytes[at + 3]! << 16) : -1
  if (first === 0xfe) {
    if (at + 9 > end) return -1
    const high = u32(bytes, at + 5)
    return high >= 0x200000 ? -1 : high * 0x100000000 + u32(bytes, at + 1)
  }
  return -1
}

function lengthEncodedSize(first: number): number {
  return first < 0xfb ? 1 : first === 0xfc ? 3 : first === 0xfd ? 4 : first === 0xfe ? 9 : 1
}

function u16(bytes: Uint8Array, at: number): number {
  return (bytes[at] ?? 0) | ((bytes[at + 1] ?? 0) << 8)
}

function u32(bytes: Uint8Array, at: number): number {
  return ((bytes[at] ?? 0) | ((bytes[at + 1] ?? 0) << 8) | ((bytes[at + 2] ?? 0) << 16) | ((bytes[at + 3] ?? 0) << 24)) >>> 0
}

