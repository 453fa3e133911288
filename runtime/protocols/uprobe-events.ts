/**
 * Records of the library's generic uprobe programs (bpf/lib/generic_uprobe.bpf.c), as the REPL
 * and plugins (`ctx.onUprobe`) see them; it runs in isolates too.
 */
import { taskFields, type RecordTaskFields, type TaskFields } from './tracepoint.ts'

/** What a `generic_uprobe:events` record carries (struct generic_uprobe_record, decoded). */
export interface GenericUprobeRecordFields extends RecordTaskFields {
  args: bigint[]
  retval: bigint
}

/** One call of a function (a uprobe) or one return from it (a uretprobe). */
export interface UprobeEvent extends TaskFields {
  /** at a call: the first six integer argument registers (x86-64: rdi, rsi, rdx, rcx, r8, r9), bpftrace's arg0..arg5 */
  regs?: bigint[]
  /** at a return: the return value register, bpftrace's retval */
  retval?: bigint
}

/** A record as an event: its registers at a call, its return value at a return. */
export function uprobeEvent(record: GenericUprobeRecordFields, retprobe: boolean): UprobeEvent {
  const event: UprobeEvent = taskFields(record)
  if (retprobe) event.retval = record.retval
  else event.regs = record.args
  return event
}
