/**
 * The catalogue of bpf/lib objects and their attach plans. An attach point lists alternatives
 * in order of preference (fentry → kprobe → tracepoint, say); the first whose attach kind the
 * kernel really supports (features.ts) is used and the others are not even loaded.
 */
import { attachKinds, probeAttach, type AttachKind, type FeatureResult } from '../bpf/features.ts'
import { tracepointExists } from '../kernel/tracepoints.ts'

export type AttachSpec =
  | { kind: 'tracepoint'; program: string; category: string; name: string }
  | { kind: 'raw_tp'; program: string; name: string }
  | { kind: 'tp_btf' | 'fentry'; program: string }
  | { kind: 'kprobe'; program: string; function: string; retprobe?: boolean }

/**
 * Programs that observe a point only together (the entry and return hooks of several functions,
 * say), so they are chosen all or none. `kind` is their main attach kind, the one probed; a few
 * may be plain tracepoints, which every kernel Periscope runs on has.
 */
export interface AttachGroup {
  kind: AttachKind
  /** How the group observes, for the run log ("syscall tracepoints"). */
  how: string
  programs: AttachSpec[]
  /** Tracepoints ("category/name") a kernel must have for the group, when newer than the kind itself. */
  tracepoints?: { name: string; since: string }[]
}

export type Alternative = AttachSpec | AttachGroup

export interface AttachPoint {
  /** What the point observes, for messages ("process exec"). */
  what: string
  /** Best first. */
  alternatives: Alternative[]
  /**
   * The release that added the point's tracepoints ("Linux 6.6"), for a point an older kernel can
   * do without: there it is skipped, and the run log says so, instead of failing the object.
   */
  since?: string
}

export interface CatalogueEntry {
  description: string
  /** Attached when the object is opened. Objects driven on demand (generic, generic_uprobe, loopgen) have none. */
  attach: AttachPoint[]
  /**
   * Iterator programs run once, in order, when the object opens (after its links attach), to
   * find what existed before it: each prints one line per thing found, and `found` names them.
   */
  startupIterators?: { program: string; found: string }[]
  /**
   * Streams whose program wakes the reader only once much is waiting: read every so many ms
   * instead (RingBufferReader's idleDrainMs), which is then how long a record may wait.
   */
  pacedStreams?: Record<string, number>
}

/** The entry and exit tracepoints of one syscall, handled by programs enter_<program> and exit_<program>. */
function syscallTracepoints(name: string, program = name, tracepoint = name): [AttachSpec, AttachSpec] {
  return [
    { kind: 'tracepoint', program: `enter_${program}`, category: 'syscalls', name: `sys_enter_${tracepoint}` },
    { kind: 'tracepoint', program: `exit_${program}`, category: 'syscalls', name: `sys_exit_${tracepoint}` },
  ]
}

/** The entry and exit tracepoints of one syscall, as two attach points. */
function syscall(name: string, what: string, program = name, tracepoint = name): AttachPoint[] {
  const [entry, exit] = syscallTracepoints(name, program, tracepoint)
  return [
    { what: `${what} (${name} entry)`, alternatives: [entry] },
    { what: `${what} (${name} exit)`, alternatives: [exit] },
  ]
}

/**
 * The sendmsg and recvmsg of the stream socket families sockdata follows: every send and
 * receive syscall reaches one of them (sockdata.bpf.c says why not sock_sendmsg/sock_recvmsg).
 */
export const socketFunctions = ['inet_sendmsg', 'inet6_sendmsg', 'unix_stream_sendmsg', 'inet_recvmsg', 'inet6_recvmsg', 'unix_stream_recvmsg']
const dataSyscalls = ['write', 'read', 'writev', 'readv', 'sendto', 'recvfrom', 'sendmsg', 'recvmsg', 'sendmmsg', 'recvmmsg']
/**
 * What the socket tracepoints' path keeps of the syscall tracepoints (sockdata.bpf.c says why):
 * the entries of the sends, and both ends of sendmmsg and recvmmsg.
 */
const keptWithSocketTracepoints: AttachSpec[] = [
  ...['write', 'writev', 'sendto', 'sendmsg'].map((name) => syscallTracepoints(name)[0]),
  ...['sendmmsg', 'recvmmsg'].flatMap((name) => syscallTracepoints(name)),
]

