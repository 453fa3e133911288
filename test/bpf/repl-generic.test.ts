/**
 * A one-liner over a real tracepoint: records of syscalls:sys_exit_read copied by the library's
 * generic.bpf.c, decoded with the tracefs format and run through the evaluator, while Debian's
 * bpftrace runs the same one-liner on the same workload (dd reading fixed block sizes). After
 * Ctrl-C (SIGINT) bpftrace prints its maps: ours must be the same bytes.
 */
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { test } from 'node:test'
import { decodeGenericRecord, encodeGenericProbeConfig, GENERIC_PROBE_CONFIG_SIZE } from '../../bpf/lib/generic.types.ts'
import { UserSpaceAggregator } from '../../repl/bpftrace/aggregate.ts'
import { Evaluator, type TraceEvent } from '../../repl/bpftrace/evaluate.ts'
import { kernelFilter } from '../../repl/bpftrace/kernel-filter.ts'
import { compileProgram } from '../../repl/bpftrace/program.ts'
import { decodeFields, readFormat, tracefsFields } from '../../repl/bpftrace/tracefs.ts'
import { exitText } from '../../repl/printers.ts'
import { forEachRecord } from '../../runtime/bpf/batch.ts'
import { attachTracepoint } from '../../runtime/bpf/links.ts'
import { ObjectSpec } from '../../runtime/bpf/object.ts'
import { RingBufferReader } from '../../runtime/bpf/ringbuf.ts'
import { objectPath, waitFor } from './kernel.ts'
import { bpftraceVersion } from './repl-bpftrace.ts'

// bpftrace runs BEGIN once every probe is attached (it prints "Attaching 1 probe..." before)
const PROGRAM = 'BEGIN { printf("ready\\n") } tracepoint:syscalls:sys_exit_read /comm == "dd" && args->ret >= 0/ { @bytes = hist(args->ret); @n[comm] = count(); @s = stats(args->ret); @l = lhist(args->ret, 0, 8192, 1024); @big = max(args->ret) }'

/** bpftrace running `program` until stopped; resolves once its BEGIN probe printed "ready". */
async function startBpftrace(program: string) {
  const child = spawn('bpftrace', ['-e', program], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
  await waitFor(() => stdout.includes('ready\n') || child.exitCode !== null, 'bpftrace attaching its probes', 120_000)
  assert.equal(child.exitCode, null, 'bpftrace exited before attaching')
  return {
    async stop(): Promise<string> {
      const exited = once(child, 'exit')
      child.kill('SIGINT')
      await exited
      return stdout.slice(stdout.indexOf('ready\n') + 'ready\n'.length)
    },
    kill: () => child.kill('SIGKILL'),
  }
}

test('a hist, lhist, stats, max and count one-liner over sys_exit_read prints what bpftrace prints for the same reads', { timeout: 300_000 }, async () => {
  assert.match(bpftraceVersion(), /v0\.17\./)
  const checked = compileProgram(PROGRAM, { tracepointFields: tracefsFields() })
  // comm is the only filter: generic.bpf.c filters pids only, so user space applies it
  assert.deepEqual(kernelFilter(checked.program.probes[1]), { comm: 'dd', notInGeneric: ['comm'] })
  const format = readFormat('syscalls', 'sys_exit_read')!

  const aggregator = new UserSpaceAggregator(checked.maps)
  const evaluator = new Evaluator(checked, aggregator, { printf: () => {}, print: () => {}, exit: () => {} }, 0n)
  let markerSeen = false
  const object = await ObjectSpec.open(objectPath('generic')).load()
  const bpftrace = await startBpftrace(PROGRAM)
  let reader: RingBufferReader | undefined
  try {
    const config = new Uint8Array(GENERIC_PROBE_CONFIG_SIZE)
    encodeGenericProbeConfig({ record_size: format.recordSize, tgid: 0 }, new DataView(config.buffer), 0)
    object.map('probe_config').update(new Uint8Array(4), config)
    const link = attachTracepoint(object, 'generic_tracepoint', 'syscalls', 'sys_exit_read', { cookie: 0n })
    reader = new RingBufferReader(object, 'events', {
      onBatch: (batch) => forEachRecord(batch, (view, offset, size) => {
        const record = decodeGenericRecord(view, offset, size)
        if (record.comm === 'periscope-mark') markerSeen = true
        const event: TraceEvent = { pid: record.pid, tid: record.tid, uid: 0, gid: 0, comm: record.comm, cpu: record.cpu, nsecs: BigInt(record.timestamp_ns), args: decodeFields(format, record.data) }
        evaluator.fire(1, event)
      }),
    })
    for (const [bs, count] of [[4096, 40], [100, 25], [1, 3], [8192, 7], [65536, 2]]) {
      const dd = spawnSync('dd', ['if=/dev/zero', 'of=/dev/null', `bs=${bs}`, `count=${count}`, 'status=none'])
      assert.equal(dd.status, 0)
    }
    // a read by another command after dd's: once its record arrives, every dd record has (one
    // ring, records in the order they were reserved); its comm is its file name, a link to head
    const marker = join(mkdtempSync(join(tmpdir(), 'periscope-repl-')), 'periscope-mark')
    symlinkSync('/usr/bin/head', marker)
    assert.equal(spawnSync(marker, ['-c', '1', '/dev/zero'], { stdio: 'ignore' }).status, 0)
    rmSync(dirname(marker), { recursive: true })
    await waitFor(() => markerSeen, 'the marker read after the dd runs', 60_000)
    const theirs = await bpftrace.stop()
    link.detach()
    assert.equal(object.dropped(), 0)
    const ours = exitText(aggregator.snapshots())
    assert.equal(ours, theirs)
    // the dd reads, counted exactly: at least the blocks asked for
    assert.match(ours, /@n\[dd\]: \d+\n/)
    assert.ok(Number(/@n\[dd\]: (\d+)/.exec(ours)![1]) >= 40 + 25 + 3 + 7 + 2)
  } finally {
    bpftrace.kill()
    reader?.close()
    object.close()
  }
})
