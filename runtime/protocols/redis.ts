/**
 * Redis stream parser (RESP2 and RESP3): turns the two byte streams of a client connection, as the
 * kernel captured them, into commands paired with their replies.
 *
 * It is pure TypeScript for plugin isolates (V8 builtins only). The input is the `sockdata`
 * records of one connection: each record says how many bytes the call moved (`bytes`) but carries
 * only the first of them (`data`), and its `position` in its direction's stream. Commands are RESP
 * arrays of bulk strings or inline lines; replies are any RESP2/RESP3 value. Replies answer
 * commands in order (pipelining is many commands before any reply), except what answers no
 * command: pub/sub messages, RESP3 pushes, and the confirmations of SUBSCRIBE-like commands, which
 * close those commands instead. MULTI/EXEC: a queued command's `+QUEUED` is not its result; EXEC's
 * array is, element by element (or EXEC's error, or its null when a WATCH aborted it); DISCARD ends
 * them unexecuted.
 *
 * Cost and memory: values are counted by their length, never copied or decoded; of a command only
 * its name, its subcommand and its first key are kept (the key only where the command has one at a
 * fixed place, and only up to `maxKeyBytes`); of a reply only an error's prefix and text, and the
 * first elements of arrays that may be pub/sub messages. Command objects are reused once their
 * handler returns. At most `maxPending` commands wait for replies per connection.
 *
 * When its place in a stream is lost (lost records, bytes beyond the capture that are not inside a
 * value, malformed input), a direction resynchronises at the next command (`*<n>\r\n$`) or reply
 * boundary, and commands are paired again only once that is safe (see `RedisConnection`). Malformed
 * input is counted in `RedisParser.errors` by reason and never throws.
 *
 * ```ts
 * const parser = new RedisParser<Conn>((command, conn) => emitSpan(conn, command))
 * const connection = parser.connection(conn, 'client')
 * connection.push({ direction: EGRESS, position, bytes, data, startNs, endNs })
 * connection.close()
 * ```
 */
import { latin1 } from './bytes.ts'
import { redisCommandsByFirstKey } from './redis-commands.ts'

/** The process sent these bytes. */
export const EGRESS = 0
/** The process received these bytes. */
export const INGRESS = 1

/** One send or receive on the connection, in the order the calls completed. */
export interface RedisChunk {
  /** `EGRESS` (0) or `INGRESS` (1). */
  direction: number
  /** Bytes of this direction before this call; a jump means records were lost. */
  position: number
  /** Bytes the call moved. */
  bytes: number
  /** The first bytes of the call (all of them when it was small enough to capture). */
  data: Uint8Array
  /** Boot-clock ns: when the call's bytes were there (entry of a send, exit of a receive), and its exit. */
  startNs: number
  endNs: number
  /** The calling thread: a command's `tid` is that of the call that carried its first byte. */
  tid?: number
  /** The record's `context` (the HTTP request its thread was serving, 0 for none): a command's is its first byte's call's. */
  context?: number
}

/** `client`: this process connected, so it sends the commands. `server`: it accepted. */
export type RedisRole = 'client' | 'server' | 'unknown'

/**
 * How a command ended. `ok` and `error`: its reply (for a command in a transaction, its element of
 * EXEC's reply, or EXEC's own error); `ok` too for a command CLIENT REPLY OFF or SKIP left without
 * a reply, which ends when it was sent. `discarded`: DISCARD ended its transaction; `aborted`: EXEC
 * returned null (a watched key changed), so it did not run; `closed`: the connection closed first.
 */
export type RedisOutcome = 'ok' | 'error' | 'discarded' | 'aborted' | 'closed'

export interface RedisCommand {
  /**
   * The command as sent, not case-normalised (the semantic conventions ask for that): `GET`,
   * `set`; for a container command with a known subcommand both words, `CLIENT SETNAME`. An
   * unknown command's name is its first argument, cut at 32 bytes.
   */
  readonly name: string
  /** Whether `name` is a command (or subcommand) of redis-server 7.0. */
  readonly known: boolean
  /** The first key, where the command has one at a fixed place and keys are kept; cut at `maxKeyBytes`. */
  readonly key: string | undefined
  /** Arguments after the name (and the subcommand), the key included. */
  readonly arguments: number
  /** Entry of the call that carried the command's first byte; end of the call that carried its reply's last. */
  readonly startNs: number
  readonly endNs: number
  readonly tid: number
  readonly context: number
  readonly outcome: RedisOutcome
  /** With `error`: the error's first word (`ERR`, `WRONGTYPE`, `EXECABORT`). */
  readonly errorPrefix: string | undefined
  /** With `error`: the error's text up to its first quote or colon: what follows may echo arguments. */
  readonly errorMessage: string | undefined
  /** The database (SELECT's index) the connection used; undefined when not known (a connection seen mid-stream). */
  readonly database: number | undefined
}

export interface RedisOptions {
  /** Keep first keys (default true); without, `key` is always undefined. */
  keys?: boolean
  /** Bytes kept of a key (default 256). */
  maxKeyBytes?: number
  /** Commands waiting for their replies per connection, transactions' queued ones included (default 4096). */
  maxPending?: number
  /** Reply nesting followed (default 64); deeper is malformed. */
  maxDepth?: number
}

/** Why input was counted as malformed. */
export type RedisErrorReason =
  | 'request-header' // a command's `*<count>` or an argument's `$<length>` is not a number
  | 'bulk-expected' // a command's argument does not start with `$`
  | 'bulk-end' // an argument or a bulk reply is not followed by CRLF
  | 'inline-too-long' // an inline command longer than 64 KiB, the server's own limit
  | 'reply-type' // a reply starts with a byte that is no RESP type
  | 'reply-header' // a reply's length or count is not a number
  | 'reply-depth' // a reply nested deeper than maxDepth
  | 'position' // a record's position is before the end of the previous one of its direction

export interface RedisStats {
  /** Replies that answered no command seen: sent before capture began, or their command was lost. */
  unmatchedReplies: number
  /** Commands seen but given no outcome: their pairing with replies was lost (lost or uncaptured bytes, a resync). */
  lostCommands: number
  /** Bytes missing between records (lost records). */
  lostBytes: number
  /** Times a direction lost its place (or a place found after a loss proved wrong) and looked for the next boundary. */
  resyncs: number
  /** Bytes read while looking for a boundary, or while the role of the connection was unknown. */
  skippedBytes: number
  /** Key bytes beyond `maxKeyBytes`. */
  keyBytesCut: number
  /** Commands not queued because `maxPending` commands were already waiting. */
  queueOverflows: number
  /** Replies that answer no command by design: pub/sub messages, RESP3 pushes, surplus subscription notices, MONITOR's feed. */
  outOfBand: number
}

/**
 * Called once per command that got an outcome, in reply order per connection, from inside `push`
 * and `close` (what it throws propagates out of them). `side` is the connection's role. The
 * command object is reused once the handler returns: copy what must outlive the call.
 */
export type RedisCommandHandler<C> = (command: RedisCommand, context: C, side: 'client' | 'server') => void

const CR = 13
const LF = 10
const SP = 32
const HT = 9
const DQUOTE = 34
const SQUOTE = 39
const BACKSLASH = 92
const STAR = 42
const DOLLAR = 36
const MINUS = 45
const QUESTION = 63
const COLON = 58

/** The longest command name compared against the table; longer ones are unknown and cut. */
const MAX_NAME_BYTES = 32
/** The server's own limit on an inline command (PROTO_INLINE_MAX_SIZE). */
const MAX_INLINE_BYTES = 65536
/** Digits of a length or count: 2^53 - 1 keeps the arithmetic exact. */
const MAX_DIGITS = 15
/** Bytes kept of an error reply: its prefix and the fixed text that follows. */
const MAX_ERROR_BYTES = 128
/** Bytes kept of a pub/sub array's first element (`punsubscribe` is the longest kind). */
const MAX_KIND_BYTES = 16

// what a command does to the connection's state, beyond its reply
const PLAIN = 0
const MULTI = 1
const EXEC = 2
const DISCARD = 3
const SELECT = 4
const RESET = 5
const MONITOR = 6
const HELLO = 7
const CLIENT_REPLY = 8
// pub/sub: a command of one of these kinds is confirmed by notices of the same name
const SUBSCRIBE = 10
const PSUBSCRIBE = 11
const SSUBSCRIBE = 12
const UNSUBSCRIBE = 13
const PUNSUBSCRIBE = 14
const SUNSUBSCRIBE = 15
// pub/sub deliveries: never replies
const MESSAGE = 20

