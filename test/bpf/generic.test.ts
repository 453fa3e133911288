import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { decodeGenericRecord, encodeGenericProbeConfig, GENERIC_PROBE_CONFIG_SIZE, GENERIC_RECORD_SIZE, type GenericRecord } from '../../bpf/lib/generic.types.ts'
import { forEachRecord } from '../../runtime/bpf/batch.ts'
import { attachTracepoint, type Link } from '../../runtime/bpf/links.ts'
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
    encodeGenericProbeConfig({ record_size: recordSize, tgid, uid: 0, filters: 0, comm: '', string_offsets: [0, 0], string_data_locs: 0, stacks: 0 }, new DataView(value.buffer), 0)
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
  assert.ok(forks.every((r) => r.size === fork.size && r.data.byteLength === fork.size && r.truncated === 0))

  const execRecord = records.find((r) => r.cookie === 9n && r.pid === child.pid)!
  assert.equal(execRecord.size, exec.size)
  const filenameLoc = Buffer.from(execRecord.data).readUInt32LE(exec.fields.find((f) => f.name === '__data_loc')?.offset ?? exec.fields.find((f) => f.name === 'filename')!.offset)
  assert.ok(filenameLoc > 0)
  assert.equal(object.dropped(), 0)
  reader.close()
  object.close()
})

/** A generic object recording sched_process_exec with `recordSize` bytes configured. */
async function recordExecs(recordSize: number) {
  const object = await ObjectSpec.open(objectPath('generic')).load()
  const value = new Uint8Array(GENERIC_PROBE_CONFIG_SIZE)
  encodeGenericProbeConfig({ record_size: recordSize, tgid: 0, uid: 0, filters: 0, comm: '', string_offsets: [0, 0], string_data_locs: 0, stacks: 0 }, new DataView(value.buffer), 0)
  let link: Link
  try {
    object.map('probe_config').update(new Uint8Array(4), value)
    link = attachTracepoint(object, 'generic_tracepoint', 'sched', 'sched_process_exec', { cookie: 0n })
  } catch (error) {
    object.close()
    throw error
  }
  const records: GenericRecord[] = []
  const reader = new RingBufferReader(object, 'events', {
    onBatch: (batch) => forEachRecord(batch, (view, offset, size) => {
      const record = decodeGenericRecord(view, offset, size)
      records.push({ ...record, data: record.data.slice() })
    }),
  })
  return {
    object, records,
    close() {
      reader.close()
      link.detach()
      object.close()
    },
  }
}

test('a record of the largest size (4096 bytes) and one above it copy the real tracepoint data, the larger one cut and flagged', async () => {
  const largest = await recordExecs(4096)
  const above = await recordExecs(4097)
  try {
    // GENERIC_MAX_DATA: the scratch record is the header plus the largest data, then room for
    // two 64-byte strings (GENERIC_MAX_STRINGS of GENERIC_STRING_SIZE), then for the stacks
    // (event_stacks.h's EVENT_STACKS_MAX: a 592-byte stack_sample, 8 KB of user stack, a page)
    assert.equal(largest.object.map('scratch').valueSize - GENERIC_RECORD_SIZE, 4096 + 2 * 64 + 592 + 8192 + 4096)
    const child = spawnSync('/bin/true')
    assert.equal(child.status, 0)
    const ofChild = (records: GenericRecord[]) => records.find((r) => r.pid === child.pid)
    await waitFor(() => ofChild(largest.records) !== undefined && ofChild(above.records) !== undefined, 'the exec record of /bin/true at both sizes')
    const exec = format('sched', 'sched_process_exec')
    const field = (name: string) => exec.fields.find((f) => f.name === name)!.offset
    for (const [configured, records, truncated] of [[4096, largest.records, 0], [4097, above.records, 1]] as const) {
      const record = ofChild(records)!
      assert.equal(record.size, 4096, `record_size ${configured}: size`)
      assert.equal(record.data.byteLength, 4096, `record_size ${configured}: bytes copied`)
      assert.equal(record.truncated, truncated, `record_size ${configured}: truncated flag`)
      const data = Buffer.from(record.data)
      // while BPF runs the kernel keeps a pt_regs pointer where the common header goes
      assert.equal(data.readBigUInt64LE(0), 0n, `record_size ${configured}: the common header is zeroed, no kernel address`)
      assert.equal(data.readInt32LE(field('pid')), child.pid, `record_size ${configured}: pid`)
      assert.equal(data.readInt32LE(field('old_pid')), child.pid, `record_size ${configured}: old_pid`)
      // the filename lives in the record's dynamic part, past the fixed fields
      const loc = data.readUInt32LE(field('filename'))
      const at = loc & 0xffff
      const length = loc >>> 16
      assert.ok(at >= exec.size, `the filename (at ${at}) is past the fixed fields (${exec.size} bytes)`)
      assert.equal(data.subarray(at, at + length).toString('latin1'), '/bin/true\0', `record_size ${configured}: the filename, copied from the dynamic part`)
    }
    assert.equal(largest.object.dropped() + above.object.dropped(), 0)
  } finally {
    largest.close()
    above.close()
  }
})
