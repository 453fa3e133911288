/**
 * The bus between library objects and plugins. Topics are `'<object>:<map>'` (`'exec:events'`).
 * Objects are opened on first use and closed when the last user lets go; a stream is subscribed
 * once in the object however many plugins listen, and its batches fan out to every listener.
 * A hot reload acquires the object for the new version before the old version releases it, so
 * the count never touches zero and the kernel links stay attached.
 */
import type { RecordBatch } from './bpf/batch.ts'
import { fileIdentity, holdLink, type Holder, MapClaims, PluginApiError, SharedUprobes, type UprobeRequest } from './holds.ts'

export type { Holder, RecordBatch, UprobeRequest }

export interface LibraryObject {
  readonly name: string
  /** ring/perf buffer maps this object exposes, e.g. ['events'] */
  readonly streams: readonly string[]
  /** start delivering batches of one stream; returns an unsubscribe function. Delivery pauses are allowed; no record is lost while subscribed */
  subscribe(stream: string, onBatch: (batch: RecordBatch) => void): () => void
  /** key/value access to a non-stream map; keys/values as Uint8Array (the generated codecs in bpf/lib/<name>.types.ts turn them into objects) */
  map(name: string): ObjectMap
  /** kernel links currently attached: the ids must stay the same across a plugin hot reload */
  links(): { id: number; program: string; attach: string }[]
  /** types of the loaded programs (libbpf's names, e.g. 'tracepoint', 'sched_cls'): they decide which capabilities the runtime keeps */
  programTypes?(): string[]
  /** `listenerErrors`: batches on which a stream subscriber threw (contained: the others still got them), if the provider counts them */
  stats(): { received: number; dropped: number; listenerErrors?: number }
  /**
   * Records of `stream` the kernel could not reserve so far (cumulative). An object that counts
   * its drops per object (the `dropped` map of bpf/include/periscope.h) reports that count for
   * each of its streams, so a loss anywhere in it reaches every stream's listeners.
   */
  kernelDrops?(stream: string): number
  /** The loaded programs with their ELF section, which says how each attaches or runs. */
  programs?(): { name: string; section: string }[]
  /** Each loaded program's kernel run time and run count (counted while BPF stats are on; runtime/bpf/stats.ts). */
  programStats?(): { name: string; id: number; runTimeNs: number; runCount: number }[]
  /**
   * Attaches a uprobe (or uretprobe) program on `symbol` in `binary`; only `pid`'s calls when given;
   * `at: 'returns'`: a uprobe program at each return instruction, `returns` of them. `ids`: every
   * kernel link it made (a classic uprobe per return instruction), which links() lists too.
   */
  attachUprobe?(program: string, binary: string, options: { symbol: string; retprobe: boolean; pid?: number; at?: 'entry' | 'returns'; cookie?: bigint }): { readonly id: number; readonly ids?: readonly number[]; readonly returns?: number; detach(): void }
  /**
   * Attaches a perf_event program to a software cpu-clock event on every online CPU at `frequency`
   * Hz (only thread `pid`'s samples when given): one hold over the per-CPU links.
   */
  attachPerfEvent?(program: string, options: { frequency: number; pid?: number }): { readonly id: number; readonly ids: readonly number[]; detach(): void }
  /** Attaches a tracepoint program to `category:name` with a BPF cookie; one link per call. */
  attachTracepoint?(program: string, category: string, name: string, cookie: bigint): { readonly id: number; detach(): void }
  /** The struct a stream's records are (RECORD() in the C source), by its BTF name. */
  recordType?(stream: string): string | undefined
  /** Runs an iterator program once and returns the text it printed. */
  runIterator?(program: string, options: { pid?: number }): Promise<string>
  /** Delivers, synchronously, what the kernel buffers of the subscribed streams hold now. */
  drainStreams?(): void
  close(): Promise<void>
}

