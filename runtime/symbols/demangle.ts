/**
 * C++ (Itanium ABI) and Rust (legacy and v0) symbol names to what a person reads:
 * `_ZNSt6vectorIiSaIiEE9push_backERKi` -> `std::vector<int, std::allocator<int> >::push_back(int const&)`,
 * `_RNvCs15kBYyAo9fc_7mycrate7example` -> `mycrate::example`.
 *
 * Names go through binutils' `c++filt`, one child per batch of names (a profile's collection),
 * never one per name: libiberty's demangler, the one perf, nm and gdb print with, so Periscope's
 * frames read as theirs do (--no-verbose: `std::string`, not `std::basic_string<char, …>`, as
 * perf and nm -C abbreviate). npm's one demangling library for this, gecko-profiler-demangle (the
 * Firefox profiler's cpp_demangle + rustc-demangle in WebAssembly), was tried and left: its C++
 * output drops the first parameter of template constructors
 * (`basic_string<…>::basic_string<std::allocator<char> >(std::allocator<char> const&)` for
 * `(char const*, std::allocator<char> const&)`), and differs from c++filt for 12% of libstdc++.
 *
 * Without binutils (no `c++filt` on the PATH), names stay mangled and demanglerMissing() says why.
 */
import { spawnSync } from 'node:child_process'

/** Names per c++filt run: bounds its input and output (a name demangles to a few hundred bytes). */
const NAMES_PER_RUN = 20_000
/** Demangled names remembered across batches; past this the memory starts again empty. */
const CACHE_LIMIT = 200_000

const cache = new Map<string, string>()
let missing: string | undefined

/** Whether `name` is spelled as a C++ or Rust compiler mangles: `_Z…` (and Apple's `__Z…`), `_R…`. */
export function isMangled(name: string): boolean {
  return name.startsWith('_Z') || name.startsWith('__Z') || (name.startsWith('_R') && name.length > 2 && name.charCodeAt(2) >= 0x41 && name.charCodeAt(2) <= 0x5a)
}

/**
 * The demangled form of each name, in order; C names, and mangled names that do not parse, come
 * back as they are. One c++filt run for every NAMES_PER_RUN names not seen before.
 */
export function demangleAll(names: readonly string[]): string[] {
  const unseen = [...new Set(names.filter((name) => isMangled(name) && !cache.has(name)))]
  for (let at = 0; at < unseen.length && missing === undefined; at += NAMES_PER_RUN) {
    const chunk = unseen.slice(at, at + NAMES_PER_RUN)
    const demangled = runCxxFilt(chunk)
    if (demangled === undefined) break
    if (cache.size + chunk.length > CACHE_LIMIT) cache.clear()
    chunk.forEach((name, i) => cache.set(name, demangled[i]!))
  }
  return names.map((name) => cache.get(name) ?? name)
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
  const run = spawnSync('c++filt', ['--no-strip-underscore', '--no-verbose'], { input: `${names.join('\n')}\n`, encoding: 'utf8', maxBuffer: 1 << 28, timeout: 60_000 })
  const lines = run.stdout?.split('\n')
  if (run.error !== undefined || run.status !== 0 || lines === undefined || lines.length < names.length) {
    const why = (run.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT' ? 'c++filt is not installed' : `c++filt failed (${run.error?.message ?? `exit ${run.status}: ${run.stderr?.trim()}`})`
    missing = `${why}: C++ and Rust function names stay mangled; install binutils (apt-get install binutils) to demangle them`
    return undefined
  }
  return lines.slice(0, names.length)
}
