/**
 * ustack and kstack in tracepoint and uprobe one-liners (repl/bpftrace/capture.ts, uprobes.ts),
 * beside Debian's bpftrace 0.17 on the same workload at the same time
 * (test/bpf/fixtures/repl-stacks-workload.c, built with frame pointers): a known chain of
 * functions making getppid(2), a uprobe on one of them, and getppid() through libc.
 *
 * bpftrace walks user stacks by frame pointers and stops in libc's start code; ours are unwound
 * with .eh_frame (bpf/include/event_stacks.h) and go on to `__libc_start_main` and `_start`:
 * those two frames are set aside before comparing. Where a function has no frame pointer (libc's
 * getppid), bpftrace loses its caller and ours keeps it.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { captureEvents } from '../../repl/bpftrace/capture.ts'
import type { TraceEvent } from '../../repl/bpftrace/evaluate.ts'
import { planCounts } from '../../repl/bpftrace/kernel-count.ts'
import { kernelFilter } from '../../repl/bpftrace/kernel-filter.ts'
import { compileProgram } from '../../repl/bpftrace/program.ts'
import { readFormat, tracefsFields } from '../../repl/bpftrace/tracefs.ts'
import { root, waitFor } from './kernel.ts'
import { besideBpftrace, bpftraceVersion, errorOf, holdProcess, type HeldProcess } from './repl-bpftrace.ts'

const directory = mkdtempSync(join(tmpdir(), 'periscope-repl-stacks-'))
after(() => rmSync(directory, { recursive: true, force: true }))
const workloadPath = join(directory, 'repl-stacks-workload')
execFileSync('gcc', ['-O2', '-fno-omit-frame-pointer', '-o', workloadPath, join(root, 'test/bpf/fixtures/repl-stacks-workload.c')])

/** How many times the workload runs each of its two getppid() paths. */
const CALLS = 25

const workload = (): HeldProcess => holdProcess(workloadPath, [String(CALLS)], 'the stacks workload')

/** A map's entries as printed, `@name[key]: n`, by key text (its lines as printed). */
function entries(output: string, map: string): Map<string, number> {
  const found = new Map<string, number>()
  for (const match of output.matchAll(new RegExp(`^@${map}\\[((?:\\n.*?)*?)\\]: (\\d+)$`, 'gm'))) found.set(match[1]!, Number(match[2]))
  return found
}

/** Our user stack key with the two frames past bpftrace's (libc's start code) set aside. */
const withoutStart = (key: string): string => key.replace(/\n {4}__libc_start_main\+\d+\n {4}_start\+\d+\n$/, '\n').replace(/\n\t[0-9a-f]+ __libc_start_main\+\d+ \([^)]*\)\n\t[0-9a-f]+ _start\+\d+ \([^)]*\)\n$/, '\n')

/**
 * `probes` run by bpftrace and runOneLiner at once on one workload, which is let go once both
 * attached; both exit() at its getpgid(0) and print their maps while it still lives. What each
 * printed after its BEGIN's "ready".
 */
async function bothPrinted(probes: (pid: number) => string): Promise<{ ours: string; theirs: string }> {
  const held = workload()
  const source = `BEGIN { printf("ready\\n"); } ${probes(held.pid)} tracepoint:syscalls:sys_enter_getpgid /pid == ${held.pid}/ { printf("pgid of %d\\n", args->pid); exit(); }`
  const { ours, theirs } = await besideBpftrace(source, held, { whileAlive: true })
  return { ours: ours.slice(ours.indexOf('ready\n')), theirs: theirs.slice(theirs.indexOf('ready\n')) }
}