/** A map of an object. `info` is there for kernel maps: claims reset array entries instead of deleting them, and per-CPU values are split. */
export interface ObjectMap {
  lookup(key: Uint8Array): Uint8Array | undefined
  update(key: Uint8Array, value: Uint8Array): void
  delete(key: Uint8Array): boolean
  /** Per-CPU maps: each value holds every possible CPU's, back to back, each padded to 8 bytes. */
  entries(): Iterable<[Uint8Array, Uint8Array]>
  readonly keySize: number
  readonly valueSize: number
  readonly info?: { readonly type: string | null; readonly perCpu: boolean }
}

export interface ObjectProvider {
  open(name: string, settings?: Record<string, number | bigint | boolean>): Promise<LibraryObject>
}

export type ObjectSettings = Record<string, number | bigint | boolean>
export type BatchListener = (batch: RecordBatch) => void

interface OpenObject {
  name: string
  object: Promise<LibraryObject>
  /** Set once `object` resolves, for the synchronous paths (subscribe, map, listings). */
  loaded?: LibraryObject
  users: Set<string>
}

interface Stream {
  listeners: Set<BatchListener>
  unsubscribe: () => void
  batches: number
  records: number
  lost: number
}

/** Where a stream stands: a listener that stopped and starts again learns how much it missed. */
export interface StreamPosition {
  stream: object
  /** Records delivered plus records lost, since the stream opened. */
  total: number
}

/** A batch this large is read right after by the kernel drop counter; smaller ones at most every `dropsReadMs`. */
const dropsReadBatchBytes = 64 * 1024
const dropsReadMs = 10

export function splitTopic(topic: string): { object: string; member: string } {
  const at = topic.indexOf(':')
  if (at <= 0 || at === topic.length - 1) {
    throw new Error(`topic '${topic}' is not '<object>:<map>'; write it like 'exec:events'`)
  }
  return { object: topic.slice(0, at), member: topic.slice(at + 1) }
}

export class Bus {
  private readonly objects = new Map<string, OpenObject>()
  private readonly streams = new Map<string, Stream>()
  /** Map entries plugins hold (PluginMap.claim), shared across plugins and versions. */
  readonly claims = new MapClaims()
  /** Uprobe links plugins hold (ctx.attach), one per target however many holders. */
  readonly uprobes = new SharedUprobes()
  /** perf_event link sets plugins hold (ctx.attach), one per (program, frequency, pid). */
  private readonly perfEvents = new Map<string, { object: string; link: { id: number; detach(): void }; holds: number }>()
  /** Config slots of uprobe links plugins hold (ctx.onUprobe), one per (program, file, symbol, pid, config). */
  private readonly uprobeSlots = new Map<string, { object: string; slot: number; holds: number }>()
  /** Tracepoint links plugins hold (ctx.onTracepoint), one per (program, tracepoint), each with its config slot. */
  private readonly tracepoints = new Map<string, { object: string; slot: number; link: { id: number; detach(): void }; holds: number }>()

  private readonly provider: ObjectProvider
  /** Settings per object name, from periscope.yaml's `objects` block. */
  private readonly settings: Record<string, ObjectSettings>

  constructor(provider: ObjectProvider, settings: Record<string, ObjectSettings> = {}) {
    this.provider = provider
    this.settings = settings
  }

  /**
   * Marks `user` as using object `name`, opening it if nobody does yet. Acquiring twice for the
   * same user counts once. A failed open is forgotten, so the next acquire tries again.
   */
  async acquire(name: string, user: string): Promise<LibraryObject> {
    let entry = this.objects.get(name)
    if (entry === undefined) {
      const opening: OpenObject = { name, object: this.provider.open(name, this.settings[name]), users: new Set() }
      entry = opening
      this.objects.set(name, opening)
      opening.object.then(
        (object) => { opening.loaded = object },
        () => { if (this.objects.get(name) === opening) this.objects.delete(name) },
      )
    }
    entry.users.add(user)
    try {
      return await entry.object
    } catch (error) {
      entry.users.delete(user)
      throw new Error(`open object '${name}': ${(error as Error).message}`, { cause: error })
    }
  }

