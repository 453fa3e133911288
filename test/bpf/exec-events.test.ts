import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { after, before, test } from 'node:test'
import { decodeExecEvent, type ExecEvent } from '../../bpf/lib/exec.types.ts'
import { forEachRecord } from '../../runtime/bpf/batch.ts'
import { openLibraryObject, type LibraryObject } from '../../runtime/library/index.ts'
import { waitFor } from './kernel.ts'

// the exec object filters to this process and its children, so parallel tests do not interfere
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
