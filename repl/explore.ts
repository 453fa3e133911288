/**
 * What the REPL explores the kernel with:
 * - `trace(spec, filter)`: a `Stream` (repl/stream.ts) of the events of a tracepoint (wildcards
 *   expand as in one-liners), through `captureEvents` (repl/bpftrace/capture.ts), with `pid`,
 *   `comm` and `uid` filtered in the kernel; or of a `uprobe:`/`uretprobe:` probe, through the
 *   one-liners' uprobe capture (repl/bpftrace/uprobes.ts), `pid` filtered in the kernel.
 * - `probes(pattern)`: the tracepoints a pattern names with their fields (as `bpftrace -lv`
 *   prints them), or the functions of a binary a uprobe pattern names (as `bpftrace -l` does).
 *
 * A spec is an attach point as one-liners write it (`tracepoint:sched:sched_switch`, or
 * `sched:sched_switch` for short); its errors are `BpftraceErrors` located in the spec, with the
 * spec as their `source`, so the shell can point at the column in the line typed.
 */
import { readFileSync } from 'node:fs'
import { inspect } from 'node:util'
import type { AttachPoint, Location } from './bpftrace/ast.ts'
import { captureEvents, expandTracepoint, type KernelFilter, type TracepointRequest } from './bpftrace/capture.ts'
import { isDataLoc } from '../runtime/protocols/tracepoint.ts'
import { BpftraceError, BpftraceErrors } from './bpftrace/errors.ts'
import type { TraceEvent } from './bpftrace/evaluate.ts'
import { parse } from './bpftrace/parser.ts'
import { compileProgram } from './bpftrace/program.ts'
import { readFormat, TRACEFS, type TracepointFormat } from './bpftrace/tracefs.ts'
import { captureProfiles } from './bpftrace/profile.ts'
import { captureUprobes, expandUprobe, isUprobe } from './bpftrace/uprobes.ts'
import { jsonValue, Stream, type EventFields, type EventFormat, type UprobeFunction } from './stream.ts'

/** An event of `trace()`: a `TraceEvent` and the probe it came from (bpftrace's `probe`). */
export interface TracedEvent extends TraceEvent {
  /** `tracepoint:syscalls:sys_enter_openat`, `uprobe:/usr/bin/bash:readline` */
  probe: string
}

export interface TraceFilter {
  pid?: number
  comm?: string
  uid?: number
}

/** Fields every traced event has. */
const EVENT_FIELDS = ['probe', 'pid', 'tid', 'uid', 'gid', 'comm', 'cpu', 'nsecs']
/** The kernel's comm holds 15 bytes and a NUL. */
const COMM_BYTES = 15
const PROVIDERS = new Set(['tracepoint', 't', 'uprobe', 'u', 'uretprobe', 'ur', 'profile', 'p', 'interval', 'i', 'kprobe', 'k', 'kretprobe', 'kr', 'BEGIN', 'END', 'software', 's', 'hardware', 'h', 'usdt', 'U', 'kfunc', 'f', 'kretfunc', 'fr'])

/** BpftraceErrors located in `spec`, carrying the spec for the shell. */
function specErrors(spec: string, errors: BpftraceError[]): BpftraceErrors {
  return Object.assign(new BpftraceErrors(errors), { source: spec })
}

/**
 * The attach points of a spec; `category:name` without a provider is a tracepoint. Locations
 * are columns of `spec`.
 */
function attachPoints(spec: string): AttachPoint[] {
  const short = /^[^:/\s]+:[^:\s]+$/.test(spec) && !PROVIDERS.has(spec.slice(0, spec.indexOf(':')))
  const prefix = short ? 'tracepoint:' : ''
  // from columns of what was parsed to columns of the spec
  const inSpec = (loc: Location): Location => ({ ...loc, column: Math.max(1, loc.column - prefix.length), endColumn: Math.max(2, loc.endColumn - prefix.length) })
  try {
    const points = parse(`${prefix}${spec} {}`).probes.flatMap((probe) => probe.attachPoints)
    return points.map((point) => ({ ...point, loc: inSpec(point.loc) }))
  } catch (error) {
    if (!(error instanceof BpftraceErrors)) throw error
    throw specErrors(spec, error.errors.map((e) => new BpftraceError(e.message, e.loc && inSpec(e.loc))))
  }
}