  /** Drops `user`'s hold on object `name`; the last user closes it (links detached, maps freed). */
  async release(name: string, user: string): Promise<void> {
    const entry = this.objects.get(name)
    if (entry === undefined || !entry.users.delete(user) || entry.users.size > 0) return
    this.objects.delete(name)
    this.claims.forgetObject(name)
    this.uprobes.forgetObject(name)
    this.forgetHeldLinks(name)
    for (const [topic, stream] of this.streams) {
      if (splitTopic(topic).object === name) {
        stream.unsubscribe()
        this.streams.delete(topic)
      }
    }
    await (await entry.object).close()
  }

  /** Forgets an object's perf_event, tracepoint and slotted uprobe holds once it closed (closing detached their links). */
  private forgetHeldLinks(object: string): void {
    for (const [key, shared] of this.perfEvents) if (shared.object === object) this.perfEvents.delete(key)
    for (const [key, shared] of this.tracepoints) if (shared.object === object) this.tracepoints.delete(key)
    for (const [key, slot] of this.uprobeSlots) if (slot.object === object) this.uprobeSlots.delete(key)
  }

  private loaded(name: string, topic: string): LibraryObject {
    const object = this.objects.get(name)?.loaded
    if (object === undefined) throw new Error(`'${topic}': object '${name}' is not open; acquire it first`)
    return object
  }

  /** Listens to a stream; the object must be acquired. The returned function stops listening. */
  subscribe(topic: string, listener: BatchListener): () => void {
    const { object: name, member } = splitTopic(topic)
    let stream = this.streams.get(topic)
    if (stream === undefined) {
      const object = this.loaded(name, topic)
      if (!object.streams.includes(member)) {
        throw new Error(`'${topic}': object '${name}' has no stream '${member}'; its streams are ${object.streams.join(', ') || 'none'}`)
      }
      const created: Stream = { listeners: new Set(), unsubscribe: () => {}, batches: 0, records: 0, lost: 0 }
      const kernelDrops = object.kernelDrops === undefined ? undefined : () => object.kernelDrops!(member)
      let dropsSeen = kernelDrops?.() ?? 0
      let dropsReadAt = performance.now()
      // reserve failures happen while the ring is full, so after every record it held when they
      // were counted: they go with the next batch, which starts after them
      let dropsNoticed = 0
      created.unsubscribe = object.subscribe(member, (batch) => {
        const lost = batch.lost + dropsNoticed
        dropsNoticed = 0
        const delivered = lost === batch.lost ? batch : { ...batch, lost }
        created.batches++
        created.records += batch.count
        created.lost += lost
        // reading the counter is a syscall (4-14 µs here): after every large batch, which is what
        // a ring that overflowed hands over first, and otherwise at most every few milliseconds
        const now = performance.now()
        if (kernelDrops !== undefined && (batch.byteLength >= dropsReadBatchBytes || now - dropsReadAt >= dropsReadMs)) {
          dropsReadAt = now
          const drops = kernelDrops()
          dropsNoticed = drops - dropsSeen
          dropsSeen = drops
        }
        // one listener that throws must not cost the others the batch; the reader counts and
        // reports what they threw
        let errors: unknown[] | undefined
        for (const l of created.listeners) {
          try {
            l(delivered)
          } catch (error) {
            (errors ??= []).push(error)
          }
        }
        if (errors !== undefined) throw errors.length === 1 ? errors[0] : new AggregateError(errors, `${errors.length} listeners of '${topic}' threw`)
      })
      stream = created
      this.streams.set(topic, stream)
    }
    stream.listeners.add(listener)
    const subscribed = stream
    return () => {
      subscribed.listeners.delete(listener)
      // The object keeps its stream subscription until it closes: re-subscribing would risk a gap
      // for a plugin that is only swapping versions.
    }
  }

  /** Records delivered and lost so far on an open stream; undefined when it is not open. */
  position(topic: string): StreamPosition | undefined {
    const stream = this.streams.get(topic)
    return stream === undefined ? undefined : { stream, total: stream.records + stream.lost }
  }

