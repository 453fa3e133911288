/**
 * The syscalls object on the real kernel: a workload of known syscalls (test/bpf/fixtures/
 * syscall-workload.c) gives exactly those counts per process and syscall and by errno, and a
 * process's last counts leave on the `retired` ring when it exits or execs, its entries gone.
 */
import assert from 'node:assert/strict'
import { execFileSync, spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { decodeSyscallRetired, mapCodecs, type SyscallRetired } from '../../bpf/lib/syscalls.types.ts'
import { forEachRecord } from '../../runtime/bpf/batch.ts'
import { syscallNames } from '../../runtime/kernel/syscall-table.ts'
import { openLibraryObject, type LibraryObject } from '../../runtime/library/index.ts'
import { SYSCALLS_RETIRE_EXEC, SYSCALLS_RETIRE_EXIT } from '../../runtime/protocols/syscalls.ts'
import { root, waitFor } from './kernel.ts'

const ENOENT = 2
/** comm is the executable's name cut to 15 bytes */
const workloadComm = 'syscall-workloa'

/** Starts the workload fixture and resolves once it waits for its first line. */
async function startWorkload(binary: string, args: string[]): Promise<{ child: ChildProcessWithoutNullStreams; output: () => string; exited: Promise<number | null> }> {
  const child = spawn(binary, args)
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
  await waitFor(() => output.includes('ready\n'), 'the workload to start', 10_000)
  return { child, output: () => output, exited }
}

describe('the syscalls object', { timeout: 120_000 }, () => {
  let dir: string
  let binary: string
  let object: LibraryObject
  let names: string[]
  const retired: SyscallRetired[] = []

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'periscope-syscalls-'))
    binary = join(dir, 'syscall-workload')
    execFileSync('cc', ['-O2', '-Wall', '-o', binary, join(root, 'test/bpf/fixtures/syscall-workload.c')])
    names = await syscallNames()
    object = await openLibraryObject('syscalls', { log: () => {} })
    object.subscribe('retired', (batch) => forEachRecord(batch, (view, offset, size) => { retired.push(decodeSyscallRetired(view, offset, size)) }))
  })

  after(async () => {
    await object?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  /** A process's [calls, errors] of one syscall in the `calls` map (0, 0 without an entry). */
  function countsOf(tgid: number, name: string): [number, number] {
    const { key, value } = mapCodecs.calls
    const bytes = new Uint8Array(key.size)
    key.encode({ tgid, nr: names.indexOf(name) }, new DataView(bytes.buffer), 0)
    const found = object.map('calls').lookup(bytes)
    if (found === undefined) return [0, 0]
    const counts = value.decode(new DataView(found.buffer, found.byteOffset, found.byteLength), 0)
    return [counts.calls, counts.errors]
  }

  function failuresByErrno(name: string, errno: number): number {
    const { key, value } = mapCodecs.errors
    const bytes = new Uint8Array(key.size)
    key.encode({ nr: names.indexOf(name), error: errno }, new DataView(bytes.buffer), 0)
    const found = object.map('errors').lookup(bytes)
    return found === undefined ? 0 : value.decode(new DataView(found.buffer, found.byteOffset, found.byteLength), 0)
  }

  function entriesOf(tgid: number): number {
    let count = 0
    for (const [key] of object.map('calls').entries()) if (new DataView(key.buffer, key.byteOffset).getUint32(0, true) === tgid) count++
    for (const [key] of object.map('processes').entries()) if (new DataView(key.buffer, key.byteOffset).getUint32(0, true) === tgid) count++
    return count
  }

  it('counts exactly 2500 getppid and 37 openat failing with ENOENT of a process, and its last counts leave when it exits', async () => {
    const workload = await startWorkload(binary, ['count', '2500', '37'])
    const pid = workload.child.pid!
    const [openatBefore, openatErrorsBefore] = countsOf(pid, 'openat')
    const enoentBefore = failuresByErrno('openat', ENOENT)
    assert.deepEqual(countsOf(pid, 'getppid'), [0, 0])
    workload.child.stdin.write('go\n')
    await waitFor(() => workload.output().includes('done\n'), 'the workload to run', 30_000)
    assert.deepEqual(countsOf(pid, 'getppid'), [2500, 0])
    const [openat, openatErrors] = countsOf(pid, 'openat')
    assert.equal(openat - openatBefore, 37)
    assert.equal(openatErrors - openatErrorsBefore, 37)
    // host-wide: other processes may fail to open files meanwhile
    assert.ok(failuresByErrno('openat', ENOENT) - enoentBefore >= 37)

    const [openatAtEnd, openatErrorsAtEnd] = countsOf(pid, 'openat')
    workload.child.stdin.write('go\n')
    assert.equal(await workload.exited, 0)
    const has = (name: string) => retired.some((r) => r.tgid === pid && r.nr === names.indexOf(name))
    await waitFor(() => has('getppid') && has('openat') && entriesOf(pid) === 0, 'the retired records of the workload, and its entries gone')
    // the child's calls between fork and exec were its parent's image's, retired at the exec
    assert.ok(retired.some((r) => r.tgid === pid && r.reason === SYSCALLS_RETIRE_EXEC && r.comm !== workloadComm))
    const ofPid = retired.filter((r) => r.tgid === pid && r.reason === SYSCALLS_RETIRE_EXIT)
    assert.ok(ofPid.every((r) => r.comm === workloadComm))
    // one record per syscall it made
    assert.equal(new Set(ofPid.map((r) => r.nr)).size, ofPid.length)
    const getppid = ofPid.find((r) => r.nr === names.indexOf('getppid'))!
    assert.deepEqual([getppid.calls, getppid.errors], [2500, 0])
    const openatRecord = ofPid.find((r) => r.nr === names.indexOf('openat'))!
    assert.deepEqual([openatRecord.calls, openatRecord.errors], [openatAtEnd, openatErrorsAtEnd])
    // exit_group never returns, so it is never counted
    assert.equal(ofPid.find((r) => r.nr === names.indexOf('exit_group')), undefined)
    assert.equal(object.object.dropped(), 0)
  })

  it('retires a process\'s counts at exec under its old name, and counts the new image from zero', async () => {
    const workload = await startWorkload(binary, ['count', '300', '0', 'exec', '/bin/true'])
    const pid = workload.child.pid!
    workload.child.stdin.write('go\n')
    await waitFor(() => workload.output().includes('done\n'), 'the workload to run', 30_000)
    workload.child.stdin.write('go\n')
    assert.equal(await workload.exited, 0)
    await waitFor(() => retired.some((r) => r.tgid === pid && r.reason === SYSCALLS_RETIRE_EXIT && r.nr === names.indexOf('execve')) && entriesOf(pid) === 0,
      'the exit records of /bin/true, and its entries gone')
    const beforeExec = retired.filter((r) => r.tgid === pid && r.reason === SYSCALLS_RETIRE_EXEC && r.comm === workloadComm)
    const afterExec = retired.filter((r) => r.tgid === pid && r.reason === SYSCALLS_RETIRE_EXIT)
    assert.ok(beforeExec.length > 0)
    assert.deepEqual(beforeExec.filter((r) => r.nr === names.indexOf('getppid')).map((r) => r.calls), [300])
    // an execve returns in the new image: the one that started the workload is the workload's,
    // the one that started /bin/true is true's
    assert.deepEqual(beforeExec.filter((r) => r.nr === names.indexOf('execve')).map((r) => r.calls), [1])
    assert.ok(afterExec.every((r) => r.comm === 'true'))
    assert.deepEqual(afterExec.filter((r) => r.nr === names.indexOf('execve')).map((r) => r.calls), [1])
    assert.equal(afterExec.find((r) => r.nr === names.indexOf('getppid')), undefined)
    // each image's records carry its entry's creation time, which tells the images of a pid apart
    const created = (records: SyscallRetired[]) => [...new Set(records.map((r) => r.created_ns))]
    assert.equal(created(beforeExec).length, 1)
    assert.equal(created(afterExec).length, 1)
    assert.ok(created(afterExec)[0]! > created(beforeExec)[0]!)
  })

  it('keeps entries of live processes only: 300 short-lived processes leave none behind', async () => {
    const pids: number[] = []
    for (let i = 0; i < 300; i++) {
      const child = spawnSync('/bin/true')
      assert.equal(child.status, 0)
      pids.push(child.pid!)
    }
    await waitFor(() => pids.every((pid) => entriesOf(pid) === 0), 'the entries of 300 exited processes to go', 30_000)
    // every entry left is a process that still runs (or one exiting this very moment)
    const tgids = new Set<number>()
    for (const [key] of object.map('calls').entries()) tgids.add(new DataView(key.buffer, key.byteOffset).getUint32(0, true))
    for (const [key] of object.map('processes').entries()) tgids.add(new DataView(key.buffer, key.byteOffset).getUint32(0, true))
    const gone = [...tgids].filter((tgid) => !existsSync(`/proc/${tgid}`))
    assert.ok(gone.length <= 2, `entries of processes that no longer exist: ${gone.join(', ')}`)
    assert.equal(object.object.dropped(), 0)
  })
})
