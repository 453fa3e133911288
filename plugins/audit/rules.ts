/**
 * The audit plugin's rules, compiled into the entries of the `audit` object's filter maps
 * (bpf/lib/audit.h), so that the kernel drops what the rules exclude before it reaches the ring
 * buffer. Pure TypeScript, bundled into the plugin; checked against the header and the generated
 * codecs by test/unit/audit-rules.test.ts.
 *
 * A rule is a conjunction: it matches an event when the event is of one of its `events` (every
 * kind when omitted) and, for each field it names, the event's value is one of those listed
 * (`path_prefix` and `executable` by path: a prefix, and a whole path). `action: exclude` (the
 * default) drops what it matches; `action: include` rules, when a kind has any, keep only the
 * events of that kind that one of them matches. The kernel holds one bit per rule, 64 at most.
 */

/** The `kind` of an audit event (enum audit_kind), by the name the config and the seed's `audit_rules` use. */
export const auditKinds = {
  execve: 1,
  unlink: 2,
  rename: 3,
  chmod: 4,
  chown: 5,
  open: 6,
  setuid: 7,
  connect: 8,
  accept: 9,
  ptrace: 10,
  bpf: 11,
} as const
export type AuditEventName = keyof typeof auditKinds
export const auditEventNames = Object.keys(auditKinds) as AuditEventName[]

/** `syscall` (enum audit_syscall): which call of its kind an event comes from, by number. */
export const auditSyscallNames: readonly string[] = [
  '', 'execve', 'unlink', 'unlinkat', 'rmdir', 'rename', 'renameat', 'renameat2', 'chmod', 'fchmod', 'fchmodat',
  'fchmodat2', 'chown', 'fchown', 'lchown', 'fchownat', 'open', 'openat', 'openat2', 'setuid', 'setgid', 'setreuid',
  'setregid', 'setresuid', 'setresgid', 'capset', 'connect', 'accept', 'accept4', 'ptrace', 'bpf',
]

/** `flags` */
export const AUDIT_FLAG_ARGS_TRUNCATED = 1
export const AUDIT_FLAG_EXE_DELETED = 2
export const AUDIT_FLAG_EXE_MEMFD = 4
export const AUDIT_FLAG_PRIVILEGE_GAIN = 8
export const AUDIT_FLAG_PATH_TRUNCATED = 16

export const AUDIT_MAX_RULES = 64
export const AUDIT_KIND_SLOTS = 16
export const AUDIT_PATH_LEN = 256
export const AUDIT_COMM_LEN = 16
/** struct audit_ruleset */
export const RULESET_SIZE = 64 + 8 * AUDIT_KIND_SLOTS
/** struct audit_path_key: __u32 prefixlen, then the path */
export const PATH_KEY_SIZE = 4 + AUDIT_PATH_LEN

export interface AuditRule {
  action?: 'exclude' | 'include'
  events?: string[]
  path_prefix?: string | string[]
  uid?: number | number[]
  comm?: string | string[]
  pid?: number | number[]
  /** pid namespace inode number (`readlink /proc/<pid>/ns/pid` shows `pid:[<number>]`) */
  namespace?: number | number[]
  executable?: string | string[]
}

export type RuleMap = 'uid_rules' | 'comm_rules' | 'pid_rules' | 'ns_rules' | 'exe_rules' | 'path_rules'

export interface CompiledRules {
  /** The value of `ruleset` entry 0 (key: 4 zero bytes). */
  ruleset: Uint8Array
  /** Entries of the rule fields' maps, one per distinct value, its bits those of every rule it satisfies. */
  entries: { map: RuleMap; key: Uint8Array; value: Uint8Array }[]
  /** Keys of `sensitive_paths` (value: one byte, 1). */
  sensitive: Uint8Array[]
}

const ruleKeys = new Set(['action', 'events', 'path_prefix', 'uid', 'comm', 'pid', 'namespace', 'executable'])

/**
 * The map entries for `events` (the kinds reported), `rules` and `sensitivePaths` (prefixes
 * under which opens are reported). Throws an Error naming the rule and field on a bad config.
 */
