/**
 * The catalogue of bpf/lib objects and their attach plans. An attach point lists alternatives
 * in order of preference (fentry → kprobe → tracepoint, say); the first whose attach kind the
 * kernel really supports (features.ts) is used and the others are not even loaded.
 */
import { attachKinds, probeAttach, type AttachKind } from '../bpf/features.ts'

export type AttachSpec =
  | { kind: 'tracepoint'; program: string; category: string; name: string }
  | { kind: 'raw_tp'; program: string; name: string }
  | { kind: 'tp_btf' | 'fentry'; program: string }
  | { kind: 'kprobe'; program: string; function: string; retprobe?: boolean }

export interface AttachPoint {
  /** What the point observes, for messages ("process exec"). */
  what: string
  alternatives: AttachSpec[]
}

export interface CatalogueEntry {
  description: string
  /** Attached when the object is opened. Objects driven on demand (generic, loopgen) have none. */
  attach: AttachPoint[]
  /**
   * Iterator programs run once, in order, when the object opens (after its links attach), to
   * find what existed before it: each prints one line per thing found, and `found` names them.
   */
  startupIterators?: { program: string; found: string }[]
}

/** The entry and exit tracepoints of one syscall, as two attach points. */
function syscall(name: string, what: string, program = name, tracepoint = name): AttachPoint[] {
  return [
    { what: `${what} (${name} entry)`, alternatives: [{ kind: 'tracepoint', program: `enter_${program}`, category: 'syscalls', name: `sys_enter_${tracepoint}` }] },
    { what: `${what} (${name} exit)`, alternatives: [{ kind: 'tracepoint', program: `exit_${program}`, category: 'syscalls', name: `sys_exit_${tracepoint}` }] },
  ]
}

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
    // syscall tracepoints: the kernel's sock_sendmsg/sock_recvmsg would cover every path in one place,
    // but fentry and kprobes are not available on the kernels this ships for
    attach: [
      ...syscall('write', 'data sent on sockets'),
      ...syscall('read', 'data received on sockets'),
      ...syscall('writev', 'data sent on sockets'),
      ...syscall('readv', 'data received on sockets'),
      ...syscall('sendto', 'data sent on sockets'),
      ...syscall('recvfrom', 'data received on sockets'),
      ...syscall('sendmsg', 'data sent on sockets'),
      ...syscall('recvmsg', 'data received on sockets'),
      ...syscall('sendmmsg', 'data sent on sockets'),
      ...syscall('recvmmsg', 'data received on sockets'),
      ...syscall('sendfile64', 'file data sent on sockets', 'sendfile'),
      ...syscall('connect', 'connections opened'),
      ...syscall('accept', 'connections accepted'),
      ...syscall('accept4', 'connections accepted'),
      { what: 'connections closed (close entry)', alternatives: [{ kind: 'tracepoint', program: 'enter_close', category: 'syscalls', name: 'sys_enter_close' }] },
      { what: 'TCP state changes (failed non-blocking connects, listening ports, Periscope\'s own connections)', alternatives: [{ kind: 'tracepoint', program: 'on_state_change', category: 'sock', name: 'inet_sock_set_state' }] },
      { what: 'libssl mapped by a process (mmap entry)', alternatives: [{ kind: 'tracepoint', program: 'on_mmap', category: 'syscalls', name: 'sys_enter_mmap' }] },
    ],
    startupIterators: [
      { program: 'scan_listeners', found: 'listening TCP sockets' },
      { program: 'scan_sockets', found: 'TCP connections opened before Periscope' },
    ],
  },
  generic: {
    description: 'raw records of any tracepoint, attached on demand with a per-probe cookie',
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

/** Picks the first alternative the kernel supports, with the reasons the others were passed over. */
export async function choose(point: AttachPoint): Promise<{ spec?: AttachSpec; skipped: string[] }> {
  const skipped: string[] = []
  for (const spec of point.alternatives) {
    const result = await probeAttach(spec.kind)
    if (result.status === 'supported') return { spec, skipped }
    skipped.push(`${spec.kind} for ${point.what}: ${result.reason}`)
  }
  return { skipped }
}
