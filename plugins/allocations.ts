/**
 * Allocation statistics of the processes named in `target_pids` (off by default: uprobes on
 * malloc and free cost microseconds per call): uprobes on each process's libc `malloc`, `calloc`,
 * `realloc` and `free`, attached for that pid alone, count its calls and bytes in the kernel (the
 * `alloc` object), which this plugin reads every `collect_interval_ms`. The libc is the one the
 * process maps (found by the object's task_vma iterator, so a container's own libc is followed).
 * Statically linked programs and other allocators (jemalloc, tcmalloc, Go) are not followed: the
 * plugin says so for each target it cannot follow. A process named but not running is skipped;
 * its follow ends when it exits.
 *
 * Metrics (counters are cumulative in the exporter; each point here is the increment since the
 * last collection), by `process.pid` and `process.executable.name`:
 * - `process.memory.heap.calls` {call}: calls that returned, by `code.function.name` (`malloc`,
 *   `calloc`, `realloc`, `free`; realloc(NULL, n) is a realloc, free(NULL) is not counted, and
 *   the calls glibc makes inside realloc are realloc's).
 * - `process.memory.heap.failures` {call}: malloc, calloc and realloc calls that returned NULL
 *   for a size above 0.
 * - `process.memory.heap.allocated` (By): bytes asked for by the allocations that succeeded
 *   (calloc: nmemb × size; realloc: the new size).
 * - `process.memory.heap.freed` (By): bytes of the blocks freed (by free, or moved or shrunk by
 *   realloc) that were allocated while followed.
 * - `process.memory.heap.usage` (By, gauge): bytes allocated while followed and not freed yet.
 * - `process.memory.heap.unknown_frees` {call}: frees of blocks allocated before the uprobes were
 *   attached (or by memalign and the like), whose size is not known.
 * - `periscope.allocations.untracked` {event}: what the kernel could not store, by `reason`
 *   (`blocks`: a block's size, so its free is not subtracted from usage; `processes`: a process's
 *   counts; `in_flight`: a call's size).
 *
 * Everything here is public plugin API: a user plugin can do the same.
 */
import { definePlugin, type PluginContext, type PluginLink } from 'periscope/plugin'
import { ALLOC_FUNCS, ALLOC_OVERFLOWS, decodeAllocStats, type AllocStats } from 'periscope/protocols/alloc'

const config = {
  /** How often the kernel's counts are read and exported. */
  collect_interval_ms: 10_000,
  /** The processes followed (from `plugins.allocations.target_pids` in periscope.yaml). */
  target_pids: [] as number[],
}
type Config = typeof config

const functionNames = ['malloc', 'calloc', 'realloc', 'free']
const untrackedReasons = ['blocks', 'processes', 'in_flight']
/** The object's programs per libc function (`<name>_enter`, and `<name>_exit` where the result matters). */
const probes: [string, boolean][] = [['malloc', true], ['calloc', true], ['realloc', true], ['free', false]]

/**
 * Counts as one flat list, so increments are element-wise differences: calls by function,
 * failures, allocated, freed, unknown frees.
 */
function flatten(stats: AllocStats): number[] {
  return [...stats.calls, stats.failures, stats.allocated_bytes, stats.freed_bytes, stats.unknown_frees]
}
const FAILURES_AT = ALLOC_FUNCS
const ALLOCATED_AT = FAILURES_AT + 1
const FREED_AT = ALLOCATED_AT + 1
const UNKNOWN_FREES_AT = FREED_AT + 1
const FLAT_LENGTH = UNKNOWN_FREES_AT + 1

/** What carries across a hot reload, so the new version neither repeats nor skips counts. */
interface CarriedState {
  seen: [string, number[]][]
  untracked: number[]
}

export default definePlugin({
  name: 'allocations',
  objects: ['alloc'],
  config,
  async setup(ctx) {
    const plugin = new Allocations(ctx)
    ctx.on('alloc:exits', (record) => plugin.onExit(record))
    ctx.every(ctx.config.collect_interval_ms, () => plugin.collect())
    const followed = await plugin.follow()
    ctx.log.info(followed.length === 0
      ? 'allocation statistics: no process followed (name running processes in plugins.allocations.target_pids)'
      : `allocation statistics (malloc, calloc, realloc, free) every ${ctx.config.collect_interval_ms} ms for ${followed.map(([pid, libc]) => `pid ${pid} (${libc})`).join(', ')}`)
  },
})

class Allocations {
  readonly #ctx: PluginContext<Config>
  /** By pid: the uprobe links of a followed process, let go when it exits. */
  readonly #links = new Map<number, PluginLink[]>()
  /** By `<pid>:<created_ns>`: counts as last exported, and the collection that last saw them. */
  readonly #seen = new Map<string, { counts: number[]; round: number }>()
  #round = 0
  /** Increments since the last collection, by pid, with the process's attributes. */
  #pending = new Map<number, { attributes: Record<string, string | number>; counts: number[] }>()
  /** Bytes in use now, by pid, of the processes in the kernel map at the last collection. */
  #usage = new Map<number, { attributes: Record<string, string | number>; bytes: number }>()
  #untracked: number[]

  constructor(ctx: PluginContext<Config>) {
    this.#ctx = ctx
    const carried = ctx.state.allocations as CarriedState | undefined
    for (const [key, counts] of carried?.seen ?? []) this.#seen.set(key, { counts, round: 0 })
    this.#untracked = carried?.untracked ?? new Array<number>(ALLOC_OVERFLOWS).fill(0)
  }

