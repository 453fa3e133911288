/**
 * Scheduler and process metrics, and process lifecycle logs, for every process on the host, from
 * the `sched` object. High-rate counts stay in the kernel (a run-queue latency histogram; context
 * switches and page faults per process) and are read every `collect_interval_ms`; starts, exits
 * and OOM kills come one record each through its ring buffer. A process's kernel entry is removed
 * when it exits, its last counts travelling on its exit record, so memory follows the live
 * processes and nothing a short-lived process did is lost.
 *
 * Metrics (counters are cumulative in the exporter; each point here is the increment since the
 * last collection):
 * - `process.context_switches` {context_switch}: by `process.executable.name` and
 *   `process.context_switch_type` (`voluntary`: the task gave up the CPU to wait; `involuntary`:
 *   it was preempted).
 * - `process.paging.faults` {fault}: by `process.executable.name` and `process.paging.fault_type`
 *   (`minor`, or `major`: the page had to be read in). These are the kernel's own counts of each
 *   thread (what /proc/<pid>/stat shows, faults the kernel took on user memory included), taken
 *   at each user page fault (`exceptions:page_fault_user`) and at each thread's exit: a thread's
 *   last fault shows at its next one or at its exit.
 * - `system.scheduler.runqueue.latency` (s, histogram): how long runnable tasks waited for a CPU,
 *   from their wakeup (or preemption) to running, on the whole host; log2 buckets of 1 µs to
 *   2^25 µs, counted in the kernel.
 * - `system.process.created` {process}: processes started (forks of a new process, not threads).
 * - `system.memory.oom_kills` {process}: processes the OOM killer chose.
 * - `periscope.processes.map_overflow` {event}: what the kernel could not store because a map was
 *   full, by `bpf.map` (`proc_stats`: a process's counts; `runnable_since` and `thread_faults`: a
 *   thread's run-queue mark and fault counts, and `exit_reported`: a process's flag that one of its
 *   threads reports its exit, all task storage: only when the kernel could not allocate it; then
 *   the process's exit may be logged once per thread that ended it).
 * - `periscope.processes.tracked` {process} (gauge): processes whose last counts the plugin keeps
 *   (the live ones, and for one more collection those that just exited).
 *
 * With `per_pid: true` the per-process metrics also carry `process.pid`. It is off by default
 * because the exporter keeps a cumulative series for every attribute set it ever saw: with pids,
 * process churn makes series without end (the exporter folds those past 2000 per metric into one
 * `otel.metric.overflow` series).
 *
 * Logs (`lifecycle_logs: false` turns off the first two):
 * - `process.start`: `process.pid`, `process.parent_pid`, `process.executable.name` (the
 *   parent's, which the new process inherits until it execs).
 * - `process.exit`: `process.pid`, `process.parent_pid`, `process.executable.name`,
 *   `process.exit.code` (exit_group's status), `process.exit.signal` (only when a signal ended it),
 *   `process.uptime` (s).
 * - `process.oom_kill` (warn): the victim's `process.pid`, `process.executable.name`, `user.id`,
 *   `process.memory.virtual` and `process.memory.usage` (resident: anonymous, file and shared
 *   memory) in bytes and `process.oom_score_adj`; and the process whose allocation ran out of
 *   memory, `oom.trigger.pid` and `oom.trigger.executable.name`.
 *
 * Everything here is public plugin API: a user plugin can do the same.
 */
import { definePlugin, type PluginContext, type TopicEvent } from 'periscope/plugin'
import {
  decodeProcStats, decodeRunqHist, OVERFLOW_EXIT_REPORTED, OVERFLOW_KINDS, OVERFLOW_PROC_STATS, OVERFLOW_RUNNABLE_SINCE, OVERFLOW_THREAD_FAULTS, runqBoundaries, RUNQ_SLOTS,
  SCHED_EVENT_EXIT, SCHED_EVENT_OOM_KILL, SCHED_EVENT_START,
} from 'periscope/protocols/sched'

const config = {
  /** How often the kernel's counts are read and exported. */
  collect_interval_ms: 10_000,
  /** `process.pid` on the per-process metrics (see above: a series per pid that ever ran). */
  per_pid: false,
  /** A log record per process start and exit (OOM kills are always logged). */
  lifecycle_logs: true,
}
type Config = typeof config

