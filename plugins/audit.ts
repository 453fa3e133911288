/**
 * A security audit log for every process on the host: one OpenTelemetry log record per audited
 * action, from the `audit` object (the exec tracepoint and the exit tracepoints of the audited
 * syscalls). What is reported is decided in the kernel: `events` turns kinds on, `rules` keep or
 * drop events by their fields (plugins/audit/rules.ts), `sensitive_paths` says which opens matter,
 * and an event the rules drop never reaches the ring buffer. Rules hot-reload with the plugin:
 * they are map entries the plugin claims, so the programs stay attached across a reload.
 *
 * Events (`eventName`, and the `events` name that turns it on):
 * - `audit.process.exec` (execve): `process.executable.path` (the file the kernel runs),
 *   `process.command_args` (argv up to 1 KiB, secrets masked), `process.working_directory`,
 *   `process.executable.deleted`/`process.executable.memfd` (true when the binary had no link
 *   left or is a memfd), `audit.privilege_gain` (true, severity warn, when the exec gave the new
 *   image privileges its caller lacked: a setuid/setgid bit or file capabilities; such an exec
 *   is also reported when only `setuid` is on);
 * - `audit.file.delete` (unlink: unlink, unlinkat, rmdir), `audit.file.rename` (rename: rename,
 *   renameat, renameat2, with `file.new_path`), `audit.file.mode_change` (chmod: chmod, fchmod,
 *   fchmodat, fchmodat2, with `file.mode` in octal), `audit.file.owner_change` (chown: chown,
 *   fchown, lchown, fchownat, with `file.owner.id`/`file.group.id` when changed): `file.path`;
 * - `audit.file.open` (open, severity warn): an open, openat or openat2 of a path under one of
 *   `sensitive_paths`, with `file.path` and `audit.open.access` (`read`, `write`, `read_write`);
 * - `audit.process.id_change` (setuid): setuid, setgid, setreuid, setregid, setresuid, setresgid
 *   with the ids asked for (`audit.requested.user.id`, `audit.requested.real_user.id`,
 *   `audit.requested.saved_user.id` and the `group` ones; an id left unchanged is left out), and
 *   capset with `audit.requested.capabilities.effective`/`.permitted`/`.inheritable` (hex masks);
 * - `audit.network.connect` (connect) and `audit.network.accept` (accept: accept, accept4, the
 *   successful ones): IPv4 and IPv6 only, `network.peer.address`, `network.peer.port`,
 *   `network.local.address`, `network.local.port`, `network.type`;
 * - `audit.process.ptrace` (ptrace, severity warn): the requests that start tracing,
 *   `audit.ptrace.request` (`attach`, `seize`, `traceme`) and `audit.ptrace.target_pid`;
 * - `audit.bpf.program_load` (bpf): bpf(BPF_PROG_LOAD), `audit.bpf.program.type` (the kernel's
 *   number), `audit.bpf.program.name`, `audit.bpf.program.id` (when loaded).
 * Every record has `process.pid`, `process.parent_pid`, `process.executable.name` (comm),
 * `user.id` (the real uid), `process.real_user.id`, `process.user.id` (effective),
 * `process.real_group.id`, `process.group.id` (effective; all as they are after the call),
 * `process.pid_namespace` (inode number), `process.linux.cgroup_id`, `audit.syscall` (the call's
 * name), `audit.result` (`success`, `failure`) and, on failure, `error.type` (the errno name).
 *
 * Limits: paths are absolute, resolved from the caller's working directory or dirfd, but `..` and
 * symbolic links are not followed (a path rule sees the path as written, made absolute). Kernel
 * module loads are not reported: this machine's kernel has no loadable modules (no
 * init_module/finit_module tracepoints). Calls made through io_uring bypass syscall tracepoints
 * and are not seen.
 *
 * Everything here is public plugin API: a user plugin can do the same.
 */
import { definePlugin, type PluginContext, type TopicEvent } from 'periscope/plugin'
import { formatAddress } from 'periscope/protocols/sockdata'
import {
  AUDIT_FLAG_ARGS_TRUNCATED, AUDIT_FLAG_EXE_DELETED, AUDIT_FLAG_EXE_MEMFD, AUDIT_FLAG_PATH_TRUNCATED, AUDIT_FLAG_PRIVILEGE_GAIN,
  auditEventNames, auditKinds, auditSyscallNames, compileRules,
} from './audit/rules.ts'
import { compileSecretPatterns, defaultSecretPatterns, maskSecrets } from './audit/secrets.ts'
import { errnoName } from './audit/errno.ts'

