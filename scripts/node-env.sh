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
# - The old generation collected once it grew by 25% since the last full GC, not when V8's dynamic
#   factor (up to 4x, as the heap limit is far) says: under a load of 400 execs/s the default
#   plugins' log records die in old space, and a heap of 45 MB live held 120 MB before its next
#   GC. Mean RSS from 40 to 100 s after start, 2 rounds: 283-292 MB -> 256-258 MB; CPU within
#   noise (36-40% of a core either way).
periscope_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export NODE_COMPILE_CACHE=${NODE_COMPILE_CACHE:-$periscope_root/node_modules/.cache/periscope-compile}
case ":${GLIBC_TUNABLES:-}" in
  # malloc tuned already (by the user, or by a parent that sourced this file): that wins
  *:glibc.malloc.*) ;;
  *) export GLIBC_TUNABLES=${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}glibc.malloc.trim_threshold=2097152:glibc.malloc.mmap_threshold=2097152:glibc.malloc.arena_max=2 ;;
esac
periscope_node_flags=(--max-semi-space-size=1 --heap-growing-percent=25)
