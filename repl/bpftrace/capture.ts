/**
 * Feeds tracepoint probes from the kernel: one `generic.bpf.c` object, attached once to each
 * tracepoint, each with its own config slot (the attach cookie): the record size from the
 * tracefs format, the kernel-side pid/comm/uid filter, and the offsets of up to two `char *`
 * fields whose user-space strings the kernel copies with the record. Records are decoded with
 * the format into `TraceEvent`s.
 *
 * `captureEvents` takes the tracepoints and filters as requests (the REPL's `trace()`);
 * `captureTracepoints` derives them from a checked bpftrace program: wildcards expanded from
 * tracefs, filters from `kernelFilter()`, strings from the fields the probes pass to `str()`.
 * A record goes to every probe naming its tracepoint, in program order. Given the one-liner's
 * `KernelCountingAggregator`, tracepoints whose probes only count() are counted in the kernel
 * and send no records (kernel-count.ts).
 *
 * A request may ask for the kernel and user stacks of each event (a probe reading `kstack` or
 * `ustack`): they follow the strings in the record (bpf/include/event_stacks.h), the user stack
 * unwound and both named as profile samples' are (profile.ts), into the event's `kstack` and
 * `ustack`; a batch's stacks are named at once, then its events go out in order.
 *
 * This process is always left out (generic.bpf.c's `self_tgid`): a probe on a syscall it makes
 * to wake up for records (sys_exit_read: libuv reads its eventfd) would otherwise feed itself,
 * each record waking the reader, whose read is another record (measured before the setting:
 * 28,000 to 36,000 reads a second at 55% of a core, until killed).
 *
 * Not here: uprobe/uretprobe, profile and interval probes, BEGIN/END (the caller runs them).
 */
import { readdirSync } from 'node:fs'
import { decodeGenericRecord, GENERIC_RECORD_SIZE } from '../../bpf/lib/generic.types.ts'
import { forEachRecord, type RecordBatch } from '../../runtime/bpf/batch.ts'
import { attachTracepoint, type Link } from '../../runtime/bpf/links.ts'
import { ObjectSpec } from '../../runtime/bpf/object.ts'
import { checkTracepointRequest, encodeTracepointConfig, GENERIC_MAX_PROBES, GENERIC_MAX_STRINGS, TRACEFS, type KernelFilter, type TracepointRequest } from '../../runtime/kernel/tracepoints.ts'
import { GENERIC_STRING_SIZE, isDataLoc, tracepointEvent, type TracepointFormat } from '../../runtime/protocols/tracepoint.ts'
import { libraryDir } from '../../runtime/library/index.ts'
import { RingBufferReader } from '../../runtime/bpf/ringbuf.ts'
import type { AttachPoint, Expression, Location, Probe } from './ast.ts'
import { stacksRead, type CheckedProgram } from './check.ts'
import { BpftraceError, BpftraceErrors } from './errors.ts'
import type { TraceEvent } from './evaluate.ts'
import { configureCounts, countsEntries, countsMerger, planCounts, type KernelCountingAggregator, type SlotCounts } from './kernel-count.ts'
import { kernelFilter } from './kernel-filter.ts'
import { nameStacks, sampleStacks, stackFrames, type PendingStacks } from './profile.ts'

export type { KernelFilter, TracepointRequest }

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

/**
 * Attaches generic_tracepoint once per request (requests name distinct tracepoints); each
 * record as a TraceEvent (args decoded with the format, `strings` fields as strings), by
 * request index. This process is left out.
 */
export async function captureEvents(requests: TracepointRequest[], onEvent: (request: number, event: TraceEvent) => void, root = TRACEFS): Promise<Capture> {
  return openCapture(requests, requests.map((request) => checkTracepointRequest(request, root)), onEvent)
}

const hasStacks = (request: TracepointRequest): boolean => request.stacks?.kernel === true || request.stacks?.user === true

/** generic.h's GENERIC_STACKS_AT: where a record's stacks start in its data. */
const stacksAt = (size: number, strings: number): number => (size + strings * GENERIC_STRING_SIZE + 7) & ~7

/**
 * A batch handler for requests some of which carry stacks: each batch's events decoded, the
 * stacks of those that carry them named in one call, then every event handed on in order.
 */
