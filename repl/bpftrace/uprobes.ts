/**
 * Feeds a checked program's `uprobe:/path:symbol` and `uretprobe:/path:symbol` probes from the
 * kernel: one `generic_uprobe.bpf.c` object, its uprobe or uretprobe program attached at every
 * function a probe names (wildcards expanded from the binary's ELF symbol tables), each with
 * its own config slot (the attach cookie): the kernel-side pid filter from `kernelFilter()`,
 * and this process left out. Records become `TraceEvent`s with the argument registers
 * (`arg0`..`arg5`) or the return value (`retval`), handed to `onEvent(probeIndex, event)`.
 * A probe reading `ustack` or `kstack` gets the hit's stacks too (bpf/include/event_stacks.h),
 * unwound and named as profile samples' are (profile.ts); a batch's stacks are named at once.
 *
 * A path without a `/` is looked up in $PATH, as bpftrace does for programs, and else as a
 * library name (`uprobe:libc:malloc`: the first `libc.so*` of the loader's cache, x86-64 ones
 * first, as bpftrace 0.17 finds it). A missing binary, a missing symbol or a wildcard matching
 * nothing is an error located at the attach point. Not here: `arg6` and above (read from the
 * stack by bpftrace; zero here).
 */
import { spawnSync } from 'node:child_process'
import { accessSync, constants, existsSync, statSync } from 'node:fs'
import { delimiter, join } from 'node:path'
import { decodeGenericUprobeRecord, GENERIC_UPROBE_RECORD_SIZE } from '../../bpf/lib/generic_uprobe.types.ts'
import { forEachRecord, type RecordBatch } from '../../runtime/bpf/batch.ts'
import { attachUprobe, type Link } from '../../runtime/bpf/links.ts'
import { encodeUprobeConfig, GENERIC_UPROBE_MAX_PROBES } from '../../runtime/kernel/generic-uprobes.ts'
import { uprobeEvent } from '../../runtime/protocols/uprobe-events.ts'
import { ObjectSpec } from '../../runtime/bpf/object.ts'
import { RingBufferReader } from '../../runtime/bpf/ringbuf.ts'
import { EVENT_STACK_KERNEL, EVENT_STACK_USER } from '../../runtime/kernel/tracepoints.ts'
import { libraryDir } from '../../runtime/library/index.ts'
import { ElfError, ElfFile } from '../../runtime/symbols/elf.ts'
import type { AttachPoint } from './ast.ts'
import type { Capture } from './capture.ts'
import { stacksRead, type CheckedProgram } from './check.ts'
import { BpftraceError, BpftraceErrors } from './errors.ts'
import type { TraceEvent } from './evaluate.ts'
import { kernelFilter } from './kernel-filter.ts'
import { nameStacks, sampleStacks, stackFrames, type PendingStacks } from './profile.ts'


type UprobePoint = Extract<AttachPoint, { provider: 'uprobe' | 'uretprobe' }>

export function isUprobe(point: AttachPoint): point is UprobePoint {
  return point.provider === 'uprobe' || point.provider === 'uretprobe'
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK)
    return statSync(path).isFile()
  } catch {
    return false
  }
}

/** The loader's cache (`ldconfig -p`): each library's name and path, x86-64 ones first; read once. */
let loaderCache: { name: string; path: string }[] | undefined