/**
 * Socket data from the socket functions' entry and return where fentry is allowed (nothing runs
 * on file I/O); else from the socket tracepoints where the kernel has them (kretprobes miss
 * returns, they miss nothing); else from kprobes on the socket functions; else from the syscalls.
 */
const socketData: AttachPoint = {
  what: 'socket data',
  alternatives: [
    {
      kind: 'fentry',
      how: `fentry/fexit on ${socketFunctions.join(', ')}`,
      programs: socketFunctions.flatMap((f): AttachSpec[] => [{ kind: 'fentry', program: `fentry_${f}` }, { kind: 'fentry', program: `fexit_${f}` }]),
    },
    {
      kind: 'tp_btf',
      how: 'the sock_recv_length and sock_send_length tracepoints (sends\' starts, sendmmsg and recvmmsg from syscall tracepoints)',
      programs: [{ kind: 'tp_btf', program: 'on_recv_length' }, { kind: 'tp_btf', program: 'on_send_length' }, ...keptWithSocketTracepoints],
      tracepoints: [{ name: 'sock/sock_recv_length', since: 'Linux 6.3' }, { name: 'sock/sock_send_length', since: 'Linux 6.3' }],
    },
    {
      kind: 'kprobe',
      how: `kprobes and kretprobes on ${socketFunctions.join(', ')}`,
      programs: socketFunctions.flatMap((f): AttachSpec[] => [
        { kind: 'kprobe', program: `kprobe_${f}`, function: f },
        { kind: 'kprobe', program: `kretprobe_${f}`, function: f, retprobe: true },
      ]),
    },
    { kind: 'tracepoint', how: 'syscall tracepoints', programs: dataSyscalls.flatMap((name) => syscallTracepoints(name)) },
  ],
}

/** The syscalls fileio counts (a program pair enter_<name>/exit_<name> each), and what they are. */
const fileCalls: [string, string][] = [
  ...['read', 'pread64', 'readv', 'preadv', 'preadv2'].map((name): [string, string] => [name, 'file reads']),
  ...['write', 'pwrite64', 'writev', 'pwritev', 'pwritev2'].map((name): [string, string] => [name, 'file writes']),
  ['fsync', 'file syncs'],
  ['fdatasync', 'file data syncs'],
]
/** The syscalls that open a file by path, whose return fileio checks against its target paths. */
const fileOpens = ['open', 'openat', 'openat2', 'creat']

/** The syscalls audit reports that kernels Periscope runs on may lack, and the release that added them. */
const syscallsSince: Record<string, string> = { fchmodat2: 'Linux 6.6' }
/** The syscalls audit reports, each by a program exit_<name> on its exit tracepoint, and what they are. */
const auditSyscalls: [string, string][] = [
  ...['unlink', 'unlinkat', 'rmdir'].map((name): [string, string] => [name, 'file deletions']),
  ...['rename', 'renameat', 'renameat2'].map((name): [string, string] => [name, 'file renames']),
  ...['chmod', 'fchmod', 'fchmodat', 'fchmodat2'].map((name): [string, string] => [name, 'mode changes']),
  ...['chown', 'fchown', 'lchown', 'fchownat'].map((name): [string, string] => [name, 'ownership changes']),
  ...['open', 'openat', 'openat2'].map((name): [string, string] => [name, 'opens of sensitive paths']),
  ...['setuid', 'setgid', 'setreuid', 'setregid', 'setresuid', 'setresgid', 'capset'].map((name): [string, string] => [name, 'id and capability changes']),
  ['connect', 'outbound connections'],
  ...['accept', 'accept4'].map((name): [string, string] => [name, 'inbound connections']),
  ['ptrace', 'ptrace attaches'],
  ['bpf', 'BPF program loads'],
]

