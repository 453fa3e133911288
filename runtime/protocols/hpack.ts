/**
 * HPACK decoder (RFC 7541) for captured HTTP/2 header blocks, one per connection and direction.
 *
 * It is pure TypeScript for plugin isolates (V8 builtins only). Unlike a decoder inside an HTTP/2
 * endpoint, it may start on a connection already open (or lose part of a stream), so its dynamic
 * table can be *unknown*: entries added before it started are there but unseen. Because HPACK
 * indexes the dynamic table from the newest entry, the entries added since are still found at
 * their right indices; a reference past them resolves to `undefined` (never guessed) and counts in
 * `unresolved`, and literals with incremental indexing refill the table as traffic goes on. A
 * dynamic table size update to 0, or eviction while the table's size is known, proves the unknown
 * entries gone, and the decoder is exact again.
 *
 * Cost: only the names the caller asks for are decoded to strings, with their values; other
 * fields are skipped, except that a field added to the dynamic table has its Huffman value decoded
 * into a reused buffer to learn its length, which its size in the table depends on. Huffman codes
 * are decoded four bits at a time through a table built at load.
 *
 * ```ts
 * const decoder = new HpackDecoder({ names: [':method', ':path'] })
 * decoder.decode(block, 0, block.length, { field(name, text, value) { ... } })
 * ```
 */
import { latin1 } from './bytes.ts'
import { HUFFMAN_CODES, HUFFMAN_LENGTHS } from './hpack-huffman.ts'

/** RFC 7541 Appendix A; index 0 is unused. */
export const HPACK_STATIC_TABLE: readonly (readonly [string, string])[] = [
  ['', ''],
  [':authority', ''], [':method', 'GET'], [':method', 'POST'], [':path', '/'], [':path', '/index.html'],
  [':scheme', 'http'], [':scheme', 'https'], [':status', '200'], [':status', '204'], [':status', '206'],
  [':status', '304'], [':status', '400'], [':status', '404'], [':status', '500'], ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'], ['accept-language', ''], ['accept-ranges', ''], ['accept', ''],
  ['access-control-allow-origin', ''], ['age', ''], ['allow', ''], ['authorization', ''], ['cache-control', ''],
  ['content-disposition', ''], ['content-encoding', ''], ['content-language', ''], ['content-length', ''],
  ['content-location', ''], ['content-range', ''], ['content-type', ''], ['cookie', ''], ['date', ''],
  ['etag', ''], ['expect', ''], ['expires', ''], ['from', ''], ['host', ''], ['if-match', ''],
  ['if-modified-since', ''], ['if-none-match', ''], ['if-range', ''], ['if-unmodified-since', ''],
  ['last-modified', ''], ['link', ''], ['location', ''], ['max-forwards', ''], ['proxy-authenticate', ''],
  ['proxy-authorization', ''], ['range', ''], ['referer', ''], ['refresh', ''], ['retry-after', ''],
  ['server', ''], ['set-cookie', ''], ['strict-transport-security', ''], ['transfer-encoding', ''],
  ['user-agent', ''], ['vary', ''], ['via', ''], ['www-authenticate', ''],
]
const STATIC_ENTRIES = 61

/** `field`'s name for a name the decoder was not asked to keep. */
export const HPACK_OTHER = -1
/** `field`'s name for a field whose dynamic-table entry is unknown (mid-connection). */
export const HPACK_UNRESOLVED = -2

/** `decode` results. */
export const HPACK_OK = 0
/** The block ended inside a field: the fields before it were delivered (a block cut by the capture). */
export const HPACK_CUT = 1
/** The block is malformed; counted in `errors`, and the table is now unknown. */
export const HPACK_ERROR = 2

export type HpackErrorReason =
  | 'hpack-index' // index 0, or past the dynamic table while the table is known
  | 'hpack-integer' // an integer longer than 31 bits
  | 'hpack-huffman' // an invalid Huffman string (EOS, or bad padding)
  | 'hpack-size-update' // a table size update after a field

