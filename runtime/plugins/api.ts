/**
 * The plugin API, imported by plugins as `periscope/plugin`.
 *
 * A plugin is one TypeScript file whose default export is `definePlugin({...})`. esbuild bundles it
 * (with the helpers it imports and the generated decoders) and the bundle runs in its own
 * isolated-vm isolate. Nothing here touches the host: the `ctx` a plugin receives is built inside
 * the isolate by `runtime/plugins/isolate/bootstrap.ts`, and it reaches the host only through the
 * few calls listed on `PluginContext`.
 *
 * Lifecycle of one version of a plugin, in order:
 * 1. The bundle is evaluated (module top level runs once per isolate).
 * 2. The objects in `objects` are opened (or shared with other plugins already using them).
 * 3. `setup(ctx)` runs once. It registers handlers (`ctx.on`), timers (`ctx.every`) and may read
 *    maps. On a hot reload, the previous version stops receiving events just before this call and
 *    `ctx.state` holds what the previous version left in it. If `setup` throws, the previous
 *    version carries on as if nothing happened.
 * 4. Handlers run, one batch of events at a time, in the order the kernel produced them; timers
 *    run between batches, never during one.
 * 5. The version ends when it is replaced (hot reload), unloaded (file deleted) or stopped after a
 *    failure (throw, time budget, call deadline, memory limit, emit flood); after a failure a fresh version starts
 *    with backoff and an empty `ctx.state`.
 */
import type {
  FrameInput,
  LogInput,
  MetricPointInput,
  ProfileSampleInput,
  SpanInput,
} from '../telemetry/signals.ts'

export type { FrameInput, LogInput, MetricPointInput, ProfileSampleInput, SpanInput }
export type { TracepointEvent } from '../protocols/tracepoint.ts'
import type { TracepointEvent } from '../protocols/tracepoint.ts'
export type { UprobeEvent } from '../protocols/uprobe-events.ts'
import type { UprobeEvent } from '../protocols/uprobe-events.ts'

/**
 * Event types per topic (`'<object>:<stream>'`), generated from the objects' BTF into
 * `bpf/lib/index.types.ts`. A topic outside the table gives loosely typed events.
 */
export type { Topics } from '../../bpf/lib/index.types.ts'
import type { Topics } from '../../bpf/lib/index.types.ts'

export type TopicEvent<K extends string> = K extends keyof Topics ? Topics[K] : Record<string, unknown>

export type ConfigValue = string | number | boolean | null | ConfigValue[] | { [key: string]: ConfigValue }

/**
 * Key/value access to a BPF map. Keys and values are the raw bytes of the kernel's structs (the
 * generated codecs in `bpf/lib/<name>.types.ts` encode and decode them). Every method is one host
 * call, checked there against the plugin's objects. A failure rejects with an Error whose message
 * starts with its code and whose `code` says it: `EACCES` (not one of the plugin's objects),
 * `EBUSY` (another plugin claimed the key), `EINVAL` (wrong method for this kind of map).
 */
export interface PluginMap {
  lookup(key: Uint8Array): Promise<Uint8Array | undefined>
  /** Refused (`EBUSY`) on a key another plugin claimed. */
  update(key: Uint8Array, value: Uint8Array): Promise<void>
  /** Refused (`EBUSY`) on a key another plugin claimed. */
  delete(key: Uint8Array): Promise<boolean>
  /** A snapshot of all entries, copied in one call. */
  entries(): Promise<[Uint8Array, Uint8Array][]>
  /**
   * Reads every entry and resets it, in one call: hash entries are deleted, array entries are set
   * to zero. An update the kernel makes to an entry between its read and its reset is lost; where
   * every count matters, keep growing counters and take differences of `entries()`.
   */
  drain(): Promise<[Uint8Array, Uint8Array][]>
  /**
   * Holds `key` = `value` in the map while this version of the plugin runs: the entry is written
   * now and removed (deleted; zeroed in an array) when no holder is left. Holds are counted across
   * plugins and versions: a hot reload's new version claims during its setup, before the old
   * version lets go, so the kernel never misses the entry. Other plugins may claim the same key
   * only with the same value (otherwise `EBUSY`, naming the holder); a newer version of the same
   * plugin may change it (the older version's value returns if the newer one fails to start). Use
   * it for maps that configure the kernel from the plugin's config: filters, wanted protocols.
   * Claiming the same key twice in one version holds it once, with the last value.
   */
  claim(key: Uint8Array, value: Uint8Array): Promise<void>
  /** Lets go of this version's claim on `key`; false when it held none. */
  unclaim(key: Uint8Array): Promise<boolean>
  /**
   * True for per-CPU maps, whose values come split by CPU through the `...PerCpu` methods
   * (`valuesPerCpu`: one `valueSize` array per possible CPU). `lookup`, `entries` and `drain`
   * refuse per-CPU maps, and the `...PerCpu` methods refuse the others (`EINVAL`).
   */
  readonly perCpu: boolean
  lookupPerCpu(key: Uint8Array): Promise<Uint8Array[] | undefined>
  entriesPerCpu(): Promise<[Uint8Array, Uint8Array[]][]>
  /** As `drain`, for per-CPU maps. */
  drainPerCpu(): Promise<[Uint8Array, Uint8Array[]][]>
  readonly keySize: number
  readonly valueSize: number
}