export const catalogue: Record<string, CatalogueEntry> = {
  exec: {
    description: 'process exec (filename, argv) and exit (code, lifetime) events',
    attach: [
      { what: 'process exec', alternatives: [{ kind: 'tracepoint', program: 'handle_exec', category: 'sched', name: 'sched_process_exec' }] },
      { what: 'process exit', alternatives: [{ kind: 'tracepoint', program: 'handle_exit', category: 'sched', name: 'sched_process_exit' }] },
      // only the raw tracepoint names the child's task, which tells a new process from a new thread
      { what: "process fork (to follow target_tgid's descendants)", alternatives: [{ kind: 'raw_tp', program: 'handle_fork', name: 'sched_process_fork' }] },
    ],
  },
  sockdata: {
    description: 'socket data of L7 protocols, one ring per protocol (http, http2, redis, postgres, mysql, kafka), '
      + 'classified in the kernel from the first bytes and sent only when claimed in `protocols`; connection lifecycle '
      + '(connections), libssl mappings (libraries); OpenSSL plaintext through uprobes attached at run time',
    attach: [
      socketData,
      // sendfile's bytes are counted, never copied: its syscall gives all there is to know
      ...syscall('sendfile64', 'file data sent on sockets', 'sendfile'),
      ...syscall('connect', 'connections opened'),
      ...syscall('accept', 'connections accepted'),
      ...syscall('accept4', 'connections accepted'),
      { what: 'connections closed (close entry)', alternatives: [{ kind: 'tracepoint', program: 'enter_close', category: 'syscalls', name: 'sys_enter_close' }] },
      { what: 'connections a process\'s exit closed', alternatives: [{ kind: 'tracepoint', program: 'on_exit', category: 'sched', name: 'sched_process_exit' }] },
      { what: 'close-on-exec connections an exec closed', alternatives: [{ kind: 'tracepoint', program: 'on_exec', category: 'sched', name: 'sched_process_exec' }] },
      { what: 'TCP state changes (failed non-blocking connects, listening ports, Periscope\'s own connections)', alternatives: [{ kind: 'tracepoint', program: 'on_state_change', category: 'sock', name: 'inet_sock_set_state' }] },
      { what: 'libssl mapped by a process (mmap entry)', alternatives: [{ kind: 'tracepoint', program: 'on_mmap', category: 'syscalls', name: 'sys_enter_mmap' }] },
    ],
    startupIterators: [
      { program: 'scan_listeners', found: 'listening TCP sockets' },
      { program: 'scan_sockets', found: 'TCP connections opened before Periscope' },
    ],
  },
  sched: {
    description: 'scheduler and process metrics aggregated in the kernel (run-queue latency histogram; context switches '
      + 'and page faults per process, removed at exit) and process start, exit and OOM kill events',
    attach: [
      // tp_btf only: its task pointers are what task storage (each thread's run-queue mark) takes
      { what: 'context switches', alternatives: [{ kind: 'tp_btf', program: 'handle_switch' }] },
      { what: 'wakeups', alternatives: [{ kind: 'tp_btf', program: 'handle_wakeup' }] },
      { what: 'wakeups of new tasks', alternatives: [{ kind: 'tp_btf', program: 'handle_wakeup_new' }] },
      { what: 'user page faults', alternatives: [{ kind: 'tracepoint', program: 'handle_page_fault', category: 'exceptions', name: 'page_fault_user' }] },
      // the child's task tells a new process from a new thread, and takes its fault counts' task storage
      { what: 'process and thread starts', alternatives: [{ kind: 'tp_btf', program: 'handle_fork' }] },
      { what: 'process execs (new names)', alternatives: [{ kind: 'tracepoint', program: 'handle_exec', category: 'sched', name: 'sched_process_exec' }] },
      { what: 'process exits', alternatives: [{ kind: 'tracepoint', program: 'handle_exit', category: 'sched', name: 'sched_process_exit' }] },
      { what: 'OOM kills', alternatives: [{ kind: 'tracepoint', program: 'handle_oom_victim', category: 'oom', name: 'mark_victim' }] },
    ],
  },
  offcpu: {
    description: 'off-CPU stack samples: how long user threads stayed blocked (sched_switch), with the user stack of the moment they blocked '
      + '(sent by a BPF task work as the woken thread returns to user space; without one, copied at every blocking switch) and the kernel '
      + 'stack; blocks under the claimed threshold are not sent; options and targets maps claimed by user space',
    attach: [
      // only tp_btf's task pointers take task storage and the task work (Linux 6.18); raw_tp and the
      // tracepoint stash every block's stack at its switch-out, as tp_btf does on older kernels
      {
        what: 'context switches (blocks and wakeups)',
        alternatives: [
          { kind: 'tp_btf', program: 'handle_switch' },
          { kind: 'raw_tp', program: 'raw_switch', name: 'sched_switch' },
          { kind: 'tracepoint', program: 'tp_switch', category: 'sched', name: 'sched_switch' },
        ],
      },
      { what: 'thread exits (task works forgotten)', alternatives: [{ kind: 'tracepoint', program: 'handle_exit', category: 'sched', name: 'sched_process_exit' }] },
    ],
  },
  fileio: {
    description: 'file I/O per process counted in the kernel: read and write calls, bytes and latency, fsync and fdatasync, '
      + 'on regular files only (processes map; last counts on the exits ring at exit or exec); per file for target_paths (file_stats)',
    attach: [
      ...fileCalls.flatMap(([name, what]) => syscall(name, what)),
      ...fileOpens.map((name): AttachPoint => ({ what: `target files opened (${name} exit)`, alternatives: [{ kind: 'tracepoint', program: `exit_${name}`, category: 'syscalls', name: `sys_exit_${name}` }] })),
      { what: 'process exits (last counts)', alternatives: [{ kind: 'tracepoint', program: 'handle_exit', category: 'sched', name: 'sched_process_exit' }] },
      { what: 'process execs (last counts of the old image)', alternatives: [{ kind: 'tracepoint', program: 'handle_exec', category: 'sched', name: 'sched_process_exec' }] },
    ],
  },
  tcp: {
    description: 'TCP metrics aggregated in the kernel by port (connections opened and closed, state transitions, '
      + 'retransmits, resets, bytes and segments, smoothed RTT histogram), rolled up by the collect iterator',
    attach: [
      { what: 'TCP state changes (connections opened and closed)', alternatives: [{ kind: 'tracepoint', program: 'on_state_change', category: 'sock', name: 'inet_sock_set_state' }] },
      { what: 'TCP retransmits', alternatives: [{ kind: 'tracepoint', program: 'on_retransmit', category: 'tcp', name: 'tcp_retransmit_skb' }] },
      { what: 'TCP SYN-ACK retransmits', alternatives: [{ kind: 'tracepoint', program: 'on_retransmit_synack', category: 'tcp', name: 'tcp_retransmit_synack' }] },
      { what: 'TCP resets sent', alternatives: [{ kind: 'tracepoint', program: 'on_send_reset', category: 'tcp', name: 'tcp_send_reset' }] },
      { what: 'TCP resets received', alternatives: [{ kind: 'tracepoint', program: 'on_receive_reset', category: 'tcp', name: 'tcp_receive_reset' }] },
    ],
    startupIterators: [{ program: 'collect', found: 'TCP connections opened before Periscope' }],
  },
  audit: {
    description: 'security audit events (exec, file deletion and rename, chmod/chown, opens of sensitive paths, id and '
      + 'capability changes, connect/accept, ptrace, BPF program loads), kept or dropped in the kernel by the rules in its maps',
    attach: [
      { what: 'process exec', alternatives: [{ kind: 'raw_tp', program: 'handle_exec', name: 'sched_process_exec' }] },
      ...auditSyscalls.map(([name, what]): AttachPoint => ({
        what: `${what} (${name} exit)`,
        alternatives: [{ kind: 'tracepoint', program: `exit_${name}`, category: 'syscalls', name: `sys_exit_${name}` }],
        since: syscallsSince[name],
      })),
    ],
  },
  syscalls: {
    description: 'syscall counts per process and syscall, and failed calls by errno, counted in the kernel at each syscall\'s exit; '
      + 'a process\'s last counts on the retired ring when it exits or execs',
    attach: [
      {
        what: 'syscall exits',
        alternatives: [
          { kind: 'tp_btf', program: 'btf_sys_exit' },
          { kind: 'raw_tp', program: 'raw_sys_exit', name: 'sys_exit' },
          { kind: 'tracepoint', program: 'tp_sys_exit', category: 'raw_syscalls', name: 'sys_exit' },
        ],
      },
      { what: 'process exits (last counts)', alternatives: [{ kind: 'tracepoint', program: 'handle_exit', category: 'sched', name: 'sched_process_exit' }] },
      { what: 'process execs (last counts of the old image)', alternatives: [{ kind: 'tracepoint', program: 'handle_exec', category: 'sched', name: 'sched_process_exec' }] },
    ],
  },
  syscall_log: {
    description: 'every syscall of the target processes (`targets`), one record each at its exit with its arguments, '
      + 'return value and duration; the string arguments `decode` names (paths, names) copied at its entry',
    attach: [
      {
        what: 'syscall entries',
        alternatives: [
          { kind: 'tp_btf', program: 'btf_sys_enter' },
          { kind: 'raw_tp', program: 'raw_sys_enter', name: 'sys_enter' },
          { kind: 'tracepoint', program: 'tp_sys_enter', category: 'raw_syscalls', name: 'sys_enter' },
        ],
      },
      {
        what: 'syscall exits',
        alternatives: [
          { kind: 'tp_btf', program: 'btf_sys_exit' },
          { kind: 'raw_tp', program: 'raw_sys_exit', name: 'sys_exit' },
          { kind: 'tracepoint', program: 'tp_sys_exit', category: 'raw_syscalls', name: 'sys_exit' },
        ],
      },
      { what: 'thread exits (calls they leave unfinished)', alternatives: [{ kind: 'tracepoint', program: 'handle_exit', category: 'sched', name: 'sched_process_exit' }] },
    ],
  },
  alloc: {
    description: 'allocation statistics of target processes from uprobes on their libc malloc, calloc, realloc and free, '
      + 'attached at run time per pid (calls, bytes allocated, bytes in use; processes map; last counts on the exits ring at exit)',
    attach: [
      { what: 'process exits (last counts, blocks forgotten)', alternatives: [{ kind: 'tracepoint', program: 'handle_exit', category: 'sched', name: 'sched_process_exit' }] },
    ],
  },
  stacks: {
    description: 'CPU samples (perf_event, attached at run time at a frequency) with the user registers, a copy of the user stack and the kernel stack, '
      + 'for unwinding in user space; target_pids filter map',
    attach: [],
    // the program wakes the reader past wakeup_bytes (512 KB: 1.1 s of samples at 19 Hz on 2 CPUs)
    pacedStreams: { samples: 500 },
  },
  alloc_stacks: {
    description: 'allocation stack samples of target processes from uprobes on their libc malloc, calloc, realloc and free, attached at run '
      + 'time per pid: sampled every sample_bytes on average (options map claimed by user space; 0: every allocation), each a stack sample '
      + 'weighing its bytes; sampled blocks not freed yet in the live map',
    attach: [
      { what: 'process exits (sampled blocks forgotten)', alternatives: [{ kind: 'tracepoint', program: 'handle_exit', category: 'sched', name: 'sched_process_exit' }] },
    ],
  },
  generic: {
    description: 'raw records of any tracepoint, attached on demand with a per-probe cookie',
    attach: [],
  },
  generic_uprobe: {
    description: 'argument registers or return values of any function of a binary, attached on demand with a per-probe cookie',
    attach: [],
  },
  loopgen: {
    description: 'numbered records on demand, 64 bytes or its record_size setting (benchmarks and reload tests)',
    attach: [],
  },
}

