/**
 * Stack samples on their way to plugins (ctx.onStack): each ring batch of struct stack_sample
 * records (bpf/lib/stacks.h) is unwound on arrival, once however many plugins listen, into a
 * batch of compact records (runtime/profiling/stack-record.ts) that crosses into each isolate as
 * one buffer. The unwinding allocates nothing per sample: frames go through one Float64Array and
 * the records into one reusable output buffer, which the plugin host copies when it stages the
 * batch (the next batch overwrites it).
 *
 * One StackDelivery and one Symbolizer serve every plugin of the runtime (`profiling()`), so a
 * process's mappings and a file's tables are read once; processes that exited leave both caches
 * at the sweeps (`sweepEveryMs`, and after each ctx.symbolize).
 *
 * @example
 *   const compact = profiling().delivery.convert(batch)   // RecordBatch of compact records
 */
import type { RecordBatch } from '../bpf/batch.ts'
import { EhFrameTables } from '../symbols/eh-frame.ts'
import { demangleFramesAsync, Symbolizer } from '../symbols/symbolizer.ts'
import {
  STACK_RECORD_COMM, STACK_RECORD_COMM_BYTES, STACK_RECORD_CPU, STACK_RECORD_END, STACK_RECORD_FRAMES, STACK_RECORD_KERNEL_FRAMES,
  STACK_RECORD_PID, STACK_RECORD_TID, STACK_RECORD_TIMESTAMP, STACK_RECORD_USER_FRAMES, STACK_RECORD_VALUE,
} from './stack-record.ts'
import {
  SAMPLE_COMM, SAMPLE_CPU, SAMPLE_KERNEL, SAMPLE_KERNEL_FRAMES, SAMPLE_KERNEL_MAX_FRAMES, SAMPLE_PID, SAMPLE_STACK, SAMPLE_TID,
  SAMPLE_TIMESTAMP, SAMPLE_VALUE, StackUnwinder,
} from './unwind.ts'

/** The most user frames a sample keeps; a deeper stack is truncated ('too deep'). */
export const MAX_USER_FRAMES = 256
const sweepEveryMs = 10_000

export interface DeliveryStats {
  /** Samples unwound. */
  samples: number
  /** Wall time spent unwinding and writing compact records (ns). */
  unwindNs: number
}

export class StackDelivery {
  readonly unwinder: StackUnwinder
  readonly stats: DeliveryStats = { samples: 0, unwindNs: 0 }
  readonly #frames = new Float64Array(MAX_USER_FRAMES)
  #output = new ArrayBuffer(64 * 1024)
  #view = new DataView(this.#output)
  /** The batch converted last and its result: every listener of a stream gets the same batch. */
  #lastInput: RecordBatch | undefined
  #lastOutput: RecordBatch | undefined
  #sweptAt = performance.now()

  constructor(unwinder = new StackUnwinder()) {
    this.unwinder = unwinder
  }