test('@[ustack] and @[kstack] of a syscall tracepoint: the keys and counts bpftrace prints', { timeout: 300_000 }, async () => {
  assert.match(bpftraceVersion(), /v0\.17\./)
  const { ours, theirs } = await bothPrinted((pid) => `tracepoint:syscalls:sys_enter_getppid /pid == ${pid}/ { @u[ustack] = count(); @k[kstack] = count(); }`)
  // the marker probe without stacks shares the batches of those with stacks
  assert.match(ours, /^pgid of 0$/m)
  assert.match(theirs, /^pgid of 0$/m)

  const mine = new Map([...entries(ours, 'u')].map(([key, count]) => [withoutStart(key), count]))
  const bpftraces = entries(theirs, 'u')
  const direct = [...mine.keys()].find((key) => key.includes('stacks_leaf'))
  assert.ok(direct, `no stack through stacks_leaf in ours:\n${ours}`)
  assert.match(direct, /^\n {4}stacks_leaf\+\d+\n {4}stacks_middle\+\d+\n {4}stacks_outer\+\d+\n {4}main\+\d+\n {4}__libc_start_call_main\+\d+\n$/)
  assert.equal(mine.get(direct), CALLS)
  assert.equal(bpftraces.get(direct), CALLS, `bpftrace's keys:\n${[...bpftraces.keys()].join('--\n')}`)
  // through libc's getppid, which keeps no frame pointer: bpftrace loses stacks_via_libc
  const viaLibc = [...mine].filter(([key]) => !key.includes('stacks_leaf'))
  assert.equal(viaLibc.length, 1, `ours:\n${ours}`)
  assert.match(viaLibc[0]![0], /^\n {4}\S+\+\d+\n {4}stacks_via_libc\+\d+\n {4}main\+\d+\n {4}__libc_start_call_main\+\d+\n$/)
  assert.equal(viaLibc[0]![1], CALLS)
  const theirsViaLibc = [...bpftraces].filter(([key]) => !key.includes('stacks_leaf'))
  assert.equal(theirsViaLibc.length, 1)
  assert.equal(theirsViaLibc[0]![0].replace(/^\n {4}\S+\n/, ''), viaLibc[0]![0].replace(/^\n {4}\S+\n {4}stacks_via_libc\+\d+\n/, ''), 'bpftrace has the same stack without stacks_via_libc')

  // the kernel stack of the system call, the same in both, for both paths
  const kernel = entries(ours, 'k')
  assert.deepEqual([...kernel], [...entries(theirs, 'k')])
  assert.equal(kernel.size, 1)
  const [[kstack, kcount]] = [...kernel]
  assert.match(kstack, /\n {4}do_syscall_64\+\d+\n {4}entry_SYSCALL_64_after_hwframe\+\d+\n$/)
  assert.equal(kcount, 2 * CALLS)
})

test('ustack in printf, ustack(perf), ustack(N) and kstack(N) in a tracepoint probe print as bpftrace prints them', { timeout: 300_000 }, async () => {
  const { ours, theirs } = await bothPrinted((pid) => `tracepoint:syscalls:sys_enter_getppid /pid == ${pid}/ { printf("%s|\\n", ustack(3)); @p[ustack(perf)] = count(); @n[ustack(2)] = count(); @kn[kstack(2)] = count(); }`)
  // the blocks of the direct path (through libc, bpftrace loses a frame: see the test above)
  const printed = (output: string) => output.slice(0, output.indexOf('pgid of')).split('|\n').filter((block) => block.includes('stacks_leaf')).map((block) => block.replace(/^ready\n/, ''))
  assert.deepEqual(printed(ours), printed(theirs))
  assert.equal(printed(ours).length, CALLS)
  assert.match(printed(ours)[0]!, /^\n {8}stacks_leaf\+\d+\n {8}stacks_middle\+\d+\n {8}stacks_outer\+\d+\n$/)
  // perf mode: a tab, the address, the name and the file; the same addresses as bpftrace's
  const perf = entries(ours, 'p')
  const direct = [...perf.keys()].find((key) => key.includes('stacks_leaf'))!
  assert.match(direct, new RegExp(`^\\n\\t[0-9a-f]+ stacks_leaf\\+\\d+ \\(${workloadPath}\\)\\n`))
  assert.equal(perf.get(direct), CALLS)
  assert.equal(entries(theirs, 'p').get(withoutStart(direct)), CALLS)
  // a limit of two frames
  const limited = [...entries(ours, 'n')].find(([key]) => key.includes('stacks_leaf'))!
  assert.match(limited[0], /^\n {4}stacks_leaf\+\d+\n {4}stacks_middle\+\d+\n$/)
  assert.equal(limited[1], CALLS)
  assert.equal(entries(theirs, 'n').get(limited[0]), CALLS)
  assert.deepEqual([...entries(ours, 'kn')], [...entries(theirs, 'kn')])
  assert.equal([...entries(ours, 'kn').values()][0], 2 * CALLS)
})

