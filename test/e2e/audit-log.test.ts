// The audit plugin end to end: `periscope run` with only it, exporting to a real Collector. A
// script runs in a pid namespace of its own, which one include rule keeps (every other process on
// the host is dropped in the kernel): it runs known programs with known arguments (secrets among
// them), renames, chmods, chowns and deletes a file, opens /etc/shadow, calls setgid/setuid as
// root and execs a setuid-root copy of the helper as nobody, connects to and accepts from a
// loopback listener, ptraces a child, and runs programs from a memfd and from a deleted file.
// Every action arrives exactly once with its attributes, and the object's received count equals
// the number of records. Then actions that exclude rules match (by path prefix, executable, comm,
// and namespace) leave the received count where it was: they never left the kernel.
import assert from 'node:assert/strict'
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { connectAdmin, type AdminClient } from '../../runtime/admin/client.ts'
import { attributesOf, flatten, startCollector, type Collector } from '../peers/otelcol.ts'
import { startPeriscope, type Periscope } from '../peers/periscope.ts'
import { pollUntil } from '../peers/poll.ts'

type Json = Record<string, unknown>

const root = fileURLToPath(new URL('../../', import.meta.url))

interface LogRecord {
  eventName: string
  severity: string
  body: string
  attributes: Record<string, unknown>
}

function logsOf(lines: readonly Json[]): LogRecord[] {
  return flatten('logs', lines).filter((l) => l.scope.name === 'audit').map(({ item }) => ({
    eventName: item.eventName as string,
    severity: item.severityText as string,
    body: (item.body as { stringValue?: string } | undefined)?.stringValue ?? '',
    attributes: attributesOf(item.attributes),
  }))
}

/** A process that holds a new pid namespace open (sleeping as its pid 1); its namespace's inode. */
async function startNamespace(): Promise<{ holder: ChildProcess; target: number; inode: number }> {
  const holder = spawn('unshare', ['--pid', '--fork', '--kill-child', 'sleep', 'infinity'], { stdio: 'ignore' })
  let target = 0
  await pollUntil(() => {
    const children = `/proc/${holder.pid}/task/${holder.pid}/children`
    target = existsSync(children) ? Number(readFileSync(children, 'utf8').trim() || 0) : 0
    // the child is in the new namespace once it runs sleep
    return target > 0 && readFileSync(`/proc/${target}/comm`, 'utf8').trim() === 'sleep'
  }, { what: 'unshare to start its child in a new pid namespace', timeoutMs: 10_000 })
  return { holder, target, inode: statSync(`/proc/${target}/ns/pid`).ino }
}

