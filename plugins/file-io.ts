/**
 * File I/O metrics for every process on the host, from the `fileio` object: read and write calls
 * (read, write, pread64, pwrite64, readv, writev, preadv, pwritev, preadv2, pwritev2), their bytes
 * and latency, and fsync/fdatasync, on regular files only (sockets, pipes and devices are not file
 * I/O). The kernel counts them per process in a map read every `collect_interval_ms`; a process's
 * last counts come on a ring when it exits or execs, and its kernel entry goes with them, so
 * memory follows the live processes and nothing a short-lived process did is lost. I/O that does
 * not go through these syscalls (mmap, io_uring, sendfile, splice, copy_file_range) is not seen.
 *
 * Metrics (counters are cumulative in the exporter; each point here is the increment since the
 * last collection). `file.operation` is `read`, `write`, `fsync` or `fdatasync`:
 * - `process.file.operations` {operation}: calls, by `file.operation`.
 * - `process.file.errors` {operation}: calls that returned an error, by `file.operation`.
 * - `process.file.io` (By): bytes read and written, by `file.io.direction` (`read`, `write`).
 * - `process.file.operation.duration` (s, histogram): each call's time in the kernel, by
 *   `file.operation`; log2 buckets of 1 µs to 2^22 µs, counted in the kernel.
 * Each carries `process.executable.name` (the comm) and `process.executable.path` (the executable,
 * from the global root); with `per_pid: true` also `process.pid`. It is off by default, as in the
 * processes plugin, because the exporter keeps a cumulative series for every attribute set it ever
 * saw: with pids, process churn makes series without end (past 2000 per metric the exporter folds
 * new ones into one `otel.metric.overflow` series).
 *
 * Per file, for the absolute paths in `target_paths` only (at most 64; symlinks are not followed,
 * so name the real path): the same four metrics named `file.operations`, `file.errors`, `file.io`
 * and `file.operation.duration`, by `file.path`, summed over every process. A target file is
 * recognised when it is opened, or found open when the plugin starts. While targets are named,
 * every open of a regular file on the host walks its path in the kernel (about 1 µs here);
 * without targets an open costs one array lookup.
 *
 * - `periscope.file_io.untracked` {event}: what the kernel could not store, by `reason`
 *   (`in_flight`: a call's start, whose bytes and time are lost; `processes`: a process's counts,
 *   whose calls are not counted; `target_inodes`: a target file opened; `path`: a path too long or
 *   deep to compare or name).
 *
 * Everything here is public plugin API: a user plugin can do the same.
 */
import { definePlugin, type MetricPointInput, type PluginContext, type TopicEvent } from 'periscope/plugin'
import {
  decodeFileioCounts, decodeFileioProcess, encodeFileioPath, fileioLatencyBoundaries, FILEIO_LATENCY_BUCKETS, FILEIO_MAX_TARGETS,
  FILEIO_OPS, FILEIO_OVERFLOWS, FILEIO_PATH_LEN, FILEIO_READ, FILEIO_WRITE, type FileioCounts,
} from 'periscope/protocols/fileio'

const config = {
  /** How often the kernel's counts are read and exported. */
  collect_interval_ms: 10_000,
  /** `process.pid` on the per-process metrics (see above: a series per pid that ever ran). */
  per_pid: false,
  /** Absolute paths of files counted one by one (`file.*` metrics). */
  target_paths: [] as string[],
}
type Config = typeof config

type ExitRecord = TopicEvent<'fileio:exits'>

const operations = ['read', 'write', 'fsync', 'fdatasync']
const directions = ['read', 'write']
const untrackedReasons = ['in_flight', 'processes', 'target_inodes', 'path']
const boundaries = [...fileioLatencyBoundaries]
const zeroKey = new Uint8Array(4)

/**
 * Counts as one flat list, so increments are element-wise differences: ops, errors, bytes,
 * latency sums (ns), then the latency buckets, op after op.
 */
const OPS_AT = 0
const ERRORS_AT = OPS_AT + FILEIO_OPS
const BYTES_AT = ERRORS_AT + FILEIO_OPS
const SUMS_AT = BYTES_AT + 2
const BUCKETS_AT = SUMS_AT + FILEIO_OPS
const FLAT_LENGTH = BUCKETS_AT + FILEIO_OPS * FILEIO_LATENCY_BUCKETS

function flatten(counts: FileioCounts): number[] {
  return [...counts.ops, ...counts.errors, ...counts.bytes, ...counts.latency_sum_ns, ...counts.latency_buckets]
}

/** A process's counts as last exported, and the collection that last saw it. */
interface Seen {
  counts: number[]
  round: number
}

/** Increments of one series, summed over an interval. */
interface Increments {
  attributes: Record<string, string | number>
  counts: number[]
}

/** What carries across a hot reload, so the new version neither repeats nor skips counts. */
interface CarriedState {
  seen: [string, number[]][]
  /** file_stats as last exported by index, with the path the index stood for */
  files: [string, number[] | null][]
  untracked: number[]
}

