import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { after, before, test } from 'node:test'
import { decodeExecEvent, type ExecEvent } from '../../bpf/lib/exec.types.ts'
import { forEachRecord } from '../../runtime/bpf/batch.ts'
import { openLibraryObject, type LibraryObject } from '../../runtime/library/index.ts'
import { waitFor } from './kernel.ts'

// the exec object filters to this process and its descendants, so parallel tests do not interfere
let exec: LibraryObject
const events: ExecEvent[] = []

before(async () => {
  exec = await openLibraryObject('exec', { settings: { target_tgid: process.pid } })
  exec.subscribe('events', (batch) => forEachRecord(batch, (view, offset, size) => events.push(decodeExecEvent(view, offset, size))))
})
after(() => exec.close())

test('an exec of a known binary arrives with its exact argv, filename and parent', async () => {
  const args = ['periscope', 'argv with spaces', '', 'ünïcode', '--flag=1']
  const child = spawnSync('/bin/echo', args)
  assert.equal(child.status, 0)
  await waitFor(() => events.some((e) => e.kind === 1 && e.filename === '/bin/echo' && e.args[1] === 'periscope'), 'the exec event')
  const e = events.find((e) => e.kind === 1 && e.filename === '/bin/echo')!
  assert.deepEqual(e.args, ['/bin/echo', ...args])
  assert.equal(e.comm, 'echo')
  assert.equal(e.ppid, process.pid)
  assert.equal(e.uid, 0)
  assert.equal(e.args_truncated, 0)
  assert.ok(e.pid > 0 && e.pid === e.tid)
})

test('a second exec is told apart by its argv', async () => {
  spawnSync('/bin/echo', ['alpha', 'ünïcode', '--flag=1'])
  await waitFor(() => events.some((e) => e.kind === 1 && e.args[1] === 'alpha'), 'the exec event')
  const e = events.find((e) => e.kind === 1 && e.args[1] === 'alpha')!
  assert.deepEqual(e.args, ['/bin/echo', 'alpha', 'ünïcode', '--flag=1'])
})

test('an exit event carries the exit code and a lifetime', async () => {
  const child = spawnSync('/bin/sh', ['-c', 'sleep 0.05; exit 7'])
  assert.equal(child.status, 7)
  await waitFor(() => events.some((e) => e.kind === 2 && e.pid === child.pid), 'the exit event')
  const exit = events.find((e) => e.kind === 2 && e.pid === child.pid)!
  assert.equal(exit.exit_code, 7)
  assert.ok(exit.duration_ns >= 50_000_000, `lived ${exit.duration_ns} ns, expected ≥ 50 ms`)
  assert.equal(exit.filename, '')
})

test('very long argv is cut and flagged, never overflowing the record', async () => {
  const long = 'x'.repeat(3000)
  spawnSync('/bin/echo', ['truncate-me', long])
  await waitFor(() => events.some((e) => e.kind === 1 && e.args[1] === 'truncate-me'), 'the exec event')
  const e = events.find((e) => e.kind === 1 && e.args[1] === 'truncate-me')!
  assert.equal(e.args_truncated, 1)
  assert.equal(e.args.length, 3)
  assert.equal(e.args_size, 1023)
  assert.equal(e.args[2], 'x'.repeat(1023 - '/bin/echo\0truncate-me\0'.length))
  assert.equal(exec.stats().dropped, 0)
})

test('descendants are followed: a grandchild, a great-grandchild, and an orphan whose parent exited before it ran', async () => {
  const execOf = (marker: string) => events.find((e) => e.kind === 1 && e.args[1] === marker)
  const grandchild = spawnSync('/bin/sh', ['-c', 'sh -c "exec /bin/echo grandchild-marker"'])
  assert.equal(grandchild.status, 0)
  await waitFor(() => execOf('grandchild-marker') !== undefined, 'the grandchild exec event')
  assert.equal(execOf('grandchild-marker')!.ppid, grandchild.pid, 'a grandchild: its parent is the outer shell, our child')

  spawnSync('/bin/sh', ['-c', 'sh -c "sh -c \\"exec /bin/echo great-grandchild-marker\\"; exit 0"; exit 0'])
  await waitFor(() => execOf('great-grandchild-marker') !== undefined, 'the great-grandchild exec event')

  // the subshell waits until its parent shell is gone, so it runs reparented (to init or a subreaper)
  const orphanParent = spawnSync('/bin/sh', ['-c', '(while kill -0 $$ 2>/dev/null; do sleep 0.01; done; exec /bin/echo orphan-marker) & exit 0'], { stdio: 'ignore' })
  assert.equal(orphanParent.status, 0)
  await waitFor(() => execOf('orphan-marker') !== undefined, 'the orphan exec event')
  assert.notEqual(execOf('orphan-marker')!.ppid, orphanParent.pid, 'the orphan was reparented before it ran')
  assert.equal(exec.stats().dropped, 0)
})

/** Pids of the processes whose parent is `pid`. */
function childrenOf(pid: number): number[] {
  return readdirSync('/proc').filter((name) => /^\d+$/.test(name)).flatMap((name) => {
    try {
      // the parent pid is the second field after the parenthesised comm
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid ? [Number(name)] : []
    } catch {
      return [] // exited while we looked
    }
  })
}

test('only the target and its descendants are reported, including one forked before the object loaded', async () => {
  // the target shell's grandchild waits on the shared stdin, then becomes echo: a descendant older than the object
  const shell = spawn('/bin/sh', ['-c', 'sh -c "$MIDDLE"; read line; /bin/echo from-target-marker'], {
    stdio: ['pipe', 'ignore', 'ignore'],
    env: { ...process.env, MIDDLE: 'sh -c "$LEAF"; exit 0', LEAF: 'read line; exec /bin/echo older-grandchild-marker' },
  })
  const seen: ExecEvent[] = []
  let followShell: LibraryObject | undefined
  try {
    await waitFor(() => childrenOf(shell.pid!).flatMap(childrenOf).length === 1, 'the target shell\'s grandchild to start')
    followShell = await openLibraryObject('exec', { settings: { target_tgid: shell.pid! } })
    followShell.subscribe('events', (batch) => forEachRecord(batch, (view, offset, size) => seen.push(decodeExecEvent(view, offset, size))))
    spawnSync('/bin/echo', ['not-a-descendant-marker'])
    shell.stdin!.end('go\ngo\n')
    // one ring buffer delivers in order: the earlier exec would have arrived first
    await waitFor(() => seen.some((e) => e.kind === 1 && e.args[1] === 'from-target-marker'), 'the exec event of the target\'s last child')
    assert.deepEqual(seen.filter((e) => e.kind === 1).map((e) => e.args[1]), ['older-grandchild-marker', 'from-target-marker'])
  } finally {
    shell.kill()
    await followShell?.close()
  }
})
