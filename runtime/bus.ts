/**
 * The bus between library objects and plugins. Topics are `'<object>:<map>'` (`'exec:events'`).
 * Objects are opened on first use and closed when the last user lets go; a stream is subscribed
 * once in the object however many plugins listen, and its batches fan out to every listener.
 * A hot reload acquires the object for the new version before the old version releases it, so
 * the count never touches zero and the kernel links stay attached.
 */
import type { RecordBatch } from './bpf/batch.ts'

export type { RecordBatch }

export interface LibraryObject {
  readonly name: string
  /** ring/perf buffer maps this object exposes, e.g. ['events'] */
  readonly streams: readonly string[]
  /** start delivering batches of one stream; returns an unsubscribe function. Delivery pauses are allowed; no record is lost while subscribed */
  subscribe(stream: string, onBatch: (batch: RecordBatch) => void): () => void
  /** key/value access to a non-stream map; keys/values as Uint8Array (the generated codecs in bpf/lib/<name>.types.ts turn them into objects) */
  map(name: string): { lookup(key: Uint8Array): Uint8Array | undefined; update(key: Uint8Array, value: Uint8Array): void; delete(key: Uint8Array): boolean; entries(): Iterable<[Uint8Array, Uint8Array]>; readonly keySize: number; readonly valueSize: number }
  /** kernel links currently attached: the ids must stay the same across a plugin hot reload */
  links(): { id: number; program: string; attach: string }[]
  /** types of the loaded programs (libbpf's names, e.g. 'tracepoint', 'sched_cls'): they decide which capabilities the runtime keeps */
  programTypes?(): string[]
  /** `listenerErrors`: batches on which a stream subscriber threw (contained: the others still got them), if the provider counts them */
  stats(): { received: number; dropped: number; listenerErrors?: number }
  close(): Promise<void>
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
    for (const [topic, stream] of this.streams) {
      if (splitTopic(topic).object === name) {
        stream.unsubscribe()
        this.streams.delete(topic)
      }
    }
    await (await entry.object).close()
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
      created.unsubscribe = object.subscribe(member, (batch) => {
        created.batches++
        created.records += batch.count
        created.lost += batch.lost
        // one listener that throws must not cost the others the batch; the reader counts and
        // reports what they threw
        let errors: unknown[] | undefined
        for (const l of created.listeners) {
          try {
            l(batch)
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

  map(topic: string): ReturnType<LibraryObject['map']> {
    const { object, member } = splitTopic(topic)
    return this.loaded(object, topic).map(member)
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
      out.push({ name: entry.name, users: [...entry.users].sort(), streams: object.streams, links: object.links(), programTypes: object.programTypes?.() ?? [], stats: object.stats() })
    }
    return out
  }

  listStreams(): { topic: string; listeners: number; batches: number; records: number; lost: number }[] {
    return [...this.streams].map(([topic, s]) => ({ topic, listeners: s.listeners.size, batches: s.batches, records: s.records, lost: s.lost }))
  }

  /** Closes every object regardless of users; for shutdown. */
  async close(): Promise<void> {
    for (const stream of this.streams.values()) stream.unsubscribe()
    this.streams.clear()
    const entries = [...this.objects.values()]
    this.objects.clear()
    const results = await Promise.allSettled(entries.map(async (e) => (await e.object).close()))
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed.length > 0) {
      throw new AggregateError(failed.map((f) => f.reason), `closing ${failed.length} object(s) failed`)
    }
  }
}
