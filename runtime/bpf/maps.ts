/**
 * Maps as raw bytes (BpfMap) or typed through codecs generated from BTF (TypedMap). Per-CPU
 * maps return one value per possible CPU. Iteration uses the kernel's batch lookup where the
 * map type has it and falls back to get-next-key.
 */
import { BpfError, explain } from './errors.ts'
import type { NativeMap, NativeMapInfo } from './native.ts'
import { native } from './native.ts'

export const BPF_ANY = 0
export const BPF_NOEXIST = 1
export const BPF_EXIST = 2

const possibleCpus = native.versions().possibleCpus

export class BpfMap {
  readonly name: string
  readonly info: NativeMapInfo
  readonly #map: NativeMap
  #batchSupported: boolean | undefined

  constructor(map: NativeMap, name: string) {
    this.#map = map
    this.name = name
    this.info = map.describe()
  }

  get keySize(): number {
    return this.info.keySize
  }

  get valueSize(): number {
    return this.info.valueSize
  }

  lookup(key: Uint8Array): Uint8Array | undefined {
    this.#checkKey(key)
    return this.#call('lookup', () => this.#map.lookup(key))
  }

  /** For per-CPU maps: one value per possible CPU (each `valueSize` bytes). */
  lookupPerCpu(key: Uint8Array): Uint8Array[] {
    if (!this.info.perCpu) throw new Error(`map ${this.name} is not a per-CPU map; use lookup()`)
    const all = this.lookup(key)
    return all === undefined ? [] : this.#splitPerCpu(all)
  }

  update(key: Uint8Array, value: Uint8Array, flags = BPF_ANY): void {
    this.#checkKey(key)
    const expected = this.info.perCpu ? this.#perCpuStride() * possibleCpus : this.info.valueSize
    if (value.byteLength !== expected) {
      throw new Error(`map ${this.name}: value is ${value.byteLength} bytes, expected ${expected}${this.info.perCpu ? ` (${possibleCpus} CPUs × ${this.#perCpuStride()})` : ''}`)
    }
    this.#call('update', () => this.#map.update(key, value, flags))
  }

  delete(key: Uint8Array): boolean {
    this.#checkKey(key)
    return this.#call('delete', () => this.#map.delete(key))
  }

  keys(): Iterable<Uint8Array> {
    const map = this.#map
    const self = this
    return {
      *[Symbol.iterator]() {
        let key: Uint8Array | undefined = self.#call('iterate', () => map.nextKey(null))
        while (key !== undefined) {
          yield key
          const current: Uint8Array = key
          key = self.#call('iterate', () => map.nextKey(current))
        }
      },
    }
  }

  /**
   * Every [key, value] pair, each once; values of per-CPU maps hold all CPUs back to back. A batch
   * lookup the kernel refuses part way is finished key by key, skipping what the batches yielded.
   */
  *entries(batchSize = 256): Iterable<[Uint8Array, Uint8Array]> {
    // key bytes of each batch yielded so far: one array per batch, read only if a batch fails
    const yielded: Uint8Array[] = []
    if (this.#batchSupported !== false) {
      try {
        yield* this.#batchEntries(batchSize, yielded)
        this.#batchSupported = true
        return
      } catch (error) {
        if (!(error instanceof BpfError) || !['EINVAL', 'ENOTSUPP', 'EOPNOTSUPP'].includes(error.code)) throw explain(error, `iterate map ${this.name}`)
        // only a refusal of the very first batch says the map type has no batch lookup
        if (this.#batchSupported === undefined && yielded.length === 0) this.#batchSupported = false
      }
    }
    const skip = this.#keySet(yielded)
    for (const key of this.keys()) {
      if (skip.has(Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1'))) continue
      const value = this.#call('lookup', () => this.#map.lookup(key))
      if (value !== undefined) yield [key, value]
    }
  }

  *#batchEntries(batchSize: number, yielded: Uint8Array[]): Iterable<[Uint8Array, Uint8Array]> {
    const { keySize } = this.info
    const stride = this.info.perCpu ? this.#perCpuStride() * possibleCpus : this.info.valueSize
    let token: Uint8Array | null = null
    do {
      const batch = this.#map.lookupBatch(token, batchSize)
      yielded.push(batch.keys.subarray(0, batch.count * keySize))
      for (let i = 0; i < batch.count; i++) {
        yield [batch.keys.subarray(i * keySize, (i + 1) * keySize), batch.values.subarray(i * stride, (i + 1) * stride)]
      }
      token = batch.token
    } while (token !== null)
  }

  #keySet(batches: Uint8Array[]): Set<string> {
    const { keySize } = this.info
    const keys = new Set<string>()
    for (const bytes of batches) {
      for (let at = 0; at < bytes.byteLength; at += keySize) keys.add(Buffer.from(bytes.buffer, bytes.byteOffset + at, keySize).toString('latin1'))
    }
    return keys
  }

  #splitPerCpu(value: Uint8Array): Uint8Array[] {
    const stride = this.#perCpuStride()
    const out: Uint8Array[] = []
    for (let cpu = 0; cpu < possibleCpus; cpu++) out.push(value.subarray(cpu * stride, cpu * stride + this.info.valueSize))
    return out
  }

  #perCpuStride(): number {
    return (this.info.valueSize + 7) & ~7
  }

  #checkKey(key: Uint8Array): void {
    if (!(key instanceof Uint8Array)) throw new TypeError(`map ${this.name}: key must be a Uint8Array`)
    if (key.byteLength !== this.info.keySize) throw new Error(`map ${this.name}: key is ${key.byteLength} bytes, expected ${this.info.keySize}`)
  }

  #call<T>(what: string, fn: () => T): T {
    try {
      return fn()
    } catch (error) {
      throw explain(error, `${what} map ${this.name}`)
    }
  }
}