export default definePlugin({
  name: 'file-io',
  objects: ['fileio'],
  config,
  async setup(ctx) {
    const plugin = new FileIo(ctx)
    await plugin.nameTargets()
    ctx.on('fileio:exits', (record) => plugin.onExit(record))
    ctx.every(ctx.config.collect_interval_ms, () => plugin.collect())
    const targets = plugin.targets.length > 0 ? `, per file for ${plugin.targets.join(', ')}` : ''
    ctx.log.info(`file I/O metrics (reads, writes, fsync, bytes, latency) every ${ctx.config.collect_interval_ms} ms for every process${targets}`)
  },
})

class FileIo {
  readonly #ctx: PluginContext<Config>
  /** The target paths that passed the checks, by their index in the kernel's file_stats. */
  readonly targets: string[] = []
  /** By `<tgid>:<created_ns>`: every process entry in the kernel map at the last collections, or whose last record is not handled yet. */
  readonly #seen = new Map<string, Seen>()
  /** By series: increments since the last collection. */
  #pending = new Map<string, Increments>()
  /** file_stats as last exported, by index; undefined until first read. */
  #files: (number[] | undefined)[] = []
  #untracked: number[]
  #round = 0

  constructor(ctx: PluginContext<Config>) {
    this.#ctx = ctx
    const carried = ctx.state.fileio as CarriedState | undefined
    for (const [key, counts] of carried?.seen ?? []) this.#seen.set(key, { counts, round: 0 })
    this.#untracked = carried?.untracked ?? new Array<number>(FILEIO_OVERFLOWS).fill(0)
    this.targets = checkedTargets(ctx)
    // the previous version's baseline of an index holds only if it stood for the same path
    this.#files = this.targets.map((path, index) => (carried?.files[index]?.[0] === path ? carried.files[index][1] ?? undefined : undefined))
  }

