// How the syscall-log plugin decodes a record (runtime/protocols/syscall-log.ts): its constants are
// syscall_log.h's, the kernel copies only path and name arguments, and each argument is written
// by its declared C type.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import type { SyscallDescription } from '../../runtime/plugins/api.ts'
import * as log from '../../runtime/protocols/syscall-log.ts'

const openat: SyscallDescription = {
  number: 257, name: 'openat',
  args: [{ name: 'dfd', type: 'int' }, { name: 'filename', type: 'const char *' }, { name: 'flags', type: 'int' }, { name: 'mode', type: 'umode_t' }],
}
const write: SyscallDescription = {
  number: 1, name: 'write',
  args: [{ name: 'fd', type: 'unsigned int' }, { name: 'buf', type: 'const char *' }, { name: 'count', type: 'size_t' }],
}
const renameat2: SyscallDescription = {
  number: 316, name: 'renameat2',
  args: [{ name: 'olddfd', type: 'int' }, { name: 'oldname', type: 'const char *' }, { name: 'newdfd', type: 'int' }, { name: 'newname', type: 'const char *' }, { name: 'flags', type: 'unsigned int' }],
}

function record(fields: Partial<log.SyscallLogRecord>): log.SyscallLogRecord {
  return {
    start_ns: 0, duration_ns: 1500, args: [0n, 0n, 0n, 0n, 0n, 0n], ret: 0, pid: 10, tid: 11, nr: 0, flags: 0,
    string_args: new Uint8Array(2), pad: new Uint8Array(6), comm: 'app', strings: ['', ''], ...fields,
  }
}

test('every constant equals the value of the same name in syscall_log.h', () => {
  const header = readFileSync(new URL('../../bpf/lib/syscall_log.h', import.meta.url), 'utf8')
  const values = new Map<string, number>()
  for (const [, name, value] of header.matchAll(/^\s*([A-Z_0-9]+)\s*=\s*(\d+)\s*,/gm)) values.set(name!, Number(value))
  for (const [, name, value] of header.matchAll(/^#define\s+([A-Z_0-9]+)\s+(\d+)$/gm)) values.set(name!, Number(value))
  const constants = Object.entries(log).filter(([name, value]) => /^[A-Z_0-9]+$/.test(name) && typeof value === 'number' && name !== 'SYSCALL_LOG_DECODE_SIZE')
  assert.equal(constants.length, 6)
  for (const [name, value] of constants) assert.equal(value, values.get(name), `${name} in syscall_log.h`)
})

test('the kernel copies path and name arguments, never buffers', () => {
  assert.deepEqual(log.stringArguments(openat), [1])
  assert.deepEqual(log.stringArguments(renameat2), [1, 3])
  assert.deepEqual(log.stringArguments(write), [])
  assert.equal(log.returnsNever({ number: 231, name: 'exit_group', args: [{ name: 'error_code', type: 'int' }] }), true)
  assert.equal(log.returnsNever(openat), false)
})

test('arguments are written by their C type', () => {
  assert.equal(log.argumentValue('int', 0xffffff9cn, undefined), -100)
  assert.equal(log.argumentValue('int', 0xffffffffffffff9cn, undefined), -100)
  assert.equal(log.argumentValue('long', 0xffffffffffffffffn, undefined), -1)
  assert.equal(log.argumentValue('unsigned int', 0x1ffffffffn, undefined), 0xffffffff)
  assert.equal(log.argumentValue('size_t', 14n, undefined), 14)
  assert.equal(log.argumentValue('size_t', 0xffffffffffffffffn, undefined), '0xffffffffffffffff')
  assert.equal(log.argumentValue('umode_t', 0o600n, undefined), '0600')
  assert.equal(log.argumentValue('const char *', 0x7ffd1234n, undefined), '0x7ffd1234')
  assert.equal(log.argumentValue('struct stat *', 0n, undefined), 'NULL')
  assert.equal(log.argumentValue('const char *', 0x7ffd1234n, '/etc/hosts'), '/etc/hosts')
})

test('a record decodes into an strace-like call, its error named', () => {
  const failed = log.decodeCall(record({
    nr: 257, args: [0xffffffffffffff9cn, 0x7ffd0000n, 0n, 0n, 0n, 0n], ret: -2,
    string_args: Uint8Array.of(2, 0), strings: ['/missing', ''],
  }), openat, ['', 'EPERM', 'ENOENT'])
  assert.deepEqual(failed, {
    name: 'openat', body: 'openat(dfd=-100, filename="/missing", flags=0, mode=00) = -1 ENOENT', returned: true, error: 'ENOENT',
    args: { dfd: -100, filename: '/missing', flags: 0, mode: '00' },
  })
  const wrote = log.decodeCall(record({ nr: 1, args: [3n, 0x55550000n, 14n, 0n, 0n, 0n], ret: 14 }), write, [])
  assert.equal(wrote.body, 'write(fd=3, buf=0x55550000, count=14) = 14')
  const cut = log.decodeCall(record({ nr: 257, string_args: Uint8Array.of(2, 0), strings: ['/a'.padEnd(255, 'a'), ''], flags: log.SYSCALL_LOG_STRING0_CUT }), openat, [])
  assert.equal(cut.args.filename, `${'/a'.padEnd(255, 'a')}…`)
  const exited = log.decodeCall(record({ nr: 231, args: [3n, 0n, 0n, 0n, 0n, 0n], flags: log.SYSCALL_LOG_NO_RETURN }), { number: 231, name: 'exit_group', args: [{ name: 'error_code', type: 'int' }] }, [])
  assert.deepEqual([exited.body, exited.returned], ['exit_group(error_code=3) = ?', false])
  const unknown = log.decodeCall(record({ nr: 500, args: [1n, 2n, 3n, 4n, 5n, 6n], ret: -38 }), null, Object.assign([], { 38: 'ENOSYS' }))
  assert.equal(unknown.body, 'syscall_500(arg0=1, arg1=2, arg2=3, arg3=4, arg4=5, arg5=6) = -1 ENOSYS')
})