/** What `ctx.attach` attaches: a uprobe program of one of the plugin's objects on a function of a binary. */
export interface UprobeAttach {
  /** `'<object>:<program>'`; the program's section must be `uprobe` (or `uretprobe`, with `retprobe: true`). */
  program: string
  uprobe: {
    /** Absolute path of the executable or shared library (`/usr/lib/x86_64-linux-gnu/libssl.so.3`). */
    binary: string
    /**
     * The function's symbol in the binary's ELF symbol table (`SSL_write`), or, in a Go binary
     * whose symbol table was stripped, in Go's function table `.gopclntab` (`crypto/tls.(*Conn).Write`).
     */
    symbol: string
    /** Attach at the function's return (a `uretprobe` program). Not for Go functions: see `at`. */
    retprobe?: boolean
    /**
     * Where a `uprobe` program runs: at the function's entry (`'entry'`, the default), or at each of
     * its return instructions (`'returns'`, found by decoding the function; x86-64 only, else
     * `EINVAL`), where the return value is in the registers (`PT_REGS_RC`, Go's first result in
     * RAX) but the arguments may be gone: save them at the entry, keyed by thread (Go: by
     * goroutine). This is how to see a Go function return: a uretprobe replaces the return
     * address on the stack, and Go moves goroutine stacks, which then crashes the program. All the
     * return instructions are one hold: one uprobe_multi link, or, on kernels without them, one
     * classic uprobe each, the hold's `id` being the first's.
     */
    at?: 'entry' | 'returns'
    /** Only this process's calls; every process that runs the binary when omitted. */
    pid?: number
  }
}

/**
 * What `ctx.attach` attaches: a `perf_event` program of one of the plugin's objects, run by a
 * software cpu-clock event on every online CPU (Linux 4.9), `frequency` times a second per CPU.
 */
export interface PerfEventAttach {
  /** `'<object>:<program>'`; the program's section must be `perf_event`. */
  program: string
  perfEvent: {
    /** Samples per second per CPU, an integer from 1 to 1000 (perf's default is 4000; 19 to 99 is what profilers use continuously). */
    frequency: number
    /**
     * Only this thread (a tid: a process's main thread has its pid), as perf_event_open counts
     * it: the process's other threads are not sampled. To sample whole processes, filter by tgid
     * in the program (bpf/lib/stacks.bpf.c's `target_pids` map).
     */
    pid?: number
  }
}

/**
 * One stack sample as `ctx.onStack` hands it over, unwound by the host: a record of a ring whose
 * records are `struct stack_sample` (bpf/lib/stacks.h, filled by bpf/include/stack_sample.h).
 */
export interface StackSample {
  /** Boot-clock nanoseconds when it was taken, like every record's `*_ns` (`ctx.time.wallNs` gives wall time). */
  timeNs: number
  /** The process (tgid) and thread (tid) sampled, the CPU it ran on and the thread's name. */
  pid: number
  tid: number
  cpu: number
  comm: string
  /** What the sample weighs, as the program set it: 1 for a CPU sample, ns blocked off-CPU, bytes allocated. */
  value: number
  /** User addresses, innermost first: the sampled instruction, then return addresses. Empty for a kernel thread. */
  user: number[]
  /** Kernel addresses, innermost first; empty when the sample interrupted user code. */
  kernel: bigint[]
  /**
   * Undefined when the user stack is whole (the walk reached the thread's outermost frame), else
   * why it is not: 'copy ended' (the stack is deeper than the copy), 'no mapping' (an address in
   * no executable mapping, or the process is gone), 'no rule' (a frame the unwinder cannot step
   * through), 'bad frame', 'too deep' (more than 256 frames). Never shown as complete when it is not.
   */
  truncated: string | undefined
}

/** A stack to name with `ctx.symbolize`: what a StackSample holds. */
export interface StackToSymbolize {
  pid: number
  user: number[]
  kernel?: bigint[]
}

