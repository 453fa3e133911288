// The audit object on the real kernel, its rule maps written as the plugin's rule compiler writes
// them. Each test keeps only the pid of a shell it started (which execs what it tests, keeping
// its pid), so the host's other activity stays in the kernel and the object's received count is
// exactly the records the test expects:
//  - setpriv dropping to nobody gives its capset, setresuid, capset, setresgid and exec records,
//    with the ids asked for and held after; a uid rule drops the unlink rm then makes as nobody;
//  - rm -r resolves each name it unlinks through the directory fd it opened, and a failed unlink
//    is reported with its errno;
//  - a BPF program load (bpftool) gives the program's type, name and id.
import assert from 'node:assert/strict'
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { decodeAuditEvent, type AuditEvent } from '../../bpf/lib/audit.types.ts'
import { formatAddress } from '../../runtime/protocols/sockdata.ts'
import { forEachRecord } from '../../runtime/bpf/batch.ts'
import { openLibraryObject, type LibraryObject } from '../../runtime/library/index.ts'
import { AUDIT_FLAG_PRIVILEGE_GAIN, auditEventNames, auditKinds, auditSyscallNames, compileRules, type RuleMap } from '../../plugins/audit/rules.ts'
import { compileFixture, root, waitFor } from './kernel.ts'

let audit: LibraryObject
const events: AuditEvent[] = []
let dir: string
let helper: string
const ruleMaps: RuleMap[] = ['uid_rules', 'comm_rules', 'pid_rules', 'ns_rules', 'exe_rules', 'path_rules']

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'periscope-audit-'))
  // nobody (setpriv's test) must reach a directory in it
  execFileSync('chmod', ['755', dir])
  helper = join(dir, 'audit-actions')
  execFileSync('cc', ['-O2', '-Wall', '-o', helper, join(root, 'test/e2e/fixtures/audit-actions.c')])
  audit = await openLibraryObject('audit')
  audit.subscribe('events', (batch) => forEachRecord(batch, (view, offset, size) => {
    const event = decodeAuditEvent(view, offset, size)
    // the addresses are views of the batch, which is gone after this call
    events.push({ ...event, local_addr: event.local_addr.slice(), peer_addr: event.peer_addr.slice() })
  }))
})
after(async () => {
  await audit?.close()
  rmSync(dir, { recursive: true, force: true })
})

/** Replaces the object's rules, as a new version of the plugin would. */
function setRules(rules: unknown[], kinds: readonly string[] = auditEventNames, sensitive: readonly string[] = []): void {
  for (const map of [...ruleMaps, 'sensitive_paths']) for (const [key] of [...audit.map(map).entries()]) audit.map(map).delete(key)
  const compiled = compileRules(kinds, rules, sensitive)
  for (const key of compiled.sensitive) audit.map('sensitive_paths').update(key, new Uint8Array([1]))
  for (const entry of compiled.entries) audit.map(entry.map).update(entry.key, entry.value)
  audit.map('ruleset').update(new Uint8Array(4), compiled.ruleset)
}

/**
 * Starts `sh -c 'read go; <command>'`, keeps only its pid's events, lets it run and returns its
 * pid and records once it exited and its last record (`last`) arrived.
 */
async function runKept(command: string, rules: (pid: number) => unknown[], last: (e: AuditEvent) => boolean, status = 0, kinds?: readonly string[], sensitive?: readonly string[]): Promise<{ pid: number; records: AuditEvent[]; received: number }> {
  const shell = spawn('/bin/sh', ['-c', `read go; ${command}`], { cwd: dir, stdio: ['pipe', 'ignore', 'inherit'] })
  const pid = shell.pid!
  const exited = new Promise<number | null>((resolve) => shell.once('exit', resolve))
  // the rules name it once it runs the shell: its own exec is not part of the test
  await waitFor(() => { try { return readlinkSync(`/proc/${pid}/exe`) === '/usr/bin/dash' } catch { return false } }, 'the shell to start', 10_000)
  setRules(rules(pid), kinds, sensitive)
  const receivedBefore = audit.stats().received
  shell.stdin.end('go\n')
  assert.equal(await exited, status)
  await waitFor(() => { audit.drainStreams(); return events.some((e) => e.pid === pid && last(e)) }, `the last record of ${command}`, 10_000)
  return { pid, records: events.filter((e) => e.pid === pid), received: audit.stats().received - receivedBefore }
}

const summary = (e: AuditEvent): string => `${Object.entries(auditKinds).find(([, k]) => k === e.kind)![0]}/${auditSyscallNames[e.syscall]} ${e.comm} ${e.uid}/${e.euid} ${e.ret}`