function checkFilter(filter: TraceFilter): KernelFilter {
  const known = new Set(['pid', 'comm', 'uid'])
  const unknown = Object.keys(filter).filter((key) => !known.has(key))
  if (unknown.length > 0) throw new TypeError(`trace(): filter on ${unknown.join(', ')}: the kernel filters on pid, comm and uid; filter other fields with .filter(e => ...)`)
  const { pid, comm, uid } = filter
  if (pid !== undefined && (!Number.isInteger(pid) || pid < 1 || pid >= 2 ** 32)) throw new RangeError(`trace(): pid ${pid} is not a process id`)
  if (uid !== undefined && (!Number.isInteger(uid) || uid < 0 || uid >= 2 ** 32)) throw new RangeError(`trace(): uid ${uid} is not a user id`)
  if (comm !== undefined && (typeof comm !== 'string' || Buffer.byteLength(comm) > COMM_BYTES)) throw new RangeError(`trace(): comm ${inspect(comm)} can never match: the kernel keeps the first ${COMM_BYTES} bytes of a command name`)
  return { ...(pid !== undefined ? { pid } : {}), ...(comm !== undefined ? { comm } : {}), ...(uid !== undefined ? { uid } : {}) }
}

/** `0x7ffc...` for pointers, decimal for other integers, strings quoted. */
function fieldText(value: bigint | number | string, pointer: boolean): string {
  if (typeof value === 'string') return JSON.stringify(value)
  return pointer ? `0x${BigInt.asUintN(64, BigInt(value)).toString(16)}` : `${value}`
}

/** Seconds since boot with microseconds, as trace_pipe prints them. */
function timestamp(nsecs: bigint): string {
  return `${nsecs / 1_000_000_000n}.${`${(nsecs % 1_000_000_000n) / 1000n}`.padStart(6, '0')}`
}

/**
 * An event on one line, laid out as the kernel's trace_pipe lays it out, with the process id:
 * `cat-1234 [001] 5123.123456: syscalls:sys_enter_openat: dfd=-100 filename="/etc/hosts" ...`.
 */
function eventFormat(pointers: Set<string>): EventFormat<TracedEvent> {
  return {
    text(event) {
      let line = `${event.comm}-${event.pid} [${`${event.cpu}`.padStart(3, '0')}] ${timestamp(event.nsecs)}: ${event.probe.slice(event.probe.indexOf(':') + 1)}:`
      if (event.args) for (const name in event.args) line += ` ${name}=${fieldText(event.args[name], pointers.has(name))}`
      if (event.regs) event.regs.forEach((value, i) => { line += ` arg${i}=0x${BigInt.asUintN(64, value).toString(16)}` })
      if (event.retval !== undefined) line += ` retval=${event.retval}`
      if (event.kstack?.length) line += ` kstack=${event.kstack.map((f) => f.symbol).join(';')}`
      if (event.ustack?.length) line += ` ustack=${event.ustack.map((f) => f.symbol).join(';')}`
      return line
    },
    json: jsonValue,
  }
}

/**
 * Strings worth copying (at most 2, what one record holds): a tracepoint's `__data_loc char[]`
 * fields (sched_process_exec's filename), then a syscall's `char *` arguments.
 */
function userStrings(category: string, format: TracepointFormat): string[] {
  const inRecord = format.fields.filter(isDataLoc).map((f) => f.name)
  const pointers = category === 'syscalls' ? format.fields.filter((f) => /\bchar\s*\*$/.test(f.type) && f.size === 8).map((f) => f.name) : []
  return [...inRecord, ...pointers].slice(0, 2)
}

function traceTracepoints(spec: string, points: Extract<AttachPoint, { provider: 'tracepoint' }>[], filter: KernelFilter, root: string): Stream<TracedEvent> {
  const requests: TracepointRequest[] = []
  const names: string[] = []
  const args = new Set<string>()
  const pointers = new Set<string>()
  for (const point of points) {
    let found: [string, string][]
    try {
      found = expandTracepoint(point, root)
    } catch (error) {
      if (error instanceof BpftraceErrors) throw specErrors(spec, error.errors)
      throw error
    }
    for (const [category, name] of found) {
      if (names.includes(`tracepoint:${category}:${name}`)) continue
      const format = readFormat(category, name, root)
      if (!format) continue
      const strings = userStrings(category, format)
      for (const field of format.fields) {
        args.add(field.name)
        if (field.type.includes('*') && !strings.includes(field.name)) pointers.add(field.name)
      }
      requests.push({ category, name, filter, ...(strings.length > 0 ? { strings } : {}) })
      names.push(`tracepoint:${category}:${name}`)
    }
  }
  const fields: EventFields = { what: spec, top: EVENT_FIELDS, args: [...args] }
  return new Stream<TracedEvent>({
    async open(push) {
      return captureEvents(requests, (index, event) => {
        const traced = event as TracedEvent
        traced.probe = names[index]
        push(traced)
      }, root)
    },
  }, eventFormat(pointers), fields, { kind: 'tracepoints', requests, probes: names })
}

