/**
 * Unwind tables of x86-64 ELF files, from `.eh_frame`: for every instruction address a function's
 * FDE covers, where the caller's frame is (the CFA: rsp or rbp plus an offset), where the caller's
 * rbp was saved and where the return address is. This is what a profiler needs to walk a stack of
 * code built without frame pointers (most of a Debian system: libc, redis, nginx, postgres).
 *
 * The CIEs and FDEs are read in one pass over the section and their DWARF call frame instructions
 * are run, as `readelf --debug-dump=frames-interp` runs them, into one sorted table of rows (a row
 * starts at an address and holds until the next row). Only the columns an x86-64 unwinder uses are
 * kept (CFA, rbp, return address): a row where only another register's rule changes is merged into
 * the row before it. `.eh_frame_hdr` is not needed: its search table indexes the same FDEs, and the
 * table built here is already sorted.
 *
 * Rows live in typed arrays (23 bytes a row; libc.so.6 has about 28,000), so a table costs no
 * per-row objects and a lookup is a binary search. `EhFrameTables` keeps one table per file (by
 * build id) up to a bound on the total rows.
 *
 * @example
 *   const elf = ElfFile.open('/lib/x86_64-linux-gnu/libc.so.6')
 *   const table = EhFrameTable.read(elf)   // undefined when the file has no .eh_frame
 *   const row = table?.find(0x27290)       // row index, or -1 where no FDE covers the address
 */
import { statSync } from 'node:fs'
import { ElfError, ElfFile, MACHINE_X86_64 } from './elf.ts'

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

/** The PLT CFA expression without its last-but-three byte (DW_OP_lit11 or DW_OP_lit10): breg7 8; breg16 0; lit15; and; litN; ge; lit3; shl; plus. */
const PLT_EXPRESSION = [0x77, 0x08, 0x80, 0x00, 0x3f, 0x1a, -1, 0x2a, 0x33, 0x24, 0x22]

