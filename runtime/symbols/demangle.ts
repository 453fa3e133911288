/**
 * C++ (Itanium ABI) and Rust (legacy and v0) symbol names to what a person reads:
 * `_ZNSt6vectorIiSaIiEE9push_backERKi` -> `std::vector<int, std::allocator<int> >::push_back(int const&)`,
 * `_RNvCs15kBYyAo9fc_7mycrate7example` -> `mycrate::example`.
 *
 * The work is done by gecko-profiler-demangle, the Firefox profiler's demangler: the `cpp_demangle`
 * and `rustc-demangle` crates (the latter the Rust project's own) compiled to WebAssembly, so no
 * child process and no native build. Its output matches `c++filt` (GCC clones read
 * `foo() [clone .cold]`), and Rust legacy names lose their hash as `rustfilt` prints them.
 * The module is compiled on first use (about 0.5 MB of WebAssembly), not at import.
 */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'

interface Demangler {
  demangle_any(name: string): string
  __wbg_set_wasm(exports: Record<string, unknown>): void
}

/** The part of the WebAssembly API used here (the project's TypeScript libs leave WebAssembly out). */
interface WebAssemblyApi {
  Module: new (bytes: Uint8Array) => object
  Instance: new (module: object, imports: Record<string, object>) => { exports: Record<string, unknown> }
}

let demangler: Demangler | undefined

/**
 * Loads the bindings and instantiates the WebAssembly module synchronously: the package's own entry
 * imports the .wasm file as an ES module, which Node 24 flags as experimental with a warning.
 */
function load(): Demangler {
  const require = createRequire(import.meta.url)
  const bindings = require('gecko-profiler-demangle/index_bg.js') as Demangler
  const { WebAssembly } = globalThis as unknown as { WebAssembly: WebAssemblyApi }
  const module = new WebAssembly.Module(readFileSync(require.resolve('gecko-profiler-demangle/index_bg.wasm')))
  const instance = new WebAssembly.Instance(module, { './index_bg.js': bindings })
  bindings.__wbg_set_wasm(instance.exports)
  ;(instance.exports.__wbindgen_start as () => void)()
  return bindings
}

/** Whether `name` is spelled as a C++ or Rust compiler mangles: `_Z…` (and Apple's `__Z…`), `_R…`. */
export function isMangled(name: string): boolean {
  return name.startsWith('_Z') || name.startsWith('__Z') || (name.startsWith('_R') && name.length > 2 && name.charCodeAt(2) >= 0x41 && name.charCodeAt(2) <= 0x5a)
}

/** The demangled form of a C++ or Rust name; any other name (C's, a mangled name that does not parse) comes back as it is. */
export function demangle(name: string): string {
  if (!isMangled(name)) return name
  demangler ??= load()
  return demangler.demangle_any(name)
}
