/**
 * C++ (Itanium ABI) and Rust (legacy and v0) symbol names to what a person reads:
 * `_ZNSt6vectorIiSaIiEE9push_backERKi` -> `std::vector<int, std::allocator<int> >::push_back(int const&)`,
 * `_RNvCs15kBYyAo9fc_7mycrate7example` -> `mycrate::example`.
 *
 * Names go through binutils' `c++filt`: demangleAll runs a child per batch of names, never one per
 * name; demangleAllAsync, the runtime's way, writes them to one long-lived child. Either way it is libiberty's demangler, the one perf, nm and gdb print with, so Periscope's
 * frames read as theirs do (--no-verbose: `std::string`, not `std::basic_string<char, …>`, as
 * perf and nm -C abbreviate). npm's one demangling library for this, gecko-profiler-demangle (the
 * Firefox profiler's cpp_demangle + rustc-demangle in WebAssembly), was tried and left: its C++
 * output drops the first parameter of template constructors
 * (`basic_string<…>::basic_string<std::allocator<char> >(std::allocator<char> const&)` for
 * `(char const*, std::allocator<char> const&)`), and differs from c++filt for 12% of libstdc++.
 *
 * Without binutils (no `c++filt` on the PATH), names stay mangled and demanglerMissing() says why.
 */
import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process'

/** Names per c++filt run: bounds its input and output (a name demangles to a few hundred bytes). */
const NAMES_PER_RUN = 20_000
/** Demangled names remembered across batches; past this the memory starts again empty. */
const CACHE_LIMIT = 200_000

const cache = new Map<string, string>()
let missing: string | undefined

const CXXFILT = 'c++filt'
const CXXFILT_ARGS = ['--no-strip-underscore', '--no-verbose']
const MANGLED_STAY = 'C++ and Rust function names stay mangled; install binutils (apt-get install binutils) to demangle them'

/** Whether `name` is spelled as a C++ or Rust compiler mangles: `_Z…` (and Apple's `__Z…`), `_R…`. */
export function isMangled(name: string): boolean {
  return name.startsWith('_Z') || name.startsWith('__Z') || (name.startsWith('_R') && name.length > 2 && name.charCodeAt(2) >= 0x41 && name.charCodeAt(2) <= 0x5a)
}

/**
 * The demangled form of each name, in order; C names, and mangled names that do not parse, come
 * back as they are. One c++filt run for every NAMES_PER_RUN names not seen before.
 */
export function demangleAll(names: readonly string[]): string[] {
  const unseen = unseenNames(names)
  for (let at = 0; at < unseen.length && missing === undefined; at += NAMES_PER_RUN) {
    const chunk = unseen.slice(at, at + NAMES_PER_RUN)
    const demangled = runCxxFilt(chunk)
    if (demangled === undefined) break
    remember(chunk, demangled)
  }
  return names.map((name) => cache.get(name) ?? name)
}

/**
 * demangleAll through one long-lived c++filt, for a process as large as the runtime: a c++filt
 * run of its own forks this process, which costs 15-20 ms there (its page tables are copied), at
 * every collection that meets a new name. Without c++filt, names stay mangled and
 * demanglerMissing() says why.
 */
export async function demangleAllAsync(names: readonly string[]): Promise<string[]> {
  const unseen = unseenNames(names)
  if (unseen.length > 0 && missing === undefined) {
    try {
      remember(unseen, await (coprocess ??= new CxxFiltCoprocess()).demangle(unseen))
    } catch (error) {
      // a child that crashed or hung leaves this batch's names mangled; the next batch starts another
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') missing = `c++filt is not installed: ${MANGLED_STAY}`
    }
  }
  return names.map((name) => cache.get(name) ?? name)
}

function unseenNames(names: readonly string[]): string[] {
  return [...new Set(names.filter((name) => isMangled(name) && !cache.has(name)))]
}

function remember(names: readonly string[], demangled: readonly string[]): void {
  if (cache.size + names.length > CACHE_LIMIT) cache.clear()
  names.forEach((name, i) => cache.set(name, demangled[i]!))
}

