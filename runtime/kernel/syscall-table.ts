/**
 * The syscall table of the running kernel: each syscall's number, name and arguments, as this
 * kernel has them (not a table written for some kernel version). bpf/lib/syscall_table.bpf.c reads
 * them from the ftrace metadata of every syscall, whose numbers the kernel took from its own
 * sys_call_table at boot; its header says how it finds them. It runs once per Periscope process
 * (about 50 ms), when something first asks, and needs tracefs and CONFIG_FTRACE_SYSCALLS, as the
 * syscall tracepoints do. What it needs also works after the privilege drop: CAP_BPF and
 * CAP_PERFMON for the iterator, CAP_DAC_READ_SEARCH to open a tracefs file.
 */
import { closeSync, openSync, readdirSync } from 'node:fs'
import { constants } from 'node:os'
import { mapCodecs } from '../../bpf/lib/syscall_table.types.ts'
import { runIterator } from '../bpf/links.ts'
import { ObjectSpec } from '../bpf/object.ts'
import { libraryDir } from '../library/index.ts'

const TRACEFS_SYSCALLS = '/sys/kernel/tracing/events/syscalls'

export interface SyscallArgument {
  /** As the kernel's SYSCALL_DEFINE names it: `filename`, `flags`. */
  name: string
  /** As SYSCALL_DEFINE writes it, without `__user`: `const char *`, `unsigned int`. */
  type: string
}

export interface Syscall {
  number: number
  /** Without the `sys_` prefix: `read`, `openat`. */
  name: string
  args: SyscallArgument[]
}

/** Index = syscall number; `undefined` for a number no syscall has (a hole, `sys_ni_syscall`). */
export type SyscallTable = readonly (Syscall | undefined)[]

let table: Promise<SyscallTable> | undefined

/**
 * The table, read from the kernel on the first call; later calls share that read. A failed read
 * is not kept, so a later call tries again (after tracefs is mounted, say).
 */
export function syscallTable(): Promise<SyscallTable> {
  table ??= readSyscallTable().catch((error: unknown) => {
    table = undefined
    throw error
  })
  return table
}

/** Index = syscall number, value = its name (`read`), `''` for a hole. */
export async function syscallNames(): Promise<string[]> {
  return Array.from(await syscallTable(), (syscall) => syscall?.name ?? '')
}

/** Names that share a number with the kernel's own name for it (errno(3)): the kernel's wins. */
const errnoAliases = new Set(['EWOULDBLOCK', 'EDEADLOCK', 'ENOTSUP'])

/**
 * Error names by number (`ENOENT` at 2), `''` for numbers without one. The kernel has no table of
 * them at run time (they are #defines), so this is libuv's table for this platform, which Node
 * exposes as os.constants.errno.
 */
export function errnoNames(): string[] {
  const names: string[] = []
  for (const [name, number] of Object.entries(constants.errno)) {
    if (names[number] === undefined || errnoAliases.has(names[number]!)) names[number] = name
  }
  return Array.from(names, (name) => name ?? '')
}

async function readSyscallTable(): Promise<SyscallTable> {
  const fd = openSyscallEvent()
  try {
    const spec = ObjectSpec.open(`${libraryDir}syscall_table.bpf.o`)
    spec.setSettings({ event_fd: fd })
    const object = await spec.load()
    try {
      const printed = (await runIterator(object, 'read_syscall_table', { pid: process.pid })).toString()
      if (!printed.startsWith('events ')) {
        throw new Error(`read the syscall table: the kernel's iterator did not reach the trace event of descriptor ${fd} (it printed ${JSON.stringify(printed)}); ` +
          'check that /sys/kernel/tracing is tracefs')
      }
      return decodeTable(object.map('syscalls').entries())
    } finally {
      object.close()
    }
  } finally {
    closeSync(fd)
  }
}

/** Opens the `enable` file of one syscall entry event; the iterator finds the event through it. */
function openSyscallEvent(): number {
  let events: string[]
  try {
    events = readdirSync(TRACEFS_SYSCALLS)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    throw new Error(code === 'ENOENT'
      ? `read the syscall table: ${TRACEFS_SYSCALLS} does not exist; mount tracefs (mount -t tracefs tracefs /sys/kernel/tracing), ` +
        'and the kernel needs CONFIG_FTRACE_SYSCALLS'
      : `read the syscall table: cannot list ${TRACEFS_SYSCALLS}: ${(error as Error).message}`)
  }
  const event = events.find((name) => name.startsWith('sys_enter_'))
  if (event === undefined) throw new Error(`read the syscall table: ${TRACEFS_SYSCALLS} has no sys_enter_* event; the kernel needs CONFIG_FTRACE_SYSCALLS`)
  return openSync(`${TRACEFS_SYSCALLS}/${event}/enable`, 'r')
}

function decodeTable(entries: Iterable<[Uint8Array, Uint8Array]>): SyscallTable {
  const { key, value } = mapCodecs.syscalls
  const out: (Syscall | undefined)[] = []
  for (const [k, v] of entries) {
    const number = key.decode(new DataView(k.buffer, k.byteOffset, k.byteLength), 0)
    const entry = value.decode(new DataView(v.buffer, v.byteOffset, v.byteLength), 0)
    const name = entry.name.startsWith('sys_') ? entry.name.slice('sys_'.length) : entry.name
    if (name === '' || name === 'ni_syscall') continue
    const count = Math.min(entry.arg_count, entry.arg_names.length)
    const args = Array.from({ length: count }, (_, i) => ({ name: entry.arg_names[i]!, type: entry.arg_types[i]! }))
    out[number] = { number, name, args }
  }
  if (out.length === 0) throw new Error('read the syscall table: the kernel named no syscall; is CONFIG_FTRACE_SYSCALLS set?')
  // a plain array without holes, so it copies into isolates as one
  return Array.from(out)
}