  map(topic: string): ObjectMap {
    const { object, member } = splitTopic(topic)
    return this.loaded(object, topic).map(member)
  }

  /** See MapClaims.claim; the object must be acquired. */
  claim(topic: string, key: Uint8Array, value: Uint8Array, holder: Holder): void {
    this.claims.claim(topic, this.map(topic), key, value, holder)
  }

  /** Attaches (or shares) a uprobe link of program `'<object>:<program>'`; see SharedUprobes.attach. */
  attachUprobe(program: string, request: UprobeRequest): { id: number; release(): boolean } {
    const { object, member } = splitTopic(program)
    return this.uprobes.attach(object, this.loaded(object, program), member, request)
  }

  /**
   * Attaches (or shares) perf_event program `'<object>:<program>'` on every CPU at `frequency` Hz,
   * `pid`'s thread only when given: one link set per (program, frequency, pid) however many
   * holders; the returned release() is idempotent and the last detaches.
   */
  attachPerfEvent(program: string, request: { frequency: number; pid?: number }): { id: number; release(): boolean } {
    const { object: name, member } = splitTopic(program)
    const object = this.loaded(name, program)
    const what = `ctx.attach(${program} at ${request.frequency} Hz${request.pid === undefined ? '' : ` for pid ${request.pid}`})`
    if (object.attachPerfEvent === undefined || object.programs === undefined) {
      throw new PluginApiError('EINVAL', `${what}: object '${name}' cannot attach programs at run time`)
    }
    const programs = object.programs()
    const sampling = programs.filter((p) => p.section === 'perf_event').map((p) => p.name)
    const info = programs.find((p) => p.name === member)
    if (info === undefined) throw new PluginApiError('ENOENT', `${what}: object '${name}' has no program '${member}'; its perf_event programs: ${sampling.join(', ') || 'none'}`)
    if (info.section !== 'perf_event') {
      throw new PluginApiError('EINVAL', `${what}: program '${member}' is a '${info.section}' program, not a perf_event one; its perf_event programs: ${sampling.join(', ') || 'none'}`)
    }
    const key = `${program}\0${request.frequency}\0${request.pid ?? -1}`
    let shared = this.perfEvents.get(key)
    if (shared === undefined) {
      let link
      try {
        link = object.attachPerfEvent(member, request)
      } catch (error) {
        const code = (error as { code?: unknown }).code
        throw new PluginApiError(typeof code === 'string' ? code : 'EIO', `${what}: ${(error as Error).message}`)
      }
      shared = { object: name, link, holds: 0 }
      this.perfEvents.set(key, shared)
    }
    return holdLink(this.perfEvents, key, shared)
  }

