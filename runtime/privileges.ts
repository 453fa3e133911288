/**
 * Least privilege. Once its first objects are loaded and its admin socket is bound, the runtime
 * continues as `nobody` (uid and gid 65534, no supplementary groups), with `no_new_privs` set, and
 * with only the capabilities in `keptCapabilities`, in its permitted, effective and bounding sets.
 *
 * - A uid that owns nothing is what stops ordinary file permissions from letting a bug or a
 *   plugin escape write root's files: uid 0 owns them, and an owner may write (and chmod) them
 *   without any capability. It also stops signals to root's processes and connections to root's
 *   unix sockets.
 * - What is kept covers every object the library can load, so a plugin added later still loads
 *   and attaches without anything being given back. Feature probes run before the drop
 *   (runtime/library), so a later EPERM is a capability the process lacks, reported as such by
 *   `explainPermissionDenied`, never a kernel feature found missing.
 * - After the drop the runtime writes only to directories handed to `nobody` beforehand: the
 *   exporter's data directory and the admin socket's directory (`claimDirectory`).
 * - A child process started after the drop runs as `nobody` with no_new_privs and no capability,
 *   unless it is started through `startChildKeeping`, which lets it keep some of the kept ones.
 *   A child started before the drop keeps root: the caller ends it at the drop (the esbuild
 *   service, runtime/plugins/build.ts).
 *
 * Node cannot call setresuid(2) or capset(2) for the whole process, and credentials are per
 * thread: a plain call changes only the calling thread, while libuv's pool, V8's platform threads
 * and isolated-vm's threads would keep root. The addon's `setProcessCredentials`
 * (native/src/capabilities.cc) therefore changes every thread, and this module checks each
 * thread's status afterwards, because a drop that missed one thread protects nothing.
 */
import { chownSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { BpfError } from './bpf/errors.ts'

/** Capability names by number, as in linux/capability.h. */
const names = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE', 'CAP_NET_BROADCAST', 'CAP_NET_ADMIN',
  'CAP_NET_RAW', 'CAP_IPC_LOCK', 'CAP_IPC_OWNER', 'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT', 'CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE', 'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL', 'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG', 'CAP_WAKE_ALARM', 'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ',
  'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE',
] as const

export type CapabilityName = (typeof names)[number]

/** The names of the capabilities in a mask, in bit order. */
export function capabilityNames(mask: bigint): string[] {
  const out: string[] = []
  for (let bit = 0n; bit < 64n; bit++) if ((mask >> bit) & 1n) out.push(names[Number(bit)] ?? `cap_${bit}`)
  return out
}

export function capabilityMask(capabilities: Iterable<CapabilityName>): bigint {
  let mask = 0n
  for (const name of capabilities) mask |= 1n << BigInt(names.indexOf(name))
  return mask
}

/**
 * What the runtime keeps after the drop, and why. CAP_SYS_PTRACE is left out on purpose: with it
 * the runtime could write any process's memory (/proc/<pid>/mem, ptrace), which is root again.
 * The memory maps of other processes (for uprobes on their libraries) come from a BPF task_vma
 * iterator instead, which CAP_BPF and CAP_PERFMON allow.
 */
export const keptCapabilities: Readonly<Partial<Record<CapabilityName, string>>> = {
  CAP_BPF: 'create maps and load programs',
  CAP_PERFMON: 'tracing programs, perf events, kprobes, and uprobes as uprobe_multi links, also in other processes',
  CAP_NET_ADMIN: 'tc and cgroup programs, which a plugin added later may bring',
  CAP_DAC_READ_SEARCH: 'read what only root may read: tracefs (tracepoint ids), the plugin files, and the binaries and libraries uprobes attach to',
}

const keptMask = capabilityMask(Object.keys(keptCapabilities) as CapabilityName[])

/** Who the runtime continues as: the kernel's overflow ids, which own no file on a normal host. */
export const runtimeIdentity = { user: 'nobody', uid: 65534, gid: 65534 } as const

/** A thread's credentials as the kernel accounts them (`/proc/<pid>/task/<tid>/status`). */
export interface ThreadCredentials {
  effective: bigint
  permitted: bigint
  inheritable: bigint
  ambient: bigint
  bounding: bigint
  /** real, effective, saved and filesystem uid */
  uids: number[]
  gids: number[]
  groups: number[]
  noNewPrivs: boolean
}