/** Receives a block's fields in order. */
export interface HpackSink {
  /**
   * `name`: the index of the field's name in the decoder's `names`, `HPACK_OTHER`, or
   * `HPACK_UNRESOLVED`. `text`: the name, when the decoder keeps every name. `value`: set when the
   * name is kept (or the decoder keeps every field) and resolved.
   */
  field(name: number, text: string | undefined, value: string | undefined): void
}

export interface HpackOptions {
  /** Names (lower case) whose values to decode; without, every name and value is decoded. Pass the same array to every decoder: its lookup tables are built once. */
  names?: readonly string[]
  /** Counters by reason, shared with the caller (default: the decoder's own). */
  errors?: Record<string, number>
  /** The table's maximum size at the start, SETTINGS_HEADER_TABLE_SIZE (default 4096). */
  tableSize?: number
}

// Huffman decoding: the code's binary tree has 256 internal nodes; each is a state, and a table
// gives, for a state and the next four bits, the state after them and the symbol they completed.
// Codes are at least five bits long, so four bits complete at most one symbol.
const HUFFMAN_FAIL = -2
const huffmanNext = new Uint8Array(256 * 16)
const huffmanSymbol = new Int16Array(256 * 16)
/** States where a string may end: the root, or up to seven 1 bits into EOS (RFC 7541 5.2). */
const huffmanAccepting = new Uint8Array(256)

function buildHuffmanTable(): void {
  // children[node * 2 + bit]: an internal node (>= 0), empty (-1), or a symbol s as -2 - s
  const children: number[] = [-1, -1]
  for (let symbol = 0; symbol <= 256; symbol++) {
    const code = HUFFMAN_CODES[symbol]!
    const length = HUFFMAN_LENGTHS[symbol]!
    let node = 0
    for (let bit = length - 1; bit > 0; bit--) {
      const slot = node * 2 + ((code >>> bit) & 1)
      if (children[slot] === -1) {
        children[slot] = children.length / 2
        children.push(-1, -1)
      }
      node = children[slot]!
    }
    children[node * 2 + (code & 1)] = -2 - symbol
  }
  for (let state = 0; state < 256; state++) {
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = state
      let symbol = -1
      for (let bit = 3; bit >= 0; bit--) {
        const child = children[node * 2 + ((nibble >> bit) & 1)]!
        if (child >= 0) {
          node = child
          continue
        }
        symbol = child === -2 - 256 ? HUFFMAN_FAIL : -2 - child
        node = 0
        if (symbol === HUFFMAN_FAIL) break
      }
      huffmanNext[state * 16 + nibble] = node
      huffmanSymbol[state * 16 + nibble] = symbol
    }
  }
  let node = 0
  huffmanAccepting[0] = 1
  for (let depth = 1; depth <= 7; depth++) {
    node = children[node * 2 + 1]!
    huffmanAccepting[node] = 1
  }
}
buildHuffmanTable()

/**
 * Decodes the Huffman string `src[start, end)` into `out` from 0; returns its length, or -1 when it
 * is invalid. `out` must hold `huffmanBound(end - start)` bytes.
 */
export function huffmanDecode(src: Uint8Array, start: number, end: number, out: Uint8Array): number {
  let state = 0
  let n = 0
  for (let i = start; i < end; i++) {
    const byte = src[i]!
    let at = (state << 4) | (byte >> 4)
    let symbol = huffmanSymbol[at]!
    if (symbol >= 0) out[n++] = symbol
    else if (symbol === HUFFMAN_FAIL) return -1
    state = huffmanNext[at]!
    at = (state << 4) | (byte & 15)
    symbol = huffmanSymbol[at]!
    if (symbol >= 0) out[n++] = symbol
    else if (symbol === HUFFMAN_FAIL) return -1
    state = huffmanNext[at]!
  }
  return huffmanAccepting[state] === 1 ? n : -1
}