/** Turns objects into bytes and back; the generated bpf/lib/<name>.types.ts files provide them. */
export interface Codec<T> {
  size: number
  decode(view: DataView, offset: number, size?: number): T
  encode?(value: T, view: DataView, offset: number): void
}

export class TypedMap<K, V> {
  readonly raw: BpfMap
  readonly #key: Codec<K>
  readonly #value: Codec<V>

  constructor(raw: BpfMap, key: Codec<K>, value: Codec<V>) {
    if (key.size !== raw.keySize || value.size !== raw.valueSize) {
      throw new Error(`map ${raw.name}: codec sizes (key ${key.size}, value ${value.size}) do not match the map (key ${raw.keySize}, value ${raw.valueSize}); regenerate types with \`npm run build\``)
    }
    this.raw = raw
    this.#key = key
    this.#value = value
  }

  lookup(key: K): V | undefined {
    const bytes = this.raw.lookup(this.#encode(this.#key, key))
    return bytes === undefined ? undefined : this.#decode(this.#value, bytes)
  }

  update(key: K, value: V, flags = BPF_ANY): void {
    this.raw.update(this.#encode(this.#key, key), this.#encode(this.#value, value), flags)
  }

  delete(key: K): boolean {
    return this.raw.delete(this.#encode(this.#key, key))
  }

  *entries(): Iterable<[K, V]> {
    for (const [k, v] of this.raw.entries()) yield [this.#decode(this.#key, k), this.#decode(this.#value, v)]
  }

  #encode<T>(codec: Codec<T>, value: T): Uint8Array {
    if (codec.encode === undefined) throw new Error(`map ${this.raw.name}: this type has no encoder`)
    const bytes = new Uint8Array(codec.size)
    codec.encode(value, new DataView(bytes.buffer), 0)
    return bytes
  }

  #decode<T>(codec: Codec<T>, bytes: Uint8Array): T {
    return codec.decode(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), 0, bytes.byteLength)
  }
}
