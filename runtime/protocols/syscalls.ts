/**
 * What the syscalls plugin needs to read the `syscalls` object: the constants of
 * bpf/lib/syscalls.h (checked against the header by test/unit/syscalls-constants.test.ts) and its
 * BTF-generated decoders. Pure TypeScript, bundled into plugins.
 */
export {
  decodeSyscallCounts, decodeSyscallErrorKey, decodeSyscallKey, decodeSyscallProcess, type SyscallRetired,
} from '../../bpf/lib/syscalls.types.ts'

/** `reason` of syscalls:retired */
export const SYSCALLS_RETIRE_EXIT = 1
export const SYSCALLS_RETIRE_EXEC = 2

/** Indexes of the `overflows` map. */
export const SYSCALLS_OVERFLOW_PROCESS_TABLE = 0
export const SYSCALLS_OVERFLOW_ERRNO_TABLE = 1
export const SYSCALLS_OVERFLOW_COMPAT = 2
export const SYSCALLS_OVERFLOWS = 3

/** Syscall numbers the kernel counts (higher ones are not counted). */
export const SYSCALLS_MAX_NR = 512