/** The most bytes `length` Huffman-coded bytes decode to (the shortest code is five bits). */
export function huffmanBound(length: number): number {
  return Math.ceil((length * 8) / 5)
}

/** The table sizes kept at most: entries past it are dropped early, which makes them unresolved, never wrong. */
const MAX_STORED_TABLE_SIZE = 65536
/** RFC 7541 4.1: an entry's size is its name's and value's lengths plus 32. */
const ENTRY_OVERHEAD = 32
const DEFAULT_TABLE_SIZE = 4096

// integer reads: a failed read returns one of these
const READ_CUT = -1
const READ_OVERFLOW = -2

interface WantedName {
  index: number
  bytes: Uint8Array
}

/** How a list of names is looked up; built once per list, shared by the decoders that use it. */
interface NameTables {
  /** Candidates by length, so most names cost one array read. */
  byLength: (WantedName[] | undefined)[]
  /** For each static index, the index in the list of its name, or HPACK_OTHER. */
  staticName: Int32Array
}

const nameTables = new WeakMap<readonly string[], NameTables>()

function nameTablesOf(names: readonly string[]): NameTables {
  let tables = nameTables.get(names)
  if (tables !== undefined) return tables
  tables = { byLength: [], staticName: new Int32Array(STATIC_ENTRIES + 1).fill(HPACK_OTHER) }
  for (let index = 0; index < names.length; index++) {
    const name = names[index]!
    const bytes = new Uint8Array(name.length)
    for (let i = 0; i < name.length; i++) bytes[i] = name.charCodeAt(i) & 0xff
    ;(tables.byLength[name.length] ??= []).push({ index, bytes })
    for (let s = 1; s <= STATIC_ENTRIES; s++) {
      if (HPACK_STATIC_TABLE[s]![0] === name && tables.staticName[s] === HPACK_OTHER) tables.staticName[s] = index
    }
  }
  nameTables.set(names, tables)
  return tables
}

/** One direction's HPACK state. */
export class HpackDecoder {
  /** Fields whose entry was unknown (only while the table is unknown). */
  unresolved = 0
  readonly errors: Record<string, number>
  /** Whether the dynamic table is known entirely (false after `unsync` until proved otherwise). */
  complete = true

  private readonly keepAll: boolean
  private readonly wantedByLength: (WantedName[] | undefined)[]
  /** For each static index, the index in `names` of its name, or HPACK_OTHER. */
  private readonly staticName: Int32Array

  // the dynamic table: a ring, oldest entry at `first`
  private capacity = 16
  private first = 0
  private count = 0
  private entryName = new Int32Array(16)
  private entryText: (string | undefined)[] = new Array<string | undefined>(16)
  private entryValue: (string | undefined)[] = new Array<string | undefined>(16)
  private entryNameLength = new Int32Array(16)
  private entrySize = new Int32Array(16)
  /** The known entries' sizes together. */
  private size = 0
  /** The table's maximum size, as the last size update set it (the protocol's default before). */
  private maxSize = DEFAULT_TABLE_SIZE
  /** Whether `maxSize` is the encoder's own (not assumed after `unsync`). */
  private maxSizeKnown = true
  /** The largest SETTINGS_HEADER_TABLE_SIZE the decoding end announced: a size update may not exceed it. */
  private limit = DEFAULT_TABLE_SIZE

  // scratch for Huffman strings, and the last string read: `stringBuffer[stringStart, stringEnd)`
  private scratch = new Uint8Array(256)
  private stringBuffer: Uint8Array = this.scratch
  private stringStart = 0
  private stringEnd = 0
  /** Decoded length of the last string read, also when its bytes were skipped. */
  private stringLength = 0
  /** Where the last read ended. */
  private at = 0

  constructor(options: HpackOptions = {}) {
    this.errors = options.errors ?? {}
    this.keepAll = options.names === undefined
    this.maxSize = this.limit = options.tableSize ?? DEFAULT_TABLE_SIZE
    const tables = nameTablesOf(options.names ?? [])
    this.wantedByLength = tables.byLength
    this.staticName = tables.staticName
  }

