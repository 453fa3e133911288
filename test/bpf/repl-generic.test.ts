/**
 * One-liners over real tracepoints: records copied by the library's generic.bpf.c
 * (repl/bpftrace/capture.ts), decoded with the tracefs format and run through the evaluator,
 * while Debian's bpftrace runs the same one-liner on the same workload. Both print their maps
 * when the workload exits (a sched_process_exit probe calls exit()): ours must be the same
 * bytes.
 *
 * The workloads wait on their stdin until the tracers have attached: a shell that then execs
 * dd (keeping its pid), and test/bpf/fixtures/repl-capture-workload.c, which makes a known set
 * of openat and read calls, run under names of its own (its comm) and as root or nobody.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { UserSpaceAggregator } from '../../repl/bpftrace/aggregate.ts'
import { captureEvents, captureTracepoints, type Capture } from '../../repl/bpftrace/capture.ts'
import { BpftraceErrors } from '../../repl/bpftrace/errors.ts'
import { Evaluator, type TraceEvent } from '../../repl/bpftrace/evaluate.ts'
import { kernelFilter } from '../../repl/bpftrace/kernel-filter.ts'
import { compileProgram } from '../../repl/bpftrace/program.ts'
import { tracefsFields } from '../../repl/bpftrace/tracefs.ts'
import { exitText } from '../../repl/printers.ts'
import { root, waitFor } from './kernel.ts'
import { besideBpftrace, bpftraceVersion, ctrlCAfterExit, heldCommand, holdProcess, startBpftrace, type HeldProcess } from './repl-bpftrace.ts'


const NOBODY = 65534

/**
 * The capture workload, built once into a directory everyone may read (it also runs as
 * nobody), as `name`: its comm.
 */
const workloadDir = mkdtempSync(join(tmpdir(), 'periscope-repl-capture-'))
process.once('exit', () => rmSync(workloadDir, { recursive: true, force: true }))
chmodSync(workloadDir, 0o755)
execFileSync('cc', ['-O2', '-Wall', '-Werror', '-o', join(workloadDir, 'workload'), join(root, 'test/bpf/fixtures/repl-capture-workload.c')])

/** The capture workload as `name`, held until released; as `uid`:`uid` when given. */
function heldCaptureWorkload(name: string, opens: number, reads: number, uid?: number): HeldProcess {
  const binary = join(workloadDir, name)
  // a copy per name, made once: a running copy cannot be written
  if (!existsSync(binary)) copyFileSync(join(workloadDir, 'workload'), binary)
  return holdProcess(binary, [String(opens), String(reads)], name, uid === undefined ? {} : { uid, gid: uid })
}

/** The paths the capture workload opens, as str() shows them (bpftrace's 64-byte strings). */
function workloadPaths(opens: number): string[] {
  const paths = Array.from({ length: opens }, (_, i) => `/nonexistent/periscope-capture/${i % 3}`)
  // the 100-byte path, cut to 63 bytes and its NUL; then the unreadable pointer, empty
  return [...paths, `/nonexistent/${'x'.repeat(100 - 13)}`.slice(0, 63), '', '/dev/zero']
}


const oneLiner = (pid: number) => `BEGIN { printf("ready\\n") } tracepoint:syscalls:sys_exit_read /pid == ${pid} && comm == "dd" && args->ret >= 0/ { @bytes = hist(args->ret); @n[comm] = count(); @s = stats(args->ret); @l = lhist(args->ret, 0, 8192, 1024); @big = max(args->ret) } tracepoint:sched:sched_process_exit /pid == ${pid}/ { exit() }`

