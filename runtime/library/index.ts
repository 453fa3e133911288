/**
 * Opens catalogue objects for the runtime: loads bpf/lib/<name>.bpf.o with its settings,
 * follows the attach plan, and serves its streams (ring/perf buffers) and maps. This is the
 * ObjectProvider the bus (runtime/bus.ts) shares among plugins.
 */
import { statSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { RecordBatch } from '../bpf/batch.ts'
import { attachKprobe, attachPerfEvent, attachRawTracepoint, attachTracepoint, attachTracing, attachUprobe, attachUprobeReturns, runIterator, UPROBE_MULTI_ATTACH_TYPE, type Link } from '../bpf/links.ts'
import { ObjectSpec, type LoadedObject, type Setting } from '../bpf/object.ts'
import type { BpfMap } from '../bpf/maps.ts'
import { probeAttach, settleAttachProbes } from '../bpf/features.ts'
import { PerfBufferReader, RingBufferReader } from '../bpf/ringbuf.ts'
import { uprobeKind } from '../holds.ts'
import { capabilitiesForProgramType, explainPermissionDenied } from '../privileges.ts'
import { catalogue, planAttach, type AttachSpec, type PlanOptions } from './catalogue.ts'

export interface UprobeAttachOptions {
  symbol: string
  retprobe: boolean
  pid?: number
  /** Where in the function: its entry (the default) or each of its return instructions. */
  at?: 'entry' | 'returns'
  /** The BPF cookie the program reads (bpf_get_attach_cookie), at the entry only. */
  cookie?: bigint
}

export const libraryDir = fileURLToPath(new URL('../../bpf/lib/', import.meta.url))

export interface LibraryMap {
  lookup(key: Uint8Array): Uint8Array | undefined
  update(key: Uint8Array, value: Uint8Array): void
  delete(key: Uint8Array): boolean
  entries(): Iterable<[Uint8Array, Uint8Array]>
  readonly keySize: number
  readonly valueSize: number
}

type Reader = RingBufferReader | PerfBufferReader

export class LibraryObject {
  readonly name: string
  readonly streams: readonly string[]
  readonly object: LoadedObject
  readonly #links: Link[]
  readonly #readers = new Map<string, Reader>()
  readonly #subscribers = new Map<string, Set<(batch: RecordBatch) => void>>()
  readonly #log: (message: string) => void
  /** The catalogue's pacedStreams: how often each is read. */
  readonly #paced: Readonly<Record<string, number>>
  #dropped: BpfMap | null | undefined

  constructor(name: string, object: LoadedObject, links: Link[], log: (message: string) => void, paced: Readonly<Record<string, number>> = {}) {
    this.name = name
    this.object = object
    this.#links = links
    this.#paced = paced
    this.#log = log
    this.streams = object.maps().filter((m) => m.type === 'ringbuf' || m.type === 'perf_event_array').map((m) => m.name)
  }

  /** Starts delivering one stream's batches. Records wait in the kernel buffer while nobody listens. */
  subscribe(stream: string, onBatch: (batch: RecordBatch) => void): () => void {
    if (!this.streams.includes(stream)) throw new Error(`object ${this.name} has no stream "${stream}"; it has: ${this.streams.join(', ') || 'none'}`)
    let subscribers = this.#subscribers.get(stream)
    if (subscribers === undefined) {
      subscribers = new Set()
      this.#subscribers.set(stream, subscribers)
    }
    const set = subscribers
    set.add(onBatch)
    let reader = this.#readers.get(stream)
    if (reader === undefined) {
      const deliver = (batch: RecordBatch) => deliverToEach(set, batch)
      // the reader's error names the stream; its cause is what a subscriber threw, whose stack
      // is the only pointer to the faulty code
      const onError = (error: Error) => this.#log(describeWithCauses(error))
      const type = this.object.map(stream).info.type
      reader = type === 'ringbuf'
        ? new RingBufferReader(this.object, stream, { onBatch: deliver, onError, idleDrainMs: this.#paced[stream] })
        : new PerfBufferReader(this.object, stream, { onBatch: deliver, onError })
      this.#readers.set(stream, reader)
    } else if (set.size === 1) {
      reader.resume()
    }
    const active = reader
    return () => {
      set.delete(onBatch)
      if (set.size === 0) active.pause()
    }
  }

  /** Delivers, synchronously, what the kernel buffers of the subscribed streams hold now. */
  drainStreams(): void {
    for (const [stream, reader] of this.#readers) if ((this.#subscribers.get(stream)?.size ?? 0) > 0) reader.drain()
  }

  map(name: string): LibraryMap {
    return this.object.map(name)
  }

  links(): { id: number; program: string; attach: string }[] {
    return this.#links.filter((l) => l.info().attached).map((l) => ({ id: l.id, program: l.program, attach: l.target }))
  }

  programTypes(): string[] {
    return this.object.programs().flatMap((p) => (p.type === null ? [] : [p.type]))
  }

  programs(): { name: string; section: string }[] {
    return this.object.programs()
  }

  programStats(): { name: string; id: number; runTimeNs: number; runCount: number }[] {
    return this.object.programStats()
  }

  /**
   * A uprobe attached on demand (plugins' ctx.attach), at the function's entry or, `at: 'returns'`,
   * at each of its return instructions (`returns` says how many; one link, or one classic uprobe
   * each without uprobe_multi links, all detached together). Listed in links() until detached.
   */
  attachUprobe(program: string, binary: string, options: UprobeAttachOptions): { readonly id: number; readonly ids: readonly number[]; readonly returns?: number; detach(): void } {
    const { links, returns } = options.at === 'returns'
      ? attachUprobeReturns(this.object, program, binary, { symbol: options.symbol, pid: options.pid })
      : { links: [attachUprobe(this.object, program, binary, options)], returns: undefined }
    this.#links.push(...links)
    return {
      id: links[0]!.id,
      ids: links.map((l) => l.id),
      returns,
      detach: () => {
        for (const link of links) {
          link.detach()
          this.#links.splice(this.#links.indexOf(link), 1)
        }
      },
    }
  }

  /**
   * A perf_event program on a software cpu-clock event of every online CPU, attached on demand
   * (plugins' ctx.attach); `pid`: that thread's samples only. Listed in links() until detached.
   */
  attachPerfEvent(program: string, options: { frequency: number; pid?: number }): { readonly id: number; readonly ids: readonly number[]; detach(): void } {
    const links = attachPerfEvent(this.object, program, { frequency: options.frequency, pid: options.pid })
    this.#links.push(...links)
    return {
      id: links[0]!.id,
      ids: links.map((l) => l.id),
      detach: () => {
        for (const link of links) {
          link.detach()
          this.#links.splice(this.#links.indexOf(link), 1)
        }
      },
    }
  }

  /**
   * A tracepoint program attached on demand (plugins' ctx.onTracepoint) to `category:name`, with
   * `cookie` for the program to find its settings by. Listed in links() until detached.
   */
  attachTracepoint(program: string, category: string, name: string, cookie: bigint): { readonly id: number; detach(): void } {
    const link = attachTracepoint(this.object, program, category, name, { cookie })
    this.#links.push(link)
    return {
      id: link.id,
      detach: () => {
        link.detach()
        this.#links.splice(this.#links.indexOf(link), 1)
      },
    }
  }

  /** The struct a stream carries (RECORD() in the C source), by its BTF name. */
  recordType(stream: string): string | undefined {
    const id = this.object.btf.records().get(stream)
    return id === undefined ? undefined : this.object.btf.resolve(id).type.name
  }

  /** Runs one of the object's iterator programs once (pid: only that process); resolves to what it printed. */
  async runIterator(program: string, options: { pid?: number } = {}): Promise<string> {
    return (await runIterator(this.object, program, options)).toString()
  }

  /** Ring reserve failures of the whole object (its `dropped` map): every stream is told of them all. */
  kernelDrops(): number {
    // object.dropped() describes the map anew on each call (13 µs here); the bus asks often
    this.#dropped ??= this.object.maps().some((m) => m.name === 'dropped') ? this.object.map('dropped') : null
    const perCpu = this.#dropped?.lookup(new Uint8Array(4))
    if (perCpu === undefined) return 0
    const view = new DataView(perCpu.buffer, perCpu.byteOffset, perCpu.byteLength)
    let sum = 0
    for (let at = 0; at < perCpu.byteLength; at += 8) sum += Number(view.getBigUint64(at, true))
    return sum
  }

  /** Totals over the object's streams; `listenerErrors` counts batches on which a subscriber threw. */
  stats(): { received: number; dropped: number; listenerErrors: number } {
    let received = 0
    let lost = 0
    let listenerErrors = 0
    for (const reader of this.#readers.values()) {
      const s = reader.stats()
      received += s.received
      lost += s.lost
      listenerErrors += s.listenerErrors
    }
    return { received, dropped: this.object.dropped() + lost, listenerErrors }
  }

  async close(): Promise<void> {
    for (const reader of this.#readers.values()) reader.close()
    this.#readers.clear()
    this.object.close()
  }
}

/**
 * Hands the batch to every subscriber, even when one throws. What they threw is rethrown once
 * all have run, so the reader counts the batch in `listenerErrors` and reports it to onError.
 */
function deliverToEach(subscribers: ReadonlySet<(batch: RecordBatch) => void>, batch: RecordBatch): void {
  let failures: unknown[] | undefined
  for (const subscriber of subscribers) {
    try {
      subscriber(batch)
    } catch (error) {
      (failures ??= []).push(error)
    }
  }
  if (failures === undefined) return
  const others = failures.length < subscribers.size ? '; the others received it' : ''
  throw new AggregateError(failures, `${failures.length} of ${subscribers.size} subscribers threw on this batch${others}`)
}

/**
 * An error's stack, then each cause's, indented. An AggregateError shows its message and then
 * each of its errors: its own stack only says where they were collected. A cause seen before
 * (a cycle) is named, not followed.
 */
function describeWithCauses(error: unknown, indent = '', seen = new Set<unknown>()): string {
  if (seen.has(error)) return `(the ${error instanceof Error ? error.name : 'value'} above, again)`
  seen.add(error)
  if (error instanceof AggregateError) {
    let text = `${error.name}: ${error.message}`
    for (const inner of error.errors) text += `\n${indent}  - ${describeWithCauses(inner, `${indent}    `, seen)}`
    return text
  }
  let text = error instanceof Error ? (error.stack ?? `${error.name}: ${error.message}`) : String(error)
  text = text.replaceAll('\n', `\n${indent}`)
  if (error instanceof Error && error.cause !== undefined) {
    text += `\n${indent}  caused by: ${describeWithCauses(error.cause, `${indent}  `, seen)}`
  }
  return text
}

function attachOne(object: LoadedObject, spec: AttachSpec): Link {
  switch (spec.kind) {
    case 'tracepoint': return attachTracepoint(object, spec.program, spec.category, spec.name)
    case 'raw_tp': return attachRawTracepoint(object, spec.program, spec.name)
    case 'tp_btf': case 'fentry': return attachTracing(object, spec.program)
    case 'kprobe': return attachKprobe(object, spec.program, spec.function, { retprobe: spec.retprobe })
  }
}

export interface OpenOptions extends PlanOptions {
  settings?: Record<string, Setting>
  /** Map sizes to change before load, e.g. a ring buffer's bytes. */
  maxEntries?: Record<string, number>
  log?: (message: string) => void
}

/** Loads a catalogue object and attaches it by its plan. */
export async function openLibraryObject(name: string, options: OpenOptions = {}): Promise<LibraryObject> {
  const entry = catalogue[name]
  if (entry === undefined) throw new Error(`unknown library object "${name}"; the library has: ${Object.keys(catalogue).join(', ')}`)
  const path = `${libraryDir}${name}.bpf.o`
  // stat, not access(2), which would miss it after the privilege drop in a root-only directory (/root)
  if (statSync(path, { throwIfNoEntry: false }) === undefined) throw new Error(`library object ${path} is not built; run \`npm run build\``)
  const log = options.log ?? ((message: string) => console.error(`periscope: ${message}`))
  const spec = ObjectSpec.open(path)
  let chosen: AttachSpec[]
  try {
    const plan = await planAttach(name, entry, { attachKind: options.attachKind })
    for (const note of plan.notes) log(note)
    chosen = plan.attach
    // only chosen programs load (and programs no plan mentions, which are attached on demand)
    for (const program of plan.unused) spec.setAutoload(program, false)
    await chooseRunTimeUprobes(spec, name, log)
    spec.setSettings(options.settings ?? {})
    for (const [map, entries] of Object.entries(options.maxEntries ?? {})) spec.setMaxEntries(map, entries)
  } catch (error) {
    spec.close()
    throw error
  }
  const programTypes = spec.programs().flatMap((p) => (p.type === null ? [] : [p.type]))
  const needs = [...new Set(programTypes.flatMap(capabilitiesForProgramType))]
  let object: LoadedObject
  try {
    object = await spec.load()
  } catch (error) {
    throw explainPermissionDenied(error, `loading library object ${name}`, needs)
  }
  let library: LibraryObject
  try {
    markSelf(object)
    const links = chosen.map((c) => attachOne(object, c))
    library = new LibraryObject(name, object, links, log, entry.pacedStreams)
  } catch (error) {
    object.close()
    throw explainPermissionDenied(error, `attaching library object ${name}`, needs)
  }
  try {
    await runStartupIterators(library, entry.startupIterators ?? [], log)
  } catch (error) {
    await library.close()
    throw explainPermissionDenied(error, `scanning at the start of library object ${name}`, needs)
  }
  return library
}

/**
 * Uprobe programs attach at run time (ctx.attach), mostly after the privilege drop, when only
 * uprobe_multi links (Linux 6.6) attach: the uprobe PMU wants CAP_SYS_ADMIN. It is decided at
 * load, since a program loaded for one kind of link cannot attach as the other.
 */
async function chooseRunTimeUprobes(spec: ObjectSpec, name: string, log: (message: string) => void): Promise<void> {
  const uprobes = spec.programs().filter((p) => uprobeKind(p.section) !== undefined).map((p) => p.name)
  if (uprobes.length === 0) return
  const multi = await probeAttach('uprobe_multi')
  if (multi.status === 'supported') {
    for (const program of uprobes) spec.setExpectedAttachType(program, UPROBE_MULTI_ATTACH_TYPE)
    return
  }
  log(`${name}: not using uprobe_multi links for ${uprobes.join(', ')} (${multi.reason}); ` +
    'they attach through the uprobe PMU, which needs CAP_SYS_ADMIN: only before the privilege drop')
}

/**
 * An object with a `self_tgids` map skips Periscope's own processes (and, in sockdata, the other
 * end of their connections): written before its links attach, so none of Periscope's traffic is
 * seen even once.
 */
function markSelf(object: LoadedObject): void {
  if (!object.maps().some((m) => m.name === 'self_tgids')) return
  const map = object.map('self_tgids')
  const key = new Uint8Array(4)
  new DataView(key.buffer).setUint32(0, process.pid, true)
  map.update(key, new Uint8Array(map.valueSize).fill(1))
}

/** Runs the entry's start-up iterators in order and logs how many things each found. */
async function runStartupIterators(library: LibraryObject, iterators: { program: string; found: string }[], log: (message: string) => void): Promise<void> {
  if (iterators.length === 0) return
  const counts: string[] = []
  for (const { program, found } of iterators) {
    const output = await library.runIterator(program)
    const lines = output === '' ? 0 : output.trimEnd().split('\n').length
    counts.push(`${lines} ${found}`)
  }
  log(`${library.name}: start-up scan found ${counts.join(', ')}`)
}

/**
 * The ObjectProvider the bus (runtime/bus.ts) shares among plugins. It settles every attach probe
 * first, while the runtime still holds its privileges: objects opened after the drop choose their
 * attach plans from these answers, never from a probe that ran without a capability it needed.
 */
export async function createObjectProvider(log?: (message: string) => void): Promise<{ open(name: string, settings?: Record<string, Setting>): Promise<LibraryObject> }> {
  await settleAttachProbes()
  return { open: (name, settings) => openLibraryObject(name, { settings, log }) }
}