export function compileRules(events: readonly string[], rules: readonly unknown[], sensitivePaths: readonly string[]): CompiledRules {
  if (rules.length > AUDIT_MAX_RULES) throw new Error(`audit: ${rules.length} rules, but the kernel side holds at most ${AUDIT_MAX_RULES}; merge rules that differ in one field into one rule listing its values`)
  const ruleset = new Uint8Array(RULESET_SIZE)
  const view = new DataView(ruleset.buffer)
  view.setUint32(0, kindMask(events, 'events'), true)
  let exclude = 0n
  const any = { uid: 0n, comm: 0n, pid: 0n, ns: 0n, exe: 0n, path: 0n }
  const kindRules = new Array<bigint>(AUDIT_KIND_SLOTS).fill(0n)
  const fields = { uid: new Map<number, bigint>(), comm: new Map<string, bigint>(), pid: new Map<number, bigint>(), ns: new Map<number, bigint>(), exe: new Map<string, bigint>(), path: new Map<string, bigint>() }
  rules.forEach((raw, index) => {
    const rule = checkRule(raw, index)
    const bit = 1n << BigInt(index)
    if ((rule.action ?? 'exclude') === 'exclude') exclude |= bit
    const kinds = rule.events === undefined ? auditEventNames : rule.events as AuditEventName[]
    for (const name of kinds) kindRules[auditKinds[name]]! |= bit
    addValues(fields.uid, any, 'uid', bit, listOf(rule.uid))
    addValues(fields.comm, any, 'comm', bit, listOf(rule.comm))
    addValues(fields.pid, any, 'pid', bit, listOf(rule.pid))
    addValues(fields.ns, any, 'ns', bit, listOf(rule.namespace))
    addValues(fields.exe, any, 'exe', bit, listOf(rule.executable))
    addValues(fields.path, any, 'path', bit, listOf(rule.path_prefix))
  })
  view.setBigUint64(8, exclude, true)
  const anyOrder = [any.uid, any.comm, any.pid, any.ns, any.exe, any.path]
  anyOrder.forEach((bits, i) => view.setBigUint64(16 + 8 * i, bits, true))
  kindRules.forEach((bits, i) => view.setBigUint64(64 + 8 * i, bits, true))

  const entries: CompiledRules['entries'] = []
  for (const [uid, bits] of fields.uid) entries.push({ map: 'uid_rules', key: u32Key(uid), value: u64Value(bits) })
  for (const [comm, bits] of fields.comm) entries.push({ map: 'comm_rules', key: commKey(comm), value: u64Value(bits) })
  for (const [pid, bits] of fields.pid) entries.push({ map: 'pid_rules', key: u32Key(pid), value: u64Value(bits) })
  for (const [ns, bits] of fields.ns) entries.push({ map: 'ns_rules', key: u32Key(ns), value: u64Value(bits) })
  for (const [exe, bits] of fields.exe) entries.push({ map: 'exe_rules', key: pathKey(exe, true), value: u64Value(bits) })
  // the kernel's trie answers with the longest prefix only, so each prefix carries the bits of the shorter ones it extends
  for (const [prefix, bits] of fields.path) {
    let all = bits
    for (const [other, otherBits] of fields.path) if (other !== prefix && prefix.startsWith(other)) all |= otherBits
    entries.push({ map: 'path_rules', key: pathKey(prefix, false), value: u64Value(all) })
  }
  const sensitive = sensitivePaths.map((path, i) => {
    if (typeof path !== 'string' || !path.startsWith('/')) throw new Error(`audit: sensitive_paths[${i}] must be an absolute path or prefix, like /etc/shadow; got ${JSON.stringify(path)}`)
    return pathKey(path, false)
  })
  return { ruleset, entries, sensitive }
}

/** 1 << kind for each named kind. */
function kindMask(names: readonly unknown[], where: string): number {
  if (!Array.isArray(names)) throw new Error(`audit: ${where} must be a list of event names (${auditEventNames.join(', ')})`)
  let mask = 0
  for (const name of names) {
    if (typeof name !== 'string' || !(name in auditKinds)) throw new Error(`audit: ${where} names ${JSON.stringify(name)}, which is not an audit event; use ${auditEventNames.join(', ')}`)
    mask |= 1 << auditKinds[name as AuditEventName]
  }
  return mask
}