  /**
   * Attaches (or shares) tracepoint program `'<object>:<program>'` on `category:name`, a program
   * that finds its settings in entry `cookie` of array map `request.configMap` (generic.bpf.c's
   * probe_config). The kernel runs a program once per tracepoint, so a tracepoint has one link
   * and one slot, shared by every holder; its config is a claim on the slot's entry
   * (MapClaims): another plugin asking for another config is refused (EBUSY), a newer version
   * of the same plugin replaces it. The returned release() is idempotent; the last detaches.
   */
  attachTracepoint(program: string, request: { category: string; name: string; config: Uint8Array; configMap: string; slots: number }, holder: Holder): { id: number; cookie: number; release(): boolean } {
    const { object: name, member } = splitTopic(program)
    const object = this.loaded(name, program)
    const tracepoint = `${request.category}:${request.name}`
    const what = `ctx.onTracepoint('${tracepoint}')`
    if (object.attachTracepoint === undefined) throw new PluginApiError('EINVAL', `${what}: object '${name}' cannot attach programs at run time`)
    const key = `${program}\0${tracepoint}`
    let shared = this.tracepoints.get(key)
    const slot = shared?.slot ?? this.freeSlot(name, request.slots, what, 'tracepoints')
    const configTopic = `${name}:${request.configMap}`
    const slotKey = new Uint8Array(new Uint32Array([slot]).buffer)
    const other = this.claims.claimedByOther(configTopic, slotKey, holder.plugin)
    // a plugin's own older version gives way (a hot reload that changed the options)
    if (other !== undefined && !this.claims.holdsValue(configTopic, slotKey, request.config)) {
      throw new PluginApiError('EBUSY', `${what}: plugin ${other} traces it with other options (pid, comm, uid or strings), and the kernel runs the program once per tracepoint; ask for the same options and filter in the handler`)
    }
    // the config first: the program's first run finds it
    this.claim(configTopic, slotKey, request.config, holder)
    if (shared === undefined) {
      let link
      try {
        link = object.attachTracepoint(member, request.category, request.name, BigInt(slot))
      } catch (error) {
        this.claims.unclaim(configTopic, slotKey, holder.id)
        const code = (error as { code?: unknown }).code
        throw new PluginApiError(typeof code === 'string' ? code : 'EIO', `${what}: ${(error as Error).message}`)
      }
      shared = { object: name, slot, link, holds: 0 }
      this.tracepoints.set(key, shared)
    }
    const hold = holdLink(this.tracepoints, key, shared)
    return {
      id: hold.id,
      cookie: slot,
      release: () => {
        if (!hold.release()) return false
        this.claims.unclaim(configTopic, slotKey, holder.id)
        return true
      },
    }
  }

  /**
   * Attaches (or shares) uprobe program `'<object>:<program>'` with a BPF cookie naming its
   * settings: entry `cookie` of array map `request.configMap` (generic_uprobe.bpf.c's
   * probe_config). Holders asking for the same function, pid and config share one slot and one
   * link; the slot's config is written before the link attaches, and cleared after the last
   * holder let go. The returned release() is idempotent.
   */
  attachUprobeSlot(program: string, request: Omit<UprobeRequest, 'at' | 'cookie'> & { config: Uint8Array; configMap: string; slots: number }, holder: Holder): { id: number; cookie: number; release(): boolean } {
    const { object: name, member } = splitTopic(program)
    const object = this.loaded(name, program)
    const what = `ctx.onUprobe(${request.retprobe ? 'uretprobe' : 'uprobe'} ${request.binary}:${request.symbol})`
    const key = [program, fileIdentity(request.binary, what), request.symbol, request.retprobe, request.pid ?? -1, Buffer.from(request.config).toString('hex')].join('\0')
    let entry = this.uprobeSlots.get(key)
    if (entry === undefined) {
      entry = { object: name, slot: this.freeSlot(name, request.slots, what, 'functions'), holds: 0 }
    }
    const configTopic = `${name}:${request.configMap}`
    const slotKey = new Uint8Array(new Uint32Array([entry.slot]).buffer)
    // the config first: the program's first run finds it
    this.claim(configTopic, slotKey, request.config, holder)
    let hold
    try {
      hold = this.uprobes.attach(name, object, member, { ...request, at: 'entry', cookie: entry.slot }, what)
    } catch (error) {
      this.claims.unclaim(configTopic, slotKey, holder.id)
      throw error
    }
    entry.holds++
    this.uprobeSlots.set(key, entry)
    const held = entry
    return {
      id: hold.id,
      cookie: held.slot,
      release: () => {
        if (!hold.release()) return false
        this.claims.unclaim(configTopic, slotKey, holder.id)
        if (--held.holds === 0 && this.uprobeSlots.get(key) === held) this.uprobeSlots.delete(key)
        return true
      },
    }
  }

  /** The lowest config slot of `object` that no tracepoint or uprobe hold uses. */
  private freeSlot(object: string, slots: number, what: string, things: string): number {
    const used = new Set([...this.tracepoints.values(), ...this.uprobeSlots.values()].filter((t) => t.object === object).map((t) => t.slot))
    for (let slot = 0; slot < slots; slot++) if (!used.has(slot)) return slot
    throw new PluginApiError('ENOSPC', `${what}: object '${object}' serves ${slots} ${things} at once and all are taken; detach one first`)
  }


