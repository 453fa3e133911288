/**
 * Plaintext of TLS connections, for any protocol plugin: keeps the `sockdata` object's OpenSSL
 * uprobes attached to every libssl (and every statically linked OpenSSL) that some process maps.
 *
 * Uprobes go on the library *file*, for every process that maps it, so there is one set per file
 * however many processes use it; the host shares them with other plugins too. Files are found by
 * the object's `mapped_libraries` and `executables` iterators at start (the /proc scan, done in
 * the kernel because Periscope runs without CAP_SYS_PTRACE), then by its `libraries` ring (a
 * process mapped a libssl)
 * and by exec events (a binary that may carry OpenSSL itself). When the last process that used a
 * file exits, its uprobes are removed.
 *
 * Handlers only queue work. A timer starts it in the background and does not wait for it: an
 * attach makes the host read the file's symbol table (runtime/symbols/elf.ts), which for a large binary takes long enough
 * that batches would queue up behind it (a timer's promise is awaited before the next batch).
 */
import type { PluginContext, TopicEvent } from 'periscope/plugin'

type Ctx = PluginContext<Record<string, unknown>>

/** program name in sockdata → the OpenSSL function it hooks; the _ex forms may be absent (1.1.0). */
const probes: { program: string; symbol: string; retprobe: boolean; optional: boolean }[] = [
  { program: 'ssl_write', symbol: 'SSL_write', retprobe: false, optional: false },
  { program: 'ssl_write_ret', symbol: 'SSL_write', retprobe: true, optional: false },
  { program: 'ssl_read', symbol: 'SSL_read', retprobe: false, optional: false },
  { program: 'ssl_read_ret', symbol: 'SSL_read', retprobe: true, optional: false },
  { program: 'ssl_write_ex', symbol: 'SSL_write_ex', retprobe: false, optional: true },
  { program: 'ssl_write_ex_ret', symbol: 'SSL_write_ex', retprobe: true, optional: true },
  { program: 'ssl_read_ex', symbol: 'SSL_read_ex', retprobe: false, optional: true },
  { program: 'ssl_read_ex_ret', symbol: 'SSL_read_ex', retprobe: true, optional: true },
]

/** `kind` of exec:events (bpf/lib/exec.h) */
const EXEC_EVENT_EXEC = 1
const EXEC_EVENT_EXIT = 2

/** Executables checked for a static OpenSSL and found without one; bounded, oldest forgotten. */
const maxCheckedBinaries = 4096

interface FileState {
  pids: Set<number>
  detach: (() => Promise<void>)[]
}

/** The host's error code (`ctx.attach` errors carry it, and start their message with it). */
function codeOf(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code
  if (typeof code === 'string') return code
  return /^([A-Z_]+):/.exec(error instanceof Error ? error.message : String(error))?.[1] ?? ''
}

/** The file has no such function: not an error for optional probes and for static checks. */
function isMissingSymbol(error: unknown): boolean {
  return codeOf(error) === 'ENOSYMBOL'
}

/** The file is not ELF (a script, say): ENOEXEC from the ELF reader, LIBBPF_FORMAT from libbpf. */
function isNotElf(error: unknown): boolean {
  const code = codeOf(error)
  return code === 'ENOEXEC' || code === 'LIBBPF_FORMAT'
}

/** d_path's mark on a file that was deleted (or a memfd): nothing to open by that name. */
export const DELETED = ' (deleted)'

/** `<pid> <path>` lines, as the mapped_libraries and executables iterators print them. */
export function* pathLines(text: string): Generator<[number, string]> {
  for (const line of text.split('\n')) {
    const space = line.indexOf(' ')
    if (space <= 0) continue
    yield [Number(line.slice(0, space)), line.slice(space + 1)]
  }
}

export class OpenSslFollower {
  readonly #ctx: Ctx
  readonly #warn: (message: string) => void
  readonly #files = new Map<string, FileState>()
  readonly #withoutOpenSsl = new Set<string>()
  readonly #pidsToScan = new Set<number>()
  readonly #binariesToCheck = new Map<string, number>()
  #recheck = false
  #working = false
  /** Attach failures that were not expected, for the plugin's report. */
  failures = 0

  constructor(ctx: Ctx, warn: (message: string) => void) {
    this.#ctx = ctx
    this.#warn = warn
  }

