/**
 * Where a one-liner's maps live while it runs. `Aggregator` is the interface the evaluator
 * writes through; `UserSpaceAggregator` keeps the maps in JavaScript. A later version can put
 * the same maps in BPF (per-CPU hash maps filled by a generated program) behind this interface
 * and hand the printers the same `MapSnapshot`s.
 *
 * The arithmetic is bpftrace 0.17's (`CodegenLLVM` in its `src/ast/passes/codegen_llvm.cpp`),
 * so the maps print what Debian's bpftrace prints for the same events, quirks included:
 * - `hist()` computes log2 with five shift steps of at most 16, 8, 4, 2 and 1, so every value
 *   from 2^31 up lands in the [2G, 4G) bucket;
 * - `min()` stores 0xffffffff - value and keeps the largest, starting from 0: a value above
 *   0xffffffff is never stored, and 0xffffffff itself prints as 0;
 * - `max()` keeps values >= the stored one, starting from 0: a map that only ever saw negative
 *   values stays empty;
 * - `lhist()` puts a value equal to `max` in the `[max, ...)` bucket.
 */
import type { KeyPart, LinearRange, MapShape, MapSnapshot, MapValue } from '../maps.ts'

export interface Aggregator {
  count(map: number, key: KeyPart[]): void
  sum(map: number, key: KeyPart[], value: bigint): void
  min(map: number, key: KeyPart[], value: bigint): void
  max(map: number, key: KeyPart[], value: bigint): void
  /** avg() and stats() store the same count and total */
  avg(map: number, key: KeyPart[], value: bigint): void
  hist(map: number, key: KeyPart[], value: bigint): void
  lhist(map: number, key: KeyPart[], value: bigint): void
  /** `@map[key] = value` */
  assign(map: number, key: KeyPart[], value: bigint | string): void
  /** a map read in an expression: what bpftrace reads (0 or "" when the key is missing) */
  read(map: number, key: KeyPart[]): bigint | string
  delete(map: number, key: KeyPart[]): void
  clear(map: number): void
  snapshot(map: number): MapSnapshot
  snapshots(): MapSnapshot[]
}

const INVERTED_MIN_BASE = 0xffffffffn

/** bpftrace 0.17's hist bucket index of a 64-bit value (see the file comment). */
export function log2Bucket(value: bigint): number {
  if (value < 0n) return 0
  if (value === 0n) return 1
  if (value >= 0x80000000n) return 33
  return 2 + (31 - Math.clz32(Number(value)))
}

/** bpftrace 0.17's lhist bucket index. */
export function linearBucket(value: bigint, range: LinearRange): number {
  const min = BigInt(range.min)
  const max = BigInt(range.max)
  const step = BigInt(range.step)
  if (value < min) return 0
  if (value > max) return Number((max - min) / step) + 1
  return Number((value - min) / step) + 1
}

/** The bucket count a hist or lhist map's values have. */
function bucketCount(shape: MapShape): number {
  if (shape.kind === 'hist') return 34
  const range = shape.range!
  return Math.trunc((range.max - range.min) / range.step) + 2
}

interface Slot {
  key: KeyPart[]
  value: MapValue
}

/** One part per key expression, joined; no key part ever holds a NUL (strings end at one). */
function encodeKey(key: KeyPart[]): string {
  let encoded = ''
  for (const part of key) encoded += typeof part === 'bigint' ? `\0n${part}` : `\0s${part}`
  return encoded
}

export class UserSpaceAggregator implements Aggregator {
  readonly #shapes: MapShape[]
  readonly #maps: Map<string, Slot>[]

  /** `shapes[i]` describes map `i`, as the semantic pass declared it. */
  constructor(shapes: MapShape[]) {
    this.#shapes = shapes
    this.#maps = shapes.map(() => new Map())
  }