const config = {
  /** The kinds of event reported (the seed's `audit_rules` names execve, unlink, setuid, connect). */
  events: [...auditEventNames] as string[],
  /** Filters applied in the kernel (plugins/audit/rules.ts): maps of event, path_prefix, uid, comm, pid, namespace, executable. */
  rules: [] as { [key: string]: string | number | string[] | number[] }[],
  /** Opens under these prefixes are reported. */
  sensitive_paths: ['/etc/shadow', '/etc/gshadow', '/etc/sudoers', '/etc/sudoers.d/', '/root/.ssh/', '/etc/ssh/ssh_host_'] as string[],
  /** Regular expressions whose first group is masked in command lines (plugins/audit/secrets.ts). */
  secret_patterns: [...defaultSecretPatterns] as string[],
}
type Config = typeof config
type AuditEvent = TopicEvent<'audit:events'>
type Attributes = Record<string, string | number | boolean | string[]>

const K = auditKinds
const eventNames: Record<number, string> = {
  [K.execve]: 'audit.process.exec',
  [K.unlink]: 'audit.file.delete',
  [K.rename]: 'audit.file.rename',
  [K.chmod]: 'audit.file.mode_change',
  [K.chown]: 'audit.file.owner_change',
  [K.open]: 'audit.file.open',
  [K.setuid]: 'audit.process.id_change',
  [K.connect]: 'audit.network.connect',
  [K.accept]: 'audit.network.accept',
  [K.ptrace]: 'audit.process.ptrace',
  [K.bpf]: 'audit.bpf.program_load',
}
const ptraceRequests: Record<number, string> = { 0: 'traceme', 16: 'attach', 0x4206: 'seize' }
const UNCHANGED = 0xffffffff
const O_ACCMODE = 3
const accessModes = ['read', 'write', 'read_write', 'read_write']

export default definePlugin({
  name: 'audit',
  objects: ['audit'],
  config,
  async setup(ctx) {
    const { events, rules, sensitive_paths: sensitivePaths, secret_patterns: secretPatterns } = ctx.config
    // both throw on a bad config: setup fails and a running version keeps its rules
    const compiled = compileRules(events, rules, sensitivePaths)
    const patterns = compileSecretPatterns(secretPatterns)
    const log = new AuditLog(ctx, patterns)
    ctx.on('audit:events', (event) => log.onEvent(event))
    for (const entry of compiled.entries) await ctx.map(`audit:${entry.map}`).claim(entry.key, entry.value)
    const sensitive = ctx.map('audit:sensitive_paths')
    for (const key of compiled.sensitive) await sensitive.claim(key, new Uint8Array([1]))
    // the kinds turn on last, once every filter they depend on is in place
    await ctx.map('audit:ruleset').claim(new Uint8Array(4), compiled.ruleset)
    ctx.log.info(`auditing ${events.length === 0 ? 'nothing' : events.join(', ')} with ${rules.length} rule${rules.length === 1 ? '' : 's'} applied in the kernel`)
  },
})

class AuditLog {
  readonly #ctx: PluginContext<Config>
  readonly #patterns: RegExp[]

  constructor(ctx: PluginContext<Config>, patterns: RegExp[]) {
    this.#ctx = ctx
    this.#patterns = patterns
  }

  onEvent(e: AuditEvent): void {
    const attributes = commonAttributes(e)
    let body: string
    let warn = false
    switch (e.kind) {
      case K.execve: [body, warn] = this.#exec(e, attributes); break
      case K.unlink: body = `deleted ${e.path}`; attributes['file.path'] = e.path; break
      case K.rename: body = `renamed ${e.path} to ${e.path2}`; attributes['file.path'] = e.path; attributes['file.new_path'] = e.path2; break
      case K.chmod: body = chmodBody(e, attributes); break
      case K.chown: body = chownBody(e, attributes); break
      case K.open: body = openBody(e, attributes); warn = true; break
      case K.setuid: body = idChangeBody(e, attributes); break
      case K.connect: case K.accept: body = networkBody(e, attributes); break
      case K.ptrace: body = ptraceBody(e, attributes); warn = true; break
      case K.bpf: body = bpfBody(e, attributes); break
      default: return
    }
    if (e.flags & AUDIT_FLAG_PATH_TRUNCATED) attributes['audit.path_truncated'] = true
    this.#ctx.emit.log({
      eventName: eventNames[e.kind],
      severity: warn ? 'warn' : 'info',
      timeNs: this.#ctx.time.wallNs(e.timestamp_ns),
      body: `${e.comm} (pid ${e.pid}, uid ${e.uid}) ${body}${e.ret < 0 ? ` failed: ${attributes['error.type']}` : ''}`,
      attributes,
    })
  }

  #exec(e: AuditEvent, attributes: Attributes): [string, boolean] {
    const args = maskSecrets(e.args, this.#patterns)
    attributes['process.executable.path'] = e.path
    attributes['process.command_args'] = args
    attributes['process.working_directory'] = e.path2
    if (e.flags & AUDIT_FLAG_ARGS_TRUNCATED) attributes['audit.args_truncated'] = true
    if (e.flags & AUDIT_FLAG_EXE_DELETED) attributes['process.executable.deleted'] = true
    if (e.flags & AUDIT_FLAG_EXE_MEMFD) attributes['process.executable.memfd'] = true
    const gained = (e.flags & AUDIT_FLAG_PRIVILEGE_GAIN) !== 0
    if (gained) attributes['audit.privilege_gain'] = true
    return [`executed ${e.path}${gained ? ' gaining privileges' : ''}: ${args.join(' ')}`, gained]
  }
}

