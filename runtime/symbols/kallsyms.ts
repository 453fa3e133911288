/**
 * Kernel symbols from /proc/kallsyms: a kernel address (a frame of a kernel stack) -> function +
 * offset, with the module it belongs to (`[bpf]` for a JIT-compiled BPF program).
 *
 * Only text symbols (t, T, w, W) are kept. kallsyms has no sizes: a function runs to the next
 * one. Kernel addresses all have their top 16 bits set, so the table is keyed on the low 48
 * bits, which a double holds exactly. Reading the real addresses takes root (CAP_SYSLOG) with
 * kernel.kptr_restrict at 0 or 1; otherwise the kernel shows zeros and load() says so.
 *
 * @example
 *   const kernel = KernelSymbols.load()
 *   kernel.lookup(0xffffffff81234567n)  // { name: 'do_sys_openat2', offset: 0x17, module: undefined }
 */
import { readFileSync } from 'node:fs'
import { buildIdOfNotes } from './elf.ts'
import { type SymbolRange, SymbolTable } from './symbol-table.ts'

const LOW_48_BITS = 0xffff_ffff_ffffn
const KERNEL_HALF = 0xffff_0000_0000_0000n

export interface KernelSymbol {
  name: string
  /** From the function's start. */
  offset: number
  /** The module's name (`bpf` for BPF programs); undefined for the kernel image. */
  module: string | undefined
}

export class KernelSymbols {
  /** The running kernel's build id (/sys/kernel/notes), undefined where the kernel was built without one. */
  readonly buildId: string | undefined
  readonly #table: SymbolTable
  /** Modules of the name ids that have one. */
  readonly #modules: Map<number, string>

  private constructor(table: SymbolTable, modules: Map<number, string>, buildId: string | undefined) {
    this.#table = table
    this.#modules = modules
    this.buildId = buildId
  }

  /**
   * Reads `/proc/kallsyms` (or a file of the same format). Throws when every address reads as
   * zero: the kernel hides them from this process.
   */
  static load(path: string = '/proc/kallsyms', notesPath: string = '/sys/kernel/notes'): KernelSymbols {
    const text = readFileSync(path)
    const ranges: SymbolRange[] = []
    /*
     * The names alone, packed: the table keeps them for the life of the profiler, and the file
     * they come from is twice their size (5.4 MB against 3.0 MB here), besides a start and an end
     * per name in JS arrays (another 2 MB or so).
     */
    const names = Buffer.allocUnsafe(text.byteLength)
    const nameStarts: number[] = [0]
    const modules = new Map<number, string>()
    let nonZero = false
    let packed = 0
    for (let at = 0; at < text.byteLength;) {
      let end = text.indexOf(NEWLINE, at)
      if (end < 0) end = text.byteLength
      // "ffffffff81000000 T _stext" or "ffffffffc00006e4 t bpf_prog_…_enter_read\t[bpf]"
      const type = text[at + 17]
      if (type === 0x74 /* t */ || type === 0x54 /* T */ || type === 0x77 /* w */ || type === 0x57 /* W */) {
        const key = hexValue(text, at + 4, at + 16)
        if (key !== 0) nonZero = true
        // a module's symbols end in "\t[module]"; indexOf would search on past the line
        let nameEnd = at + 19
        while (nameEnd < end && text[nameEnd] !== TAB) nameEnd++
        const id = nameStarts.length - 1
        packed += text.copy(names, packed, at + 19, nameEnd)
        nameStarts.push(packed)
        if (nameEnd !== end) modules.set(id, text.toString('latin1', nameEnd + 2, end - 1))
        // of symbols at one address the last listed wins, as in perf (which sizes each symbol up
        // to the next address, leaving the earlier ones of an address empty, and prefers sized ones)
        ranges.push({ start: key, end: key, rank: -id, name: id })
      }
      at = end + 1
    }
    if (ranges.length > 0 && !nonZero) {
      throw new Error(`${path} shows every kernel address as 0: this process may not see them (kernel.kptr_restrict is ${readSysctl('kernel/kptr_restrict')}; ` +
        'run as root with kernel.kptr_restrict at 0 or 1, or grant CAP_SYSLOG)')
    }
    const table = SymbolTable.build(ranges, packedNames(Buffer.from(names.subarray(0, packed)), Uint32Array.from(nameStarts)), LAST_SYMBOL_SIZE)
    return new KernelSymbols(table, modules, kernelBuildId(notesPath))
  }

  get size(): number {
    return this.#table.size
  }

  /** The function holding kernel address `address`, or undefined (a user-space address, one below the kernel's text). */
  lookup(address: bigint): KernelSymbol | undefined {
    if ((address & KERNEL_HALF) !== KERNEL_HALF) return undefined
    const key = Number(address & LOW_48_BITS)
    const index = this.#table.indexOf(key)
    if (index < 0) return undefined
    return { name: this.#table.name(index), offset: key - this.#table.start(index), module: this.#modules.get(this.#table.nameId(index)) }
  }
}

const NEWLINE = 0x0a
const TAB = 0x09

/** The value of the hexadecimal digits `bytes[from..to)` (lowercase, as kallsyms prints them). */
function hexValue(bytes: Buffer, from: number, to: number): number {
  let value = 0
  for (let i = from; i < to; i++) {
    const c = bytes[i]!
    value = value * 16 + (c <= 0x39 ? c - 0x30 : c - 0x57)
  }
  return value
}

/**
 * Name `id` of packed names: `starts[id]` to `starts[id + 1]`. A function of its own, so that the
 * table's closure holds only these two, not the file read to build them.
 */
function packedNames(names: Buffer, starts: Uint32Array): (id: number) => string {
  return (id) => names.toString('latin1', starts[id]!, starts[id + 1]!)
}

/** kallsyms has no sizes: a function ends where the next starts; the highest is taken to span a page. */
const LAST_SYMBOL_SIZE = 4096

function kernelBuildId(notesPath: string): string | undefined {
  try {
    return buildIdOfNotes(readFileSync(notesPath))
  } catch {
    // no /sys/kernel/notes (a kernel without sysfs notes): frames go without the kernel's build id
    return undefined
  }
}

function readSysctl(name: string): string {
  try {
    return readFileSync(`/proc/sys/${name}`, 'utf8').trim()
  } catch {
    return 'unknown'
  }
}