test('a hist, lhist, stats, max and count one-liner over sys_exit_read prints what bpftrace prints for the same reads', { timeout: 300_000 }, async () => {
  assert.match(bpftraceVersion(), /v0\.17\./)
  const workload = heldCommand('dd if=/dev/zero of=/dev/null bs=1000 count=60 status=none')
  const source = oneLiner(workload.pid)
  const checked = compileProgram(source, { tracepointFields: tracefsFields() })
  // the pid runs in the kernel; generic.bpf.c has no comm filter yet, so user space applies it
  assert.deepEqual(kernelFilter(checked.program.probes[1]), { pid: workload.pid, comm: 'dd' })
  const aggregator = new UserSpaceAggregator(checked.maps)
  let exited = false
  const evaluator = new Evaluator(checked, aggregator, { printf: () => {}, print: () => {}, exit: () => { exited = true } }, 0n)
  const bpftrace = startBpftrace(source)
  let capture: Capture | undefined
  try {
    capture = await captureTracepoints(checked, (probe, event) => evaluator.fire(probe, event))
    await bpftrace.started
    await workload.release()
    await waitFor(() => exited, 'the exit of dd, after its reads', 60_000)
    const theirs = await bpftrace.output()
    assert.equal(capture.dropped(), 0)
    const ours = exitText(aggregator.snapshots())
    assert.equal(`Attaching 3 probes...\nready\n${ours}`, theirs)
    // 60 blocks of 1000 bytes, and the reads of the dynamic loader
    assert.match(ours, /\n@l: \n[^]*\[0, 1K\) +6\d /)
    assert.ok(Number(/@n\[dd\]: (\d+)/.exec(ours)![1]) >= 60)
  } finally {
    workload.kill()
    bpftrace.kill()
    capture?.close()
  }
})

test('runOneLiner prints what bpftrace -e prints, from "Attaching" to the maps, for a one-liner that ends itself with exit()', { timeout: 300_000 }, async () => {
  const workload = heldCommand('dd if=/dev/zero of=/dev/null bs=3000 count=9 status=none')
  const { ours, theirs } = await besideBpftrace(oneLiner(workload.pid), workload)
  assert.equal(ours, theirs)
  assert.match(ours, /^Attaching 3 probes\.\.\.\nready\n\n\n@big: \d+\n@bytes: \n/)
})

/** A checked program run through captureTracepoints and the evaluator until one of its probes calls exit(). */
async function captureUntilExit(source: string) {
  const checked = compileProgram(source, { tracepointFields: tracefsFields() })
  const aggregator = new UserSpaceAggregator(checked.maps)
  let exited = false
  let printed = ''
  const evaluator = new Evaluator(checked, aggregator, { printf: (text) => { printed += text }, print: () => {}, exit: () => { exited = true } }, 0n)
  const capture = await captureTracepoints(checked, (probe, event) => evaluator.fire(probe, event))
  return {
    capture,
    /** what printf printed, then the maps as bpftrace prints them at exit, once a probe called exit() */
    async output() {
      await waitFor(() => exited, 'the probe that calls exit()', 60_000)
      return printed + exitText(aggregator.snapshots())
    },
  }
}

test('this process is left out: an unfiltered sys_exit_read one-liner counts the workload\'s reads and none of its own', { timeout: 300_000 }, async () => {
  const workload = heldCaptureWorkload('capwl-self', 0, 5)
  // `||` keeps the filter out of the kernel, so every process's reads come up but this one's:
  // its event loop reads an eventfd for each batch of records, which would feed itself
  const source = `tracepoint:syscalls:sys_exit_read /comm == "capwl-self" || pid == ${process.pid}/ { @reads[comm, pid == ${process.pid}] = count(); @bytes[comm] = sum(args->ret); } tracepoint:sched:sched_process_exit /pid == ${workload.pid}/ { exit() }`
  const run = await captureUntilExit(source)
  try {
    // reads of this process while capturing: each would be counted under its own comm
    for (let i = 0; i < 20; i++) readFileSync('/proc/self/stat')
    await workload.release()
    // its "go" line on stdin, then 100 to 104 bytes of /dev/zero
    assert.equal(await run.output(), '\n\n@bytes[capwl-self]: 513\n@reads[capwl-self, 0]: 6\n')
    assert.equal(run.capture.dropped(), 0)
  } finally {
    workload.kill()
    run.capture.close()
  }
})