function commonAttributes(e: AuditEvent): Attributes {
  const attributes: Attributes = {
    'process.pid': e.pid,
    'process.parent_pid': e.ppid,
    'process.executable.name': e.comm,
    'user.id': e.uid,
    'process.real_user.id': e.uid,
    'process.user.id': e.euid,
    'process.real_group.id': e.gid,
    'process.group.id': e.egid,
    'process.pid_namespace': e.pid_ns,
    'process.linux.cgroup_id': e.cgroup_id,
    'audit.syscall': auditSyscallNames[e.syscall] ?? String(e.syscall),
    'audit.result': e.ret < 0 ? 'failure' : 'success',
  }
  if (e.ret < 0) attributes['error.type'] = errnoName(-e.ret)
  return attributes
}

function chmodBody(e: AuditEvent, attributes: Attributes): string {
  const mode = `0${e.arg0.toString(8).padStart(3, '0')}`
  attributes['file.path'] = e.path
  attributes['file.mode'] = mode
  return `changed the mode of ${e.path} to ${mode}`
}

function chownBody(e: AuditEvent, attributes: Attributes): string {
  attributes['file.path'] = e.path
  const parts: string[] = []
  if (e.arg0 !== UNCHANGED) {
    attributes['file.owner.id'] = String(e.arg0)
    parts.push(`owner ${e.arg0}`)
  }
  if (e.arg1 !== UNCHANGED) {
    attributes['file.group.id'] = String(e.arg1)
    parts.push(`group ${e.arg1}`)
  }
  return `changed ${parts.join(' and ') || 'nothing'} of ${e.path}`
}

function openBody(e: AuditEvent, attributes: Attributes): string {
  const access = accessModes[e.arg0 & O_ACCMODE]!
  attributes['file.path'] = e.path
  attributes['audit.open.access'] = access
  return `opened ${e.path} for ${access.replace('_', ' and ')}`
}

/** The ids each call asks for, in arg0..arg2, by attribute. */
const requestedIds: Record<string, string[]> = {
  setuid: ['audit.requested.user.id'],
  setgid: ['audit.requested.group.id'],
  setreuid: ['audit.requested.real_user.id', 'audit.requested.user.id'],
  setregid: ['audit.requested.real_group.id', 'audit.requested.group.id'],
  setresuid: ['audit.requested.real_user.id', 'audit.requested.user.id', 'audit.requested.saved_user.id'],
  setresgid: ['audit.requested.real_group.id', 'audit.requested.group.id', 'audit.requested.saved_group.id'],
}

function idChangeBody(e: AuditEvent, attributes: Attributes): string {
  const syscall = attributes['audit.syscall'] as string
  const args = [e.arg0, e.arg1, e.arg2]
  if (syscall === 'capset') {
    const sets = ['effective', 'permitted', 'inheritable']
    sets.forEach((set, i) => { attributes[`audit.requested.capabilities.${set}`] = `0x${args[i]!.toString(16)}` })
    return `set its capabilities (effective 0x${e.arg0.toString(16)})`
  }
  const asked: string[] = []
  ;(requestedIds[syscall] ?? []).forEach((name, i) => {
    if (args[i] === UNCHANGED) return
    attributes[name] = args[i]!
    asked.push(String(args[i]))
  })
  return `called ${syscall}(${asked.join(', ')})`
}

function networkBody(e: AuditEvent, attributes: Attributes): string {
  const peer = formatAddress(e.family, e.peer_addr)
  const local = formatAddress(e.family, e.local_addr)
  attributes['network.type'] = e.family === 10 ? 'ipv6' : 'ipv4'
  attributes['network.peer.address'] = peer
  attributes['network.peer.port'] = e.peer_port
  attributes['network.local.address'] = local
  attributes['network.local.port'] = e.local_port
  return e.kind === K.connect ? `connected to ${peer}:${e.peer_port}` : `accepted a connection from ${peer}:${e.peer_port} on port ${e.local_port}`
}

function ptraceBody(e: AuditEvent, attributes: Attributes): string {
  const request = ptraceRequests[e.arg0] ?? String(e.arg0)
  attributes['audit.ptrace.request'] = request
  if (request === 'traceme') return `asked its parent ${e.ppid} to trace it`
  attributes['audit.ptrace.target_pid'] = e.arg1
  return `began tracing process ${e.arg1} (${request})`
}

function bpfBody(e: AuditEvent, attributes: Attributes): string {
  attributes['audit.bpf.program.type'] = e.arg0
  attributes['audit.bpf.program.name'] = e.path2
  if (e.arg1 !== 0) attributes['audit.bpf.program.id'] = e.arg1
  return `loaded BPF program ${e.path2 === '' ? '(no name)' : e.path2} of type ${e.arg0}${e.arg1 !== 0 ? ` as id ${e.arg1}` : ''}`
}
