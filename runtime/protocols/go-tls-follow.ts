/**
 * Plaintext of Go's crypto/tls, for any protocol plugin: keeps the `sockdata` object's Go TLS
 * uprobes attached to every executable that has `crypto/tls.(*Conn).Write` and runs on the host.
 * Go links crypto/tls into each binary, so there is no shared library to follow as for OpenSSL
 * (runtime/protocols/tls-follow.ts): every executable is a candidate.
 *
 * Executables are found by the object's `executables` iterator at start (the kernel reads each
 * process's executable, since Periscope runs without CAP_SYS_PTRACE and cannot read other users'
 * /proc/<pid>/exe), then by exec events. An exec's file name may be relative or a link, so a new
 * name is resolved by running the iterator for that process: files are known by the kernel's path,
 * and one file is attached once however it was started. Each file is checked once; those without
 * crypto/tls are remembered (bounded). When the last process that ran a file exits, its uprobes
 * are removed. The exec object reports the exit only of processes whose exec it saw, so while a
 * file has users found by the iterator, the iterator is run again every few seconds to see them go.
 *
 * Write's entry gets `go_tls_write` (the plaintext is all there); Read's entry gets `go_tls_read`
 * and its every return instruction `go_tls_read_ret` (`at: 'returns'`), never a uretprobe, which
 * crashes Go programs whose stacks move. Stripped
 * binaries are found through `.gopclntab` by the host. A process that ran before its file had the
 * uprobes may have TLS connections whose start went by unseen: the object's `mark_tls_midstream`
 * has the kernel take them as found mid-stream, as the start-up scan's are.
 *
 * Handlers only queue work. A timer starts it in the background and does not wait for it: each
 * attach makes the host read the file's symbols and decode the functions, which for a large
 * binary takes long enough that batches would queue up behind it.
 */
import type { PluginContext, TopicEvent } from 'periscope/plugin'
import { DELETED, pathLines } from './tls-follow.ts'

type Ctx = PluginContext<Record<string, unknown>>

const WRITE = 'crypto/tls.(*Conn).Write'
const READ = 'crypto/tls.(*Conn).Read'

/** program name in sockdata → the function and where in it; the Write entry comes first, as the check for crypto/tls. */
const probes: { program: string; symbol: string; at: 'entry' | 'returns' }[] = [
  { program: 'go_tls_write', symbol: WRITE, at: 'entry' },
  { program: 'go_tls_read', symbol: READ, at: 'entry' },
  { program: 'go_tls_read_ret', symbol: READ, at: 'returns' },
]

/** `kind` of exec:events (bpf/lib/exec.h) */
const EXEC_EVENT_EXEC = 1
const EXEC_EVENT_EXIT = 2

/** Executables found without crypto/tls, and exec names resolved; each bounded, oldest forgotten. */
const maxRemembered = 4096

/** Processes found gone before the others that exec'd the same name are given up on. */
const resolveTries = 3

/** How often processes whose exit will not be reported are looked for again. */
const sweepMs = 5000


interface FileState {
  pids: Set<number>
  detach: (() => Promise<void>)[]
  /** boot-clock ns once every probe was on: later connections of its processes were seen whole */
  attachedNs: number
}

/** The host's error code (`ctx.attach` errors carry it, and start their message with it). */
function codeOf(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code
  if (typeof code === 'string') return code
  return /^([A-Z_]+):/.exec(error instanceof Error ? error.message : String(error))?.[1] ?? ''
}

/** Not Go with crypto/tls: no such function, or not ELF at all (a script). */
function isNotGoTls(error: unknown): boolean {
  const code = codeOf(error)
  return code === 'ENOSYMBOL' || code === 'ENOEXEC' || code === 'LIBBPF_FORMAT'
}

/** Adds to a bounded set or map, forgetting the oldest entry when it is full. */
function remember<K, V>(map: Map<K, V>, key: K, value: V): void {
  if (map.size >= maxRemembered) map.delete(map.keys().next().value!)
  map.set(key, value)
}

