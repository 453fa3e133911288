/**
 * Unwind tables of x86-64 ELF files, from `.eh_frame`: for every instruction address a function's
 * FDE covers, where the caller's frame is (the CFA: rsp or rbp plus an offset), where the caller's
 * rbp was saved and where the return address is. This is what a profiler needs to walk a stack of
 * code built without frame pointers (most of a Debian system: libc, redis, nginx, postgres).
 *
 * A profiler reads them lazily (`LazyEhFrameTable`), as libunwind and perf do: `.eh_frame_hdr`'s
 * sorted search table (or, in a file without one, an index of FDE start addresses made by walking
 * the FDE headers once) finds the FDE covering a pc, and only that FDE's DWARF call frame
 * instructions are run, into rows kept in a bounded cache per file. Whole tables (node's has half a
 * million rows, about a second to build) are never built on the sampling path.
 *
 * `EhFrameTable` runs every FDE of a section, as `readelf --debug-dump=frames-interp` does, into
 * one sorted table: the tests compare it with readelf and the lazy lookup with it, and the tiny
 * vDSO uses it. Both keep only the columns an x86-64 unwinder uses (CFA, rbp, return address): a
 * row where only another register's rule changes is merged into the row before it. Rows live in
 * typed arrays (23 bytes a row), so a lookup is a binary search and costs no per-row objects.
 *
 * @example
 *   const elf = ElfFile.open('/lib/x86_64-linux-gnu/libc.so.6')
 *   const table = LazyEhFrameTable.read(elf)   // undefined when the file has no .eh_frame
 *   const row = table?.find(0x27290)           // row index, or -1 where no FDE covers the address
 *   table?.raRule[row]                         // valid until the next find()
 */
import { statSync } from 'node:fs'
import { ElfError, ElfFile, MACHINE_X86_64, RangeOnDisk } from './elf.ts'
import { lastAtOrBefore } from './sorted.ts'

/** DWARF register numbers of x86-64 (System V psABI, figure 3.36). */
export const DWARF_RBP = 6
export const DWARF_RSP = 7
export const DWARF_RA = 16
const REGISTER_NAMES = ['rax', 'rdx', 'rcx', 'rbx', 'rsi', 'rdi', 'rbp', 'rsp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip']

/** `cfaRegister` of a row whose CFA is a DWARF expression this table does not evaluate. */
export const CFA_EXPRESSION = 0xfd
/**
 * `cfaRegister` of a PLT row: GCC and binutils describe every lazy-binding PLT stub with one DWARF
 * expression, CFA = rsp + 8, plus 8 more once rip's low four bits reach `cfaOffset` (11, or 10 in
 * the IBT PLT), where the stub has pushed the relocation index. It is recognised byte for byte.
 */
export const CFA_PLT = 0xfe
/** `cfaRegister` of a gap: no FDE covers the addresses from this row to the next. */
export const CFA_NONE = 0xff

/** How a register of the caller is found (DWARF 5 section 6.4.1); RULE_UNSET is "same value" too. */
export const RULE_UNSET = 0
export const RULE_UNDEFINED = 1
export const RULE_SAME_VALUE = 2
/** Saved at CFA + offset. */
export const RULE_OFFSET = 3
/** The value is CFA + offset. */
export const RULE_VAL_OFFSET = 4
/** In another register (the offset field holds its number). */
export const RULE_REGISTER = 5
export const RULE_EXPRESSION = 6
export const RULE_VAL_EXPRESSION = 7

/** The row of an address, as plain values (for tests and reports; the unwinder reads the arrays). */
export interface UnwindRow {
  /** The first address the row covers (virtual address in the file). */
  pc: number
  cfaRegister: number
  cfaOffset: number
  rbpRule: number
  rbpOffset: number
  raRule: number
  raOffset: number
  /** The FDE's CIE has augmentation 'S': the frame is a signal handler's, its pc is not a return address. */
  signalFrame: boolean
}

/**
 * What the unwinder reads of a table: find() gives a row index, valid until the next find(), and
 * the row's columns are read from the arrays at that index.
 */
export interface UnwindTable {
  /** Virtual address minus file offset of the executable code (.text), to look a file offset up. */
  readonly textBias: number
  /** The index of the row covering virtual address `pc`, or -1 where no FDE covers it. */
  find(pc: number): number
  readonly pcs: Float64Array
  readonly cfaRegister: Uint8Array
  readonly cfaOffset: Int32Array
  readonly rbpRule: Uint8Array
  readonly rbpOffset: Int32Array
  readonly raRule: Uint8Array
  readonly raOffset: Int32Array
  /** Bit 0: the row's FDE is a signal frame. */
  readonly flags: Uint8Array
}

/** The row at index `index` of `table` as plain values. */
export function unwindRow(table: UnwindTable, index: number): UnwindRow {
  return {
    pc: table.pcs[index]!,
    cfaRegister: table.cfaRegister[index]!,
    cfaOffset: table.cfaOffset[index]!,
    rbpRule: table.rbpRule[index]!,
    rbpOffset: table.rbpOffset[index]!,
    raRule: table.raRule[index]!,
    raOffset: table.raOffset[index]!,
    signalFrame: (table.flags[index]! & 1) !== 0,
  }
}

/** The PLT CFA expression without its last-but-three byte (DW_OP_lit11 or DW_OP_lit10): breg7 8; breg16 0; lit15; and; litN; ge; lit3; shl; plus. */
const PLT_EXPRESSION = [0x77, 0x08, 0x80, 0x00, 0x3f, 0x1a, -1, 0x2a, 0x33, 0x24, 0x22]