// CLIENT REPLY's modes, as codes of their letters (see modeCode)
const REPLY_ON = modeCode('ON')
const REPLY_OFF = modeCode('OFF')
const REPLY_SKIP = modeCode('SKIP')

/** Up to four letters, any case, as one number. */
function modeCode(word: string): number {
  let code = 0
  for (let i = 0; i < word.length; i++) code = code * 32 + (upperByte(word.charCodeAt(i)) & 31)
  return code
}

const SPECIAL: Record<string, number> = {
  MULTI, EXEC, DISCARD, SELECT, RESET, MONITOR, HELLO,
  SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE, UNSUBSCRIBE, PUNSUBSCRIBE, SUNSUBSCRIBE,
}

/** The kind of a pub/sub array by its first element, lower case as the server sends it. */
const PUBSUB_KINDS: { bytes: Uint8Array; kind: number }[] = [
  ['message', MESSAGE], ['pmessage', MESSAGE], ['smessage', MESSAGE],
  ['subscribe', SUBSCRIBE], ['psubscribe', PSUBSCRIBE], ['ssubscribe', SSUBSCRIBE],
  ['unsubscribe', UNSUBSCRIBE], ['punsubscribe', PUNSUBSCRIBE], ['sunsubscribe', SUNSUBSCRIBE],
].map(([name, kind]) => ({ bytes: Uint8Array.from(name as string, (c) => c.charCodeAt(0)), kind: kind as number }))

// ---- the command table

interface CommandEntry {
  /** Upper case, and its bytes for comparing. */
  upper: string
  lower: string
  bytes: Uint8Array
  /** Position of the first key among the arguments (0: the name), 0 for none. */
  firstKey: number
  special: number
  /** A container command's subcommands (CLIENT, CONFIG, ...). */
  subcommands: CommandTable | null
  /** For a subcommand: both words, upper and lower case (`CLIENT SETNAME`). */
  fullUpper: string
  fullLower: string
}

/**
 * Open-addressed table of command names, looked up by their bytes in any case, so a command's
 * name costs no string when it is sent in upper or lower case.
 */
class CommandTable {
  private readonly slots: (CommandEntry | undefined)[]
  private readonly mask: number

  constructor(entries: CommandEntry[]) {
    let size = 16
    while (size < entries.length * 2) size *= 2
    this.slots = new Array(size)
    this.mask = size - 1
    for (const entry of entries) {
      let slot = hashUpper(entry.bytes, 0, entry.bytes.length) & this.mask
      while (this.slots[slot] !== undefined) slot = (slot + 1) & this.mask
      this.slots[slot] = entry
    }
  }

  find(bytes: Uint8Array, length: number): CommandEntry | undefined {
    let slot = hashUpper(bytes, 0, length) & this.mask
    for (;;) {
      const entry = this.slots[slot]
      if (entry === undefined) return undefined
      if (entry.bytes.length === length && equalsUpper(bytes, entry.bytes, length)) return entry
      slot = (slot + 1) & this.mask
    }
  }
}

function upperByte(c: number): number {
  return c >= 97 && c <= 122 ? c - 32 : c
}

function hashUpper(bytes: Uint8Array, start: number, end: number): number {
  let hash = 2166136261
  for (let i = start; i < end; i++) hash = Math.imul(hash ^ upperByte(bytes[i]!), 16777619)
  return hash >>> 0
}

function equalsUpper(bytes: Uint8Array, upper: Uint8Array, length: number): boolean {
  for (let i = 0; i < length; i++) if (upperByte(bytes[i]!) !== upper[i]) return false
  return true
}

function entryOf(upper: string, firstKey: number, container?: string): CommandEntry {
  const lower = upper.toLowerCase()
  return {
    upper,
    lower,
    bytes: Uint8Array.from(upper, (c) => c.charCodeAt(0)),
    firstKey,
    special: container === undefined ? SPECIAL[upper] ?? PLAIN : container === 'CLIENT' && upper === 'REPLY' ? CLIENT_REPLY : PLAIN,
    subcommands: null,
    fullUpper: container === undefined ? upper : `${container} ${upper}`,
    fullLower: container === undefined ? lower : `${container.toLowerCase()} ${lower}`,
  }
}

function buildCommandTable(): CommandTable {
  const commands = new Map<string, CommandEntry>()
  const subcommands = new Map<string, CommandEntry[]>()
  for (const [firstKey, names] of Object.entries(redisCommandsByFirstKey)) {
    for (const name of names.split(' ')) {
      const bar = name.indexOf('|')
      if (bar < 0) {
        commands.set(name, entryOf(name, Number(firstKey)))
        continue
      }
      const container = name.slice(0, bar)
      let list = subcommands.get(container)
      if (list === undefined) subcommands.set(container, (list = []))
      list.push(entryOf(name.slice(bar + 1), Number(firstKey), container))
    }
  }
  for (const [container, list] of subcommands) commands.get(container)!.subcommands = new CommandTable(list)
  return new CommandTable([...commands.values()])
}

const commandTable = buildCommandTable()

// ---- commands

/** A command from its first byte until its outcome is handed over; reused afterwards. */
class PendingCommand implements RedisCommand {
  name = ''
  known = false
  key: string | undefined = undefined
  arguments = 0
  startNs = 0
  endNs = 0
  tid = 0
  context = 0
  outcome: RedisOutcome = 'ok'
  errorPrefix: string | undefined = undefined
  errorMessage: string | undefined = undefined
  database: number | undefined = undefined
  /** MULTI, EXEC, SUBSCRIBE, ...: see the constants. */
  special = PLAIN
  /** SELECT's index (NaN when it is not a number). */
  selectIndex = Number.NaN
  /** CLIENT REPLY's mode (REPLY_ON, ...; NaN when unknown). */
  replyMode = Number.NaN
  /** SUBSCRIBE-like commands: notices still due (one per channel named; one when none is named). */
  noticesDue = 0
  /** Commands sent after this one that did not fit in the queue: their replies are skipped. */
  droppedAfter = 0
}

type Limits = Required<RedisOptions>

/** Parses the connections of one plugin; shares options, counters, the command pool and the handler among them. */
export class RedisParser<C = unknown> {
  readonly errors: Record<RedisErrorReason, number> = {
    'request-header': 0,
    'bulk-expected': 0,
    'bulk-end': 0,
    'inline-too-long': 0,
    'reply-type': 0,
    'reply-header': 0,
    'reply-depth': 0,
    position: 0,
  }
  readonly stats: RedisStats = {
    unmatchedReplies: 0,
    lostCommands: 0,
    lostBytes: 0,
    resyncs: 0,
    skippedBytes: 0,
    keyBytesCut: 0,
    queueOverflows: 0,
    outOfBand: 0,
  }
  /** @internal */
  readonly limits: Limits
  /** @internal */
  readonly onCommand: RedisCommandHandler<C>
  private readonly pool: PendingCommand[] = []

  constructor(onCommand: RedisCommandHandler<C>, options: RedisOptions = {}) {
    this.onCommand = onCommand
    this.limits = {
      keys: options.keys ?? true,
      maxKeyBytes: limit(options.maxKeyBytes, 256, 1, 'maxKeyBytes'),
      maxPending: limit(options.maxPending, 4096, 1, 'maxPending'),
      maxDepth: limit(options.maxDepth, 64, 1, 'maxDepth'),
    }
  }

  /**
   * State for one connection; `context` comes back with each of its commands. `midStream`: the
   * connection was open before capture began (the start-up scan found it), so its first bytes may
   * be inside a message and its database is unknown.
   */
  connection(context: C, role: RedisRole = 'unknown', options: { midStream?: boolean } = {}): RedisConnection<C> {
    return new RedisConnection(this, context, role, options.midStream === true)
  }

  /** @internal */
  take(): PendingCommand {
    const command = this.pool.pop() ?? new PendingCommand()
    command.key = undefined
    command.outcome = 'ok'
    command.errorPrefix = undefined
    command.errorMessage = undefined
    command.selectIndex = Number.NaN
    command.replyMode = Number.NaN
    command.noticesDue = 0
    command.droppedAfter = 0
    return command
  }

  /** @internal */
  release(command: PendingCommand): void {
    if (this.pool.length < 64) this.pool.push(command)
  }
}

function limit(value: number | undefined, fallback: number, min: number, name: string): number {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || value < min) throw new Error(`RedisParser: ${name} must be an integer of at least ${min}, got ${value}`)
  return value
}

