/**
 * ELF symbols of user-space binaries, read in user space: a function's file offset for a uprobe
 * (libbpf 1.1 resolves symbols only inside its own uprobe attach, and keeps its resolver private).
 *
 * Only the headers and the symbol and string tables are read, each with one positioned read, so a
 * large binary (Node's own, 120 MB) costs its tables, not its size. ELF32 and ELF64 of either byte
 * order are read. A Go binary whose symbol tables were stripped is searched through Go's own
 * function table (runtime/symbols/gopclntab.ts).
 *
 * For symbolisation (runtime/symbols/symbolizer.ts) the same file gives the other direction:
 * every function of .symtab and .dynsym as a sorted table (address -> name), the GNU build id,
 * the `.gnu_debuglink` and the separate debug file they point to, and the load bias of a mapping.
 */
import { closeSync, existsSync, fstatSync, openSync, readSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { crc32 } from 'node:zlib'
import { GoFunctionTable } from './gopclntab.ts'
import { aliasRank, type SymbolRange, SymbolTable } from './symbol-table.ts'

/** An ELF file could not be read, or has no such function: `code` says which. */
export class ElfError extends Error {
  /** ENOSYMBOL: no defined function of that name; ENOEXEC: not an ELF file; EINVAL: a malformed or ambiguous one. */
  readonly code: 'ENOSYMBOL' | 'ENOEXEC' | 'EINVAL'

  constructor(code: ElfError['code'], message: string) {
    super(message)
    this.name = 'ElfError'
    this.code = code
  }
}

export interface FunctionSymbol {
  name: string
  /** st_value: the virtual address the symbol table gives (relative to the load base for a shared object or PIE). */
  address: bigint
  size: bigint
  binding: 'local' | 'global' | 'weak'
  /** Where the function's code sits in the file: what a uprobe attaches to. */
  fileOffset: number
  /** The table it was found in; a Go function's size from .gopclntab runs to the next function's entry. */
  table: '.dynsym' | '.symtab' | '.gopclntab'
}

export interface Segment {
  fileOffset: bigint
  address: bigint
  fileSize: bigint
}

interface Section {
  name: number
  type: number
  address: bigint
  offset: bigint
  size: bigint
  link: number
  entrySize: bigint
}

const SHT_SYMTAB = 2
const SHT_NOTE = 7
const SHT_DYNSYM = 11
const SHT_GNU_VERSYM = 0x6fffffff
/** In a .gnu.version entry: the symbol's version is not the default one (name@VERSION, not name@@VERSION). */
const VERSYM_HIDDEN = 0x8000
const PT_LOAD = 1
const PT_NOTE = 4
const STT_FUNC = 2
const STT_GNU_IFUNC = 10
const NT_GNU_BUILD_ID = 3
/** Name ids of .dynsym names carry this bit, .symtab's do not (SymbolTable's name ids are one number). */
const DYNSYM_NAME = 0x80000000
/** Name ids of PLT entries (`name@plt`, made here) carry this bit, with an index into their list. */
const PLT_NAME = 0x40000000
/** Name ids of Go functions (from .gopclntab) carry this bit, with an index into their list. */
const GO_NAME = 0x20000000
/** A Go function's name before a .dynsym alias of the same address (aliasRank gives 0 and up). */
const GO_RANK = -1
const SHT_RELA = 4
/** An x86-64 PLT entry's size; the lazy-binding .plt starts with one entry of its own (PLT0). */
const PLT_ENTRY_SIZE = 16
const STB_LOCAL = 0
const STB_WEAK = 2
const SHN_UNDEF = 0

/**
 * The file offset of function `name` in the ELF file at `path`, as libbpf's elf_find_func_offset
 * finds it for a classic uprobe: the defined STT_FUNC symbol named `name` (or `name@VERSION`, and a
 * `name@@VERSION` given in full), from .dynsym, else .symtab; a weak definition gives way to a
 * strong one. Else, in a Go binary, the function of Go's table (.gopclntab) of that name.
 * Throws an ElfError (`code` ENOSYMBOL when there is no such function).
 * @example functionFileOffset('/usr/lib/x86_64-linux-gnu/libssl.so.3', 'SSL_write')  // 0x35980
 */
export function functionFileOffset(path: string, name: string): number {
  const elf = ElfFile.open(path)
  try {
    return elf.functionSymbol(name).fileOffset
  } finally {
    elf.close()
  }
}

/**
 * A function table's names by name id. A function of its own, so the closure the table keeps holds
 * only the string tables, not the ranges it was built from (a closure made next to a callback that
 * uses `ranges` shares its scope and kept every range of every cached file alive: 10 MB whole-host).
 */
function functionNames(strings: (Buffer | NamesOnDisk)[], pltNames: string[], goFunctions: readonly { name: string }[]): (id: number) => string {
  return (id) => {
    if (id & PLT_NAME) return pltNames[id & ~PLT_NAME]!
    if (id & GO_NAME) return goFunctions[id & ~GO_NAME]!.name
    const names = strings[id & DYNSYM_NAME ? 1 : 0]!
    const start = id & ~DYNSYM_NAME
    if (names instanceof NamesOnDisk) return names.name(start)
    const end = names.indexOf(0, start)
    return names.toString('utf8', start, end < 0 ? names.byteLength : end)
  }
}

/**
 * What closes the tables `sources` left on disk, if any. Made out here for the reason
 * functionNames is: a closure made in functionTable would keep its `ranges` (10 MB for node).
 */
function closeAll(sources: (Buffer | NamesOnDisk)[]): (() => void) | undefined {
  const onDisk = sources.filter((source) => source instanceof NamesOnDisk)
  return onDisk.length === 0 ? undefined : () => onDisk.forEach((names) => names.close())
}

/** From this size a long-lived table's string table stays on disk (functionTable's namesOnDisk). */
const NAMES_ON_DISK_BYTES = 1024 * 1024

/** Closes the descriptor of a RangeOnDisk that became unreachable without close(). */
const unreachableRanges = new FinalizationRegistry<number>((fd) => closeSync(fd))

/**
 * Bytes of a file read where a lookup needs them, not kept in memory: through a descriptor of its
 * own, opened again through /proc/self/fd, since the file may be deleted or replaced on disk while
 * its processes run (the descriptor keeps the file the process mapped). Its owner closes it, or
 * it is closed once nothing holds it.
 */
export class RangeOnDisk {
  readonly path: string
  /** Bytes in the range (a section's size). */
  readonly size: number
  readonly #offset: number
  #fd: number | undefined

  constructor(path: string, fd: number, offset: number, size: number) {
    this.path = path
    this.#fd = openSync(`/proc/self/fd/${fd}`, 'r')
    this.#offset = offset
    this.size = size
    unreachableRanges.register(this, this.#fd, this)
  }

  /** Reads into `buffer` from `at` bytes into the range, up to the range's end; the bytes read (fewer where the file shrank). */
  read(buffer: Buffer, at: number, filled = 0): number {
    if (this.#fd === undefined) throw new Error(`${this.path} was read after its table was released`)
    const want = Math.min(buffer.byteLength - filled, this.size - at)
    return want <= 0 ? 0 : readSync(this.#fd, buffer, filled, want, this.#offset + at)
  }

  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd)
    this.#fd = undefined
    unreachableRanges.unregister(this)
  }
}

/**
 * A string table left in its file: a name is read when a lookup first lands on it (SymbolTable
 * keeps it then). A profiler names a few thousand functions of a binary, and Node's own string
 * tables are 14 MB.
 */
class NamesOnDisk {
  readonly #range: RangeOnDisk

  constructor(path: string, fd: number, offset: number, size: number) {
    this.#range = new RangeOnDisk(path, fd, offset, size)
  }

  /** The NUL-terminated name at `start`; reads on until the NUL (C++ names run to kilobytes). */
  name(start: number): string {
    let buffer = Buffer.allocUnsafe(256)
    for (let filled = 0; ;) {
      const read = this.#range.read(buffer, start + filled, filled)
      const end = buffer.indexOf(0, filled)
      if (end >= 0 && end < filled + read) return buffer.toString('utf8', 0, end)
      filled += read
      // the table's end (or the file's, shrunk since) ends the name as the in-memory table would
      if (read === 0) return buffer.toString('utf8', 0, filled)
      if (filled === buffer.byteLength) buffer = Buffer.concat([buffer, Buffer.allocUnsafe(buffer.byteLength)])
    }
  }

  close(): void {
    this.#range.close()
  }
}

/** EM_X86_64 in e_machine. */
export const MACHINE_X86_64 = 62

export class ElfFile {
  readonly path: string
  /** e_machine: the instruction set (MACHINE_X86_64, 183 for AArch64, …). */
  readonly machine: number
  readonly #fd: number
  readonly #fileSize: bigint
  readonly #view: Reader
  readonly #segments: Segment[]
  readonly #noteSegments: { fileOffset: bigint; fileSize: bigint }[] = []
  readonly #sections: Section[]

  private constructor(path: string, fd: number) {
    this.path = path
    this.#fd = fd
    this.#fileSize = BigInt(fstatSync(fd).size)
    const ident = this.read(0n, 16n, 'the ELF identification')
    if (ident.readUInt32BE(0) !== 0x7f454c46) throw new ElfError('ENOEXEC', `${path} is not an ELF file (no ELF magic)`)
    const elfClass = ident[4], byteOrder = ident[5]
    if ((elfClass !== 1 && elfClass !== 2) || (byteOrder !== 1 && byteOrder !== 2)) {
      throw new ElfError('EINVAL', `${path} is an ELF file of an unknown class (${elfClass}) or byte order (${byteOrder})`)
    }
    const header = this.read(0n, elfClass === 2 ? 64n : 52n, 'the ELF header')
    this.#view = new Reader(header, elfClass === 2, byteOrder === 1)
    this.machine = this.#view.u16(18)
    this.#segments = this.#readSegments()
    this.#sections = this.#readSections()
  }

  /** Opens an ELF file: reads its header, program headers and section headers. */
  static open(path: string): ElfFile {
    const fd = openSync(path, 'r')
    try {
      return new ElfFile(path, fd)
    } catch (error) {
      closeSync(fd)
      throw error
    }
  }

  close(): void {
    closeSync(this.#fd)
  }

  /** The file's size in bytes. */
  get size(): bigint {
    return this.#fileSize
  }

  /** The defined function `name` (see functionFileOffset for how it is chosen); throws ENOSYMBOL when there is none. */
  functionSymbol(name: string): FunctionSymbol {
    const searched: string[] = []
    for (const type of [SHT_DYNSYM, SHT_SYMTAB]) {
      const table = this.#sections.find((s) => s.type === type)
      if (table === undefined) continue
      searched.push(type === SHT_DYNSYM ? '.dynsym' : '.symtab')
      const found = this.#findIn(table, name)
      if (found !== undefined) return found
    }
    const go = GoFunctionTable.open(this)
    if (go !== undefined) {
      searched.push('.gopclntab')
      const found = go.find(name)
      if (found !== undefined) return { ...found, binding: 'global', fileOffset: this.fileOffset(found.address), table: '.gopclntab' }
    }
    const where = this.#sections.length === 0
      ? 'it has no section headers, so neither its symbol tables nor Go\'s function table (.gopclntab) can be found; give the file offset instead'
      : searched.length === 0 ? 'it has no symbol table (.dynsym or .symtab) and is no Go binary (no .gopclntab)' : `searched ${searched.length === 1 ? searched[0] : `${searched.slice(0, -1).join(', ')} and ${searched.at(-1)}`}`
    throw new ElfError('ENOSYMBOL', `${this.path} has no function symbol ${name} (${where})`)
  }

  /** The section named `name` (the first of that name), or undefined. */
  section(name: string): { address: bigint; offset: bigint; size: bigint } | undefined {
    const names = this.#sectionNames()
    if (names === undefined) return undefined
    const wanted = Buffer.from(`${name}\0`)
    const found = this.#sections.find((s) => s.name + wanted.byteLength <= names.byteLength && names.compare(wanted, 0, wanted.byteLength, s.name, s.name + wanted.byteLength) === 0)
    return found === undefined ? undefined : { address: found.address, offset: found.offset, size: found.size }
  }

  /** The file offset of a virtual address: through the PT_LOAD segment that maps it, as the kernel maps the file. */
  fileOffset(address: bigint): number {
    const segment = this.#segments.find((s) => address >= s.address && address < s.address + s.fileSize)
    if (segment === undefined) throw new ElfError('EINVAL', `${this.path}: address 0x${address.toString(16)} is in no loadable segment of the file`)
    return Number(address - segment.address + segment.fileOffset)
  }

  /** The PT_LOAD segments: where each part of the file is mapped, relative to the load base. */
  loadSegments(): readonly Readonly<Segment>[] {
    return this.#segments
  }

  /**
   * The virtual address (as the symbol tables give it) at `fileOffset` of the file, through the
   * PT_LOAD segment holding it; undefined where no segment maps that byte.
   */
  addressOfFileOffset(fileOffset: number): number | undefined {
    const offset = BigInt(fileOffset)
    const segment = this.#segments.find((s) => offset >= s.fileOffset && offset < s.fileOffset + s.fileSize)
    return segment === undefined ? undefined : Number(offset - segment.fileOffset + segment.address)
  }

  /**
   * The load bias of a mapping of this file at `start` from file offset `offset` (a line of
   * /proc/<pid>/maps): runtime address = virtual address + bias. 0 for a non-PIE executable.
   * undefined when no PT_LOAD segment covers that offset (a mapping of data, or another file).
   */
  loadBias(start: bigint, offset: bigint): bigint | undefined {
    // mappings start on a page, segments need not: a segment's first page holds the offset
    const segment = this.#segments.find((s) => offset >= (s.fileOffset & ~0xfffn) && offset < s.fileOffset + s.fileSize)
    return segment === undefined ? undefined : start - offset - (segment.address - segment.fileOffset)
  }

  #buildId: string | null | undefined

  /** The GNU build id (NT_GNU_BUILD_ID note) as lower-case hex, or undefined when the file has none. */
  buildId(): string | undefined {
    if (this.#buildId !== undefined) return this.#buildId ?? undefined
    const places = this.#sections.length > 0
      ? this.#sections.filter((s) => s.type === SHT_NOTE).map((s) => ({ fileOffset: s.offset, fileSize: s.size }))
      : this.#noteSegments
    this.#buildId = null
    for (const place of places) {
      const found = buildIdOfNotes(this.read(place.fileOffset, place.fileSize, 'a note section'), this.#view.little)
      if (found !== undefined) {
        this.#buildId = found
        break
      }
    }
    return this.#buildId ?? undefined
  }

  /** The `.gnu_debuglink` section: the separate debug file's name and the CRC-32 of its contents. */
  debugLink(): { file: string; crc: number } | undefined {
    const section = this.section('.gnu_debuglink')
    if (section === undefined || section.size < 8n) return undefined
    const bytes = this.read(section.offset, section.size, 'the .gnu_debuglink section')
    const end = bytes.indexOf(0)
    if (end <= 0) return undefined
    // the name, its NUL, padding to 4 bytes, then the CRC
    const crcAt = (end + 4) & ~3
    if (crcAt + 4 > bytes.byteLength) return undefined
    return { file: bytes.toString('utf8', 0, end), crc: this.#view.little ? bytes.readUInt32LE(crcAt) : bytes.readUInt32BE(crcAt) }
  }

  /** Whether the file has a .symtab (a stripped file keeps only .dynsym, the exported functions). */
  hasSymtab(): boolean {
    return this.#sections.some((s) => s.type === SHT_SYMTAB)
  }

  /**
   * Every defined function (STT_FUNC and GNU indirect functions) of .symtab and .dynsym, as a
   * sorted table of virtual address ranges; for one address perf's choice among aliases
   * (aliasRank). A function of size 0 runs to the next one. A Go binary without .symtab
   * adds Go's own table (.gopclntab). Names are decoded only when looked up, and not demangled.
   * With `namesOnDisk`, for a table kept long (the symbolizer's), a large string table stays in
   * the file until its names are looked up, and release() closes it.
   */
  functionTable({ namesOnDisk = false }: { namesOnDisk?: boolean } = {}): SymbolTable {
    const ranges: SymbolRange[] = []
    const strings: Buffer[] = []
    const stringSections: Section[] = []
    for (const type of [SHT_SYMTAB, SHT_DYNSYM]) {
      const table = this.#sections.find((s) => s.type === type)
      if (table === undefined) continue
      strings[type === SHT_DYNSYM ? 1 : 0] = this.#functionRanges(table, type === SHT_DYNSYM ? DYNSYM_NAME : 0, ranges)
      stringSections[type === SHT_DYNSYM ? 1 : 0] = this.#sections[table.link]!
    }
    const pltNames = this.machine === MACHINE_X86_64 && strings[1] !== undefined ? this.#pltRanges(strings[1], ranges) : []
    // a stripped Go binary keeps Go's own table (and, built with cgo, a .dynsym of a few C functions)
    const goFunctions = strings[0] === undefined ? GoFunctionTable.open(this)?.functions() ?? [] : []
    goFunctions.forEach((f, i) => ranges.push({ start: Number(f.address), end: Number(f.address + f.size), rank: GO_RANK, name: GO_NAME | i }))
    const sources = strings.map((names, i) => namesOnDisk && names.byteLength >= NAMES_ON_DISK_BYTES
      ? new NamesOnDisk(this.path, this.#fd, Number(stringSections[i]!.offset), names.byteLength)
      : names)
    return SymbolTable.build(ranges, functionNames(sources, pltNames, goFunctions), 1, closeAll(sources))
  }

  /** Appends the functions of symbol table `table` to `ranges`; returns the table's strings. */
  #functionRanges(table: Section, nameFlag: number, ranges: SymbolRange[]): Buffer {
    const strings = this.#sections[table.link]
    if (strings === undefined) throw new ElfError('EINVAL', `${this.path}: a symbol table links to section ${table.link}, which does not exist`)
    const wide = this.#view.wide
    const entrySize = wide ? 24 : 16
    if (table.entrySize !== BigInt(entrySize)) throw new ElfError('EINVAL', `${this.path}: symbol entries of ${table.entrySize} bytes, expected ${entrySize}`)
    const symbols = this.read(table.offset, table.size, 'a symbol table')
    const names = this.read(strings.offset, strings.size, 'a string table')
    const reader = new Reader(symbols, wide, this.#view.little)
    const versions = this.#hiddenVersions(table)
    for (let at = 0, index = 0; at + entrySize <= symbols.byteLength; at += entrySize, index++) {
      const info = symbols[at + (wide ? 4 : 12)]!
      const type = info & 0xf
      const sectionIndex = reader.u16(at + (wide ? 6 : 14))
      if ((type !== STT_FUNC && type !== STT_GNU_IFUNC) || sectionIndex === SHN_UNDEF) continue
      const start = wide ? Number(reader.u64(at + 8)) : reader.u32(at + 4)
      if (start === 0) continue
      const size = wide ? Number(reader.u64(at + 16)) : reader.u32(at + 8)
      const name = reader.u32(at)
      const bind = info >> 4
      let underscores = 0
      while (names[name + underscores] === 0x5f /* _ */) underscores++
      const length = names.indexOf(0, name) - name
      // an old version of a function kept for old binaries (cfree@GLIBC_2.2.5) names it as a local would
      const binding = bind === STB_LOCAL || versions?.(index) ? 'local' : bind === STB_WEAK ? 'weak' : 'global'
      const section = this.#sections[sectionIndex]
      // _init (size 0) must not run on over the PLT that follows its section
      const limit = size === 0 && section !== undefined ? Number(section.address + section.size) : undefined
      ranges.push({ start, end: start + size, limit, rank: aliasRank(size > 0, binding, underscores, length), name: name | nameFlag })
    }
    return names
  }

  /**
   * The x86-64 PLT's entries as functions `name@plt`, as perf names them: entry i of .plt.sec
   * (the IBT layout), or of .plt after its first entry, calls the function of .rela.plt's i-th
   * relocation. Returns the names, which the ranges' name ids index.
   */
  #pltRanges(dynamicNames: Buffer, ranges: SymbolRange[]): string[] {
    const relocations = this.#sections.find((s) => s.type === SHT_RELA && this.#sectionName(s) === '.rela.plt')
    const dynsym = this.#sections.find((s) => s.type === SHT_DYNSYM)
    const sec = this.section('.plt.sec'), plt = this.section('.plt')
    if (relocations === undefined || dynsym === undefined || (sec ?? plt) === undefined || !this.#view.wide) return []
    const first = sec !== undefined ? Number(sec.address) : Number(plt!.address) + PLT_ENTRY_SIZE
    const rela = new Reader(this.read(relocations.offset, relocations.size, 'the PLT relocations'), true, this.#view.little)
    const symbols = new Reader(this.read(dynsym.offset, dynsym.size, 'the dynamic symbols'), true, this.#view.little)
    const names: string[] = []
    for (let i = 0; (i + 1) * 24 <= Number(relocations.size); i++) {
      const symbol = Number(rela.u64(i * 24 + 8) >> 32n)
      // an IRELATIVE relocation has no symbol: its entry stays unnamed
      if (symbol === 0 || (symbol + 1) * 24 > Number(dynsym.size)) continue
      const nameAt = symbols.u32(symbol * 24)
      const end = dynamicNames.indexOf(0, nameAt)
      const start = first + i * PLT_ENTRY_SIZE
      ranges.push({ start, end: start + PLT_ENTRY_SIZE, rank: aliasRank(true, 'local', 0, 0), name: PLT_NAME | names.length })
      names.push(`${dynamicNames.toString('utf8', nameAt, end < 0 ? dynamicNames.byteLength : end)}@plt`)
    }
    return names
  }

  #sectionName(section: Section): string | undefined {
    const names = this.#sectionNames()
    if (names === undefined) return undefined
    const end = names.indexOf(0, section.name)
    return names.toString('latin1', section.name, end < 0 ? names.byteLength : end)
  }

  /** For .dynsym: whether symbol `index` has a hidden (non-default) version, from .gnu.version. */
  #hiddenVersions(table: Section): ((index: number) => boolean) | undefined {
    if (table.type !== SHT_DYNSYM) return undefined
    const versym = this.#sections.find((s) => s.type === SHT_GNU_VERSYM)
    if (versym === undefined) return undefined
    const entries = new Reader(this.read(versym.offset, versym.size, 'the symbol versions'), this.#view.wide, this.#view.little)
    const count = Number(versym.size / 2n)
    return (index) => index < count && (entries.u16(index * 2) & VERSYM_HIDDEN) !== 0
  }

  #sectionNameTable: Buffer | undefined

  /** The section-name string table (e_shstrndx), read once. */
  #sectionNames(): Buffer | undefined {
    if (this.#sectionNameTable !== undefined || this.#sections.length === 0) return this.#sectionNameTable
    let index = this.#view.u16(this.#view.wide ? 62 : 50)
    // SHN_XINDEX: the index did not fit, it is in the first section header's link
    if (index === 0xffff) index = this.#sections[0]!.link
    const table = this.#sections[index]
    if (table === undefined) throw new ElfError('EINVAL', `${this.path}: the section names are in section ${index}, which does not exist`)
    this.#sectionNameTable = this.read(table.offset, table.size, 'the section names')
    return this.#sectionNameTable
  }

  #findIn(table: Section, name: string): FunctionSymbol | undefined {
    const strings = this.#sections[table.link]
    if (strings === undefined) throw new ElfError('EINVAL', `${this.path}: a symbol table links to section ${table.link}, which does not exist`)
    const wide = this.#view.wide
    const entrySize = wide ? 24n : 16n
    if (table.entrySize !== entrySize) throw new ElfError('EINVAL', `${this.path}: symbol entries of ${table.entrySize} bytes, expected ${entrySize}`)
    const symbols = this.read(table.offset, table.size, 'a symbol table')
    const names = this.read(strings.offset, strings.size, 'a string table')
    const reader = new Reader(symbols, wide, this.#view.little)
    const wanted = Buffer.from(name)
    // `name@@VERSION` names one version; a bare name also matches its versioned spellings
    const qualified = name.includes('@@')
    let best: { symbol: FunctionSymbol; strong: boolean } | undefined
    for (let at = 0; at + Number(entrySize) <= symbols.byteLength; at += Number(entrySize)) {
      const info = symbols[at + (wide ? 4 : 12)]!
      const shndx = reader.u16(at + (wide ? 6 : 14))
      if ((info & 0xf) !== STT_FUNC || shndx === SHN_UNDEF) continue
      const start = reader.u32(at)
      if (!matches(names, start, wanted, qualified)) continue
      const address = wide ? reader.u64(at + 8) : BigInt(reader.u32(at + 4))
      if (address === 0n) continue
      const bind = info >> 4
      const strong = bind !== STB_WEAK
      if (best !== undefined) {
        if (!strong || best.symbol.address === address) continue
        if (best.strong) {
          throw new ElfError('EINVAL', `${this.path}: function ${name} is defined twice, at 0x${best.symbol.address.toString(16)} and 0x${address.toString(16)}; ` +
            'give the file offset instead of the symbol')
        }
      }
      const end = names.indexOf(0, start)
      best = {
        strong,
        symbol: {
          name: names.toString('utf8', start, end < 0 ? names.byteLength : end),
          address,
          size: wide ? reader.u64(at + 16) : BigInt(reader.u32(at + 8)),
          binding: bind === STB_LOCAL ? 'local' : strong ? 'global' : 'weak',
          fileOffset: this.fileOffset(address),
          table: table.type === SHT_DYNSYM ? '.dynsym' : '.symtab',
        },
      }
    }
    return best?.symbol
  }

  #readSegments(): Segment[] {
    const h = this.#view
    const offset = h.wide ? h.u64(32) : BigInt(h.u32(28))
    const entrySize = h.u16(h.wide ? 54 : 42)
    const count = h.u16(h.wide ? 56 : 44)
    if (count === 0) return []
    const table = new Reader(this.read(offset, BigInt(entrySize * count), 'the program headers'), h.wide, h.little)
    const segments: Segment[] = []
    for (let i = 0, at = 0; i < count; i++, at += entrySize) {
      const type = table.u32(at)
      if (type === PT_NOTE) {
        this.#noteSegments.push(h.wide ? { fileOffset: table.u64(at + 8), fileSize: table.u64(at + 32) } : { fileOffset: BigInt(table.u32(at + 4)), fileSize: BigInt(table.u32(at + 16)) })
      }
      if (type !== PT_LOAD) continue
      segments.push(h.wide
        ? { fileOffset: table.u64(at + 8), address: table.u64(at + 16), fileSize: table.u64(at + 32) }
        : { fileOffset: BigInt(table.u32(at + 4)), address: BigInt(table.u32(at + 8)), fileSize: BigInt(table.u32(at + 16)) })
    }
    return segments
  }

  #readSections(): Section[] {
    const h = this.#view
    const offset = h.wide ? h.u64(40) : BigInt(h.u32(32))
    const entrySize = h.u16(h.wide ? 58 : 46)
    let count = h.u16(h.wide ? 60 : 48)
    if (offset === 0n) return []
    const section = (table: Reader, at: number): Section => (h.wide
      ? { name: table.u32(at), type: table.u32(at + 4), address: table.u64(at + 16), offset: table.u64(at + 24), size: table.u64(at + 32), link: table.u32(at + 40), entrySize: table.u64(at + 56) }
      : { name: table.u32(at), type: table.u32(at + 4), address: BigInt(table.u32(at + 12)), offset: BigInt(table.u32(at + 16)), size: BigInt(table.u32(at + 20)), link: table.u32(at + 24), entrySize: BigInt(table.u32(at + 36)) })
    // more than 0xff00 sections: the count is in the first section header's size
    if (count === 0) count = Number(section(new Reader(this.read(offset, BigInt(entrySize), 'the section headers'), h.wide, h.little), 0).size)
    const table = new Reader(this.read(offset, BigInt(entrySize * count), 'the section headers'), h.wide, h.little)
    return Array.from({ length: count }, (_, i) => section(table, i * entrySize))
  }

  /** `length` bytes at `offset` left on disk, read as they are needed (they stay readable after close()). */
  rangeOnDisk(offset: bigint, length: bigint, what: string): RangeOnDisk {
    if (offset + length > this.#fileSize) throw new ElfError('EINVAL', `${this.path}: ${what} (${length} bytes at ${offset}) ends past the end of the file (${this.#fileSize} bytes)`)
    return new RangeOnDisk(this.path, this.#fd, Number(offset), Number(length))
  }

  /** `length` bytes at `offset`, all of them or an error naming `what` was cut short. */
  read(offset: bigint, length: bigint, what: string): Buffer {
    if (offset + length > this.#fileSize) throw new ElfError(offset === 0n ? 'ENOEXEC' : 'EINVAL', `${this.path}: ${what} (${length} bytes at ${offset}) ends past the end of the file (${this.#fileSize} bytes)${offset === 0n ? '; it is not an ELF file' : ''}`)
    const buffer = Buffer.allocUnsafe(Number(length))
    let done = 0
    while (done < buffer.byteLength) {
      const read = readSync(this.#fd, buffer, done, buffer.byteLength - done, Number(offset) + done)
      if (read === 0) throw new ElfError('EINVAL', `${this.path}: ${what} was cut short (the file shrank while it was read)`)
      done += read
    }
    return buffer
  }
}

/** Where separate debug files are looked for: the distributions' place (Debian's -dbgsym packages install there). */
export const DEFAULT_DEBUG_DIRECTORIES = ['/usr/lib/debug']

/**
 * The separate debug file of `elf`, as gdb finds it: by build id
 * (`<dir>/.build-id/xx/yyyy.debug`, whose build id must match), else by `.gnu_debuglink` next to
 * the file, in its `.debug/` folder, and under each debug directory's copy of the file's folder
 * (whose CRC-32 must match). `elf.path` is where the file is read, `originalPath` where the
 * process mapped it (they differ for a file read through /proc/<pid>/map_files/). Opens the file
 * found; the caller closes it.
 */
export function openDebugFile(elf: ElfFile, originalPath: string = elf.path, debugDirectories: readonly string[] = DEFAULT_DEBUG_DIRECTORIES): ElfFile | undefined {
  const buildId = elf.buildId()
  if (buildId !== undefined && buildId.length > 2) {
    for (const directory of debugDirectories) {
      const candidate = join(directory, '.build-id', buildId.slice(0, 2), `${buildId.slice(2)}.debug`)
      const found = openIf(candidate, (debug) => debug.buildId() === buildId)
      if (found !== undefined) return found
    }
  }
  const link = elf.debugLink()
  if (link === undefined) return undefined
  const folder = dirname(originalPath)
  for (const candidate of [join(folder, link.file), join(folder, '.debug', link.file), ...debugDirectories.map((d) => join(d, folder, link.file))]) {
    if (candidate === originalPath) continue
    const found = openIf(candidate, (debug) => crc32(debug.read(0n, debug.size, 'the debug file')) === link.crc)
    if (found !== undefined) return found
  }
  return undefined
}

function openIf(path: string, accept: (elf: ElfFile) => boolean): ElfFile | undefined {
  if (!existsSync(path)) return undefined
  let elf: ElfFile
  try {
    elf = ElfFile.open(path)
  } catch {
    // a debug file that is no ELF file is as good as none: the caller goes on without it
    return undefined
  }
  if (accept(elf)) return elf
  elf.close()
  return undefined
}

/** The GNU build id in a buffer of ELF notes (a note section, PT_NOTE segment or /sys/kernel/notes), as hex. */
export function buildIdOfNotes(notes: Buffer, little: boolean = true): string | undefined {
  const u32 = (at: number): number => (little ? notes.readUInt32LE(at) : notes.readUInt32BE(at))
  for (let at = 0; at + 12 <= notes.byteLength;) {
    const nameSize = u32(at), descSize = u32(at + 4), type = u32(at + 8)
    const nameAt = at + 12, descAt = nameAt + ((nameSize + 3) & ~3)
    if (descAt + descSize > notes.byteLength) return undefined
    if (type === NT_GNU_BUILD_ID && nameSize === 4 && notes.toString('latin1', nameAt, nameAt + 3) === 'GNU') return notes.toString('hex', descAt, descAt + descSize)
    at = descAt + ((descSize + 3) & ~3)
  }
  return undefined
}

/** Whether the NUL-terminated string at `start` of `names` is `wanted`, or `wanted@…` unless `qualified`. */
function matches(names: Buffer, start: number, wanted: Buffer, qualified: boolean): boolean {
  if (start + wanted.byteLength > names.byteLength) return false
  if (names[start] !== wanted[0] || names.compare(wanted, 0, wanted.byteLength, start, start + wanted.byteLength) !== 0) return false
  const next = names[start + wanted.byteLength]
  return next === 0 || next === undefined || qualified || next === 0x40 /* @ */
}

/** Little- or big-endian fields of a buffer, 32- or 64-bit ELF. */
class Reader {
  readonly wide: boolean
  readonly little: boolean
  readonly #view: DataView

  constructor(buffer: Buffer, wide: boolean, little: boolean) {
    this.#view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength)
    this.wide = wide
    this.little = little
  }

  u16(at: number): number {
    return this.#view.getUint16(at, this.little)
  }

  u32(at: number): number {
    return this.#view.getUint32(at, this.little)
  }

  u64(at: number): bigint {
    return this.#view.getBigUint64(at, this.little)
  }
}