/** One hold on a kernel link from `ctx.attach`, `ctx.onTracepoint` or `ctx.onUprobe`. */
export interface PluginLink {
  /** The kernel's link id (`bpftool link list`): holders of the same target see the same id. */
  readonly id: number
  /** Lets go of this hold; the last hold on the link detaches it. Detaching twice does nothing. */
  detach(): Promise<void>
}

/** Clocks. */
export interface PluginTime {
  /**
   * Boot-clock nanoseconds (what BPF programs read with `bpf_ktime_get_boot_ns`, the `*_ns`
   * fields of socket and exec records) as nanoseconds since the Unix epoch, for span and log
   * times. It is one addition: the offset between the two clocks is measured once when Periscope
   * starts (the pair of readings with the smallest gap out of 64); a later step of the wall clock
   * is not followed.
   */
  wallNs(bootNs: number): number
}

/** Options of `ctx.on`. */
export interface SubscribeOptions {
  /**
   * Runs before the first event that follows records of the topic that were lost, with how many:
   * records the kernel could not hand over (perf buffer loss, ring buffer reserve failures, which
   * an object counts as a whole, so a loss on any of its streams is told to each), and records the
   * runtime dropped for this plugin (its rate, CPU or queue limits, a failure while handling them,
   * or a reload during which no version listened to the topic). A stream parser resynchronises
   * here. It costs nothing per event.
   */
  onLoss?(lost: number): void
}

/**
 * Options of `ctx.onTracepoint`: which events the kernel keeps (all of `pid`, `comm` and `uid`
 * that are given must match), and which pointer fields to copy the strings of.
 */
export interface TracepointOptions extends SubscribeOptions {
  /** Only this process's events (its tgid: all its threads). */
  pid?: number
  /** Only tasks of this name (as the kernel keeps it: at most 15 bytes). */
  comm?: string
  /** Only tasks of this user id. */
  uid?: number
  /**
   * At most 2 fields of the tracepoint's format whose user-space strings the kernel copies with
   * each event (`const char *` fields such as `filename`, at most 63 bytes each): `args[field]` is
   * then the string rather than the address. `__data_loc char[]` fields are strings anyway.
   */
  strings?: string[]
}

/** What `ctx.onUprobe` traces: a function of a binary, at its calls or (`retprobe`) its returns. */
export interface UprobeTarget {
  /** Absolute path of the executable or shared library. */
  binary: string
  /** The function's ELF symbol (`.dynsym` or `.symtab`), or a Go function's name in `.gopclntab`. */
  symbol: string
  /** Its returns (a uretprobe: not for Go functions, whose stacks move) instead of its calls. */
  retprobe?: boolean
}

/** Options of `ctx.onUprobe`. */
export interface UprobeOptions extends SubscribeOptions {
  /** Only this process's calls (the kernel attaches for it alone). */
  pid?: number
}

/** One argument of a syscall, as the kernel's `SYSCALL_DEFINE` declares it. */
export interface SyscallArgument {
  /** `filename`, `flags`, `count`. */
  name: string
  /** `const char *`, `int`, `size_t`, `struct stat *` (without `__user`). */
  type: string
}

/** A syscall of the running kernel, as `ctx.kernel.syscalls()` lists it. */
export interface SyscallDescription {
  /** Its number on this machine (x86-64: `read` is 0, `openat` 257). */
  number: number
  /** Without prefix: `read`, `openat`. */
  name: string
  /** In order: the first is the syscall's first register argument. */
  args: SyscallArgument[]
}

/**
 * What the running kernel is, read from the kernel itself (never from a table written for some
 * version), on the host's first call and then kept for the life of the Periscope process; every
 * plugin shares that one reading. Needs tracefs and CONFIG_FTRACE_SYSCALLS (the syscall
 * tracepoints' own requirements); without them a call rejects with a message saying what to do.
 */
export interface PluginKernel {
  /**
   * Syscall names by number: index = syscall number on this machine (x86-64), value = the name
   * without prefix (`read`, `openat`), `''` for a number no syscall has (a hole). The numbers are
   * those the `raw_syscalls:sys_enter` tracepoint reports as `id`: the kernel's ftrace metadata of
   * each syscall, numbered from its own sys_call_table at boot (runtime/kernel/syscall-table.ts).
   */
  syscallNames(): Promise<string[]>
  /** As `syscallNames`, with each syscall's arguments; `null` for a hole. */
  syscalls(): Promise<(SyscallDescription | null)[]>
  /**
   * Error names by number: index = errno (as a failed syscall returns it, negated), value = its
   * name (`ENOENT`), `''` for a number without one. The kernel keeps no table of them at run time:
   * this is libuv's table for this platform (Node's `os.constants.errno`), with the kernel's name
   * where two names share a number (`EAGAIN`, not `EWOULDBLOCK`).
   */
  errnoNames(): Promise<string[]>
}