  /** Attaches the uprobes for each target; the [pid, libc] of those followed. */
  async follow(): Promise<[number, string][]> {
    const followed: [number, string][] = []
    for (const pid of new Set(this.#ctx.config.target_pids)) {
      const mapped = (await this.#ctx.iterate('alloc:libc_mappings', { pid })).split('\n').filter((line) => line !== '')
      const libc = mapped[0]
      if (libc === undefined) {
        this.#ctx.log.warn(`allocations: pid ${pid} maps no libc (not running, statically linked, or using another allocator); it is not followed`)
        continue
      }
      try {
        this.#links.set(pid, await this.#attach(pid, libc))
        followed.push([pid, libc])
      } catch (error) {
        this.#ctx.log.warn(`allocations: cannot follow pid ${pid} through ${libc}: ${(error as Error).message}`)
      }
    }
    return followed
  }

  async #attach(pid: number, libc: string): Promise<PluginLink[]> {
    const links: PluginLink[] = []
    try {
      for (const [symbol, returns] of probes) {
        links.push(await this.#ctx.attach({ program: `alloc:${symbol}_enter`, uprobe: { binary: libc, symbol, pid } }))
        if (returns) links.push(await this.#ctx.attach({ program: `alloc:${symbol}_exit`, uprobe: { binary: libc, symbol, retprobe: true, pid } }))
      }
    } catch (error) {
      for (const link of links) await link.detach()
      throw error
    }
    return links
  }

  onExit(record: AllocStats): void {
    const key = `${record.pid}:${record.created_ns}`
    this.#add(key, record)
    this.#seen.delete(key)
    const links = this.#links.get(record.pid)
    this.#links.delete(record.pid)
    for (const link of links ?? []) link.detach().catch((error: Error) => this.#ctx.log.warn(`allocations: letting go of pid ${record.pid}'s uprobes: ${error.message}`))
  }

  async collect(): Promise<void> {
    this.#round++
    this.#usage = new Map()
    for (const [, value] of await this.#ctx.map('alloc:processes').entries()) {
      const stats = decodeAllocStats(new DataView(value.buffer, value.byteOffset, value.byteLength), 0)
      const attributes = this.#add(`${stats.pid}:${stats.created_ns}`, stats)
      this.#usage.set(stats.pid, { attributes, bytes: stats.tracked_bytes - stats.freed_bytes })
    }
    // an entry gone from the map went at its process's exit: its record, sent as the entry went,
    // normally came first; one more round is left for a record still on its way
    for (const [key, seen] of this.#seen) if (seen.round < this.#round - 1) this.#seen.delete(key)
    this.#emit()
    await this.#emitUntracked()
    this.#ctx.state.allocations = { seen: Array.from(this.#seen, ([key, seen]) => [key, seen.counts]), untracked: this.#untracked } satisfies CarriedState
  }

  /** Adds what a process counted since it was last seen to its increments; its attributes. */
  #add(key: string, stats: AllocStats): Record<string, string | number> {
    const counts = flatten(stats)
    const previous = this.#seen.get(key)?.counts
    this.#seen.set(key, { counts, round: this.#round })
    let pending = this.#pending.get(stats.pid)
    if (pending === undefined) {
      pending = { attributes: { 'process.pid': stats.pid, 'process.executable.name': stats.comm }, counts: new Array<number>(FLAT_LENGTH).fill(0) }
      this.#pending.set(stats.pid, pending)
    }
    for (let i = 0; i < FLAT_LENGTH; i++) pending.counts[i]! += counts[i]! - (previous?.[i] ?? 0)
    return pending.attributes
  }

  #emit(): void {
    const emit = this.#ctx.emit
    for (const { attributes, counts } of this.#pending.values()) {
      for (let func = 0; func < ALLOC_FUNCS; func++) {
        if (counts[func]! > 0) emit.metric({ name: 'process.memory.heap.calls', kind: 'counter', unit: '{call}', value: counts[func]!, attributes: { ...attributes, 'code.function.name': functionNames[func]! } })
      }
      if (counts[FAILURES_AT]! > 0) emit.metric({ name: 'process.memory.heap.failures', kind: 'counter', unit: '{call}', value: counts[FAILURES_AT]!, attributes })
      if (counts[ALLOCATED_AT]! > 0) emit.metric({ name: 'process.memory.heap.allocated', kind: 'counter', unit: 'By', value: counts[ALLOCATED_AT]!, attributes })
      if (counts[FREED_AT]! > 0) emit.metric({ name: 'process.memory.heap.freed', kind: 'counter', unit: 'By', value: counts[FREED_AT]!, attributes })
      if (counts[UNKNOWN_FREES_AT]! > 0) emit.metric({ name: 'process.memory.heap.unknown_frees', kind: 'counter', unit: '{call}', value: counts[UNKNOWN_FREES_AT]!, attributes })
    }
    this.#pending = new Map()
    for (const { attributes, bytes } of this.#usage.values()) emit.metric({ name: 'process.memory.heap.usage', kind: 'gauge', unit: 'By', value: bytes, attributes })
  }

  async #emitUntracked(): Promise<void> {
    const now = new Array<number>(ALLOC_OVERFLOWS).fill(0)
    for (const [key, perCpu] of await this.#ctx.map('alloc:overflows').entriesPerCpu()) {
      const reason = new DataView(key.buffer, key.byteOffset, key.byteLength).getUint32(0, true)
      for (const bytes of perCpu) now[reason]! += Number(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(0, true))
    }
    for (let reason = 0; reason < ALLOC_OVERFLOWS; reason++) {
      const increment = now[reason]! - this.#untracked[reason]!
      if (increment > 0) this.#ctx.emit.metric({ name: 'periscope.allocations.untracked', kind: 'counter', unit: '{event}', value: increment, attributes: { reason: untrackedReasons[reason]! } })
    }
    this.#untracked = now
  }
}
