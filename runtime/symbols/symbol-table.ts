/**
 * A sorted table of named address ranges, the common lookup of ELF symbol tables, the kernel's
 * kallsyms and JIT perf maps: address -> the range holding it, by binary search over two
 * Float64Arrays, with names decoded only when a lookup lands on them. Names are as the table
 * has them (mangled): the symbolizer demangles a batch's names together (demangle.ts).
 *
 * Addresses are numbers: user-space addresses (< 2^47) and offsets inside the kernel's text fit
 * a double exactly; kallsyms.ts subtracts a base to get there.
 */
/** How many ranges before the one found a lookup also tries, for a range nested in a larger one. */
const NESTING_LOOKBACK = 8

export interface SymbolRange {
  start: number
  /** Exclusive. */
  end: number
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
  /** Names decoded so far, filled as lookups land on them. */
  readonly #names: (string | undefined)[]

  private constructor(starts: Float64Array, ends: Float64Array, nameIds: Uint32Array, nameOf: (id: number) => string) {
    this.#starts = starts
    this.#ends = ends
    this.#nameIds = nameIds
    this.#nameOf = nameOf
    this.#names = new Array<string | undefined>(starts.length)
  }

  /**
   * Sorts `ranges` by start; of ranges starting at the same address, keeps the one of lowest
   * rank, and of those the last given (perf keeps the later of two equal symbols).
   * `nameOf` turns a range's `name` into its name when a lookup first needs it.
   */
  static build(ranges: SymbolRange[], nameOf: (id: number) => string): SymbolTable {
    // sort is stable: equal (start, rank) stay in the order given
    ranges.sort((a, b) => a.start - b.start || a.rank - b.rank)
    let kept = 0
    for (let i = 0; i < ranges.length; i++) {
      const previous = ranges[kept - 1]
      if (previous !== undefined && previous.start === ranges[i]!.start) {
        if (previous.rank === ranges[i]!.rank) ranges[kept - 1] = ranges[i]!
        continue
      }
      ranges[kept++] = ranges[i]!
    }
    const starts = new Float64Array(kept), ends = new Float64Array(kept), nameIds = new Uint32Array(kept)
    for (let i = 0; i < kept; i++) {
      starts[i] = ranges[i]!.start
      ends[i] = ranges[i]!.end
      nameIds[i] = ranges[i]!.name
    }
    return new SymbolTable(starts, ends, nameIds, nameOf)
  }

  get size(): number {
    return this.#starts.length
  }

  /** The index of the range holding `address`, or -1. */
  indexOf(address: number): number {
    let low = 0, high = this.#starts.length
    while (low < high) {
      const middle = (low + high) >>> 1
      if (this.#starts[middle]! <= address) low = middle + 1
      else high = middle
    }
    for (let i = low - 1; i >= 0 && i >= low - 1 - NESTING_LOOKBACK; i--) {
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
    return this.#names[index] ??= this.#nameOf(this.#nameIds[index]!)
  }
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