export interface PluginLog {
  debug(message: string, attributes?: Record<string, ConfigValue>): void
  info(message: string, attributes?: Record<string, ConfigValue>): void
  warn(message: string, attributes?: Record<string, ConfigValue>): void
  error(message: string, attributes?: Record<string, ConfigValue>): void
}

/**
 * Emitters queue signals in the isolate; the queue leaves the isolate once per handled batch or
 * timer run. Shapes are the exporter's (`runtime/telemetry/signals.ts`): plain data only.
 */
export interface PluginEmitters {
  span(span: SpanInput): void
  metric(point: MetricPointInput): void
  log(record: LogInput): void
  profile(sample: ProfileSampleInput): void
}

export interface PluginContext<C> {
  /** The plugin's `config` defaults, overridden by `plugins.<name>.config` in periscope.yaml. */
  readonly config: C
  /**
   * State carried across hot reloads: whatever the previous version left here (after a structured
   * copy, so plain data only: no functions or class instances). Empty on first load and after a
   * failure restart, since the state may be what made the plugin fail.
   */
  state: Record<string, unknown>
  readonly log: PluginLog
  readonly emit: PluginEmitters
  /**
   * Calls `handler` for every record of a ring or perf buffer, decoded. Call it during `setup`.
   * The topic's object must be listed in the plugin's `objects`.
   */
  on<K extends string>(topic: K, handler: (event: TopicEvent<K>) => void, options?: SubscribeOptions): void
  /**
   * Calls `handler` for every sample of a ring whose records are `struct stack_sample` (checked on
   * the host against the object's BTF: `EINVAL` otherwise), with its user stack unwound by the host
   * when the batch arrives (from the copied stack with each file's `.eh_frame`, frame pointers
   * where there is none: runtime/profiling/unwind.ts), once for all plugins. The isolate receives
   * one buffer of compact records per batch. Call it during `setup`; a topic is listened to with
   * `ctx.on` or `ctx.onStack`, not both.
   */
  onStack(topic: string, handler: (sample: StackSample) => void, options?: SubscribeOptions): void
  /**
   * Names stacks, in one host call for a batch of distinct stacks (dedup first: at most 20,000 per
   * call, 256 user and 64 kernel frames each). Resolves, per stack, to its frames innermost first
   * (the kernel frames, then the user frames), each ready for `ctx.emit.profile`: `function`
   * (demangled; JavaScript and Python names from perf maps), `address`, and `mapping`: `file` (a
   * path, `[kernel.kallsyms]`, `[jit]`, `[vdso]`, `[anon]` or `[unknown]`), `buildId`, and for a
   * file `start` (where its offset 0 lies: `address - start` is the file offset, for a backend to
   * name the frame later). A frame that cannot be named has no `function`. One Symbolizer serves
   * every plugin (tables cached by build id; processes that exited are forgotten after each call).
   * Rejects with a TypeError or RangeError saying what is wrong with the input, and with `EACCES`
   * in a plugin that does not listen to stack samples (`ctx.onStack` in its setup): naming any
   * pid's addresses would show other processes' mappings and the kernel's layout. So call it after
   * setup, from `ctx.every` or a handler.
   */
  symbolize(stacks: StackToSymbolize[]): Promise<FrameInput[][]>
  /**
   * Calls `handler` for every hit of a kernel tracepoint (`'syscalls:sys_enter_openat'`, as
   * tracefs lists them under events/), with its fields decoded by the tracepoint's format:
   * integers as bigints, `char` arrays and `__data_loc` strings as strings, pointers as
   * addresses (or strings: `options.strings`). Needs `'generic'` in the plugin's `objects`: the
   * library's generic tracepoint program (bpf/lib/generic.bpf.c) captures it, filtered in the
   * kernel by `options`, and Periscope's own process is left out. Call it during `setup`, once
   * per tracepoint; await the link it resolves to (detach it to stop). Records of every
   * tracepoint come through one ring buffer, batched as for `ctx.on`.
   *
   * The kernel runs the program once per tracepoint, so plugins that trace the same tracepoint
   * share it, and must ask for the same options: otherwise the later one is refused (`EBUSY`).
   * A hot-reloaded version may change its options. Rejects with `code`: `ENOENT` (no such
   * tracepoint), `EINVAL` (bad options: a comm longer than 15 bytes, a string field that is not a
   * pointer, more than 2), `EACCES` (`'generic'` not in `objects`), `ENOSPC` (64 tracepoints are
   * traced already), or the kernel's errno name.
   */
  onTracepoint(tracepoint: string, handler: (event: TracepointEvent) => void, options?: TracepointOptions): Promise<PluginLink>
  /**
   * Calls `handler` for every call of a function (`regs`: its first six integer arguments,
   * bpftrace's arg0..arg5) or, with `retprobe`, every return from it (`retval`), with who and
   * when. Needs `'generic_uprobe'` in the plugin's `objects`: the library's generic uprobe
   * programs (bpf/lib/generic_uprobe.bpf.c) capture it, each attach with a config slot, and
   * Periscope's own process is left out. Plugins asking for the same function and pid share one
   * kernel link. Call it during `setup`, once per function and kind; await the link it resolves
   * to. Records of every function come through one ring buffer, batched as for `ctx.on`. Rejects
   * with `code`: `ENOENT` (no such binary), `ENOSYMBOL` (no such function), `EINVAL` (a relative
   * path, bad options), `EACCES` (`'generic_uprobe'` not in `objects`, or a kernel that attaches
   * uprobes only with CAP_SYS_ADMIN after the privilege drop: see ctx.attach), `ENOSPC` (512
   * functions traced already), or the kernel's errno name.
   */
  onUprobe(target: UprobeTarget, handler: (event: UprobeEvent) => void, options?: UprobeOptions): Promise<PluginLink>
  /** Access to a map (`'<object>:<map>'`) of one of the plugin's objects. */
  map(topic: string): PluginMap
  readonly time: PluginTime
  /** What the running kernel is: its syscall table. */
  readonly kernel: PluginKernel
  /**
   * Attaches a program of one of the plugin's objects at run time, and holds the link until
   * `detach()` or the end of this version.
   *
   * A perf_event program (`{ program, perfEvent: { frequency, pid? } }`) samples every online CPU;
   * holders of the same (object, program, frequency, pid) share one set of kernel links, and
   * `id` is the first CPU's link. Rejects with `EINVAL` (not a perf_event program, a frequency
   * that is not an integer from 1 to 1000, a bad pid), `ENOENT` (no such program), `EACCES` (not
   * one of the plugin's objects), or the kernel's errno name.
   *
   * A uprobe program (`{ program, uprobe: {...} }`): holders of the same target (object, program,
   * file, symbol, retprobe, at, pid) share one kernel link, counted across plugins and versions;
   * the last hold detaches it. The file is known by its device and inode, so two paths of one file
   * share. Rejects with `code` (also the message's first word): `ENOENT` (no such binary or
   * program), `ENOSYMBOL` (the binary has no such function symbol), `EACCES` (not one of the
   * plugin's objects), `EINVAL` (not a uprobe program, retprobe not matching its section, a
   * relative path, `at: 'returns'` with a uretprobe program, on a function whose return
   * instructions cannot be found or on a binary that is not x86-64), or the kernel's errno name.
   */
  attach(request: UprobeAttach | PerfEventAttach): Promise<PluginLink>
  /**
   * Runs an iterator program (`SEC("iter/...")`, `'<object>:<program>'`) of one of the plugin's
   * objects once and resolves to the text it printed; `pid` limits a task iterator to that process.
   * Errors as for `attach`.
   */
  iterate(program: string, options?: { pid?: number }): Promise<string>
  /**
   * Runs `fn` every `interval` (`'500ms'`, `'10s'`, `'1m'`, or milliseconds), between batches. A
   * returned promise is awaited before the next batch, and its failure counts as a plugin failure.
   */
  every(interval: string | number, fn: () => void | Promise<void>): void
}

export interface PluginDefinition<C extends Record<string, ConfigValue> = Record<string, ConfigValue>> {
  /** Unique among loaded plugins; names the instrumentation scope and the config entry. */
  name: string
  /** Library objects (`bpf/lib/<name>`) the plugin uses; shared and refcounted across plugins. */
  objects?: readonly string[]
  /** Defaults for `ctx.config`. */
  config?: C
  /** Runs once per version, after the objects are open and before any event arrives. */
  setup(ctx: PluginContext<C>): void | Promise<void>
}

/** Identity at run time; it exists so the plugin's `config` and `ctx` are typed. */
export function definePlugin<C extends Record<string, ConfigValue>>(plugin: PluginDefinition<C>): PluginDefinition<C> {
  return plugin
}
