/**
 * The compact record of an unwound stack sample, as the host hands a batch of them to a plugin's
 * isolate (ctx.onStack): the host unwinds each struct stack_sample of a ring batch on arrival
 * (runtime/profiling/stack-delivery.ts) and writes one of these per sample, in the batch format of
 * runtime/bpf/batch.ts (8-byte header, record padded to 8), so one buffer crosses per batch and
 * the isolate's bootstrap decodes it with the same forEachRecord walk.
 *
 * Layout, little endian:
 *   0  timestamp_ns  f64 (boot-clock ns: exact below 2^53 ns, 104 days of uptime; a few ns off beyond)
 *   8  pid u32, 12 tid u32, 16 cpu u32
 *   20 user frames u16, 22 kernel frames u16
 *   24 end u32 (UNWIND_*: why the user walk stopped), 28 reserved u32
 *   32 value f64
 *   40 comm, 16 bytes, NUL padded
 *   56 user addresses f64 × user frames, innermost first (the sampled ip first)
 *   …  kernel addresses u64 × kernel frames, innermost first
 *
 * This module imports only types: the isolate bootstrap bundles it.
 */
import type { StackSample } from '../plugins/api.ts'

export const STACK_RECORD_TIMESTAMP = 0
export const STACK_RECORD_PID = 8
export const STACK_RECORD_TID = 12
export const STACK_RECORD_CPU = 16
export const STACK_RECORD_USER_FRAMES = 20
export const STACK_RECORD_KERNEL_FRAMES = 22
export const STACK_RECORD_END = 24
export const STACK_RECORD_VALUE = 32
export const STACK_RECORD_COMM = 40
export const STACK_RECORD_COMM_BYTES = 16
export const STACK_RECORD_FRAMES = 56

/** The walk reached the outermost frame: the stack is whole. */
export const UNWIND_COMPLETE = 0
/** A frame's caller lies above the copied stack (stack_bytes too small for this stack). */
export const UNWIND_COPY_ENDED = 1
/** An address in no executable mapping of the process (or the process is gone). */
export const UNWIND_NO_MAPPING = 2
/** A frame whose CFA or return address rule this unwinder does not evaluate (DWARF expressions, signal frames). */
export const UNWIND_NO_RULE = 3
/** The walk went nowhere: a CFA not above the previous frame's, or a return address of 0 mid-stack. */
export const UNWIND_BAD_FRAME = 4
/** More frames than the output holds. */
export const UNWIND_TOO_DEEP = 5

export const UNWIND_END_NAMES = ['complete', 'copy ended', 'no mapping', 'no rule', 'bad frame', 'too deep'] as const

/** Bytes of a compact record with `user` and `kernel` frames (without the batch header). */
export function stackRecordBytes(user: number, kernel: number): number {
  return STACK_RECORD_FRAMES + 8 * (user + kernel)
}


/** Decodes the compact record at `offset` of `view`. */
export function decodeStackRecord(view: DataView, offset: number): StackSample {
  const userFrames = view.getUint16(offset + STACK_RECORD_USER_FRAMES, true)
  const kernelFrames = view.getUint16(offset + STACK_RECORD_KERNEL_FRAMES, true)
  const user = new Array<number>(userFrames)
  let at = offset + STACK_RECORD_FRAMES
  for (let i = 0; i < userFrames; i++, at += 8) user[i] = view.getFloat64(at, true)
  const kernel = new Array<bigint>(kernelFrames)
  for (let i = 0; i < kernelFrames; i++, at += 8) kernel[i] = view.getBigUint64(at, true)
  let comm = ''
  for (let i = 0; i < STACK_RECORD_COMM_BYTES; i++) {
    const byte = view.getUint8(offset + STACK_RECORD_COMM + i)
    if (byte === 0) break
    comm += String.fromCharCode(byte)
  }
  const end = view.getUint32(offset + STACK_RECORD_END, true)
  return {
    timeNs: view.getFloat64(offset + STACK_RECORD_TIMESTAMP, true),
    pid: view.getUint32(offset + STACK_RECORD_PID, true),
    tid: view.getUint32(offset + STACK_RECORD_TID, true),
    cpu: view.getUint32(offset + STACK_RECORD_CPU, true),
    comm,
    value: view.getFloat64(offset + STACK_RECORD_VALUE, true),
    user,
    kernel,
    truncated: end === UNWIND_COMPLETE ? undefined : (UNWIND_END_NAMES[end] ?? `end ${end}`),
  }
}
