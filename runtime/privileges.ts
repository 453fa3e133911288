/**
 * Least privilege: once its objects are loaded, the runtime keeps only CAP_BPF and CAP_PERFMON
 * (plus CAP_NET_ADMIN when a loaded object needs it, for tc and XDP), so a plugin escape or a bug
 * cannot use CAP_SYS_ADMIN.
 *
 * Node cannot call capset(2), and capabilities are per thread: a plain capset only changes the
 * calling thread, while libuv's pool, V8's platform threads and isolated-vm's threads would keep
 * the old set. Dropping therefore needs a native helper that changes every thread (libcap's psx,
 * `psx_syscall3(SYS_capset, ...)`, does exactly this). Until the addon has one, this module says
 * honestly what the process still holds and how to start it with less instead.
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

/** The effective set of the main thread (`/proc/self/status`), or of one thread. */
export function effectiveCapabilities(statusFile = '/proc/self/status'): bigint {
  const match = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync(statusFile, 'utf8'))
  if (match === null) throw new Error(`${statusFile} has no CapEff line; is /proc mounted?`)
  return BigInt(`0x${match[1]}`)
}

/**
 * The native helper the runtime needs: set permitted and effective to `keep`, inheritable and
 * ambient to empty, and drop everything else from the bounding set, on every thread of the
 * process. Throws (with errno) when the kernel refuses.
 */
export type SetProcessCapabilities = (keep: bigint) => void

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
  /** A loaded object uses tc, XDP or another CAP_NET_ADMIN attach type. */
  needNetAdmin: boolean
  setter?: SetProcessCapabilities
  /** For tests: where thread status files live. */
  procSelf?: string
}): PrivilegeReport {
  const proc = options.procSelf ?? '/proc/self'
  let keep = (1n << BigInt(capabilityNumbers.CAP_BPF)) | (1n << BigInt(capabilityNumbers.CAP_PERFMON))
  if (options.needNetAdmin) keep |= 1n << BigInt(capabilityNumbers.CAP_NET_ADMIN)
  const before = effectiveCapabilities(`${proc}/status`)
  const extra = before & ~keep
  if (extra === 0n) {
    return { dropped: false, before: capabilityNames(before), after: capabilityNames(before), message: `capabilities already minimal: ${capabilityNames(before).join(', ') || 'none'}` }
  }
  if (options.setter === undefined) {
    return {
      dropped: false,
      before: capabilityNames(before),
      after: capabilityNames(before),
      message: `cannot drop capabilities: still holding ${capabilityNames(extra).join(', ')} beyond ${capabilityNames(keep).join(', ')}, ` +
        `because the native addon has no capability helper (setProcessCapabilities); ${startWithLess}`,
    }
  }
  try {
    options.setter(keep & before)
  } catch (error) {
    return {
      dropped: false, before: capabilityNames(before), after: capabilityNames(before),
      message: `dropping capabilities failed: ${(error as Error).message}; still holding ${capabilityNames(extra).join(', ')}; ${startWithLess}`,
    }
  }
  // Every thread must have changed, or the drop protects nothing.
  const leftover = readdirSync(`${proc}/task`)
    .map((tid) => ({ tid, caps: effectiveCapabilities(`${proc}/task/${tid}/status`) }))
    .filter((t) => (t.caps & ~keep) !== 0n)
  const after = effectiveCapabilities(`${proc}/status`)
  if (leftover.length > 0) {
    return {
      dropped: false, before: capabilityNames(before), after: capabilityNames(after),
      message: `dropping capabilities was incomplete: threads ${leftover.map((t) => t.tid).join(', ')} still hold ` +
        `${capabilityNames(leftover[0]!.caps & ~keep).join(', ')}; the helper must change every thread (libpsx); ${startWithLess}`,
    }
  }
  return {
    dropped: true, before: capabilityNames(before), after: capabilityNames(after),
    message: `dropped ${capabilityNames(extra).join(', ')}; keeping ${capabilityNames(after).join(', ') || 'none'}`,
  }
}