/**
 * Both directions of one connection, the commands waiting for replies, and what the connection's
 * commands changed: its database, a transaction, pub/sub, MONITOR, RESP3.
 *
 * Pairing after a loss: replies answer commands in order, so after commands were lost (bytes lost
 * or not captured where they were) the next replies belong to commands never seen. Commands
 * already queued keep their place (their replies come first); new ones are dropped (counted in
 * `lostCommands`) until, with nothing queued, a reply arrived and a command was sent after it: the
 * point where a client that waits for its replies is back in step. A client that keeps pipelining
 * across the loss may get a few commands paired with the replies of lost ones. After replies were
 * lost, which queued command each remaining reply answers is unknown: the queue is dropped too.
 */
export class RedisConnection<C = unknown> {
  readonly context: C
  /** @internal */
  readonly parser: RedisParser<C>
  /** @internal oldest first */
  readonly queue: PendingCommand[] = []
  /** @internal commands queued in the open transaction, in order */
  readonly transaction: PendingCommand[] = []
  /** The database SELECT chose; undefined when not known. */
  database: number | undefined
  /** @internal */
  inTransaction = false
  /** @internal RESP2 pub/sub mode may be on (channels or patterns; shard channels): arrays of pub/sub kinds are notices, not replies */
  subscribed = false
  /** @internal */
  shardSubscribed = false
  /** @internal CLIENT REPLY OFF: the server sends no replies */
  repliesOff = false
  /** @internal CLIENT REPLY SKIP: the next command gets no reply */
  skipNext = false
  /** @internal HELLO 3 or a RESP3-only type was seen: pub/sub arrives as pushes only */
  resp3 = false
  /** @internal after MONITOR, replies are the server's feed of every command */
  monitoring = false
  /** @internal replies to skip: their commands did not fit in the queue */
  skipReplies = 0
  /** @internal new commands are dropped until pairing is safe again; see the class doc */
  blocked = false
  /** @internal while blocked: end of the last record of replies that arrived with nothing queued (0: none yet) */
  blockedReplyEndNs = 0
  /** @internal EGRESS or INGRESS once known */
  requestDirection = -1
  private readonly requests: RequestReader
  /** @internal */
  readonly replies: ReplyReader
  private closed = false

  /** @internal use `RedisParser.connection` */
  constructor(parser: RedisParser<C>, context: C, role: RedisRole, midStream: boolean) {
    this.parser = parser
    this.context = context
    this.database = midStream ? undefined : 0
    this.requests = new RequestReader(this, midStream)
    this.replies = new ReplyReader(this, midStream)
    if (role !== 'unknown') this.requestDirection = role === 'client' ? EGRESS : INGRESS
  }

  /** The role found so far: the side that sends commands is the client. */
  get role(): RedisRole {
    return this.requestDirection === EGRESS ? 'client' : this.requestDirection === INGRESS ? 'server' : 'unknown'
  }

  /** Commands waiting for their replies, those queued in a transaction included. */
  get pending(): number {
    return this.queue.length + this.transaction.length
  }

  /** Feeds one record. Records of a direction must come in position order. */
  push(chunk: RedisChunk): void {
    if (this.closed || chunk.bytes <= 0) return
    if (this.requestDirection < 0 && !this.decide(chunk)) {
      this.parser.stats.skippedBytes += chunk.bytes
      return
    }
    if (chunk.direction === this.requestDirection) return this.requests.push(chunk)
    this.replies.push(chunk)
    // replies of lost commands are arriving: a command sent after this is in step again
    if (this.blocked && this.queue.length === 0) this.blockedReplyEndNs = chunk.endNs
  }

  /** The connection closed: commands still waiting end as `closed`. Later records are ignored. */
  close(): void {
    if (this.closed) return
    this.closed = true
    for (const command of this.queue.splice(0)) this.settle(command, 'closed')
    for (const command of this.transaction.splice(0)) this.settle(command, 'closed')
  }

  /**
   * A connection of unknown role (found by the start-up scan): the direction whose record starts
   * with a reply type that no command starts with carries replies; one that starts with an array
   * whose first element is a known command name carries commands.
   */
  private decide(chunk: RedisChunk): boolean {
    const data = chunk.data
    const n = Math.min(data.length, chunk.bytes)
    if (n === 0) return false
    const first = data[0]!
    if (first === STAR) {
      if (!startsWithKnownCommand(data, n)) return false
      this.requestDirection = chunk.direction
      return true
    }
    if (!REPLY_TYPE[first] || first === STAR) return false
    this.requestDirection = 1 - chunk.direction
    return true
  }

  /** @internal a whole command was read */
  commandRead(command: PendingCommand): void {
    const stats = this.parser.stats
    if (this.monitoring) {
      stats.lostCommands++
      return this.parser.release(command)
    }
    if (this.blocked) {
      if (this.queue.length > 0 || this.blockedReplyEndNs === 0 || command.startNs < this.blockedReplyEndNs) {
        stats.lostCommands++
        return this.parser.release(command)
      }
      this.blocked = false
      this.blockedReplyEndNs = 0
      // a value still open belongs to a lost command: this command's reply starts a record
      this.replies.restartAtNextRecord()
    }
    // nothing is awaited, so a value still open belongs to no command seen (lost, or sent before
    // capture): this command's reply starts a record. Pushes and pub/sub messages arrive
    // unasked, so a value open then may be one of them.
    if (this.queue.length === 0 && this.transaction.length === 0 && !this.resp3 && !this.subscribed && !this.shardSubscribed) this.replies.restartAtNextRecord()
    if (this.unanswered(command)) return this.settle(command, 'ok')
    if (this.pending >= this.parser.limits.maxPending) {
      stats.queueOverflows++
      const last = this.queue[this.queue.length - 1]
      if (last !== undefined) last.droppedAfter++
      else this.skipReplies++
      return this.parser.release(command)
    }
    if (command.special === SSUBSCRIBE || command.special === SUNSUBSCRIBE) this.shardSubscribed = true
    else if (command.special >= SUBSCRIBE) this.subscribed = true
    this.queue.push(command)
  }

  /** Whether CLIENT REPLY turned this command's reply off; such a command ends when it was sent. */
  private unanswered(command: PendingCommand): boolean {
    const mode = command.special === CLIENT_REPLY ? command.replyMode : Number.NaN
    if (mode === REPLY_ON) {
      this.repliesOff = false
      return false
    }
    const silent = this.repliesOff || this.skipNext
    this.skipNext = false
    if (mode === REPLY_OFF) this.repliesOff = true
    else if (mode === REPLY_SKIP) this.skipNext = true
    return silent || mode === REPLY_OFF || mode === REPLY_SKIP
  }

  /** @internal commands were lost in the request stream: see the class doc */
  requestsLost(): void {
    this.blocked = true
    this.blockedReplyEndNs = 0
  }

  /** @internal reply bytes were passed over while looking for a boundary: they may have answered waiting commands */
  repliesSkipped(): void {
    if (this.queue.length > 0 || this.transaction.length > 0) this.repliesLost()
  }

  /** @internal replies were lost: no queued command can be paired any more */
  repliesLost(): void {
    this.parser.stats.lostCommands += this.queue.length + this.transaction.length
    for (const command of this.queue.splice(0)) this.parser.release(command)
    for (const command of this.transaction.splice(0)) this.parser.release(command)
    this.inTransaction = false
    this.skipReplies = 0
    this.requestsLost()
  }

  /** @internal the reply being read is EXEC's to an open transaction: its elements are the queued commands' results */
  execPending(): boolean {
    return this.inTransaction && this.queue.length > 0 && this.queue[0]!.special === EXEC
  }

  /** @internal element `index` of EXEC's reply was read */
  execElement(index: number, reader: ReplyReader): void {
    const command = this.transaction[index]
    if (command === undefined || !reader.elementIsError) return
    command.outcome = 'error'
    this.describeError(command, reader)
  }

  /** @internal a whole top-level value was read */
  replyRead(reader: ReplyReader): void {
    const type = reader.topType
    if (type === PUSH) return this.notice(reader)
    if (this.monitoring) {
      this.parser.stats.outOfBand++
      return
    }
    if (type === STAR && (this.subscribed || this.shardSubscribed) && !this.resp3 && reader.kind !== 0) return this.notice(reader)
    this.answer(reader)
  }

