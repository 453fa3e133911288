/**
 * Go's function table, `.gopclntab`: every Go function's name and entry address, in Go binaries
 * whose symbol table was stripped (`go build -ldflags='-s -w'`), which keep it because the runtime
 * needs it for tracebacks and stack copying. Formats of Go 1.16 (magic 0xfffffffa), 1.18–1.19
 * (0xfffffff0) and 1.20 and later (0xfffffff1) are read, as Go's debug/gosym reads them.
 *
 * Only the header, the function-name table and the function table proper are read, each with one
 * positioned read; the line and stack tables, most of the section, are not.
 */
import type { ElfFile } from './elf.ts'
import { ElfError } from './elf.ts'

export interface GoFunction {
  /** As Go spells it: `crypto/tls.(*Conn).Write`, `main.main`. */
  name: string
  /** The entry's virtual address (relative to the load base in a PIE). */
  address: bigint
  /** Up to the next function's entry: the code and the padding after it. */
  size: bigint
}

/** The names the section goes by: PIE and shared-library builds put it among the read-only-after-relocation data. */
const SECTION_NAMES = ['.gopclntab', '.data.rel.ro.gopclntab']

type Version = '1.16' | '1.18' | '1.20'
const MAGICS = new Map<number, Version>([[0xfffffffa, '1.16'], [0xfffffff0, '1.18'], [0xfffffff1, '1.20']])

/**
 * Where the runtime's module data (`runtime.firstmoduledata`) may sit: its own section since Go
 * 1.26, the pointer-free data before that, the data in older releases.
 */
const MODULE_DATA_SECTIONS = ['.go.module', '.noptrdata', '.data']
/** Pointer-sized words before `text` in the module data: pcHeader, 6 slices of 3 words, findfunctab, minpc, maxpc. */
const MODULE_DATA_TEXT_WORD = 22

export class GoFunctionTable {
  readonly version: Version
  readonly #elf: ElfFile
  readonly #little: boolean
  readonly #pointerSize: 4 | 8
  readonly #count: number
  readonly #textStart: bigint
  /** Function names, NUL-terminated, each function's `nameOff` into it. */
  readonly #names: Buffer
  /** The function table (entry, offset of the function's `_func`) pairs and the `_func` records they point to. */
  readonly #functions: Buffer

  private constructor(elf: ElfFile, section: { address: bigint; offset: bigint; size: bigint }, version: Version, little: boolean, pointerSize: 4 | 8) {
    this.#elf = elf
    this.version = version
    this.#little = little
    this.#pointerSize = pointerSize
    const header = elf.read(section.offset, BigInt(8 + 8 * pointerSize), 'the .gopclntab header')
    const word = (index: number): bigint => this.#word(header, 8 + index * pointerSize)
    // Go 1.18 added the text start after the two counts; everything after it moved one word
    const shift = version === '1.16' ? 0 : 1
    const count = word(0)
    const namesAt = word(2 + shift), namesEnd = word(3 + shift), functionsAt = word(6 + shift)
    const entrySize = BigInt(this.#fieldSize)
    if (count > 10_000_000n || namesAt > namesEnd || namesEnd > section.size || functionsAt + (2n * count + 1n) * entrySize > section.size) {
      throw new ElfError('EINVAL', `${elf.path}: its .gopclntab header gives offsets past the section (${section.size} bytes); the table is damaged`)
    }
    this.#count = Number(count)
    this.#names = elf.read(section.offset + namesAt, namesEnd - namesAt, 'the .gopclntab function names')
    this.#functions = elf.read(section.offset + functionsAt, section.size - functionsAt, 'the .gopclntab function table')
    this.#textStart = version === '1.16' ? 0n : word(2) !== 0n ? word(2) : this.#findTextStart(section.address, section.address + namesAt)
  }

  /** The file's Go function table, or undefined when it has no `.gopclntab` section. Throws EINVAL on one it cannot read. */
  static open(elf: ElfFile): GoFunctionTable | undefined {
    const section = SECTION_NAMES.map((name) => elf.section(name)).find((s) => s !== undefined)
    if (section === undefined) return undefined
    const start = elf.read(section.offset, 8n, 'the .gopclntab header')
    const little = MAGICS.has(start.readUInt32LE(0))
    const version = MAGICS.get(little ? start.readUInt32LE(0) : start.readUInt32BE(0))
    if (version === undefined) {
      throw new ElfError('EINVAL', `${elf.path}: its .gopclntab starts with magic 0x${start.readUInt32LE(0).toString(16)}, ` +
        'not one of Go 1.16 or later (0xfffffffa, 0xfffffff0, 0xfffffff1); binaries of older Go releases are not read')
    }
    const quantum = start[6]!, pointerSize = start[7]!
    if (start[4] !== 0 || start[5] !== 0 || ![1, 2, 4].includes(quantum) || (pointerSize !== 4 && pointerSize !== 8)) {
      throw new ElfError('EINVAL', `${elf.path}: its .gopclntab header is damaged (instruction quantum ${quantum}, pointer size ${pointerSize})`)
    }
    return new GoFunctionTable(elf, section, version, little, pointerSize)
  }

  /**
   * The function named `name`; undefined when there is none (an inlined-only function has no entry
   * of its own). A function called across Go's two calling conventions also has an ABI wrapper of
   * the same name here; as in the symbol table, where the ABI0 one is `name.abi0`, the name means
   * the register-ABI one: a Go function rather than its wrapper for assembly callers, but the
   * wrapper that Go code calls an assembly function through.
   */
  find(name: string): GoFunction | undefined {
    const offsets = this.#nameOffsets(name)
    if (offsets.size === 0) return undefined
    const found: number[] = []
    for (let i = 0; i < this.#count; i++) if (offsets.has(this.#nameOffset(i))) found.push(i)
    if (found.length === 0) return undefined
    // an assembly function's twin is its register-ABI wrapper; a Go function's twin is an ABI0
    // wrapper, which has the wrappers' function ID where ordinary code has 0
    const compiled = found.filter((i) => !this.#isAssembly(i))
    const chosen = compiled.length <= 1 ? compiled[0] ?? found[0]! : compiled.find((i) => this.#functionId(i) === 0) ?? compiled[0]!
    return this.#function(chosen, name)
  }

  /** Every function, in address order. */
  functions(): GoFunction[] {
    return Array.from({ length: this.#count }, (_, i) => {
      const start = this.#nameOffset(i)
      const end = this.#names.indexOf(0, start)
      return this.#function(i, this.#names.toString('utf8', start, end < 0 ? this.#names.byteLength : end))
    })
  }

  #function(index: number, name: string): GoFunction {
    const address = this.#entry(index)
    return { name, address, size: this.#entry(index + 1) - address }
  }

  /** Entry `index` of the function table (`count` is the end of the last function). */
  #entry(index: number): bigint {
    const value = this.#field(2 * index)
    return this.version === '1.16' ? value : this.#textStart + value
  }

  #nameOffset(index: number): number {
    // `_func` starts with the entry (a pointer in 1.16, a 32-bit offset since) and then nameOff
    const at = this.#record(index, this.#fieldSize + 4) + this.#fieldSize
    return this.#little ? this.#functions.readInt32LE(at) : this.#functions.readInt32BE(at)
  }

  /** `_func.funcID`, after entry and eight 32-bit fields (nine since 1.20, which added startLine). */
  #functionId(index: number): number {
    return this.#functions[this.#record(index, this.#functionIdAt + 1) + this.#functionIdAt]!
  }

  /** The flag byte after the function ID has FuncFlagAsm (1 << 2) for functions written in assembly. */
  #isAssembly(index: number): boolean {
    return (this.#functions[this.#record(index, this.#functionIdAt + 2) + this.#functionIdAt + 1]! & 4) !== 0
  }

  get #functionIdAt(): number {
    return this.#fieldSize + 4 * (this.version === '1.20' ? 9 : 8)
  }

