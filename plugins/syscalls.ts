/**
 * Syscall counts per process and syscall, and failed calls by errno, for every process on the
 * host, from the `syscalls` object. Off by default: every syscall of the host runs its program.
 * The kernel counts at each syscall's exit, in maps read every `collect_interval_ms`; a process's
 * last counts come on its exit (or exec) record and its kernel entries go, so memory follows the
 * live processes and nothing a short-lived process did is lost. Syscall names are this kernel's
 * (`ctx.kernel.syscallNames()`), errno names libuv's (`ctx.kernel.errnoNames()`). A syscall that
 * never returns (exit, exit_group) is not counted, nor are 32-bit (ia32) calls.
 *
 * Metrics (counters are cumulative in the exporter; each point here is the increment since the
 * last collection):
 * - `process.syscall.calls` {call}: by `process.pid`, `process.executable.name` (the process's
 *   comm) and `syscall.name` (`read`, `openat`). Each collection exports the `top_n` busiest
 *   process and syscall pairs of its interval; the calls of the others, and calls the kernel could
 *   not count per process (a full map), go to one series per syscall, with `syscall.name` and
 *   `otel.metric.overflow: true` only. Summed by `syscall.name`, every call is there.
 * - `process.syscall.errors` {call}: calls that returned an error (-4095..-1), with the same
 *   attributes and the same top-N pairs.
 * - `system.syscall.errors` {call}: failed calls on the whole host, by `syscall.name` and
 *   `error.type` (the errno's name, `ENOENT`; the number for a kernel-internal code such as
 *   `512`, ERESTARTSYS, which the exit hook sees before the kernel restarts the call).
 * - `periscope.syscalls.map_overflow` {call}: calls the kernel could not store because a map was
 *   full, by `bpf.map` (`calls`: counted without their process, in the overflow series above;
 *   `errors`: a failure not counted by errno).
 * - `periscope.syscalls.compat_calls` {call}: calls of 32-bit tasks, not counted.
 * - A process's last counts that its ring could not take (`retired`, 1 MiB) are lost; the
 *   runtime counts those records in `periscope.bpf.events.dropped{bpf.object=syscalls}`.
 *
 * Everything here is public plugin API: a user plugin can do the same.
 */
import { definePlugin, type PluginContext, type TopicEvent } from 'periscope/plugin'
import {
  decodeSyscallCounts, decodeSyscallErrorKey, decodeSyscallKey, decodeSyscallProcess, SYSCALLS_MAX_NR,
  SYSCALLS_OVERFLOW_COMPAT, SYSCALLS_OVERFLOW_ERRNO_TABLE, SYSCALLS_OVERFLOW_PROCESS_TABLE, SYSCALLS_OVERFLOWS,
} from 'periscope/protocols/syscalls'

const config = {
  /** How often the kernel's counts are read and exported. */
  collect_interval_ms: 10_000,
  /** Process and syscall pairs exported per collection, busiest first (see above). */
  top_n: 50,
}
type Config = typeof config

/** A process image's counts of one syscall as last read, and the collection that read them. */
interface Seen {
  calls: number
  errors: number
  round: number
}

/** Increments of one series (a process under one name, and a syscall) over an interval. */
interface Increments {
  tgid: number
  nr: number
  comm: string
  calls: number
  errors: number
}

/**
 * What carries across a hot reload, so the new version neither repeats nor skips counts. It lives
 * in ctx.state (plain data: maps and arrays), so a reload at any moment takes it as it is then.
 */
interface Carried {
  round: number
  /** By seenKey: every image's pair in the kernel's map at the last collections, or whose retirement is not handled yet. */
  seen: Map<string, Seen>
  /** By series (pid, comm and syscall): increments since the last collection. */
  pending: Map<string, Increments>
  /** The kernel's cumulative counts at the last collection: failures by `nr * 65536 + errno`, unattributed [calls, errors] by nr, overflows. */
  errors: Map<number, number>
  unattributed: number[]
  overflows: number[]
}

/** A process's image in the kernel's `processes` map: its comm, and when its entry was made. */
interface Image {
  comm: string
  created: number
}

const view = (bytes: Uint8Array) => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
/**
 * One process image's counts of one syscall: the image's creation time tells a pid's successive
 * images (an exec) and owners (a reused pid) apart, so an image's last counts, retired while a
 * collection already reads its successor's, are never taken for the successor's.
 */
const seenKey = (tgid: number, created: number, nr: number) => `${tgid}:${created}:${nr}`