test('setpriv dropping to nobody: its id and capability changes with the ids asked for; a uid rule drops its unlink as nobody', async () => {
  const shared = join(dir, 'shared')
  mkdirSync(shared, { mode: 0o777 })
  execFileSync('chmod', ['777', shared])
  writeFileSync(join(shared, 'victim'), '')
  const { records, received } = await runKept(
    `exec setpriv --reuid 65534 --regid 65534 --clear-groups /bin/rm ${shared}/victim`,
    (pid) => [{ action: 'include', pid }, { events: ['unlink'], uid: 65534 }],
    (e) => e.kind === auditKinds.execve && e.comm === 'rm')
  assert.equal(existsSync(join(shared, 'victim')), false, 'rm deleted the file')
  assert.deepEqual(records.map(summary), [
    'execve/execve setpriv 0/0 0',
    'setuid/capset setpriv 0/0 0',
    'setuid/setresuid setpriv 65534/65534 0',
    'setuid/capset setpriv 65534/65534 0',
    'setuid/setresgid setpriv 65534/65534 0',
    'execve/execve rm 65534/65534 0',
  ])
  const setresuid = records[2]!
  assert.deepEqual([setresuid.arg0, setresuid.arg1, setresuid.arg2], [65534, 65534, 65534])
  assert.deepEqual([records[4]!.gid, records[4]!.egid], [65534, 65534])
  // setpriv keeps every capability through the change (it clears them at exec): effective = permitted, no inheritable
  const capset = records[1]!
  assert.ok(capset.arg0 > 0 && capset.arg0 === capset.arg1 && capset.arg2 === 0, `capset asked for ${capset.arg0.toString(16)} ${capset.arg1.toString(16)} ${capset.arg2.toString(16)}`)
  assert.deepEqual(records[5]!.args, ['/bin/rm', `${shared}/victim`])
  assert.equal(received, 6, 'the unlink by nobody never reached the ring')
})

test('rm -r: names unlinked through a directory fd are made absolute from it', async () => {
  const tree = join(dir, 'tree')
  mkdirSync(join(tree, 'sub'), { recursive: true })
  writeFileSync(join(tree, 'sub', 'a'), '')
  writeFileSync(join(tree, 'b'), '')
  const { records, received } = await runKept(`cd ${dir} && exec rm -r tree`, (pid) => [{ action: 'include', pid }, { events: ['execve'] }], (e) => e.kind === auditKinds.unlink && e.path === tree)
  const unlinks = records.map((e) => [auditKinds.unlink === e.kind, auditSyscallNames[e.syscall], e.path, e.arg0, e.ret])
  assert.deepEqual(unlinks.sort(), [
    [true, 'unlinkat', tree, 0x200, 0],
    [true, 'unlinkat', join(tree, 'b'), 0, 0],
    [true, 'unlinkat', join(tree, 'sub'), 0x200, 0],
    [true, 'unlinkat', join(tree, 'sub', 'a'), 0, 0],
  ].sort())
  assert.equal(received, 4)
})

test('a failed unlink is reported with its errno, its relative path made absolute from the working directory', async () => {
  const { records, received } = await runKept(`cd ${dir} && exec ${helper} unlink missing`, (pid) => [{ action: 'include', pid }], (e) => e.kind === auditKinds.unlink, 1)
  assert.deepEqual(records.map((e) => [auditSyscallNames[e.syscall], e.path, e.ret, e.comm]), [['execve', helper, 0, 'audit-actions'], ['unlink', join(dir, 'missing'), -2, 'audit-actions']])
  assert.equal(received, 2)
})

test('a BPF program load gives its type, name and id', async () => {
  const object = compileFixture('settings')
  const pinned = join('/sys/fs/bpf', `periscope-audit-${process.pid}`)
  try {
    const { records, received } = await runKept(`exec bpftool prog loadall ${object} ${pinned}`, (pid) => [{ action: 'include', pid }, { events: ['execve'] }], (e) => e.kind === auditKinds.bpf && e.path2 === 'report')
    // bpftool probes the kernel with loads of its own first: the fixture's program is the one named report
    const loads = records.filter((e) => e.kind === auditKinds.bpf && e.path2 === 'report')
    assert.equal(loads.length, 1, records.map(summary).join('\n'))
    const id = Number(/^(\d+):/.exec(execFileSync('bpftool', ['prog', 'show', 'pinned', join(pinned, 'report')]).toString())![1])
    // BPF_PROG_TYPE_SYSCALL is 31; the kernel keeps 15 bytes of the name
    assert.deepEqual([loads[0]!.arg0, loads[0]!.arg1, loads[0]!.ret > 0], [31, id, true])
    assert.ok(records.every((e) => e.kind === auditKinds.bpf), 'only loads are kept')
    assert.equal(received, records.length)
  } finally {
    rmSync(pinned, { recursive: true, force: true })
  }
})

