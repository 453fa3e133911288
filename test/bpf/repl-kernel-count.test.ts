/**
 * Counting one-liners counted in the kernel (repl/bpftrace/kernel-count.ts), beside Debian's
 * bpftrace running the same one-liner on the same workload at the same time:
 * test/bpf/fixtures/kernel-count-workload.c, which waits on stdin until both have attached,
 * then makes a known set of reads (or getppid calls) in children and exits.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { UserSpaceAggregator } from '../../repl/bpftrace/aggregate.ts'
import { captureTracepoints, type Capture } from '../../repl/bpftrace/capture.ts'
import { Evaluator } from '../../repl/bpftrace/evaluate.ts'
import { KernelCountingAggregator, planCounts } from '../../repl/bpftrace/kernel-count.ts'
import { kernelFilter, type KernelFilter } from '../../repl/bpftrace/kernel-filter.ts'
import { compileProgram } from '../../repl/bpftrace/program.ts'
import { runOneLiner } from '../../repl/bpftrace/run.ts'
import { readFormat, tracefsFields, type TracepointFormat } from '../../repl/bpftrace/tracefs.ts'
import { exitText } from '../../repl/printers.ts'
import { root, waitFor } from './kernel.ts'
import { bpftraceVersion, holdProcess, startBpftrace, type HeldProcess } from './repl-bpftrace.ts'

const dir = mkdtempSync(join(tmpdir(), 'periscope-kernel-count-'))
process.once('exit', () => rmSync(dir, { recursive: true, force: true }))
// its comm: the children rename themselves kcwl-a, kcwl-b, kcwl-c and kcwl-fd
const workloadBinary = join(dir, 'kcwl')
execFileSync('cc', ['-O2', '-Wall', '-Werror', '-o', workloadBinary, join(root, 'test/bpf/fixtures/kernel-count-workload.c')])

/** The workload, blocked reading its stdin until released (`phases` reads a line before that too). */
const heldWorkload = (...args: string[]): HeldProcess => holdProcess(workloadBinary, args, `kernel-count-workload ${args.join(' ')}`)


/** runOneLiner of `source` until `stop()` (Ctrl-C) or its exit(). */
function startOneLiner(source: string) {
  const abort = new AbortController()
  let printed = ''
  const run = runOneLiner(source, { write: (text) => { printed += text }, signal: abort.signal })
  return {
    printed: () => printed,
    started: waitFor(() => printed.includes('ready\n'), 'runOneLiner attaching its probes', 120_000),
    output: async (interrupt = false) => {
      if (interrupt) abort.abort()
      await run
      return printed
    },
    stop: () => abort.abort(),
  }
}