export default definePlugin({
  name: 'syscalls',
  objects: ['syscalls'],
  config,
  async setup(ctx) {
    const topN = ctx.config.top_n
    if (!Number.isInteger(topN) || topN < 0) throw new Error(`syscalls: top_n must be a whole number of process and syscall pairs (0 exports none with its process), got ${JSON.stringify(topN)}`)
    const plugin = new Syscalls(ctx, await ctx.kernel.syscallNames(), await ctx.kernel.errnoNames())
    ctx.on('syscalls:retired', (record) => plugin.onRetired(record))
    ctx.every(ctx.config.collect_interval_ms, () => plugin.collect())
    ctx.log.info(`syscall counts of every process, the ${ctx.config.top_n} busiest process and syscall pairs every ${ctx.config.collect_interval_ms} ms`)
  },
})

class Syscalls {
  readonly #ctx: PluginContext<Config>
  readonly #names: string[]
  readonly #errnoNames: string[]
  readonly #carried: Carried

  constructor(ctx: PluginContext<Config>, names: string[], errnoNames: string[]) {
    this.#ctx = ctx
    this.#names = names
    this.#errnoNames = errnoNames
    this.#carried = (ctx.state.syscalls as Carried | undefined) ?? {
      round: 0, seen: new Map(), pending: new Map(), errors: new Map(),
      unattributed: new Array<number>(SYSCALLS_MAX_NR * 2).fill(0), overflows: new Array<number>(SYSCALLS_OVERFLOWS).fill(0),
    }
    ctx.state.syscalls = this.#carried
  }

  onRetired(record: TopicEvent<'syscalls:retired'>): void {
    const key = seenKey(record.tgid, record.created_ns, record.nr)
    this.#add(key, record.tgid, record.nr, record.comm, record.calls, record.errors)
    this.#carried.seen.delete(key)
  }

  async collect(): Promise<void> {
    const round = ++this.#carried.round
    // the processes before and after the counts: a process whose image changed meanwhile (it
    // exited or execed) is left out, and its retired records bring what it counted
    const before = await this.#images()
    const calls = await this.#ctx.map('syscalls:calls').entries()
    const after = await this.#images()
    for (const [key, value] of calls) {
      const { tgid, nr } = decodeSyscallKey(view(key), 0)
      const image = before.get(tgid)
      if (image === undefined || after.get(tgid)?.created !== image.created) continue
      const counts = decodeSyscallCounts(view(value), 0)
      this.#add(seenKey(tgid, image.created, nr), tgid, nr, image.comm, counts.calls, counts.errors)
    }
    // a pair gone from the map was retired: its record normally came first; one more round is
    // left for a record still on its way
    for (const [key, seen] of this.#carried.seen) if (seen.round < round - 1) this.#carried.seen.delete(key)
    const overflow = await this.#unattributedIncrements()
    this.#emitTopPairs(overflow)
    await this.#emitErrorsByErrno()
    await this.#emitOverflows()
  }

  async #images(): Promise<Map<number, Image>> {
    const images = new Map<number, Image>()
    for (const [key, value] of await this.#ctx.map('syscalls:processes').entries()) {
      const process = decodeSyscallProcess(view(value), 0)
      images.set(view(key).getUint32(0, true), { comm: process.comm, created: process.created_ns })
    }
    return images
  }

  /** Adds what an image's pair counted since it was last seen to the pair's increments. */
  #add(key: string, tgid: number, nr: number, comm: string, calls: number, errors: number): void {
    const { seen: allSeen, pending: allPending, round } = this.#carried
    const seen = allSeen.get(key)
    const callIncrement = calls - (seen?.calls ?? 0)
    const errorIncrement = errors - (seen?.errors ?? 0)
    if (seen === undefined) allSeen.set(key, { calls, errors, round })
    else {
      seen.calls = calls
      seen.errors = errors
      seen.round = round
    }
    if (callIncrement === 0 && errorIncrement === 0) return
    const series = `${tgid}\0${comm}\0${nr}`
    const pending = allPending.get(series)
    if (pending === undefined) allPending.set(series, { tgid, nr, comm, calls: callIncrement, errors: errorIncrement })
    else {
      pending.calls += callIncrement
      pending.errors += errorIncrement
    }
  }

  /** The increments of calls the kernel counted without a process, as [calls, errors] by number. */
  async #unattributedIncrements(): Promise<number[]> {
    const totals = new Array<number>(SYSCALLS_MAX_NR * 2).fill(0)
    for (const [key, perCpu] of await this.#ctx.map('syscalls:unattributed').entriesPerCpu()) {
      const nr = view(key).getUint32(0, true)
      for (const bytes of perCpu) {
        const counts = decodeSyscallCounts(view(bytes), 0)
        totals[nr * 2]! += counts.calls
        totals[nr * 2 + 1]! += counts.errors
      }
    }
    const increments = totals.map((total, i) => total - this.#carried.unattributed[i]!)
    this.#carried.unattributed = totals
    return increments
  }

  #name(nr: number): string {
    return this.#names[nr] || String(nr)
  }

  /** The top_n pairs with their process; the rest, and `overflow` ([calls, errors] by number), per syscall. */
  #emitTopPairs(overflow: number[]): void {
    const emit = this.#ctx.emit
    const pairs = [...this.#carried.pending.values()].sort((a, b) => b.calls - a.calls || b.errors - a.errors)
    this.#carried.pending.clear()
    for (const [i, pair] of pairs.entries()) {
      if (i >= this.#ctx.config.top_n) {
        overflow[pair.nr * 2]! += pair.calls
        overflow[pair.nr * 2 + 1]! += pair.errors
        continue
      }
      const attributes = { 'process.pid': pair.tgid, 'process.executable.name': pair.comm, 'syscall.name': this.#name(pair.nr) }
      if (pair.calls > 0) emit.metric({ name: 'process.syscall.calls', kind: 'counter', unit: '{call}', value: pair.calls, attributes, description: 'Syscalls made (counted at their return)' })
      if (pair.errors > 0) emit.metric({ name: 'process.syscall.errors', kind: 'counter', unit: '{call}', value: pair.errors, attributes, description: 'Syscalls that returned an error' })
    }
    for (let nr = 0; nr < SYSCALLS_MAX_NR; nr++) {
      const [calls, errors] = [overflow[nr * 2]!, overflow[nr * 2 + 1]!]
      if (calls === 0 && errors === 0) continue
      const attributes = { 'syscall.name': this.#name(nr), 'otel.metric.overflow': true }
      if (calls > 0) emit.metric({ name: 'process.syscall.calls', kind: 'counter', unit: '{call}', value: calls, attributes, description: 'Syscalls made (counted at their return)' })
      if (errors > 0) emit.metric({ name: 'process.syscall.errors', kind: 'counter', unit: '{call}', value: errors, attributes, description: 'Syscalls that returned an error' })
    }
  }

  async #emitErrorsByErrno(): Promise<void> {
    for (const [key, value] of await this.#ctx.map('syscalls:errors').entries()) {
      const { nr, error } = decodeSyscallErrorKey(view(key), 0)
      const total = Number(view(value).getBigUint64(0, true))
      const id = nr * 65536 + error
      const increment = total - (this.#carried.errors.get(id) ?? 0)
      this.#carried.errors.set(id, total)
      if (increment <= 0) continue
      this.#ctx.emit.metric({
        name: 'system.syscall.errors', kind: 'counter', unit: '{call}', value: increment, description: 'Failed syscalls on the host, by errno',
        attributes: { 'syscall.name': this.#name(nr), 'error.type': this.#errnoNames[error] || String(error) },
      })
    }
  }

  async #emitOverflows(): Promise<void> {
    const totals = new Array<number>(SYSCALLS_OVERFLOWS).fill(0)
    for (const [key, perCpu] of await this.#ctx.map('syscalls:overflows').entriesPerCpu()) {
      const index = view(key).getUint32(0, true)
      for (const bytes of perCpu) totals[index]! += Number(view(bytes).getBigUint64(0, true))
    }
    const increment = (index: number) => totals[index]! - this.#carried.overflows[index]!
    const emit = this.#ctx.emit
    const description = 'Syscalls the syscalls object could not store because a map was full'
    emit.metric({ name: 'periscope.syscalls.map_overflow', kind: 'counter', unit: '{call}', value: increment(SYSCALLS_OVERFLOW_PROCESS_TABLE), description, attributes: { 'bpf.map': 'calls' } })
    emit.metric({ name: 'periscope.syscalls.map_overflow', kind: 'counter', unit: '{call}', value: increment(SYSCALLS_OVERFLOW_ERRNO_TABLE), description, attributes: { 'bpf.map': 'errors' } })
    emit.metric({ name: 'periscope.syscalls.compat_calls', kind: 'counter', unit: '{call}', value: increment(SYSCALLS_OVERFLOW_COMPAT), description: 'Syscalls of 32-bit tasks, not counted' })
    this.#carried.overflows = totals
  }
}
