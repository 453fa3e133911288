// The audit plugin's pure helpers: its constants are bpf/lib/audit.h's, its rule compiler gives
// the exact map entries the kernel side reads (checked with the codecs generated from the
// object's BTF), its errno names are this platform's, and its secret masking hides what it should
// and nothing else.
import assert from 'node:assert/strict'
import { constants } from 'node:os'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { AUDIT_PATH_KEY_SIZE, AUDIT_RULESET_SIZE, decodeAuditPathKey, decodeAuditRuleset } from '../../bpf/lib/audit.types.ts'
import { errnoName, errnoNames } from '../../plugins/audit/errno.ts'
import * as rules from '../../plugins/audit/rules.ts'
import { compileSecretPatterns, defaultSecretPatterns, maskSecrets } from '../../plugins/audit/secrets.ts'

const { auditKinds, auditSyscallNames, compileRules } = rules

function headerValues(): Map<string, number> {
  const header = readFileSync(new URL('../../bpf/lib/audit.h', import.meta.url), 'utf8')
  const values = new Map<string, number>()
  for (const [, name, value] of header.matchAll(/^\s*([A-Z_0-9]+)\s*=\s*(\d+)\s*,/gm)) values.set(name!, Number(value))
  for (const [, name, value] of header.matchAll(/^#define\s+([A-Z_0-9]+)\s+(\d+)$/gm)) values.set(name!, Number(value))
  return values
}

test('kinds, syscalls, flags and sizes are those of audit.h and the generated codecs', () => {
  const values = headerValues()
  const kindNames: Record<string, string> = { execve: 'AUDIT_EXEC', setuid: 'AUDIT_SETID' }
  for (const [name, kind] of Object.entries(auditKinds)) assert.equal(kind, values.get(kindNames[name] ?? `AUDIT_${name.toUpperCase()}`), name)
  assert.equal(Object.keys(auditKinds).length, 11)
  auditSyscallNames.forEach((name, i) => { if (i > 0) assert.equal(values.get(`AUDIT_SYS_${name.toUpperCase()}`), i, name) })
  assert.equal(auditSyscallNames.length, 31)
  const flags = Object.entries(rules).filter(([name]) => name.startsWith('AUDIT_FLAG_'))
  assert.equal(flags.length, 5)
  for (const [name, value] of flags) assert.equal(value, values.get(name), name)
  for (const name of ['AUDIT_MAX_RULES', 'AUDIT_KIND_SLOTS', 'AUDIT_PATH_LEN', 'AUDIT_COMM_LEN'] as const) assert.equal(rules[name], values.get(name), name)
  assert.equal(rules.RULESET_SIZE, AUDIT_RULESET_SIZE)
  assert.equal(rules.PATH_KEY_SIZE, AUDIT_PATH_KEY_SIZE)
})

const bitsOf = (value: Uint8Array): bigint => new DataView(value.buffer, value.byteOffset).getBigUint64(0, true)
const ruleset = (compiled: rules.CompiledRules) => decodeAuditRuleset(new DataView(compiled.ruleset.buffer), 0)

test('each rule is a bit: its kinds, and per field the values that meet it or, for fields it does not name, the any mask', () => {
  const compiled = compileRules(['execve', 'unlink', 'connect'], [
    { action: 'include', namespace: 4026531836 },
    { events: ['unlink'], path_prefix: '/tmp/', uid: [0, 1000] },
    { events: ['execve'], executable: '/usr/bin/cron', comm: 'cron' },
    { comm: ['cron', 'sshd'], pid: 42 },
  ], [])
  const set = ruleset(compiled)
  assert.equal(set.kinds, (1 << 1) | (1 << 2) | (1 << 8))
  assert.equal(set.exclude, 0b1110)
  // the include rule names no event, so it applies to every kind
  assert.equal(set.kind_rules[auditKinds.execve], 0b1101)
  assert.equal(set.kind_rules[auditKinds.unlink], 0b1011)
  assert.equal(set.kind_rules[auditKinds.connect], 0b1001)
  assert.equal(set.kind_rules[0], 0)
  assert.deepEqual([set.uid_any, set.comm_any, set.pid_any, set.ns_any, set.exe_any, set.path_any], [0b1101, 0b0011, 0b0111, 0b1110, 0b1011, 0b1101])
  const entries = compiled.entries.map((e) => [e.map, Buffer.from(e.key).toString('hex'), bitsOf(e.value)])
  assert.deepEqual(entries, [
    ['uid_rules', '00000000', 0b10n],
    ['uid_rules', 'e8030000', 0b10n],
    ['comm_rules', Buffer.from('cron').toString('hex').padEnd(32, '0'), 0b1100n],
    ['comm_rules', Buffer.from('sshd').toString('hex').padEnd(32, '0'), 0b1000n],
    ['pid_rules', '2a000000', 0b1000n],
    ['ns_rules', Buffer.from(new Uint32Array([4026531836]).buffer).toString('hex'), 0b1n],
    ['exe_rules', Buffer.from(rules.pathKey('/usr/bin/cron', true)).toString('hex'), 0b100n],
    ['path_rules', Buffer.from(rules.pathKey('/tmp/', false)).toString('hex'), 0b10n],
  ])
  // an executable matches whole (its NUL is in the prefix), a path prefix as a prefix
  const exe = decodeAuditPathKey(new DataView(compiled.entries.find((e) => e.map === 'exe_rules')!.key.buffer), 0)
  assert.deepEqual([exe.prefixlen, exe.path], [('/usr/bin/cron'.length + 1) * 8, '/usr/bin/cron'])
  const path = decodeAuditPathKey(new DataView(compiled.entries.find((e) => e.map === 'path_rules')!.key.buffer), 0)
  assert.deepEqual([path.prefixlen, path.path], [5 * 8, '/tmp/'])
})

test('a path prefix carries the bits of the shorter prefixes it extends, since the trie answers with the longest only', () => {
  const compiled = compileRules(['unlink'], [{ path_prefix: '/tmp/' }, { path_prefix: ['/tmp/a/', '/var/'] }, { path_prefix: '/tmp/a/b/' }], ['/etc/shadow', '/root/.ssh/'])
  const byPath = new Map(compiled.entries.map((e) => [decodeAuditPathKey(new DataView(e.key.buffer), 0).path, bitsOf(e.value)]))
  assert.deepEqual([...byPath], [['/tmp/', 0b001n], ['/tmp/a/', 0b011n], ['/var/', 0b010n], ['/tmp/a/b/', 0b111n]])
  assert.deepEqual(compiled.sensitive.map((k) => decodeAuditPathKey(new DataView(k.buffer), 0)), [{ prefixlen: 11 * 8, path: '/etc/shadow' }, { prefixlen: 11 * 8, path: '/root/.ssh/' }])
})

test('no rules: every kind named is on and nothing is filtered; no events: nothing is on', () => {
  const all = ruleset(compileRules(rules.auditEventNames, [], []))
  assert.equal(all.kinds, 0b111111111110)
  assert.deepEqual(all.kind_rules, new Array(16).fill(0))
  assert.equal(ruleset(compileRules([], [], [])).kinds, 0)
})

test('a bad config is refused with what to write instead', () => {
  const refuses = (events: string[], list: unknown[], sensitive: string[], message: RegExp) => assert.throws(() => compileRules(events, list, sensitive), message)
  refuses(['execve', 'exec'], [], [], /events names "exec", which is not an audit event; use execve, unlink/)
  refuses([], [{ event: ['execve'] }], [], /rules\[0\] has an unknown key "event"/)
  refuses([], [{ events: ['open'] }, { path_prefix: 'tmp/' }], [], /rules\[1\] names the path "tmp\/"; paths are absolute/)
  refuses([], [{ comm: 'a-very-long-command' }], [], /rules\[0\]\.comm "a-very-long-command" is longer than the kernel's 15-byte/)
  refuses([], [{ uid: [] }], [], /rules\[0\]\.uid is an empty list/)
  refuses([], [{ uid: -1 }], [], /rules\[0\]\.uid must be a non-negative integer/)
  refuses([], [{ action: 'drop' }], [], /rules\[0\]\.action must be exclude or include/)
  refuses([], new Array(65).fill({ uid: 1 }), [], /65 rules, but the kernel side holds at most 64/)
  refuses([], [], ['etc/shadow'], /sensitive_paths\[0\] must be an absolute path/)
  refuses([], [{ path_prefix: `/${'x'.repeat(255)}` }], [], /is 256 bytes; the kernel compares at most 255/)
})

test('errno names are this platform\'s', () => {
  const names = Object.entries(errnoNames)
  const platform = constants.errno as Record<string, number>
  // libuv's table (os.constants.errno) leaves these two out
  assert.deepEqual(names.filter(([, name]) => platform[name] === undefined).map(([, name]) => name), ['ENOTBLK', 'EHOSTDOWN'])
  assert.equal(names.length, 68)
  for (const [errno, name] of names) if (platform[name] !== undefined) assert.equal(platform[name], Number(errno), name)
  assert.equal(errnoName(13), 'EACCES')
  assert.equal(errnoName(4095), '4095')
})

test('secrets in argv are masked by the default patterns, and only they', () => {
  const patterns = compileSecretPatterns(defaultSecretPatterns)
  const cases: [string[], string[]][] = [
    [['mysql', '--password=hunter2', '-u', 'root'], ['mysql', '--password=REDACTED', '-u', 'root']],
    [['app', '--api-key', 'abc123', '--verbose'], ['app', '--api-key', 'REDACTED', '--verbose']],
    [['env', 'DB_PASSWORD=x y', 'run'], ['env', 'DB_PASSWORD=REDACTED y', 'run']],
    [['curl', '-H', 'Authorization: Bearer eyJ', 'https://alice:pw@example.com/a'], ['curl', '-H', 'Authorization: REDACTED', 'https://alice:REDACTED@example.com/a']],
    [['sh', '-c', 'curl -H "Cookie: a=b" x --token t\nls'], ['sh', '-c', 'curl -H "Cookie: REDACTED" x --token REDACTED\nls']],
    [['ls', '-la', '/etc/passwords'], ['ls', '-la', '/etc/passwords']],
    [['--password'], ['--password']],
  ]
  for (const [argv, masked] of cases) assert.deepEqual(maskSecrets(argv, patterns), masked, argv.join(' '))
  const untouched = ['git', 'status']
  assert.equal(maskSecrets(untouched, patterns), untouched)
})

test('configured secret patterns mask their first group, or the whole match, and can span arguments', () => {
  const patterns = compileSecretPatterns(['(?:^|\\0)-p([^\\0\\s]+)', 'sk_live_[a-z0-9]+', '--pin\\0(\\d+)'])
  assert.deepEqual(maskSecrets(['mysql', '-phunter2', 'key=sk_live_abc123', '--pin', '1234'], patterns), ['mysql', '-pREDACTED', 'key=REDACTED', '--pin', 'REDACTED'])
  // a match that runs over several arguments masks each piece
  assert.deepEqual(maskSecrets(['a', 'secret', 'b', 'c'], compileSecretPatterns(['secret\\0b'])), ['a', 'REDACTED', 'REDACTED', 'c'])
  assert.throws(() => compileSecretPatterns(['(unclosed']), /secret_patterns\[0\] is not a valid regular expression/)
})