  /** Entries in the dynamic table that are known. */
  get knownEntries(): number {
    return this.count
  }

  /** The known entries' sizes together (RFC 7541 4.1). */
  get tableSize(): number {
    return this.size
  }

  /**
   * The decoding end announced SETTINGS_HEADER_TABLE_SIZE: the most the encoder may use. It does
   * not change the table: the encoder says what it uses with a size update in a header block.
   */
  announceLimit(size: number): void {
    // a lowered limit applies only once acknowledged, and the encoder may use the old one until
    // then: keeping the largest is never stricter than the encoder's rules
    if (size > this.limit) this.limit = size
  }

  /** The connection starts here after all: the table is empty and its maximum the protocol's default. */
  reset(): void {
    this.unsync()
    this.maxSize = this.limit = DEFAULT_TABLE_SIZE
    this.maxSizeKnown = true
    this.complete = true
  }

  /**
   * The table is no longer known (the decoder starts mid-connection, or missed header blocks):
   * forget it; references past the entries added from now on resolve to undefined.
   */
  unsync(): void {
    this.first = 0
    this.count = 0
    this.size = 0
    this.complete = false
    this.maxSizeKnown = false
    this.maxSize = Math.max(this.limit, DEFAULT_TABLE_SIZE)
    this.entryValue.fill(undefined)
    this.entryText.fill(undefined)
  }

  /**
   * Decodes the header block `block[start, end)`, giving each field to `sink`. HPACK_CUT when the
   * block ends inside a field (the table is then unknown: the rest may have added entries).
   */
  decode(block: Uint8Array, start: number, end: number, sink: HpackSink): number {
    let i = start
    let sawField = false
    while (i < end) {
      const byte = block[i]!
      let result: number
      if (byte >= 0x80) {
        result = this.indexed(block, i, end, sink)
      } else if (byte >= 0x40) {
        result = this.literal(block, i, end, 6, true, sink)
      } else if (byte >= 0x20) {
        if (sawField) return this.fail('hpack-size-update')
        result = this.sizeUpdate(block, i, end)
        if (result === HPACK_OK) {
          i = this.at
          continue
        }
      } else {
        result = this.literal(block, i, end, 4, false, sink)
      }
      if (result === HPACK_CUT) {
        this.unsync()
        return HPACK_CUT
      }
      if (result !== HPACK_OK) return HPACK_ERROR
      sawField = true
      i = this.at
    }
    return HPACK_OK
  }

  private indexed(block: Uint8Array, i: number, end: number, sink: HpackSink): number {
    const index = this.readInteger(block, i, end, 7)
    if (index < 0) return this.integerFailure(index)
    if (index === 0) return this.fail('hpack-index')
    if (index <= STATIC_ENTRIES) {
      const name = this.staticName[index]!
      const entry = HPACK_STATIC_TABLE[index]!
      const keep = this.keepAll || name >= 0
      sink.field(name, this.keepAll ? entry[0] : undefined, keep ? entry[1] : undefined)
      return HPACK_OK
    }
    const k = index - STATIC_ENTRIES - 1
    if (k >= this.count) return this.unknownEntry(sink)
    const slot = this.slot(k)
    const name = this.entryName[slot]!
    if (name === HPACK_UNRESOLVED) this.unresolved++
    sink.field(name, this.entryText[slot], this.entryValue[slot])
    return HPACK_OK
  }

  private unknownEntry(sink: HpackSink): number {
    if (this.complete) return this.fail('hpack-index')
    this.unresolved++
    sink.field(HPACK_UNRESOLVED, undefined, undefined)
    return HPACK_OK
  }