export class GoTlsFollower {
  readonly #ctx: Ctx
  readonly #warn: (message: string) => void
  readonly #files = new Map<string, FileState>()
  /** files checked and found without crypto/tls (or that could not be attached: warned once) */
  readonly #withoutGoTls = new Map<string, true>()
  /** an exec's file name → the kernel's path of its file, once resolved */
  readonly #resolved = new Map<string, string>()
  /** file names exec'd since the last `work` → the pids that exec'd them, to resolve then */
  readonly #toResolve = new Map<string, Set<number>>()
  /** users of attached files found by the iterator, not by an exec: no exit event will come for them */
  readonly #unwatched = new Set<number>()
  #lastSweep = 0
  #recheck = false
  #working = false
  /** Attach failures that were not expected, for the plugin's report. */
  failures = 0

  constructor(ctx: Ctx, warn: (message: string) => void) {
    this.#ctx = ctx
    this.#warn = warn
  }

  /** Attaches to what runs now; the caller then routes exec events here and runs `kick` on a timer. */
  async start(): Promise<void> {
    for (const [pid, path] of pathLines(await this.#ctx.iterate('sockdata:executables'))) {
      const file = await this.#addProcess(pid, path)
      if (file === undefined) continue
      this.#unwatched.add(pid)
      await this.#markMidStream(pid, file)
    }
    this.#lastSweep = Date.now()
  }

  /**
   * The process may have TLS connections from before its file had the uprobes: those whose
   * plaintext the kernel has not seen yet are taken as found mid-stream (an HTTP/2 preface may
   * have gone by). The kernel leaves out the ones whose handshake came after the attach, through
   * the process's entry in `tls_attached_ns`, held only while the iterator runs.
   */
  async #markMidStream(pid: number, file: FileState): Promise<void> {
    const key = new Uint8Array(4), value = new Uint8Array(8)
    new DataView(key.buffer).setUint32(0, pid, true)
    new DataView(value.buffer).setBigUint64(0, BigInt(file.attachedNs), true)
    const attachedNs = this.#ctx.map('sockdata:tls_attached_ns')
    await attachedNs.update(key, value)
    try {
      await this.#ctx.iterate('sockdata:mark_tls_midstream', { pid })
    } finally {
      await attachedNs.delete(key)
    }
  }

  /** exec: a known file gains a process, a new name is resolved later; exit: a file may have lost its last process. */
  onExec(event: TopicEvent<'exec:events'>): void {
    if (event.kind === EXEC_EVENT_EXEC) {
      const path = this.#resolved.get(event.filename) ?? event.filename
      if (this.#withoutGoTls.has(path)) return
      const known = this.#files.get(path)
      if (known !== undefined) known.pids.add(event.pid)
      else this.#toResolve.set(event.filename, (this.#toResolve.get(event.filename) ?? new Set()).add(event.pid))
      return
    }
    if (event.kind !== EXEC_EVENT_EXIT) return
    this.#unwatched.delete(event.pid)
    for (const state of this.#files.values()) {
      if (state.pids.delete(event.pid) && state.pids.size === 0) this.#recheck = true
    }
  }

  /** Starts the queued work unless it is already running (or there is none); never waits for it. */
  kick(): void {
    if (this.#working || !this.#due()) return
    this.#working = true
    this.#work().catch((error: Error) => this.#warn(`following Go crypto/tls: ${error.message}`)).finally(() => (this.#working = false))
  }

  #sweepDue(): boolean {
    return this.#recheck || (this.#unwatched.size > 0 && Date.now() - this.#lastSweep >= sweepMs)
  }

  #due(): boolean {
    return this.#toResolve.size > 0 || this.#sweepDue()
  }

  async #work(): Promise<void> {
    const execs = [...this.#toResolve]
    this.#toResolve.clear()
    for (const [filename, pids] of execs) await this.#resolve(filename, [...pids])
    if (this.#sweepDue()) {
      this.#recheck = false
      await this.#sweep()
    }
  }