  /** Where function `index`'s `_func` starts, checked to hold `length` bytes. */
  #record(index: number, length: number): number {
    const at = Number(this.#field(2 * index + 1))
    if (at + length > this.#functions.byteLength) throw new ElfError('EINVAL', `${this.#elf.path}: .gopclntab function ${index} lies past the section; the table is damaged`)
    return at
  }

  /** Where `name` starts in the name table: every place the whole NUL-terminated string sits. */
  #nameOffsets(name: string): Set<number> {
    const wanted = Buffer.from(`${name}\0`)
    const offsets = new Set<number>()
    for (let at = this.#names.indexOf(wanted); at >= 0; at = this.#names.indexOf(wanted, at + 1)) {
      if (at === 0 || this.#names[at - 1] === 0) offsets.add(at)
    }
    return offsets
  }

  get #fieldSize(): number {
    return this.version === '1.16' ? this.#pointerSize : 4
  }

  #field(index: number): bigint {
    return this.#word(this.#functions, index * this.#fieldSize, this.#fieldSize)
  }

  #word(buffer: Buffer, at: number, size: number = this.#pointerSize): bigint {
    if (size === 4) return BigInt(this.#little ? buffer.readUInt32LE(at) : buffer.readUInt32BE(at))
    return this.#little ? buffer.readBigUInt64LE(at) : buffer.readBigUInt64BE(at)
  }

  /**
   * Function entries count from the runtime's `runtime.text`, which the linker leaves out of the
   * header in the file. The runtime's module data holds it, next to pointers to this table, which
   * identify it. Without it, the start of `.text` is what Go's internal linker puts there; an
   * external linker (cgo) may put C code first, which only the module data tells.
   */
  #findTextStart(tableAddress: bigint, namesAddress: bigint): bigint {
    const size = this.#pointerSize
    for (const name of MODULE_DATA_SECTIONS) {
      const section = this.#elf.section(name)
      if (section === undefined || section.size === 0n) continue
      const data = this.#elf.read(section.offset, section.size, `the ${name} section`)
      for (let at = 0; at + (MODULE_DATA_TEXT_WORD + 1) * size <= data.byteLength; at += size) {
        if (this.#word(data, at) === tableAddress && this.#word(data, at + size) === namesAddress) {
          return this.#word(data, at + MODULE_DATA_TEXT_WORD * size)
        }
      }
    }
    const text = this.#elf.section('.text')
    if (text === undefined) throw new ElfError('EINVAL', `${this.#elf.path}: neither the runtime's module data nor a .text section says where Go's functions start`)
    return text.address
  }
}
