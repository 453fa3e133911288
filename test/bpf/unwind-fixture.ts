/**
 * Shared by the unwinding tests: samples a process with bpf/lib/stacks.bpf.o on the real kernel,
 * and names the frames of a binary with a minimal symbol lookup (nm), independent of the
 * unwinder under test.
 */
import { execFileSync } from 'node:child_process'
import { forEachRecord } from '../../runtime/bpf/batch.ts'
import { attachPerfEvent } from '../../runtime/bpf/links.ts'
import { ObjectSpec, type LoadedObject } from '../../runtime/bpf/object.ts'
import { RingBufferReader } from '../../runtime/bpf/ringbuf.ts'
import { ElfFile } from '../../runtime/symbols/elf.ts'
import { ProcessMappings } from '../../runtime/symbols/mappings.ts'
import { pollUntil } from '../peers/poll.ts'
import { objectPath } from './kernel.ts'

/** One sample's record, copied out of the ring buffer batch. */
export type SampleRecord = DataView

export interface SampleOptions {
  /** stacks.bpf.c's stack_bytes. */
  stackBytes: number
  /** stacks.bpf.c's wakeup_bytes (0, the default: woken at every sample). */
  wakeupBytes?: number
  /** Samples to wait for. */
  count: number
  /** Per CPU, Hz (99 by default). */
  frequency?: number
  timeoutMs?: number
  /** Called once the program is attached (to start a load, or a second profiler). */
  whileSampling?: () => void
}

export interface Sampled {
  records: SampleRecord[]
  /** Records the ring buffer had no room for. */
  dropped: number
  /** The program's runs and run time, while the kernel's BPF stats were on (0 otherwise). */
  programRuns: number
  programRunTimeNs: number
}

/**
 * Samples process `pid` at `frequency` Hz on every CPU until `count` samples arrived (or the
 * timeout passed) with `stackBytes` of stack each.
 */
export async function sampleProcess(pid: number, options: SampleOptions): Promise<Sampled> {
  const spec = ObjectSpec.open(objectPath('stacks'))
  spec.setSettings({ target_tgid: pid, stack_bytes: options.stackBytes, wakeup_bytes: options.wakeupBytes ?? 0 })
  const object = await spec.load()
  try {
    return await collect(object, pid, options)
  } finally {
    object.close()
  }
}

async function collect(object: LoadedObject, pid: number, options: SampleOptions): Promise<Sampled> {
  const records: SampleRecord[] = []
  const reader = new RingBufferReader(object, 'samples', {
    onBatch: (batch) => forEachRecord(batch, (view, offset, size) => {
      records.push(new DataView(view.buffer.slice(view.byteOffset + offset, view.byteOffset + offset + size)))
    }),
  })
  const links = attachPerfEvent(object, 'on_cpu_sample', { frequency: options.frequency ?? 99 })
  try {
    options.whileSampling?.()
    await pollUntil(() => {
      reader.drain()
      return records.length >= options.count
    }, { what: `${options.count} CPU samples of process ${pid} (the machine may be busy)`, timeoutMs: options.timeoutMs ?? 180_000, intervalMs: 100 })
  } finally {
    for (const link of links) link.detach()
    reader.drain()
    reader.close()
  }
  const [stats] = object.programStats()
  return { records, dropped: object.dropped(), programRuns: stats?.runCount ?? 0, programRunTimeNs: stats?.runTimeNs ?? 0 }
}

/** Function symbols of an ELF file (nm), as file-offset ranges: what a mapping's offset is measured in. */
export function functionRanges(path: string, dynamic = false): { name: string; start: number; end: number }[] {
  const elf = ElfFile.open(path)
  try {
    return execFileSync('nm', ['--defined-only', '-S', ...(dynamic ? ['-D'] : []), path], { encoding: 'utf8' }).split('\n').flatMap((line) => {
      const [address, size, type, name] = line.split(' ')
      if (name === undefined || !/^[tTwW]$/.test(type!)) return []
      const start = elf.fileOffset(BigInt(`0x${address}`))
      return [{ name, start, end: start + parseInt(size!, 16) }]
    })
  } finally {
    elf.close()
  }
}

/**
 * Names each frame of a process: a function of `binary` (by nm), else the basename of the file
 * mapping it. Frames after the first are return addresses: looked up one byte back, in the call.
 */
export function frameNamer(pid: number, binary: string, functions = functionRanges(binary)): (frames: ArrayLike<number>) => string[] {
  const mappings = ProcessMappings.read(pid)
  return (frames) => Array.from(frames, (pc, i) => {
    const mapping = mappings.find(pc)
    if (mapping === undefined) return `?0x${pc.toString(16)}`
    const offset = pc - (i === 0 ? 0 : 1) - Number(mapping.start) + Number(mapping.offset)
    if (mapping.path === binary) return functions.find((f) => offset >= f.start && offset < f.end)?.name ?? `${binary}+0x${offset.toString(16)}`
    return mapping.path === '' ? mapping.kind : mapping.path.split('/').pop()!
  })
}
