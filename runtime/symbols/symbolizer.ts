/**
 * Symbolisation of profile stacks: (pid, addresses) -> frames naming the function, the module
 * (file, `[kernel.kallsyms]`, `[jit]`…), the offset in it and its build id. The profiler plugin
 * and `periscope profile` call it once per collected batch, never per sample.
 *
 * - User addresses go through the process's executable mappings (mappings.ts) to the mapped
 *   file's functions (.symtab, .dynsym, a separate debug file found by build id or
 *   .gnu_debuglink, Go's .gopclntab: elf.ts), demangled in one c++filt run per batch, or by
 *   the runtime's long-lived c++filt (demangle.ts); addresses in JIT code through the process's perf map (perf-map.ts).
 * - The vDSO's functions come from this process's copy of it, the same image in every process.
 * - Kernel addresses go through /proc/kallsyms (kallsyms.ts).
 * - A frame that cannot be named keeps its module, file offset and build id, so a backend with
 *   the debug files can name it later.
 *
 * Caching: a file's function table is built once and shared by every process mapping that file
 * (keyed by build id, else by device, inode and path), in an LRU bounded by file count and total
 * symbols. A process's mappings are read on its first request and again when an address falls
 * outside them (a library loaded since). Processes leave the cache when processExited() is called
 * (the exit event) or sweep() finds them gone (or their pid reused); files that no cached process
 * maps are then kept only up to `maxIdleFiles`, the most recently used first.
 *
 * @example
 *   const symbolizer = new Symbolizer()
 *   const [stack] = symbolizer.symbolize([{ pid, addresses: userStack }])
 *   stack[0]  // { function: 'compute_hot', module: '/usr/bin/burner', functionOffset: 18, … }
 *   symbolizer.symbolizeKernel(kernelStack)
 *   symbolizer.sweep()  // after each collection
 */
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { demangleAll, demangleAllAsync, isMangled } from './demangle.ts'
import { ElfFile, openDebugFile, DEFAULT_DEBUG_DIRECTORIES } from './elf.ts'
import { KernelSymbols } from './kallsyms.ts'
import { type Mapping, ProcessMappings } from './mappings.ts'
import { PerfMap } from './perf-map.ts'
import type { SymbolTable } from './symbol-table.ts'

export interface Frame {
  /** The address as given. */
  address: bigint
  /** The function's name, demangled; undefined when it could not be found. */
  function: string | undefined
  /** Bytes from the function's start to `address`; undefined with `function`. */
  functionOffset: number | undefined
  /**
   * The file's path as the process mapped it; `[kernel.kallsyms]` or a module's name for the
   * kernel; `[jit]` for code named by a perf map; `[vdso]`, `[anon]`, or `[unknown]` where no
   * mapping holds the address (or the process is gone).
   */
  module: string
  /**
   * The file offset of `address` in `module`; for code named by a perf map, and for the kernel
   * (whose addresses are randomised at each boot), the offset from the function's start.
   */
  moduleOffset: bigint
  /** The module's GNU build id (hex), when it has one. */
  buildId: string | undefined
  origin: 'user' | 'kernel' | 'jit'
}

export interface StackRequest {
  pid: number
  /** Innermost first, as bpf_get_stack and the unwinder give them. */
  addresses: ArrayLike<bigint>
  /**
   * Whether all addresses but the first are return addresses (default true, a stack): each is
   * looked up one byte earlier, inside the call, so a call that ends its function (a noreturn
   * call) is not taken for the next function.
   */
  returnAddresses?: boolean
}

export interface SymbolizerOptions {
  /** Processes whose mappings are kept (least recently used leave first). Default 4096. */
  maxProcesses?: number
  /** Files whose function tables are kept. Default 512. */
  maxFiles?: number
  /** Symbols in all kept tables together (about 40 bytes each). Default 4,000,000. */
  maxSymbols?: number
  /** Files that no cached process maps, kept by sweep() for the next process (libc, …). Default 64. */
  maxIdleFiles?: number
  /** Where separate debug files are looked for. Default /usr/lib/debug. */
  debugDirectories?: readonly string[]
  /** For tests: another procfs. */
  procRoot?: string
}

