/**
 * User-space stack unwinding of CPU samples, perf's `--call-graph dwarf` way: a sample brings a
 * thread's user registers (ip, sp, bp) and a copy of its stack from sp up (bpf/lib/stacks.bpf.c);
 * the unwinder walks the copy with each file's `.eh_frame` table (runtime/symbols/eh-frame.ts),
 * so code built without frame pointers (most of Debian: libc, redis, nginx, postgres) gives whole
 * stacks. Code in a file without a table, and JIT code, falls back to frame pointers.
 *
 * A stack is complete only when the walk reaches a frame that marks itself outermost (its
 * return-address rule is "undefined", as glibc's `_start` and a thread's `clone3` frame are), or a
 * frame-pointer chain ends in a zero frame pointer (what `_start` leaves in rbp). Anything else
 * (the copy ends, a frame has no usable rule, an address outside every mapping, the frame limit) is
 * reported as truncated with the reason, never as a complete stack.
 *
 * The hot path allocates nothing: frames go into a caller's Float64Array, the reason into a field.
 *
 * @example
 *   const unwinder = new StackUnwinder()
 *   const frames = new Float64Array(MAX_FRAMES)
 *   forEachRecord(batch, (view, offset) => {
 *     const count = unwinder.unwindSample(view, offset, frames)
 *     if (unwinder.end !== UNWIND_COMPLETE) truncated++
 *   })
 *   unwinder.forget(pid)   // when the process exits
 */
import { closeSync, existsSync, openSync, readFileSync, readSync } from 'node:fs'
import { CFA_PLT, DWARF_RBP, DWARF_RSP, EhFrameTables, RULE_OFFSET, RULE_UNDEFINED, RULE_UNSET, RULE_SAME_VALUE, parseEhFrame, type EhFrameTable, type UnwindTable } from '../symbols/eh-frame.ts'
import { ProcessMappings, type Mapping } from '../symbols/mappings.ts'
import { PerfMap } from '../symbols/perf-map.ts'
import { UNWIND_BAD_FRAME, UNWIND_COMPLETE, UNWIND_COPY_ENDED, UNWIND_NO_MAPPING, UNWIND_NO_RULE, UNWIND_TOO_DEEP } from './stack-record.ts'
import { lastAtOrBefore } from '../symbols/sorted.ts'

export { UNWIND_BAD_FRAME, UNWIND_COMPLETE, UNWIND_COPY_ENDED, UNWIND_END_NAMES, UNWIND_NO_MAPPING, UNWIND_NO_RULE, UNWIND_TOO_DEEP } from './stack-record.ts'

/** Field offsets of struct stack_sample (bpf/lib/stacks.h; test/bpf/unwind.test.ts checks them against its generated decoder). */
export const SAMPLE_TIMESTAMP = 0
export const SAMPLE_PID = 8
export const SAMPLE_TID = 12
export const SAMPLE_IP = 16
export const SAMPLE_SP = 24
export const SAMPLE_BP = 32
export const SAMPLE_STACK_SIZE = 40
export const SAMPLE_COPY_END = 44
export const SAMPLE_CPU = 48
export const SAMPLE_KERNEL_FRAMES = 52
export const SAMPLE_COMM = 56
export const SAMPLE_COMM_BYTES = 16
export const SAMPLE_VALUE = 72
export const SAMPLE_KERNEL = 80
/** KERNEL_MAX_FRAMES of bpf/lib/stacks.h. */
export const SAMPLE_KERNEL_MAX_FRAMES = 64
export const SAMPLE_STACK = SAMPLE_KERNEL + 8 * SAMPLE_KERNEL_MAX_FRAMES

/** A step found the caller: the walk goes on. */
const CONTINUE = -1

/**
 * Where the kernel's signal frame (struct rt_sigframe, after the handler's return popped its
 * return address) holds the interrupted registers: ucontext's uc_mcontext starts at 40, and its
 * gregs are r8..r15, rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip.
 */
const UCONTEXT_RBP = 40 + 10 * 8
const UCONTEXT_RSP = 40 + 15 * 8
const UCONTEXT_RIP = 40 + 16 * 8

/** A mapping's table and the constant that turns a runtime address into the file's virtual address. */
interface MappedTable {
  table: UnwindTable | undefined
  /** runtime address - bias = virtual address in the file */
  bias: number
  /** Anonymous memory: code a JIT made. */
  jit?: boolean
}