  /** A value that may answer no command: a delivery, or a SUBSCRIBE-like command's notice. */
  private notice(reader: ReplyReader): void {
    const kind = reader.kind
    if (reader.count === 0 && (kind === UNSUBSCRIBE || kind === PUNSUBSCRIBE)) this.subscribed = false
    if (reader.count === 0 && kind === SUNSUBSCRIBE) this.shardSubscribed = false
    const head = this.queue[0]
    if (kind < SUBSCRIBE || kind > SUNSUBSCRIBE || head === undefined || head.special !== kind || head.startNs > reader.endNs) {
      this.parser.stats.outOfBand++
      return
    }
    if (--head.noticesDue > 0) return
    this.queue.shift()
    this.finish(head, reader, false)
  }

  private answer(reader: ReplyReader): void {
    if (this.skipReplies > 0) {
      this.skipReplies--
      this.parser.stats.unmatchedReplies++
      return
    }
    const head = this.queue[0]
    // a reply read before the command was sent cannot be its reply
    if (head === undefined || head.startNs > reader.endNs) {
      this.parser.stats.unmatchedReplies++
      return
    }
    this.queue.shift()
    this.skipReplies += head.droppedAfter
    if (this.inTransaction && head.special !== EXEC && head.special !== DISCARD && head.special !== RESET && !reader.topIsError) {
      this.transaction.push(head)
      return
    }
    this.finish(head, reader, true)
  }

  /** A command's reply (or its last notice) was read: apply what it changed, then hand it over. */
  private finish(command: PendingCommand, reader: ReplyReader, isReply: boolean): void {
    const failed = isReply && reader.topIsError
    command.endNs = reader.endNs
    command.database = this.database
    if (failed) {
      command.outcome = 'error'
      this.describeError(command, reader)
    }
    switch (command.special) {
      case MULTI:
        if (!failed) this.inTransaction = true
        break
      case EXEC:
        if (this.inTransaction) this.endTransaction(reader, failed)
        break
      case DISCARD:
        if (this.inTransaction && !failed) this.endTransaction(reader, false)
        break
      case SELECT:
        if (!failed && command.selectIndex >= 0) this.database = command.selectIndex
        break
      case RESET:
        this.reset(reader)
        break
      case MONITOR:
        if (!failed) this.monitoring = true
        break
      case HELLO:
        if (!failed) this.resp3 = reader.topType === MAP
        break
    }
    this.settle(command, command.outcome)
  }

  /** EXEC's or DISCARD's reply ends the transaction: each queued command gets its outcome. */
  private endTransaction(reader: ReplyReader, failed: boolean): void {
    this.inTransaction = false
    const discarded = reader.topType !== STAR && !failed && !reader.topIsNull
    for (const command of this.transaction.splice(0)) {
      command.endNs = reader.endNs
      command.database = this.database
      if (failed) {
        command.outcome = 'error'
        this.describeError(command, reader)
      } else if (reader.topIsNull) {
        command.outcome = 'aborted'
      } else if (discarded) {
        command.outcome = 'discarded'
      } else if (command.special === SELECT && command.outcome === 'ok' && command.selectIndex >= 0) {
        this.database = command.selectIndex
      }
      this.settle(command, command.outcome)
    }
  }

  private reset(reader: ReplyReader): void {
    this.database = 0
    this.subscribed = false
    this.shardSubscribed = false
    this.resp3 = false
    this.monitoring = false
    this.repliesOff = false
    this.skipNext = false
    if (this.inTransaction) this.endTransaction(reader, false)
  }

  private describeError(command: PendingCommand, reader: ReplyReader): void {
    const { prefix, message } = reader.errorText()
    command.errorPrefix = prefix
    command.errorMessage = message
  }

  private settle(command: PendingCommand, outcome: RedisOutcome): void {
    command.outcome = outcome
    if (outcome === 'closed') command.database = this.database
    try {
      this.parser.onCommand(command, this.context, this.requestDirection === INGRESS ? 'server' : 'client')
    } finally {
      this.parser.release(command)
    }
  }
}

/** Whether `*<n>\r\n$<len>\r\n<name>` starts `data`, with a name in the command table. */
function startsWithKnownCommand(data: Uint8Array, n: number): boolean {
  let i = 1
  while (i < n && data[i]! >= 48 && data[i]! <= 57) i++
  if (i === 1 || data[i] !== CR || data[i + 1] !== LF || data[i + 2] !== DOLLAR) return false
  i += 3
  let length = 0
  const digits = i
  while (i < n && data[i]! >= 48 && data[i]! <= 57) length = length * 10 + data[i++]! - 48
  if (i === digits || data[i] !== CR || data[i + 1] !== LF || length > MAX_NAME_BYTES || i + 2 + length > n) return false
  return commandTable.find(data.subarray(i + 2, i + 2 + length), length) !== undefined
}

// ---- the command stream

// request states
const REQ_SYNC = 0 // looking for `*<n>\r\n$`
const REQ_IDLE = 1 // a command is due
const REQ_COUNT = 2 // digits of `*<n>`
const REQ_COUNT_LF = 3
const REQ_BULK = 4 // an argument's `$` is due
const REQ_LENGTH = 5 // digits of `$<len>`
const REQ_LENGTH_LF = 6
const REQ_DATA = 7 // an argument's bytes
const REQ_DATA_CR = 8
const REQ_DATA_LF = 9
const REQ_INLINE = 10 // an inline command's line

// what an argument's bytes are kept for
const KEEP_NONE = 0
const KEEP_NAME = 1
const KEEP_SUBCOMMAND = 2
const KEEP_KEY = 3
const KEEP_SELECT = 4
const KEEP_MODE = 5

/** One direction carrying commands. */
class RequestReader {
  private readonly connection: RedisConnection<any>
  private readonly parser: RedisParser<any>
  private state: number
  /** Position of the next byte; -1 before the first record. */
  private expected = -1
  /**
   * The command start found by a resync is trusted once a record ends where a command ends (a
   * client writes whole commands in a call, unless a value is large); otherwise the shape was
   * inside a value, and what it declared must not swallow the commands after it.
   */
  private tentative = false

  // the number being read (a count or a length)
  private number = 0
  private digits = 0
  private negative = false

  // the command being read
  private command: PendingCommand | null = null
  private argc = 0
  private argIndex = 0
  private remaining = 0
  private keep = KEEP_NONE
  private entry: CommandEntry | undefined = undefined
  private sub: CommandEntry | undefined = undefined
  private keyIndex = -1
  private readonly name = new Uint8Array(MAX_NAME_BYTES)
  private nameLength = 0
  private nameCut = false
  private readonly subName = new Uint8Array(MAX_NAME_BYTES)
  private subLength = 0
  private subCut = false
  private readonly keyBytes: Uint8Array
  private keyLength = 0
  /** SELECT's index or CLIENT REPLY's mode, as it is read. */
  private small = 0
  /** Exit of the record being read: the end of a command that gets no reply. */
  private recordEndNs = 0

  // an inline command
  private inlineBytes = 0
  private inWord = false
  private quote = 0
  private escaped = 0
  private hexDigits = 0
  private hexValue = 0

  constructor(connection: RedisConnection<any>, midStream: boolean) {
    this.connection = connection
    this.parser = connection.parser
    this.keyBytes = new Uint8Array(connection.parser.limits.maxKeyBytes)
    this.state = midStream ? REQ_SYNC : REQ_IDLE
  }

  push(chunk: RedisChunk): void {
    if (this.expected >= 0 && chunk.position !== this.expected) this.jump(chunk)
    else if (this.expected < 0 && chunk.position !== 0) this.desync(false)
    this.recordEndNs = chunk.endNs
    const data = chunk.data
    const captured = Math.min(data.length, chunk.bytes)
    let i = 0
    while (i < captured) i = this.step(data, i, captured, chunk)
    if (chunk.bytes > captured) this.unseen(chunk.bytes - captured)
    if (this.tentative && this.state !== REQ_SYNC) {
      if (this.state === REQ_IDLE) this.tentative = false
      else this.untrusted()
    }
    this.expected = chunk.position + chunk.bytes
  }

  /** The record read since a resync did not end where a command ends: what was read was no command. */
  private untrusted(): void {
    this.parser.stats.resyncs++
    if (this.command !== null) this.parser.release(this.command)
    this.command = null
    this.state = REQ_SYNC
  }

  private jump(chunk: RedisChunk): void {
    const gap = chunk.position - this.expected
    if (gap > 0) {
      this.parser.stats.lostBytes += gap
      this.unseen(gap)
      return
    }
    this.parser.errors.position++
    this.desync(true)
  }