test('the kernel counts a tracepoint only when all its probes only count() keys it can make, under a filter it applies whole', () => {
  /** for each tracepoint of `source`'s probes, in order: whether the kernel counts it */
  const counted = (source: string) => {
    const checked = compileProgram(source, { tracepointFields: tracefsFields() })
    const slots = new Map<string, { probes: number[]; filter: KernelFilter; format: TracepointFormat }>()
    checked.program.probes.forEach((probe, index) => {
      for (const point of probe.attachPoints) {
        if (point.provider !== 'tracepoint') continue
        const slot = slots.get(`${point.category}:${point.name}`)
        if (slot) slot.probes.push(index)
        else slots.set(`${point.category}:${point.name}`, { probes: [index], filter: kernelFilter(probe), format: readFormat(point.category, point.name)! })
      }
    })
    return planCounts(checked, [...slots.values()]).map((slot) => slot !== undefined)
  }
  const read = 'tracepoint:syscalls:sys_enter_read'
  assert.deepEqual(counted(`${read} { @[comm] = count(); }`), [true])
  assert.deepEqual(counted(`${read} /pid == 5 && comm == "x" && uid == 0/ { @a[args->fd, cpu] = count(); @b = count(); @c[tid, gid, comm, pid] = count(); @d[uid] = count(); }`), [true])
  // five statements, five key parts: more than one slot holds
  assert.deepEqual(counted(`${read} { @a = count(); @b = count(); @c = count(); @d = count(); @e = count(); }`), [false])
  assert.deepEqual(counted(`${read} { @[pid, tid, uid, gid, cpu] = count(); }`), [false])
  // a filter part the kernel does not apply, or contradicting parts (the kernel keeps one)
  assert.deepEqual(counted(`${read} /args->fd == 3/ { @ = count(); }`), [false])
  assert.deepEqual(counted(`${read} /pid == 5 || pid == 6/ { @ = count(); }`), [false])
  assert.deepEqual(counted(`${read} /pid == 5 && pid == 6/ { @ = count(); }`), [false])
  // anything but count(), or a key the kernel cannot make (a pointer field, a string, an expression)
  assert.deepEqual(counted(`${read} { @[comm] = count(); printf("x\\n"); }`), [false])
  assert.deepEqual(counted(`${read} { @[args->buf] = count(); }`), [false])
  assert.deepEqual(counted(`tracepoint:syscalls:sys_enter_openat { @[str(args->filename)] = count(); }`), [false])
  assert.deepEqual(counted(`${read} { @[pid / 2] = count(); }`), [false])
  // a map read or deleted from elsewhere stays in user space; print and clear may name it
  assert.deepEqual(counted(`${read} { @x[pid] = count(); } interval:s:1 { printf("%d\\n", @x[1]); }`), [false])
  assert.deepEqual(counted(`${read} { @x[pid] = count(); } interval:s:1 { delete(@x[1]); }`), [false])
  assert.deepEqual(counted(`${read} { @x[pid] = count(); } interval:s:1 { print(@x); clear(@x); }`), [true])
  // probes sharing a tracepoint: counted when all count under one filter
  assert.deepEqual(counted(`${read} /comm == "a"/ { @a = count(); } ${read} /comm == "a"/ { @b[pid] = count(); }`), [true])
  assert.deepEqual(counted(`${read} /comm == "a"/ { @a = count(); } ${read} /comm == "b"/ { @b = count(); }`), [false])
  assert.deepEqual(counted(`${read} { @a = count(); } ${read} { printf("%d\\n", pid); } tracepoint:syscalls:sys_enter_write { @w = count(); }`), [false, true])
})

const ready = 'BEGIN { printf("ready\\n") }'
const exitWith = (pid: number) => `tracepoint:sched:sched_process_exit /pid == ${pid}/ { exit() }`

test('@[comm] = count() over every sys_enter_read is counted in the kernel, no record reaching user space, and the workload\'s lines are bpftrace\'s', { timeout: 300_000 }, async () => {
  assert.match(bpftraceVersion(), /v0\.17\./)
  const workload = heldWorkload('reads')
  const source = `${ready} tracepoint:syscalls:sys_enter_read { @[comm] = count(); } ${exitWith(workload.pid)}`
  const checked = compileProgram(source, { tracepointFields: tracefsFields() })
  const aggregator = new KernelCountingAggregator(checked.maps)
  const records = [0, 0, 0]
  let exited = false
  const evaluator = new Evaluator(checked, aggregator, { printf: () => {}, print: () => {}, exit: () => { exited = true } }, 0n)
  const bpftrace = startBpftrace(source)
  let capture: Capture | undefined
  try {
    capture = await captureTracepoints(checked, (probe, event) => {
      records[probe]++
      evaluator.fire(probe, event)
    }, undefined, aggregator)
    await bpftrace.started
    // a read by another process, to see counted too: cat reads /dev/null once (and its loader reads libc)
    execFileSync('cat', ['/dev/null'])
    await workload.release()
    await waitFor(() => exited, 'the exit of the workload', 60_000)
    const dropped = capture.dropped()
    capture.close()
    const ours = exitText(aggregator.snapshots())
    const theirs = await bpftrace.output()
    const workloadLines = (text: string) => text.split('\n').filter((line) => line.startsWith('@[kcwl-'))
    // bpftrace prints a count table by count, ascending
    assert.deepEqual(workloadLines(ours), ['@[kcwl-a]: 7', '@[kcwl-b]: 12', '@[kcwl-c]: 20', '@[kcwl-fd]: 28'])
    assert.deepEqual(workloadLines(theirs), workloadLines(ours))
    // the count probe ran in the kernel only; the exit probe's one record came through
    assert.deepEqual(records, [0, 0, 1])
    assert.equal(dropped, 0)
    // other processes' reads too (cat's among them), each line as bpftrace prints one
    assert.match(ours, /^\n\n(@\[[^\]\n]+\]: \d+\n)+$/)
    assert.match(ours, /\n@\[cat\]: \d+\n/)
    assert.match(theirs, /\n@\[cat\]: \d+\n/)
  } finally {
    workload.kill()
    bpftrace.kill()
    capture?.close()
  }
})