function traceUprobes(spec: string, points: Extract<AttachPoint, { provider: 'uprobe' | 'uretprobe' }>[], filter: KernelFilter): Stream<TracedEvent> {
  // one probe per function, so each event says which function it came from
  const names: string[] = []
  const functions: UprobeFunction[] = []
  for (const point of points) {
    let expanded: ReturnType<typeof expandUprobe>
    try {
      expanded = expandUprobe(point)
    } catch (error) {
      if (error instanceof BpftraceErrors) throw specErrors(spec, error.errors)
      throw error
    }
    for (const { symbol } of expanded.functions) {
      names.push(`${point.provider}:${expanded.path}:${symbol}`)
      functions.push({ binary: expanded.path, symbol, retprobe: point.provider === 'uretprobe' })
    }
  }
  const predicate = filter.pid !== undefined ? ` /pid == ${filter.pid}/` : ''
  const checked = compileProgram(names.map((name) => `${name}${predicate} {}`).join('\n'))
  const { comm, uid } = filter
  const retprobe = points.some((p) => p.provider === 'uretprobe')
  const fields: EventFields = { what: spec, top: [...EVENT_FIELDS, ...(retprobe ? ['retval'] : []), ...(points.some((p) => p.provider === 'uprobe') ? ['regs'] : [])], args: [] }
  return new Stream<TracedEvent>({
    async open(push) {
      const capture = await captureUprobes(checked, (probe, event) => {
        // the generic uprobe program filters only on pid in the kernel
        if ((comm !== undefined && event.comm !== comm) || (uid !== undefined && event.uid !== uid)) return
        const traced = event as TracedEvent
        traced.probe = names[probe]
        push(traced)
      })
      // expandUprobe found at least one function, or threw
      if (!capture) throw new Error(`${spec}: no function to attach to`)
      return capture
    },
  }, eventFormat(new Set()), fields, { kind: 'uprobes', functions, probes: names, filter })
}

/**
 * CPU samples (`profile:hz:99`): each event's `ustack` and `kstack` are its stacks, innermost
 * frame first, named (`leaf+15`), as one-liners' profile probes get them (bpftrace/profile.ts).
 * pid, comm and uid are filtered in the kernel, before a sample is taken.
 */
function traceProfiles(spec: string, points: Extract<AttachPoint, { provider: 'profile' }>[], filter: KernelFilter): Stream<TracedEvent> {
  const names = points.map((point) => `profile:${point.unit}:${point.value}`)
  const conditions = [
    filter.pid === undefined ? '' : `pid == ${filter.pid}`,
    filter.comm === undefined ? '' : `comm == ${JSON.stringify(filter.comm)}`,
    filter.uid === undefined ? '' : `uid == ${filter.uid}`,
  ].filter(Boolean)
  const predicate = conditions.length > 0 ? ` /${conditions.join(' && ')}/` : ''
  const checked = compileProgram(names.map((name) => `${name}${predicate} {}`).join('\n'))
  return new Stream<TracedEvent>({
    async open(push) {
      const capture = await captureProfiles(checked, (probe, event) => {
        const traced = event as TracedEvent
        traced.probe = names[probe]
        push(traced)
      })
      // attachPoints found at least one profile point
      return capture!
    },
  }, eventFormat(new Set()), { what: spec, top: [...EVENT_FIELDS, 'ustack', 'kstack'], args: [] }, { kind: 'other', what: 'profile samples' })
}

/**
 * The events of a tracepoint (`tracepoint:syscalls:sys_enter_openat`, `sched:*`) or of a
 * uprobe (`uprobe:/usr/bin/bash:readline`, `uretprobe:/path:mall*`), filtered in the kernel:
 * `trace('syscalls:sys_enter_openat', { comm: 'nginx' }).count('filename')`. A syscall's
 * `char *` arguments (up to 2) arrive as the strings they point to.
 */