  /** `count` bytes were not seen: inside an argument's bytes they are skipped; elsewhere commands were lost. */
  private unseen(count: number): void {
    if (this.state === REQ_SYNC) return
    // bytes up to the end of the argument being read: its data, CR and LF
    const toEnd = this.state === REQ_DATA ? this.remaining + 2 : this.state === REQ_DATA_CR ? 2 : this.state === REQ_DATA_LF ? 1 : 0
    // a name or subcommand not wholly seen names no command: its place is lost like any other
    if (count > toEnd || (count > 0 && (this.keep === KEEP_NAME || this.keep === KEEP_SUBCOMMAND) && this.state === REQ_DATA)) return this.desync(true)
    if (this.state === REQ_DATA) this.unseenKept(Math.min(count, this.remaining))
    if (count === toEnd) {
      this.remaining = 0
      return this.argumentDone()
    }
    const afterData = count - (this.state === REQ_DATA ? this.remaining : 0)
    if (afterData < 0) {
      this.remaining -= count
      return
    }
    this.remaining = 0
    this.state = afterData === 0 ? REQ_DATA_CR : REQ_DATA_LF
  }

  /** Unseen bytes of an argument being kept: what is kept is then cut or unknown. */
  private unseenKept(count: number): void {
    if (count === 0) return
    if (this.keep === KEEP_KEY) this.parser.stats.keyBytesCut += count
    else if (this.keep === KEEP_SELECT || this.keep === KEEP_MODE) this.small = Number.NaN
  }

  /** The stream's place is lost: the command being read is dropped, and pairing waits (see RedisConnection). */
  private desync(counted: boolean): void {
    if (this.command !== null) {
      this.parser.stats.lostCommands++
      this.parser.release(this.command)
      this.command = null
    }
    if (counted) this.parser.stats.resyncs++
    this.state = REQ_SYNC
    this.connection.requestsLost()
  }

  private fail(reason: RedisErrorReason): void {
    this.parser.errors[reason]++
    this.desync(true)
  }

  private step(data: Uint8Array, i: number, n: number, chunk: RedisChunk): number {
    switch (this.state) {
      case REQ_SYNC:
        return this.sync(data, i, n)
      case REQ_IDLE:
        return this.idle(data, i, chunk)
      case REQ_COUNT:
      case REQ_LENGTH:
        return this.digitsOf(data, i, n)
      case REQ_COUNT_LF:
      case REQ_LENGTH_LF:
      case REQ_DATA_LF:
        if (data[i] !== LF) {
          this.fail(this.state === REQ_DATA_LF ? 'bulk-end' : 'request-header')
          return i
        }
        if (this.state === REQ_COUNT_LF) this.countDone()
        else if (this.state === REQ_LENGTH_LF) this.lengthDone()
        else this.argumentDone()
        return i + 1
      case REQ_BULK:
        if (data[i] !== DOLLAR) {
          this.fail('bulk-expected')
          return i
        }
        this.startNumber(REQ_LENGTH)
        return i + 1
      case REQ_DATA:
        return this.argumentBytes(data, i, n)
      case REQ_DATA_CR:
        if (data[i] !== CR) {
          this.fail('bulk-end')
          return i
        }
        this.state = REQ_DATA_LF
        return i + 1
      default: // REQ_INLINE
        return this.inline(data, i, n)
    }
  }

  /** Finds the next `*<digits>\r\n$` in this record (the kernel classifies a connection by the same shape). */
  private sync(data: Uint8Array, i: number, n: number): number {
    for (let at = data.indexOf(STAR, i); at >= 0 && at < n; at = data.indexOf(STAR, at + 1)) {
      if (!commandStartAt(data, at, n)) continue
      this.parser.stats.skippedBytes += at - i
      this.state = REQ_IDLE
      this.tentative = true
      return at
    }
    this.parser.stats.skippedBytes += n - i
    return n
  }

  private idle(data: Uint8Array, i: number, chunk: RedisChunk): number {
    const c = data[i]!
    // empty lines between commands are allowed (clients send them to keep connections alive)
    if (c === CR || c === LF) return i + 1
    this.startCommand(chunk)
    if (c === STAR) {
      this.startNumber(REQ_COUNT)
      return i + 1
    }
    this.state = REQ_INLINE
    this.argc = 0
    this.inlineBytes = 0
    this.inWord = false
    this.quote = 0
    this.escaped = 0
    return i
  }

  private startCommand(chunk: RedisChunk): void {
    const command = this.parser.take()
    command.startNs = chunk.startNs
    command.tid = chunk.tid ?? 0
    command.context = chunk.context ?? 0
    this.command = command
    this.argIndex = 0
    this.entry = undefined
    this.sub = undefined
    this.keyIndex = -1
    this.nameLength = 0
    this.nameCut = false
    this.subLength = 0
    this.subCut = false
    this.keyLength = 0
    this.keep = KEEP_NAME
  }

  private startNumber(state: number): void {
    this.state = state
    this.number = 0
    this.digits = 0
    this.negative = false
  }

  /** Digits, an optional leading minus, then CR. */
  private digitsOf(data: Uint8Array, i: number, n: number): number {
    while (i < n) {
      const c = data[i]!
      if (c >= 48 && c <= 57) {
        if (++this.digits > MAX_DIGITS) {
          this.fail('request-header')
          return i
        }
        this.number = this.number * 10 + c - 48
      } else if (c === MINUS && this.digits === 0 && !this.negative) {
        this.negative = true
      } else if (c === CR && this.digits > 0) {
        this.state = this.state === REQ_COUNT ? REQ_COUNT_LF : REQ_LENGTH_LF
        return i + 1
      } else {
        this.fail('request-header')
        return i
      }
      i++
    }
    return i
  }

  /** `*<n>`: a count of zero or less is no command (the server ignores it). */
  private countDone(): void {
    if (this.negative || this.number === 0) {
      this.parser.release(this.command!)
      this.command = null
      this.state = REQ_IDLE
      return
    }
    this.argc = this.number
    this.state = REQ_BULK
  }

  private lengthDone(): void {
    if (this.negative) return this.fail('request-header')
    this.remaining = this.number
    this.small = 0
    this.state = this.remaining === 0 ? REQ_DATA_CR : REQ_DATA
  }

  private argumentBytes(data: Uint8Array, i: number, n: number): number {
    const take = Math.min(this.remaining, n - i)
    if (this.keep !== KEEP_NONE) this.keepRange(data, i, i + take)
    this.remaining -= take
    if (this.remaining === 0) this.state = REQ_DATA_CR
    return i + take
  }

  /** Bytes of a bulk argument that is kept: names and keys are copied at once, numbers read a byte at a time. */
  private keepRange(data: Uint8Array, from: number, to: number): void {
    const keep = this.keep
    if (keep === KEEP_KEY || keep === KEEP_NAME || keep === KEEP_SUBCOMMAND) {
      const buffer = keep === KEEP_KEY ? this.keyBytes : keep === KEEP_NAME ? this.name : this.subName
      const length = keep === KEEP_KEY ? this.keyLength : keep === KEEP_NAME ? this.nameLength : this.subLength
      const take = Math.min(to - from, buffer.length - length)
      for (let j = 0; j < take; j++) buffer[length + j] = data[from + j]!
      if (keep === KEEP_KEY) {
        this.keyLength += take
        this.parser.stats.keyBytesCut += to - from - take
      } else if (keep === KEEP_NAME) {
        this.nameLength += take
        if (take < to - from) this.nameCut = true
      } else {
        this.subLength += take
        if (take < to - from) this.subCut = true
      }
      return
    }
    for (let j = from; j < to; j++) this.keepByte(data[j]!)
  }

  /** One byte of an argument that is kept: the name, the subcommand, the key or SELECT's index. */
  private keepByte(c: number): void {
    switch (this.keep) {
      case KEEP_NAME:
        if (this.nameLength < MAX_NAME_BYTES) this.name[this.nameLength++] = c
        else this.nameCut = true
        return
      case KEEP_SUBCOMMAND:
        if (this.subLength < MAX_NAME_BYTES) this.subName[this.subLength++] = c
        else this.subCut = true
        return
      case KEEP_KEY:
        if (this.keyLength < this.keyBytes.length) this.keyBytes[this.keyLength++] = c
        else this.parser.stats.keyBytesCut++
        return
      case KEEP_SELECT:
        this.small = c >= 48 && c <= 57 && this.small < 1e6 ? this.small * 10 + c - 48 : Number.NaN
        return
      case KEEP_MODE:
        this.small = this.small < 32 * 32 * 32 ? this.small * 32 + (upperByte(c) & 31) : Number.NaN
    }
  }