export interface SymbolizerStats {
  processes: number
  files: number
  symbols: number
  /** Tables built (cache misses) since the symbolizer was made. */
  filesRead: number
}

interface FileEntry {
  key: string
  path: string
  buildId: string | undefined
  /** undefined: not an ELF file, or unreadable; frames keep module and offset. */
  table: SymbolTable | undefined
  segments: { fileOffset: number; address: number; end: number }[]
  /** The identities (device:inode:path) that led here. */
  identities: Set<string>
}

interface ProcessEntry {
  pid: number
  startTime: string
  maps: ProcessMappings
  /** The identity of each mapping's file (device:inode:path), '' for mappings of no file. */
  identities: string[]
  perfMap: PerfMap | undefined | null
  /** The batch that last re-read the maps or the perf map: at most once a batch. */
  refreshedMaps: number
  refreshedPerfMap: number
}

const KERNEL_MODULE = '[kernel.kallsyms]'

export class Symbolizer {
  readonly #options: Required<SymbolizerOptions>
  readonly #processes = new Map<number, ProcessEntry>()
  /** LRU: Map order is use order, the least recent first. */
  readonly #files = new Map<string, FileEntry>()
  readonly #identities = new Map<string, string>()
  #symbols = 0
  #filesRead = 0
  #batch = 0
  #kernel: KernelSymbols | undefined
  /** The vDSO's functions (null: it could not be read). */
  #vdso: FileEntry | null | undefined

