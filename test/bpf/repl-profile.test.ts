/**
 * profile:hz:99 one-liners with ustack/kstack (repl/bpftrace/profile.ts) beside Debian's
 * bpftrace 0.17 sampling the same process at the same time. Samples differ run to run, so the
 * stacks' text is compared, and the total against 99 Hz × the seconds sampled.
 *
 * bpftrace walks user stacks by frame pointers and stops in libc's start code; ours are unwound
 * with .eh_frame and go on to `__libc_start_main` and `_start`: those two frames are set aside.
 */
import assert from 'node:assert/strict'
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { chmodSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import type { TraceEvent } from '../../repl/bpftrace/evaluate.ts'
import { captureProfiles } from '../../repl/bpftrace/profile.ts'
import { compileProgram } from '../../repl/bpftrace/program.ts'
import { runOneLiner } from '../../repl/bpftrace/run.ts'
import { trace, type TracedEvent } from '../../repl/explore.ts'
import { cpuSeconds, root, stealSeconds, waitFor } from './kernel.ts'
import { bpftraceVersion, errorOf } from './repl-bpftrace.ts'

const directory = mkdtempSync(join(tmpdir(), 'periscope-repl-profile-'))
after(() => rmSync(directory, { recursive: true, force: true }))
// the spinner runs as nobody too
chmodSync(directory, 0o755)
const spin = join(directory, 'repl-profile-spin')
const NOBODY = 65534
execFileSync('gcc', ['-O2', '-fno-omit-frame-pointer', '-o', spin, join(root, 'test/bpf/fixtures/repl-profile-spin.c')])

const SECONDS = 2

/** `@[stack]: n` entries of a printed map, by stack text (frames joined by newlines). */
function stackKeys(output: string): Map<string, number> {
  const keys = new Map<string, number>()
  for (const match of output.matchAll(/^@\[\n((?: {4}\S.*\n)*)\]: (\d+)$/gm)) keys.set(match[1]!, Number(match[2]))
  return keys
}

/**
 * What bounds the samples of a workload. `inner`: its CPU seconds from our "Attaching" to the
 * abort, which were all sampled. `outer`: its CPU seconds from before our probes were attached to
 * after they were detached, plus the steal of every vCPU in that time (see cpuSeconds): CI once
 * counted 191 samples (1.93 s at 99 Hz) where the inner window had 1.61 s.
 */
interface SampledCpu { inner: number; outer: number }

/**
 * Runs `program` in bpftrace and ours at once for SECONDS; both outputs, and the CPU seconds
 * `workload` used while ours sampled (what the sample count follows on a loaded machine).
 */
async function sideBySide(program: string, workload?: number): Promise<{ bpftrace: string; ours: string; cpu: SampledCpu }> {
  const cpuOf = () => workload === undefined ? 0 : cpuSeconds(workload)
  const child = spawn('bpftrace', ['-e', `BEGIN { printf("ready\\n") } ${program}`], { stdio: ['ignore', 'pipe', 'ignore'] })
  let stdout = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
  const exited = once(child, 'close')
  try {
    await waitFor(() => stdout.includes('ready\n') || child.exitCode !== null, 'bpftrace attaching its probes', 120_000)
    assert.equal(child.exitCode, null, 'bpftrace exited before attaching')
    let ours = ''
    const abort = new AbortController()
    const beforeAttach = cpuOf() + stealSeconds()
    const running = runOneLiner(program, { write: (text) => { ours += text }, signal: abort.signal })
    await waitFor(() => ours.startsWith('Attaching'), 'our probes attaching', 60_000)
    const started = Date.now()
    const attached = cpuOf()
    await waitFor(() => Date.now() - started >= SECONDS * 1000, `${SECONDS} s of sampling`, 60_000)
    abort.abort()
    const inner = cpuOf() - attached
    child.kill('SIGINT')
    await within(running, 60_000, 'our one-liner to end after its abort')
    const outer = cpuOf() + stealSeconds() - beforeAttach
    await bpftraceExit(child, exited)
    return { bpftrace: stdout, ours, cpu: { inner, outer } }
  } finally {
    child.kill('SIGKILL')
  }
}

/** `promise`, or a failure naming `what` after `ms` (a test that waits forever stops its whole file). */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms) })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * bpftrace's exit after the SIGINT just sent, which prints its maps. A CI run once found bpftrace
 * alive in its poll loop 15 minutes after the SIGINT; a SIGTERM (which it handles the same way)
 * follows after 30 s, and a failure that says so after 60.
 */