function stackedBatches(requests: TracepointRequest[], formats: TracepointFormat[], onEvent: (request: number, event: TraceEvent) => void): (batch: RecordBatch) => void {
  const frames = stackFrames()
  return (batch) => {
    const events: { index: number; event: TraceEvent }[] = []
    const pending: PendingStacks[] = []
    forEachRecord(batch, (view, offset, size) => {
      const record = decodeGenericRecord(view, offset, size)
      const index = Number(record.cookie)
      const event: TraceEvent = tracepointEvent(formats[index], requests[index].strings ?? [], record)
      events.push({ index, event })
      if (hasStacks(requests[index])) pending.push({ event, ...sampleStacks(view, offset + GENERIC_RECORD_SIZE + stacksAt(record.size, record.strings), frames) })
    })
    nameStacks(pending)
    for (const { index, event } of events) onEvent(index, event)
  }
}

/** Where counting requests (`counts[i]` set) merge their kernel counts. */
interface Counting {
  counts: (SlotCounts | undefined)[]
  aggregator: KernelCountingAggregator
}

async function openCapture(requests: TracepointRequest[], formats: TracepointFormat[], onEvent: (request: number, event: TraceEvent) => void, counting?: Counting): Promise<Capture> {
  if (requests.length > GENERIC_MAX_PROBES) throw new Error(`${requests.length} tracepoints requested; one generic object serves ${GENERIC_MAX_PROBES}: narrow the wildcards`)
  const strings = requests.map((request) => request.strings ?? [])
  const object = await ObjectSpec.open(`${libraryDir}generic.bpf.o`).setSettings({ self_tgid: process.pid }).setMaxEntries('counts', countsEntries(counting?.counts ?? [])).load()
  const links: Link[] = []
  let reader: RingBufferReader | undefined
  let removeCounts: (() => void) | undefined
  let mergeCounts: (() => void) | undefined
  let closed = false
  // the probes go first, then what the ring buffer still holds is read: a Ctrl-C counts every
  // event made until the probes came off, as bpftrace's maps in the kernel do
  const close = () => {
    if (closed) return
    closed = true
    for (const link of links) link.detach()
    try {
      reader?.drain()
    } finally {
      reader?.close()
    }
    try {
      // detached: the last merge sees every event counted
      mergeCounts?.()
    } finally {
      removeCounts?.()
      object.close()
    }
  }
  try {
    const config = object.map('probe_config')
    requests.forEach((request, index) => config.update(new Uint8Array(new Uint32Array([index]).buffer), encodeTracepointConfig(request, formats[index])))
    if (counting) {
      configureCounts(object, counting.counts)
      mergeCounts = countsMerger(object, counting.counts, counting.aggregator)
      removeCounts = counting.aggregator.addKernelCounts(mergeCounts)
    }
    reader = new RingBufferReader(object, 'events', {
      onBatch: requests.some(hasStacks) ? stackedBatches(requests, formats, onEvent) : (batch) => forEachRecord(batch, (view, offset, size) => {
        const record = decodeGenericRecord(view, offset, size)
        const index = Number(record.cookie)
        onEvent(index, tracepointEvent(formats[index], strings[index], record))
      }),
    })
    requests.forEach((request, index) => links.push(attachTracepoint(object, 'generic_tracepoint', request.category, request.name, { cookie: BigInt(index) })))
  } catch (error) {
    mergeCounts = undefined
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

type ArgsField = Extract<Expression, { kind: 'field' }>

/**
 * The `args` fields a probe reads: through `str()` (the first such read of each name), and
 * otherwise (every other read).
 */
function argsReads(probe: Probe): { throughStr: Map<string, Location>; other: ArgsField[] } {
  const throughStr = new Map<string, Location>()
  const other: ArgsField[] = []
  const isArgs = (node: Expression): node is ArgsField => node.kind === 'field' && node.base.kind === 'builtin' && node.base.name === 'args'
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(visit)
    if (typeof node !== 'object' || node === null || !('kind' in node)) return
    const expression = node as Expression
    if (expression.kind === 'call' && expression.name === 'str' && expression.args[0] && isArgs(expression.args[0])) {
      if (!throughStr.has(expression.args[0].field)) throughStr.set(expression.args[0].field, expression.args[0].loc)
      return expression.args.slice(1).forEach(visit)
    }
    if (isArgs(expression)) other.push(expression)
    Object.values(node).forEach(visit)
  }
  visit([probe.predicate, ...probe.statements])
  return { throughStr, other }
}

/**
 * The fields of `format` the kernel copies as strings for these probes: the pointer fields they
 * pass to `str()`. Such a field arrives as its string, so a probe reading it as an address too
 * is refused.
 */
function stringFields(format: TracepointFormat, reads: ReturnType<typeof argsReads>[], where: string): string[] {
  const pointers = new Set(format.fields.filter((f) => f.type.includes('*')).map((f) => f.name))
  const fields = new Map<string, Location>()
  for (const { throughStr } of reads) for (const [name, loc] of throughStr) if (pointers.has(name) && !fields.has(name)) fields.set(name, loc)
  // a __data_loc field is a string however it is read (`args->filename` or `str(args->filename)`)
  const dataLocs = new Set(format.fields.filter(isDataLoc).map((f) => f.name))
  for (const { throughStr, other } of reads) {
    for (const [name, loc] of throughStr) if (dataLocs.has(name) && !fields.has(name)) fields.set(name, loc)
    for (const read of other) if (dataLocs.has(read.field) && !fields.has(read.field)) fields.set(read.field, read.loc)
  }
  const mixed = reads.flatMap(({ other }) => other).find((read) => fields.has(read.field) && !dataLocs.has(read.field))
  if (mixed) throw new BpftraceErrors([new BpftraceError(`args->${mixed.field} of ${where} is read through str() elsewhere, and arrives as the string the kernel copied: read it only through str()`, mixed.loc)])
  if (fields.size > GENERIC_MAX_STRINGS) throw new BpftraceErrors([new BpftraceError(`${where}: str() of ${fields.size} pointer fields (${[...fields.keys()].join(', ')}); the kernel copies at most ${GENERIC_MAX_STRINGS} strings per record`, [...fields.values()][GENERIC_MAX_STRINGS])])
  return [...fields.keys()]
}

/**
 * Attaches the program's tracepoint probes; `onEvent` gets each record as a `TraceEvent`. With
 * `counting`, a tracepoint whose probes only count, under a filter the kernel applies whole, is
 * counted in the kernel instead (kernel-count.ts): no records, the counts merged into `counting`
 * whenever it is printed or cleared, and when the capture closes.
 */
export async function captureTracepoints(checked: CheckedProgram, onEvent: (probe: number, event: TraceEvent) => void, root = TRACEFS, counting?: KernelCountingAggregator): Promise<Capture> {
  // one request per tracepoint: the kernel attaches a program to a tracepoint once, so probes
  // naming the same tracepoint share its records, filtered by what their filters agree on
  const requests: (TracepointRequest & { probes: number[] })[] = []
  const byName = new Map<string, (typeof requests)[number]>()
  const reads = checked.program.probes.map(argsReads)
  checked.program.probes.forEach((probe, index) => {
    const points = probe.attachPoints.filter((p): p is Extract<AttachPoint, { provider: 'tracepoint' }> => p.provider === 'tracepoint')
    const filter = kernelFilter(probe)
    for (const point of points) {
      for (const [category, name] of expandTracepoint(point, root)) {
        const known = byName.get(`${category}:${name}`)
        if (known) {
          if (!known.probes.includes(index)) known.probes.push(index)
          known.filter = commonFilter(known.filter, filter)
          continue
        }
        const request: (typeof requests)[number] = { category, name, filter, probes: [index] }
        byName.set(`${category}:${name}`, request)
        requests.push(request)
      }
    }
  })
  const formats = requests.map((request) => checkTracepointRequest(request, root))
  requests.forEach((request, index) => { request.strings = stringFields(formats[index], request.probes.map((probe) => reads[probe]), `${request.category}:${request.name}`) })
  // the stacks any probe on the tracepoint reads; a probe reading neither costs nothing
  const stacks = checked.program.probes.map(stacksRead)
  for (const request of requests) {
    const kernel = request.probes.some((probe) => stacks[probe].kernel)
    const user = request.probes.some((probe) => stacks[probe].user)
    if (kernel || user) request.stacks = { kernel, user }
  }
  const counts = counting ? planCounts(checked, requests.map((request, index) => ({ ...request, format: formats[index] }))) : []
  // probes run in program order, as bpftrace's programs on one tracepoint do
  return openCapture(requests, formats, (request, event) => {
    for (const probe of requests[request].probes) onEvent(probe, event)
  }, counting && { counts, aggregator: counting })
}