test('comm, uid and pid filters run in the kernel, uid and gid are recorded, and str() fields arrive as strings', { timeout: 300_000 }, async () => {
  const a = heldCaptureWorkload('capwl-a', 4, 3)
  const b = heldCaptureWorkload('capwl-b', 5, 2, NOBODY)
  const c = heldCaptureWorkload('capwl-b', 6, 1)
  const events: TraceEvent[][] = [[], [], [], []]
  // captureEvents filters nothing in user space: whatever arrives, the kernel let through
  const capture = await captureEvents([
    { category: 'syscalls', name: 'sys_enter_openat', filter: { comm: 'capwl-b', uid: NOBODY }, strings: ['filename'] },
    { category: 'syscalls', name: 'sys_exit_read', filter: { comm: 'capwl-a' } },
    { category: 'syscalls', name: 'sys_exit_openat', filter: { pid: c.pid } },
    { category: 'sched', name: 'sched_process_exit', filter: { comm: 'capwl-b' } },
  ], (request, event) => events[request].push(event))
  try {
    // one after the other: the last exit record comes after every record of the three
    await a.release()
    await b.release()
    await c.release()
    await waitFor(() => events[3].length >= 2, 'the exits of both capwl-b', 60_000)
    const summary = (list: TraceEvent[], field: string) => list.map((e) => `${e.comm} ${e.pid} ${e.uid}:${e.gid} ${e.args![field]}`)
    assert.deepEqual(summary(events[0], 'filename'), workloadPaths(5).map((path) => `capwl-b ${b.pid} ${NOBODY}:${NOBODY} ${path}`))
    assert.deepEqual(summary(events[1], 'ret'), [3, 100, 101, 102].map((ret) => `capwl-a ${a.pid} 0:0 ${ret}`))
    // ENOENT for the six paths and the long one, EFAULT for the bad pointer, then fd 3
    assert.deepEqual(summary(events[2], 'ret'), [-2, -2, -2, -2, -2, -2, -2, -14, 3].map((ret) => `capwl-b ${c.pid} 0:0 ${ret}`))
    assert.deepEqual(events[3].map((e) => e.pid), [b.pid, c.pid])
    assert.equal(capture.dropped(), 0)
  } finally {
    for (const workload of [a, b, c]) workload.kill()
    capture.close()
  }
})

test('str() of a user-space pointer, with comm and uid filtered in the kernel, prints what bpftrace prints', { timeout: 300_000 }, async () => {
  const workload = heldCaptureWorkload('capwl-str', 7, 0, NOBODY)
  // printf per event, in the order of the calls: a count map keyed by path would tie, and
  // bpftrace orders ties as its hash map happens to hold them
  const source = `BEGIN { printf("ready\\n") } tracepoint:syscalls:sys_enter_openat /comm == "capwl-str" && uid == ${NOBODY}/ { printf("%s %d %d [%s] [%s] [%s]\\n", comm, uid, gid, str(args->filename), str(args->filename, 12), str(args->filename, 70)); @opens = count(); } tracepoint:sched:sched_process_exit /comm == "capwl-str"/ { exit() }`
  assert.deepEqual(kernelFilter(compileProgram(source).program.probes[1]), { comm: 'capwl-str', uid: NOBODY })
  const bpftrace = startBpftrace(source)
  const run = await captureUntilExit(source)
  try {
    await bpftrace.started
    await workload.release()
    const ours = await run.output()
    assert.equal(`Attaching 3 probes...\nready\n${ours}`, await bpftrace.output())
    const lines = workloadPaths(7).map((path) => `capwl-str ${NOBODY} ${NOBODY} [${path}] [${path.slice(0, 12)}] [${path}]\n`)
    assert.equal(ours, `${lines.join('')}\n\n@opens: 10\n`)
    assert.equal(run.capture.dropped(), 0)
  } finally {
    workload.kill()
    bpftrace.kill()
    run.capture.close()
  }
})