describe('the audit log through a real Collector, filtered in the kernel', { timeout: 600_000 }, () => {
  let collector: Collector
  let periscope: Periscope
  let admin: AdminClient
  let namespace: Awaited<ReturnType<typeof startNamespace>>
  let dir: string
  let helper: string
  const sentinel = `sentinel-${randomBytes(4).toString('hex')}`

  /** Runs argv in the test's pid namespace (nsenter forks into it; nsenter itself stays outside). */
  const inNamespace = (argv: string[]): string => execFileSync('nsenter', ['--target', String(namespace.target), '--pid', '--', ...argv], { cwd: dir }).toString()

  const received = async (): Promise<number> => {
    const stats = await admin.request<{ objects: { name: string; received: number }[] }>('stats')
    return stats.objects.find((o) => o.name === 'audit')!.received
  }

  const namespaceLogs = (lines: readonly Json[]): LogRecord[] => logsOf(lines).filter((r) => r.attributes['process.pid_namespace'] === namespace.inode)

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'periscope-audit-'))
    // nobody must be able to reach the setuid copy
    execFileSync('chmod', ['755', dir])
    helper = join(dir, 'audit-actions')
    execFileSync('cc', ['-O2', '-Wall', '-o', helper, join(root, 'test/e2e/fixtures/audit-actions.c')])
    copyFileSync(helper, join(dir, 'suid-helper'))
    execFileSync('chmod', ['4755', join(dir, 'suid-helper')])
    copyFileSync(helper, join(dir, 'pswl-unlinker'))
    copyFileSync(helper, join(dir, 'pswl-quiet'))
    execFileSync('chmod', ['755', join(dir, 'pswl-unlinker'), join(dir, 'pswl-quiet')])
    mkdirSync(join(dir, 'excluded'))
    namespace = await startNamespace()
    collector = await startCollector()
    periscope = await startPeriscope({
      endpoint: collector.httpEndpoint,
      shipped: ['audit'],
      ready: /running 1 of \d+ plugins/,
      config: {
        plugins: {
          audit: {
            config: {
              rules: [
                { action: 'include', namespace: namespace.inode },
                { events: ['unlink'], path_prefix: `${dir}/excluded/` },
                { events: ['execve'], executable: join(dir, 'pswl-unlinker') },
                { comm: 'pswl-quiet' },
              ],
            },
          },
        },
        exporter: { batch: { intervalMs: 200 } },
      },
    })
    await periscope.waitForOutput(/plugin audit: auditing/, 'the audit plugin to start')
    admin = await connectAdmin(join(periscope.dir, 'admin.sock'))
  })

  after(async () => {
    admin?.close()
    await periscope?.stop()
    await collector?.stop()
    namespace?.holder.kill('SIGKILL')
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
  })

  it('reports every action of the script exactly once, with its attributes, and nothing else reaches the ring', async () => {
    assert.equal(await received(), 0, 'nothing ran in the namespace yet')
    const script = [
      'set -e',
      "/usr/bin/env /bin/true --password=hunter2 --token abc 'Authorization: Bearer xyz'",
      'touch f1',
      'mv f1 f2',
      'chmod 640 f2',
      'chown 65534:65534 f2',
      'rm f2',
      'cat /etc/shadow > /dev/null',
      `${helper} drop-and-exec ${dir}/suid-helper suid-helper ids`,
      `${helper} net`,
      `${helper} ptrace`,
      `${helper} memfd /bin/true`,
      `${helper} deleted /bin/true ${dir}/gone`,
    ].join('\n')
    const output = inNamespace(['/bin/sh', '-c', script])
    assert.match(output, /^ids 65534 0$/m)
    const [, serverPort, clientPort] = /^ports (\d+) (\d+)$/m.exec(output)!.map(Number)
    const tracedPid = Number(/^traced (\d+)$/m.exec(output)![1])

    const expectedTotal = 28
    const lines = await collector.waitFor('logs', (l) => namespaceLogs(l).length >= expectedTotal, 60_000)
    const logs = namespaceLogs(lines)
    const one = (eventName: string, match: Record<string, unknown>): LogRecord => {
      const found = logs.filter((r) => r.eventName === eventName && Object.entries(match).every(([k, v]) => JSON.stringify(r.attributes[k]) === JSON.stringify(v)))
      assert.equal(found.length, 1, `${eventName} ${JSON.stringify(match)}: ${found.length} records; all: ${JSON.stringify(logs.map((r) => r.body), null, 1)}`)
      return found[0]!
    }

    // the execs: 17, each with its argv as run (secrets masked), executable and working directory
    const execs = logs.filter((r) => r.eventName === 'audit.process.exec')
    assert.equal(execs.length, 17, JSON.stringify(execs.map((r) => r.body), null, 1))
    const shell = one('audit.process.exec', { 'process.executable.path': '/usr/bin/dash' })
    // secrets inside a script are masked word by word
    const maskedScript = script.replace('hunter2', 'REDACTED').replace('--token abc', '--token REDACTED').replace('Bearer xyz', 'REDACTED')
    assert.deepEqual(shell.attributes['process.command_args'], ['/bin/sh', '-c', maskedScript])
    const trueExec = one('audit.process.exec', { 'process.executable.path': '/usr/bin/true', 'process.executable.name': 'true' })
    assert.deepEqual(trueExec.attributes['process.command_args'], ['/bin/true', '--password=REDACTED', '--token', 'REDACTED', 'Authorization: REDACTED'])
    assert.equal(trueExec.attributes['process.working_directory'], dir)
    assert.equal(trueExec.attributes['process.parent_pid'], shell.attributes['process.pid'])
    assert.equal(trueExec.attributes['user.id'], 0)
    assert.equal(trueExec.attributes['audit.result'], 'success')
    for (const [name, args] of [['touch', ['touch', 'f1']], ['mv', ['mv', 'f1', 'f2']], ['chmod', ['chmod', '640', 'f2']], ['chown', ['chown', '65534:65534', 'f2']], ['rm', ['rm', 'f2']], ['cat', ['cat', '/etc/shadow']]] as const) {
      one('audit.process.exec', { 'process.executable.path': `/usr/bin/${name}`, 'process.command_args': args })
    }
    const gained = one('audit.process.exec', { 'process.executable.path': join(dir, 'suid-helper') })
    assert.deepEqual(gained.attributes['process.command_args'], ['suid-helper', 'ids'])
    assert.equal(gained.attributes['audit.privilege_gain'], true)
    assert.equal(gained.severity, 'WARN')
    assert.equal(gained.attributes['process.real_user.id'], 65534)
    assert.equal(gained.attributes['process.user.id'], 0)
    assert.equal(execs.filter((r) => r.attributes['audit.privilege_gain'] === true).length, 1)
    const memfd = one('audit.process.exec', { 'process.command_args': ['memfd-run'] })
    assert.equal(memfd.attributes['process.executable.path'], '/memfd:audit-test')
    assert.equal(memfd.attributes['process.executable.memfd'], true)
    assert.equal(memfd.attributes['process.executable.deleted'], undefined)
    const deleted = one('audit.process.exec', { 'process.command_args': ['deleted-run'] })
    assert.equal(deleted.attributes['process.executable.path'], join(dir, 'gone'))
    assert.equal(deleted.attributes['process.executable.deleted'], true)
    assert.equal(execs.filter((r) => r.attributes['process.executable.path'] === helper).length, 5)

    // files
    const renamed = one('audit.file.rename', {})
    assert.equal(renamed.attributes['file.path'], join(dir, 'f1'))
    assert.equal(renamed.attributes['file.new_path'], join(dir, 'f2'))
    assert.equal(renamed.attributes['process.executable.name'], 'mv')
    assert.equal(one('audit.file.mode_change', {}).attributes['file.mode'], '0640')
    const chown = one('audit.file.owner_change', {})
    assert.deepEqual([chown.attributes['file.path'], chown.attributes['file.owner.id'], chown.attributes['file.group.id']], [join(dir, 'f2'), '65534', '65534'])
    assert.equal(one('audit.file.delete', { 'file.path': join(dir, 'f2') }).attributes['process.executable.name'], 'rm')
    assert.equal(one('audit.file.delete', { 'file.path': join(dir, 'gone') }).attributes['audit.syscall'], 'unlink')
    assert.equal(logs.filter((r) => r.eventName === 'audit.file.delete').length, 2)
    const shadow = one('audit.file.open', {})
    assert.deepEqual([shadow.attributes['file.path'], shadow.attributes['audit.open.access'], shadow.attributes['process.executable.name'], shadow.severity], ['/etc/shadow', 'read', 'cat', 'WARN'])

    // privileges: setgid then setuid, by the helper before it execs the setuid copy
    const setgid = one('audit.process.id_change', { 'audit.syscall': 'setgid' })
    assert.equal(setgid.attributes['audit.requested.group.id'], 65534)
    const setuid = one('audit.process.id_change', { 'audit.syscall': 'setuid' })
    assert.equal(setuid.attributes['audit.requested.user.id'], 65534)
    assert.equal(setuid.attributes['process.user.id'], 65534, 'the ids after the call')
    assert.equal(setuid.attributes['audit.result'], 'success')

    // network: the helper's connect and accept, with both ends
    const connect = one('audit.network.connect', {})
    assert.deepEqual(
      [connect.attributes['network.peer.address'], connect.attributes['network.peer.port'], connect.attributes['network.local.address'], connect.attributes['network.local.port'], connect.attributes['network.type']],
      ['127.0.0.1', serverPort, '127.0.0.1', clientPort, 'ipv4'])
    const accept = one('audit.network.accept', {})
    assert.deepEqual(
      [accept.attributes['network.peer.address'], accept.attributes['network.peer.port'], accept.attributes['network.local.address'], accept.attributes['network.local.port']],
      ['127.0.0.1', clientPort, '127.0.0.1', serverPort])

    const ptrace = one('audit.process.ptrace', {})
    assert.deepEqual([ptrace.attributes['audit.ptrace.request'], ptrace.attributes['audit.ptrace.target_pid']], ['attach', tracedPid])

    assert.equal(logs.length, expectedTotal)
    // the ring carried exactly these: the rest of the host was dropped in the kernel
    assert.equal(await received(), expectedTotal)
  })

  it('drops in the kernel what the exclude rules match: the received count does not move', async () => {
    const before = await received()
    writeFileSync(join(dir, 'excluded', 'a'), '')
    writeFileSync(join(dir, 'b'), '')
    writeFileSync(join(dir, 'c'), '')
    // exec excluded by executable, its unlink by path prefix
    inNamespace([join(dir, 'pswl-unlinker'), 'unlink', join(dir, 'excluded', 'a')])
    // everything of a comm: exec, unlink, connect, accept
    inNamespace([join(dir, 'pswl-quiet'), 'unlink', join(dir, 'b')])
    inNamespace([join(dir, 'pswl-quiet'), 'net'])
    // outside the namespace: exec and unlink of a process the include rule does not name
    execFileSync('rm', [join(dir, 'c')])
    for (const file of ['excluded/a', 'b', 'c']) assert.equal(existsSync(join(dir, file)), false, `${file} was deleted`)

    // a kept event after them: once it is in, anything they had sent would be too
    inNamespace(['/bin/true', sentinel])
    const lines = await collector.waitFor('logs', (l) => namespaceLogs(l).some((r) => JSON.stringify(r.attributes['process.command_args']) === JSON.stringify(['/bin/true', sentinel])), 60_000)
    assert.equal(await received(), before + 1)
    const all = logsOf(lines)
    assert.deepEqual(all.filter((r) => r.body.includes('pswl-') || r.body.includes(`${dir}/excluded`) || r.attributes['file.path'] === join(dir, 'b') || r.attributes['file.path'] === join(dir, 'c')), [])
  })
})