/**
 * CPython's perf trampoline (`-X perf`; 3.12 and 3.13 on x86-64, libpython's
 * `_Py_trampoline_func_start`), copied into anonymous memory once per Python function and named
 * `py::<function>:<file>` in the process's perf map: `sub $8,%rsp; call *%rcx; add $8,%rsp; ret`.
 * It keeps no frame pointer and has no unwind table; by the pc's offset in it, how far above sp
 * its return address is.
 */
const PYTHON_TRAMPOLINE_RETURN_ADDRESS = new Map([[0, 0], [4, 8], [6, 8], [10, 0]])
/** The trampoline's instruction after its call. */
const PYTHON_TRAMPOLINE_RETURN = 6
/** A Python interpreter's file (python3.12, libpython3.12.so.1.0): its processes may run trampolines. */
const PYTHON_FILE = /\/(lib)?python3[^/]*$/

/** A process's executable mappings as numbers (no bigint per lookup), each with its table once loaded. */
interface ProcessState {
  mappings: ProcessMappings
  starts: Float64Array
  ends: Float64Array
  tables: (MappedTable | undefined)[]
  /** When /proc/<pid>/maps was last read (ms): a miss re-reads it (a dlopen), at most once a second. */
  readAt: number
  /** A Python interpreter: its JIT code may be perf trampolines, named in its perf map. */
  python: boolean
  /** Its perf map, read on the first JIT frame of a Python process (null: it has none). */
  perfMap?: PerfMap | null
  perfMapReadAt: number
}

function processState(mappings: ProcessMappings): ProcessState {
  const list = mappings.mappings
  return {
    mappings,
    starts: Float64Array.from(list, (m) => Number(m.start)),
    ends: Float64Array.from(list, (m) => Number(m.end)),
    tables: new Array<MappedTable | undefined>(list.length),
    readAt: Date.now(),
    python: list.some((m) => PYTHON_FILE.test(m.path)),
    perfMapReadAt: 0,
  }
}

/** The index of the mapping holding `pc`, or -1. */
function mappingIndex(state: ProcessState, pc: number): number {
  const found = lastAtOrBefore(state.starts, pc)
  return found >= 0 && pc < state.ends[found]! ? found : -1
}

export interface UnwinderOptions {
  /** Shared file tables (one per build id), e.g. with a symboliser; a private cache by default. */
  tables?: EhFrameTables
  /** For tests: another /proc. */
  procRoot?: string
  /** How often (ms) a process's mappings may be re-read when an address is in none of them. */
  remapIntervalMs?: number
}

export class StackUnwinder {
  /** Why the last unwind() stopped: UNWIND_COMPLETE or one of the truncation reasons. */
  end = UNWIND_COMPLETE
  /** How many frames of the last unwind() came from frame pointers (files without a table, JIT code). */
  framePointerFrames = 0
  readonly tables: EhFrameTables
  readonly #processes = new Map<number, ProcessState>()
  readonly #procRoot: string
  readonly #remapIntervalMs: number

  constructor(options: UnwinderOptions = {}) {
    this.tables = options.tables ?? new EhFrameTables()
    this.#procRoot = options.procRoot ?? '/proc'
    this.#remapIntervalMs = options.remapIntervalMs ?? 1000
  }

  /**
   * Unwinds a record of bpf/lib/stacks.bpf.c (a struct stack_sample at `offset` of `view`, as a
   * ring buffer batch holds it) into `frames`; returns how many (see unwind()). A kernel
   * thread's sample (no user registers) has no user frame and is complete.
   */
  unwindSample(view: DataView, offset: number, frames: Float64Array): number {
    if (view.getUint32(offset + SAMPLE_IP, true) === 0 && view.getUint32(offset + SAMPLE_IP + 4, true) === 0) {
      this.framePointerFrames = 0
      this.end = UNWIND_COMPLETE
      return 0
    }
    return this.unwind(view.getUint32(offset + SAMPLE_PID, true), readWord(view, offset + SAMPLE_IP), readWord(view, offset + SAMPLE_SP),
      readWord(view, offset + SAMPLE_BP), view, offset + SAMPLE_STACK, view.getUint32(offset + SAMPLE_STACK_SIZE, true), frames)
  }