/** The order in which Periscope falls back from each attach kind it would like to use. */
export const fallbackChains: Record<string, AttachKind[]> = {
  fentry: ['fentry', 'kprobe', 'tracepoint'],
  kprobe: ['kprobe', 'tracepoint'],
  tp_btf: ['tp_btf', 'raw_tp', 'tracepoint'],
  raw_tp: ['raw_tp', 'tracepoint'],
  tracepoint: ['tracepoint'],
  uprobe: ['uprobe'],
  // uprobes attached at run time, after the privilege drop, need uprobe_multi links
  uprobe_multi: ['uprobe_multi', 'uprobe'],
  perf_event: ['perf_event'],
  cgroup_skb: ['cgroup_skb', 'tc'],
  tc: ['tc'],
}

/** Per wanted attach kind, the first of its fallback chain that `supported` holds (none: undefined). */
export function planAttachKinds(supported: ReadonlySet<AttachKind>): { want: string; use?: AttachKind }[] {
  return Object.entries(fallbackChains).map(([want, chain]) => ({ want, use: chain.find((kind) => supported.has(kind)) }))
}

/** For `periscope check`: per wanted attach kind, what this kernel makes Periscope use. */
export async function attachPlanFallbacks(): Promise<{ want: string; use?: AttachKind }[]> {
  const supported = new Set<AttachKind>()
  for (const kind of attachKinds) if ((await probeAttach(kind)).status === 'supported') supported.add(kind)
  return planAttachKinds(supported)
}

