/**
 * `profile:hz:N` (and `profile:s|ms|us:N`) probes: the `stacks` object's perf_event program
 * (bpf/lib/stacks.bpf.c) attached on every CPU, one object per attach point, each sample a
 * `TraceEvent` carrying its user stack (unwound here from the copied stack with each binary's
 * .eh_frame, frame pointers where a file has none: runtime/profiling/unwind.ts) and its kernel
 * stack, both named by the runtime's Symbolizer.
 *
 * Where this differs from bpftrace 0.17: bpftrace walks user stacks by frame pointers only, so
 * in code built without them it skips or loses frames, and it stops where libc's start code has
 * none (at `__libc_start_call_main`); the stacks here go on to `__libc_start_main_impl` and
 * `_start`. The idle task is not sampled (stacks.bpf.c leaves it out), and a sample has no
 * uid/gid of its own: they are read from /proc once per process.
 * `pid ==`, `comm ==` and `uid ==` filters are applied in the kernel (the object's target_tgid,
 * target_comm_* and target_uid settings), before a sample is taken; the rest in user space.
 */
import { readFileSync } from 'node:fs'
import { forEachRecord } from '../../runtime/bpf/batch.ts'
import { attachPerfEvent, type Link } from '../../runtime/bpf/links.ts'
import { ObjectSpec, type LoadedObject } from '../../runtime/bpf/object.ts'
import { RingBufferReader } from '../../runtime/bpf/ringbuf.ts'
import { libraryDir } from '../../runtime/library/index.ts'
import { profiling } from '../../runtime/profiling/stack-delivery.ts'
import { SAMPLE_COMM, SAMPLE_COMM_BYTES, SAMPLE_CPU, SAMPLE_KERNEL, SAMPLE_KERNEL_FRAMES, SAMPLE_PID, SAMPLE_TID, SAMPLE_TIMESTAMP } from '../../runtime/profiling/unwind.ts'
import type { Frame } from '../../runtime/symbols/symbolizer.ts'
import type { AttachPoint } from './ast.ts'
import type { Capture } from './capture.ts'
import type { CheckedProgram } from './check.ts'
import { BpftraceError, BpftraceErrors } from './errors.ts'
import type { StackFrame, TraceEvent } from './evaluate.ts'
import { kernelFilter, type KernelFilter } from './kernel-filter.ts'

type ProfilePoint = Extract<AttachPoint, { provider: 'profile' }>

/** bpftrace 0.17 keeps 127 frames of a stack (the kernel's perf_event_max_stack). */
export const MAX_STACK_FRAMES = 127
/** Bytes of user stack copied per sample: stacks.bpf.c's default, enough for deep C stacks. */
const STACK_BYTES = 8192

/** The perf_event sampling of an attach point: a frequency for hz, a cpu-clock period in ns otherwise. */
function sampling(point: ProfilePoint): { frequency: number } | { period: number } {
  if (point.value <= 0) throw new BpftraceErrors([new BpftraceError(`profile probe rate must be positive (${point.value} given)`, point.loc)])
  switch (point.unit) {
    case 'hz': return { frequency: point.value }
    case 's': return { period: point.value * 1e9 }
    case 'ms': return { period: point.value * 1e6 }
    case 'us': return { period: point.value * 1e3 }
  }
}

/** stacks.bpf.c's settings for a probe's `comm ==` and `uid ==` filters, applied before a sample is taken. */
function kernelTaskFilter(filter: KernelFilter): Record<string, bigint | number | boolean> {
  const settings: Record<string, bigint | number | boolean> = {}
  if (filter.uid !== undefined) Object.assign(settings, { target_uid: filter.uid, target_uid_set: true })
  if (filter.comm !== undefined) {
    // the kernel's 16 bytes of a task's name, NUL-padded, compared as two words
    const comm = Buffer.alloc(16)
    comm.write(filter.comm)
    Object.assign(settings, { target_comm_lo: comm.readBigUInt64LE(0), target_comm_hi: comm.readBigUInt64LE(8), target_comm_set: true })
  }
  return settings
}

/** uid and gid of a process, read once: a sample does not carry them. */
const owners = new Map<number, { uid: number; gid: number }>()
function ownerOf(pid: number): { uid: number; gid: number } {
  let owner = owners.get(pid)
  if (owner === undefined) {
    owner = { uid: 0, gid: 0 }
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8')
      owner.uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1] ?? 0)
      owner.gid = Number(/^Gid:\s+(\d+)/m.exec(status)?.[1] ?? 0)
    } catch {
      // the process is gone: its samples keep uid 0, as a filter on uid cannot match it anyway
    }
    if (owners.size > 4096) owners.clear()
    owners.set(pid, owner)
  }
  return owner
}