test('a pid filter runs in the kernel and wildcards expand from tracefs', { timeout: 300_000 }, async () => {
  const traced = heldCaptureWorkload('capwl-pid', 2, 0)
  const other = heldCaptureWorkload('capwl-pid', 3, 0)
  const source = `tracepoint:syscalls:sys_enter_opena* /pid == ${traced.pid}/ { @[comm] = count(); } tracepoint:sched:sched_process_exit /pid == ${traced.pid}/ { exit() }`
  const pids = new Set<number>()
  const checked = compileProgram(source, { tracepointFields: tracefsFields() })
  const aggregator = new UserSpaceAggregator(checked.maps)
  let exited = false
  const evaluator = new Evaluator(checked, aggregator, { printf: () => {}, print: () => {}, exit: () => { exited = true } }, 0n)
  const capture = await captureTracepoints(checked, (probe, event) => {
    pids.add(event.pid)
    evaluator.fire(probe, event)
  })
  try {
    await other.release()
    await traced.release()
    await waitFor(() => exited, 'the exit of the traced workload', 60_000)
    // generic.bpf.c dropped the other workload's calls before the ring buffer
    assert.deepEqual([...pids], [traced.pid])
    assert.equal(exitText(aggregator.snapshots()), '\n\n@[capwl-pid]: 5\n')
  } finally {
    for (const workload of [traced, other]) workload.kill()
    capture.close()
  }
})

test('a str() field read as an address too, and str() of more than two pointer fields, are refused with their location', async () => {
  const refusal = async (source: string) => {
    const error = await captureTracepoints(compileProgram(source, { tracepointFields: tracefsFields() }), () => {}).then((capture) => { capture.close(); return undefined }, (error: unknown) => error)
    assert.ok(error instanceof BpftraceErrors, `${source} was attached`)
    return error.format(source)
  }
  const mixed = 'tracepoint:syscalls:sys_enter_openat { printf("%d %s\\n", args->filename, str(args->filename)) }'
  assert.equal(await refusal(mixed), `stdin:1:58-72: ERROR: args->filename of syscalls:sys_enter_openat is read through str() elsewhere, and arrives as the string the kernel copied: read it only through str()\n${mixed}\n${' '.repeat(57)}${'~'.repeat(14)}\n`)
  const three = 'tracepoint:syscalls:sys_enter_mount { printf("%s %s %s\\n", str(args->dev_name), str(args->dir_name), str(args->type)) }'
  assert.match(await refusal(three), /^stdin:1:102-116: ERROR: syscalls:sys_enter_mount: str\(\) of 3 pointer fields \(dev_name, dir_name, type\); the kernel copies at most 2 strings per record\n/)
})

test('Ctrl-C counts every event made before it: what the ring buffer still holds is read after the probes detach', { timeout: 300_000 }, async () => {
  // 900 reads of 100, 101, ... bytes after the release (the read that waits for it began
  // before the probes): sum and count stay in user space, so every record crosses the ring buffer
  const workload = heldCaptureWorkload('capwl-ctrlc', 0, 900)
  const ours = await ctrlCAfterExit(`BEGIN { printf("ready\\n") } tracepoint:syscalls:sys_enter_read /pid == ${workload.pid}/ { @bytes = sum(args->count); @n = count(); }`, workload)
  const bytes = Array.from({ length: 900 }, (_, i) => 100 + i).reduce((sum, n) => sum + n, 0)
  assert.equal(ours, `Attaching 2 probes...\nready\n\n\n@bytes: ${bytes}\n@n: 900\n`)
})

test('a __data_loc string (sched_process_exec filename) through str() prints what bpftrace prints', { timeout: 300_000 }, async () => {
  // the held shell execs dd (same pid): one exec record, whose filename the kernel keeps in the
  // record past its fixed part
  const workload = heldCommand('dd if=/dev/zero of=/dev/null count=1 status=none')
  const source = `BEGIN { printf("ready\\n") } tracepoint:sched:sched_process_exec /pid == ${workload.pid}/ { printf("%s|%s|%d\\n", str(args->filename), str(args->filename, 5), args->old_pid); exit() }`
  const { ours, theirs } = await besideBpftrace(source, workload)
  assert.equal(ours, theirs)
  assert.equal(ours, `Attaching 2 probes...\nready\n/usr/bin/dd|/usr/|${workload.pid}\n\n\n`)
})
