/**
 * One-liners over real tracepoints: records copied by the library's generic.bpf.c
 * (repl/bpftrace/capture.ts), decoded with the tracefs format and run through the evaluator,
 * while Debian's bpftrace runs the same one-liner on the same workload. Both print their maps
 * when the workload exits (a sched_process_exit probe calls exit()): ours must be the same
 * bytes.
 *
 * The workload is a shell held on its stdin until both tracers have attached; it then execs
 * dd, keeping its pid, so the one-liners filter on that pid and the filter runs in the kernel.
 * It must: a probe on sys_exit_read without a kernel filter sees this process's own reads of
 * its event-loop wakeups, each a record that wakes it again (see capture.ts).
 */
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { UserSpaceAggregator } from '../../repl/bpftrace/aggregate.ts'
import { captureTracepoints, type Capture } from '../../repl/bpftrace/capture.ts'
import { BpftraceErrors } from '../../repl/bpftrace/errors.ts'
import { Evaluator } from '../../repl/bpftrace/evaluate.ts'
import { kernelFilter } from '../../repl/bpftrace/kernel-filter.ts'
import { compileProgram } from '../../repl/bpftrace/program.ts'
import { runOneLiner } from '../../repl/bpftrace/run.ts'
import { tracefsFields } from '../../repl/bpftrace/tracefs.ts'
import { exitText } from '../../repl/printers.ts'
import { waitFor } from './kernel.ts'
import { bpftraceVersion } from './repl-bpftrace.ts'

/** A shell that execs `command` (same pid) once released. */
function heldWorkload(command: string): { pid: number; release(): Promise<void>; kill(): void } {
  const child: ChildProcess = spawn('/bin/sh', ['-c', `read go; exec ${command}`], { stdio: ['pipe', 'ignore', 'inherit'] })
  const exited = once(child, 'exit')
  return {
    pid: child.pid!,
    async release() {
      child.stdin!.end('go\n')
      const [code] = await exited
      assert.equal(code, 0, `${command} failed`)
    },
    kill: () => child.kill('SIGKILL'),
  }
}

/**
 * bpftrace running `program`; `started` resolves once its BEGIN printed "ready" (bpftrace runs
 * BEGIN after attaching every probe, and prints "Attaching N probes..." before it attaches).
 */
function startBpftrace(program: string) {
  const child = spawn('bpftrace', ['-e', program], { stdio: ['ignore', 'pipe', 'ignore'] })
  let stdout = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
  const exited = once(child, 'exit')
  return {
    started: waitFor(() => stdout.includes('ready\n') || child.exitCode !== null, 'bpftrace attaching its probes', 120_000).then(() => assert.equal(child.exitCode, null, 'bpftrace exited before attaching')),
    /** everything it printed once it exits by itself */
    output: async () => {
      await exited
      return stdout
    },
    kill: () => child.kill('SIGKILL'),
  }
}

const oneLiner = (pid: number) => `BEGIN { printf("ready\\n") } tracepoint:syscalls:sys_exit_read /pid == ${pid} && comm == "dd" && args->ret >= 0/ { @bytes = hist(args->ret); @n[comm] = count(); @s = stats(args->ret); @l = lhist(args->ret, 0, 8192, 1024); @big = max(args->ret) } tracepoint:sched:sched_process_exit /pid == ${pid}/ { exit() }`

test('a hist, lhist, stats, max and count one-liner over sys_exit_read prints what bpftrace prints for the same reads', { timeout: 300_000 }, async () => {
  assert.match(bpftraceVersion(), /v0\.17\./)
  const workload = heldWorkload('dd if=/dev/zero of=/dev/null bs=1000 count=60 status=none')
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

test('a pid filter runs in the kernel, wildcards expand from tracefs, and uid is refused until recorded', { timeout: 120_000 }, async () => {
  const source = `tracepoint:syscalls:sys_enter_getppi* /pid == ${process.pid}/ { @calls[comm] = count(); }`
  const checked = compileProgram(source, { tracepointFields: tracefsFields() })
  const aggregator = new UserSpaceAggregator(checked.maps)
  const evaluator = new Evaluator(checked, aggregator, { printf: () => {}, print: () => {}, exit: () => {} }, 0n)
  const pids = new Set<number>()
  let delivered = 0
  const capture = await captureTracepoints(checked, (probe, event) => {
    pids.add(event.pid)
    delivered++
    evaluator.fire(probe, event)
  })
  try {
    // each read of process.ppid is one getppid() call by this process
    let sum = 0
    for (let i = 0; i < 10; i++) sum += process.ppid
    assert.ok(sum > 0)
    spawnSync('/bin/sh', ['-c', 'for i in 1 2 3; do echo $PPID > /dev/null; done'])
    await waitFor(() => delivered >= 10, 'ten getppid records', 60_000)
    // generic.bpf.c dropped every other process's calls before the ring buffer
    assert.deepEqual([...pids], [process.pid])
    assert.equal(exitText(aggregator.snapshots()), `\n\n@calls[${readFileSync('/proc/self/comm', 'utf8').trim()}]: 10\n`)
  } finally {
    capture.close()
  }
  const uid = 'tracepoint:syscalls:sys_enter_getppid /uid == 0/ { @ = count(); }'
  await assert.rejects(captureTracepoints(compileProgram(uid), () => {}), (error: unknown) => error instanceof BpftraceErrors && error.format(uid) === 'stdin:1:39-43: ERROR: uid is not recorded by the generic tracepoint program yet\ntracepoint:syscalls:sys_enter_getppid /uid == 0/ { @ = count(); }\n                                      ~~~~\n')
})

test('runOneLiner prints what bpftrace -e prints, from "Attaching" to the maps, for a one-liner that ends itself with exit()', { timeout: 300_000 }, async () => {
  const workload = heldWorkload('dd if=/dev/zero of=/dev/null bs=3000 count=9 status=none')
  const source = oneLiner(workload.pid)
  const bpftrace = startBpftrace(source)
  let ours = ''
  const abort = new AbortController()
  try {
    const run = runOneLiner(source, { write: (text) => { ours += text }, signal: abort.signal })
    await waitFor(() => ours.includes('ready\n'), 'runOneLiner attaching its probes', 60_000)
    await bpftrace.started
    await workload.release()
    await run
    assert.equal(ours, await bpftrace.output())
    assert.match(ours, /^Attaching 3 probes\.\.\.\nready\n\n\n@big: \d+\n@bytes: \n/)
  } finally {
    abort.abort()
    workload.kill()
    bpftrace.kill()
  }
})
