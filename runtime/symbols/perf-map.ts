/**
 * Perf maps, `/tmp/perf-<pid>.map`: the names a JIT runtime gives the code it generates, one
 * `START SIZE name` line (hex, 0x optional) per piece of code, appended as the code is made.
 * Node writes one with `--perf-basic-prof` (`LazyCompile:*hot /app/main.js:3`), Python 3.12+
 * with `-X perf` (`py::hot:/app/main.py`), the JVM through perf-map-agent.
 *
 * The file is read where the process sees it (/proc/<pid>/root/tmp/perf-<its own pid>.map, so a
 * containerised process's map is found) and only if the process's user or root owns it, as perf
 * does: a file in /tmp could be planted by anyone. It is read incrementally: refresh() parses only
 * what was appended since. Code that is moved or freed leaves its old line behind; of lines that
 * overlap, the later wins.
 */
import { closeSync, fstatSync, openSync, readFileSync, readSync, statSync } from 'node:fs'
import { lastAtOrBefore } from './sorted.ts'

/** Ranges before the one found that a lookup also tries, for the later of overlapping lines. */
const OVERLAP_LOOKBACK = 64

export interface JitSymbol {
  name: string
  /** From the code's start. */
  offset: number
}

export class PerfMap {
  readonly path: string
  #readUpTo = 0
  /** A line cut short by the end of the file at the last read. */
  #partial = ''
  readonly #starts: number[] = []
  readonly #ends: number[] = []
  readonly #names: string[] = []
  /** Line numbers sorted by (start, line); rebuilt after a refresh that added lines. */
  #order: Uint32Array = new Uint32Array(0)
  #sortedStarts: Float64Array = new Float64Array(0)

  private constructor(path: string) {
    this.path = path
  }

  /**
   * The perf map of process `pid`, or undefined when it has none (or one owned by another user,
   * which is ignored). Nothing is read until refresh().
   */
  static of(pid: number, procRoot: string = '/proc'): PerfMap | undefined {
    let namespacePid: number
    try {
      namespacePid = innermostPid(readFileSync(`${procRoot}/${pid}/status`, 'latin1')) ?? pid
    } catch {
      return undefined
    }
    // /proc/<pid>/root opens only for the process's user (or CAP_SYS_PTRACE): once the runtime
    // runs as nobody, a process of Periscope's own pid namespace has its map in our /tmp too
    const paths = [`${procRoot}/${pid}/root/tmp/perf-${namespacePid}.map`]
    if (namespacePid === pid && procRoot === '/proc') paths.push(`/tmp/perf-${pid}.map`)
    for (const path of paths) {
      try {
        const owner = statSync(path).uid
        if (owner !== 0 && owner !== statSync(`${procRoot}/${pid}`).uid) return undefined
      } catch {
        continue
      }
      return new PerfMap(path)
    }
    return undefined
  }

  /** A perf map at `path`, not checked for its owner (tests, `perf inject` output). */
  static at(path: string): PerfMap {
    return new PerfMap(path)
  }

  get size(): number {
    return this.#names.length
  }

  /**
   * Reads what was appended since the last refresh; returns whether lines were added. A file
   * that shrank (the process exec'd into a new JIT and truncated it) is read again from the start.
   */
  refresh(): boolean {
    let fd: number
    try {
      fd = openSync(this.path, 'r')
    } catch {
      return false
    }
    try {
      const size = fstatSync(fd).size
      if (size < this.#readUpTo) this.#clear()
      if (size === this.#readUpTo) return false
      const chunk = Buffer.allocUnsafe(size - this.#readUpTo)
      let done = 0
      while (done < chunk.byteLength) {
        const read = readSync(fd, chunk, done, chunk.byteLength - done, this.#readUpTo + done)
        if (read === 0) break
        done += read
      }
      this.#readUpTo += done
      const before = this.#names.length
      this.#parse(this.#partial + chunk.toString('utf8', 0, done))
      if (this.#names.length !== before) this.#index()
      return this.#names.length !== before
    } finally {
      closeSync(fd)
    }
  }

  /** The JIT code holding `address`, or undefined. */
  lookup(address: number): JitSymbol | undefined {
    const last = lastAtOrBefore(this.#sortedStarts, address)
    let best = -1
    for (let i = last; i >= 0 && i >= last + 1 - OVERLAP_LOOKBACK; i--) {
      const line = this.#order[i]!
      if (address < this.#ends[line]! && line > best) best = line
    }
    return best < 0 ? undefined : { name: this.#names[best]!, offset: address - this.#starts[best]! }
  }

  #parse(text: string): void {
    let at = 0
    for (;;) {
      const end = text.indexOf('\n', at)
      if (end < 0) break
      this.#parseLine(text, at, end)
      at = end + 1
    }
    this.#partial = text.slice(at)
  }

  #parseLine(text: string, at: number, end: number): void {
    const space = text.indexOf(' ', at)
    const second = space < 0 ? -1 : text.indexOf(' ', space + 1)
    if (second < 0 || second >= end) return
    const start = parseHex(text.slice(at, space)), size = parseHex(text.slice(space + 1, second))
    if (Number.isNaN(start) || Number.isNaN(size) || size === 0) return
    this.#starts.push(start)
    this.#ends.push(start + size)
    this.#names.push(text.slice(second + 1, end))
  }

  #index(): void {
    const order = Uint32Array.from(this.#starts.keys())
    order.sort((a, b) => this.#starts[a]! - this.#starts[b]! || a - b)
    this.#order = order
    this.#sortedStarts = Float64Array.from(order, (line) => this.#starts[line]!)
  }

  #clear(): void {
    this.#readUpTo = 0
    this.#partial = ''
    this.#starts.length = 0
    this.#ends.length = 0
    this.#names.length = 0
  }
}

function parseHex(text: string): number {
  return parseInt(text.startsWith('0x') ? text.slice(2) : text, 16)
}

/** The process's pid in its own pid namespace: the last of the NSpid line of /proc/<pid>/status. */
function innermostPid(status: string): number | undefined {
  const line = /^NSpid:\s*(.*)$/m.exec(status)
  const last = line?.[1]!.trim().split(/\s+/).at(-1)
  return last === undefined ? undefined : Number(last)
}
