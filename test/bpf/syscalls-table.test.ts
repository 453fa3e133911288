/**
 * The syscall table read from the running kernel (runtime/kernel/syscall-table.ts) and its plugin
 * API (ctx.kernel): known x86-64 numbers, the same syscalls as tracefs, and numbers that are what
 * the raw_syscalls tracepoints report for this process's own calls.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, it } from 'node:test'
import { decodeGenericRecord, encodeGenericProbeConfig, GENERIC_PROBE_CONFIG_SIZE } from '../../bpf/lib/generic.types.ts'
import { forEachRecord } from '../../runtime/bpf/batch.ts'
import { attachTracepoint } from '../../runtime/bpf/links.ts'
import { ObjectSpec } from '../../runtime/bpf/object.ts'
import { RingBufferReader } from '../../runtime/bpf/ringbuf.ts'
import { syscallNames, syscallTable } from '../../runtime/kernel/syscall-table.ts'
import { startHarness, type Harness } from '../plugin-harness.ts'
import { objectPath, root, waitFor } from './kernel.ts'
import { decodersPath, plugin, provider } from './plugin-api-fixture.ts'

const ENOENT = 2

/** A field's offset in a tracepoint's record, from its tracefs format file. */
function fieldOffset(category: string, event: string, field: string): number {
  const text = readFileSync(`/sys/kernel/tracing/events/${category}/${event}/format`, 'utf8')
  const match = new RegExp(`field:[^;]*\\b${field};\\s*offset:(\\d+);`).exec(text)
  if (match === null) throw new Error(`${category}:${event} has no field ${field}`)
  return Number(match[1])
}

let h: Harness | undefined
afterEach(async () => {
  await h?.close()
  h = undefined
})

