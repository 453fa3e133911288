/**
 * Feeds a checked program's tracepoint probes from the kernel: one `generic.bpf.c` object,
 * attached once to every tracepoint the program names (wildcards expanded from tracefs), each
 * with its own config slot (the attach cookie): the record size from the tracefs format and the
 * kernel-side pid filter from `kernelFilter()`. A record goes to every probe naming its
 * tracepoint, in program order. Records are decoded with the format and handed
 * to `onEvent(probeIndex, event)` — usually `Evaluator.fire`.
 *
 * Not here yet: uprobe/uretprobe, profile and interval probes, BEGIN/END (the caller runs
 * them), and the `uid`/`gid` builtins, which generic.bpf.c does not record: a program using
 * them in a tracepoint probe is refused rather than given zeros.
 *
 * Known gap: generic.bpf.c cannot leave out this process. A probe on a syscall this process
 * makes to wake up for records (sys_exit_read: libuv reads its eventfd) and without a kernel pid
 * filter feeds itself: each record wakes the reader, whose read is another record (measured:
 * 28,000 to 36,000 reads a second by the test process, at 55% of a core, until killed). The
 * kernel side needs an "every process but this tgid" setting before one-liners go unfiltered.
 */
import { readdirSync } from 'node:fs'
import { decodeGenericRecord, encodeGenericProbeConfig, GENERIC_PROBE_CONFIG_SIZE } from '../../bpf/lib/generic.types.ts'
import { forEachRecord } from '../../runtime/bpf/batch.ts'
import { attachTracepoint, type Link } from '../../runtime/bpf/links.ts'
import { ObjectSpec } from '../../runtime/bpf/object.ts'
import { libraryDir } from '../../runtime/library/index.ts'
import { RingBufferReader } from '../../runtime/bpf/ringbuf.ts'
import type { AttachPoint, Expression, Statement } from './ast.ts'
import type { CheckedProgram } from './check.ts'
import { BpftraceError, BpftraceErrors } from './errors.ts'
import type { TraceEvent } from './evaluate.ts'
import { kernelFilter, type KernelFilter } from './kernel-filter.ts'
import { decodeFields, readFormat, TRACEFS, type TracepointFormat } from './tracefs.ts'

/** generic.h's GENERIC_MAX_PROBES: config slots, so tracepoints, one object serves */
const MAX_PROBES = 64
/** generic.h's GENERIC_MAX_STRINGS: user-space strings copied per record */
const MAX_STRINGS = 2

export type { KernelFilter }

export interface TracepointRequest {
  category: string
  name: string
  filter: KernelFilter
  /** fields of the format holding user-space `char *` to copy as strings (at most 2) */
  strings?: string[]
}

export interface Capture {
  /** records the kernel could not put in the ring buffer */
  dropped(): number
  close(): void
}

function wildcard(pattern: string): RegExp {
  return new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replaceAll('*', '.*').replaceAll('?', '.')}$`)
}

/** The tracepoints an attach point names, `category:name` pairs, wildcards expanded. */
export function expandTracepoint(point: Extract<AttachPoint, { provider: 'tracepoint' }>, root = TRACEFS): [string, string][] {
  const categories = readdirSync(`${root}/events`, { withFileTypes: true }).filter((d) => d.isDirectory() && wildcard(point.category).test(d.name)).map((d) => d.name)
  const found = categories.flatMap((category) => readdirSync(`${root}/events/${category}`, { withFileTypes: true }).filter((d) => d.isDirectory() && wildcard(point.name).test(d.name)).map((d): [string, string] => [category, d.name]))
  if (found.length === 0) throw new BpftraceErrors([new BpftraceError(`No tracepoints matched ${point.category}:${point.name}`, point.loc)])
  return found.sort()
}

function usesBuiltin(nodes: (Expression | Statement | undefined)[], names: Set<string>): Expression | undefined {
  for (const node of nodes) {
    if (!node) continue
    if ('kind' in node && node.kind === 'builtin' && names.has(node.name)) return node
    const children = Object.values(node).flatMap((value) => (Array.isArray(value) ? value : [value])).filter((value): value is Expression => typeof value === 'object' && value !== null && 'kind' in value)
    const found = usesBuiltin(children, names)
    if (found) return found
  }
  return undefined
}

/** The format of each request, checked against what one generic object can copy. */
function requestFormats(requests: TracepointRequest[], root: string): TracepointFormat[] {
  if (requests.length > MAX_PROBES) throw new Error(`${requests.length} tracepoints requested; one generic object serves ${MAX_PROBES}: narrow the wildcards`)
  return requests.map((request) => {
    const format = readFormat(request.category, request.name, root)
    if (!format) throw new Error(`no tracepoint ${request.category}:${request.name} (no format file under ${root}/events): list them with \`ls ${root}/events/${request.category}\``)
    const strings = request.strings ?? []
    if (strings.length > MAX_STRINGS) throw new Error(`${request.category}:${request.name}: ${strings.length} string fields requested; the generic program copies at most ${MAX_STRINGS} per record`)
    for (const name of strings) {
      const field = format.fields.find((f) => f.name === name)
      if (!field || !field.type.includes('*') || field.size !== 8) throw new Error(`${request.category}:${request.name}: ${name} is not a pointer field of the format (fields: ${format.fields.map((f) => f.name).join(', ')})`)
    }
    if (request.filter.uid !== undefined) throw new Error(`${request.category}:${request.name}: a uid filter is not applied by the generic tracepoint program yet`)
    if (strings.length > 0) throw new Error(`${request.category}:${request.name}: strings are not copied by the generic tracepoint program yet`)
    return format
  })
}

