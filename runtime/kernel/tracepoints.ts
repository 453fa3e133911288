/**
 * Tracepoints the `generic` object (bpf/lib/generic.bpf.c) captures, as the REPL and plugins
 * (`ctx.onTracepoint`) ask for them: a request names a tracepoint, a kernel-side filter (tgid,
 * comm, uid) and up to two string fields to copy; `checkTracepointRequest` reads its tracefs
 * format and says, naming the fix, what the generic program cannot do; `encodeTracepointConfig`
 * makes the `probe_config` slot the attach cookie selects.
 */
import { existsSync, readFileSync } from 'node:fs'
import { encodeGenericProbeConfig, GENERIC_PROBE_CONFIG_SIZE } from '../../bpf/lib/generic.types.ts'
import { isDataLoc, parseFormat, type TracepointFormat } from '../protocols/tracepoint.ts'

export const TRACEFS = '/sys/kernel/tracing'
/** The program plugins' ctx.onTracepoint attaches: one slot of its probe_config per tracepoint. */
export const GENERIC_TRACEPOINT_PROGRAM = 'generic:generic_tracepoint'
/** generic.h's GENERIC_MAX_PROBES: config slots, so tracepoints, one generic object serves */
export const GENERIC_MAX_PROBES = 64
/** generic.h's GENERIC_MAX_STRINGS: user-space strings copied per record */
export const GENERIC_MAX_STRINGS = 2
/** generic.h's GENERIC_FILTER_COMM and GENERIC_FILTER_UID */
const FILTER_COMM = 1
const FILTER_UID = 2

/** Which events of a tracepoint the kernel keeps: all that match every field given. */
export interface KernelFilter {
  /** a process (tgid): all its threads */
  pid?: number
  /** a task name, as the kernel keeps it (at most 15 bytes) */
  comm?: string
  uid?: number
}

export interface TracepointRequest {
  category: string
  name: string
  filter: KernelFilter
  /** fields of the format holding user-space `char *` (or `__data_loc char[]`) to copy as strings (at most 2) */
  strings?: string[]
  /**
   * stacks to append to each record (bpftrace's kstack and ustack; bpf/include/event_stacks.h):
   * a struct stack_sample after the strings; none by default
   */
  stacks?: { kernel?: boolean; user?: boolean }
}

/** event_stacks.h's EVENT_STACK_KERNEL and EVENT_STACK_USER: a slot config's `stacks` bits */
export const EVENT_STACK_KERNEL = 1
export const EVENT_STACK_USER = 2

/** Whether this kernel has the tracepoint "category/name". */
export function tracepointExists(name: string, root = TRACEFS): boolean {
  return existsSync(`${root}/events/${name}`)
}

/** The format of `category:name`, or undefined when the tracepoint does not exist. */
export function readFormat(category: string, name: string, root = TRACEFS): TracepointFormat | undefined {
  try {
    return parseFormat(readFileSync(`${root}/events/${category}/${name}/format`, 'utf8'))
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
}

/** A request's format, checked against what one slot of the generic object can do; throws what is wrong. */
export function checkTracepointRequest(request: TracepointRequest, root = TRACEFS): TracepointFormat {
  const where = `${request.category}:${request.name}`
  if (!/^[\w.-]+$/.test(request.category) || !/^[\w.-]+$/.test(request.name)) throw new Error(`'${where}' is not a tracepoint name: give its category and name as tracefs lists them (syscalls:sys_enter_openat)`)
  const format = readFormat(request.category, request.name, root)
  if (!format) throw new Error(`no tracepoint ${where}: ${root}/events/${request.category}/${request.name}/format does not exist; list the tracepoints with probes('${request.category}:*')`)
  const { comm, uid, pid } = request.filter
  if (comm !== undefined && typeof comm !== 'string') throw new Error(`${where}: the comm filter must be a string`)
  // an empty one is a task named "" (prctl PR_SET_NAME), which the kernel compares as it is
  if (comm !== undefined && new TextEncoder().encode(comm).length > 15) throw new Error(`${where}: the comm filter "${comm}" can never match: the kernel keeps at most 15 bytes of a task's name`)
  for (const [name, value] of [['pid', pid], ['uid', uid]] as const) {
    if (value !== undefined && !(Number.isInteger(value) && value >= 0 && value < 2 ** 32)) throw new Error(`${where}: the ${name} filter ${value} is not a 32-bit unsigned integer`)
  }
  const strings = request.strings ?? []
  if (strings.length > GENERIC_MAX_STRINGS) throw new Error(`${where}: ${strings.length} string fields requested (${strings.join(', ')}); the generic program copies at most ${GENERIC_MAX_STRINGS} per record`)
  for (const name of strings) {
    const field = format.fields.find((f) => f.name === name)
    if (!field || !(isDataLoc(field) || (field.type.includes('*') && field.size === 8))) {
      const stringy = format.fields.filter((f) => f.type.includes('*') || isDataLoc(f)).map((f) => f.name)
      throw new Error(`${where}: ${name} is neither a pointer nor a __data_loc field of the format, so it has no string to copy (those fields: ${stringy.join(', ') || 'none'})`)
    }
  }
  return format
}

/** The `probe_config` value of a checked request. */
export function encodeTracepointConfig(request: TracepointRequest, format: TracepointFormat): Uint8Array {
  const { pid, comm, uid } = request.filter
  const fields = (request.strings ?? []).map((name) => format.fields.find((f) => f.name === name)!)
  const offsets = fields.map((field) => field.offset)
  const dataLocs = fields.reduce((bits, field, i) => (isDataLoc(field) ? bits | (1 << i) : bits), 0)
  const value = new Uint8Array(GENERIC_PROBE_CONFIG_SIZE)
  encodeGenericProbeConfig({
    record_size: format.recordSize,
    tgid: pid ?? 0,
    uid: uid ?? 0,
    filters: (comm === undefined ? 0 : FILTER_COMM) | (uid === undefined ? 0 : FILTER_UID),
    comm: comm ?? '',
    string_offsets: Array.from({ length: GENERIC_MAX_STRINGS }, (_, i) => offsets[i] ?? 0),
    string_data_locs: dataLocs,
    stacks: (request.stacks?.kernel ? EVENT_STACK_KERNEL : 0) | (request.stacks?.user ? EVENT_STACK_USER : 0),
  }, new DataView(value.buffer), 0)
  return value
}