  /** Attaches to what is mapped now; the caller then routes events here and runs `work` on a timer. */
  async start(): Promise<void> {
    await this.#addMappings(await this.#ctx.iterate('sockdata:mapped_libraries'))
    // binaries that carry OpenSSL themselves (Node's) and run already: checked in the background
    for (const [pid, path] of pathLines(await this.#ctx.iterate('sockdata:executables'))) {
      const known = this.#files.get(path)
      if (known !== undefined) known.pids.add(pid)
      else this.#binariesToCheck.set(path, pid)
    }
  }

  /** A process mapped a libssl: its path is looked up (by pid) at the next `work`. */
  onLibrary(event: TopicEvent<'sockdata:libraries'>): void {
    this.#pidsToScan.add(event.pid)
  }

  /** exec: the new image may link OpenSSL statically; exit: a file may have lost its last user. */
  onExec(event: TopicEvent<'exec:events'>): void {
    if (event.kind === EXEC_EVENT_EXEC) {
      // a relative path is relative to a working directory this event does not carry
      if (!event.filename.startsWith('/')) return
      const attached = this.#files.get(event.filename)
      // another process of a file with the uprobes: it keeps them on after the first one exits
      if (attached !== undefined) attached.pids.add(event.pid)
      else if (!this.#withoutOpenSsl.has(event.filename)) this.#binariesToCheck.set(event.filename, event.pid)
      return
    }
    if (event.kind !== EXEC_EVENT_EXIT) return
    for (const state of this.#files.values()) {
      if (state.pids.delete(event.pid) && state.pids.size === 0) this.#recheck = true
    }
  }

  /** Starts the queued work unless it is already running; never waits for it. */
  kick(): void {
    if (this.#working) return
    this.#working = true
    this.#work().catch((error: Error) => this.#warn(`following OpenSSL: ${error.message}`)).finally(() => (this.#working = false))
  }

  async #work(): Promise<void> {
    const pids = [...this.#pidsToScan]
    this.#pidsToScan.clear()
    for (const pid of pids) await this.#addMappings(await this.#ctx.iterate('sockdata:mapped_libraries', { pid }))
    const binaries = [...this.#binariesToCheck]
    this.#binariesToCheck.clear()
    for (const [path, pid] of binaries) await this.#tryStatic(path, pid)
    if (this.#recheck) {
      this.#recheck = false
      await this.#detachUnused()
    }
  }

  async #addMappings(text: string): Promise<void> {
    for (const [pid, path] of pathLines(text)) {
      const known = this.#files.get(path)
      if (known !== undefined) known.pids.add(pid)
      else await this.#attach(path, pid, true)
    }
  }

  async #tryStatic(path: string, pid: number): Promise<void> {
    if (this.#withoutOpenSsl.size >= maxCheckedBinaries) this.#withoutOpenSsl.delete(this.#withoutOpenSsl.values().next().value!)
    if (!(await this.#attach(path, pid, false))) this.#withoutOpenSsl.add(path)
  }

  /** Attaches every probe to one file; false when the file has no SSL_write (not OpenSSL). */
  async #attach(path: string, pid: number, expectOpenSsl: boolean): Promise<boolean> {
    // an executable deleted or run from a memfd: checked for a static OpenSSL, it has no name to open
    if (!expectOpenSsl && path.endsWith(DELETED)) return false
    const state: FileState = { pids: new Set([pid]), detach: [] }
    for (const probe of probes) {
      try {
        const handle = await this.#ctx.attach({ program: `sockdata:${probe.program}`, uprobe: { binary: path, symbol: probe.symbol, retprobe: probe.retprobe } })
        state.detach.push(() => handle.detach())
      } catch (error) {
        if (probe.optional && isMissingSymbol(error)) continue
        // an executable checked for a static OpenSSL: a script, or an ELF without SSL_write
        if (!expectOpenSsl && (isMissingSymbol(error) || isNotElf(error))) return false
        this.failures++
        this.#warn(`HTTPS in ${path} is not traced: ${(error as Error).message}`)
        for (const detach of state.detach) await detach()
        return false
      }
    }
    this.#files.set(path, state)
    return true
  }

  /** Files no process is known to use: detached unless the kernel still sees a mapping or a process running it. */
  async #detachUnused(): Promise<void> {
    const idle = [...this.#files].filter(([, state]) => state.pids.size === 0)
    if (idle.length === 0) return
    const mapped = new Set<string>()
    // a libssl some process maps, or a binary with OpenSSL inside that some process runs
    const lines = [...pathLines(await this.#ctx.iterate('sockdata:mapped_libraries')), ...pathLines(await this.#ctx.iterate('sockdata:executables'))]
    for (const [pid, path] of lines) {
      mapped.add(path)
      this.#files.get(path)?.pids.add(pid)
    }
    for (const [path, state] of idle) {
      if (mapped.has(path)) continue
      this.#files.delete(path)
      for (const detach of state.detach) await detach()
    }
  }

  /** Files with uprobes attached now, for the plugin's report. */
  get files(): string[] {
    return [...this.#files.keys()]
  }
}

/** Starts an OpenSslFollower and wires it to the plugin's streams and a 200 ms timer. */
export async function followOpenSsl(ctx: Ctx, warn: (message: string) => void): Promise<OpenSslFollower> {
  const follower = new OpenSslFollower(ctx, warn)
  ctx.on('sockdata:libraries', (event) => follower.onLibrary(event))
  ctx.on('exec:events', (event) => follower.onExec(event))
  await follower.start()
  ctx.every('200ms', () => follower.kick())
  return follower
}
