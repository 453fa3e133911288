/**
 * libstdc++'s `std::sort` (introsort: median-of-three quicksort down to runs of 16, heapsort
 * past the depth limit, then one insertion sort), step for step.
 *
 * bpftrace 0.17 orders hist, lhist, avg and stats maps with `std::sort` over entries that start
 * in key-byte order, so entries with equal totals come out in the order this unstable sort
 * leaves them. Running the same algorithm on the same starting order prints them where
 * bpftrace does, for any number of keys. `less` is the strict weak order `std::sort` is given.
 */

const THRESHOLD = 16

export function cxxSort<T>(items: T[], less: (a: T, b: T) => boolean): void {
  if (items.length < 2) return
  introsortLoop(items, 0, items.length, 2 * (31 - Math.clz32(items.length)), less)
  finalInsertionSort(items, 0, items.length, less)
}

function introsortLoop<T>(items: T[], first: number, last: number, depthLimit: number, less: (a: T, b: T) => boolean): void {
  while (last - first > THRESHOLD) {
    if (depthLimit === 0) {
      heapSort(items, first, last, less)
      return
    }
    depthLimit--
    const cut = partitionPivot(items, first, last, less)
    introsortLoop(items, cut, last, depthLimit, less)
    last = cut
  }
}

function swap<T>(items: T[], i: number, j: number): void {
  const held = items[i]
  items[i] = items[j]
  items[j] = held
}

function partitionPivot<T>(items: T[], first: number, last: number, less: (a: T, b: T) => boolean): number {
  const mid = first + ((last - first) >> 1)
  moveMedianToFirst(items, first, first + 1, mid, last - 1, less)
  // the pivot stays at `first` while the rest is partitioned around it
  let low = first + 1
  let high = last
  for (;;) {
    while (less(items[low], items[first])) low++
    high--
    while (less(items[first], items[high])) high--
    if (!(low < high)) return low
    swap(items, low, high)
    low++
  }
}

function moveMedianToFirst<T>(items: T[], result: number, a: number, b: number, c: number, less: (a: T, b: T) => boolean): void {
  if (less(items[a], items[b])) {
    if (less(items[b], items[c])) swap(items, result, b)
    else if (less(items[a], items[c])) swap(items, result, c)
    else swap(items, result, a)
  } else if (less(items[a], items[c])) swap(items, result, a)
  else if (less(items[b], items[c])) swap(items, result, c)
  else swap(items, result, b)
}

function finalInsertionSort<T>(items: T[], first: number, last: number, less: (a: T, b: T) => boolean): void {
  if (last - first > THRESHOLD) {
    insertionSort(items, first, first + THRESHOLD, less)
    for (let i = first + THRESHOLD; i < last; i++) linearInsert(items, i, less)
  } else {
    insertionSort(items, first, last, less)
  }
}

function insertionSort<T>(items: T[], first: number, last: number, less: (a: T, b: T) => boolean): void {
  for (let i = first + 1; i < last; i++) {
    if (less(items[i], items[first])) {
      const value = items[i]
      for (let j = i; j > first; j--) items[j] = items[j - 1]
      items[first] = value
    } else {
      linearInsert(items, i, less)
    }
  }
}

/** `__unguarded_linear_insert`: a smaller element is known to sit somewhere to the left. */
function linearInsert<T>(items: T[], last: number, less: (a: T, b: T) => boolean): void {
  const value = items[last]
  let next = last - 1
  while (less(value, items[next])) {
    items[last] = items[next]
    last = next
    next--
  }
  items[last] = value
}

/** `std::__partial_sort(first, last, last)`: make_heap, then pop every element. */
function heapSort<T>(items: T[], first: number, last: number, less: (a: T, b: T) => boolean): void {
  const length = last - first
  for (let parent = (length - 2) >> 1; parent >= 0; parent--) adjustHeap(items, first, parent, length, items[first + parent], less)
  for (let end = last - 1; end > first; end--) {
    const value = items[end]
    items[end] = items[first]
    adjustHeap(items, first, 0, end - first, value, less)
  }
}

function adjustHeap<T>(items: T[], first: number, hole: number, length: number, value: T, less: (a: T, b: T) => boolean): void {
  const top = hole
  let child = hole
  while (child < (length - 1) >> 1) {
    child = 2 * (child + 1)
    if (less(items[first + child], items[first + child - 1])) child--
    items[first + hole] = items[first + child]
    hole = child
  }
  if ((length & 1) === 0 && child === (length - 2) >> 1) {
    child = 2 * (child + 1)
    items[first + hole] = items[first + child - 1]
    hole = child - 1
  }
  // __push_heap: move the value up from the hole towards top
  let parent = (hole - 1) >> 1
  while (hole > top && less(items[first + parent], value)) {
    items[first + hole] = items[first + parent]
    hole = parent
    parent = (hole - 1) >> 1
  }
  items[first + hole] = value
}