export class EhFrameTable implements UnwindTable {
  /** Row start addresses, ascending; a row holds up to the next row's address. */
  readonly pcs: Float64Array
  readonly cfaRegister: Uint8Array
  readonly cfaOffset: Int32Array
  readonly rbpRule: Uint8Array
  readonly rbpOffset: Int32Array
  readonly raRule: Uint8Array
  readonly raOffset: Int32Array
  /** Bit 0: the row's FDE is a signal frame. */
  readonly flags: Uint8Array
  /** [start, end) of every FDE read, in address order (tests compare them with readelf's). */
  readonly fdeRanges: Float64Array
  /** Virtual address minus file offset of the executable code (.text), to look a file offset up. */
  readonly textBias: number

  constructor(rows: RowBuilder, fdeRanges: Float64Array, textBias: number) {
    const count = rows.count
    this.pcs = rows.pcs.slice(0, count)
    this.cfaRegister = rows.cfaRegister.slice(0, count)
    this.cfaOffset = rows.cfaOffset.slice(0, count)
    this.rbpRule = rows.rbpRule.slice(0, count)
    this.rbpOffset = rows.rbpOffset.slice(0, count)
    this.raRule = rows.raRule.slice(0, count)
    this.raOffset = rows.raOffset.slice(0, count)
    this.flags = rows.flags.slice(0, count)
    this.fdeRanges = fdeRanges
    this.textBias = textBias
  }

  /** The table of an x86-64 ELF file's .eh_frame, or undefined when it has none. Throws an ElfError on a malformed section. */
  static read(elf: ElfFile): EhFrameTable | undefined {
    if (elf.machine !== MACHINE_X86_64) throw new ElfError('EINVAL', `${elf.path} is not an x86-64 file (e_machine ${elf.machine}); only x86-64 unwind tables are read`)
    const section = elf.section('.eh_frame')
    if (section === undefined || section.size === 0n) return undefined
    const text = elf.section('.text')
    const bytes = elf.read(section.offset, section.size, 'the .eh_frame section')
    return parseEhFrame(bytes, Number(section.address), text === undefined ? 0 : Number(text.address - text.offset), elf.path)
  }

  get rowCount(): number {
    return this.pcs.length
  }

  /** The index of the row covering virtual address `pc`, or -1 where no FDE covers it. */
  find(pc: number): number {
    const found = lastAtOrBefore(this.pcs, pc)
    return found < 0 || this.cfaRegister[found] === CFA_NONE ? -1 : found
  }

  /** The row at index `index` as plain values. */
  row(index: number): UnwindRow {
    return unwindRow(this, index)
  }

  /** The rows that start in [start, end), plus the row covering `start` if none starts there. */
  rowsIn(start: number, end: number): UnwindRow[] {
    const first = this.find(start)
    if (first < 0) return []
    const rows: UnwindRow[] = []
    for (let i = first; i < this.pcs.length && this.pcs[i]! < end && this.cfaRegister[i] !== CFA_NONE; i++) rows.push(this.row(i))
    return rows
  }

  /** Bytes the table's arrays hold. */
  get byteLength(): number {
    return this.pcs.length * 23 + this.fdeRanges.byteLength
  }
}

/** A row's CFA, rbp and return-address rules as readelf --debug-dump=frames-interp prints them ("rsp+16", "c-16", "u", "exp", "r9 (r9)"). */
export function readelfColumns(row: UnwindRow): { cfa: string; rbp: string; ra: string } {
  const rule = (kind: number, offset: number): string => {
    switch (kind) {
      case RULE_UNSET: case RULE_UNDEFINED: return 'u'
      case RULE_SAME_VALUE: return 's'
      case RULE_OFFSET: return `c${offset >= 0 ? '+' : ''}${offset}`
      case RULE_VAL_OFFSET: return `v${offset >= 0 ? '+' : ''}${offset}`
      case RULE_REGISTER: return `r${offset} (${REGISTER_NAMES[offset] ?? `r${offset}`})`
      case RULE_EXPRESSION: return 'exp'
      default: return 'vexp'
    }
  }
  const cfa = row.cfaRegister === CFA_EXPRESSION || row.cfaRegister === CFA_PLT
    ? 'exp'
    : `${REGISTER_NAMES[row.cfaRegister] ?? `r${row.cfaRegister}`}${row.cfaOffset >= 0 ? '+' : ''}${row.cfaOffset}`
  return { cfa, rbp: rule(row.rbpRule, row.rbpOffset), ra: rule(row.raRule, row.raOffset) }
}

/** The columns a row keeps, while the instructions run. */
interface FrameState {
  cfaRegister: number
  cfaOffset: number
  rbpRule: number
  rbpOffset: number
  raRule: number
  raOffset: number
}

interface Cie {
  codeAlignment: number
  dataAlignment: number
  returnRegister: number
  /** DW_EH_PE_* encoding of FDE addresses ('R'). */
  addressEncoding: number
  hasAugmentationData: boolean
  signalFrame: boolean
  /** The state after the CIE's initial instructions: every FDE starts from it, and DW_CFA_restore returns to it. */
  initial: FrameState
}

/** Growable row arrays; the table copies out what was filled. */
class RowBuilder {
  count = 0
  pcs!: Float64Array
  cfaRegister!: Uint8Array
  cfaOffset!: Int32Array
  rbpRule!: Uint8Array
  rbpOffset!: Int32Array
  raRule!: Uint8Array
  raOffset!: Int32Array
  flags!: Uint8Array
  /** Rows below it belong to FDEs read before (LazyEhFrameTable's cache): a new row never merges into them. */
  floor = 0

  constructor(capacity = 1024) {
    this.#allocate(capacity)
  }

