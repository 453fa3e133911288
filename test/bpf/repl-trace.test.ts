/**
 * `trace()` streams on the kernel (repl/explore.ts, repl/stream.ts): the events of
 * syscalls:sys_enter_openat filtered by pid or comm in the kernel are exactly the openat calls
 * of test/bpf/fixtures/repl-trace-workload.c (a static binary: no loader opens); `.count()` over
 * them prints what Debian's bpftrace prints for the same map, run on the same workload at the
 * same time; `.take(n)` ends the run and detaches (no BPF link, program or map left open, and
 * the link gone from `bpftool link`). Also: the bytes test/unit/repl-stream.test.ts expects are
 * still what bpftrace prints, and probes() lists what `bpftrace -lv` lists.
 */
import assert from 'node:assert/strict'
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { chmodSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { BpftraceErrors } from '../../repl/bpftrace/errors.ts'
import { probes, trace, type TracedEvent } from '../../repl/explore.ts'
import { AGGREGATIONS, BPFTRACE_0_17, bpftraceProgram, caseName } from '../unit/repl-stream-cases.ts'
import { root, waitFor } from './kernel.ts'
import { bpftraceVersion, holdProcess, type HeldProcess } from './repl-bpftrace.ts'

const PATHS = 3
/** the workload's openat calls, in order: path j j + 2 times, then the end marker */
const OPENED = [...Array.from({ length: PATHS }, (_, j) => Array<string>(j + 2).fill(`/nonexistent/periscope-trace/${j}`)).flat(), '/nonexistent/periscope-trace/end']

const workloadDir = mkdtempSync(join(tmpdir(), 'periscope-repl-trace-'))
process.once('exit', () => rmSync(workloadDir, { recursive: true, force: true }))
chmodSync(workloadDir, 0o755)
/** its comm, unique to these tests */
const WORKLOAD = 'pscope-trace-wl'
execFileSync('cc', ['-O2', '-Wall', '-Werror', '-static', '-o', join(workloadDir, WORKLOAD), join(root, 'test/bpf/fixtures/repl-trace-workload.c')])

const NOBODY = 65534

/** The workload, held on its stdin until released; as `uid`:`uid` when given. */
const heldWorkload = (uid?: number): HeldProcess => holdProcess(join(workloadDir, WORKLOAD), [String(PATHS)], WORKLOAD, uid === undefined ? {} : { uid, gid: uid })

/** This process's open BPF objects and perf events, by kind (`bpf_link`, `bpf-prog`, ...), with each link's id. */
function openBpf(): { kinds: string[]; linkIds: number[] } {
  const kinds: string[] = []
  const linkIds: number[] = []
  for (const fd of readdirSync('/proc/self/fd')) {
    let target: string
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`)
    } catch {
      continue
    }
    const kind = /^anon_inode:\[?(bpf[-_]\w+|perf_event)\]?$/.exec(target)?.[1]
    if (!kind) continue
    kinds.push(kind)
    if (kind === 'bpf_link') linkIds.push(Number(/^link_id:\s*(\d+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]))
  }
  return { kinds: kinds.sort(), linkIds }
}

function bpftoolLinkIds(): number[] {
  return (JSON.parse(execFileSync('bpftool', ['link', 'show', '-j'], { encoding: 'utf8' })) as { id: number }[]).map((link) => link.id)
}

test('trace(sys_enter_openat, { pid }).take(n) gives exactly the workload\'s openat calls, prints each on a line, then ends and detaches', { timeout: 300_000 }, async () => {
  const before = openBpf()
  const workload = heldWorkload()
  const events: TracedEvent[] = []
  let printed = ''
  let during: ReturnType<typeof openBpf> | undefined
  try {
    const stream = trace('tracepoint:syscalls:sys_enter_openat', { pid: workload.pid }).take(OPENED.length).filter((event) => events.push(event) > 0).print()
    const running = stream.run({ write: (text) => { printed += text } }, new AbortController().signal)
    // attached once the link is open
    await waitFor(() => openBpf().kinds.includes('bpf_link'), 'the stream attaching', 60_000)
    during = openBpf()
    await workload.release()
    await running
  } finally {
    workload.kill()
  }
  assert.deepEqual(events.map((e) => e.args?.filename), OPENED)
  // one line each, laid out as trace_pipe lays events out (pointers in hex, strings quoted)
  const lines = printed.split('\n')
  assert.equal(lines.length, OPENED.length + 1)
  lines.slice(0, -1).forEach((line, i) => assert.match(line, new RegExp(`^${WORKLOAD}-${workload.pid} \\[\\d{3}\\] \\d+\\.\\d{6}: syscalls:sys_enter_openat: __syscall_nr=257 dfd=4294967196 filename="${OPENED[i]}" flags=0 mode=0$`)))
  for (const event of events) {
    assert.equal(event.pid, workload.pid)
    assert.equal(event.comm, WORKLOAD)
    assert.equal(event.probe, 'tracepoint:syscalls:sys_enter_openat')
  }
  // the run held one link (and its program, maps and perf event) and gave them all back
  assert.equal(during!.linkIds.length, 1)
  assert.deepEqual(openBpf(), before)
  assert.ok(!bpftoolLinkIds().includes(during!.linkIds[0]), `link ${during!.linkIds[0]} still listed by bpftool link`)
})

test('trace(sys_enter_openat, { comm }).count(\'filename\') prints what bpftrace prints for @[str(args->filename)] = count() on the same workload', { timeout: 300_000 }, async () => {
  assert.match(bpftraceVersion(), /v0\.17\./)
  const workload = heldWorkload()
  const program = `BEGIN { printf("ready\\n") } tracepoint:syscalls:sys_enter_openat /comm == "${WORKLOAD}"/ { @[str(args->filename)] = count(); } tracepoint:sched:sched_process_exit /pid == ${workload.pid}/ { exit() }`
  const bpftrace = spawn('bpftrace', ['-e', program], { stdio: ['ignore', 'pipe', 'ignore'] })
  let theirs = ''
  bpftrace.stdout!.setEncoding('utf8').on('data', (chunk: string) => { theirs += chunk })
  const bpftraceExited = once(bpftrace, 'exit')
  const stop = new AbortController()
  let ours = ''
  try {
    const counts = trace('syscalls:sys_enter_openat', { comm: WORKLOAD }).count('filename')
    const running = counts.run({ write: (text) => { ours += text } }, stop.signal)
    await waitFor(() => openBpf().kinds.includes('bpf_link'), 'the stream attaching', 60_000)
    await waitFor(() => theirs.includes('ready\n') || bpftrace.exitCode !== null, 'bpftrace attaching', 120_000)
    assert.equal(bpftrace.exitCode, null, 'bpftrace exited before attaching')
    await workload.release()
    // every openat counted: then Ctrl-C
    const total = () => counts.snapshot().entries.reduce((sum, entry) => sum + (entry.value as bigint), 0n)
    await waitFor(() => total() === BigInt(OPENED.length), `${OPENED.length} openat calls counted`, 60_000)
    stop.abort()
    await running
    await bpftraceExited
  } finally {
    workload.kill()
    bpftrace.kill('SIGKILL')
  }
  assert.equal(ours, '\n\n@[/nonexistent/periscope-trace/end]: 1\n@[/nonexistent/periscope-trace/0]: 2\n@[/nonexistent/periscope-trace/1]: 3\n@[/nonexistent/periscope-trace/2]: 4\n')
  assert.equal(`Attaching 3 probes...\nready\n${ours}`, theirs)
})

test('trace(spec, { comm, uid }) filters on the user in the kernel: of two workloads of one name, only the one run as nobody', { timeout: 300_000 }, async () => {
  const asRoot = heldWorkload()
  const asNobody = heldWorkload(NOBODY)
  const events: TracedEvent[] = []
  try {
    const running = trace('syscalls:sys_enter_openat', { comm: WORKLOAD, uid: NOBODY }).take(OPENED.length).filter((event) => events.push(event) > 0).run({ write: () => {} }, new AbortController().signal)
    await waitFor(() => openBpf().kinds.includes('bpf_link'), 'the stream attaching', 60_000)
    // root's calls first: a stream that let them through would end with them
    await asRoot.release()
    await asNobody.release()
    await running
  } finally {
    asRoot.kill()
    asNobody.kill()
  }
  assert.deepEqual(events.map((e) => e.args?.filename), OPENED)
  assert.ok(events.every((e) => e.pid === asNobody.pid && e.uid === NOBODY && e.gid === NOBODY), JSON.stringify(events[0], (_, v) => (typeof v === 'bigint' ? `${v}` : v)))
})

test('a trace() run aborted (Ctrl-C) before any event detaches, and so does a for await loop left at its first event', { timeout: 120_000 }, async () => {
  const before = openBpf()
  const stop = new AbortController()
  const running = trace('sched:sched_process_exec', { comm: WORKLOAD }).run({ write: () => {} }, stop.signal)
  await waitFor(() => openBpf().kinds.includes('bpf_link'), 'the stream attaching', 60_000)
  stop.abort()
  await running
  assert.deepEqual(openBpf(), before)

  const workload = heldWorkload()
  let first: TracedEvent | undefined
  try {
    const looping = (async () => {
      for await (const event of trace('syscalls:sys_enter_openat', { pid: workload.pid })) {
        first = event
        break
      }
    })()
    await waitFor(() => openBpf().kinds.includes('bpf_link'), 'the stream attaching', 60_000)
    await workload.release()
    await looping
  } finally {
    workload.kill()
  }
  assert.equal(first?.args?.filename, OPENED[0])
  assert.deepEqual(openBpf(), before)
})

test('probes(uprobe:...) lists a binary\'s functions; trace(uretprobe with a wildcard, { pid }) gives each call\'s return value, named by its function; trace(uprobe) its argument registers', { timeout: 300_000 }, async () => {
  const target = join(workloadDir, 'repl-uprobe-target')
  execFileSync('cc', ['-O1', '-g', '-Wall', '-Werror', '-o', target, join(root, 'test/bpf/fixtures/repl-uprobe-target.c')])
  // probes() lists the functions the wildcard names, as one line each
  assert.equal(String(probes(`uprobe:${target}:repl_*`)), ['repl_done', 'repl_step_one', 'repl_step_two', 'repl_work_add6', 'repl_work_square'].map((name) => `uprobe:${target}:${name}\n`).join(''))
  assert.ok([...probes(`uprobe:${target}`)].some((p) => p.probe === `uprobe:${target}:main`))
  const calls = 4
  const before = openBpf()
  for (const provider of ['uretprobe', 'uprobe']) {
    const child = spawn(target, [String(calls)], { stdio: ['pipe', 'ignore', 'inherit'] })
    const exited = once(child, 'exit')
    const events: TracedEvent[] = []
    try {
      const stream = trace(`${provider}:${target}:repl_work_*`, { pid: child.pid! }).take(2 * calls)
      const iterating = (async () => {
        for await (const event of stream) events.push(event)
      })()
      await waitFor(() => openBpf().kinds.includes('bpf_link'), 'the stream attaching', 60_000)
      child.stdin!.end('go\n')
      await iterating
      assert.deepEqual(await exited, [0, null])
    } finally {
      child.kill('SIGKILL')
    }
    assert.deepEqual(events.map((e) => e.probe), Array.from({ length: calls }, () => [`${provider}:${target}:repl_work_add6`, `${provider}:${target}:repl_work_square`]).flat())
    if (provider === 'uretprobe') assert.deepEqual(events.map((e) => e.retval), Array.from({ length: calls }, (_, i) => [BigInt(6 * i + 15), BigInt(i * i)]).flat())
    else assert.deepEqual(events.map((e) => e.regs![0]), Array.from({ length: calls }, (_, i) => [BigInt(i), BigInt(i)]).flat())
    assert.ok(events.every((e) => e.pid === child.pid))
    assert.deepEqual(openBpf(), before)
  }
})

test('the bytes the stream unit tests expect are what bpftrace 0.17 prints for the same maps', { timeout: 600_000 }, () => {
  assert.match(bpftraceVersion(), /v0\.17\./)
  const cases: [string, string[]][] = []
  for (const aggregation of Object.keys(AGGREGATIONS)) {
    for (const keyed of [false, true]) {
      for (const json of [false, true]) cases.push([caseName(aggregation, keyed, json), [...(json ? ['-f', 'json'] : []), '-e', bpftraceProgram(aggregation, keyed)]])
    }
  }
  for (const aggregation of ['count', 'hist']) {
    for (const json of [false, true]) cases.push([caseName(aggregation, true, json, 2), [...(json ? ['-f', 'json'] : []), '-e', bpftraceProgram(aggregation, true, 2)]])
  }
  assert.equal(cases.length, Object.keys(BPFTRACE_0_17).length)
  for (const [name, args] of cases) {
    const run = spawnSync('bpftrace', args, { encoding: 'utf8', timeout: 120_000 })
    assert.equal(run.status, 0, `bpftrace ${args.join(' ')}: ${run.stderr}`)
    assert.equal(run.stdout.slice(run.stdout.indexOf('\n') + 1), BPFTRACE_0_17[name], name)
  }
})

test('probes() lists tracepoints with their fields as bpftrace -lv lists them', () => {
  for (const pattern of ['tracepoint:sched:*', 'tracepoint:syscalls:sys_enter_open*', 'tracepoint:raw_syscalls:*']) {
    const theirs = execFileSync('bpftrace', ['-lv', pattern], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
    assert.equal(String(probes(pattern)), theirs, pattern)
  }
  // the short form names the same tracepoints
  assert.equal(String(probes('sched:sched_switch')), String(probes('tracepoint:sched:sched_switch')))
})

test('a bad spec, filter or field is an error before anything attaches, located in the spec (the short form too)', () => {
  const before = openBpf()
  const located = (spec: string, filter = {}) => {
    try {
      trace(spec, filter)
    } catch (error) {
      assert.ok(error instanceof BpftraceErrors, String(error))
      assert.equal((error as BpftraceErrors & { source?: string }).source, spec)
      return error.format(spec)
    }
    assert.fail(`trace(${JSON.stringify(spec)}) did not throw`)
  }
  assert.equal(located('syscalls:nope_*'), 'stdin:1:1-16: ERROR: No tracepoints matched syscalls:nope_*\nsyscalls:nope_*\n~~~~~~~~~~~~~~~\n')
  assert.equal(located('tracepoint:sched'), 'stdin:1:1-17: ERROR: tracepoint probe type requires 2 arguments\ntracepoint:sched\n~~~~~~~~~~~~~~~~\n')
  assert.match(located('interval:s:1'), /^stdin:1:1-13: ERROR: trace\(\) captures tracepoint, uprobe, uretprobe and profile probes \(each kind apart\); run interval probes as a one-liner/)
  assert.match(located('uprobe:/nonexistent/binary:main'), /^stdin:1:1-32: ERROR: uprobe target file '\/nonexistent\/binary' does not exist or is not executable\n/)
  assert.throws(() => trace('syscalls:sys_enter_openat').count('filenme'), { message: /^\.count\("filenme"\): syscalls:sys_enter_openat events have no field filenme; they have probe, pid, tid, uid, gid, comm, cpu, nsecs, args\.__syscall_nr, args\.dfd, args\.filename, args\.flags, args\.mode$/ })
  assert.throws(() => trace('syscalls:sys_enter_openat', { pid: 1, name: 'x' } as never), /filter on name: the kernel filters on pid, comm and uid/)
  assert.throws(() => trace('syscalls:sys_enter_openat', { comm: 'a-name-longer-than-15' }), /can never match: the kernel keeps the first 15 bytes/)
  assert.deepEqual(openBpf(), before)
})