export class EhFrameTable {
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
    const pcs = this.pcs
    let low = 0, high = pcs.length - 1, found = -1
    while (low <= high) {
      const middle = (low + high) >>> 1
      if (pcs[middle]! <= pc) {
        found = middle
        low = middle + 1
      } else {
        high = middle - 1
      }
    }
    return found < 0 || this.cfaRegister[found] === CFA_NONE ? -1 : found
  }

  /** The row at index `index` as plain values. */
  row(index: number): UnwindRow {
    return {
      pc: this.pcs[index]!,
      cfaRegister: this.cfaRegister[index]!,
      cfaOffset: this.cfaOffset[index]!,
      rbpRule: this.rbpRule[index]!,
      rbpOffset: this.rbpOffset[index]!,
      raRule: this.raRule[index]!,
      raOffset: this.raOffset[index]!,
      signalFrame: (this.flags[index]! & 1) !== 0,
    }
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
  pcs = new Float64Array(1024)
  cfaRegister = new Uint8Array(1024)
  cfaOffset = new Int32Array(1024)
  rbpRule = new Uint8Array(1024)
  rbpOffset = new Int32Array(1024)
  raRule = new Uint8Array(1024)
  raOffset = new Int32Array(1024)
  flags = new Uint8Array(1024)

  /** Appends a row; a row at the same address as the last replaces it, and a row equal to the last adds nothing. */
  push(pc: number, state: FrameState, flags: number): void {
    const last = this.count - 1
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

/** Little-endian reads of the section with DWARF's variable-length and pointer encodings. */
class Cursor {
  at = 0
  readonly #bytes: Buffer
  readonly #sectionAddress: number
  readonly #path: string

  constructor(bytes: Buffer, sectionAddress: number, path: string) {
    this.#bytes = bytes
    this.#sectionAddress = sectionAddress
    this.#path = path
  }

  get length(): number {
    return this.#bytes.byteLength
  }

  #need(count: number): void {
    if (this.at + count > this.#bytes.byteLength) throw malformed(this.#path, this.at, `a field of ${count} bytes runs past the end of the section`)
  }

  u8(): number {
    this.#need(1)
    return this.#bytes[this.at++]!
  }

  u16(): number {
    this.#need(2)
    const value = this.#bytes.readUInt16LE(this.at)
    this.at += 2
    return value
  }

  u32(): number {
    this.#need(4)
    const value = this.#bytes.readUInt32LE(this.at)
    this.at += 4
    return value
  }

  i32(): number {
    this.#need(4)
    const value = this.#bytes.readInt32LE(this.at)
    this.at += 4
    return value
  }

  u64(): number {
    this.#need(8)
    const value = this.#bytes.readUInt32LE(this.at) + this.#bytes.readUInt32LE(this.at + 4) * 2 ** 32
    this.at += 8
    return value
  }

  i64(): number {
    this.#need(8)
    const value = this.#bytes.readUInt32LE(this.at) + this.#bytes.readInt32LE(this.at + 4) * 2 ** 32
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
      case 0x0a: value = this.#bytes.readInt16LE((this.#need(2), this.at)); this.at += 2; break
      case 0x0b: value = this.i32(); break
      case 0x0c: value = this.i64(); break
      default: throw malformed(this.#path, this.at, `unknown pointer format 0x${encoding.toString(16)}`)
    }
    switch (encoding & 0x70) {
      case 0x00: return value
      case 0x10: return value + fieldAddress
      // text- and data-relative bases exist on other architectures; x86-64 toolchains never emit them in .eh_frame
      default: throw malformed(this.#path, this.at, `pointer application 0x${(encoding & 0x70).toString(16)} is not used on x86-64`)
    }
  }

  /** Whether the bytes at the cursor are the PLT's CFA expression; returns its threshold (11 or 10), or 0. */
  pltThreshold(length: number): number {
    if (length !== PLT_EXPRESSION.length || this.at + length > this.#bytes.byteLength) return 0
    for (let i = 0; i < length; i++) {
      const expected = PLT_EXPRESSION[i]!
      if (expected >= 0 && this.#bytes[this.at + i] !== expected) return 0
    }
    const literal = this.#bytes[this.at + 6]!
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
  while (cursor.at + 4 <= cursor.length) {
    const entryAt = cursor.at
    let length = cursor.u32()
    // a zero length ends the section (crtend.o's terminator)
    if (length === 0) break
    if (length === 0xffffffff) length = cursor.u64()
    const bodyAt = cursor.at
    const entryEnd = bodyAt + length
    if (entryEnd > cursor.length) throw malformed(path, entryAt, `an entry of ${length} bytes runs past the end of the section`)
    const idAt = cursor.at
    const id = cursor.u32()
    if (id === 0) {
      cies.set(entryAt, readCie(cursor, entryEnd, path))
    } else {
      const cieAt = idAt - id
      let cie = cies.get(cieAt)
      if (cie === undefined) {
        // a CIE after its FDEs is legal, if unusual: read it where it is
        const back = cursor.at
        cursor.at = cieAt
        const cieLength = cursor.u32()
        if (cursor.u32() !== 0) throw malformed(path, entryAt, `the FDE's CIE pointer (0x${cieAt.toString(16)}) points at no CIE`)
        cie = readCie(cursor, cieAt + 4 + cieLength, path)
        cies.set(cieAt, cie)
        cursor.at = back
      }
      const start = cursor.pointer(cie.addressEncoding)
      const range = cursor.pointer(cie.addressEncoding & 0x0f)
      if (cie.hasAugmentationData) cursor.skip(cursor.uleb())
      if (range > 0) fdes.push({ start, end: start + range, cie, instructionsAt: cursor.at, instructionsEnd: entryEnd })
    }
    cursor.at = entryEnd
  }
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
export type TableLookup = { table: EhFrameTable; key: string } | { table: undefined; key: string; reason: string }

/**
 * Tables per file, built once per build id (files without one: per device, inode, size and
 * modification time) and kept while their rows fit `maxRows` (least recently used go first).
 * Files without a table are remembered too, so they are not read again.
 */
export class EhFrameTables {
  readonly maxRows: number
  readonly #tables = new Map<string, TableLookup>()
  /** What a path (as opened) was last: its identity when read, and the key its table is under. */
  readonly #files = new Map<string, { identity: string; key: string }>()
  #rows = 0

  constructor(options: { maxRows?: number } = {}) {
    // 4 million rows (92 MB): libc, libstdc++ and a large server binary take about 100,000
    this.maxRows = options.maxRows ?? 4_000_000
  }

  get rows(): number {
    return this.#rows
  }

  get size(): number {
    return this.#tables.size
  }

  /** The table of the ELF file at `path` (a /proc/<pid>/map_files link, say): stat'ed each time, read once per build id. */
  get(path: string): TableLookup {
    const stat = statSync(path, { bigint: true })
    const identity = `${stat.dev}:${stat.ino}:${stat.size}:${stat.mtimeNs}`
    const known = this.#files.get(path)
    if (known?.identity === identity) {
      const cached = this.#tables.get(known.key)
      if (cached !== undefined) return this.#touch(known.key, cached)
    }
    let lookup: TableLookup
    let elf: ElfFile | undefined
    try {
      elf = ElfFile.open(path)
      const key = buildId(elf) ?? identity
      this.#files.set(path, { identity, key })
      const cached = this.#tables.get(key)
      if (cached !== undefined) return this.#touch(key, cached)
      const table = EhFrameTable.read(elf)
      lookup = table === undefined ? { table, key, reason: `${path} has no .eh_frame section` } : { table, key }
    } catch (error) {
      lookup = { table: undefined, key: identity, reason: (error as Error).message }
      this.#files.set(path, { identity, key: identity })
    } finally {
      elf?.close()
    }
    this.#tables.set(lookup.key, lookup)
    this.#rows += lookup.table?.rowCount ?? 0
    this.#evict()
    return lookup
  }

  #touch(key: string, lookup: TableLookup): TableLookup {
    this.#tables.delete(key)
    this.#tables.set(key, lookup)
    return lookup
  }

  #evict(): void {
    for (const [key, lookup] of this.#tables) {
      if (this.#rows <= this.maxRows || this.#tables.size <= 1) break
      this.#tables.delete(key)
      this.#rows -= lookup.table?.rowCount ?? 0
    }
    // paths of exited processes' map_files links pile up: forget them all now and then
    if (this.#files.size > this.#tables.size * 4 + 1024) this.#files.clear()
  }
}