  /**
   * Finds the file of processes that exec'd `filename`, by asking the kernel about them, newest
   * first: one answer serves them all when the name is absolute. A process already gone prints
   * nothing (it has nothing left to trace); after resolveTries such, the rest are not asked, so a
   * burst of short-lived processes costs a few iterator runs, not one each.
   */
  async #resolve(filename: string, pids: number[]): Promise<void> {
    let gone = 0
    for (const pid of pids.reverse()) {
      const [found] = [...pathLines(await this.#ctx.iterate('sockdata:executables', { pid }))]
      if (found === undefined) {
        if (++gone >= resolveTries) return
        continue
      }
      const path = found[1]
      const file = await this.#addProcess(pid, path)
      if (file !== undefined) await this.#markMidStream(pid, file)
      if (!filename.startsWith('/')) continue
      remember(this.#resolved, filename, path)
      // the others were not asked: some may be gone, their exits handled before now; a sweep tells
      for (const other of pids) {
        const otherFile = other === pid ? undefined : await this.#addProcess(other, path)
        if (otherFile === undefined) continue
        this.#unwatched.add(other)
        await this.#markMidStream(other, otherFile)
      }
      return
    }
  }

  /** Counts a process as a user of its file, attaching to the file first; undefined when it has no crypto/tls. */
  async #addProcess(pid: number, path: string): Promise<FileState | undefined> {
    if (path.endsWith(DELETED) || this.#withoutGoTls.has(path)) return undefined
    const known = this.#files.get(path)
    if (known !== undefined) {
      known.pids.add(pid)
      return known
    }
    const state = await this.#attach(path)
    if (state === undefined) {
      remember(this.#withoutGoTls, path, true)
      return undefined
    }
    state.pids.add(pid)
    this.#files.set(path, state)
    return state
  }

  /** Attaches every probe to one file; undefined when it has no crypto/tls or could not be attached. */
  async #attach(path: string): Promise<FileState | undefined> {
    const state: FileState = { pids: new Set(), detach: [], attachedNs: 0 }
    for (const probe of probes) {
      try {
        const handle = await this.#ctx.attach({ program: `sockdata:${probe.program}`, uprobe: { binary: path, symbol: probe.symbol, at: probe.at } })
        state.detach.push(() => handle.detach())
      } catch (error) {
        for (const detach of state.detach) await detach()
        // most executables: not Go, or Go without crypto/tls
        if (state.detach.length === 0 && isNotGoTls(error)) return undefined
        this.failures++
        this.#warn(`Go TLS in ${path} is not traced: ${(error as Error).message}`)
        return undefined
      }
    }
    state.attachedNs = this.#bootNowNs()
    return state
  }

  /**
   * The boot clock now, from the wall clock and the runtime's offset between the two (wallNs is
   * boot + offset): to the millisecond, well inside the time an attach takes.
   */
  #bootNowNs(): number {
    return Date.now() * 1e6 - this.#ctx.time.wallNs(0)
  }

  /**
   * Counts each attached file's users afresh from the kernel, and detaches the files nobody runs:
   * after an exit event left a file without users, and every sweepMs while some users' exits
   * would go unreported.
   */
  async #sweep(): Promise<void> {
    this.#lastSweep = Date.now()
    // exec events handled while the iterator runs add users that it may not show yet
    const before = new Map([...this.#files].map(([path, state]) => [path, new Set(state.pids)]))
    const running = new Map<string, Set<number>>()
    for (const [pid, path] of pathLines(await this.#ctx.iterate('sockdata:executables'))) {
      if (this.#files.has(path)) running.set(path, (running.get(path) ?? new Set()).add(pid))
    }
    const alive = new Set([...running.values()].flatMap((pids) => [...pids]))
    for (const pid of this.#unwatched) if (!alive.has(pid)) this.#unwatched.delete(pid)
    for (const [path, state] of [...this.#files]) {
      const pids = running.get(path) ?? new Set()
      for (const pid of state.pids) if (before.get(path)?.has(pid) !== true) pids.add(pid)
      state.pids = pids
      if (pids.size > 0) continue
      this.#files.delete(path)
      for (const detach of state.detach) await detach()
    }
  }

  /** Files with uprobes attached now, for the plugin's report. */
  get files(): string[] {
    return [...this.#files.keys()]
  }
}

/**
 * Starts a GoTlsFollower and wires it to exec events and a 50 ms timer (a Go service may open its
 * connections right after it starts, and the uprobes only see the calls made once they are on);
 * the plugin lists objects: ['sockdata', 'exec'].
 */
export async function followGoTls(ctx: Ctx, warn: (message: string) => void): Promise<GoTlsFollower> {
  const follower = new GoTlsFollower(ctx, warn)
  ctx.on('exec:events', (event) => follower.onExec(event))
  await follower.start()
  ctx.every('50ms', () => follower.kick())
  return follower
}