  /** An argument ended: what it was decides what the next one is kept for. */
  private argumentDone(): void {
    this.endArgument()
    if (this.state === REQ_SYNC) return
    if (++this.argIndex === this.argc) return this.commandDone()
    this.state = REQ_BULK
  }

  private endArgument(): void {
    const index = this.argIndex
    if (index === 0) {
      this.entry = this.nameCut ? undefined : commandTable.find(this.name, this.nameLength)
      if (this.entry !== undefined && this.entry.subcommands === null) this.keyIndex = this.entry.firstKey || -1
    } else if (index === 1 && this.keep === KEEP_SUBCOMMAND) {
      this.sub = this.subCut ? undefined : this.entry!.subcommands!.find(this.subName, this.subLength)
      if (this.sub !== undefined) this.keyIndex = this.sub.firstKey || -1
    } else if (this.keep === KEEP_SELECT) {
      this.command!.selectIndex = this.small
    } else if (this.keep === KEEP_MODE) {
      this.command!.replyMode = this.small
    }
    this.keep = this.keepFor(index + 1)
    this.small = 0
  }

  private keepFor(index: number): number {
    if (index === this.keyIndex && this.parser.limits.keys) return KEEP_KEY
    if (index === 2 && this.sub?.special === CLIENT_REPLY) return KEEP_MODE
    if (index !== 1 || this.entry === undefined) return KEEP_NONE
    if (this.entry.subcommands !== null) return KEEP_SUBCOMMAND
    return this.entry.special === SELECT ? KEEP_SELECT : KEEP_NONE
  }

  private commandDone(): void {
    const command = this.command!
    this.command = null
    this.state = REQ_IDLE
    const entry = this.entry
    const sub = this.sub
    command.known = entry !== undefined && (entry.subcommands === null || sub !== undefined)
    command.name = this.commandName(entry, sub)
    command.special = (sub ?? entry)?.special ?? PLAIN
    command.endNs = this.recordEndNs
    command.arguments = this.argc - (sub === undefined ? 1 : 2)
    command.key = this.keyLength > 0 || (this.keyIndex > 0 && this.keyIndex < this.argc && this.parser.limits.keys) ? decodeText(this.keyBytes, this.keyLength) : undefined
    if (command.special >= SUBSCRIBE) command.noticesDue = Math.max(1, this.argc - 1)
    this.connection.commandRead(command)
  }

  /** The name as sent: interned when each word is all upper or all lower case. */
  private commandName(entry: CommandEntry | undefined, sub: CommandEntry | undefined): string {
    if (entry === undefined) return latin1(this.name, 0, this.nameLength)
    const upper = sameBytes(this.name, entry.bytes, this.nameLength)
    const lower = !upper && sameLower(this.name, entry.bytes, this.nameLength)
    if (sub === undefined) return upper ? entry.upper : lower ? entry.lower : latin1(this.name, 0, this.nameLength)
    const subUpper = sameBytes(this.subName, sub.bytes, this.subLength)
    if (upper && subUpper) return sub.fullUpper
    if (lower && !subUpper && sameLower(this.subName, sub.bytes, this.subLength)) return sub.fullLower
    return `${latin1(this.name, 0, this.nameLength)} ${latin1(this.subName, 0, this.subLength)}`
  }

  // ---- inline commands: words separated by blanks, quoted as the server's sdssplitargs reads them

  private inline(data: Uint8Array, i: number, n: number): number {
    for (; i < n; i++) {
      const c = data[i]!
      if (++this.inlineBytes > MAX_INLINE_BYTES) {
        this.fail('inline-too-long')
        return i
      }
      if (c === LF && this.quote === 0) {
        if (this.inWord) this.endWord()
        return this.inlineDone(i + 1)
      }
      if (this.quote !== 0) this.quoted(c)
      else if (c === SP || c === HT || c === CR) {
        if (this.inWord) this.endWord()
      } else if (!this.inWord && (c === DQUOTE || c === SQUOTE)) {
        this.inWord = true
        this.quote = c
      } else {
        this.inWord = true
        if (this.keep !== KEEP_NONE) this.keepByte(c)
      }
    }
    return i
  }

  /** A byte inside quotes: `"` takes \n \r \t \b \a \xHH and \<any>; `'` takes \' only. */
  private quoted(c: number): void {
    if (this.escaped === 2) {
      this.hexValue = this.hexValue * 16 + hexValue(c)
      if (++this.hexDigits === 2) {
        this.escaped = 0
        if (this.keep !== KEEP_NONE) this.keepByte(this.hexValue & 0xff)
      }
      return
    }
    if (this.escaped === 1) {
      this.escaped = 0
      if (this.quote === DQUOTE && c === 120 /* x */) {
        this.escaped = 2
        this.hexDigits = 0
        this.hexValue = 0
        return
      }
      if (this.keep !== KEEP_NONE) this.keepByte(this.quote === DQUOTE ? unescapeByte(c) : c)
      return
    }
    if (c === BACKSLASH) {
      this.escaped = 1
      return
    }
    if (c === this.quote) {
      this.quote = 0
      return this.endWord()
    }
    if (this.keep !== KEEP_NONE) this.keepByte(c)
  }

  private endWord(): void {
    this.inWord = false
    this.endArgument()
    this.argIndex++
    this.argc = this.argIndex
  }

  private inlineDone(i: number): number {
    if (this.argc === 0) {
      this.parser.release(this.command!)
      this.command = null
      this.state = REQ_IDLE
      return i
    }
    this.commandDone()
    return i
  }
}

/** Whether `*<1 to 10 digits>\r\n$` is at `at`, wholly in `[at, n)`. */
function commandStartAt(data: Uint8Array, at: number, n: number): boolean {
  let i = at + 1
  while (i < n && i - at <= 10 && data[i]! >= 48 && data[i]! <= 57) i++
  return i > at + 1 && i + 2 < n && data[i] === CR && data[i + 1] === LF && data[i + 2] === DOLLAR
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48
  const lower = c | 0x20
  return lower >= 97 && lower <= 102 ? lower - 87 : 0
}

function unescapeByte(c: number): number {
  switch (c) {
    case 110: return LF // n
    case 114: return CR // r
    case 116: return HT // t
    case 98: return 8 // b
    case 97: return 7 // a
    default: return c
  }
}

function sameBytes(bytes: Uint8Array, expected: Uint8Array, length: number): boolean {
  for (let i = 0; i < length; i++) if (bytes[i] !== expected[i]) return false
  return true
}

/** Whether `bytes` is `upper` in lower case. */
function sameLower(bytes: Uint8Array, upper: Uint8Array, length: number): boolean {
  for (let i = 0; i < length; i++) {
    const u = upper[i]!
    if (bytes[i] !== (u >= 65 && u <= 90 ? u + 32 : u)) return false
  }
  return true
}

/** Text of key bytes: UTF-8 when they are, else one character per byte. */
function decodeText(bytes: Uint8Array, length: number): string {
  const text = latin1(bytes, 0, length)
  for (let i = 0; i < length; i++) {
    if (bytes[i]! < 0x80) continue
    try {
      // escape() writes each latin-1 character as %XX, which decodeURIComponent reads as UTF-8
      return decodeURIComponent(escape(text))
    } catch {
      return text
    }
  }
  return text
}

// ---- the reply stream

// RESP type bytes
const PUSH = 62 // >
const MAP = 37 // %
const ATTRIBUTE = 124 // |
const STREAMED_CHUNK = 59 // ;
const STREAMED_END = 46 // .

/** 1 for the bytes a RESP2 or RESP3 value starts with. */
const REPLY_TYPE = new Uint8Array(256)
for (const c of '+-:$*_#,(!=%~>|') REPLY_TYPE[c.charCodeAt(0)] = 1

// how a type is read: a line of text, a length then bytes, or a count then elements
const LINE = 1
const BULK = 2
const AGGREGATE = 3
const TYPE_SHAPE = new Uint8Array(256)
for (const c of '+-:_#,(') TYPE_SHAPE[c.charCodeAt(0)] = LINE
for (const c of '$!=') TYPE_SHAPE[c.charCodeAt(0)] = BULK
for (const c of '*%~>|') TYPE_SHAPE[c.charCodeAt(0)] = AGGREGATE

// reply states
const REP_SYNC = 0 // looking for a reply boundary
const REP_TYPE = 1 // a value's type byte is due
const REP_LINE = 2 // a line's text, up to LF
const REP_NUMBER = 3 // a length or count (or an integer), up to CR
const REP_NUMBER_LF = 4
const REP_DATA = 5 // a bulk value's bytes
const REP_DATA_CR = 6
const REP_DATA_LF = 7