  /** A literal field: `prefix` bits of name index (6 with incremental indexing, else 4). */
  private literal(block: Uint8Array, i: number, end: number, prefix: number, indexing: boolean, sink: HpackSink): number {
    const index = this.readInteger(block, i, end, prefix)
    if (index < 0) return this.integerFailure(index)
    let name: number
    let text: string | undefined
    let nameLength: number
    if (index === 0) {
      const read = this.readString(block, this.at, end, true)
      if (read !== HPACK_OK) return read
      nameLength = this.stringLength
      name = this.matchName()
      if (this.keepAll) text = latin1(this.stringBuffer, this.stringStart, this.stringEnd)
    } else if (index <= STATIC_ENTRIES) {
      name = this.staticName[index]!
      text = this.keepAll ? HPACK_STATIC_TABLE[index]![0] : undefined
      nameLength = HPACK_STATIC_TABLE[index]![0].length
    } else if (index - STATIC_ENTRIES - 1 < this.count) {
      const slot = this.slot(index - STATIC_ENTRIES - 1)
      name = this.entryName[slot]!
      text = this.entryText[slot]
      nameLength = this.entryNameLength[slot]!
    } else {
      if (this.complete) return this.fail('hpack-index')
      // the name is unknown; its length too, so the entry's size is a lower bound
      name = HPACK_UNRESOLVED
      nameLength = 0
    }
    const keep = name >= 0 || (this.keepAll && name !== HPACK_UNRESOLVED)
    const read = this.readString(block, this.at, end, keep || indexing)
    if (read !== HPACK_OK) return read
    const value = keep ? latin1(this.stringBuffer, this.stringStart, this.stringEnd) : undefined
    if (name === HPACK_UNRESOLVED) this.unresolved++
    sink.field(name, text, value)
    if (indexing) this.insert(name, text, value, nameLength, nameLength + this.stringLength + ENTRY_OVERHEAD)
    return HPACK_OK
  }

  private sizeUpdate(block: Uint8Array, i: number, end: number): number {
    const size = this.readInteger(block, i, end, 5)
    if (size < 0) return this.integerFailure(size)
    // above the announced limit is the encoder's error (RFC 7541 6.3), unless the SETTINGS that
    // raised the limit went uncaptured: the encoder knows better, so its size is taken
    this.maxSize = size
    this.maxSizeKnown = true
    if (size > this.limit) this.limit = size
    this.evictFor(0)
    if (size === 0) this.complete = true
    return HPACK_OK
  }

  /** Adds an entry at the front; RFC 7541 4.4: one larger than the table empties it. */
  private insert(name: number, text: string | undefined, value: string | undefined, nameLength: number, size: number): void {
    if (size > this.maxSize) {
      this.evictFor(this.maxSize + 1)
      return
    }
    this.evictFor(size)
    if (size > MAX_STORED_TABLE_SIZE) return
    if (this.count === this.capacity) this.grow()
    const slot = (this.first + this.count) & (this.capacity - 1)
    this.entryName[slot] = name
    this.entryText[slot] = text
    this.entryValue[slot] = value
    this.entryNameLength[slot] = nameLength
    this.entrySize[slot] = size
    this.count++
    this.size += size
    // while the table's maximum is known, no entry of 32 bytes or more fits beside the known ones
    if (!this.complete && this.maxSizeKnown && this.size + ENTRY_OVERHEAD > this.maxSize) this.complete = true
  }

  /** Evicts oldest entries until `incoming` more bytes fit. */
  private evictFor(incoming: number): void {
    const max = Math.min(this.maxSize, MAX_STORED_TABLE_SIZE)
    let evicted = false
    while (this.count > 0 && this.size + incoming > max) {
      const slot = this.first
      this.size -= this.entrySize[slot]!
      this.entryText[slot] = undefined
      this.entryValue[slot] = undefined
      this.first = (this.first + 1) & (this.capacity - 1)
      this.count--
      evicted = true
    }
    if (this.count === 0) this.first = 0
    if (!evicted) return
    // an eviction within the real maximum removed every unknown (older) entry first
    if (max === this.maxSize && this.maxSizeKnown) this.complete = true
    else if (max < this.maxSize) this.complete = false
  }