  /**
   * Names the target paths to the kernel (held while this version runs), forgets the files the
   * previous version's targets found, and finds the targets that are open now.
   */
  async nameTargets(): Promise<void> {
    const paths = this.#ctx.map('fileio:target_paths')
    for (const [index, path] of this.targets.entries()) {
      const key = new Uint8Array(FILEIO_PATH_LEN)
      encodeFileioPath({ path }, new DataView(key.buffer), 0)
      await paths.claim(key, u32(index))
    }
    await this.#ctx.map('fileio:target_count').claim(zeroKey, u32(this.targets.length))
    await this.#ctx.map('fileio:target_inodes').drain()
    if (this.targets.length === 0) return
    // counts so far in file_stats are another version's (or another list's) at these indexes
    for (const [index, counts] of (await this.#readFileStats()).entries()) this.#files[index] ??= counts
    const found = await this.#ctx.iterate('fileio:open_targets')
    const open = new Set(found.split('\n').filter((line) => line !== '').map((line) => line.slice(line.indexOf(' ') + 1)))
    this.#ctx.log.info(`target files open now: ${open.size === 0 ? 'none' : [...open].join(', ')}`)
  }

  onExit(record: ExitRecord): void {
    const key = `${record.pid}:${record.created_ns}`
    this.#add(key, record, flatten(record.counts))
    this.#seen.delete(key)
  }

  async collect(): Promise<void> {
    this.#round++
    for (const [, value] of await this.#ctx.map('fileio:processes').entries()) {
      const process = decodeFileioProcess(new DataView(value.buffer, value.byteOffset, value.byteLength), 0)
      this.#add(`${process.pid}:${process.created_ns}`, process, flatten(process.counts))
    }
    // an entry gone from the map was flushed at exit or exec: its record, sent as the entry went,
    // normally came first; one more round is left for a record still on its way
    for (const [key, seen] of this.#seen) if (seen.round < this.#round - 1) this.#seen.delete(key)
    for (const { attributes, counts } of this.#pending.values()) this.#emitCounts('process.file', counts, attributes)
    this.#pending = new Map()
    await this.#emitFiles()
    await this.#emitUntracked()
    this.#ctx.state.fileio = {
      seen: Array.from(this.#seen, ([key, seen]) => [key, seen.counts]),
      files: this.targets.map((path, index) => [path, this.#files[index] ?? null]),
      untracked: this.#untracked,
    } satisfies CarriedState
  }

  /** Adds what a process counted since it was last seen to its series' increments. */
  #add(key: string, process: { pid: number; comm: string; executable: string }, counts: number[]): void {
    const seen = this.#seen.get(key)
    const previous = seen?.counts
    if (seen === undefined) this.#seen.set(key, { counts, round: this.#round })
    else {
      seen.counts = counts
      seen.round = this.#round
    }
    const attributes: Record<string, string | number> = { 'process.executable.name': process.comm }
    if (process.executable !== '') attributes['process.executable.path'] = process.executable
    if (this.#ctx.config.per_pid) attributes['process.pid'] = process.pid
    const series = `${process.comm}\0${process.executable}\0${this.#ctx.config.per_pid ? process.pid : ''}`
    let increments = this.#pending.get(series)
    if (increments === undefined) {
      increments = { attributes, counts: new Array<number>(FLAT_LENGTH).fill(0) }
      this.#pending.set(series, increments)
    }
    for (let i = 0; i < FLAT_LENGTH; i++) increments.counts[i]! += counts[i]! - (previous?.[i] ?? 0)
  }

  /** The four metrics of one series' increments (`<prefix>.operations`, ...). */
  #emitCounts(prefix: string, counts: number[], attributes: Record<string, string | number>): void {
    const emit = (point: MetricPointInput): void => this.#ctx.emit.metric(point)
    for (let op = 0; op < FILEIO_OPS; op++) {
      const calls = counts[OPS_AT + op]!
      if (calls === 0) continue
      const withOp = { ...attributes, 'file.operation': operations[op]! }
      emit({ name: `${prefix}.operations`, kind: 'counter', unit: '{operation}', value: calls, attributes: withOp })
      const errors = counts[ERRORS_AT + op]!
      if (errors > 0) emit({ name: `${prefix}.errors`, kind: 'counter', unit: '{operation}', value: errors, attributes: withOp })
    }
    for (let op = 0; op < FILEIO_OPS; op++) {
      const bucketCounts = counts.slice(BUCKETS_AT + op * FILEIO_LATENCY_BUCKETS, BUCKETS_AT + (op + 1) * FILEIO_LATENCY_BUCKETS)
      // the map is read while the kernel counts: a call's sum may come an interval before its
      // bucket, whose batch then has none to carry it (a few µs of the sum are lost)
      if (bucketCounts.every((count) => count === 0)) continue
      const value = Math.max(0, counts[SUMS_AT + op]!) / 1e9
      emit({ name: `${prefix}.operation.duration`, kind: 'histogram', unit: 's', value, boundaries, bucketCounts, attributes: { ...attributes, 'file.operation': operations[op]! } })
    }
    for (const op of [FILEIO_READ, FILEIO_WRITE]) {
      const bytes = counts[BYTES_AT + op]!
      if (bytes > 0) emit({ name: `${prefix}.io`, kind: 'counter', unit: 'By', value: bytes, attributes: { ...attributes, 'file.io.direction': directions[op]! } })
    }
  }

  async #readFileStats(): Promise<number[][]> {
    const stats: number[][] = []
    for (const [key, value] of await this.#ctx.map('fileio:file_stats').entries()) {
      const index = new DataView(key.buffer, key.byteOffset, key.byteLength).getUint32(0, true)
      if (index < this.targets.length) stats[index] = flatten(decodeFileioCounts(new DataView(value.buffer, value.byteOffset, value.byteLength), 0))
    }
    return stats
  }

  async #emitFiles(): Promise<void> {
    if (this.targets.length === 0) return
    for (const [index, counts] of (await this.#readFileStats()).entries()) {
      const previous = this.#files[index]
      this.#files[index] = counts
      this.#emitCounts('file', counts.map((count, i) => count - (previous?.[i] ?? 0)), { 'file.path': this.targets[index]! })
    }
  }

  async #emitUntracked(): Promise<void> {
    const now = new Array<number>(FILEIO_OVERFLOWS).fill(0)
    for (const [key, perCpu] of await this.#ctx.map('fileio:overflows').entriesPerCpu()) {
      const reason = new DataView(key.buffer, key.byteOffset, key.byteLength).getUint32(0, true)
      for (const bytes of perCpu) now[reason]! += Number(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(0, true))
    }
    for (let reason = 0; reason < FILEIO_OVERFLOWS; reason++) {
      const increment = now[reason]! - this.#untracked[reason]!
      if (increment > 0) this.#ctx.emit.metric({ name: 'periscope.file_io.untracked', kind: 'counter', unit: '{event}', value: increment, attributes: { reason: untrackedReasons[reason]! } })
    }
    this.#untracked = now
  }
}

/** `target_paths` as the kernel compares them: absolute, without `.`, `..` or repeated slashes; the others are logged and left out. */
function checkedTargets(ctx: PluginContext<Config>): string[] {
  const targets: string[] = []
  for (const path of ctx.config.target_paths) {
    const parts = String(path).split('/').filter((part) => part !== '' && part !== '.')
    const normal = `/${parts.join('/')}`
    let problem: string | undefined
    if (!String(path).startsWith('/')) problem = 'is not absolute'
    else if (parts.includes('..')) problem = 'contains ".."'
    else if (utf8Length(normal) > FILEIO_PATH_LEN - 1) problem = `is longer than ${FILEIO_PATH_LEN - 1} bytes`
    else if (targets.length === FILEIO_MAX_TARGETS) problem = `is past the ${FILEIO_MAX_TARGETS} files the kernel can count one by one`
    if (problem !== undefined) ctx.log.warn(`target path ${JSON.stringify(path)} ${problem}; it is not counted per file. Give absolute paths without "..".`)
    else if (!targets.includes(normal)) targets.push(normal)
  }
  return targets
}

/** Bytes of a string in UTF-8 (the isolate has no TextEncoder). */
function utf8Length(text: string): number {
  return unescape(encodeURIComponent(text)).length
}

function u32(value: number): Uint8Array {
  return new Uint8Array(new Uint32Array([value]).buffer)
}
