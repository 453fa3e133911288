/**
 * runtime/protocols/tracepoint.ts, which plugins (ctx.onTracepoint) and the REPL decode kernel
 * tracepoint records with: format files as this kernel (6.18) writes them, and records laid out
 * as tracefs says, built byte by byte here.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { decodeFields, parseFormat, tracepointEvent } from '../../runtime/protocols/tracepoint.ts'

const HEADER = `	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;
	field:unsigned char common_preempt_count;	offset:3;	size:1;	signed:0;
	field:int common_pid;	offset:4;	size:4;	signed:1;
`
const EXEC = `name: sched_process_exec
ID: 365
format:
${HEADER}
	field:__data_loc char[] filename;	offset:8;	size:4;	signed:0;
	field:pid_t pid;	offset:12;	size:4;	signed:1;
	field:pid_t old_pid;	offset:16;	size:4;	signed:1;

print fmt: "filename=%s pid=%d old_pid=%d", __get_str(filename), REC->pid, REC->old_pid
`
const OPENAT = `name: sys_enter_openat
ID: 707
format:
${HEADER}
	field:int __syscall_nr;	offset:8;	size:4;	signed:1;
	field:int dfd;	offset:16;	size:8;	signed:0;
	field:const char * filename;	offset:24;	size:8;	signed:0;
	field:int flags;	offset:32;	size:8;	signed:0;
	field:umode_t mode;	offset:40;	size:8;	signed:0;
`
const SWITCH = `name: sched_switch
ID: 373
format:
${HEADER}
	field:char prev_comm[16];	offset:8;	size:16;	signed:0;
	field:pid_t prev_pid;	offset:24;	size:4;	signed:1;
	field:int prev_prio;	offset:28;	size:4;	signed:1;
	field:long prev_state;	offset:32;	size:8;	signed:1;
	field:char next_comm[16];	offset:40;	size:16;	signed:0;
	field:pid_t next_pid;	offset:56;	size:4;	signed:1;
	field:int next_prio;	offset:60;	size:4;	signed:1;
	field:u8 small;	offset:64;	size:1;	signed:0;
	field:s16 half;	offset:66;	size:2;	signed:1;
`

test('parseFormat reads the fields after the common header, with their types, offsets, sizes and signs', () => {
  const format = parseFormat(EXEC)
  assert.equal(format.id, 365)
  assert.equal(format.recordSize, 20)
  assert.deepEqual(format.fields, [
    { name: 'filename', type: '__data_loc char[]', offset: 8, size: 4, signed: false },
    { name: 'pid', type: 'pid_t', offset: 12, size: 4, signed: true },
    { name: 'old_pid', type: 'pid_t', offset: 16, size: 4, signed: true },
  ])
  assert.deepEqual(parseFormat(SWITCH).fields[0], { name: 'prev_comm', type: 'char[16]', offset: 8, size: 16, signed: false })
})

test('decodeFields: __data_loc strings past the fixed part, char arrays, and integers of each size and sign', () => {
  const exec = parseFormat(EXEC)
  const path = '/usr/bin/ünïcode'
  const text = new TextEncoder().encode(`${path}\0`)
  const record = new Uint8Array(20 + text.length)
  const view = new DataView(record.buffer)
  view.setUint32(8, (text.length << 16) | 20, true)
  view.setInt32(12, 4242, true)
  view.setInt32(16, -1, true)
  record.set(text, 20)
  assert.deepEqual(decodeFields(exec, record), { filename: path, pid: 4242n, old_pid: -1n })

  const sw = parseFormat(SWITCH)
  const raw = new Uint8Array(68)
  const v = new DataView(raw.buffer)
  raw.set(new TextEncoder().encode('kworker/0:1'), 8)
  v.setInt32(24, 17, true)
  v.setInt32(28, 120, true)
  v.setBigInt64(32, -2n, true)
  raw.set(new TextEncoder().encode('exactly15bytes!'), 40)
  v.setInt32(56, 99, true)
  v.setInt32(60, 100, true)
  v.setUint8(64, 255)
  v.setInt16(66, -300, true)
  assert.deepEqual(decodeFields(sw, raw), {
    prev_comm: 'kworker/0:1', prev_pid: 17n, prev_prio: 120n, prev_state: -2n,
    next_comm: 'exactly15bytes!', next_pid: 99n, next_prio: 100n, small: 255n, half: -300n,
  })
  // a record cut short keeps the fields it holds whole
  assert.deepEqual(decodeFields(sw, raw.subarray(0, 32)), { prev_comm: 'kworker/0:1', prev_pid: 17n, prev_prio: 120n })
})

test('tracepointEvent: the strings the generic program copied after the record take their fields\' names', () => {
  const openat = parseFormat(OPENAT)
  const data = new Uint8Array(48 + 64)
  const view = new DataView(data.buffer)
  view.setInt32(8, 257, true)
  view.setBigUint64(16, 0xffffff9cn, true)
  view.setBigUint64(24, 0x7ffc0000n, true)
  view.setBigUint64(32, 0o2000000n, true)
  data.set(new TextEncoder().encode('/etc/hosts\0'), 48)
  const event = tracepointEvent(openat, ['filename'], { timestamp_ns: 5_000_000_123, pid: 10, tid: 11, uid: 0, gid: 0, cpu: 1, comm: 'cat', size: 48, strings: 1, data })
  assert.deepEqual(event, {
    pid: 10, tid: 11, uid: 0, gid: 0, comm: 'cat', cpu: 1, nsecs: 5_000_000_123n,
    args: { __syscall_nr: 257n, dfd: 0xffffff9cn, filename: '/etc/hosts', flags: 0o2000000n, mode: 0n },
  })
  // without the string copied, the field is the pointer
  assert.equal(tracepointEvent(openat, [], { timestamp_ns: 1, pid: 1, tid: 1, uid: 0, gid: 0, cpu: 0, comm: 'x', size: 48, strings: 0, data }).args.filename, 0x7ffc0000n)
})