/** The programs an alternative attaches. */
export function programsOf(alternative: Alternative): AttachSpec[] {
  return 'programs' in alternative ? alternative.programs : [alternative]
}

function howOf(alternative: Alternative): string {
  return 'how' in alternative ? alternative.how : `${alternative.kind} ${alternative.program}`
}

/** The first tracepoint ("category/name") a point's plain tracepoint programs attach to that the kernel lacks. */
function missingTracepoint(point: AttachPoint, hasTracepoint: (name: string) => boolean): string | undefined {
  for (const spec of point.alternatives.flatMap(programsOf)) {
    if (spec.kind === 'tracepoint' && !hasTracepoint(`${spec.category}/${spec.name}`)) return `${spec.category}/${spec.name}`
  }
  return undefined
}

/** Whether the kernel supports an alternative: its attach kind, and the tracepoints it needs. */
export async function probeAlternative(
  alternative: Alternative,
  probe: (kind: AttachKind) => Promise<FeatureResult> = probeAttach,
  hasTracepoint: (name: string) => boolean = tracepointExists,
): Promise<FeatureResult> {
  const lacking = 'tracepoints' in alternative ? alternative.tracepoints?.find((t) => !hasTracepoint(t.name)) : undefined
  if (lacking !== undefined) return { status: 'unsupported', reason: `this kernel has no ${lacking.name} tracepoint (${lacking.since})` }
  return probe(alternative.kind)
}

