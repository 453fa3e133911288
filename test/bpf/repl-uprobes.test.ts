/**
 * uprobe and uretprobe one-liners (repl/bpftrace/uprobes.ts, bpf/lib/generic_uprobe.bpf.c) on a
 * C program built here, while Debian's bpftrace runs the same one-liner on the same process:
 * argument registers, return values, a wildcard over the binary's functions, the pid filter in
 * the kernel; both print their maps when the program calls repl_done(), where they exit(). Ours
 * must be the same bytes, and the counts are exact (the workload is deterministic).
 *
 * When two uprobe probes name the same function, bpftrace 0.17 runs the first probe's actions
 * for both (measured, 10 calls each of repl_work_add6 and repl_work_square:
 * `uprobe:t:repl_work_add6 { @a = count() } uprobe:t:repl_work_* { @b = count() }` prints
 * @a: 20, @b: 10), so the wildcard here matches functions no other probe names; ours runs
 * each probe's own actions (20 and 20).
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { runOneLiner } from '../../repl/bpftrace/run.ts'
import { probes } from '../../repl/explore.ts'
import { root, waitFor } from './kernel.ts'
import { besideBpftrace, bpftraceErrors, errorOf, bpftraceVersion, ctrlCAfterExit, holdProcess, type HeldProcess } from './repl-bpftrace.ts'

const directory = mkdtempSync(join(tmpdir(), 'periscope-repl-uprobes-'))
after(() => rmSync(directory, { recursive: true, force: true }))
const target = join(directory, 'repl-uprobe-target')
execFileSync('gcc', ['-O2', '-o', target, join(root, 'test/bpf/fixtures/repl-uprobe-target.c')])

/** The target, held on its stdin until released; it then makes `count` rounds of calls and exits. */
const heldTarget = (count: number): HeldProcess => holdProcess(target, [String(count)], 'the uprobe target')


const program = (pid: number) => `BEGIN { printf("ready\\n") } ` +
  `uprobe:${target}:repl_work_add6 /pid == ${pid}/ { @calls = count(); @a0 = sum(arg0); @a5 = sum(arg5); @third = lhist(arg2, 0, 100, 10); } ` +
  `uretprobe:${target}:repl_work_square /pid == ${pid}/ { @squares = hist(retval); @s = stats(retval); } ` +
  `uprobe:${target}:repl_step_* /pid == ${pid}/ { @steps[comm] = count(); } ` +
  `uprobe:${target}:repl_done /pid == ${pid}/ { printf("done %d\\n", tid == pid); exit(); }`

test('uprobe and uretprobe one-liners print what bpftrace prints for the same calls', { timeout: 300_000 }, async () => {
  assert.match(bpftraceVersion(), /v0\.17\./)
  const workload = heldTarget(100)
  const { ours, theirs } = await besideBpftrace(program(workload.pid), workload)
  assert.equal(ours, theirs)
  // i = 0..99: arg0 sums to 4950, arg5 to 4950 + 500; each i * i once
  assert.match(ours, /^Attaching 6 probes\.\.\.\nready\ndone 1\n\n\n@a0: 4950\n@a5: 5450\n@calls: 100\n/)
  assert.match(ours, /\n@s: count 100, average 3283, total 328350\n/)
  assert.match(ours, /\n@steps\[repl-uprobe-tar\]: 200\n/)
})

test('the pid filter runs in the kernel: another process running the same function is not counted', { timeout: 300_000 }, async () => {
  const traced = heldTarget(30)
  const other = heldTarget(50)
  let ours = ''
  try {
    const run = runOneLiner(`BEGIN { printf("ready\\n") } uprobe:${target}:repl_work_square /pid == ${traced.pid}/ { @[pid] = count(); } uprobe:${target}:repl_done /pid == ${traced.pid}/ { exit(); }`, { write: (text) => { ours += text } })
    await waitFor(() => ours.includes('ready\n'), 'runOneLiner attaching its probes', 60_000)
    await other.release()
    await traced.release()
    await run
    assert.equal(ours, `Attaching 3 probes...\nready\n\n\n@[${traced.pid}]: 30\n`)
  } finally {
    traced.kill()
    other.kill()
  }
})

test('a library name (uprobe:libc:printf) is the library bpftrace finds, listed and counted as bpftrace lists and counts it', { timeout: 300_000 }, async () => {
  for (const pattern of ['uprobe:libc:fgets', 'uretprobe:libssl:SSL_write', 'uprobe:libm:sqrt']) {
    assert.equal(String(probes(pattern)), execFileSync('bpftrace', ['-l', pattern], { encoding: 'utf8' }))
  }
  const workload = heldTarget(3)
  // the target prints its sum once, with libc's printf, as it ends
  const source = `BEGIN { printf("ready\\n") } uprobe:${target}:repl_step_one /pid == ${workload.pid}/ { @steps = count(); } uprobe:libc:printf /pid == ${workload.pid}/ { @printf = count(); exit(); }`
  const { ours, theirs } = await besideBpftrace(source, workload)
  assert.equal(ours, theirs)
  assert.match(ours, /\n@printf: 1\n@steps: 3\n$/)
  const unknown = 'uprobe:nosuchlib:f { @ = count(); }'
  assert.equal(await errorOf(unknown), bpftraceErrors(unknown))
})

test('a missing binary, a missing symbol and a wildcard matching nothing are errors at the probe', { timeout: 120_000 }, async () => {
  for (const missingBinary of ['uprobe:/nonexistent/binary:main { @ = count(); }', 'BEGIN { }\nuretprobe:/nonexistent/binary:main { @ = count(); }']) {
    assert.equal(await errorOf(missingBinary), bpftraceErrors(missingBinary))
  }
  assert.equal(await errorOf(`uprobe:${target}:no_such_function { @ = count(); }`),
    `stdin:1:1-${target.length + 25}: ERROR: ${target} has no function symbol no_such_function (searched .dynsym and .symtab)\nuprobe:${target}:no_such_function { @ = count(); }\n${'~'.repeat(target.length + 24)}\n`)
  assert.equal(await errorOf(`uretprobe:${target}:nothing_like_this* { @ = count(); }`),
    `stdin:1:1-${target.length + 30}: ERROR: no function of ${target} matches nothing_like_this*\nuretprobe:${target}:nothing_like_this* { @ = count(); }\n${'~'.repeat(target.length + 29)}\n`)
})

test('Ctrl-C counts every call made before it: what the ring buffer still holds is read after the probes detach', { timeout: 300_000 }, async () => {
  // 10,000 rounds: 20,000 records of 112 bytes, which the 4 MiB ring buffer holds unread
  const workload = heldTarget(10_000)
  const ours = await ctrlCAfterExit(`BEGIN { printf("ready\\n") } uprobe:${target}:repl_step_* /pid == ${workload.pid}/ { @steps = count(); }`, workload)
  assert.equal(ours, 'Attaching 3 probes...\nready\n\n\n@steps: 20000\n')
})