// what a bulk value's or line's bytes are kept for
const KEEP_ERROR = 1
const KEEP_KIND = 2

/** One direction carrying replies. */
class ReplyReader {
  private readonly connection: RedisConnection<any>
  private readonly parser: RedisParser<any>
  private state: number
  private expected = -1
  /** As in RequestReader: after a resync, the place is trusted once a record ends where a value ends. */
  private tentative = false

  /** Elements left per open aggregate, -1 for a streamed one (ended by `.`). */
  private readonly remaining: number[] = []
  /** Whether each open aggregate is an attribute, which is no element of its parent. */
  private readonly attribute: boolean[] = []
  private depth = 0

  // the value being read
  private type = 0
  private number = 0
  private digits = 0
  private negative = false
  private streamed = false
  private bytesLeft = 0
  /** Inside a streamed string (`$?`): `;<len>` chunks until `;0`. */
  private inStreamedString = false
  private keep = 0

  // the top-level value being read
  /** @internal */
  topType = 0
  /** @internal */
  topIsError = false
  /** @internal */
  topIsNull = false
  /** @internal */
  endNs = 0
  /** Index of the element being read in a top-level aggregate. */
  private topIndex = -1
  private execReply = false
  /** @internal the current element of the top-level aggregate is an error */
  elementIsError = false
  /** @internal the pub/sub kind of a top-level aggregate's first element (0: none) */
  kind = 0
  /** @internal its third element, an integer (subscriptions left, in a notice) */
  count = -1
  private readonly kindBytes = new Uint8Array(MAX_KIND_BYTES)
  private kindLength = 0
  private readonly errorBytes = new Uint8Array(MAX_ERROR_BYTES)
  private errorLength = 0

  constructor(connection: RedisConnection<any>, midStream: boolean) {
    this.connection = connection
    this.parser = connection.parser
    this.state = midStream ? REP_SYNC : REP_TYPE
    const depth = connection.parser.limits.maxDepth
    for (let i = 0; i < depth; i++) {
      this.remaining.push(0)
      this.attribute.push(false)
    }
  }

  /** Starts over at the next record unless a value is due there anyway. */
  restartAtNextRecord(): void {
    if (this.atBoundary()) return
    this.state = REP_SYNC
    this.depth = 0
    this.inStreamedString = false
  }

  push(chunk: RedisChunk): void {
    if (this.expected >= 0 && chunk.position !== this.expected) this.jump(chunk)
    else if (this.expected < 0 && chunk.position !== 0) this.desync(false)
    const data = chunk.data
    const captured = Math.min(data.length, chunk.bytes)
    let i = 0
    if (this.state === REP_SYNC && captured > 0) i = this.syncAtStart(data, captured)
    while (i < captured) i = this.step(data, i, captured, chunk)
    if (chunk.bytes > captured) this.unseen(chunk.bytes - captured, chunk.endNs)
    if (this.tentative && this.state !== REP_SYNC) {
      if (this.atBoundary()) this.tentative = false
      else this.untrusted()
    }
    this.expected = chunk.position + chunk.bytes
  }

  private atBoundary(): boolean {
    return this.state === REP_SYNC || (this.state === REP_TYPE && this.depth === 0 && !this.inStreamedString)
  }

  /** The record read since a resync did not end where a value ends: what was read was no value. */
  private untrusted(): void {
    this.parser.stats.resyncs++
    this.state = REP_SYNC
    this.depth = 0
    this.inStreamedString = false
  }

  private jump(chunk: RedisChunk): void {
    const gap = chunk.position - this.expected
    if (gap > 0) {
      this.parser.stats.lostBytes += gap
      this.unseen(gap, chunk.endNs)
      return
    }
    this.parser.errors.position++
    this.desync(true)
  }

  /** `count` bytes were not seen: inside a bulk value they are skipped; elsewhere replies were lost. */
  private unseen(count: number, endNs: number): void {
    if (this.state === REP_SYNC) return
    // bytes up to the end of the bulk value being read: its data, CR and LF
    const toEnd = this.state === REP_DATA ? this.bytesLeft + 2 : this.state === REP_DATA_CR ? 2 : this.state === REP_DATA_LF ? 1 : 0
    // an error whose first word is not wholly seen has no known prefix
    const prefixCut = this.keep === KEEP_ERROR && this.state === REP_DATA && this.errorBytes.subarray(0, this.errorLength).indexOf(SP) < 0
    if (count > toEnd || prefixCut) return this.desync(true)
    if (count === toEnd) {
      this.bytesLeft = 0
      return this.bulkDone(endNs)
    }
    const afterData = count - (this.state === REP_DATA ? this.bytesLeft : 0)
    if (afterData < 0) {
      this.bytesLeft -= count
      return
    }
    this.bytesLeft = 0
    this.state = afterData === 0 ? REP_DATA_CR : REP_DATA_LF
  }

  private desync(counted: boolean): void {
    if (counted) this.parser.stats.resyncs++
    this.state = REP_SYNC
    this.depth = 0
    this.inStreamedString = false
    this.connection.repliesLost()
  }

  private fail(reason: RedisErrorReason): void {
    this.parser.errors[reason]++
    this.desync(true)
  }

  private step(data: Uint8Array, i: number, n: number, chunk: RedisChunk): number {
    switch (this.state) {
      case REP_SYNC:
        return this.sync(data, i, n)
      case REP_TYPE:
        return this.startValue(data, i)
      case REP_LINE:
        return this.line(data, i, n, chunk)
      case REP_NUMBER:
        return this.digitsOf(data, i, n)
      case REP_NUMBER_LF:
        if (data[i] !== LF) {
          this.fail('reply-header')
          return i
        }
        this.numberDone(chunk.endNs)
        return i + 1
      case REP_DATA:
        return this.bulkBytes(data, i, n)
      case REP_DATA_CR:
        if (data[i] !== CR) {
          this.fail('bulk-end')
          return i
        }
        this.state = REP_DATA_LF
        return i + 1
      default: // REP_DATA_LF
        if (data[i] !== LF) {
          this.fail('bulk-end')
          return i
        }
        this.bulkDone(chunk.endNs)
        return i + 1
    }
  }

  /** A record after a lost place: most replies start where a record starts. */
  private syncAtStart(data: Uint8Array, n: number): number {
    if (!replyStartAt(data, 0, n)) return 0
    this.state = REP_TYPE
    this.tentative = true
    return 0
  }

  /** The next reply boundary in this record: a plausible value's first line right after an LF. */
  private sync(data: Uint8Array, i: number, n: number): number {
    for (let at = data.indexOf(LF, i); at >= 0 && at + 1 < n; at = data.indexOf(LF, at + 1)) {
      if (!replyStartAt(data, at + 1, n)) continue
      this.skipped(at + 1 - i)
      this.state = REP_TYPE
      this.tentative = true
      return at + 1
    }
    this.skipped(n - i)
    return n
  }

  /** Reply bytes passed over: whichever waiting command they answered, it is no longer known. */
  private skipped(count: number): void {
    if (count === 0) return
    this.parser.stats.skippedBytes += count
    this.connection.repliesSkipped()
  }

  private startValue(data: Uint8Array, i: number): number {
    const type = data[i]!
    if (this.inStreamedString) {
      if (type !== STREAMED_CHUNK) {
        this.fail('reply-type')
        return i
      }
      this.type = type
      this.startNumber()
      return i + 1
    }
    if (type === STREAMED_END && this.depth > 0 && this.remaining[this.depth - 1] === -1) {
      this.type = type
      this.keep = 0
      this.state = REP_LINE
      return i + 1
    }
    const shape = TYPE_SHAPE[type]
    if (shape === 0) {
      this.fail('reply-type')
      return i
    }
    this.type = type
    this.keep = 0
    if (this.depth === 0) this.startTop(type)
    else if (this.depth === 1 && !this.attribute[0] && type !== ATTRIBUTE) this.startTopElement(type)
    if (shape === LINE) {
      // an integer is read as a number when it may be a pub/sub notice's count
      if (type === COLON && this.depth === 1 && this.topIndex === 2) this.startNumber()
      else this.state = REP_LINE
    } else {
      this.startNumber()
    }
    return i + 1
  }