export function threadCredentials(statusFile = '/proc/thread-self/status'): ThreadCredentials {
  const text = readFileSync(statusFile, 'utf8')
  const field = (name: string): string => {
    const match = new RegExp(`^${name}:[ \\t]*(.*)$`, 'm').exec(text)
    if (match === null) throw new Error(`${statusFile} has no ${name} line; is /proc mounted?`)
    return match[1]!.trim()
  }
  const numbers = (name: string): number[] => field(name).split(/\s+/).filter((n) => n !== '').map(Number)
  const mask = (name: string): bigint => BigInt(`0x${field(name)}`)
  return {
    effective: mask('CapEff'), permitted: mask('CapPrm'), inheritable: mask('CapInh'), ambient: mask('CapAmb'), bounding: mask('CapBnd'),
    uids: numbers('Uid'), gids: numbers('Gid'), groups: numbers('Groups'), noNewPrivs: field('NoNewPrivs') === '1',
  }
}

/** What is wrong with a thread's credentials after the drop, or nothing. */
function credentialProblems(thread: ThreadCredentials): string[] {
  const problems: string[] = []
  const beyond = (thread.effective | thread.permitted | thread.bounding | thread.inheritable | thread.ambient) & ~keptMask
  if (beyond !== 0n) problems.push(`holds ${capabilityNames(beyond).join(', ')}`)
  if (thread.uids.some((id) => id !== runtimeIdentity.uid)) problems.push(`has uids ${thread.uids.join(' ')}`)
  if (thread.gids.some((id) => id !== runtimeIdentity.gid) || thread.groups.length > 0) problems.push(`has gids ${thread.gids.join(' ')} and groups [${thread.groups.join(' ')}]`)
  if (!thread.noNewPrivs) problems.push('lacks no_new_privs')
  return problems
}

/** How the native helper says each thread fared; `error` is the addon's BpfError. */
export interface ThreadResult {
  tid: number
  result: 'changed' | 'failed' | 'exited' | 'pending'
  error?: Error
}

/**
 * The native helper: switch every thread of the process to `uid`/`gid` with no groups, set
 * no_new_privs, and set its capabilities to `keep`. Throws (a BpfError with errno) when it cannot
 * start; reports each thread's outcome otherwise.
 */
export type SetProcessCredentials = (keep: bigint, uid: number, gid: number) => readonly ThreadResult[]

/**
 * The native helper that makes `mask` the calling thread's inheritable and ambient capabilities,
 * which the next process it starts keeps. Throws (a BpfError with errno) when the kernel refuses.
 */
export type SetAmbientCapabilities = (mask: bigint) => void

export interface PrivilegeReport {
  dropped: boolean
  before: string[]
  after: string[]
  /** One line for the log: what happened, and what to do when it could not happen. */
  message: string
}

const keptList = Object.keys(keptCapabilities).map((name) => `+${name.slice(4).toLowerCase()}`).join(',')
const startWithLess =
  `start periscope as ${runtimeIdentity.user} with only those capabilities instead, from a directory ${runtimeIdentity.user} may write (for ./periscope-data): ` +
  `\`setpriv --reuid=${runtimeIdentity.uid} --regid=${runtimeIdentity.gid} --clear-groups --inh-caps=-all,${keptList} --ambient-caps=-all,${keptList} ` +
  `--bounding-set=-all,${keptList} --no-new-privs -- periscope run\``

/** Set once the drop succeeded: messages about later EPERMs say the capability was given up. */
let droppedForGood = false
/** The helper `startChildKeeping` raises capabilities with, once the drop succeeded. */
let setAmbient: SetAmbientCapabilities | undefined

export function privilegesDropped(): boolean {
  return droppedForGood
}

/** A directory the runtime writes to after the drop, and how to recognise what it put there. */
export interface RuntimeDirectory {
  path: string
  /** For messages: the setting that names it ("exporter.dataDir"). */
  what: string
  /** Whether an entry of the directory is one Periscope writes there. */
  isOurs: (entry: string) => boolean
  /** Mode when Periscope creates it. */
  mode: number
}

/**
 * Makes a directory writable by the runtime identity, so the runtime can keep writing there after
 * the drop: creates it owned by `nobody` when missing, and adopts one that holds only what
 * Periscope writes there, with its entries. Anything else is refused with the fix, because handing
 * a shared directory (/tmp, a home, a config directory) to `nobody` would let every `nobody`
 * process write there.
 */
