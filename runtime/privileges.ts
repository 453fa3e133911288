/**
 * Least privilege: once its objects are loaded, the runtime keeps only CAP_BPF and CAP_PERFMON
 * (plus CAP_NET_ADMIN when a loaded object needs it, for tc and XDP), so a plugin escape or a bug
 * cannot use CAP_SYS_ADMIN.
 *
 * Node cannot call capset(2), and capabilities are per thread: a plain capset only changes the
 * calling thread, while libuv's pool, V8's platform threads and isolated-vm's threads would keep
 * the old set. The addon's `setProcessCapabilities` (native/src/capabilities.cc) therefore
 * changes every thread, and this module checks each thread's status afterwards, because a drop
 * that missed one thread protects nothing. Where dropping is not possible it says so, and how to
 * start the runtime with less instead.
 */
import { readdirSync, readFileSync } from 'node:fs'

export const capabilityNumbers = { CAP_NET_ADMIN: 12, CAP_SYS_ADMIN: 21, CAP_SYS_RESOURCE: 24, CAP_PERFMON: 38, CAP_BPF: 39 } as const

const names = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE', 'CAP_NET_BROADCAST', 'CAP_NET_ADMIN',
  'CAP_NET_RAW', 'CAP_IPC_LOCK', 'CAP_IPC_OWNER', 'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT', 'CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE', 'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL', 'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG', 'CAP_WAKE_ALARM', 'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ',
  'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE',
]

export function capabilityNames(mask: bigint): string[] {
  const out: string[] = []
  for (let bit = 0n; bit < 64n; bit++) if ((mask >> bit) & 1n) out.push(names[Number(bit)] ?? `cap_${bit}`)
  return out
}

/** The effective and bounding sets of the main thread (`/proc/self/status`), or of one thread. */
export function threadCapabilities(statusFile = '/proc/self/status'): { effective: bigint; bounding: bigint } {
  const text = readFileSync(statusFile, 'utf8')
  const field = (name: string): bigint => {
    const match = new RegExp(`^${name}:\\s*([0-9a-f]+)$`, 'm').exec(text)
    if (match === null) throw new Error(`${statusFile} has no ${name} line; is /proc mounted?`)
    return BigInt(`0x${match[1]}`)
  }
  return { effective: field('CapEff'), bounding: field('CapBnd') }
}

/**
 * Program types (libbpf's names) the kernel loads or attaches only with CAP_NET_ADMIN: its
 * is_net_admin_prog_type() list, plus every cgroup type, since attaching to a cgroup needs it too.
 */
const netAdminProgramTypes = new Set([
  'sched_cls', 'sched_act', 'xdp', 'lwt_in', 'lwt_out', 'lwt_xmit', 'lwt_seg6local', 'sk_skb', 'sk_msg', 'sock_ops',
  'flow_dissector', 'ext', 'netfilter',
])

/** Whether loaded programs of these types (tc, XDP, cgroup, ...) need CAP_NET_ADMIN to stay usable. */
export function needsNetAdmin(programTypes: Iterable<string>): boolean {
  for (const type of programTypes) if (netAdminProgramTypes.has(type) || type.startsWith('cgroup_')) return true
  return false
}

/** How the native helper says each thread fared; `error` is the addon's BpfError. */
export interface ThreadResult {
  tid: number
  result: 'changed' | 'failed' | 'exited' | 'pending'
  error?: Error
}

/**
 * The native helper: set permitted and effective to `keep`, inheritable and ambient to empty,
 * and drop everything else from the bounding set, on every thread of the process. Throws (a
 * BpfError with errno) when it cannot start; reports each thread's outcome otherwise.
 */
export type SetProcessCapabilities = (keep: bigint) => readonly ThreadResult[]

export interface PrivilegeReport {
  dropped: boolean
  before: string[]
  after: string[]
  /** One line for the log: what happened, and what to do when nothing could be dropped. */
  message: string
}

const startWithLess =
  'start periscope with only what it needs instead, e.g. ' +
  '`setpriv --inh-caps=-all,+bpf,+perfmon --ambient-caps=-all,+bpf,+perfmon --bounding-set=-all,+bpf,+perfmon -- periscope run` ' +
  'or, in Kubernetes, securityContext.capabilities: { drop: [ALL], add: [BPF, PERFMON] }'

export function dropCapabilities(options: {
  /** A loaded program is of a type that needs CAP_NET_ADMIN (see needsNetAdmin). */
  needNetAdmin: boolean
  setter?: SetProcessCapabilities
  /** For tests: where thread status files live. */
  procSelf?: string
}): PrivilegeReport {
  const proc = options.procSelf ?? '/proc/self'
  let keep = (1n << BigInt(capabilityNumbers.CAP_BPF)) | (1n << BigInt(capabilityNumbers.CAP_PERFMON))
  if (options.needNetAdmin) keep |= 1n << BigInt(capabilityNumbers.CAP_NET_ADMIN)
  const main = threadCapabilities(`${proc}/status`)
  const before = main.effective
  // a bounding set wider than `keep` lets an exec'd program regain what was dropped
  const extra = (main.effective | main.bounding) & ~keep
  if (extra === 0n) {
    return { dropped: false, before: capabilityNames(before), after: capabilityNames(before), message: `capabilities already minimal: ${capabilityNames(before).join(', ') || 'none'}` }
  }
  if (options.setter === undefined) {
    return {
      dropped: false,
      before: capabilityNames(before),
      after: capabilityNames(before),
      message: `cannot drop capabilities: still holding ${capabilityNames(extra).join(', ')} beyond ${capabilityNames(keep).join(', ')}, ` +
        `because this runtime was given no capability helper (the addon's setProcessCapabilities); ${startWithLess}`,
    }
  }
  let results: readonly ThreadResult[]
  try {
    results = options.setter(keep & before)
  } catch (error) {
    return {
      dropped: false, before: capabilityNames(before), after: capabilityNames(before),
      message: `dropping capabilities failed: ${(error as Error).message}; still holding ${capabilityNames(extra).join(', ')}; ${startWithLess}`,
    }
  }
  // Every thread must have changed, or the drop protects nothing; the kernel's view decides.
  const leftover = readdirSync(`${proc}/task`)
    .map((tid) => ({ tid, ...threadCapabilities(`${proc}/task/${tid}/status`) }))
    .filter((t) => ((t.effective | t.bounding) & ~keep) !== 0n)
  const after = threadCapabilities(`${proc}/status`).effective
  if (leftover.length > 0) {
    const why = (tid: string): string => {
      const result = results.find((r) => String(r.tid) === tid)
      if (result === undefined) return 'the helper never reached it'
      if (result.error !== undefined) return result.error.message
      return result.result === 'pending' ? 'it did not answer the broadcast signal in time' : `the helper reported it ${result.result}`
    }
    return {
      dropped: false, before: capabilityNames(before), after: capabilityNames(after),
      message: `dropping capabilities was incomplete: ${leftover.map((t) => `thread ${t.tid} still holds ` +
        `${capabilityNames((t.effective | t.bounding) & ~keep).join(', ')} (${why(t.tid)})`).join('; ')}; ${startWithLess}`,
    }
  }
  return {
    dropped: true, before: capabilityNames(before), after: capabilityNames(after),
    message: `dropped ${capabilityNames(extra).join(', ')}; keeping ${capabilityNames(after).join(', ') || 'none'}`,
  }
}
