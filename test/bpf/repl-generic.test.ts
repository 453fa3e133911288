/**
 * A one-liner over a real tracepoint: records of syscalls:sys_exit_read copied by the library's
 * generic.bpf.c (repl/bpftrace/capture.ts), decoded with the tracefs format and run through the
 * evaluator, while Debian's
 * bpftrace runs the same one-liner on the same workload (dd reading fixed block sizes). After
 * Ctrl-C (SIGINT) bpftrace prints its maps: ours must be the same bytes.
 */
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { test } from 'node:test'
import { UserSpaceAggregator } from '../../repl/bpftrace/aggregate.ts'
import { captureTracepoints, type Capture } from '../../repl/bpftrace/capture.ts'
import { Evaluator } from '../../repl/bpftrace/evaluate.ts'
import { kernelFilter } from '../../repl/bpftrace/kernel-filter.ts'
import { BpftraceErrors } from '../../repl/bpftrace/errors.ts'
import { compileProgram } from '../../repl/bpftrace/program.ts'
import { runOneLiner } from '../../repl/bpftrace/run.ts'
import { tracefsFields } from '../../repl/bpftrace/tracefs.ts'
import { exitText } from '../../repl/printers.ts'
import { waitFor } from './kernel.ts'
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

  const aggregator = new UserSpaceAggregator(checked.maps)
  const evaluator = new Evaluator(checked, aggregator, { printf: () => {}, print: () => {}, exit: () => {} }, 0n)
  let markerSeen = false
  const bpftrace = await startBpftrace(PROGRAM)
  let capture: Capture | undefined
  try {
    capture = await captureTracepoints(checked, (probe, event) => {
      if (event.comm === 'periscope-mark') markerSeen = true
      evaluator.fire(probe, event)
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
    assert.equal(capture.dropped(), 0)
    const ours = exitText(aggregator.snapshots())
    assert.equal(ours, theirs)
    // the dd reads, counted exactly: at least the blocks asked for
    assert.match(ours, /@n\[dd\]: \d+\n/)
    assert.ok(Number(/@n\[dd\]: (\d+)/.exec(ours)![1]) >= 40 + 25 + 3 + 7 + 2)
  } finally {
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
    assert.equal(exitText(aggregator.snapshots()), `\n\n@calls[${readComm()}]: 10\n`)
  } finally {
    capture.close()
  }
  const uid = 'tracepoint:syscalls:sys_enter_getppid /uid == 0/ { @ = count(); }'
  await assert.rejects(captureTracepoints(compileProgram(uid), () => {}), (error: unknown) => error instanceof BpftraceErrors && error.format(uid) === 'stdin:1:39-43: ERROR: uid is not recorded by the generic tracepoint program yet\ntracepoint:syscalls:sys_enter_getppid /uid == 0/ { @ = count(); }\n                                      ~~~~\n')
})

function readComm(): string {
  return readFileSync('/proc/self/comm', 'utf8').trim()
}

test('runOneLiner prints what bpftrace -e prints, from "Attaching" to the maps, for a one-liner that ends itself with exit()', { timeout: 300_000 }, async () => {
  const source = 'BEGIN { printf("ready\\n") } tracepoint:syscalls:sys_exit_read /comm == "dd"/ { @[comm] = count(); @h = hist(args->ret); @l = lhist(args->ret, 0, 5000, 500) } tracepoint:syscalls:sys_exit_read /comm == "periscope-mark"/ { exit() }'
  const bpftrace = spawn('bpftrace', ['-e', source], { stdio: ['ignore', 'pipe', 'ignore'] })
  let theirs = ''
  bpftrace.stdout.setEncoding('utf8').on('data', (chunk: string) => { theirs += chunk })
  const bpftraceExited = once(bpftrace, 'exit')
  let ours = ''
  const abort = new AbortController()
  try {
    await waitFor(() => theirs.includes('ready\n') || bpftrace.exitCode !== null, 'bpftrace attaching its probes', 120_000)
    const run = runOneLiner(source, { write: (text) => { ours += text }, signal: abort.signal })
    await waitFor(() => ours.includes('ready\n'), 'runOneLiner attaching its probes', 60_000)
    for (const [bs, count] of [[4096, 12], [512, 5], [3000, 2]]) assert.equal(spawnSync('dd', ['if=/dev/zero', 'of=/dev/null', `bs=${bs}`, `count=${count}`, 'status=none']).status, 0)
    const marker = join(mkdtempSync(join(tmpdir(), 'periscope-repl-')), 'periscope-mark')
    symlinkSync('/usr/bin/head', marker)
    assert.equal(spawnSync(marker, ['-c', '1', '/dev/zero'], { stdio: 'ignore' }).status, 0)
    rmSync(dirname(marker), { recursive: true })
    await run
    await bpftraceExited
    assert.equal(ours, theirs)
    assert.match(ours, /^Attaching 3 probes\.\.\.\nready\n\n\n@\[dd\]: \d+\n@h: \n/)
  } finally {
    abort.abort()
    bpftrace.kill('SIGKILL')
  }
})
