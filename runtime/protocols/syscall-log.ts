/**
 * What the syscall-log plugin needs to read the `syscall_log` object and turn its records into
 * log records: the constants of bpf/lib/syscall_log.h (checked against the header by
 * test/unit/syscall-log.test.ts), its decoder, which arguments the kernel copies as strings, and
 * how each argument is written. Arguments are decoded from their declared C type, as the kernel's
 * syscall table gives it (`ctx.kernel.syscalls()`), with no table per syscall. Pure TypeScript,
 * bundled into plugins.
 */
import type { SyscallDescription } from '../plugins/api.ts'
import type { SyscallLogRecord } from '../../bpf/lib/syscall_log.types.ts'

export { decodeSyscallLogRecord, encodeSyscallLogDecode, SYSCALL_LOG_DECODE_SIZE, type SyscallLogRecord } from '../../bpf/lib/syscall_log.types.ts'

/** `flags` of a record */
export const SYSCALL_LOG_NO_RETURN = 1
export const SYSCALL_LOG_STRING0_CUT = 2
export const SYSCALL_LOG_STRING1_CUT = 4
/** Strings the kernel copies per call, and their bytes with the NUL. */
export const SYSCALL_LOG_STRINGS = 2
export const SYSCALL_LOG_STRING_LEN = 256
/** Syscall numbers `decode` has entries for. */
export const SYSCALL_LOG_MAX_NR = 512

/**
 * Character-pointer arguments that hold a path or a name, by the name SYSCALL_DEFINE gives them:
 * the only memory of the process the kernel copies. Buffers (`buf`), messages, key payloads and
 * socket options are never read, so what a process reads, writes or sends never reaches a log.
 */
const stringArgumentNames = new Set([
  'filename', 'pathname', 'path', 'oldname', 'newname', 'from_pathname', 'to_pathname', 'new_root', 'put_old',
  'dev_name', 'dir_name', 'type', 'special', 'specialfile', 'name', 'uname', 'u_name', '_fs_name', '_type',
])

/** Syscalls that never return: logged at their entry. */
const noReturn = new Set(['exit', 'exit_group'])

/** Which arguments of a syscall the kernel copies as strings (at most SYSCALL_LOG_STRINGS, in order). */
export function stringArguments(syscall: SyscallDescription): number[] {
  const out: number[] = []
  for (const [index, arg] of syscall.args.entries()) {
    if (out.length < SYSCALL_LOG_STRINGS && /^(const )?char \*$/.test(arg.type) && stringArgumentNames.has(arg.name)) out.push(index)
  }
  return out
}

export function returnsNever(syscall: SyscallDescription): boolean {
  return noReturn.has(syscall.name)
}

/** Argument types passed as 32-bit signed integers (sign-extended or not, the low 32 bits count). */
const signed32 = new Set(['int', 'pid_t', 'clockid_t', 'key_serial_t', 'mqd_t', 'rwf_t', 'timer_t', 's32', '__s32'])
const signed64 = new Set(['long', 'off_t', 'loff_t', 'ssize_t', 's64', '__s64'])
const unsigned32 = new Set(['unsigned int', 'unsigned', 'u32', '__u32', 'uid_t', 'gid_t', 'qid_t', 'old_uid_t', 'old_gid_t'])

/** One argument's value for the log: a number, a string argument's text, or a pointer in hex. */
export function argumentValue(type: string, raw: bigint, text: string | undefined): number | string {
  if (text !== undefined) return text
  if (type.endsWith('*')) return raw === 0n ? 'NULL' : `0x${raw.toString(16)}`
  if (signed32.has(type)) return Number(BigInt.asIntN(32, raw))
  if (signed64.has(type)) return Number(BigInt.asIntN(64, raw))
  if (unsigned32.has(type)) return Number(BigInt.asUintN(32, raw))
  // mode bits read best in octal, as chmod writes them
  if (type === 'umode_t') return `0${BigInt.asUintN(16, raw).toString(8)}`
  const value = BigInt.asUintN(64, raw)
  return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : `0x${value.toString(16)}`
}

/** How a value is written in the log's body: strings quoted, the rest as is. */
function written(value: number | string, isText: boolean): string {
  return isText ? JSON.stringify(value) : String(value)
}

export interface DecodedCall {
  name: string
  /** `openat(dfd=-100, filename="/etc/hosts", flags=0, mode=00) = 3`, strace-like. */
  body: string
  /** `syscall.args.<name>` for each argument. */
  args: Record<string, number | string>
  /** False for a call that does not return (logged at its entry). */
  returned: boolean
  /** The errno's name when the call failed. */
  error?: string
}

/**
 * A record as a call: its name, each argument decoded by its declared type, and its return value
 * (an errno's name when it failed). `syscall` is undefined for a number the kernel has no syscall
 * for: its six registers are written in hex.
 */
export function decodeCall(record: SyscallLogRecord, syscall: SyscallDescription | null | undefined, errnoNames: readonly string[]): DecodedCall {
  const texts = new Map<number, string>()
  for (let slot = 0; slot < SYSCALL_LOG_STRINGS; slot++) {
    const which = record.string_args[slot]!
    if (which === 0) continue
    const cut = (record.flags & (slot === 0 ? SYSCALL_LOG_STRING0_CUT : SYSCALL_LOG_STRING1_CUT)) !== 0
    texts.set(which - 1, cut ? `${record.strings[slot]}…` : record.strings[slot]!)
  }
  const name = syscall?.name ?? `syscall_${record.nr}`
  const declared = syscall?.args ?? record.args.map((_, i) => ({ name: `arg${i}`, type: 'unsigned long' }))
  const args: Record<string, number | string> = {}
  const shown: string[] = []
  for (const [index, arg] of declared.entries()) {
    const text = texts.get(index)
    const value = argumentValue(arg.type, record.args[index]!, text)
    args[arg.name] = value
    shown.push(`${arg.name}=${written(value, text !== undefined)}`)
  }
  const call = `${name}(${shown.join(', ')})`
  if ((record.flags & SYSCALL_LOG_NO_RETURN) !== 0) return { name, body: `${call} = ?`, args, returned: false }
  const failed = record.ret < 0 && record.ret >= -4095
  const error = failed ? errnoNames[-record.ret] || String(-record.ret) : undefined
  return { name, body: `${call} = ${failed ? `-1 ${error}` : record.ret}`, args, returned: true, ...(error === undefined ? {} : { error }) }
}