/**
 * Attaches generic_tracepoint once per request (requests name distinct tracepoints); each
 * record as a TraceEvent (args decoded with the format, `strings` fields as strings), by
 * request index. This process is left out.
 */
export async function captureEvents(requests: TracepointRequest[], onEvent: (request: number, event: TraceEvent) => void, root = TRACEFS): Promise<Capture> {
  const formats = requestFormats(requests, root)
  const object = await ObjectSpec.open(`${libraryDir}generic.bpf.o`).load()
  const links: Link[] = []
  let reader: RingBufferReader | undefined
  const close = () => {
    reader?.close()
    for (const link of links) link.detach()
    object.close()
  }
  try {
    const config = object.map('probe_config')
    requests.forEach((request, index) => {
      const value = new Uint8Array(GENERIC_PROBE_CONFIG_SIZE)
      encodeGenericProbeConfig({ record_size: formats[index].recordSize, tgid: request.filter.pid ?? 0 }, new DataView(value.buffer), 0)
      config.update(new Uint8Array(new Uint32Array([index]).buffer), value)
    })
    reader = new RingBufferReader(object, 'events', {
      onBatch: (batch) => forEachRecord(batch, (view, offset, size) => {
        const record = decodeGenericRecord(view, offset, size)
        const index = Number(record.cookie)
        const { comm } = requests[index].filter
        if (comm !== undefined && record.comm !== comm) return
        onEvent(index, { pid: record.pid, tid: record.tid, uid: 0, gid: 0, comm: record.comm, cpu: record.cpu, nsecs: BigInt(record.timestamp_ns), args: decodeFields(formats[index], record.data) })
      }),
    })
    requests.forEach((request, index) => links.push(attachTracepoint(object, 'generic_tracepoint', request.category, request.name, { cookie: BigInt(index) })))
  } catch (error) {
    close()
    throw error
  }
  return { dropped: () => object.dropped(), close }
}

/** The filter every probe sharing a tracepoint agrees on: a field they differ on is dropped. */
function commonFilter(a: KernelFilter, b: KernelFilter): KernelFilter {
  const filter: KernelFilter = {}
  if (a.pid === b.pid && a.pid !== undefined) filter.pid = a.pid
  if (a.comm === b.comm && a.comm !== undefined) filter.comm = a.comm
  if (a.uid === b.uid && a.uid !== undefined) filter.uid = a.uid
  return filter
}

/** Attaches the program's tracepoint probes; `onEvent` gets each record as a `TraceEvent`. */
export async function captureTracepoints(checked: CheckedProgram, onEvent: (probe: number, event: TraceEvent) => void, root = TRACEFS): Promise<Capture> {
  // one request per tracepoint: the kernel attaches a program to a tracepoint once, so probes
  // naming the same tracepoint share its records, filtered by what their filters agree on
  const requests: (TracepointRequest & { probes: number[] })[] = []
  const byName = new Map<string, (typeof requests)[number]>()
  checked.program.probes.forEach((probe, index) => {
    const points = probe.attachPoints.filter((p): p is Extract<AttachPoint, { provider: 'tracepoint' }> => p.provider === 'tracepoint')
    if (points.length === 0) return
    const unrecorded = usesBuiltin([probe.predicate, ...probe.statements], new Set(['uid', 'gid']))
    if (unrecorded) throw new BpftraceErrors([new BpftraceError(`${(unrecorded as { name: string }).name} is not recorded by the generic tracepoint program yet`, unrecorded.loc)])
    const filter = kernelFilter(probe)
    for (const point of points) {
      for (const [category, name] of expandTracepoint(point, root)) {
        const known = byName.get(`${category}:${name}`)
        if (known) {
          if (!known.probes.includes(index)) known.probes.push(index)
          known.filter = commonFilter(known.filter, filter)
          continue
        }
        const request = { category, name, filter, probes: [index] }
        byName.set(`${category}:${name}`, request)
        requests.push(request)
      }
    }
  })
  // probes run in program order, as bpftrace's programs on one tracepoint do
  return captureEvents(requests, (request, event) => {
    for (const probe of requests[request].probes) onEvent(probe, event)
  }, root)
}