  /**
   * The compact records of a batch of struct stack_sample records. The result's buffer is reused
   * by the next call: copy it to keep it (the plugin host's staging does).
   */
  convert(batch: RecordBatch): RecordBatch {
    if (batch === this.#lastInput && this.#lastOutput !== undefined) return this.#lastOutput
    const started = performance.now()
    const input = new DataView(batch.buffer, 0, batch.byteLength)
    let at = 0, count = 0
    for (let offset = 0; offset < batch.byteLength;) {
      const header = input.getUint32(offset, true)
      const size = header & 0x3fffffff
      if ((header & 0x40000000) === 0 && size >= SAMPLE_STACK) {
        at = this.#write(input, offset + 8, at)
        count++
      }
      offset += 8 + ((size + 7) & ~7)
    }
    this.stats.samples += count
    const now = performance.now()
    this.stats.unwindNs += Math.round((now - started) * 1e6)
    if (now - this.#sweptAt >= sweepEveryMs) {
      this.#sweptAt = now
      this.unwinder.sweep()
    }
    this.#lastInput = batch
    this.#lastOutput = { buffer: this.#output, byteLength: at, count, lost: batch.lost }
    return this.#lastOutput
  }

  /** Unwinds the sample at `offset` of `input` and writes its compact record (with header) at `at`; returns the next free byte. */
  #write(input: DataView, offset: number, at: number): number {
    const userFrames = this.unwinder.unwindSample(input, offset, this.#frames)
    const kernelFrames = Math.min(input.getUint32(offset + SAMPLE_KERNEL_FRAMES, true), SAMPLE_KERNEL_MAX_FRAMES)
    const size = STACK_RECORD_FRAMES + 8 * (userFrames + kernelFrames)
    this.#reserve(at + 8 + size)
    const out = this.#view
    out.setUint32(at, size, true)
    out.setUint32(at + 4, 0, true)
    const record = at + 8
    out.setFloat64(record + STACK_RECORD_TIMESTAMP, readU64(input, offset + SAMPLE_TIMESTAMP), true)
    out.setUint32(record + STACK_RECORD_PID, input.getUint32(offset + SAMPLE_PID, true), true)
    out.setUint32(record + STACK_RECORD_TID, input.getUint32(offset + SAMPLE_TID, true), true)
    out.setUint32(record + STACK_RECORD_CPU, input.getUint32(offset + SAMPLE_CPU, true), true)
    out.setUint16(record + STACK_RECORD_USER_FRAMES, userFrames, true)
    out.setUint16(record + STACK_RECORD_KERNEL_FRAMES, kernelFrames, true)
    out.setUint32(record + STACK_RECORD_END, this.unwinder.end, true)
    out.setUint32(record + STACK_RECORD_END + 4, 0, true)
    out.setFloat64(record + STACK_RECORD_VALUE, readU64(input, offset + SAMPLE_VALUE), true)
    for (let i = 0; i < STACK_RECORD_COMM_BYTES; i += 4) out.setUint32(record + STACK_RECORD_COMM + i, input.getUint32(offset + SAMPLE_COMM + i, true), true)
    let frame = record + STACK_RECORD_FRAMES
    for (let i = 0; i < userFrames; i++, frame += 8) out.setFloat64(frame, this.#frames[i]!, true)
    for (let i = 0; i < kernelFrames; i++, frame += 8) {
      const from = offset + SAMPLE_KERNEL + 8 * i
      out.setUint32(frame, input.getUint32(from, true), true)
      out.setUint32(frame + 4, input.getUint32(from + 4, true), true)
    }
    return record + ((size + 7) & ~7)
  }

  #reserve(bytes: number): void {
    if (bytes <= this.#output.byteLength) return
    const grown = new ArrayBuffer(Math.max(bytes, 2 * this.#output.byteLength))
    new Uint8Array(grown).set(new Uint8Array(this.#output))
    this.#output = grown
    this.#view = new DataView(grown)
  }
}

function readU64(view: DataView, at: number): number {
  return view.getUint32(at, true) + view.getUint32(at + 4, true) * 4294967296
}

let shared: { delivery: StackDelivery; symbolizer: Symbolizer } | undefined

/**
 * The caches' bounds in the runtime, within its memory budget: 64 MB of unwind tables (a file's
 * table holds its .eh_frame, or a 4 KB window of it from 1 MB on, its FDE index and up to 4,096
 * rows of the FDEs sampled: node's is 1.5 MB, libc's 0.4 MB) and 250,000 symbols. A symbol costs 20 bytes of typed arrays, with the
 * string table its names are read from when that is under 1 MiB (a larger one stays on disk:
 * node's 14 MB), so at most about 10 MB; one of every executable file of this host's processes
 * was 136,000 symbols in 23 files.
 * The least recently used go first.
 */
const MAX_TABLE_BYTES = 64 * 1024 * 1024
const MAX_SYMBOLS = 250_000

/** The runtime's one StackDelivery and Symbolizer, made on first use. */
export function profiling(): { delivery: StackDelivery; symbolizer: Symbolizer } {
  shared ??= {
    delivery: new StackDelivery(new StackUnwinder({ tables: new EhFrameTables({ maxBytes: MAX_TABLE_BYTES }) })),
    symbolizer: new Symbolizer({ maxSymbols: MAX_SYMBOLS }),
  }
  return shared
}

/** Most stacks one ctx.symbolize call may name: a plugin dedups its stacks first. */
export const MAX_SYMBOLIZE_STACKS = 20_000

/** A frame as ctx.symbolize returns it: ready for ctx.emit.profile. */
export interface SymbolizedFrame {
  address: number
  function?: string
  /**
   * The module: for a file, `start` is where the file's offset 0 would be mapped (address -
   * start = the offset in the file, so a backend can name it later with the build id); none for
   * the kernel and JIT code.
   */
  mapping: { file: string; buildId?: string; start?: number; offset?: number }
}

/**
 * ctx.symbolize: checks what an (untrusted) plugin sent, names the stacks with the shared
 * Symbolizer, and sweeps it. Per stack, the kernel frames then the user frames, innermost first.
 * Throws a TypeError or RangeError saying what is wrong with the input.
 */
export async function symbolizeForPlugin(input: unknown): Promise<SymbolizedFrame[][]> {
  const stacks = checkStacks(input)
  const { symbolizer } = profiling()
  const user = symbolizer.symbolize(stacks.map((s) => ({ pid: s.pid, addresses: s.user.map(BigInt) })), { demangle: false })
  const kernel = stacks.map((stack) => (stack.kernel.length > 0 ? symbolizer.symbolizeKernel(stack.kernel, true, { demangle: false }) : []))
  await demangleFramesAsync([...kernel.flat(), ...user.flat()])
  const out = stacks.map((_, i) => {
    const frames: SymbolizedFrame[] = []
    for (const frame of kernel[i]!) {
      frames.push(withName({ address: Number(frame.address), mapping: withBuildId({ file: frame.module }, frame.buildId) }, frame.function))
    }
    for (const frame of user[i]!) {
      const address = Number(frame.address)
      const mapping = frame.origin === 'user' && frame.module.startsWith('/')
        ? withBuildId({ file: frame.module, start: address - Number(frame.moduleOffset), offset: 0 }, frame.buildId)
        : { file: frame.module }
      frames.push(withName({ address, mapping }, frame.function))
    }
    return frames
  })
  symbolizer.sweep()
  return out
}

function withName(frame: SymbolizedFrame, name: string | undefined): SymbolizedFrame {
  if (name !== undefined) frame.function = name
  return frame
}

function withBuildId(mapping: SymbolizedFrame['mapping'], buildId: string | undefined): SymbolizedFrame['mapping'] {
  if (buildId !== undefined) mapping.buildId = buildId
  return mapping
}

const usage = 'ctx.symbolize: give [{ pid: number, user: number[], kernel?: bigint[] }, ...]'

function checkStacks(input: unknown): { pid: number; user: number[]; kernel: bigint[] }[] {
  if (!Array.isArray(input)) throw new TypeError(`${usage}, not ${typeof input}`)
  if (input.length > MAX_SYMBOLIZE_STACKS) throw new RangeError(`ctx.symbolize: ${input.length} stacks in one call, at most ${MAX_SYMBOLIZE_STACKS}; name distinct stacks only, in several calls if need be`)
  return input.map((stack: unknown, i) => {
    const s = stack as { pid?: unknown; user?: unknown; kernel?: unknown } | null
    if (s === null || typeof s !== 'object') throw new TypeError(`${usage}; stack ${i} is not an object`)
    if (typeof s.pid !== 'number' || !Number.isInteger(s.pid) || s.pid <= 0 || s.pid > 0x7fffffff) throw new TypeError(`${usage}; stack ${i} has pid ${String(s.pid)}`)
    const user = s.user ?? []
    if (!Array.isArray(user) || user.length > MAX_USER_FRAMES || !user.every((a) => typeof a === 'number' && Number.isSafeInteger(a) && a >= 0)) {
      throw new TypeError(`${usage}; stack ${i}'s user frames must be at most ${MAX_USER_FRAMES} non-negative integer addresses`)
    }
    const kernel = s.kernel ?? []
    if (!Array.isArray(kernel) || kernel.length > SAMPLE_KERNEL_MAX_FRAMES || !kernel.every((a) => typeof a === 'bigint' && a >= 0n && a < 1n << 64n)) {
      throw new TypeError(`${usage}; stack ${i}'s kernel frames must be at most ${SAMPLE_KERNEL_MAX_FRAMES} 64-bit bigint addresses`)
    }
    return { pid: s.pid, user: user as number[], kernel: kernel as bigint[] }
  })
}