test('with only setuid on, an exec that gains privileges is reported with the id changes, and no other exec', async () => {
  const suid = join(dir, 'suid-helper')
  execFileSync('cp', [helper, suid])
  execFileSync('chmod', ['4755', suid])
  const { records, received } = await runKept(`exec ${helper} drop-and-exec ${suid} suid-helper ids`, (pid) => [{ action: 'include', pid }], (e) => e.kind === auditKinds.execve, 0, ['setuid'])
  assert.deepEqual(records.map(summary), ['setuid/setgid audit-actions 0/0 0', 'setuid/setuid audit-actions 65534/65534 0', 'execve/execve suid-helper 65534/0 0'])
  assert.equal(records[2]!.flags & AUDIT_FLAG_PRIVILEGE_GAIN, AUDIT_FLAG_PRIVILEGE_GAIN)
  assert.equal(records[2]!.path, suid)
  assert.equal(received, 3)
})

test('an IPv6 connect and accept give both ends\' addresses and ports', async () => {
  const out = join(dir, 'net6.out')
  const { records, received } = await runKept(`exec ${helper} net 6 > ${out}`, (pid) => [{ action: 'include', pid }, { events: ['execve'] }], (e) => e.kind === auditKinds.accept)
  const [, server, client] = /^ports (\d+) (\d+)$/m.exec(spawnSync('cat', [out]).stdout.toString())!.map(Number)
  const ends = records.map((e) => [auditSyscallNames[e.syscall], e.family, formatAddress(e.family, e.local_addr), e.local_port, formatAddress(e.family, e.peer_addr), e.peer_port, e.ret >= 0])
  assert.deepEqual(ends, [['connect', 10, '::1', client, '::1', server, true], ['accept', 10, '::1', server, '::1', client, true]])
  assert.equal(received, 2)
})

test('a relative open of a sensitive path is reported with its absolute path; the process\'s other opens are not', async () => {
  const { records, received } = await runKept('cd /etc && exec cat shadow hostname > /dev/null', (pid) => [{ action: 'include', pid }, { events: ['execve'] }], (e) => e.kind === auditKinds.open, 0, undefined, ['/etc/shadow', '/etc/sudoers'])
  assert.deepEqual(records.map((e) => [auditSyscallNames[e.syscall], e.path, e.arg0 & 3, e.ret > 0, e.comm]), [['openat', '/etc/shadow', 0, true, 'cat']])
  assert.equal(received, 1)
})

test('fchmod and fchown name the file of their fd; openat2 gives the flags of its open_how', async () => {
  const file = join(dir, 'perl-file')
  // 437 is openat2 on x86-64; -100 is AT_FDCWD; open_how is { flags, mode, resolve }
  const script = `open(my $f, ">", "${file}") or die; chmod(0640, $f) or die; chown(65534, 65534, $f) or die; my $p = "/etc/shadow"; my $h = pack("QQQ", 0, 0, 0); syscall(437, -100, $p, $h, 24) >= 0 or die`
  const { records, received } = await runKept(`exec perl -e '${script}'`, (pid) => [{ action: 'include', pid }, { events: ['execve'] }], (e) => e.kind === auditKinds.open, 0, undefined, ['/etc/shadow'])
  assert.deepEqual(records.map((e) => [auditSyscallNames[e.syscall], e.path, e.arg0, e.arg1, e.ret >= 0]), [
    ['fchmod', file, 0o640, 0, true],
    ['fchown', file, 65534, 65534, true],
    ['openat2', '/etc/shadow', 0, 0, true],
  ])
  assert.equal(received, 3)
})

test('strace\'s seizes are reported as ptrace attaches of their targets', async () => {
  const { records, received } = await runKept('exec strace -o /dev/null /bin/true', (pid) => [{ action: 'include', pid }, { events: ['execve'] }], (e) => e.kind === auditKinds.ptrace && events.filter((other) => other.pid === e.pid && other.kind === auditKinds.ptrace).length === 2)
  // strace first seizes a child of its own to test the kernel, then the child that runs /bin/true
  assert.deepEqual(records.map((e) => [auditSyscallNames[e.syscall], e.arg0, e.ret]), [['ptrace', 0x4206, 0], ['ptrace', 0x4206, 0]])
  assert.notEqual(records[0]!.arg1, records[1]!.arg1)
  assert.equal(received, 2)
})