async function bpftraceExit(child: ChildProcess, exited: Promise<unknown>): Promise<void> {
  try {
    await within(exited, 30_000, 'bpftrace to exit after SIGINT')
  } catch {
    child.kill('SIGTERM')
    await within(exited, 30_000, 'bpftrace to exit after SIGINT, then SIGTERM')
  }
}

function startWorkload(command: string, args: string[]): ChildProcess {
  const child = spawn(command, args, { stdio: 'ignore' })
  after(() => child.kill('SIGKILL'))
  return child
}

test('@[ustack] of a spinning C program names the chain as bpftrace does, in its key format', { timeout: 300_000 }, async () => {
  assert.match(bpftraceVersion(), /v0\.17\./)
  const workload = startWorkload(spin, [])
  const { bpftrace, ours, cpu } = await sideBySide(`profile:hz:99 /pid == ${workload.pid}/ { @[ustack] = count(); }`, workload.pid)
  workload.kill('SIGKILL')
  const theirs = stackKeys(bpftrace)
  const mine = stackKeys(ours)
  assert.ok(theirs.size > 0, `bpftrace printed no stack:\n${bpftrace}`)
  const trimmed = new Map<string, number>()
  for (const [stack, count] of mine) {
    assert.match(stack, /\n {4}__libc_start_main\+\d+\n {4}_start\+\d+\n$/, `our stack goes on past bpftrace's to _start:\n${stack}`)
    const key = stack.replace(/ {4}__libc_start_main\+\d+\n {4}_start\+\d+\n$/, '')
    trimmed.set(key, (trimmed.get(key) ?? 0) + count)
  }
  // the spinning thread is always in leaf, middle, outer or main's loop
  const chain = /^(?: {4}leaf\+\d+\n {4}middle\+9\n {4}outer\+9\n| {4}middle\+\d+\n {4}outer\+9\n| {4}outer\+\d+\n|) {4}main\+\d+\n {4}__libc_start_call_main\+\d+\n$/
  for (const stack of trimmed.keys()) assert.match(stack, chain)
  const top = (keys: Map<string, number>) => [...keys].sort((a, b) => b[1] - a[1])[0]![0].replace(/^( {4}leaf)\+\d+/, '$1')
  assert.equal(top(trimmed), top(theirs), 'the hottest stack, but for the sampled offset in leaf')
  const total = [...mine.values()].reduce((a, b) => a + b, 0)
  // one sample per 1/99 s of the thread's CPU time (ticks of 10 ms: a few samples either way)
  assert.ok(cpu.inner >= 0.5, `the spinning thread ran ${cpu.inner} s of ${SECONDS}: the machine is too busy to sample it`)
  const counted = `${total} samples of a thread that ran ${cpu.inner} s on a CPU while sampled, ${cpu.outer} s with attach, detach and stolen time, at 99 Hz`
  assert.ok(total >= cpu.inner * 99 * 0.85 - 3, counted)
  assert.ok(total <= cpu.outer * 99 * 1.15 + 3, counted)
})