  private startTop(type: number): void {
    // known from a value's first byte, so that a push still being read is never cut short (see commandRead)
    if (type !== STAR && type !== DOLLAR && type !== 43 /* + */ && type !== MINUS && type !== COLON) this.connection.resp3 = true
    if (type === ATTRIBUTE) return
    this.topType = type
    this.topIsError = type === MINUS || type === 33 /* ! */
    this.topIsNull = type === 95 /* _ */
    this.topIndex = -1
    this.kind = 0
    this.count = -1
    this.errorLength = 0
    this.execReply = this.connection.execPending()
    if (this.topIsError) this.keep = KEEP_ERROR
  }

  private startTopElement(type: number): void {
    this.topIndex++
    this.elementIsError = type === MINUS || type === 33 /* ! */
    if (this.elementIsError && this.execReply) {
      this.errorLength = 0
      this.keep = KEEP_ERROR
    } else if (this.topIndex === 0 && (type === DOLLAR || type === 43 /* + */) && (this.topType === STAR || this.topType === PUSH)) {
      this.kindLength = 0
      this.keep = KEEP_KIND
    }
  }

  private startNumber(): void {
    this.state = REP_NUMBER
    this.number = 0
    this.digits = 0
    this.negative = false
    this.streamed = false
  }

  /** A line's text up to LF; only errors and pub/sub kinds keep theirs. */
  private line(data: Uint8Array, i: number, n: number, chunk: RedisChunk): number {
    const lf = data.indexOf(LF, i)
    const end = lf < 0 || lf >= n ? n : lf
    if (this.keep !== 0) this.keepBytes(data, i, end)
    if (end === n) return n
    if (this.keep !== 0) this.dropCR()
    if (this.type === STREAMED_END) this.streamedEnd(chunk.endNs)
    else this.elementDone(chunk.endNs)
    return end + 1
  }

  /** A kept line ends in CR, which is no part of its text. */
  private dropCR(): void {
    if (this.keep === KEEP_ERROR && this.errorLength > 0 && this.errorBytes[this.errorLength - 1] === CR) this.errorLength--
    if (this.keep === KEEP_KIND && this.kindLength > 0 && this.kindBytes[this.kindLength - 1] === CR) this.kindLength--
  }

  private keepBytes(data: Uint8Array, from: number, to: number): void {
    if (this.keep === KEEP_ERROR) {
      const take = Math.min(to - from, MAX_ERROR_BYTES - this.errorLength)
      for (let j = 0; j < take; j++) this.errorBytes[this.errorLength++] = data[from + j]!
    } else {
      const take = Math.min(to - from, MAX_KIND_BYTES - this.kindLength)
      for (let j = 0; j < take; j++) this.kindBytes[this.kindLength++] = data[from + j]!
      // longer than any kind: mark it so no kind matches
      if (take < to - from) this.kindLength = MAX_KIND_BYTES
    }
  }

  /** Digits (or `?` for a streamed value), an optional leading minus, then CR. */
  private digitsOf(data: Uint8Array, i: number, n: number): number {
    while (i < n) {
      const c = data[i]!
      if (c >= 48 && c <= 57 && !this.streamed) {
        if (++this.digits > MAX_DIGITS) {
          this.fail('reply-header')
          return i
        }
        this.number = this.number * 10 + c - 48
      } else if (c === MINUS && this.digits === 0 && !this.negative && !this.streamed) {
        this.negative = true
      } else if (c === QUESTION && this.digits === 0 && !this.negative && !this.streamed && (this.type === DOLLAR || TYPE_SHAPE[this.type] === AGGREGATE)) {
        this.streamed = true
      } else if (c === CR && (this.digits > 0 || this.streamed)) {
        this.state = REP_NUMBER_LF
        return i + 1
      } else {
        this.fail('reply-header')
        return i
      }
      i++
    }
    return i
  }

  private numberDone(endNs: number): void {
    const type = this.type
    const value = this.negative ? -this.number : this.number
    if (type === COLON) {
      this.count = value
      return this.elementDone(endNs)
    }
    if (value < -1 || (value === -1 && this.digits !== 1)) return this.fail('reply-header')
    if (type === STREAMED_CHUNK) {
      if (value < 0) return this.fail('reply-header')
      if (value === 0) {
        this.inStreamedString = false
        return this.elementDone(endNs)
      }
      return this.startBulk(value)
    }
    if (value === -1) {
      // null bulk or null array
      if (this.depth === 0) this.topIsNull = true
      return this.elementDone(endNs)
    }
    if (TYPE_SHAPE[type] === BULK) {
      if (this.streamed) {
        if (type !== DOLLAR) return this.fail('reply-header')
        this.inStreamedString = true
        this.state = REP_TYPE
        return
      }
      return this.startBulk(value)
    }
    this.openAggregate(type, value, endNs)
  }

  private startBulk(length: number): void {
    this.bytesLeft = length
    this.state = length === 0 ? REP_DATA_CR : REP_DATA
  }

  private openAggregate(type: number, count: number, endNs: number): void {
    if (!this.streamed && count === 0) return this.elementDone(endNs)
    if (this.depth >= this.remaining.length) return this.fail('reply-depth')
    this.remaining[this.depth] = this.streamed ? -1 : type === MAP || type === ATTRIBUTE ? count * 2 : count
    this.attribute[this.depth] = type === ATTRIBUTE
    this.depth++
    this.state = REP_TYPE
  }

  private bulkBytes(data: Uint8Array, i: number, n: number): number {
    const take = Math.min(this.bytesLeft, n - i)
    if (this.keep !== 0) this.keepBytes(data, i, i + take)
    this.bytesLeft -= take
    if (this.bytesLeft === 0) this.state = REP_DATA_CR
    return i + take
  }

  private bulkDone(endNs: number): void {
    if (this.inStreamedString) {
      this.state = REP_TYPE
      return
    }
    this.elementDone(endNs)
  }

  /** `.` closed the innermost streamed aggregate, which then ends as an element of its parent. */
  private streamedEnd(endNs: number): void {
    this.depth--
    this.elementDone(endNs)
  }

  /** A value ended: it counts against its parent, which may end in turn, up to the top. */
  private elementDone(endNs: number): void {
    this.state = REP_TYPE
    for (;;) {
      if (this.depth === 0) return this.topDone(endNs)
      const frame = this.depth - 1
      if (frame === 0 && !this.attribute[0]) this.topElementDone()
      if (this.remaining[frame]! < 0) return
      if (--this.remaining[frame]! > 0) return
      this.depth--
      // an attribute annotates the value after it, which is still to come
      if (this.attribute[frame]) return
    }
  }

  private topElementDone(): void {
    if (this.topIndex === 0 && this.keep === KEEP_KIND) this.kind = pubsubKind(this.kindBytes, this.kindLength)
    if (this.execReply) this.connection.execElement(this.topIndex, this)
    this.keep = 0
  }

  private topDone(endNs: number): void {
    this.endNs = endNs
    this.keep = 0
    this.connection.replyRead(this)
  }

  /** @internal the kept error text: its first word, and the text up to a quote or colon */
  errorText(): { prefix: string; message: string } {
    const bytes = this.errorBytes
    const length = this.errorLength
    let space = 0
    while (space < length && bytes[space] !== SP) space++
    let end = 0
    while (end < length && bytes[end] !== SQUOTE && bytes[end] !== DQUOTE && bytes[end] !== COLON) end++
    while (end > 0 && (bytes[end - 1] === SP || bytes[end - 1] === 44 /* , */)) end--
    return { prefix: latin1(bytes, 0, Math.min(space, 32)), message: latin1(bytes, 0, end) }
  }
}

function pubsubKind(bytes: Uint8Array, length: number): number {
  for (const { bytes: name, kind } of PUBSUB_KINDS) {
    if (name.length === length && sameBytes(bytes, name, length)) return kind
  }
  return 0
}

/** Whether a value's first line, wholly in `[at, n)`, starts at `at`: a type byte, then text fit for it, then CRLF. */
function replyStartAt(data: Uint8Array, at: number, n: number): boolean {
  const type = data[at]!
  const shape = TYPE_SHAPE[type]
  if (shape === 0) return false
  let i = at + 1
  if (shape === LINE && type !== COLON) {
    // a line may hold any byte but CR and LF
    while (i < n && data[i] !== CR && data[i] !== LF) i++
  } else {
    if (data[i] === MINUS) i++
    const digits = i
    while (i < n && data[i]! >= 48 && data[i]! <= 57 && i - digits < MAX_DIGITS) i++
    if (i === digits && !(data[i] === QUESTION && shape !== LINE && ++i)) return false
  }
  return i + 1 < n && data[i] === CR && data[i + 1] === LF
}