  /** The struct the records of stream `topic` are, by BTF name; undefined when the object does not say. */
  recordType(topic: string): string | undefined {
    const { object, member } = splitTopic(topic)
    return this.loaded(object, topic).recordType?.(member)
  }

  /** Runs iterator program `'<object>:<program>'` once; resolves to what it printed. */
  async runIterator(program: string, options: { pid?: number }): Promise<string> {
    const { object: name, member } = splitTopic(program)
    const object = this.loaded(name, program)
    const what = `ctx.iterate('${program}')`
    if (object.runIterator === undefined || object.programs === undefined) {
      throw new PluginApiError('EINVAL', `${what}: object '${name}' cannot run programs on demand`)
    }
    const programs = object.programs()
    const iterators = programs.filter((p) => isIterator(p.section)).map((p) => p.name)
    const info = programs.find((p) => p.name === member)
    if (info === undefined) throw new PluginApiError('ENOENT', `${what}: object '${name}' has no program '${member}'; its iterators: ${iterators.join(', ') || 'none'}`)
    if (!isIterator(info.section)) {
      throw new PluginApiError('EINVAL', `${what}: program '${member}' is a '${info.section}' program, not an iterator; its iterators: ${iterators.join(', ') || 'none'}`)
    }
    return await object.runIterator(member, options)
  }

  /** Open objects with their users, links and counters, for the admin socket. */
  listObjects(): {
    name: string
    users: string[]
    streams: readonly string[]
    links: ReturnType<LibraryObject['links']>
    programTypes: string[]
    stats: ReturnType<LibraryObject['stats']>
  }[] {
    const out = []
    for (const entry of this.objects.values()) {
      const object = entry.loaded
      if (object === undefined) continue
      // the links fixed at open, then those plugins attached at run time (ctx.attach), each once
      // as the hold it is, though the object lists its kernel links too
      const held = this.uprobes.list().filter((l) => l.object === entry.name)
      const heldIds = new Set(held.flatMap((l) => l.ids))
      const fixed = object.links().filter((l) => !heldIds.has(l.id))
      out.push({ name: entry.name, users: [...entry.users].sort(), streams: object.streams, links: [...fixed, ...held.map(({ id, program, attach }) => ({ id, program, attach }))], programTypes: object.programTypes?.() ?? [], stats: object.stats() })
    }
    return out
  }

  /** Run time and run count of every program of every open object, for the self-metrics. */
  programStats(): { object: string; program: string; runTimeNs: number; runCount: number }[] {
    const out = []
    for (const entry of this.objects.values()) {
      for (const { name, runTimeNs, runCount } of entry.loaded?.programStats?.() ?? []) out.push({ object: entry.name, program: name, runTimeNs, runCount })
    }
    return out
  }

  listStreams(): { topic: string; listeners: number; batches: number; records: number; lost: number }[] {
    return [...this.streams].map(([topic, s]) => ({ topic, listeners: s.listeners.size, batches: s.batches, records: s.records, lost: s.lost }))
  }

  /** Hands the subscribers every record the kernel holds for them now (the start of a clean shutdown). */
  drainStreams(): void {
    for (const entry of this.objects.values()) entry.loaded?.drainStreams?.()
  }

  /** Closes every object regardless of users; for shutdown. */
  async close(): Promise<void> {
    for (const stream of this.streams.values()) stream.unsubscribe()
    this.streams.clear()
    const entries = [...this.objects.values()]
    this.objects.clear()
    for (const entry of entries) {
      this.claims.forgetObject(entry.name)
      this.uprobes.forgetObject(entry.name)
      this.forgetHeldLinks(entry.name)
    }
    const results = await Promise.allSettled(entries.map(async (e) => (await e.object).close()))
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed.length > 0) {
      throw new AggregateError(failed.map((f) => f.reason), `closing ${failed.length} object(s) failed`)
    }
  }
}

function isIterator(section: string): boolean {
  return /^iter(\.s)?\//.test(section)
}