type SchedEvent = TopicEvent<'sched:events'>

/** A process's counts as last exported: [voluntary, involuntary, minor, major], and the collection that last saw it. */
interface Seen {
  counts: number[]
  round: number
}

/** Increments of one series of the per-process metrics, summed over an interval. */
interface Increments {
  attributes: Record<string, string | number>
  voluntary: number
  involuntary: number
  minor: number
  major: number
}

/**
 * Everything counted and not yet exported, and what was last exported: plain data kept in
 * `ctx.state`, so a hot reload's new version carries on from the very event where the old one
 * stopped, neither repeating nor skipping counts.
 */
interface Tally {
  /** By tgid: every process in the kernel map at the last collections, or whose exit is not handled yet. */
  seen: Record<number, Seen>
  /** By series (executable name, and pid with per_pid): increments since the last collection. */
  pending: Record<string, Increments>
  /** The kernel's cumulative run-queue slots and sum (ns), and overflow counts, at the last collection. */
  runq: number[]
  overflow: number[]
  round: number
  created: number
  oomKills: number
}

const overflowMaps = ['proc_stats', 'runnable_since', 'thread_faults', 'exit_reported']
const zeroKey = new Uint8Array(4)

export default definePlugin({
  name: 'processes',
  objects: ['sched'],
  config,
  async setup(ctx) {
    const plugin = new Processes(ctx)
    // a first start, or a restart after a failure (whose state is dropped): the kernel's counts so
    // far are taken as exported, since a failed version may have exported them already
    if (ctx.state.processes === undefined) await plugin.baseline()
    ctx.state.processes = plugin.tally
    ctx.on('sched:events', (event) => plugin.onEvent(event))
    ctx.every(ctx.config.collect_interval_ms, () => plugin.collect())
    ctx.log.info(`process metrics (context switches, page faults, run-queue latency) every ${ctx.config.collect_interval_ms} ms, `
      + `${ctx.config.lifecycle_logs ? 'starts, exits and ' : ''}OOM kills on the whole host`)
  },
})

class Processes {
  readonly #ctx: PluginContext<Config>
  readonly tally: Tally

  constructor(ctx: PluginContext<Config>) {
    this.#ctx = ctx
    this.tally = (ctx.state.processes as Tally | undefined) ?? {
      seen: {}, pending: {}, runq: new Array<number>(RUNQ_SLOTS + 1).fill(0), overflow: new Array<number>(OVERFLOW_KINDS).fill(0), round: 0, created: 0, oomKills: 0,
    }
  }