  /**
   * Unwinds one sample of process `pid`: registers ip, sp, bp and `stackSize` bytes of its stack
   * from sp (at `stackOffset` of `stack`). Writes the frames (the sampled ip, then return
   * addresses) into `frames` and returns how many; `end` says whether the stack is whole.
   */
  unwind(pid: number, ip: number, sp: number, bp: number, stack: DataView, stackOffset: number, stackSize: number, frames: Float64Array): number {
    this.framePointerFrames = 0
    const process = this.#process(pid)
    if (process === undefined) {
      this.end = UNWIND_NO_MAPPING
      return 0
    }
    this.#pc = ip
    this.#sp = sp
    this.#bp = bp
    this.#interrupted = true
    // the copy starts at the sampled sp; frames above read it at their distance from there
    this.#base = sp
    this.#stack = stack
    this.#stackOffset = stackOffset
    this.#stackSize = stackSize
    let count = 0
    for (;;) {
      if (count === frames.length) {
        this.end = UNWIND_TOO_DEEP
        return count
      }
      const pc = this.#pc
      frames[count++] = pc
      const mapped = this.#tableOf(process, pid, pc)
      if (mapped === undefined) {
        this.end = UNWIND_NO_MAPPING
        return count
      }
      // a return address points after the call: the caller's rule is the call instruction's
      const lookup = (this.#interrupted ? pc : pc - 1) - mapped.bias
      const row = mapped.table?.find(lookup) ?? -1
      const trampoline = mapped.jit === true && process.python ? this.#pythonTrampoline(process, pid, pc) : -1
      const end = row >= 0 ? this.#tableStep(mapped.table!, row, lookup, count === 1)
        : trampoline >= 0 ? this.#trampolineStep(trampoline) : this.#framePointerStep()
      if (end !== CONTINUE) {
        this.end = end
        return count
      }
    }
  }

  // the registers and stack copy of the unwind() under way, so that its steps allocate nothing
  #pc = 0
  #sp = 0
  #bp = 0
  /** The pc was interrupted (the sample's, or a signal's), not a return address. */
  #interrupted = true
  #base = 0
  #stack: DataView = new DataView(new ArrayBuffer(0))
  #stackOffset = 0
  #stackSize = 0

  /** The 64-bit word at stack address `address`, or -1 when it is outside the copy (below sp, or above the copy's end). */
  #word(address: number): number {
    const at = address - this.#base
    return at < 0 || at + 8 > this.#stackSize ? -1 : readWord(this.#stack, this.#stackOffset + at)
  }