  #slot(map: number, key: KeyPart[], initial: () => MapValue): Slot {
    const slots = this.#maps[map]
    const encoded = encodeKey(key)
    let slot = slots.get(encoded)
    if (!slot) {
      slot = { key, value: initial() }
      slots.set(encoded, slot)
    }
    return slot
  }

  #stored(map: number, key: KeyPart[]): Slot | undefined {
    return this.#maps[map].get(encodeKey(key))
  }

  count(map: number, key: KeyPart[]): void {
    const slot = this.#slot(map, key, () => 0n)
    slot.value = BigInt.asUintN(64, (slot.value as bigint) + 1n)
  }

  sum(map: number, key: KeyPart[], value: bigint): void {
    const slot = this.#slot(map, key, () => 0n)
    slot.value = BigInt.asIntN(64, (slot.value as bigint) + value)
  }

  min(map: number, key: KeyPart[], value: bigint): void {
    const inverted = BigInt.asIntN(64, INVERTED_MIN_BASE - value)
    const stored = this.#stored(map, key)
    if (inverted >= ((stored?.value as bigint | undefined) ?? 0n)) this.#slot(map, key, () => 0n).value = inverted
  }

  max(map: number, key: KeyPart[], value: bigint): void {
    const stored = this.#stored(map, key)
    if (value >= ((stored?.value as bigint | undefined) ?? 0n)) this.#slot(map, key, () => 0n).value = value
  }

  avg(map: number, key: KeyPart[], value: bigint): void {
    const slot = this.#slot(map, key, () => [0n, 0n])
    const pair = slot.value as bigint[]
    pair[0] = BigInt.asIntN(64, pair[0] + 1n)
    pair[1] = BigInt.asIntN(64, pair[1] + value)
  }

  hist(map: number, key: KeyPart[], value: bigint): void {
    const buckets = this.#slot(map, key, () => new Array<bigint>(34).fill(0n)).value as bigint[]
    buckets[log2Bucket(value)]++
  }

  lhist(map: number, key: KeyPart[], value: bigint): void {
    const shape = this.#shapes[map]
    const buckets = this.#slot(map, key, () => new Array<bigint>(bucketCount(shape)).fill(0n)).value as bigint[]
    buckets[linearBucket(value, shape.range!)]++
  }

  assign(map: number, key: KeyPart[], value: bigint | string): void {
    this.#slot(map, key, () => value).value = value
  }

  read(map: number, key: KeyPart[]): bigint | string {
    const shape = this.#shapes[map]
    const slot = this.#stored(map, key)
    if (!slot) return shape.kind === 'string' ? '' : 0n
    return readable(shape, slot.value)
  }

  delete(map: number, key: KeyPart[]): void {
    this.#maps[map].delete(encodeKey(key))
  }

  clear(map: number): void {
    this.#maps[map].clear()
  }

  snapshot(map: number): MapSnapshot {
    const shape = this.#shapes[map]
    const entries = [...this.#maps[map].values()].map((slot) => ({ key: slot.key, value: printable(shape, slot.value) }))
    // bpftrace 0.17 prints a keyless count() map that never counted, or was cleared, as `@c: 0`
    // (its other maps print nothing then)
    if (entries.length === 0 && shape.kind === 'count' && shape.keys.length === 0) entries.push({ key: [], value: 0n })
    return { ...shape, entries }
  }

  snapshots(): MapSnapshot[] {
    return this.#shapes.map((_, i) => this.snapshot(i))
  }
}

/** The stored value as the printers take it: min() is stored inverted. */
function printable(shape: MapShape, value: MapValue): MapValue {
  if (shape.kind === 'min') return value === 0n ? 0n : INVERTED_MIN_BASE - (value as bigint)
  if (Array.isArray(value)) return [...value]
  return value
}

/** What reading a map in an expression gives: avg() reads as its average. */
function readable(shape: MapShape, value: MapValue): bigint | string {
  if (shape.kind === 'avg' || shape.kind === 'stats') {
    const [count, total] = value as bigint[]
    return count === 0n ? 0n : total / count
  }
  return printable(shape, value) as bigint | string
}