  onEvent(event: SchedEvent): void {
    switch (event.kind) {
      case SCHED_EVENT_START:
        this.tally.created++
        if (this.#ctx.config.lifecycle_logs) this.#logStart(event)
        break
      case SCHED_EVENT_EXIT:
        this.#add(event.pid, event.comm, event.voluntary_switches, event.involuntary_switches, event.minor_faults, event.major_faults)
        delete this.tally.seen[event.pid]
        if (this.#ctx.config.lifecycle_logs) this.#logExit(event)
        break
      case SCHED_EVENT_OOM_KILL:
        this.tally.oomKills++
        this.#logOomKill(event)
        break
    }
  }

  /** Takes the kernel's counts as they are now as exported. */
  async baseline(): Promise<void> {
    for (const [tgid, voluntary, involuntary, minor, major] of await this.#processes()) this.tally.seen[tgid] = { counts: [voluntary, involuntary, minor, major], round: 0 }
    this.tally.runq = await this.#runqueueTotals()
    this.tally.overflow = await this.#overflowTotals()
  }

  async collect(): Promise<void> {
    const tally = this.tally
    tally.round++
    for (const [tgid, voluntary, involuntary, minor, major, comm] of await this.#processes()) this.#add(tgid, comm, voluntary, involuntary, minor, major)
    // a process gone from the map exited: its exit record, sent before the entry went, normally
    // came first; one more round is left for a record still on its way
    for (const tgid in tally.seen) if (tally.seen[tgid]!.round < tally.round - 1) delete tally.seen[tgid]
    this.#emitProcessMetrics()
    await this.#emitRunqueueLatency()
    await this.#emitOverflow()
    this.#emitLifecycleCounts()
  }

  /** Every process in the kernel's map: tgid, voluntary and involuntary switches, minor and major faults, name. */
  async #processes(): Promise<[number, number, number, number, number, string][]> {
    return (await this.#ctx.map('sched:proc_stats').entries()).map(([key, value]) => {
      const stats = decodeProcStats(new DataView(value.buffer, value.byteOffset, value.byteLength), 0)
      const tgid = new DataView(key.buffer, key.byteOffset, key.byteLength).getUint32(0, true)
      return [tgid, stats.voluntary_switches, stats.involuntary_switches, stats.minor_faults, stats.major_faults, stats.comm]
    })
  }

  /** Adds what a process counted since it was last seen to its series' increments. */
  #add(tgid: number, comm: string, voluntary: number, involuntary: number, minor: number, major: number): void {
    const tally = this.tally
    let seen = tally.seen[tgid]
    if (seen === undefined) tally.seen[tgid] = seen = { counts: [0, 0, 0, 0], round: tally.round }
    const last = seen.counts
    // fewer than before: the pid was reused by a process whose exit was missed
    if (voluntary < last[0]! || involuntary < last[1]! || minor < last[2]! || major < last[3]!) last.fill(0)
    const key = this.#ctx.config.per_pid ? `${comm}\0${tgid}` : comm
    let increments = tally.pending[key]
    if (increments === undefined) {
      const attributes: Record<string, string | number> = { 'process.executable.name': comm }
      if (this.#ctx.config.per_pid) attributes['process.pid'] = tgid
      tally.pending[key] = increments = { attributes, voluntary: 0, involuntary: 0, minor: 0, major: 0 }
    }
    increments.voluntary += voluntary - last[0]!
    increments.involuntary += involuntary - last[1]!
    increments.minor += minor - last[2]!
    increments.major += major - last[3]!
    last[0] = voluntary
    last[1] = involuntary
    last[2] = minor
    last[3] = major
    seen.round = tally.round
  }

  #emitProcessMetrics(): void {
    const emit = this.#ctx.emit
    for (const { attributes, voluntary, involuntary, minor, major } of Object.values(this.tally.pending)) {
      if (voluntary > 0) emit.metric({ name: 'process.context_switches', kind: 'counter', unit: '{context_switch}', value: voluntary, attributes: { ...attributes, 'process.context_switch_type': 'voluntary' } })
      if (involuntary > 0) emit.metric({ name: 'process.context_switches', kind: 'counter', unit: '{context_switch}', value: involuntary, attributes: { ...attributes, 'process.context_switch_type': 'involuntary' } })
      if (minor > 0) emit.metric({ name: 'process.paging.faults', kind: 'counter', unit: '{fault}', value: minor, attributes: { ...attributes, 'process.paging.fault_type': 'minor' } })
      if (major > 0) emit.metric({ name: 'process.paging.faults', kind: 'counter', unit: '{fault}', value: major, attributes: { ...attributes, 'process.paging.fault_type': 'major' } })
    }
    this.tally.pending = {}
  }

  /** The kernel's run-queue slots and sum (ns), summed over CPUs. */
  async #runqueueTotals(): Promise<number[]> {
    const total = new Array<number>(RUNQ_SLOTS + 1).fill(0)
    for (const bytes of await this.#ctx.map('sched:runq_latency').lookupPerCpu(zeroKey) ?? []) {
      const hist = decodeRunqHist(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), 0)
      for (let slot = 0; slot < RUNQ_SLOTS; slot++) total[slot]! += hist.slots[slot]!
      total[RUNQ_SLOTS]! += hist.sum_ns
    }
    return total
  }

  async #emitRunqueueLatency(): Promise<void> {
    const total = await this.#runqueueTotals()
    const last = this.tally.runq
    const bucketCounts = total.slice(0, RUNQ_SLOTS).map((count, slot) => count - last[slot]!)
    const sumNs = total[RUNQ_SLOTS]! - last[RUNQ_SLOTS]!
    this.tally.runq = total
    if (bucketCounts.every((count) => count === 0)) return
    this.#ctx.emit.metric({
      name: 'system.scheduler.runqueue.latency', kind: 'histogram', unit: 's',
      description: 'Time runnable tasks waited for a CPU, from wakeup or preemption to running',
      boundaries: runqBoundaries as number[], bucketCounts, value: sumNs / 1e9,
    })
  }

  /** What the kernel could not store, by `overflow` index, summed over CPUs. */
  async #overflowTotals(): Promise<number[]> {
    const totals = new Array<number>(OVERFLOW_KINDS).fill(0)
    for (const [key, perCpu] of await this.#ctx.map('sched:overflow').entriesPerCpu()) {
      const index = new DataView(key.buffer, key.byteOffset, key.byteLength).getUint32(0, true)
      for (const bytes of perCpu) totals[index]! += Number(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(0, true))
    }
    return totals
  }

  async #emitOverflow(): Promise<void> {
    const totals = await this.#overflowTotals()
    for (const index of [OVERFLOW_PROC_STATS, OVERFLOW_RUNNABLE_SINCE, OVERFLOW_THREAD_FAULTS, OVERFLOW_EXIT_REPORTED]) {
      this.#ctx.emit.metric({
        name: 'periscope.processes.map_overflow', kind: 'counter', unit: '{event}', value: totals[index]! - this.tally.overflow[index]!,
        description: 'Events the sched object could not store because a map was full', attributes: { 'bpf.map': overflowMaps[index]! },
      })
    }
    this.tally.overflow = totals
  }

  #emitLifecycleCounts(): void {
    const tally = this.tally
    this.#ctx.emit.metric({ name: 'periscope.processes.tracked', kind: 'gauge', unit: '{process}', value: Object.keys(tally.seen).length, description: 'Processes whose last counts the processes plugin keeps' })
    this.#ctx.emit.metric({ name: 'system.process.created', kind: 'counter', unit: '{process}', value: tally.created, description: 'Processes started (not threads)' })
    this.#ctx.emit.metric({ name: 'system.memory.oom_kills', kind: 'counter', unit: '{process}', value: tally.oomKills, description: 'Processes killed by the OOM killer' })
    tally.created = 0
    tally.oomKills = 0
  }

  #logStart(event: SchedEvent): void {
    this.#ctx.emit.log({
      eventName: 'process.start', severity: 'info', timeNs: this.#ctx.time.wallNs(event.timestamp_ns),
      body: `process ${event.pid} (${event.comm}) started by ${event.ppid}`,
      attributes: { 'process.pid': event.pid, 'process.parent_pid': event.ppid, 'process.executable.name': event.comm },
    })
  }

  #logExit(event: SchedEvent): void {
    const attributes: Record<string, string | number> = {
      'process.pid': event.pid, 'process.parent_pid': event.ppid, 'process.executable.name': event.comm,
      'process.exit.code': event.exit_code, 'process.uptime': event.lifetime_ns / 1e9,
    }
    if (event.exit_signal !== 0) attributes['process.exit.signal'] = event.exit_signal
    this.#ctx.emit.log({
      eventName: 'process.exit', severity: 'info', timeNs: this.#ctx.time.wallNs(event.timestamp_ns),
      body: `process ${event.pid} (${event.comm}) ${event.exit_signal === 0 ? `exited with code ${event.exit_code}` : `was killed by signal ${event.exit_signal}`}`,
      attributes,
    })
  }

  #logOomKill(event: SchedEvent): void {
    const residentKb = event.anon_rss_kb + event.file_rss_kb + event.shmem_rss_kb
    this.#ctx.emit.log({
      eventName: 'process.oom_kill', severity: 'warn', timeNs: this.#ctx.time.wallNs(event.timestamp_ns),
      body: `the OOM killer killed process ${event.pid} (${event.comm}), resident ${Math.round(residentKb / 1024)} MiB, `
        + `when ${event.ppid} (${event.trigger_comm}) ran out of memory`,
      attributes: {
        'process.pid': event.pid, 'process.executable.name': event.comm, 'user.id': event.uid,
        'process.memory.virtual': event.total_vm_kb * 1024, 'process.memory.usage': residentKb * 1024,
        'process.oom_score_adj': event.oom_score_adj,
        'oom.trigger.pid': event.ppid, 'oom.trigger.executable.name': event.trigger_comm,
      },
    })
  }
}