  /** Appends a row; a row at the same address as the last replaces it, and a row equal to the last adds nothing. */
  push(pc: number, state: FrameState, flags: number): void {
    const last = this.count - 1 >= this.floor ? this.count - 1 : -1
    if (last >= 0 && this.pcs[last] === pc) {
      this.count--
      this.push(pc, state, flags)
      return
    }
    if (last >= 0 && this.#equalsLast(state, flags)) return
    if (this.count === this.pcs.length) this.#grow()
    const i = this.count++
    this.pcs[i] = pc
    this.cfaRegister[i] = state.cfaRegister
    this.cfaOffset[i] = state.cfaOffset
    this.rbpRule[i] = state.rbpRule
    this.rbpOffset[i] = state.rbpOffset
    this.raRule[i] = state.raRule
    this.raOffset[i] = state.raOffset
    this.flags[i] = flags
  }

  /** Ends the covered range at `pc` (a gap row), unless the next FDE starts there. */
  gap(pc: number): void {
    this.push(pc, GAP, 0)
  }

  #equalsLast(state: FrameState, flags: number): boolean {
    const i = this.count - 1
    return this.cfaRegister[i] === state.cfaRegister && this.cfaOffset[i] === state.cfaOffset &&
      this.rbpRule[i] === state.rbpRule && this.rbpOffset[i] === state.rbpOffset &&
      this.raRule[i] === state.raRule && this.raOffset[i] === state.raOffset && this.flags[i] === flags
  }

  #allocate(capacity: number): void {
    this.pcs = new Float64Array(capacity)
    this.cfaRegister = new Uint8Array(capacity)
    this.cfaOffset = new Int32Array(capacity)
    this.rbpRule = new Uint8Array(capacity)
    this.rbpOffset = new Int32Array(capacity)
    this.raRule = new Uint8Array(capacity)
    this.raOffset = new Int32Array(capacity)
    this.flags = new Uint8Array(capacity)
  }

  #grow(): void {
    const grow = <T extends Float64Array | Uint8Array | Int32Array>(array: T): T => {
      const bigger = new (array.constructor as new (length: number) => T)(array.length * 2)
      bigger.set(array)
      return bigger
    }
    this.pcs = grow(this.pcs)
    this.cfaRegister = grow(this.cfaRegister)
    this.cfaOffset = grow(this.cfaOffset)
    this.rbpRule = grow(this.rbpRule)
    this.rbpOffset = grow(this.rbpOffset)
    this.raRule = grow(this.raRule)
    this.raOffset = grow(this.raOffset)
    this.flags = grow(this.flags)
  }
}

const GAP: FrameState = { cfaRegister: CFA_NONE, cfaOffset: 0, rbpRule: RULE_UNSET, rbpOffset: 0, raRule: RULE_UNSET, raOffset: 0 }

/** The malformed-section error, naming the file, the section offset and what was wrong. */
function malformed(path: string, at: number, what: string): ElfError {
  return new ElfError('EINVAL', `${path}: .eh_frame at offset 0x${at.toString(16)}: ${what}; the file's unwind table cannot be read (its frames fall back to frame pointers)`)
}

/** From this size an .eh_frame section stays on disk (LazyEhFrameTable.read's onDiskFrom). */
const SECTION_ON_DISK_BYTES = 1024 * 1024

/** Bytes read at once from a section left on disk: a few FDEs' worth, and their CIE's when it is near. */
const WINDOW_BYTES = 4096

/**
 * Little-endian reads of a section with DWARF's variable-length and pointer encodings, at `at` (an
 * offset in the section). The section's bytes are in memory, or on disk, read a window at a time
 * where the cursor goes.
 */
class Cursor {
  at = 0
  /** The section's bytes from #base on: all of them, or the window read last. */
  #bytes: Buffer
  #base = 0
  #window: Buffer | undefined
  readonly #length: number
  readonly #onDisk: RangeOnDisk | undefined
  readonly #sectionAddress: number
  readonly #path: string
  /** The base of data-relative pointers: .eh_frame_hdr's own address in its search table. */
  readonly #dataBase: number | undefined

  constructor(bytes: Buffer | RangeOnDisk, sectionAddress: number, path: string, dataBase?: number) {
    if (bytes instanceof RangeOnDisk) {
      this.#onDisk = bytes
      this.#bytes = Buffer.alloc(0)
      this.#length = bytes.size
    } else {
      this.#bytes = bytes
      this.#length = bytes.byteLength
    }
    this.#sectionAddress = sectionAddress
    this.#path = path
    this.#dataBase = dataBase
  }

  get length(): number {
    return this.#length
  }