export function claimDirectory({ path: dir, what, isOurs, mode }: RuntimeDirectory): void {
  const { uid, gid, user } = runtimeIdentity
  if (!existsSync(dir)) {
    mkdirSync(dir, { recursive: true, mode })
    chownSync(dir, uid, gid)
    return
  }
  const stat = lstatSync(dir)
  if (!stat.isDirectory()) throw new Error(`${what} ${dir} is not a directory; point ${what} at a directory of its own`)
  if (stat.uid === uid && stat.gid === gid) return
  const entries = readdirSync(dir)
  const foreign = entries.filter((entry) => !isOurs(entry))
  if (foreign.length > 0 || (stat.mode & 0o7022) !== 0) {
    throw new Error(`${what} ${dir} is not a directory of its own (${foreign.length > 0 ? `it also holds ${foreign.slice(0, 3).join(', ')}` : 'others may write to it'}); ` +
      `after loading, the runtime continues as ${user} (uid ${uid}) and must own the directory it writes to. ` +
      `Point ${what} at a directory of its own, which Periscope creates, or hand this one over with \`chown -R ${uid}:${gid} ${dir}\``)
  }
  for (const entry of entries) {
    const full = path.join(dir, entry)
    if (lstatSync(full).isDirectory()) for (const inner of readdirSync(full)) chownSync(path.join(full, inner), uid, gid)
    chownSync(full, uid, gid)
  }
  chownSync(dir, uid, gid)
}

/**
 * Switches the whole process to the runtime identity with `keptCapabilities`, or says why it
 * could not and how to start with less instead. `procSelf` lets tests use a fake /proc/self.
 */
export function dropPrivileges(options: {
  setter?: SetProcessCredentials
  /** Kept for `startChildKeeping`; without it, children started after the drop keep nothing. */
  setAmbient?: SetAmbientCapabilities
  /** Claimed (claimDirectory) just before the drop; a refusal throws. */
  directories?: readonly RuntimeDirectory[]
  procSelf?: string
}): PrivilegeReport {
  const proc = options.procSelf ?? '/proc/self'
  const main = threadCredentials(`${proc}/status`)
  const before = capabilityNames(main.effective)
  const report = (dropped: boolean, message: string): PrivilegeReport =>
    ({ dropped, before, after: capabilityNames(threadCredentials(`${proc}/status`).effective), message })
  const extra = (main.effective | main.permitted | main.bounding) & ~keptMask
  if (extra === 0n && !main.uids.includes(0)) return report(false, `privileges already minimal: ${before.join(', ') || 'no capabilities'}, uid ${main.uids[0]}`)
  const holding = `still uid ${main.uids[0]}${extra === 0n ? '' : ` holding ${capabilityNames(extra).join(', ')}`}`
  if (options.setter === undefined) {
    return report(false, `cannot drop privileges: ${holding}, because this runtime was given no helper (the addon's setProcessCredentials); ${startWithLess}`)
  }
  for (const directory of options.directories ?? []) claimDirectory(directory)
  let results: readonly ThreadResult[]
  try {
    results = options.setter(keptMask & main.permitted, runtimeIdentity.uid, runtimeIdentity.gid)
  } catch (error) {
    return report(false, `dropping privileges failed: ${(error as Error).message}; ${holding}; ${startWithLess}`)
  }
  // Every thread must have changed, or the drop protects nothing; the kernel's view decides.
  const leftover = readdirSync(`${proc}/task`).flatMap((tid) => {
    const problems = credentialProblems(threadCredentials(`${proc}/task/${tid}/status`))
    return problems.length === 0 ? [] : [{ tid, problems }]
  })
  if (leftover.length > 0) {
    const reason = (tid: string): string => {
      const result = results.find((r) => String(r.tid) === tid)
      if (result === undefined) return 'the helper never reached it'
      if (result.error !== undefined) return result.error.message
      return result.result === 'pending' ? 'it did not answer the broadcast signal in time' : `the helper reported it ${result.result}`
    }
    return report(false, `dropping privileges was incomplete: ${leftover.map((t) => `thread ${t.tid} still ${t.problems.join(', ')} (${reason(t.tid)})`).join('; ')}; ${startWithLess}`)
  }
  droppedForGood = true
  setAmbient = options.setAmbient
  const after = threadCredentials(`${proc}/status`)
  return report(true, `dropped ${capabilityNames(main.effective & ~after.effective).join(', ')}; continuing as ${runtimeIdentity.user} (uid ${runtimeIdentity.uid}) ` +
    `with no_new_privs, keeping ${capabilityNames(after.effective).join(', ') || 'no capabilities'}`)
}

