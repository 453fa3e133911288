/**
 * The syscall_log object on the real kernel: only the target's calls leave the kernel, one record
 * each, with the path arguments `decode` names copied and nothing else read; a call that never
 * returns comes at its entry; the target leaves `targets` when it exits.
 */
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { forEachRecord } from '../../runtime/bpf/batch.ts'
import { syscallTable } from '../../runtime/kernel/syscall-table.ts'
import { openLibraryObject, type LibraryObject } from '../../runtime/library/index.ts'
import {
  decodeSyscallLogRecord, encodeSyscallLogDecode, returnsNever, stringArguments, SYSCALL_LOG_DECODE_SIZE, SYSCALL_LOG_NO_RETURN, type SyscallLogRecord,
} from '../../runtime/protocols/syscall-log.ts'
import { root, waitFor } from './kernel.ts'

const u32 = (n: number) => new Uint8Array(new Uint32Array([n]).buffer)

describe('the syscall_log object', { timeout: 120_000 }, () => {
  let dir: string
  let object: LibraryObject
  const records: SyscallLogRecord[] = []

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'periscope-syscall-log-'))
    execFileSync('cc', ['-O2', '-Wall', '-o', join(dir, 'syscall-workload'), join(root, 'test/bpf/fixtures/syscall-workload.c')])
    object = await openLibraryObject('syscall_log', { log: () => {} })
    const decode = object.map('decode')
    for (const syscall of await syscallTable()) {
      if (syscall === undefined || syscall.number >= 512) continue
      const strings = stringArguments(syscall)
      if (strings.length === 0 && !returnsNever(syscall)) continue
      const value = new Uint8Array(SYSCALL_LOG_DECODE_SIZE)
      encodeSyscallLogDecode({ string_args: Uint8Array.from([strings[0] ?? -1, strings[1] ?? -1], (i) => i + 1), no_return: returnsNever(syscall) ? 1 : 0, pad: 0 }, new DataView(value.buffer), 0)
      decode.update(u32(syscall.number), value)
    }
    // the byte fields are views of the batch, which is gone after this call
    object.subscribe('records', (batch) => forEachRecord(batch, (view, offset, size) => {
      const record = decodeSyscallLogRecord(view, offset, size)
      records.push({ ...record, string_args: record.string_args.slice(), pad: record.pad.slice() })
    }))
  })

  after(async () => {
    await object?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('sends every call of the target alone, paths copied, buffers not, and forgets the target at its exit', async () => {
    const table = await syscallTable()
    const nr = (name: string) => table.findIndex((s) => s?.name === name)
    const child = spawn(join(dir, 'syscall-workload'), ['log', dir])
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
    await waitFor(() => output.includes('ready\n'), 'the workload to start', 10_000)
    const pid = child.pid!
    object.map('targets').update(u32(pid), new Uint8Array([1]))
    child.stdin.write('go\n')
    await waitFor(() => output.includes('done\n'), 'the workload to run', 30_000)
    child.stdin.write('go\n')
    assert.equal(await exited, 0)
    await waitFor(() => records.some((r) => r.pid === pid && r.nr === nr('exit_group')), 'the exit_group record')

    assert.ok(records.every((r) => r.pid === pid))
    const path = join(dir, 'log-file')
    const first = records.findIndex((r) => r.nr === nr('openat') && r.strings[0] === path)
    const sequence = records.slice(first, first + 6)
    assert.deepEqual(sequence.map((r) => table[r.nr]!.name), ['openat', 'write', 'close', 'openat', 'unlinkat', 'getppid'])
    const [create, write, close, missing, unlink, getppid] = sequence as [SyscallLogRecord, SyscallLogRecord, SyscallLogRecord, SyscallLogRecord, SyscallLogRecord, SyscallLogRecord]
    assert.equal(BigInt.asIntN(32, create.args[0]!), -100n)
    assert.deepEqual([...create.string_args], [2, 0])
    assert.equal(create.args[3], 0o600n)
    assert.ok(create.ret >= 3)
    // write's buffer is a pointer that is never read
    assert.deepEqual([...write.string_args], [0, 0])
    assert.deepEqual(write.strings, ['', ''])
    assert.deepEqual([write.args[0], write.args[2], write.ret], [BigInt(create.ret), 14n, 14])
    assert.deepEqual([close.args[0], close.ret], [BigInt(create.ret), 0])
    assert.deepEqual([missing.strings[0], missing.ret], ['/nonexistent/periscope-syscall-log', -2])
    assert.deepEqual([unlink.strings[0], unlink.ret], [path, 0])
    assert.equal(getppid.ret, process.pid)
    assert.ok(sequence.every((r) => r.tid === pid && r.comm === 'syscall-workloa' && r.flags === 0 && r.duration_ns >= 0))
    const exitGroup = records.find((r) => r.nr === nr('exit_group'))!
    assert.equal(exitGroup.flags, SYSCALL_LOG_NO_RETURN)
    assert.equal(exitGroup.duration_ns, 0)
    // gone from the targets at its exit, so a process that gets its pid next is not logged
    await waitFor(() => object.map('targets').lookup(u32(pid)) === undefined, 'the target to leave targets at its exit')
    assert.equal([...object.map('in_flight').entries()].length, 0)
    assert.equal(object.object.dropped(), 0)
  })
})
