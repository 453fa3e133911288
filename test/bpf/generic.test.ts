import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { decodeGenericRecord, encodeGenericProbeConfig, GENERIC_PROBE_CONFIG_SIZE, type GenericRecord } from '../../bpf/lib/generic.types.ts'
import { forEachRecord } from '../../runtime/bpf/batch.ts'
import { attachTracepoint } from '../../runtime/bpf/links.ts'
import { ObjectSpec } from '../../runtime/bpf/object.ts'
import { RingBufferReader } from '../../runtime/bpf/ringbuf.ts'
import { objectPath, waitFor } from './kernel.ts'

/** Offset and size of a field, and the record size, from the tracepoint's tracefs format file. */
function format(category: string, name: string) {
  const text = readFileSync(`/sys/kernel/tracing/events/${category}/${name}/format`, 'utf8')
  const fields = [...text.matchAll(/field:([^;]+);\s*offset:(\d+);\s*size:(\d+);/g)].map(([, decl, offset, size]) => ({ name: decl.trim().split(/\s+/).pop()!.replace(/\[.*$/, ''), offset: Number(offset), size: Number(size) }))
  const last = fields[fields.length - 1]
  return { fields, size: last.offset + last.size }
}

test('one program serves several tracepoints, each with its own cookie, size and pid filter', async () => {
  const object = await ObjectSpec.open(objectPath('generic')).load()
  const config = object.map('probe_config')
  const slot = (index: number, recordSize: number, tgid: number) => {
    const value = new Uint8Array(GENERIC_PROBE_CONFIG_SIZE)
    encodeGenericProbeConfig({ record_size: recordSize, tgid }, new DataView(value.buffer), 0)
    config.update(new Uint8Array(new Uint32Array([index]).buffer), value)
  }
  const fork = format('sched', 'sched_process_fork')
  const exec = format('sched', 'sched_process_exec')
  slot(3, fork.size, process.pid)
  slot(9, exec.size, 0)
  attachTracepoint(object, 'generic_tracepoint', 'sched', 'sched_process_fork', { cookie: 3n })
  attachTracepoint(object, 'generic_tracepoint', 'sched', 'sched_process_exec', { cookie: 9n })

  const records: GenericRecord[] = []
  const reader = new RingBufferReader(object, 'events', {
    onBatch: (batch) => forEachRecord(batch, (view, offset, size) => {
      const record = decodeGenericRecord(view, offset, size)
      records.push({ ...record, data: record.data.slice() })
    }),
  })
  const child = spawnSync('/bin/true')
  assert.equal(child.status, 0)
  await waitFor(() => records.some((r) => r.cookie === 9n && r.pid === child.pid), 'the exec record of /bin/true')

  const forks = records.filter((r) => r.cookie === 3n)
  assert.ok(forks.length >= 1)
  // the pid filter keeps only forks by this process
  assert.ok(forks.every((r) => r.pid === process.pid))
  const childPid = fork.fields.find((f) => f.name === 'child_pid')!
  assert.ok(forks.some((r) => Buffer.from(r.data).readInt32LE(childPid.offset) === child.pid))
  assert.ok(forks.every((r) => r.size === fork.size && r.data.byteLength === fork.size))

  const execRecord = records.find((r) => r.cookie === 9n && r.pid === child.pid)!
  assert.equal(execRecord.size, exec.size)
  const filenameLoc = Buffer.from(execRecord.data).readUInt32LE(exec.fields.find((f) => f.name === '__data_loc')?.offset ?? exec.fields.find((f) => f.name === 'filename')!.offset)
  assert.ok(filenameLoc > 0)
  assert.equal(object.dropped(), 0)
  reader.close()
  object.close()
})