test('runOneLiner counts @[args->fd], @[comm, uid] and @ in the kernel and prints what bpftrace -e prints', { timeout: 300_000 }, async () => {
  const workload = heldWorkload('reads')
  const source = `${ready} tracepoint:syscalls:sys_enter_read /comm == "kcwl-fd"/ { @fds[args->fd] = count(); @who[comm, uid] = count(); @total = count(); } ${exitWith(workload.pid)}`
  const bpftrace = startBpftrace(source)
  const ours = startOneLiner(source)
  try {
    await ours.started
    await bpftrace.started
    await workload.release()
    const printed = await ours.output()
    assert.equal(printed, await bpftrace.output())
    assert.equal(printed, 'Attaching 3 probes...\nready\n\n\n@fds[3]: 5\n@fds[4]: 9\n@fds[5]: 14\n@total: 28\n@who[kcwl-fd, 0]: 28\n')
  } finally {
    ours.stop()
    workload.kill()
    bpftrace.kill()
  }
})

test('print(@x) and clear(@x) from another probe while the count runs in the kernel show and clear every count so far, as bpftrace does', { timeout: 300_000 }, async () => {
  const workload = heldWorkload('phases')
  // a first kcwl-c makes 20 reads, then the parent calls getppid() (print and clear) and waits
  // for a line before a second kcwl-c makes 7
  const source = `${ready} tracepoint:syscalls:sys_enter_read /comm == "kcwl-c"/ { @c[comm] = count(); @n = count(); } tracepoint:syscalls:sys_enter_getppid /pid == ${workload.pid}/ { print(@c); clear(@c); print(@n); } ${exitWith(workload.pid)}`
  const bpftrace = startBpftrace(source)
  const ours = startOneLiner(source)
  try {
    await ours.started
    await bpftrace.started
    workload.line()
    await waitFor(() => ours.printed().includes('@n: 20\n') && bpftrace.printed().includes('@n: 20\n'), 'both printing @c and @n at the getppid() call', 60_000)
    await workload.release()
    const printed = await ours.output()
    assert.equal(printed, await bpftrace.output())
    assert.equal(printed, 'Attaching 4 probes...\nready\n@c[kcwl-c]: 20\n@n: 20\n\n\n@c[kcwl-c]: 7\n@n: 27\n')
  } finally {
    ours.stop()
    workload.kill()
    bpftrace.kill()
  }
})