test('@[ustack] of a uprobe and a uretprobe, and a uprobe\'s empty kernel stack, as bpftrace prints them', { timeout: 300_000 }, async () => {
  const { ours, theirs } = await bothPrinted((pid) => `uprobe:${workloadPath}:stacks_middle /pid == ${pid}/ { @m[ustack] = count(); @mk[kstack] = count(); } uretprobe:${workloadPath}:stacks_middle /pid == ${pid}/ { @r[ustack] = count(); }`)
  const mine = [...entries(ours, 'm')]
  assert.equal(mine.length, 1, ours)
  const [key, count] = mine[0]!
  assert.match(key, /^\n {4}stacks_middle\+0\n {4}stacks_outer\+\d+\n {4}main\+\d+\n {4}__libc_start_call_main\+\d+\n {4}__libc_start_main\+\d+\n {4}_start\+\d+\n$/)
  assert.equal(count, CALLS)
  assert.deepEqual([...entries(theirs, 'm')], [[withoutStart(key), CALLS]])
  // at the return, the stack of the caller, from the return address on
  const returns = [...entries(ours, 'r')]
  assert.equal(returns.length, 1, ours)
  assert.match(returns[0]![0], /^\n {4}stacks_outer\+\d+\n {4}main\+\d+\n {4}__libc_start_call_main\+\d+\n {4}__libc_start_main\+\d+\n {4}_start\+\d+\n$/)
  assert.deepEqual([...entries(theirs, 'r')], [[withoutStart(returns[0]![0]), CALLS]])
  // a uprobe fires in user mode: no kernel stack, printed as an empty key by both
  assert.match(ours, new RegExp(`^@mk\\[\\]: ${CALLS}$`, 'm'))
  assert.match(theirs, new RegExp(`^@mk\\[\\]: ${CALLS}$`, 'm'))
})

test('the kernel never counts a probe keyed by a stack: it cannot make the key', () => {
  const source = 'tracepoint:syscalls:sys_enter_getppid /pid == 5/ { @[kstack] = count(); } tracepoint:syscalls:sys_enter_getpgid /pid == 5/ { @u[ustack(3)] = count(); } tracepoint:syscalls:sys_enter_read /pid == 5/ { @r[comm] = count(); }'
  const checked = compileProgram(source, { tracepointFields: tracefsFields() })
  const slots = checked.program.probes.map((probe, index) => {
    const point = probe.attachPoints[0] as { category: string; name: string }
    return { probes: [index], filter: kernelFilter(probe), format: readFormat(point.category, point.name)! }
  })
  // the same probe keyed by comm is counted there
  assert.deepEqual(planCounts(checked, slots).map((slot) => slot !== undefined), [false, false, true])
})

test('captureEvents: a request without stacks gets none, one with kernel stacks gets only those', { timeout: 120_000 }, async () => {
  const held = workload()
  const events: TraceEvent[][] = [[], []]
  const filter = { pid: held.pid }
  const capture = await captureEvents([
    { category: 'syscalls', name: 'sys_enter_getppid', filter },
    { category: 'syscalls', name: 'sys_enter_getpgid', filter, stacks: { kernel: true } },
  ], (request, event) => events[request]!.push(event))
  try {
    held.line()
    await waitFor(() => events[1]!.length === 1, 'the workload\'s getpgid', 60_000)
    await held.release()
  } finally {
    capture.close()
    held.kill()
  }
  assert.equal(events[0]!.length, 2 * CALLS)
  for (const event of events[0]!) {
    assert.equal(event.kstack, undefined)
    assert.equal(event.ustack, undefined)
  }
  const [pgid] = events[1]!
  assert.match(pgid!.kstack!.map((frame) => frame.symbol).join('\n'), /\ndo_syscall_64\+\d+\nentry_SYSCALL_64_after_hwframe\+\d+$/)
  assert.deepEqual(pgid!.ustack, [])
})

test('stacks in probes that have none are refused where they are', async () => {
  assert.match(await errorOf('interval:s:1 { @[kstack] = count(); }'), /^stdin:1:16-24: ERROR: kstack is only supported in profile, tracepoint, uprobe and uretprobe probes by Periscope's bpftrace subset \(interval used here\)/)
  assert.match(await errorOf('BEGIN { printf("%s\\n", ustack(perf, 3)); }'), /^stdin:1:24-\d+: ERROR: ustack is only supported in profile, tracepoint, uprobe and uretprobe probes/)
  assert.match(await errorOf('tracepoint:syscalls:sys_enter_getppid { @[kstack(0)] = count(); }'), /^stdin:1:41-51: ERROR: kstack\(\): the number of frames must be from 1 to 1024/)
})