export function trace(spec: string, filter: TraceFilter = {}, root: string = TRACEFS): Stream<TracedEvent> {
  const kernelFilter = checkFilter(filter)
  const points = attachPoints(spec)
  const tracepoints = points.filter((p): p is Extract<AttachPoint, { provider: 'tracepoint' }> => p.provider === 'tracepoint')
  const uprobes = points.filter(isUprobe)
  const profiles = points.filter((p): p is Extract<AttachPoint, { provider: 'profile' }> => p.provider === 'profile')
  if (profiles.length > 0 && profiles.length === points.length) return traceProfiles(spec, profiles, kernelFilter)
  const other = points.find((p) => p.provider !== 'tracepoint' && !isUprobe(p))
  if (other) throw specErrors(spec, [new BpftraceError(`trace() captures tracepoint, uprobe, uretprobe and profile probes (each kind apart); run ${other.provider} probes as a one-liner (${other.provider === 'BEGIN' || other.provider === 'END' ? other.provider : `${other.provider}:...`} { ... })`, other.loc)])
  if (tracepoints.length > 0 && uprobes.length > 0) throw specErrors(spec, [new BpftraceError('trace() takes tracepoints or uprobes, not both: trace each and handle the streams apart', uprobes[0].loc)])
  return tracepoints.length > 0 ? traceTracepoints(spec, tracepoints, kernelFilter, root) : traceUprobes(spec, uprobes, kernelFilter)
}

export interface ProbeInfo {
  /** the full spec: `tracepoint:sched:sched_switch`, `uprobe:/usr/lib/x86_64-linux-gnu/libc.so.6:malloc` */
  probe: string
  /** a tracepoint's fields, as its format declares them (`char prev_comm[16]`), after the common ones */
  fields?: string[]
}

/** What `probes()` found; shows as `bpftrace -lv` (tracepoints) or `bpftrace -l` (uprobes) prints it. */
export class ProbeList implements Iterable<ProbeInfo> {
  readonly probes: readonly ProbeInfo[]

  constructor(probes: ProbeInfo[]) {
    this.probes = probes
  }

  get length(): number {
    return this.probes.length
  }

  [Symbol.iterator](): Iterator<ProbeInfo> {
    return this.probes[Symbol.iterator]()
  }

  toString(): string {
    return this.probes.map((p) => `${p.probe}\n${(p.fields ?? []).map((f) => `    ${f}\n`).join('')}`).join('')
  }

  [inspect.custom](): string {
    return this.toString().replace(/\n$/, '')
  }
}

/** The declarations of a format file's own fields, as written there (`const char * filename`). */
function declarations(category: string, name: string, root: string): string[] {
  const text = readFileSync(`${root}/events/${category}/${name}/format`, 'utf8')
  return [...text.matchAll(/field:([^;]+);/g)].map(([, declaration]) => declaration.trim()).filter((declaration) => !/\bcommon_\w+(\[|$)/.test(declaration))
}

/**
 * Lists what a pattern names: `probes('sched:*')` (or `'sched'`), `probes('tracepoint:sched:sched_sw*')`,
 * tracepoints with their fields; `probes('uprobe:/usr/lib/x86_64-linux-gnu/libc.so.6:mall*')`
 * (or the path alone), a binary's functions. A pattern naming nothing is an error.
 */
export function probes(pattern: string = 'tracepoint:*:*', root: string = TRACEFS): ProbeList {
  // a category alone, or a binary alone, names all of it
  const whole = (/^[^:/\s]+$/.test(pattern) && !PROVIDERS.has(pattern)) || /^(uprobe|uretprobe):[^:\s]+$/.test(pattern)
  const points = attachPoints(whole ? `${pattern}:*` : pattern)
  const found: ProbeInfo[] = []
  for (const point of points) {
    try {
      if (point.provider === 'tracepoint') {
        for (const [category, name] of expandTracepoint(point, root)) found.push({ probe: `tracepoint:${category}:${name}`, fields: declarations(category, name, root) })
      } else if (isUprobe(point)) {
        const { path, functions } = expandUprobe(point)
        for (const { symbol } of functions) found.push({ probe: `${point.provider}:${path}:${symbol}` })
      } else {
        throw new BpftraceErrors([new BpftraceError('probes() lists tracepoints and uprobes', point.loc)])
      }
    } catch (error) {
      if (error instanceof BpftraceErrors) throw specErrors(pattern, error.errors)
      throw error
    }
  }
  return new ProbeList(found)
}