  constructor(options: SymbolizerOptions = {}) {
    this.#options = {
      maxProcesses: options.maxProcesses ?? 4096,
      maxFiles: options.maxFiles ?? 512,
      maxSymbols: options.maxSymbols ?? 4_000_000,
      maxIdleFiles: options.maxIdleFiles ?? 64,
      debugDirectories: options.debugDirectories ?? DEFAULT_DEBUG_DIRECTORIES,
      procRoot: options.procRoot ?? '/proc',
    }
  }

  /**
   * Frames for each request's addresses, in order. With `demangle: false` names stay as the
   * files spell them, for demangleFramesAsync (the runtime's way: no c++filt run of its own).
   */
  symbolize(requests: readonly StackRequest[], { demangle = true }: { demangle?: boolean } = {}): Frame[][] {
    this.#batch++
    const stacks = requests.map((request) => {
      const process = this.#process(request.pid)
      const frames: Frame[] = []
      for (let i = 0; i < request.addresses.length; i++) {
        const address = request.addresses[i]!
        const lookup = i > 0 && request.returnAddresses !== false ? address - 1n : address
        frames.push(process === undefined ? unknownFrame(address) : this.#userFrame(process, address, lookup))
      }
      return frames
    })
    if (demangle) demangleFrames(stacks.flat())
    return stacks
  }

  /**
   * Frames of kernel addresses (innermost first; all but the first are return addresses unless
   * told otherwise). `demangle` as symbolize's.
   */
  symbolizeKernel(addresses: ArrayLike<bigint>, returnAddresses: boolean = true, { demangle = true }: { demangle?: boolean } = {}): Frame[] {
    this.#kernel ??= KernelSymbols.load(`${this.#options.procRoot}/kallsyms`)
    const frames: Frame[] = []
    for (let i = 0; i < addresses.length; i++) {
      const address = addresses[i]!
      const symbol = this.#kernel.lookup(i > 0 && returnAddresses ? address - 1n : address)
      const offset = symbol === undefined ? undefined : symbol.offset + (i > 0 && returnAddresses ? 1 : 0)
      frames.push({
        address,
        function: symbol?.name,
        functionOffset: offset,
        module: symbol?.module === undefined ? KERNEL_MODULE : `[${symbol.module}]`,
        moduleOffset: BigInt(offset ?? 0),
        buildId: symbol === undefined || symbol.module === undefined ? this.#kernel.buildId : undefined,
        origin: 'kernel',
      })
    }
    // Rust in the kernel mangles too
    if (demangle) demangleFrames(frames)
    return frames
  }

  /** Re-reads /proc/kallsyms on the next kernel lookup: BPF programs and modules loaded since show up. */
  reloadKernelSymbols(): void {
    this.#kernel = undefined
  }

  /** Drops process `pid` (its exit was seen); see the module doc for what happens to its files. */
  processExited(pid: number): void {
    this.#processes.delete(pid)
  }

  /**
   * Drops the processes that exited (or whose pid now belongs to another process), then the
   * files no cached process maps beyond `maxIdleFiles`. Returns how many processes left.
   */
  sweep(): number {
    let gone = 0
    for (const [pid, entry] of this.#processes) {
      if (readStartTime(this.#options.procRoot, pid) === entry.startTime) continue
      this.#processes.delete(pid)
      gone++
    }
    const mapped = new Set<string>()
    for (const entry of this.#processes.values()) for (const identity of entry.identities) mapped.add(identity)
    let idle = [...this.#files.values()].filter((file) => ![...file.identities].some((identity) => mapped.has(identity)))
    idle = idle.slice(0, Math.max(0, idle.length - this.#options.maxIdleFiles))
    for (const file of idle) this.#evict(file)
    return gone
  }

  stats(): SymbolizerStats {
    return { processes: this.#processes.size, files: this.#files.size, symbols: this.#symbols, filesRead: this.#filesRead }
  }

  #process(pid: number): ProcessEntry | undefined {
    const cached = this.#processes.get(pid)
    if (cached !== undefined) {
      this.#processes.delete(pid)
      this.#processes.set(pid, cached)
      return cached
    }
    const startTime = readStartTime(this.#options.procRoot, pid)
    if (startTime === undefined) return undefined
    let maps: ProcessMappings
    try {
      maps = ProcessMappings.read(pid, this.#options.procRoot)
    } catch {
      // the process exited between the sample and now: its frames keep their addresses only
      return undefined
    }
    const entry: ProcessEntry = { pid, startTime, maps, identities: maps.mappings.map(identityOf), perfMap: undefined, refreshedMaps: this.#batch, refreshedPerfMap: 0 }
    this.#processes.set(pid, entry)
    while (this.#processes.size > this.#options.maxProcesses) this.#processes.delete(this.#processes.keys().next().value!)
    return entry
  }

  #userFrame(process: ProcessEntry, address: bigint, lookup: bigint): Frame {
    let index = process.maps.indexOf(lookup)
    if (index < 0 && process.refreshedMaps !== this.#batch) {
      this.#rereadMaps(process)
      index = process.maps.indexOf(lookup)
    }
    if (index < 0) return this.#jitFrame(process, address, lookup) ?? unknownFrame(address)
    const mapping = process.maps.mappings[index]!
    const moduleOffset = address - mapping.start + mapping.offset
    if (mapping.kind === 'file') {
      const file = this.#file(process, mapping, process.identities[index]!)
      const frame = this.#fileFrame(file, mapping, address, lookup, moduleOffset)
      if (frame.function !== undefined || file.table !== undefined) return frame
    }
    if (mapping.kind === 'vdso') {
      this.#vdso ??= readVdso()
      if (this.#vdso !== null) return this.#fileFrame(this.#vdso, mapping, address, lookup, moduleOffset)
    }
    if (mapping.kind === 'anonymous' || mapping.kind === 'file') {
      const jit = this.#jitFrame(process, address, lookup)
      if (jit !== undefined) return jit
    }
    const module = mapping.kind === 'file' ? mapping.path : mapping.kind === 'anonymous' ? '[anon]' : mapping.path
    return { address, function: undefined, functionOffset: undefined, module, moduleOffset, buildId: undefined, origin: 'user' }
  }

  #fileFrame(file: FileEntry, mapping: Mapping, address: bigint, lookup: bigint, moduleOffset: bigint): Frame {
    const frame: Frame = { address, function: undefined, functionOffset: undefined, module: mapping.path, moduleOffset, buildId: file.buildId, origin: 'user' }
    if (file.table === undefined) return frame
    // user-space addresses fit doubles exactly: no bigint arithmetic per frame
    const fileOffset = Number(lookup) - Number(mapping.start) + Number(mapping.offset)
    let virtualAddress = -1
    for (const segment of file.segments) {
      if (fileOffset >= segment.fileOffset && fileOffset < segment.end) virtualAddress = fileOffset - segment.fileOffset + segment.address
    }
    if (virtualAddress < 0) return frame
    const index = file.table.indexOf(virtualAddress)
    if (index < 0) return frame
    frame.function = file.table.name(index)
    frame.functionOffset = virtualAddress + Number(address - lookup) - file.table.start(index)
    return frame
  }

  #jitFrame(process: ProcessEntry, address: bigint, lookup: bigint): Frame | undefined {
    if (process.perfMap === undefined) {
      process.perfMap = PerfMap.of(process.pid, this.#options.procRoot) ?? null
      process.perfMap?.refresh()
      process.refreshedPerfMap = this.#batch
    }
    if (process.perfMap === null) return undefined
    let symbol = process.perfMap.lookup(Number(lookup))
    if (symbol === undefined && process.refreshedPerfMap !== this.#batch) {
      process.refreshedPerfMap = this.#batch
      if (process.perfMap.refresh()) symbol = process.perfMap.lookup(Number(lookup))
    }
    if (symbol === undefined) return undefined
    const offset = symbol.offset + Number(address - lookup)
    return { address, function: symbol.name, functionOffset: offset, module: '[jit]', moduleOffset: BigInt(offset), buildId: undefined, origin: 'jit' }
  }

  #rereadMaps(process: ProcessEntry): void {
    process.refreshedMaps = this.#batch
    try {
      process.maps = ProcessMappings.read(process.pid, this.#options.procRoot)
      process.identities = process.maps.mappings.map(identityOf)
    } catch {
      // gone since the first read: the mappings known still name the frames they hold
    }
  }

  /** The function table of `mapping`'s file (`identity`, see identityOf): from the cache, else read now. */
  #file(process: ProcessEntry, mapping: Mapping, identity: string): FileEntry {
    const key = this.#identities.get(identity)
    const cached = key === undefined ? undefined : this.#files.get(key)
    if (cached !== undefined) {
      this.#files.delete(cached.key)
      this.#files.set(cached.key, cached)
      return cached
    }
    const entry = this.#readFile(process, mapping, identity)
    this.#identities.set(identity, entry.key)
    return entry
  }

  #readFile(process: ProcessEntry, mapping: Mapping, identity: string): FileEntry {
    let elf: ElfFile | undefined
    for (const path of [process.maps.filePath(mapping, this.#options.procRoot), process.maps.rootPath(mapping, this.#options.procRoot), process.maps.hostPath(mapping)]) {
      if (path === undefined) continue
      try {
        elf = ElfFile.open(path)
        break
      } catch {
        // not readable this way (map_files needs CAP_SYS_ADMIN), or not ELF: try the next, else keep offsets only
      }
    }
    if (elf === undefined) return this.#remember({ key: identity, path: mapping.path, buildId: undefined, table: undefined, segments: [], identities: new Set([identity]) })
    try {
      const buildId = elf.buildId()
      const shared = buildId === undefined ? undefined : this.#files.get(buildId)
      if (shared !== undefined) {
        shared.identities.add(identity)
        return shared
      }
      this.#filesRead++
      return this.#remember({
        key: buildId ?? identity,
        path: mapping.path,
        buildId,
        table: this.#functionTable(elf, mapping.path),
        segments: elf.loadSegments().map((s) => ({ fileOffset: Number(s.fileOffset), address: Number(s.address), end: Number(s.fileOffset + s.fileSize) })),
        identities: new Set([identity]),
      })
    } catch {
      // a malformed ELF file: its frames keep module and offset
      return this.#remember({ key: identity, path: mapping.path, buildId: undefined, table: undefined, segments: [], identities: new Set([identity]) })
    } finally {
      elf.close()
    }
  }

  /** The file's own functions, or its debug file's when the file was stripped of .symtab. */
  #functionTable(elf: ElfFile, originalPath: string): SymbolTable {
    if (!elf.hasSymtab()) {
      const debug = openDebugFile(elf, originalPath, this.#options.debugDirectories)
      if (debug !== undefined) {
        try {
          if (debug.hasSymtab()) return debug.functionTable({ namesOnDisk: true })
        } finally {
          debug.close()
        }
      }
    }
    return elf.functionTable({ namesOnDisk: true })
  }

  #remember(entry: FileEntry): FileEntry {
    this.#files.set(entry.key, entry)
    this.#symbols += entry.table?.size ?? 0
    for (const oldest of this.#files.values()) {
      if (this.#files.size <= this.#options.maxFiles && this.#symbols <= this.#options.maxSymbols) break
      // the entry just read stays even when it alone is over the budget: its frames need it now
      if (oldest === entry) continue
      this.#evict(oldest)
    }
    return entry
  }

  #evict(file: FileEntry): void {
    file.table?.release()
    this.#files.delete(file.key)
    this.#symbols -= file.table?.size ?? 0
    for (const identity of file.identities) this.#identities.delete(identity)
  }
}

/** The frames' ELF and kernel names demangled, in one c++filt run for the names not seen before. */
function demangleFrames(frames: Frame[]): void {
  const named = mangledFrames(frames)
  if (named.length > 0) rename(named, demangleAll(named.map((frame) => frame.function!)))
}

/** The frames' ELF and kernel names demangled by the long-lived c++filt (demangleAllAsync). */
export async function demangleFramesAsync(frames: Frame[]): Promise<void> {
  const named = mangledFrames(frames)
  if (named.length > 0) rename(named, await demangleAllAsync(named.map((frame) => frame.function!)))
}

function mangledFrames(frames: Frame[]): Frame[] {
  return frames.filter((frame) => frame.origin !== 'jit' && frame.function !== undefined && isMangled(frame.function))
}

function rename(frames: Frame[], names: string[]): void {
  frames.forEach((frame, i) => {
    frame.function = names[i]
  })
}

/**
 * The vDSO's functions. Every 64-bit process of this kernel maps the same vDSO image, so this
 * process's copy (read through /proc/self/mem) stands for all. It is read into a file of its own
 * for ElfFile, removed at once. Null when it cannot be read.
 */
function readVdso(): FileEntry | null {
  const line = readFileSync('/proc/self/maps', 'latin1').split('\n').find((l) => l.endsWith('[vdso]'))
  if (line === undefined) return null
  const [start, end] = line.split(' ')[0]!.split('-').map((hex) => parseInt(hex, 16))
  const directory = mkdtempSync(join(tmpdir(), 'periscope-vdso-'))
  try {
    const image = Buffer.alloc(end! - start!)
    const fd = openSync('/proc/self/mem', 'r')
    try {
      readSync(fd, image, 0, image.byteLength, start!)
    } finally {
      closeSync(fd)
    }
    const path = join(directory, 'vdso.so')
    writeFileSync(path, image)
    const elf = ElfFile.open(path)
    try {
      return {
        key: '[vdso]',
        path: '[vdso]',
        buildId: elf.buildId(),
        table: elf.functionTable(),
        segments: elf.loadSegments().map((s) => ({ fileOffset: Number(s.fileOffset), address: Number(s.address), end: Number(s.fileOffset + s.fileSize) })),
        identities: new Set(),
      }
    } finally {
      elf.close()
    }
  } catch {
    // no readable vDSO (a kernel without one, a locked-down /proc): its frames keep their offsets
    return null
  } finally {
    rmSync(directory, { recursive: true, force: true })
  }
}

function identityOf(mapping: Mapping): string {
  return mapping.kind === 'file' ? `${mapping.device}:${mapping.inode}:${mapping.path}` : ''
}

function unknownFrame(address: bigint): Frame {
  return { address, function: undefined, functionOffset: undefined, module: '[unknown]', moduleOffset: address, buildId: undefined, origin: 'user' }
}

/** Field 22 of /proc/<pid>/stat, the process's start time in clock ticks: tells a reused pid apart. */
function readStartTime(procRoot: string, pid: number): string | undefined {
  try {
    const stat = readFileSync(`${procRoot}/${pid}/stat`, 'latin1')
    // the command name (field 2) may hold spaces and parentheses: count from the last ')'
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
  } catch {
    return undefined
  }
}