function stackFrame(frame: Frame): StackFrame {
  return {
    address: frame.address,
    // a dynamic symbol's version (`@@GLIBC_2.34`) is not part of the name bpftrace prints
    symbol: frame.function === undefined ? `0x${frame.address.toString(16)}` : `${frame.function.replace(/@.*$/, '')}+${frame.functionOffset}`,
    module: frame.function === undefined && frame.module === '[anon]' ? '[unknown]' : frame.module,
  }
}

/** An event read from a ring, and its stacks' addresses to name. */
export interface PendingStacks {
  event: TraceEvent
  user: bigint[]
  kernel: bigint[]
}

/**
 * The stacks of a struct stack_sample at `offset` (a profile sample, or the stacks a tracepoint
 * or uprobe record carries: bpf/include/event_stacks.h): the user stack unwound, the kernel
 * stack's addresses, each cut to bpftrace's frame limit. `frames` is the unwinder's scratch.
 */
export function sampleStacks(view: DataView, offset: number, frames: Float64Array): { user: bigint[]; kernel: bigint[] } {
  const userFrames = Math.min(profiling().delivery.unwinder.unwindSample(view, offset, frames), MAX_STACK_FRAMES)
  const kernelFrames = Math.min(view.getUint32(offset + SAMPLE_KERNEL_FRAMES, true), MAX_STACK_FRAMES)
  const user = new Array<bigint>(userFrames)
  for (let i = 0; i < userFrames; i++) user[i] = BigInt(frames[i]!)
  const kernel = new Array<bigint>(kernelFrames)
  for (let i = 0; i < kernelFrames; i++) kernel[i] = view.getBigUint64(offset + SAMPLE_KERNEL + 8 * i, true)
  return { user, kernel }
}

/** A scratch for `sampleStacks`: room for one more frame than bpftrace keeps. */
export const stackFrames = (): Float64Array => new Float64Array(MAX_STACK_FRAMES + 1)

/** Decodes one stack_sample record: its thread and its stacks' addresses, the user one unwound. */
function decodeSample(view: DataView, offset: number, frames: Float64Array): PendingStacks {
  const pid = view.getUint32(offset + SAMPLE_PID, true)
  const comm = Buffer.from(view.buffer, view.byteOffset + offset + SAMPLE_COMM, SAMPLE_COMM_BYTES)
  const end = comm.indexOf(0)
  const { uid, gid } = ownerOf(pid)
  return {
    event: {
      pid, tid: view.getUint32(offset + SAMPLE_TID, true), uid, gid,
      comm: comm.toString('utf8', 0, end < 0 ? SAMPLE_COMM_BYTES : end),
      cpu: view.getUint32(offset + SAMPLE_CPU, true),
      nsecs: view.getBigUint64(offset + SAMPLE_TIMESTAMP, true),
    },
    ...sampleStacks(view, offset, frames),
  }
}

/**
 * Stacks named already, by pid and addresses (user) or addresses (kernel): the events of a
 * one-liner mostly repeat a few stacks, and naming one costs more than unwinding it (bench/
 * repl-stacks.bench.ts). Emptied at each sweep, once a second, so a process that execs or maps
 * other code at the same addresses is named afresh within a second, and when it holds
 * NAMED_STACKS (as many distinct stacks a second cost more than they save). Frozen: events share them.
 */
const NAMED_STACKS = 10_000
const named = { user: new Map<string, readonly StackFrame[]>(), kernel: new Map<string, readonly StackFrame[]>() }
const NONE: readonly StackFrame[] = Object.freeze([])

/**
 * Names the stacks of a batch of events into their `ustack` and `kstack`, those not named before
 * in one Symbolizer call: it re-reads a process's mappings at most once a call, so a call per
 * event would re-read them for every event with an address it does not know (JIT code).
 */