  private grow(): void {
    const capacity = this.capacity * 2
    const names = new Int32Array(capacity)
    const texts = new Array<string | undefined>(capacity)
    const values = new Array<string | undefined>(capacity)
    const nameLengths = new Int32Array(capacity)
    const sizes = new Int32Array(capacity)
    for (let k = 0; k < this.count; k++) {
      const slot = (this.first + k) & (this.capacity - 1)
      names[k] = this.entryName[slot]!
      texts[k] = this.entryText[slot]
      values[k] = this.entryValue[slot]
      nameLengths[k] = this.entryNameLength[slot]!
      sizes[k] = this.entrySize[slot]!
    }
    this.entryName = names
    this.entryText = texts
    this.entryValue = values
    this.entryNameLength = nameLengths
    this.entrySize = sizes
    this.capacity = capacity
    this.first = 0
  }

  /** The ring slot of dynamic entry `k` (0 is the newest). */
  private slot(k: number): number {
    return (this.first + this.count - 1 - k) & (this.capacity - 1)
  }

  /** RFC 7541 5.1; the value, or READ_CUT / READ_OVERFLOW. Sets `at`. */
  private readInteger(block: Uint8Array, i: number, end: number, prefix: number): number {
    const mask = (1 << prefix) - 1
    let value = block[i]! & mask
    i++
    if (value === mask) {
      let factor = 1
      for (;;) {
        if (i >= end) return READ_CUT
        const byte = block[i++]!
        value += (byte & 127) * factor
        if ((byte & 128) === 0) break
        factor *= 128
        if (factor > 2 ** 28) return READ_OVERFLOW
      }
      if (value > 0x7fffffff) return READ_OVERFLOW
    }
    this.at = i
    return value
  }

  /**
   * RFC 7541 5.2. With `needed`, the string's bytes are made available (Huffman decoded into
   * `scratch`) and `stringLength` set; without, it is only skipped. Sets `at`.
   */
  private readString(block: Uint8Array, i: number, end: number, needed: boolean): number {
    if (i >= end) return HPACK_CUT
    const huffman = block[i]! >= 0x80
    const length = this.readInteger(block, i, end, 7)
    if (length < 0) return this.integerFailure(length)
    const start = this.at
    if (length > end - start) return HPACK_CUT
    this.at = start + length
    if (!needed) return HPACK_OK
    if (!huffman) {
      this.stringBuffer = block
      this.stringStart = start
      this.stringEnd = start + length
      this.stringLength = length
      return HPACK_OK
    }
    const bound = huffmanBound(length)
    if (this.scratch.length < bound) this.scratch = new Uint8Array(Math.max(bound, this.scratch.length * 2))
    const decoded = huffmanDecode(block, start, start + length, this.scratch)
    if (decoded < 0) return this.fail('hpack-huffman')
    this.stringBuffer = this.scratch
    this.stringStart = 0
    this.stringEnd = decoded
    this.stringLength = decoded
    return HPACK_OK
  }

  /** The index in `names` of the last string read, or HPACK_OTHER. */
  private matchName(): number {
    const candidates = this.wantedByLength[this.stringEnd - this.stringStart]
    if (candidates === undefined) return HPACK_OTHER
    const buffer = this.stringBuffer
    const start = this.stringStart
    for (const candidate of candidates) {
      const bytes = candidate.bytes
      let i = 0
      while (i < bytes.length && buffer[start + i] === bytes[i]) i++
      if (i === bytes.length) return candidate.index
    }
    return HPACK_OTHER
  }

  private integerFailure(code: number): number {
    return code === READ_CUT ? HPACK_CUT : this.fail('hpack-integer')
  }

  private fail(reason: HpackErrorReason): number {
    this.errors[reason] = (this.errors[reason] ?? 0) + 1
    this.unsync()
    return HPACK_ERROR
  }
}