test('@[kstack] of a program busy in read() names the kernel functions bpftrace names', { timeout: 300_000 }, async () => {
  const workload = startWorkload('dd', ['if=/dev/zero', 'of=/dev/null', 'bs=1M', 'count=100000000'])
  const { bpftrace, ours } = await sideBySide(`profile:hz:99 /pid == ${workload.pid}/ { @[kstack] = count(); }`)
  workload.kill('SIGKILL')
  const theirs = stackKeys(bpftrace)
  const mine = stackKeys(ours)
  assert.ok(mine.size > 0, `we printed no kernel stack:\n${ours}`)
  const hottest = [...mine].sort((a, b) => b[1] - a[1])[0]![0]
  assert.match(hottest, /\n {4}do_syscall_64\+\d+\n {4}entry_SYSCALL_64_after_hwframe\+\d+\n$/)
  assert.ok(theirs.has(hottest), `our hottest kernel stack is one bpftrace printed:\n${hottest}\nbpftrace's:\n${[...theirs.keys()].join('--\n')}`)
})

/** Blocks of `printf("%s|\n", stack)` output: the text between the bars. */
const printed = (output: string) => output.split('|\n').slice(0, -1).map((block) => block.replace(/^[^]*?(?=\n[\t ])/, ''))

/**
 * A printf'd user stack of the spinner as a frame-pointer walk gives it (bpftrace's): the chain
 * from the sampled function, except that a sample before the function's `push %rbp` or after its
 * `pop %rbp` (`outer+0`, `outer+21` in CI) loses its caller: the walk starts from the caller's frame.
 */
function frameWalked(block: string): boolean {
  const chain = ['leaf', 'middle', 'outer', 'main', '__libc_start_call_main']
  const names = [...block.matchAll(/^ {8}(\w+)\+\d+$/gm)].map((m) => m[1]!)
  const at = chain.indexOf(names[0]!)
  if (at < 0) return false
  const rest = names.slice(1).join(',')
  return rest === chain.slice(at + 1).join(',') || rest === chain.slice(at + 2).join(',')
}

test('ustack in printf, ustack(perf, 3) and ustack(2) keys print in bpftrace\'s forms', { timeout: 300_000 }, async () => {
  const workload = startWorkload(spin, [])
  const { bpftrace, ours } = await sideBySide(`profile:hz:99 /pid == ${workload.pid}/ { printf("%s|\\n", ustack); @p[ustack(perf, 3)] = count(); @u[ustack(2)] = count(); @k[kstack] = count(); }`)
  workload.kill('SIGKILL')
  // printf: 8 spaces, the chain down to __libc_start_call_main (and on to _start in ours); a
  // sample in main's own loop (main+13, between its calls of outer) starts at main
  const frame8 = (name: string) => ` {8}${name}\\+\\d+\\n`
  const printfForm = new RegExp(`^\\n(?:${frame8('leaf')}${frame8('middle')}${frame8('outer')}|${frame8('middle')}${frame8('outer')}|${frame8('outer')}|)${frame8('main')}${frame8('__libc_start_call_main')}`)
  for (const [who, output] of [['bpftrace', bpftrace], ['ours', ours]]) {
    const blocks = printed(output.split('\n\n\n')[0]!)
    assert.ok(blocks.length > 10, `${who} printed ${blocks.length} stacks`)
    for (const block of blocks) {
      if (who === 'bpftrace') assert.ok(frameWalked(block), `bpftrace's printf of ustack:${block}`)
      else assert.match(block, printfForm, `${who}'s printf of ustack`)
    }
  }
  // perf mode: a tab, the address in hex, the name and the file; the same addresses in both
  const perfKeys = (output: string) => new Set([...output.matchAll(/^@p\[\n((?:\t.*\n){3})\]: \d+$/gm)].map((m) => m[1]!))
  const theirs = perfKeys(bpftrace)
  const mine = perfKeys(ours)
  for (const key of mine) assert.match(key, new RegExp(`^(?:\\t[0-9a-f]+ \\w+\\+\\d+ \\(/[^)]+\\)\\n){3}$`))
  assert.ok([...mine].some((key) => theirs.has(key)), `a perf-mode stack both printed:\nours:\n${[...mine].join('--\n')}\nbpftrace's:\n${[...theirs].join('--\n')}`)
  // a limit of 2 frames; the kernel stack of user code is empty: `@k[]`
  for (const key of ours.matchAll(/^@u\[\n((?: {4}.*\n)*)\]/gm)) assert.equal(key[1]!.split('\n').length - 1, 2)
  assert.match(ours, /^@k\[\]: \d+$/m)
  assert.match(bpftrace, /^@k\[\]: \d+$/m)
})