export function nameStacks(pending: PendingStacks[]): void {
  if (pending.length === 0) return
  const { symbolizer } = profiling()
  const unnamed: { sample: PendingStacks; key: string }[] = []
  for (const sample of pending) {
    const key = `${sample.event.pid}:${sample.user.join(',')}`
    const known = named.user.get(key)
    if (known !== undefined) sample.event.ustack = known
    else unnamed.push({ sample, key })
    sample.event.kstack = sample.kernel.length === 0 ? NONE : kernelStack(sample.kernel)
  }
  if (unnamed.length > 0) {
    const user = symbolizer.symbolize(unnamed.map(({ sample }) => ({ pid: sample.event.pid, addresses: sample.user })))
    unnamed.forEach(({ sample, key }, i) => {
      // the same stack twice in one batch: both get the first naming
      const frames = named.user.get(key) ?? Object.freeze(user[i]!.map(stackFrame))
      named.user.set(key, frames)
      sample.event.ustack = frames
    })
  }
  // exited processes leave the caches, checked once a second rather than once a batch
  const now = Date.now()
  const sweep = now - lastSweep >= 1000
  if (sweep) {
    lastSweep = now
    symbolizer.sweep()
  }
  if (sweep || named.user.size > NAMED_STACKS || named.kernel.size > NAMED_STACKS) {
    named.user.clear()
    named.kernel.clear()
  }
}
let lastSweep = 0

function kernelStack(addresses: bigint[]): readonly StackFrame[] {
  const key = addresses.join(',')
  let frames = named.kernel.get(key)
  if (frames === undefined) {
    frames = Object.freeze(profiling().symbolizer.symbolizeKernel(addresses).map(stackFrame))
    named.kernel.set(key, frames)
  }
  return frames
}

/**
 * Reads this process's own binary's symbols before sampling starts, when it is sampled: the
 * first samples of a one-liner are mostly of this process (it is starting), and naming node's
 * 105,000 functions at the first batch stalled reading long enough for the ring to fill (on a
 * busy 2-CPU host at 99 Hz: 116-124 samples lost in the first second, 52-74 with this; the rest
 * is the first unwinding through node's and libc's .eh_frame and demangling node's names).
 */
function warmUp(): void {
  const text = readFileSync('/proc/self/maps', 'utf8').split('\n').find((line) => line.includes(' r-xp ') && line.endsWith(process.execPath))
  if (text === undefined) return
  const start = BigInt(`0x${text.slice(0, text.indexOf('-'))}`)
  profiling().symbolizer.symbolize([{ pid: process.pid, addresses: [start], returnAddresses: false }])
}

/**
 * Attaches the program's profile probes; `onEvent` gets each sample as a `TraceEvent` with
 * `ustack` and `kstack`, also from `close()`, which reads what the ring buffers still hold once
 * sampling has stopped. Undefined when the program has none.
 */
export async function captureProfiles(checked: CheckedProgram, onEvent: (probe: number, event: TraceEvent) => void): Promise<Capture | undefined> {
  const points = checked.program.probes.flatMap((probe, index) => probe.attachPoints
    .filter((p): p is ProfilePoint => p.provider === 'profile')
    .map((point) => ({ index, point, filter: kernelFilter(probe), sampling: sampling(point) })))
  if (points.length === 0) return undefined
  const objects: LoadedObject[] = []
  const readers: RingBufferReader[] = []
  const links: Link[] = []
  const frames = stackFrames()
  if (points.some(({ filter }) => filter.pid === undefined || filter.pid === process.pid)) warmUp()
  const close = () => {
    for (const link of links) link.detach()
    for (const reader of readers) {
      reader.drain()
      reader.close()
    }
    for (const object of objects) object.close()
  }
  try {
    for (const { index, point, filter, sampling } of points) {
      const spec = ObjectSpec.open(`${libraryDir}stacks.bpf.o`)
      // woken at every sample: a one-liner's printf shows each sample as it comes
      spec.setSettings({ target_tgid: filter.pid ?? 0, stack_bytes: STACK_BYTES, wakeup_bytes: 0, ...kernelTaskFilter(filter) })
      const object = await spec.load()
      objects.push(object)
      readers.push(new RingBufferReader(object, 'samples', {
        onBatch: (batch) => {
          const samples: PendingStacks[] = []
          forEachRecord(batch, (view, offset) => { samples.push(decodeSample(view, offset, frames)) })
          nameStacks(samples)
          for (const sample of samples) onEvent(index, sample.event)
        },
      }))
      try {
        links.push(...attachPerfEvent(object, 'on_cpu_sample', sampling))
      } catch (error) {
        throw new BpftraceErrors([new BpftraceError(`cannot sample the CPUs for this probe: ${(error as Error).message}`, point.loc)])
      }
    }
  } catch (error) {
    close()
    throw error
  }
  return { dropped: () => objects.reduce((sum, object) => sum + object.dropped(), 0), close }
}
