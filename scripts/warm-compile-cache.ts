/**
 * Fills Node's compile cache (NODE_COMPILE_CACHE, see scripts/node-env.sh) with the runtime's
 * modules, so that `periscope run` finds every one of them type-stripped and compiled. Without
 * it, a start after a build or an edit strips them itself, and the TypeScript stripper (a
 * WebAssembly module, ~17 MB) stays resident for the life of the runtime. ./periscope runs this
 * when a source is newer than its last run.
 */
const cli = new URL('../runtime/cli.ts', import.meta.url)
for (const module of ['../runtime/run.ts', '../runtime/check.ts', '../runtime/library/index.ts', '../bpf/lib/index.types.ts']) {
  await import(new URL(module, import.meta.url).href)
}
// the CLI runs when imported: asked for its usage, it prints it and exits, and Node writes the cache
process.argv.splice(1, Infinity, cli.pathname, 'help')
await import(cli.href)