/**
 * Runs `start`, which starts a child process synchronously on this thread, so that the child keeps
 * `capabilities`, and nothing more. child_process.spawn qualifies: it forks and execs before it
 * returns, and the child inherits the credentials of the thread that forked it. After the drop
 * that child runs as nobody with no_new_privs, and execve leaves a non-root program only its
 * ambient capabilities, so they are raised for the moment of the start and lowered again; the
 * kernel raises only capabilities the runtime still holds. Before the drop, or when nothing was
 * dropped, the child inherits what the process has, as any child does.
 */
export function startChildKeeping<T>(capabilities: readonly CapabilityName[], start: () => T): T {
  if (!droppedForGood || setAmbient === undefined) return start()
  try {
    setAmbient(capabilityMask(capabilities))
  } catch (error) {
    // a raise refused midway may have left the inheritable set raised
    setAmbient(0n)
    throw new Error(`cannot start a child process that keeps ${capabilities.join(', ')}: ${(error as Error).message}. ` +
      `A child can keep only capabilities the runtime holds (${capabilityNames(threadCredentials().permitted).join(', ') || 'none'}), ` +
      'and none while the SECBIT_NO_CAP_AMBIENT_RAISE securebit is set; start Periscope without that securebit')
  }
  try {
    return start()
  } finally {
    setAmbient(0n)
  }
}

/** Capabilities the kernel asks for to load a program of this type (libbpf's name), beyond none. */
export function capabilitiesForProgramType(type: string): CapabilityName[] {
  if (netAdminProgramTypes.has(type) || type.startsWith('cgroup_')) return ['CAP_BPF', 'CAP_NET_ADMIN']
  if (perfmonProgramTypes.has(type)) return ['CAP_BPF', 'CAP_PERFMON']
  return ['CAP_BPF']
}

/** The kernel's is_net_admin_prog_type() list, in libbpf's names; cgroup types are matched by prefix. */
const netAdminProgramTypes = new Set([
  'sched_cls', 'sched_act', 'xdp', 'lwt_in', 'lwt_out', 'lwt_xmit', 'lwt_seg6local', 'sk_skb', 'sk_msg', 'sock_ops',
  'flow_dissector', 'socket_filter', 'sk_reuseport', 'netfilter',
])
/** The kernel's is_perfmon_prog_type() list, in libbpf's names. */
const perfmonProgramTypes = new Set(['kprobe', 'tracepoint', 'perf_event', 'raw_tracepoint', 'raw_tracepoint_writable', 'tracing', 'lsm', 'struct_ops', 'ext'])

/** Of the capabilities `needs`, those the calling thread does not hold. */
export function missingCapabilities(needs: readonly CapabilityName[]): CapabilityName[] {
  const held = threadCredentials().effective
  return needs.filter((name) => (held & capabilityMask([name])) === 0n)
}

/** Why the process lacks a capability, for messages. */
function lackedBecause(): string {
  return privilegesDropped()
    ? `Periscope dropped it after start-up and keeps only ${capabilityNames(keptMask).join(', ')}`
    : 'this process does not hold it'
}

/**
 * Turns an EPERM from `what` into an error that names the capability it needs and the process
 * lacks. After the drop that capability was given up on purpose; an EPERM with every needed
 * capability held is the kernel's policy (lockdown, an LSM) or a helper that wants
 * CAP_SYS_ADMIN. Other errors pass through unchanged.
 */
export function explainPermissionDenied(error: unknown, what: string, needs: readonly CapabilityName[]): unknown {
  if (!(error instanceof BpfError) || error.code !== 'EPERM') return error
  const missing = missingCapabilities(needs)
  const message = missing.length > 0
    ? `${what} was refused (EPERM): it needs ${missing.join(' and ')}, and ${lackedBecause()}. ` +
      (privilegesDropped() ? 'Put the plugin that needs it in place before `periscope run` starts, so that its object loads before the drop' : `Run as root, or grant ${missing.join(' and ')}`)
    : `${what} was refused (EPERM) although this process holds ${needs.join(' and ')}: the kernel refuses it by policy (lockdown, an LSM)` +
      (privilegesDropped() ? ', or one of its helpers wants CAP_SYS_ADMIN, which Periscope dropped after start-up' : '')
  return new BpfError(`${message}\n(${error.message})`, error)
}

/** For feature probes: the reason a probe could not tell, when it lacked a capability; else undefined. */
export function probeLacks(what: string, needs: readonly CapabilityName[]): string | undefined {
  const missing = missingCapabilities(needs)
  if (missing.length === 0) return undefined
  return `cannot tell whether ${what} works: probing it needs ${missing.join(' and ')}, and ${lackedBecause()}`
}