  /**
   * Where the `count` bytes at the cursor are in #bytes; throws when they run past the section.
   * Called before #bytes is read: it may read another window into it.
   */
  #need(count: number): number {
    const from = this.at - this.#base
    if (from >= 0 && from + count <= this.#bytes.byteLength) return from
    if (this.at < 0 || this.at + count > this.#length) throw malformed(this.#path, this.at, `a field of ${count} bytes runs past the end of the section`)
    return this.#load(count)
  }

  /** Reads the window starting at the cursor from the section on disk; 0, where the cursor's bytes now are. */
  #load(count: number): number {
    const size = Math.max(count, WINDOW_BYTES)
    if (this.#window === undefined || this.#window.byteLength < size) this.#window = Buffer.allocUnsafe(size)
    let got = 0
    for (let read = -1; got < size && read !== 0; got += read) read = this.#onDisk!.read(this.#window, this.at + got, got)
    if (got < count) throw malformed(this.#path, this.at, 'the section was cut short (the file shrank while it was read)')
    this.#bytes = this.#window.subarray(0, got)
    this.#base = this.at
    return 0
  }

  u8(): number {
    const from = this.#need(1)
    this.at++
    return this.#bytes[from]!
  }

  u16(): number {
    const from = this.#need(2)
    const value = this.#bytes.readUInt16LE(from)
    this.at += 2
    return value
  }

  u32(): number {
    const from = this.#need(4)
    const value = this.#bytes.readUInt32LE(from)
    this.at += 4
    return value
  }

  i32(): number {
    const from = this.#need(4)
    const value = this.#bytes.readInt32LE(from)
    this.at += 4
    return value
  }

  u64(): number {
    const from = this.#need(8)
    const value = this.#bytes.readUInt32LE(from) + this.#bytes.readUInt32LE(from + 4) * 2 ** 32
    this.at += 8
    return value
  }

  i64(): number {
    const from = this.#need(8)
    const value = this.#bytes.readUInt32LE(from) + this.#bytes.readInt32LE(from + 4) * 2 ** 32
    this.at += 8
    return value
  }

  uleb(): number {
    let value = 0, scale = 1, byte: number
    do {
      byte = this.u8()
      value += (byte & 0x7f) * scale
      scale *= 128
    } while (byte & 0x80)
    return value
  }

  sleb(): number {
    let value = 0, scale = 1, byte: number
    do {
      byte = this.u8()
      value += (byte & 0x7f) * scale
      scale *= 128
    } while (byte & 0x80)
    return byte & 0x40 ? value - scale : value
  }

  /** A pointer in DW_EH_PE encoding `encoding`; pc-relative ones resolve against the field's own address. */
  pointer(encoding: number): number {
    const fieldAddress = this.#sectionAddress + this.at
    let value: number
    switch (encoding & 0x0f) {
      case 0x00: value = this.u64(); break
      case 0x01: value = this.uleb(); break
      case 0x02: value = this.u16(); break
      case 0x03: value = this.u32(); break
      case 0x04: value = this.u64(); break
      case 0x09: value = this.sleb(); break
      case 0x0a: { const from = this.#need(2); value = this.#bytes.readInt16LE(from); this.at += 2; break }
      case 0x0b: value = this.i32(); break
      case 0x0c: value = this.i64(); break
      default: throw malformed(this.#path, this.at, `unknown pointer format 0x${encoding.toString(16)}`)
    }
    switch (encoding & 0x70) {
      case 0x00: return value
      case 0x10: return value + fieldAddress
      case 0x30: if (this.#dataBase !== undefined) return value + this.#dataBase
      // falls through: text- and data-relative bases exist on other architectures; x86-64 toolchains never emit them in .eh_frame
      default: throw malformed(this.#path, this.at, `pointer application 0x${(encoding & 0x70).toString(16)} is not used on x86-64`)
    }
  }

  /** Whether the bytes at the cursor are the PLT's CFA expression; returns its threshold (11 or 10), or 0. */
  pltThreshold(length: number): number {
    if (length !== PLT_EXPRESSION.length || this.at + length > this.#length) return 0
    const from = this.#need(length)
    for (let i = 0; i < length; i++) {
      const expected = PLT_EXPRESSION[i]!
      if (expected >= 0 && this.#bytes[from + i] !== expected) return 0
    }
    const literal = this.#bytes[from + 6]!
    // DW_OP_lit0 is 0x30
    return literal >= 0x30 && literal <= 0x4f ? literal - 0x30 : 0
  }

  skip(count: number): void {
    this.#need(count)
    this.at += count
  }
}

interface Fde {
  start: number
  end: number
  cie: Cie
  instructionsAt: number
  instructionsEnd: number
}

/**
 * Reads every CIE and FDE of an .eh_frame section (`bytes`, loaded at `sectionAddress`) and runs
 * the FDEs' instructions into a table. `textBias` is the .text section's address minus its file offset.
 */
export function parseEhFrame(bytes: Buffer, sectionAddress: number, textBias: number, path: string): EhFrameTable {
  const cursor = new Cursor(bytes, sectionAddress, path)
  const cies = new Map<number, Cie>()
  const fdes: Fde[] = []
  forEachEntry(cursor, path, (entryAt, idAt, id, entryEnd) => {
    if (id === 0) {
      cies.set(entryAt, readCie(cursor, entryEnd, path))
      return
    }
    const fde = readFdeHeader(cursor, entryAt, idAt, id, entryEnd, cies, path)
    if (fde.end > fde.start) fdes.push(fde)
  })
  fdes.sort((a, b) => a.start - b.start)
  const rows = new RowBuilder()
  const ranges = new Float64Array(fdes.length * 2)
  for (const [i, fde] of fdes.entries()) {
    // an FDE overlapping the next one gives way to it, so the table stays sorted and unambiguous
    const end = Math.min(fde.end, fdes[i + 1]?.start ?? fde.end)
    ranges[2 * i] = fde.start
    ranges[2 * i + 1] = fde.end
    runFde(cursor, fde, end, rows, path)
    if (fdes[i + 1]?.start !== end) rows.gap(end)
  }
  return new EhFrameTable(rows, ranges, textBias)
}

/** Calls `visit` with every CIE and FDE of the section (id 0: a CIE), the cursor after the id. */
function forEachEntry(cursor: Cursor, path: string, visit: (entryAt: number, idAt: number, id: number, entryEnd: number) => void): void {
  cursor.at = 0
  while (cursor.at + 4 <= cursor.length) {
    const entryAt = cursor.at
    const { idAt, entryEnd } = readEntryLength(cursor, entryAt, path)
    // a zero length ends the section (crtend.o's terminator)
    if (entryEnd === idAt) break
    visit(entryAt, idAt, cursor.u32(), entryEnd)
    cursor.at = entryEnd
  }
}

/** Reads the length of the entry at `entryAt`: where its id is and where it ends (at its id: the terminator). */
function readEntryLength(cursor: Cursor, entryAt: number, path: string): { idAt: number; entryEnd: number } {
  cursor.at = entryAt
  let length = cursor.u32()
  if (length === 0) return { idAt: cursor.at, entryEnd: cursor.at }
  if (length === 0xffffffff) length = cursor.u64()
  const idAt = cursor.at
  const entryEnd = idAt + length
  if (entryEnd > cursor.length) throw malformed(path, entryAt, `an entry of ${length} bytes runs past the end of the section`)
  return { idAt, entryEnd }
}

/** The CIE at `cieAt` (read once into `cies`), which the FDE at `entryAt` names. */
function cieOf(cursor: Cursor, cieAt: number, entryAt: number, cies: Map<number, Cie>, path: string): Cie {
  let cie = cies.get(cieAt)
  if (cie !== undefined) return cie
  // a CIE after its FDEs is legal, if unusual: read it where it is
  const back = cursor.at
  cursor.at = cieAt
  const cieLength = cursor.u32()
  if (cieLength === 0 || cursor.u32() !== 0) throw malformed(path, entryAt, `the FDE's CIE pointer (0x${cieAt.toString(16)}) points at no CIE`)
  cie = readCie(cursor, cieAt + 4 + cieLength, path)
  cies.set(cieAt, cie)
  cursor.at = back
  return cie
}

/** Reads an FDE's addresses and where its instructions are; the cursor is after its CIE pointer (`id`, at `idAt`). */
function readFdeHeader(cursor: Cursor, entryAt: number, idAt: number, id: number, entryEnd: number, cies: Map<number, Cie>, path: string): Fde {
  const cie = cieOf(cursor, idAt - id, entryAt, cies, path)
  const start = cursor.pointer(cie.addressEncoding)
  const range = cursor.pointer(cie.addressEncoding & 0x0f)
  if (cie.hasAugmentationData) cursor.skip(cursor.uleb())
  return { start, end: start + range, cie, instructionsAt: cursor.at, instructionsEnd: entryEnd }
}

function readCie(cursor: Cursor, end: number, path: string): Cie {
  const at = cursor.at
  const version = cursor.u8()
  if (version !== 1 && version !== 3) throw malformed(path, at, `CIE version ${version} (only 1 and 3 are used in .eh_frame)`)
  const augmentationAt = cursor.at
  while (cursor.u8() !== 0) { /* the augmentation string */ }
  const augmentation = cursor.at - augmentationAt - 1
  const letters: number[] = []
  cursor.at = augmentationAt
  for (let i = 0; i < augmentation; i++) letters.push(cursor.u8())
  cursor.skip(1)
  const codeAlignment = cursor.uleb()
  const dataAlignment = cursor.sleb()
  const returnRegister = version === 1 ? cursor.u8() : cursor.uleb()
  const cie: Cie = {
    codeAlignment, dataAlignment, returnRegister,
    addressEncoding: 0, hasAugmentationData: letters[0] === 0x7a /* z */, signalFrame: false,
    initial: { cfaRegister: DWARF_RSP, cfaOffset: 0, rbpRule: RULE_UNSET, rbpOffset: 0, raRule: RULE_UNSET, raOffset: 0 },
  }
  if (cie.hasAugmentationData) {
    const dataLength = cursor.uleb()
    const dataEnd = cursor.at + dataLength
    for (const letter of letters.slice(1)) {
      if (letter === 0x52 /* R */) cie.addressEncoding = cursor.u8()
      else if (letter === 0x4c /* L */) cursor.u8()
      else if (letter === 0x50 /* P */) cursor.pointer(cursor.u8() & 0x7f)
      else if (letter === 0x53 /* S */) cie.signalFrame = true
      // unknown letters: the length says where the data ends
    }
    cursor.at = dataEnd
  }
  const state = { ...cie.initial }
  runInstructions(cursor, cursor.at, end, cie, state, undefined, undefined, path)
  cie.initial = state
  return cie
}

/** Runs an FDE's instructions from the CIE's initial state, pushing a row at every advance. */
function runFde(cursor: Cursor, fde: Fde, end: number, rows: RowBuilder, path: string): void {
  const state = { ...fde.cie.initial }
  const flags = fde.cie.signalFrame ? 1 : 0
  let pc = fde.start
  const emit = (next: number) => {
    if (pc < end) rows.push(pc, state, flags)
    pc = next
  }
  pc = runInstructions(cursor, fde.instructionsAt, fde.instructionsEnd, fde.cie, state, pc, emit, path)
  if (pc < end) rows.push(pc, state, flags)
}

/**
 * Runs call frame instructions on `state`. With `emit` (an FDE), each location advance pushes the
 * row so far and moves to the new address; returns the address reached.
 */
function runInstructions(cursor: Cursor, from: number, end: number, cie: Cie, state: FrameState, pc: number | undefined, emit: ((next: number) => void) | undefined, path: string): number {
  cursor.at = from
  const remembered: FrameState[] = []
  let location = pc ?? 0
  const advance = (delta: number) => {
    const next = location + delta * cie.codeAlignment
    emit?.(next)
    location = next
  }
  const setRule = (register: number, rule: number, value: number) => {
    if (register === DWARF_RBP) {
      state.rbpRule = rule
      state.rbpOffset = value
    } else if (register === cie.returnRegister) {
      state.raRule = rule
      state.raOffset = value
    }
  }
  const restore = (register: number) => {
    if (register === DWARF_RBP) setRule(register, cie.initial.rbpRule, cie.initial.rbpOffset)
    else if (register === cie.returnRegister) setRule(register, cie.initial.raRule, cie.initial.raOffset)
  }
  while (cursor.at < end) {
    const at = cursor.at
    const opcode = cursor.u8()
    const operand = opcode & 0x3f
    switch (opcode & 0xc0) {
      case 0x40: advance(operand); continue
      case 0x80: setRule(operand, RULE_OFFSET, cursor.uleb() * cie.dataAlignment); continue
      case 0xc0: restore(operand); continue
    }
    switch (opcode) {
      case 0x00: break // nop
      case 0x01: { // set_loc
        const next = cursor.pointer(cie.addressEncoding)
        emit?.(next)
        location = next
        break
      }
      case 0x02: advance(cursor.u8()); break
      case 0x03: advance(cursor.u16()); break
      case 0x04: advance(cursor.u32()); break
      case 0x05: setRule(cursor.uleb(), RULE_OFFSET, cursor.uleb() * cie.dataAlignment); break
      case 0x06: restore(cursor.uleb()); break
      case 0x07: setRule(cursor.uleb(), RULE_UNDEFINED, 0); break
      case 0x08: setRule(cursor.uleb(), RULE_SAME_VALUE, 0); break
      case 0x09: { const register = cursor.uleb(); setRule(register, RULE_REGISTER, cursor.uleb()); break }
      case 0x0a: remembered.push({ ...state }); break
      case 0x0b: { // restore_state: the CFA too, as readelf and the unwinders do
        const saved = remembered.pop()
        if (saved === undefined) throw malformed(path, at, 'DW_CFA_restore_state with no remembered state')
        Object.assign(state, saved)
        break
      }
      case 0x0c: state.cfaRegister = cursor.uleb(); state.cfaOffset = cursor.uleb(); break
      case 0x0d: state.cfaRegister = cursor.uleb(); break
      case 0x0e: if (state.cfaRegister !== CFA_EXPRESSION && state.cfaRegister !== CFA_PLT) state.cfaOffset = cursor.uleb(); else cursor.uleb(); break
      case 0x0f: { // def_cfa_expression
        const length = cursor.uleb()
        const threshold = cursor.pltThreshold(length)
        state.cfaRegister = threshold > 0 ? CFA_PLT : CFA_EXPRESSION
        state.cfaOffset = threshold
        cursor.skip(length)
        break
      }
      case 0x10: { const register = cursor.uleb(); cursor.skip(cursor.uleb()); setRule(register, RULE_EXPRESSION, 0); break }
      case 0x11: { const register = cursor.uleb(); setRule(register, RULE_OFFSET, cursor.sleb() * cie.dataAlignment); break }
      case 0x12: state.cfaRegister = cursor.uleb(); state.cfaOffset = cursor.sleb() * cie.dataAlignment; break
      case 0x13: state.cfaOffset = cursor.sleb() * cie.dataAlignment; break
      case 0x14: { const register = cursor.uleb(); setRule(register, RULE_VAL_OFFSET, cursor.uleb() * cie.dataAlignment); break }
      case 0x15: { const register = cursor.uleb(); setRule(register, RULE_VAL_OFFSET, cursor.sleb() * cie.dataAlignment); break }
      case 0x16: { const register = cursor.uleb(); cursor.skip(cursor.uleb()); setRule(register, RULE_VAL_EXPRESSION, 0); break }
      case 0x2e: cursor.uleb(); break // GNU_args_size: matters only to exception handling
      case 0x2f: { const register = cursor.uleb(); setRule(register, RULE_OFFSET, -cursor.uleb() * cie.dataAlignment); break }
      default: throw malformed(path, at, `unknown call frame instruction 0x${opcode.toString(16)}`)
    }
  }
  return location
}

/** DW_EH_PE_omit: .eh_frame_hdr has no such field. */
const POINTER_OMIT = 0xff

/**
 * An ELF file's unwind rows, read per FDE when a pc asks for them (see the file comment). It holds
 * the .eh_frame section's bytes, the index of its FDEs (start address and offset, 12 bytes an FDE)
 * and the rows of the FDEs read last: up to `maxCachedRows`, then the cache starts over.
 */
export class LazyEhFrameTable implements UnwindTable {
  readonly textBias: number
  /** FDE start addresses, ascending; fdeOffsets[i] is where FDE i is in the section. */
  readonly fdeStarts: Float64Array
  readonly fdeOffsets: Uint32Array
  readonly maxCachedRows: number
  /** Whether the index came from .eh_frame_hdr (else from walking the FDE headers). */
  readonly indexedByHeader: boolean
  /** FDEs found malformed when a pc asked for them (they cover nothing). */
  malformedFdes = 0
  readonly #cursor: Cursor
  readonly #onDisk: RangeOnDisk | undefined
  readonly #path: string
  readonly #cies = new Map<number, Cie>()
  readonly #rows: RowBuilder
  /** The FDEs read since the cache last started over: their first row in the cache, and their row count. */
  readonly #cached = new Map<number, { first: number; count: number }>()
  readonly #sectionBytes: number

  /** `ehFrame`: the section's bytes, or the section on disk (the table closes it in close()). */
  constructor(ehFrame: Buffer | RangeOnDisk, ehFrameAddress: number, header: Buffer | undefined, headerAddress: number, textBias: number, path: string, options: { maxCachedRows?: number } = {}) {
    this.textBias = textBias
    this.#path = path
    this.#cursor = new Cursor(ehFrame, ehFrameAddress, path)
    this.#onDisk = ehFrame instanceof RangeOnDisk ? ehFrame : undefined
    const size = this.#cursor.length
    this.#sectionBytes = this.#onDisk === undefined ? size : WINDOW_BYTES
    // 4,096 rows (94 KB): a few hundred functions' worth, what a busy process's samples touch of a file
    this.maxCachedRows = options.maxCachedRows ?? 4096
    const index = (header === undefined ? undefined : headerIndex(header, headerAddress, ehFrameAddress, size, path)) ?? this.#walkIndex()
    this.indexedByHeader = index.byHeader
    this.fdeStarts = index.starts
    this.fdeOffsets = index.offsets
    this.#rows = new RowBuilder(64)
  }

  /**
   * The table of an x86-64 ELF file's .eh_frame, or undefined when it has none. Throws an ElfError
   * on a malformed section. A section of `onDiskFrom` bytes or more (1 MB) stays on disk, read an
   * FDE at a time as samples land in it: node's is 3.8 MB, of which a profile reads a few hundred FDEs.
   */
  static read(elf: ElfFile, options: { maxCachedRows?: number; onDiskFrom?: number } = {}): LazyEhFrameTable | undefined {
    if (elf.machine !== MACHINE_X86_64) throw new ElfError('EINVAL', `${elf.path} is not an x86-64 file (e_machine ${elf.machine}); only x86-64 unwind tables are read`)
    const section = elf.section('.eh_frame')
    if (section === undefined || section.size === 0n) return undefined
    const text = elf.section('.text')
    const hdr = elf.section('.eh_frame_hdr')
    const header = hdr === undefined || hdr.size === 0n ? undefined : elf.read(hdr.offset, hdr.size, 'the .eh_frame_hdr section')
    const bytes = section.size >= BigInt(options.onDiskFrom ?? SECTION_ON_DISK_BYTES)
      ? elf.rangeOnDisk(section.offset, section.size, 'the .eh_frame section')
      : elf.read(section.offset, section.size, 'the .eh_frame section')
    try {
      return new LazyEhFrameTable(bytes, Number(section.address), header, hdr === undefined ? 0 : Number(hdr.address),
        text === undefined ? 0 : Number(text.address - text.offset), elf.path, options)
    } catch (error) {
      if (bytes instanceof RangeOnDisk) bytes.close()
      throw error
    }
  }

  /** Lets go of the section's file, when it stayed on disk; the table is not used after. */
  close(): void {
    this.#onDisk?.close()
  }

  get pcs(): Float64Array { return this.#rows.pcs }
  get cfaRegister(): Uint8Array { return this.#rows.cfaRegister }
  get cfaOffset(): Int32Array { return this.#rows.cfaOffset }
  get rbpRule(): Uint8Array { return this.#rows.rbpRule }
  get rbpOffset(): Int32Array { return this.#rows.rbpOffset }
  get raRule(): Uint8Array { return this.#rows.raRule }
  get raOffset(): Int32Array { return this.#rows.raOffset }
  get flags(): Uint8Array { return this.#rows.flags }

  /** Rows in the cache now. */
  get cachedRows(): number {
    return this.#rows.count
  }

  /** FDEs in the index. */
  get fdeCount(): number {
    return this.fdeStarts.length
  }

  /**
   * Bytes held: the section (or its window), the index (12 bytes an FDE) and the row cache at its
   * bound: 23 bytes a row, and an entry of about 64 for each FDE read (each has 2 rows or more).
   */
  get byteLength(): number {
    return this.#sectionBytes + this.fdeStarts.length * 12 + this.maxCachedRows * (23 + 32)
  }

  /**
   * The index of the row covering virtual address `pc` (valid until the next find()), or -1 where
   * no FDE covers it. Throws an ElfError when the FDE that covers it is malformed.
   */
  find(pc: number): number {
    const fde = this.#fdeAt(pc)
    if (fde < 0) return -1
    const { first, count } = this.#cached.get(fde) ?? this.#read(fde)
    const found = lastAtOrBefore(this.#rows.pcs, pc, first, first + count)
    return found < first || this.#rows.cfaRegister[found] === CFA_NONE ? -1 : found
  }

  /** The row at index `index` (of the last find()) as plain values. */
  row(index: number): UnwindRow {
    return unwindRow(this, index)
  }

  /** The index of the last FDE starting at or before `pc`, or -1. */
  #fdeAt(pc: number): number {
    return lastAtOrBefore(this.fdeStarts, pc)
  }

  /** Runs FDE `fde`'s instructions into the cache, ending its rows with a gap where it ends. */
  #read(fde: number): { first: number; count: number } {
    const rows = this.#rows
    if (rows.count >= this.maxCachedRows) {
      // start over: the rows read since are those of the functions sampled now
      rows.count = 0
      this.#cached.clear()
    }
    rows.floor = rows.count
    const first = rows.count
    try {
      const header = this.#fdeHeader(fde)
      // an FDE overlapping the next one gives way to it, as in the whole table
      const next = this.fdeStarts[fde + 1]
      const end = next === undefined ? header.end : Math.min(header.end, next)
      runFde(this.#cursor, header, end, rows, this.#path)
      rows.gap(end)
    } catch (error) {
      // a malformed FDE covers nothing: its frames fall back to frame pointers, as a file without a table does
      if (!(error instanceof ElfError)) throw error
      this.malformedFdes++
      rows.count = first
      rows.gap(this.fdeStarts[fde]!)
    }
    const cached = { first, count: rows.count - first }
    this.#cached.set(fde, cached)
    return cached
  }

  #fdeHeader(fde: number): Fde {
    const cursor = this.#cursor
    const entryAt = this.fdeOffsets[fde]!
    const { idAt, entryEnd } = readEntryLength(cursor, entryAt, this.#path)
    const id = entryEnd === idAt ? 0 : cursor.u32()
    if (id === 0) throw malformed(this.#path, entryAt, 'the FDE index points at a CIE or the terminator, not an FDE')
    return readFdeHeader(cursor, entryAt, idAt, id, entryEnd, this.#cies, this.#path)
  }

  /** The index of a section without .eh_frame_hdr: every FDE's start, from its header alone. */
  #walkIndex(): { starts: Float64Array; offsets: Uint32Array; byHeader: boolean } {
    const cursor = this.#cursor
    const found: { start: number; offset: number }[] = []
    forEachEntry(cursor, this.#path, (entryAt, idAt, id, entryEnd) => {
      if (id === 0) return
      const fde = readFdeHeader(cursor, entryAt, idAt, id, entryEnd, this.#cies, this.#path)
      if (fde.end > fde.start) found.push({ start: fde.start, offset: entryAt })
    })
    found.sort((a, b) => a.start - b.start)
    return { starts: Float64Array.from(found, (f) => f.start), offsets: Uint32Array.from(found, (f) => f.offset), byHeader: false }
  }
}

/**
 * The FDE index of an .eh_frame_hdr (version 1): its search table of (start address, FDE address)
 * pairs, sorted by start. Undefined when the header has no table, another version, or an unsorted
 * one (the FDE headers are walked instead).
 */
function headerIndex(header: Buffer, headerAddress: number, ehFrameAddress: number, ehFrameSize: number, path: string): { starts: Float64Array; offsets: Uint32Array; byHeader: boolean } | undefined {
  const cursor = new Cursor(header, headerAddress, `${path} (.eh_frame_hdr)`, headerAddress)
  if (header.byteLength < 4 || cursor.u8() !== 1) return undefined
  const framePointerEncoding = cursor.u8(), countEncoding = cursor.u8(), tableEncoding = cursor.u8()
  if (framePointerEncoding === POINTER_OMIT || countEncoding === POINTER_OMIT || tableEncoding === POINTER_OMIT) return undefined
  try {
    cursor.pointer(framePointerEncoding)
    const count = cursor.pointer(countEncoding)
    const starts = new Float64Array(count), offsets = new Uint32Array(count)
    for (let i = 0; i < count; i++) {
      starts[i] = cursor.pointer(tableEncoding)
      const offset = cursor.pointer(tableEncoding) - ehFrameAddress
      if (offset < 0 || offset >= ehFrameSize || (i > 0 && starts[i]! < starts[i - 1]!)) return undefined
      offsets[i] = offset
    }
    return { starts, offsets, byHeader: true }
  } catch {
    // a header this reader does not follow: the FDE headers say the same
    return undefined
  }
}

/** The GNU build id of an ELF file, as hex, or undefined when it has no .note.gnu.build-id. */
export function buildId(elf: ElfFile): string | undefined {
  const note = elf.section('.note.gnu.build-id')
  if (note === undefined || note.size < 16n) return undefined
  const bytes = elf.read(note.offset, note.size, 'the build id note')
  const nameSize = bytes.readUInt32LE(0), descriptionSize = bytes.readUInt32LE(4)
  const descriptionAt = 12 + ((nameSize + 3) & ~3)
  if (descriptionAt + descriptionSize > bytes.byteLength) return undefined
  return bytes.toString('hex', descriptionAt, descriptionAt + descriptionSize)
}

/** A file's table, or why it has none. */
export type TableLookup = { table: LazyEhFrameTable; key: string } | { table: undefined; key: string; reason: string }

/**
 * Tables per file, one per build id (files without one: per device, inode, size and modification
 * time), kept while their bytes (LazyEhFrameTable.byteLength) fit `maxBytes`, least recently used
 * going first. Files without a table are remembered too, so they are not read again. A file seen
 * before under another path (another process's /proc/<pid>/map_files link) is known by its
 * identity, without opening it for its build id again.
 */
export class EhFrameTables {
  readonly maxBytes: number
  readonly maxCachedRows: number | undefined
  readonly #tables = new Map<string, TableLookup>()
  /** The key a file's table is under, by the file's identity (device, inode, size, mtime). */
  readonly #keys = new Map<string, string>()
  #bytes = 0

  constructor(options: { maxBytes?: number; maxCachedRows?: number } = {}) {
    // 256 MB: node's table holds 1.5 MB (its FDE index; its 3.8 MB .eh_frame stays on disk), libc's 0.4 MB
    this.maxBytes = options.maxBytes ?? 256 * 1024 * 1024
    this.maxCachedRows = options.maxCachedRows
  }

  /** Bytes the kept tables hold (at their row caches' bound). */
  get bytes(): number {
    return this.#bytes
  }

  get size(): number {
    return this.#tables.size
  }

  /** The table of the ELF file at `path` (a /proc/<pid>/map_files link, say): stat'ed each time, read once per build id. */
  get(path: string): TableLookup {
    const stat = statSync(path, { bigint: true })
    const identity = `${stat.dev}:${stat.ino}:${stat.size}:${stat.mtimeNs}`
    const knownKey = this.#keys.get(identity)
    const known = knownKey === undefined ? undefined : this.#tables.get(knownKey)
    if (known !== undefined) return this.#touch(known)
    let lookup: TableLookup
    let elf: ElfFile | undefined
    try {
      elf = ElfFile.open(path)
      const key = buildId(elf) ?? identity
      this.#keys.set(identity, key)
      const cached = this.#tables.get(key)
      if (cached !== undefined) return this.#touch(cached)
      const table = LazyEhFrameTable.read(elf, { maxCachedRows: this.maxCachedRows })
      lookup = table === undefined ? { table, key, reason: `${path} has no .eh_frame section` } : { table, key }
    } catch (error) {
      lookup = { table: undefined, key: identity, reason: (error as Error).message }
      this.#keys.set(identity, identity)
    } finally {
      elf?.close()
    }
    this.#tables.set(lookup.key, lookup)
    this.#bytes += lookup.table?.byteLength ?? 0
    this.#evict()
    return lookup
  }

  #touch(lookup: TableLookup): TableLookup {
    this.#tables.delete(lookup.key)
    this.#tables.set(lookup.key, lookup)
    return lookup
  }

  #evict(): void {
    for (const [key, lookup] of this.#tables) {
      if (this.#bytes <= this.maxBytes || this.#tables.size <= 1) break
      this.#tables.delete(key)
      // not closed: an unwinder's process may still hold the table; a file left on disk is closed once nothing does
      this.#bytes -= lookup.table?.byteLength ?? 0
    }
    // identities of replaced files pile up: forget them all now and then
    if (this.#keys.size > this.#tables.size * 4 + 1024) this.#keys.clear()
  }
}
