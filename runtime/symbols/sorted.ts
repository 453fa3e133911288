/**
 * Binary search over sorted start addresses, shared by every table in symbols/ and the unwinder
 * (one per frame or address looked up: it allocates nothing).
 */

/**
 * The index of the last element of `sorted[from..to)` (ascending) that is at most `value`, or
 * `from - 1` when none is.
 */
export function lastAtOrBefore(sorted: ArrayLike<number>, value: number, from = 0, to = sorted.length): number {
  let low = from, high = to
  while (low < high) {
    const middle = (low + high) >>> 1
    if (sorted[middle]! <= value) low = middle + 1
    else high = middle
  }
  return low - 1
}