export interface AttachPlan {
  /** The programs to load and attach, in the catalogue's order. */
  attach: AttachSpec[]
  /** Programs of alternatives not chosen: they must not even load. */
  unused: string[]
  /** For the run log: how each point that had a choice is observed, and why better ways were not. */
  notes: string[]
}

export interface PlanOptions {
  /**
   * At each point that offers this attach kind, use it and nothing else (tests compare the
   * paths); an error if the kernel refuses it. The other points follow the plan.
   */
  attachKind?: AttachKind
}

/**
 * Chooses, per attach point of an object, the first alternative whose attach kind `probe` says
 * the kernel supports and whose tracepoints `hasTracepoint` finds. Skips a point marked `since`
 * whose tracepoint the kernel lacks; throws when any other point has no alternative, with every
 * reason.
 */
export async function planAttach(
  name: string,
  entry: CatalogueEntry,
  options: PlanOptions = {},
  probe: (kind: AttachKind) => Promise<FeatureResult> = probeAttach,
  hasTracepoint: (name: string) => boolean = tracepointExists,
): Promise<AttachPlan> {
  const plan: AttachPlan = { attach: [], unused: [], notes: [] }
  for (const point of entry.attach) {
    const absent = point.since === undefined ? undefined : missingTracepoint(point, hasTracepoint)
    if (absent !== undefined) {
      plan.unused.push(...point.alternatives.flatMap(programsOf).map((p) => p.program))
      plan.notes.push(`${name}: ${point.what} not observed: this kernel has no ${absent} tracepoint (${point.since})`)
      continue
    }
    const forced = point.alternatives.filter((a) => a.kind === options.attachKind)
    const candidates = forced.length > 0 ? forced : point.alternatives
    const passedOver: string[] = []
    let chosen: Alternative | undefined
    for (const alternative of candidates) {
      const result = await probeAlternative(alternative, probe, hasTracepoint)
      if (result.status === 'supported') {
        chosen = alternative
        break
      }
      passedOver.push(`${alternative.kind}: ${result.reason}`)
    }
    if (chosen === undefined) throw new Error(`${name}: no way to observe ${point.what} on this kernel (${passedOver.join('; ')})`)
    plan.attach.push(...programsOf(chosen))
    const using = new Set(programsOf(chosen).map((p) => p.program))
    for (const alternative of point.alternatives) plan.unused.push(...programsOf(alternative).map((p) => p.program).filter((p) => !using.has(p)))
    if (point.alternatives.length > 1) {
      const fallback = passedOver.length > 0 ? ` (${chosen.kind} fallback: ${passedOver.join('; ')})` : ''
      plan.notes.push(`${name}: ${point.what} from ${howOf(chosen)}${fallback}`)
    }
  }
  return plan
}
