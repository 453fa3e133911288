/**
 * A sorted table of named address ranges, the common lookup of ELF symbol tables, the kernel's
 * kallsyms and JIT perf maps: address -> the range holding it, by binary search over two
 * Float64Arrays, with names decoded only when a lookup lands on them. Names are as the table
 * has them (mangled): the symbolizer demangles a batch's names together (demangle.ts).
 *
 * Addresses are numbers: user-space addresses (< 2^47) and offsets inside the kernel's text fit
 * a double exactly; kallsyms.ts subtracts a base to get there.
 */
import { lastAtOrBefore } from './sorted.ts'

/** How many ranges before the one found a lookup also tries, for a range nested in a larger one. */
const NESTING_LOOKBACK = 8

export interface SymbolRange {
  start: number
  /** Exclusive; equal to `start` for a symbol without a size, which then runs to the next start (at most to `limit`). */
  end: number
  /** How far a symbol without a size may run: the end of its section. */
  limit?: number
  /** Among names of the same start, the lower wins (see chooseAmongAliases). */
  rank: number
  /** An index into the name source given to SymbolTable.build. */
  name: number
}

export class SymbolTable {
  readonly #starts: Float64Array
  readonly #ends: Float64Array
  readonly #nameIds: Uint32Array
  readonly #nameOf: (id: number) => string
  /** Names decoded so far, filled as lookups land on them: a few thousand of a table's 100,000. */
  readonly #names = new Map<number, string>()
  readonly #release: (() => void) | undefined

  private constructor(starts: Float64Array, ends: Float64Array, nameIds: Uint32Array, nameOf: (id: number) => string, release: (() => void) | undefined) {
    this.#starts = starts
    this.#ends = ends
    this.#nameIds = nameIds
    this.#nameOf = nameOf
    this.#release = release
  }

  /**
   * Sorts `ranges` by start; of ranges starting at the same address, keeps the one of lowest
   * rank, and of those the first given (as perf keeps the earlier of two equal ELF symbols). A range
   * without a size ends at the next start, or `lastUnsizedSize` on when it is the last.
   * `nameOf` turns a range's `name` into its name when a lookup first needs it; `release` frees
   * what it reads from (release()).
   */
  static build(ranges: SymbolRange[], nameOf: (id: number) => string, lastUnsizedSize: number = 1, release?: () => void): SymbolTable {
    const order = byStart(ranges)
    const kept: SymbolRange[] = []
    for (let i = 0; i < order.length;) {
      // of a run of one start (in the order given), the lowest rank; of equals, the first
      let best = ranges[order[i]!]!
      let next = i + 1
      for (; next < order.length && ranges[order[next]!]!.start === best.start; next++) {
        if (ranges[order[next]!]!.rank < best.rank) best = ranges[order[next]!]!
      }
      kept.push(best)
      i = next
    }
    const starts = new Float64Array(kept.length), ends = new Float64Array(kept.length), nameIds = new Uint32Array(kept.length)
    for (let i = 0; i < kept.length; i++) {
      const range = kept[i]!
      starts[i] = range.start
      // a symbol without a size (hand-written assembly, kallsyms) runs to the next one
      ends[i] = range.end !== range.start ? range.end : Math.min(i + 1 < kept.length ? kept[i + 1]!.start : range.start + lastUnsizedSize, range.limit ?? Infinity)
      nameIds[i] = range.name
    }
    return new SymbolTable(starts, ends, nameIds, nameOf, release)
  }

  get size(): number {
    return this.#starts.length
  }

  /** The index of the range holding `address`, or -1. */
  indexOf(address: number): number {
    const last = lastAtOrBefore(this.#starts, address)
    for (let i = last; i >= 0 && i >= last - NESTING_LOOKBACK; i--) {
      if (address < this.#ends[i]!) return i
    }
    return -1
  }

  start(index: number): number {
    return this.#starts[index]!
  }

  /** The name id (SymbolRange.name) of range `index`. */
  nameId(index: number): number {
    return this.#nameIds[index]!
  }

  /** The name of range `index`, as the table spells it. */
  name(index: number): string {
    let name = this.#names.get(index)
    if (name === undefined) this.#names.set(index, name = this.#nameOf(this.#nameIds[index]!))
    return name
  }

  /** Frees the source of the names not yet decoded (a file left open); no name is read after. */
  release(): void {
    this.#release?.()
  }
}

/** Bits of a packed sort key that hold the range's index: up to 2^21 ranges sort the fast way. */
const INDEX_BITS = 2 ** 21
/** Starts spanning less than this pack beside their index into a double exactly (2^32 * 2^21 = 2^53). */
const SPAN_LIMIT = 2 ** 32

/**
 * The indices of `ranges` by start, and in the order given among equal starts. A table's starts
 * (ELF virtual addresses; kallsyms keys less the lowest) span less than 4 GB: packed as
 * (start - lowest) * 2^21 + index into doubles, they sort natively, five times faster than a
 * comparator over the objects (100,000 of Node's functions: 40 ms against 230 ms).
 */
function byStart(ranges: readonly SymbolRange[]): Uint32Array {
  let lowest = Infinity, highest = -Infinity
  for (const range of ranges) {
    lowest = Math.min(lowest, range.start)
    highest = Math.max(highest, range.start)
  }
  if (ranges.length <= INDEX_BITS && highest - lowest < SPAN_LIMIT) {
    const keys = new Float64Array(ranges.length)
    for (let i = 0; i < ranges.length; i++) keys[i] = (ranges[i]!.start - lowest) * INDEX_BITS + i
    keys.sort()
    const order = new Uint32Array(keys.length)
    for (let i = 0; i < keys.length; i++) order[i] = keys[i]! % INDEX_BITS
    return order
  }
  return Uint32Array.from(ranges.keys()).sort((a, b) => ranges[a]!.start - ranges[b]!.start || a - b)
}

/**
 * perf's choice among symbols of one address (choose_best_symbol): one with a size before one
 * without, a strong symbol before a weak one, a global one before a local one, fewer leading
 * underscores, then the longer name. Lower is better; fits the `rank` of a SymbolRange.
 */
export function aliasRank(sized: boolean, binding: 'global' | 'weak' | 'local', underscores: number, length: number): number {
  const bindingRank = binding === 'global' ? 0 : binding === 'local' ? 1 : 2
  return (((sized ? 0 : 3) + bindingRank) * 16 + Math.min(underscores, 15)) * 65536 + (65535 - Math.min(length, 65535))
}