function cachedLibraries(): { name: string; path: string }[] {
  if (loaderCache !== undefined) return loaderCache
  const listing = spawnSync('ldconfig', ['-p'], { encoding: 'utf8', env: { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin` } })
  const entries = [...(listing.stdout ?? '').matchAll(/^\s+(\S+) \(([^)]*)\) => (\S+)$/gm)].map(([, name, flags, path]) => ({ name: name!, path: path!, native: flags!.includes('x86-64') }))
  loaderCache = [...entries.filter((e) => e.native), ...entries.filter((e) => !e.native)].map(({ name, path }) => ({ name, path }))
  return loaderCache
}

/** A library name's file (`libc` → /lib/x86_64-linux-gnu/libc.so.6), as bpftrace finds it. */
function libraryPath(name: string): string | undefined {
  const prefix = `lib${name.replace(/^lib/, '')}.so`
  return cachedLibraries().find((library) => library.name.startsWith(prefix) && existsSync(library.path))?.path
}

/** The binary a probe names: a path, a program name looked up in $PATH, or a library name. */
function resolveBinary(point: UprobePoint): string {
  const candidates = point.path.includes('/') ? [point.path] : (process.env.PATH ?? '').split(delimiter).filter(Boolean).map((dir) => join(dir, point.path))
  const found = candidates.find(executable) ?? (point.path.includes('/') ? undefined : libraryPath(point.path))
  if (!found) throw new BpftraceErrors([new BpftraceError(`uprobe target file '${point.path}' does not exist or is not executable`, point.loc)])
  return found
}

function wildcard(pattern: string): RegExp {
  return new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replaceAll('*', '.*').replaceAll('?', '.')}$`)
}

/** The functions an attach point names: the binary's path, and each function's name and file offset. */
export function expandUprobe(point: UprobePoint): { path: string; functions: { symbol: string; offset: number }[] } {
  const path = resolveBinary(point)
  let elf: ElfFile
  try {
    elf = ElfFile.open(path)
  } catch (error) {
    throw new BpftraceErrors([new BpftraceError(`cannot read the symbols of ${path}: ${(error as Error).message}`, point.loc)])
  }
  try {
    if (!/[*?]/.test(point.symbol)) return { path, functions: [{ symbol: point.symbol, offset: elf.functionSymbol(point.symbol).fileOffset }] }
    const pattern = wildcard(point.symbol)
    const table = elf.functionTable()
    const functions: { symbol: string; offset: number }[] = []
    for (let i = 0; i < table.size; i++) {
      const symbol = table.name(i)
      // PLT stubs (`malloc@plt`) are calls out of the binary, not its functions
      if (!symbol.includes('@') && pattern.test(symbol)) functions.push({ symbol, offset: elf.fileOffset(BigInt(table.start(i))) })
    }
    if (functions.length === 0) throw new BpftraceErrors([new BpftraceError(`no function of ${path} matches ${point.symbol}`, point.loc)])
    return { path, functions: functions.sort((a, b) => (a.symbol < b.symbol ? -1 : a.symbol > b.symbol ? 1 : 0)) }
  } catch (error) {
    if (error instanceof ElfError) throw new BpftraceErrors([new BpftraceError(error.message, point.loc)])
    throw error
  } finally {
    elf.close()
  }
}

interface Slot {
  probe: number
  retprobe: boolean
  path: string
  symbol: string
  offset: number
  tgid: number
  /** EVENT_STACK_KERNEL and EVENT_STACK_USER: the stacks the probe reads */
  stacks: number
}

function slotsOf(checked: CheckedProgram): Slot[] {
  const slots: Slot[] = []
  checked.program.probes.forEach((probe, index) => {
    const tgid = kernelFilter(probe).pid ?? 0
    const read = stacksRead(probe)
    const stacks = (read.kernel ? EVENT_STACK_KERNEL : 0) | (read.user ? EVENT_STACK_USER : 0)
    for (const point of probe.attachPoints.filter(isUprobe)) {
      const { path, functions } = expandUprobe(point)
      for (const { symbol, offset } of functions) slots.push({ probe: index, retprobe: point.provider === 'uretprobe', path, symbol, offset, tgid, stacks })
    }
  })
  if (slots.length > GENERIC_UPROBE_MAX_PROBES) throw new Error(`the program names ${slots.length} functions; one generic uprobe object serves ${GENERIC_UPROBE_MAX_PROBES}: narrow the wildcards`)
  return slots
}

/** A uprobe record at `offset` as a TraceEvent, and the slot it came from. */
function decodeHit(slots: Slot[], view: DataView, offset: number, size: number): { slot: Slot; event: TraceEvent } {
  const record = decodeGenericUprobeRecord(view, offset, size)
  const slot = slots[Number(record.cookie)]
  return { slot, event: uprobeEvent(record, slot.retprobe) }
}

/**
 * What handles a batch of records: each hit handed on as it is decoded, or, when some probe
 * reads stacks, the batch's stacks named in one call first, then every hit handed on in order.
 */
function batchHandler(slots: Slot[], onEvent: (probe: number, event: TraceEvent) => void): (batch: RecordBatch) => void {
  if (slots.every((slot) => slot.stacks === 0)) {
    return (batch) => forEachRecord(batch, (view, offset, size) => {
      const { slot, event } = decodeHit(slots, view, offset, size)
      onEvent(slot.probe, event)
    })
  }
  const frames = stackFrames()
  return (batch) => {
    const events: { probe: number; event: TraceEvent }[] = []
    const pending: PendingStacks[] = []
    forEachRecord(batch, (view, offset, size) => {
      const { slot, event } = decodeHit(slots, view, offset, size)
      if (slot.stacks !== 0) pending.push({ event, ...sampleStacks(view, offset + GENERIC_UPROBE_RECORD_SIZE, frames) })
      events.push({ probe: slot.probe, event })
    })
    nameStacks(pending)
    for (const { probe, event } of events) onEvent(probe, event)
  }
}

/**
 * Attaches the program's uprobe and uretprobe probes; `onEvent` gets each hit as a
 * `TraceEvent`, also from `close()`, which delivers what the ring buffer still holds once the
 * probes are off. Undefined when the program has none.
 */
export async function captureUprobes(checked: CheckedProgram, onEvent: (probe: number, event: TraceEvent) => void): Promise<Capture | undefined> {
  const slots = slotsOf(checked)
  if (slots.length === 0) return undefined
  const object = await ObjectSpec.open(`${libraryDir}generic_uprobe.bpf.o`).load()
  const links: Link[] = []
  let reader: RingBufferReader | undefined
  // the probes go first, then what the ring buffer still holds is read: a Ctrl-C counts every
  // call made until the probes came off, as bpftrace's maps in the kernel do
  const close = () => {
    for (const link of links) link.detach()
    reader?.drain()
    reader?.close()
    object.close()
  }
  try {
    const config = object.map('probe_config')
    slots.forEach((slot, index) => {
      config.update(new Uint8Array(new Uint32Array([index]).buffer), encodeUprobeConfig(slot.tgid, process.pid, slot.stacks))
    })
    reader = new RingBufferReader(object, 'events', { onBatch: batchHandler(slots, onEvent) })
    slots.forEach((slot, index) => links.push(attachUprobe(object, slot.retprobe ? 'generic_uretprobe' : 'generic_uprobe', slot.path, { retprobe: slot.retprobe, offset: slot.offset, cookie: BigInt(index) })))
  } catch (error) {
    close()
    throw error
  }
  return { dropped: () => object.dropped(), close }
}
