# How Node runs Periscope: sourced by ./periscope, and by bench/run.ts so the benchmarks measure
# the runtime as it runs. bench/memory.bench.ts measures what each setting saves.
# - Node's compile cache keeps every module type-stripped and compiled: a start loads neither the
#   TypeScript stripper (a WebAssembly module, ~17 MB resident) nor compiles from scratch.
# - glibc gives freed memory back beyond 2 MiB at the top of a heap (start-up's feature probes
#   parse the kernel's BTF on worker threads and leave ~11 MB behind otherwise), in at most two
#   arenas. Allocations below 2 MiB, batch copies among them, stay in the heap: with mmap they
#   would fault in fresh pages on every batch.
# - A young generation of 1 MB semi-spaces instead of V8's 16: the runtime allocates little per
#   batch, and an exporter flood then promotes less garbage.
periscope_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export NODE_COMPILE_CACHE=${NODE_COMPILE_CACHE:-$periscope_root/node_modules/.cache/periscope-compile}
case ":${GLIBC_TUNABLES:-}" in
  # malloc tuned already (by the user, or by a parent that sourced this file): that wins
  *:glibc.malloc.*) ;;
  *) export GLIBC_TUNABLES=${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}glibc.malloc.trim_threshold=2097152:glibc.malloc.mmap_threshold=2097152:glibc.malloc.arena_max=2 ;;
esac
periscope_node_flags=(--max-semi-space-size=1)