function checkRule(raw: unknown, index: number): AuditRule {
  const where = `rules[${index}]`
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error(`audit: ${where} must be a map of conditions, like { events: [execve], comm: cron }`)
  const rule = raw as Record<string, unknown>
  for (const key of Object.keys(rule)) if (!ruleKeys.has(key)) throw new Error(`audit: ${where} has an unknown key "${key}"; a rule has ${[...ruleKeys].join(', ')}`)
  if (rule.action !== undefined && rule.action !== 'exclude' && rule.action !== 'include') throw new Error(`audit: ${where}.action must be exclude or include; got ${JSON.stringify(rule.action)}`)
  if (rule.events !== undefined) kindMask(rule.events as unknown[], `${where}.events`)
  checkList(rule.uid, `${where}.uid`, 'number')
  checkList(rule.pid, `${where}.pid`, 'number')
  checkList(rule.namespace, `${where}.namespace`, 'number')
  checkList(rule.comm, `${where}.comm`, 'string')
  checkList(rule.executable, `${where}.executable`, 'string')
  checkList(rule.path_prefix, `${where}.path_prefix`, 'string')
  for (const comm of listOf(rule.comm as string | string[] | undefined)) {
    if (utf8(comm).length >= AUDIT_COMM_LEN) throw new Error(`audit: ${where}.comm "${comm}" is longer than the kernel's ${AUDIT_COMM_LEN - 1}-byte command names; write its first ${AUDIT_COMM_LEN - 1} bytes`)
  }
  for (const path of [...listOf(rule.executable as string | string[] | undefined), ...listOf(rule.path_prefix as string | string[] | undefined)]) {
    if (!path.startsWith('/')) throw new Error(`audit: ${where} names the path ${JSON.stringify(path)}; paths are absolute, like /usr/bin/ or /tmp/`)
  }
  return rule as AuditRule
}

function checkList(value: unknown, where: string, type: 'number' | 'string'): void {
  if (value === undefined) return
  const list = Array.isArray(value) ? value : [value]
  if (list.length === 0) throw new Error(`audit: ${where} is an empty list, which no event could match; leave the key out to match every value`)
  for (const item of list) {
    const ok = type === 'number' ? Number.isInteger(item) && item >= 0 && item <= 0xffffffff : typeof item === 'string' && item !== ''
    if (!ok) throw new Error(`audit: ${where} must be ${type === 'number' ? 'a non-negative integer' : 'a non-empty string'} or a list of them; got ${JSON.stringify(item)}`)
  }
}

function listOf<T>(value: T | T[] | undefined): T[] {
  return value === undefined ? [] : Array.isArray(value) ? value : [value]
}

function addValues<K>(field: Map<K, bigint>, any: Record<string, bigint>, name: string, bit: bigint, values: K[]): void {
  if (values.length === 0) {
    any[name]! |= bit
    return
  }
  for (const value of values) field.set(value, (field.get(value) ?? 0n) | bit)
}

/** UTF-8 bytes (isolates have no TextEncoder). */
function utf8(text: string): Uint8Array {
  const binary = unescape(encodeURIComponent(text))
  const bytes = new Uint8Array(binary.length)
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i)
  return bytes
}

function u32Key(value: number): Uint8Array {
  const key = new Uint8Array(4)
  new DataView(key.buffer).setUint32(0, value, true)
  return key
}

function u64Value(bits: bigint): Uint8Array {
  const value = new Uint8Array(8)
  new DataView(value.buffer).setBigUint64(0, bits, true)
  return value
}

function commKey(comm: string): Uint8Array {
  const key = new Uint8Array(AUDIT_COMM_LEN)
  key.set(utf8(comm))
  return key
}

/** A trie key: the path's bytes as a prefix, or (exact) with its terminating NUL too. */
export function pathKey(path: string, exact: boolean): Uint8Array {
  const bytes = utf8(path)
  if (bytes.length >= AUDIT_PATH_LEN) throw new Error(`audit: the path ${path.slice(0, 40)}... is ${bytes.length} bytes; the kernel compares at most ${AUDIT_PATH_LEN - 1}`)
  const key = new Uint8Array(PATH_KEY_SIZE)
  new DataView(key.buffer).setUint32(0, (bytes.length + (exact ? 1 : 0)) * 8, true)
  key.set(bytes, 4)
  return key
}