test('a key past the room the kernel has for a statement (65,536 keys) is reported as a lost event, and every key before it counted', { timeout: 300_000 }, async () => {
  const sizes = 65_536 + 100
  const workload = heldWorkload('sizes', String(sizes))
  const source = `tracepoint:syscalls:sys_enter_read /comm == "kcwl-sizes"/ { @[args->count] = count(); } ${exitWith(workload.pid)}`
  const checked = compileProgram(source, { tracepointFields: tracefsFields() })
  const aggregator = new KernelCountingAggregator(checked.maps)
  let exited = false
  const evaluator = new Evaluator(checked, aggregator, { printf: () => {}, print: () => {}, exit: () => { exited = true } }, 0n)
  const capture = await captureTracepoints(checked, (probe, event) => evaluator.fire(probe, event), undefined, aggregator)
  try {
    await workload.release()
    await waitFor(() => exited, 'the exit of the workload', 60_000)
    assert.equal(capture.dropped(), 100)
    capture.close()
    const entries = aggregator.snapshot(0).entries
    assert.equal(entries.length, 65_536)
    // one read of each size, in size order: the sizes that found room are 1 to 65,536
    assert.ok(entries.every((entry) => entry.value === 1n && (entry.key[0] as bigint) >= 1n && (entry.key[0] as bigint) <= 65_536n))
  } finally {
    workload.kill()
    capture.close()
  }
})

/** `@: N` of a `@ = count()` one-liner's output. */
function total(output: string): number {
  const match = /^@: (\d+)$/m.exec(output)
  assert.ok(match, `no @ count in:\n${output}`)
  return Number(match[1])
}

const CALLS_PER_CPU = 3_000_000
const flood = `${ready} tracepoint:raw_syscalls:sys_enter { @ = count(); }`

test('under getppid() in a loop on every CPU, raw_syscalls:sys_enter { @ = count(); } counts within 1% of bpftrace and loses nothing', { timeout: 600_000 }, async (t) => {
  const workload = heldWorkload('getppid', String(CALLS_PER_CPU))
  const bpftrace = startBpftrace(flood)
  const ours = startOneLiner(flood)
  try {
    await ours.started
    await bpftrace.started
    const started = process.hrtime.bigint()
    await workload.release()
    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    const printed = await ours.output(true)
    const theirs = total(await bpftrace.output(true))
    const counted = total(printed)
    const calls = CALLS_PER_CPU * cpus().length
    t.diagnostic(`kernel counting: ${counted} syscalls counted, bpftrace ${theirs}, workload ${calls} getppid in ${seconds.toFixed(2)} s (${Math.round(calls / seconds)}/s)`)
    assert.doesNotMatch(printed, /Lost \d+ events/)
    assert.ok(counted >= calls, `${counted} counted, fewer than the workload's ${calls} calls`)
    assert.ok(Math.abs(counted - theirs) / theirs < 0.01, `${counted} counted, bpftrace ${theirs}: more than 1% apart`)
  } finally {
    ours.stop()
    workload.kill()
    bpftrace.kill()
  }
})

test('the same flood through the ring buffer and the evaluator (the path every other one-liner takes) says how many records it lost', { timeout: 600_000 }, async (t) => {
  const workload = heldWorkload('getppid', String(CALLS_PER_CPU))
  const checked = compileProgram(flood, { tracepointFields: tracefsFields() })
  const aggregator = new UserSpaceAggregator(checked.maps)
  const evaluator = new Evaluator(checked, aggregator, { printf: () => {}, print: () => {}, exit: () => {} }, 0n)
  const bpftrace = startBpftrace(flood)
  let capture: Capture | undefined
  try {
    capture = await captureTracepoints(checked, (probe, event) => evaluator.fire(probe, event))
    await bpftrace.started
    await workload.release()
    // each of the workload's calls is counted or lost once the reader catches up
    const calls = CALLS_PER_CPU * cpus().length
    await waitFor(() => Number(aggregator.read(0, [])) + capture!.dropped() >= calls, 'the reader catching up with the ring buffer', 120_000)
    const dropped = capture.dropped()
    capture.close()
    const theirs = total(await bpftrace.output(true))
    const counted = total(exitText(aggregator.snapshots()))
    t.diagnostic(`user-space path: ${counted} syscalls counted and ${dropped} records lost, bpftrace ${theirs}`)
    // every event was either counted or lost: nothing vanishes unreported
    assert.ok(Math.abs(counted + dropped - theirs) / theirs < 0.01, `${counted} counted + ${dropped} lost, bpftrace ${theirs}`)
  } finally {
    workload.kill()
    bpftrace.kill()
    capture?.close()
  }
})