/** demangleAll of one name: a c++filt run when the name is new, so prefer demangleAll for many. */
export function demangle(name: string): string {
  return demangleAll([name])[0]!
}

/** Why names stay mangled (c++filt missing or failing), or undefined while demangling works. */
export function demanglerMissing(): string | undefined {
  return missing
}

function runCxxFilt(names: string[]): string[] | undefined {
  // names hold no newline: ELF symbol names end at NUL, and isMangled let through only _Z/_R names
  const run = spawnSync(CXXFILT, CXXFILT_ARGS, { input: `${names.join('\n')}\n`, encoding: 'utf8', maxBuffer: 1 << 28, timeout: 60_000 })
  const lines = run.stdout?.split('\n')
  if (run.error !== undefined || run.status !== 0 || lines === undefined || lines.length < names.length) {
    const why = (run.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT' ? 'c++filt is not installed' : `c++filt failed (${run.error?.message ?? `exit ${run.status}: ${run.stderr?.trim()}`})`
    missing = `${why}: ${MANGLED_STAY}`
    return undefined
  }
  return lines.slice(0, names.length)
}

/** How long c++filt may take to answer a batch before it is taken for hung and killed. */
const ANSWER_TIMEOUT_MS = 30_000

let coprocess: CxxFiltCoprocess | undefined

/**
 * One c++filt answering batch after batch: it reads a name per line and flushes each answer, so
 * the lines that come back are the batches' names, in the order they were written. It does not
 * keep the runtime alive while idle, and ends with it (its input closes). A child that exits or
 * hangs fails the batches it owes; the next batch starts another.
 */
class CxxFiltCoprocess {
  #child: ChildProcessWithoutNullStreams | undefined
  #partial = ''
  readonly #owed: { count: number; lines: string[]; resolve: (lines: string[]) => void; reject: (error: Error) => void; timer: NodeJS.Timeout }[] = []

  demangle(names: readonly string[]): Promise<string[]> {
    // names hold no newline: ELF symbol names end at NUL, and isMangled let through only _Z/_R names
    return new Promise((resolve, reject) => {
      const child = this.#child ?? this.#start()
      const timer = setTimeout(() => this.#fail(child, new Error(`c++filt gave no answer in ${ANSWER_TIMEOUT_MS / 1000} s`)), ANSWER_TIMEOUT_MS)
      this.#owed.push({ count: names.length, lines: [], resolve, reject, timer })
      this.#hold(true)
      child.stdin.write(`${names.join('\n')}\n`)
    })
  }

  #start(): ChildProcessWithoutNullStreams {
    const child = spawn(CXXFILT, CXXFILT_ARGS, { stdio: ['pipe', 'pipe', 'ignore'] }) as unknown as ChildProcessWithoutNullStreams
    this.#child = child
    this.#partial = ''
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (text: string) => this.#read(text))
    child.once('error', (error) => this.#fail(child, error))
    child.once('exit', (code, signal) => this.#fail(child, new Error(`c++filt exited (${signal ?? `exit ${code}`})`)))
    child.stdin.on('error', () => {}) // a write to an exited child: its 'exit' fails the batch
    child.unref()
    return child
  }

  #read(text: string): void {
    const lines = (this.#partial + text).split('\n')
    this.#partial = lines.pop()!
    for (const line of lines) {
      const batch = this.#owed[0]
      if (batch === undefined) continue
      batch.lines.push(line)
      if (batch.lines.length < batch.count) continue
      this.#owed.shift()
      clearTimeout(batch.timer)
      batch.resolve(batch.lines)
    }
    this.#hold(this.#owed.length > 0)
  }

  #fail(child: ChildProcessWithoutNullStreams, error: Error): void {
    if (this.#child !== child) return
    this.#child = undefined
    child.kill('SIGKILL')
    for (const batch of this.#owed.splice(0)) {
      clearTimeout(batch.timer)
      batch.reject(error)
    }
  }

  /** Keeps the event loop alive while answers are owed (a batch awaits them), not after. */
  #hold(owed: boolean): void {
    const pipes = this.#child?.stdout as unknown as { ref(): void; unref(): void } | undefined
    if (owed) pipes?.ref()
    else pipes?.unref()
  }
}
