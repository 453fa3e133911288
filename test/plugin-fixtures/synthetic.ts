/**
 * A synthetic ObjectProvider for plugin tests and benchmarks: object `gen` (and any other names
 * it is given, alike) with streams `events` and `other` (64-byte numbered records, see decoders.ts) and a hash map `counts` (u32 → u64).
 * Tests push batches by hand; the provider records opens and closes so tests can check refcounts.
 */
import type { RecordBatch } from '../../runtime/bpf/batch.ts'
import type { LibraryObject, ObjectProvider } from '../../runtime/bus.ts'
import { GEN_RECORD_SIZE } from './decoders.ts'

const STRIDE = 8 + GEN_RECORD_SIZE

/** `count` records numbered from `firstSeq`, in the batch format of runtime/bpf/batch.ts. */
export function makeBatch(firstSeq: number, count: number, pid = 4242): RecordBatch {
  const buffer = new ArrayBuffer(count * STRIDE)
  const view = new DataView(buffer)
  const comm = new TextEncoder().encode('synthetic')
  for (let i = 0; i < count; i++) {
    const at = i * STRIDE
    view.setUint32(at, GEN_RECORD_SIZE, true)
    const r = at + 8
    view.setBigUint64(r, BigInt(firstSeq + i), true)
    view.setUint32(r + 8, pid, true)
    view.setUint32(r + 12, pid + 1, true)
    view.setBigUint64(r + 16, 1_700_000_000_000_000_000n + BigInt(i), true)
    view.setBigUint64(r + 24, BigInt(i % 100), true)
    new Uint8Array(buffer, r + 32, comm.length).set(comm)
  }
  return { buffer, byteLength: buffer.byteLength, count, lost: 0 }
}

export class SyntheticObject implements LibraryObject {
  readonly streams = ['events', 'other'] as const
  readonly listeners = new Map<string, Set<(batch: RecordBatch) => void>>()
  readonly counts = new Map<string, Uint8Array>()
  subscribeCalls = 0
  unsubscribeCalls = 0
  received = 0
  closed = false
  private nextSeq = 0

  readonly name: string
  readonly linkIds: number[]

  constructor(name: string, linkIds: number[]) {
    this.name = name
    this.linkIds = linkIds
  }

  subscribe(stream: string, onBatch: (batch: RecordBatch) => void): () => void {
    this.subscribeCalls++
    const set = this.listeners.get(stream) ?? new Set()
    set.add(onBatch)
    this.listeners.set(stream, set)
    return () => {
      this.unsubscribeCalls++
      set.delete(onBatch)
    }
  }

  /** Delivers `count` records numbered after the previous ones; returns the first number. */
  push(stream: string, count: number): number {
    const first = this.nextSeq
    this.nextSeq += count
    const batch = makeBatch(first, count)
    this.received += count
    for (const l of this.listeners.get(stream) ?? []) l(batch)
    return first
  }

  map(name: string): ReturnType<LibraryObject['map']> {
    if (name !== 'counts') throw new Error(`object ${this.name} has no map '${name}'`)
    const counts = this.counts
    const hex = (b: Uint8Array) => Buffer.from(b).toString('hex')
    return {
      keySize: 4,
      valueSize: 8,
      lookup: (key) => counts.get(hex(key)),
      update: (key, value) => { counts.set(hex(key), Uint8Array.from(value)) },
      delete: (key) => counts.delete(hex(key)),
      entries: () => [...counts].map(([k, v]): [Uint8Array, Uint8Array] => [Uint8Array.from(Buffer.from(k, 'hex')), v]),
    }
  }

  links(): { id: number; program: string; attach: string }[] {
    return this.linkIds.map((id, i) => ({ id, program: `handle_${i}`, attach: 'tracepoint/synthetic' }))
  }

  stats(): { received: number; dropped: number } {
    return { received: this.received, dropped: 0 }
  }

  async close(): Promise<void> {
    this.closed = true
  }
}

export class SyntheticProvider implements ObjectProvider {
  readonly opened: SyntheticObject[] = []
  private nextLink = 100
  /** Object names it serves: `gen`, and more for tests of what one plugin may reach of another's. */
  private readonly names: readonly string[]

  constructor(names: readonly string[] = ['gen']) {
    this.names = names
  }

  async open(name: string): Promise<LibraryObject> {
    if (!this.names.includes(name)) throw new Error(`no object '${name}' in the synthetic library`)
    const object = new SyntheticObject(name, [this.nextLink++, this.nextLink++])
    this.opened.push(object)
    return object
  }

  /** The open (not closed) instance of `gen`. */
  get gen(): SyntheticObject {
    return this.object('gen')
  }

  /** The open (not closed) instance of object `name`. */
  object(name: string): SyntheticObject {
    const open = this.opened.filter((o) => o.name === name && !o.closed)
    if (open.length !== 1) throw new Error(`expected one open '${name}' object, found ${open.length}`)
    return open[0]!
  }
}