test('misplaced stack modes are refused where they are', async () => {
  assert.match(await errorOf('profile:hz:99 { @[ustack(3, perf)] = count(); }'), /^stdin:1:17-\d+: ERROR: ustack\(\) takes a stack mode \(bpftrace or perf\) then a number of frames/)
  assert.match(await errorOf('profile:hz:99 { printf("%d", perf); }'), /^stdin:1:30-34: ERROR: the stack mode perf is only an argument of ustack\(\) or kstack\(\)/)
})

test("trace('profile:hz:99', { pid }) streams samples with their named stacks", { timeout: 300_000 }, async () => {
  const workload = startWorkload(spin, [])
  const events: TracedEvent[] = []
  for await (const event of trace('profile:hz:99', { pid: workload.pid! }).take(20)) events.push(event)
  workload.kill('SIGKILL')
  assert.equal(events.length, 20)
  // the whole chain from the sampled function (main's own loop included) to _start, unwound by .eh_frame
  const chain = ['leaf', 'middle', 'outer', 'main', '__libc_start_call_main', '__libc_start_main', '_start']
  for (const event of events) {
    assert.equal(event.probe, 'profile:hz:99')
    assert.equal(event.pid, workload.pid)
    assert.equal(event.comm, 'repl-profile-sp')
    const names = event.ustack!.map((frame) => frame.symbol.replace(/\+\d+$/, ''))
    assert.deepEqual(names, chain.slice(Math.max(0, chain.indexOf(names[0]!))))
    // user code has no kernel stack, unless the sample came while the kernel handled an
    // interrupt taken in it (seen here: the timer interrupt's softirq, sched_balance_softirq)
    const kernel = event.kstack!.map((frame) => frame.symbol.replace(/\+\d+$/, ''))
    if (kernel.length > 0) assert.match(kernel.at(-1)!, /^asm_(?:sysvec_\w+|common_interrupt)$/, kernel.join(' < '))
  }
})

test('comm == and uid == filters of profile probes run in the kernel: no sample of another task reaches user space', { timeout: 300_000 }, async () => {
  const mine = startWorkload(spin, [])
  // the same program as another user: its samples differ only by uid
  const theirs = spawn(spin, [], { stdio: 'ignore', uid: NOBODY, gid: NOBODY })
  after(() => theirs.kill('SIGKILL'))
  const seen = { comm: [] as TraceEvent[], uid: [] as TraceEvent[], nothing: [] as TraceEvent[] }
  const sample = (predicate: string, into: TraceEvent[]) => captureProfiles(compileProgram(`profile:hz:99 /${predicate}/ {}`), (_probe, event) => { into.push(event) })
  const captures = [
    await sample('comm == "repl-profile-sp"', seen.comm),
    await sample(`uid == ${NOBODY}`, seen.uid),
    await sample('comm == "no-such-task"', seen.nothing),
  ]
  try {
    await waitFor(() => seen.comm.length >= 40 && seen.uid.some((e) => e.pid === theirs.pid), 'samples of both spinners', 60_000)
  } finally {
    for (const capture of captures) capture?.close()
  }
  // what the kernel sent is all these probes were handed: no other task's sample, whatever it ran
  assert.deepEqual(seen.nothing, [])
  assert.deepEqual(new Set(seen.comm.map((e) => e.comm)), new Set(['repl-profile-sp']))
  assert.ok(seen.comm.some((e) => e.pid === mine.pid) && seen.comm.some((e) => e.pid === theirs.pid), 'both spinners sampled by comm')
  assert.deepEqual(new Set(seen.uid.map((e) => e.uid)), new Set([NOBODY]))
  assert.ok(!seen.uid.some((e) => e.pid === mine.pid), "root's spinner is not sampled by uid")
})
