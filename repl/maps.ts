/**
 * The maps a bpftrace program fills, as plain data: what the printers print and what an
 * aggregator (user space today, BPF maps later) hands them. Also the order bpftrace 0.17 prints
 * a map's entries in (`BPFtrace::print_map*` and `sort_by_key` in its `src/bpftrace.cpp`).
 *
 * Value conventions, per `MapShape.kind`:
 * - `count`, `sum`, `integer` (`@x = expr`): a bigint, already wrapped to 64 bits: signed
 *   (int64) when `signed`, else unsigned (uint64). `count` is always unsigned.
 * - `min`, `max`: the value bpftrace prints (see `bpftrace/aggregate.ts` for how 0.17 stores them).
 * - `avg`, `stats`: `[count, total]`, total as int64.
 * - `hist`: bucket counts by index: 0 holds negative values, 1 holds 0, 2 + k holds
 *   [2^k, 2^(k+1)). Shorter arrays read as zeros past their end.
 * - `lhist`: bucket counts: 0 below `range.min`, 1 + i for [min + i*step, min + (i+1)*step),
 *   and (max - min) / step + 1 for max and above.
 * - `string`: a string.
 * Keys are one part per key expression: integers as bigint (bpftrace widens them to 64 bits),
 * strings as strings.
 */
import { cxxSort } from './cxx-sort.ts'

export type KeyPart = bigint | string
export type KeyType = 'integer' | 'string'
export type MapKind = 'count' | 'sum' | 'integer' | 'min' | 'max' | 'avg' | 'stats' | 'hist' | 'lhist' | 'string'

/** lhist(value, min, max, step) bounds. */
export interface LinearRange {
  min: number
  max: number
  step: number
}

export interface MapShape {
  /** with its `@`: `@` alone for the anonymous map */
  name: string
  kind: MapKind
  /** for `sum` and `integer`: whether the value is int64 rather than uint64 */
  signed: boolean
  keys: KeyType[]
  /** lhist maps only */
  range?: LinearRange
}

export type MapValue = bigint | string | bigint[]

export interface MapEntry {
  key: KeyPart[]
  value: MapValue
}

export interface MapSnapshot extends MapShape {
  entries: MapEntry[]
}

const U64 = (value: bigint) => BigInt.asUintN(64, value)

/** bpftrace's `sort_by_key`: each integer part compared as uint64, each string part as bytes (strncmp). */
function compareKeys(a: KeyPart[], b: KeyPart[]): number {
  for (let i = 0; i < a.length; i++) {
    const x = a[i]
    const y = b[i]
    const order = typeof x === 'bigint' ? compareBigints(U64(x), U64(y as bigint)) : Buffer.compare(Buffer.from(x), Buffer.from(y as string))
    if (order !== 0) return order
  }
  return 0
}

function compareBigints(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/**
 * The raw bytes of a key as bpftrace stores it (integers as 8 little-endian bytes, strings
 * NUL-padded), which is the order of the `std::map` that hist and stats maps are gathered in.
 */
function keyBytes(key: KeyPart[], stringSizes: number[]): Buffer {
  const parts = key.map((part, i) => {
    if (typeof part === 'bigint') {
      const bytes = Buffer.alloc(8)
      bytes.writeBigUInt64LE(U64(part))
      return bytes
    }
    const bytes = Buffer.alloc(stringSizes[i])
    Buffer.from(part).copy(bytes)
    return bytes
  })
  return Buffer.concat(parts)
}

/** Sum of a histogram's buckets, as bpftrace totals them to order hist maps. */
export function histTotal(buckets: bigint[]): bigint {
  let total = 0n
  for (const count of buckets) total += count
  return U64(total)
}

/** avg() and stats()' average: total / count truncated towards zero, 0 for no samples. */
export function average([count, total]: bigint[]): bigint {
  return count === 0n ? 0n : BigInt.asIntN(64, total / count)
}

/**
 * The entries in the order bpftrace prints them:
 * - count, sum, integer, min, max: by value, ascending (bpftrace sorts these with an unstable
 *   sort over the kernel's hash order, so equal values come out in no fixed order there; here
 *   they keep key order);
 * - hist, lhist: by total count, avg and stats by average, with libstdc++'s `std::sort` over key
 *   byte order, exactly as bpftrace does;
 * - string values: by key.
 */
export function orderedEntries(map: MapSnapshot): MapEntry[] {
  const entries = [...map.entries]
  switch (map.kind) {
    case 'count':
    case 'sum':
    case 'integer':
    case 'min':
    case 'max': {
      // max values are compared as uint64 by bpftrace, the others as printed
      const sortValue = (entry: MapEntry) => (map.kind === 'max' || (map.kind !== 'min' && !map.signed) ? U64(entry.value as bigint) : BigInt.asIntN(64, entry.value as bigint))
      entries.sort((a, b) => compareKeys(a.key, b.key))
      return entries.sort((a, b) => compareBigints(sortValue(a), sortValue(b)))
    }
    case 'hist':
    case 'lhist':
    case 'avg':
    case 'stats': {
      const sizes = map.keys.map((_, i) => Math.max(0, ...entries.map((e) => (typeof e.key[i] === 'string' ? Buffer.byteLength(e.key[i] as string) + 1 : 0))))
      const keyed = entries.map((entry) => ({ entry, bytes: keyBytes(entry.key, sizes), total: map.kind === 'hist' || map.kind === 'lhist' ? histTotal(entry.value as bigint[]) : average(entry.value as bigint[]) }))
      keyed.sort((a, b) => Buffer.compare(a.bytes, b.bytes))
      cxxSort(keyed, (a, b) => a.total < b.total)
      return keyed.map((k) => k.entry)
    }
    case 'string':
      return entries.sort((a, b) => compareKeys(a.key, b.key))
  }
}