describe('the syscall table of the running kernel', () => {
  it('has the x86-64 numbers, the arguments SYSCALL_DEFINE declares, and exactly the syscalls tracefs has events for', async () => {
    const names = await syscallNames()
    assert.equal(names[0], 'read')
    assert.equal(names[1], 'write')
    assert.equal(names[39], 'getpid')
    assert.equal(names[59], 'execve')
    assert.equal(names[257], 'openat')
    const table = await syscallTable()
    assert.deepEqual(table[257], {
      number: 257, name: 'openat',
      args: [{ name: 'dfd', type: 'int' }, { name: 'filename', type: 'const char *' }, { name: 'flags', type: 'int' }, { name: 'mode', type: 'umode_t' }],
    })
    assert.deepEqual(table[39]!.args, [])
    // holes are numbers the kernel has no syscall for
    assert.ok(names.includes(''))
    assert.equal(table.length, names.length)
    const tracefs = readdirSync('/sys/kernel/tracing/events/syscalls').filter((e) => e.startsWith('sys_enter_')).map((e) => e.slice('sys_enter_'.length))
    assert.deepEqual(names.filter((n) => n !== '').sort(), tracefs.sort())
    // read once per process
    assert.equal(await syscallTable(), table)
  })

  it('is read after the privilege drop too, as a plugin loaded later would first ask for it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'periscope-syscall-table-'))
    try {
      const output = execFileSync(process.execPath, [join(root, 'test/bpf/fixtures/syscall-table-after-drop.ts'), join(dir, 'data')], { encoding: 'utf8' })
      assert.deepEqual(JSON.parse(output), { uid: 65534, names: ['read', 'getpid', 'openat'] })
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('numbers syscalls as raw_syscalls:sys_enter reports them: 1000 getppid and 7 openat failing with ENOENT from this thread', async () => {
    const names = await syscallNames()
    const getppid = names.indexOf('getppid')
    const openat = names.indexOf('openat')
    const getegid = names.indexOf('getegid')
    const parent = process.ppid
    assert.ok(getppid > 0 && openat > 0 && getegid > 0)

    const object = await ObjectSpec.open(objectPath('generic')).load()
    const config = object.map('probe_config')
    const slot = (index: number, recordSize: number) => {
      const value = new Uint8Array(GENERIC_PROBE_CONFIG_SIZE)
      encodeGenericProbeConfig({ record_size: recordSize, tgid: process.pid, uid: 0, filters: 0, comm: '', string_offsets: [0, 0], string_data_locs: 0, stacks: 0 }, new DataView(value.buffer), 0)
      config.update(new Uint8Array(new Uint32Array([index]).buffer), value)
    }
    const enterId = fieldOffset('raw_syscalls', 'sys_enter', 'id')
    const exitId = fieldOffset('raw_syscalls', 'sys_exit', 'id')
    const exitRet = fieldOffset('raw_syscalls', 'sys_exit', 'ret')
    slot(1, enterId + 8)
    slot(2, exitRet + 8)
    const enters = new Map<number, number>()
    const failures = new Map<string, number>()
    let marker = false
    const reader = new RingBufferReader(object, 'events', {
      onBatch: (batch) => forEachRecord(batch, (view, offset, size) => {
        const record = decodeGenericRecord(view, offset, size)
        if (record.tid !== process.pid) return
        const data = Buffer.from(record.data)
        if (record.cookie === 1n) {
          const id = Number(data.readBigInt64LE(enterId))
          enters.set(id, (enters.get(id) ?? 0) + 1)
        } else {
          const id = Number(data.readBigInt64LE(exitId))
          const ret = Number(data.readBigInt64LE(exitRet))
          if (ret < 0) failures.set(`${id} ${-ret}`, (failures.get(`${id} ${-ret}`) ?? 0) + 1)
          if (id === getegid) marker = true
        }
      }),
    })
    try {
      attachTracepoint(object, 'generic_tracepoint', 'raw_syscalls', 'sys_enter', { cookie: 1n })
      attachTracepoint(object, 'generic_tracepoint', 'raw_syscalls', 'sys_exit', { cookie: 2n })
      let ppid = 0
      // process.ppid asks the kernel on every read (uv_os_getppid)
      for (let i = 0; i < 1000; i++) ppid += process.ppid
      assert.equal(ppid, 1000 * parent)
      for (let i = 0; i < 7; i++) assert.throws(() => openSync(`/nonexistent-periscope-${i}`, 'r'), { code: 'ENOENT' })
      // this thread's records arrive in order: its getegid's exit comes after all the rest
      process.getegid!()
      await waitFor(() => marker, 'the exit record of the marker getegid()', 30_000)
      assert.equal(enters.get(getppid), 1000)
      assert.equal(failures.get(`${openat} ${ENOENT}`), 7)
      assert.equal(object.dropped(), 0)
    } finally {
      reader.close()
      object.close()
    }
  })

  it('is what a plugin gets from ctx.kernel.syscallNames() and ctx.kernel.syscalls()', async () => {
    h = await startHarness({ provider: provider(), decodersPath })
    const harness = h
    const loaded = harness.nextEvent('loaded', 'sysnames')
    harness.write('sysnames.ts', plugin('sysnames', [], `
    const names = await ctx.kernel.syscallNames()
    const syscalls = await ctx.kernel.syscalls()
    const hole = names.indexOf('')
    ctx.emit.log({ body: JSON.stringify({ length: names.length, read: names[0], openat: names[257], args: syscalls[257], hole: syscalls[hole], same: syscalls.length === names.length }) })`))
    await loaded
    const names = await syscallNames()
    assert.deepEqual(JSON.parse(harness.sink.signals('sysnames').logs[0]!.body as string), {
      length: names.length, read: 'read', openat: 'openat', hole: null, same: true,
      args: { number: 257, name: 'openat', args: [{ name: 'dfd', type: 'int' }, { name: 'filename', type: 'const char *' }, { name: 'flags', type: 'int' }, { name: 'mode', type: 'umode_t' }] },
    })
  })
})