  /** Why a word at `address` could not be read: below the sampled sp the walk went wrong; above, the copy ended. */
  #missing(address: number): number {
    return address < this.#base ? UNWIND_BAD_FRAME : UNWIND_COPY_ENDED
  }

  /** A step where no table covers the pc (JIT code, hand-written assembly): trust the frame pointer. */
  #framePointerStep(): number {
    const bp = this.#bp
    // what _start leaves in rbp for frame-pointer walkers: the outermost frame
    if (bp === 0) return UNWIND_COMPLETE
    const savedBp = this.#word(bp), returnAddress = this.#word(bp + 8)
    if (savedBp < 0 || returnAddress < 0) return this.#missing(savedBp < 0 ? bp : bp + 8)
    this.framePointerFrames++
    return this.#moveTo(bp + 16, savedBp, returnAddress)
  }

  /** A step out of a Python perf trampoline, whose return address is `returnAddressAt` bytes above sp. */
  #trampolineStep(returnAddressAt: number): number {
    const returnAddress = this.#word(this.#sp + returnAddressAt)
    if (returnAddress < 0) return this.#missing(this.#sp + returnAddressAt)
    return this.#moveTo(this.#sp + returnAddressAt + 8, this.#bp, returnAddress)
  }

  /**
   * Where the return address of the Python perf trampoline holding `pc` is (bytes above sp), or
   * -1 when `pc` is in none. The perf map is re-read on a miss, at most once a `remapIntervalMs`.
   */
  #pythonTrampoline(process: ProcessState, pid: number, pc: number): number {
    if (process.perfMap === undefined) {
      process.perfMap = PerfMap.of(pid, this.#procRoot) ?? null
      process.perfMap?.refresh()
      process.perfMapReadAt = Date.now()
    }
    if (process.perfMap === null) return -1
    let symbol = process.perfMap.lookup(pc)
    if (symbol === undefined && Date.now() - process.perfMapReadAt >= this.#remapIntervalMs) {
      process.perfMapReadAt = Date.now()
      if (process.perfMap.refresh()) symbol = process.perfMap.lookup(pc)
    }
    if (symbol === undefined || !symbol.name.startsWith('py::')) return -1
    // a return address into it is the instruction after its call
    if (!this.#interrupted && symbol.offset !== PYTHON_TRAMPOLINE_RETURN) return -1
    return PYTHON_TRAMPOLINE_RETURN_ADDRESS.get(symbol.offset) ?? -1
  }

  /** A step by the table's row for the pc. */
  #tableStep(table: UnwindTable, row: number, lookup: number, first: boolean): number {
    if (table.raRule[row] === RULE_UNDEFINED) return UNWIND_COMPLETE
    if ((table.flags[row]! & 1) !== 0) return this.#signalStep()
    const register = table.cfaRegister[row]!
    let cfa: number
    if (register === DWARF_RSP) cfa = this.#sp + table.cfaOffset[row]!
    else if (register === DWARF_RBP) cfa = this.#bp + table.cfaOffset[row]!
    else if (register === CFA_PLT) cfa = this.#sp + 8 + ((lookup & 15) >= table.cfaOffset[row]! ? 8 : 0)
    else return UNWIND_NO_RULE
    if (table.raRule[row] !== RULE_OFFSET) return UNWIND_NO_RULE
    const returnAddress = this.#word(cfa + table.raOffset[row]!)
    if (returnAddress < 0) return this.#missing(cfa + table.raOffset[row]!)
    let bp = this.#bp
    const rbpRule = table.rbpRule[row]!
    if (rbpRule === RULE_OFFSET) {
      const slot = cfa + table.rbpOffset[row]!
      // a slot below the sampled sp was popped already: compilers keep the save rule through
      // the epilogue, but rbp holds the caller's value again
      if (!(first && slot < this.#base)) {
        bp = this.#word(slot)
        if (bp < 0) return this.#missing(slot)
      }
    } else if (rbpRule !== RULE_UNSET && rbpRule !== RULE_SAME_VALUE && rbpRule !== RULE_UNDEFINED) {
      return UNWIND_NO_RULE
    }
    return this.#moveTo(cfa, bp, returnAddress)
  }

  /**
   * A step out of a signal handler: its return address is the kernel's signal trampoline
   * (glibc's __restore_rt, an FDE with augmentation 'S'), and sp points at the ucontext the kernel
   * saved, whose registers are those of the interrupted code.
   */
  #signalStep(): number {
    const sp = this.#sp
    const bp = this.#word(sp + UCONTEXT_RBP), interruptedSp = this.#word(sp + UCONTEXT_RSP), pc = this.#word(sp + UCONTEXT_RIP)
    if (bp < 0 || interruptedSp < 0 || pc < 0) return this.#missing(sp + UCONTEXT_RIP)
    const end = this.#moveTo(interruptedSp, bp, pc)
    this.#interrupted = true
    return end
  }

  /** Moves to the caller's frame; a frame not above this one, or a zero pc, means the walk went wrong. */
  #moveTo(sp: number, bp: number, pc: number): number {
    if (sp <= this.#sp || pc === 0) return UNWIND_BAD_FRAME
    this.#sp = sp
    this.#bp = bp
    this.#pc = pc
    this.#interrupted = false
    return CONTINUE
  }

  /**
   * Drops what is kept for process `pid` (call it when the process exits): its mappings and its
   * references to file tables, which keep a table alive after `tables` evicted it.
   */
  forget(pid: number): void {
    this.#processes.delete(pid)
  }

  /** Forgets the processes that exited (their /proc entry is gone); returns how many. */
  sweep(): number {
    let gone = 0
    for (const pid of this.#processes.keys()) {
      if (existsSync(`${this.#procRoot}/${pid}`)) continue
      this.#processes.delete(pid)
      gone++
    }
    return gone
  }

  /** Processes with cached mappings. */
  get processes(): number {
    return this.#processes.size
  }

  #process(pid: number): ProcessState | undefined {
    const known = this.#processes.get(pid)
    if (known !== undefined) return known
    try {
      const state = processState(ProcessMappings.read(pid, this.#procRoot))
      this.#processes.set(pid, state)
      return state
    } catch {
      // the process is gone: its samples cannot be unwound
      return undefined
    }
  }

  #tableOf(process: ProcessState, pid: number, pc: number): MappedTable | undefined {
    let index = mappingIndex(process, pc)
    if (index < 0 && Date.now() - process.readAt >= this.#remapIntervalMs) {
      try {
        Object.assign(process, processState(ProcessMappings.read(pid, this.#procRoot)))
      } catch {
        // gone since its first sample: keep what was read
      }
      process.readAt = Date.now()
      index = mappingIndex(process, pc)
    }
    if (index < 0) return undefined
    return process.tables[index] ??= this.#load(process.mappings, process.mappings.mappings[index]!)
  }

  #vdso: EhFrameTable | null | undefined

  /** The table of a mapping's file, or of the vDSO; none for JIT code and files that cannot be read. */
  #load(mappings: ProcessMappings, mapping: Mapping): MappedTable {
    if (mapping.kind === 'vdso') {
      if (this.#vdso === undefined) this.#vdso = readVdsoTable() ?? null
      return { table: this.#vdso ?? undefined, bias: this.#vdso === null ? 0 : Number(mapping.start) - this.#vdso.textBias }
    }
    if (mapping.kind !== 'file') return { table: undefined, bias: 0, jit: mapping.kind === 'anonymous' }
    let lookup
    for (const path of [mappings.filePath(mapping, this.#procRoot), mappings.rootPath(mapping, this.#procRoot), mappings.hostPath(mapping)]) {
      if (path === undefined) continue
      try {
        lookup = this.tables.get(path)
        break
      } catch {
        // not readable this way (see ProcessMappings): try the next
      }
    }
    if (lookup === undefined) return { table: undefined, bias: 0 }
    const table = lookup.table
    // an executable mapping maps the text segment: file offset + textBias = virtual address
    return { table, bias: table === undefined ? 0 : Number(mapping.start) - Number(mapping.offset) - table.textBias }
  }
}

/**
 * The vDSO's table. Every 64-bit process of this kernel maps the same vDSO image, so this
 * process's copy (read through /proc/self/mem) stands for all; it is a whole ELF image, section
 * headers included. Undefined when it cannot be read.
 */
function readVdsoTable(): EhFrameTable | undefined {
  const line = readFileSync('/proc/self/maps', 'latin1').split('\n').find((l) => l.endsWith('[vdso]'))
  if (line === undefined) return undefined
  const [start, end] = line.split(' ')[0]!.split('-').map((hex) => parseInt(hex, 16))
  const image = Buffer.alloc(end! - start!)
  const fd = openSync('/proc/self/mem', 'r')
  try {
    readSync(fd, image, 0, image.byteLength, start!)
  } catch {
    return undefined
  } finally {
    closeSync(fd)
  }
  const sections = new Map<string, { address: number; offset: number; size: number }>()
  const headersAt = Number(image.readBigUInt64LE(40)), headerSize = image.readUInt16LE(58), count = image.readUInt16LE(60)
  const namesHeader = headersAt + image.readUInt16LE(62) * headerSize
  const namesAt = Number(image.readBigUInt64LE(namesHeader + 24))
  for (let i = 0; i < count; i++) {
    const at = headersAt + i * headerSize
    const nameAt = namesAt + image.readUInt32LE(at)
    const name = image.toString('latin1', nameAt, image.indexOf(0, nameAt))
    sections.set(name, { address: Number(image.readBigUInt64LE(at + 16)), offset: Number(image.readBigUInt64LE(at + 24)), size: Number(image.readBigUInt64LE(at + 32)) })
  }
  const ehFrame = sections.get('.eh_frame'), text = sections.get('.text')
  if (ehFrame === undefined || text === undefined) return undefined
  try {
    return parseEhFrame(image.subarray(ehFrame.offset, ehFrame.offset + ehFrame.size), ehFrame.address, text.address - text.offset, '[vdso]')
  } catch {
    return undefined
  }
}

/** The little-endian 64-bit word at `at`, as a number (user addresses are below 2^47). */
function readWord(stack: DataView, at: number): number {
  return stack.getUint32(at, true) + stack.getUint32(at + 4, true) * 4294967296
}
