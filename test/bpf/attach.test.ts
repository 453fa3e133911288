/**
 * One test per attach function, on the real kernel: each attaches a program from
 * fixtures/attach.bpf.c, makes it fire, and checks the records it wrote (who fired it, the attach
 * cookie, a value the test can predict), then that detaching really removes it.
 */
import assert from 'node:assert/strict'
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { pathToFileURL } from 'node:url'
import { generateTypes } from '../../scripts/generate-types.ts'
import { decodeLoopgenEvent } from '../../bpf/lib/loopgen.types.ts'
import { forEachRecord } from '../../runtime/bpf/batch.ts'
import { BtfTypes } from '../../runtime/bpf/btf.ts'
import { attachKinds, probeAttach, probeMapType, probeProgramType } from '../../runtime/bpf/features.ts'
import { attachCgroup, attachKprobe, attachPerfEvent, attachRawTracepoint, attachTc, attachTracepoint, attachTracing, attachUprobe, attachUprobeMulti, cgroup2Root, onlineCpus, PERF_COUNT_HW_CPU_CYCLES, PERF_TYPE_HARDWARE, testRun, UPROBE_MULTI_ATTACH_TYPE } from '../../runtime/bpf/links.ts'
import { native } from '../../runtime/bpf/native.ts'
import { ObjectSpec, type LoadedObject } from '../../runtime/bpf/object.ts'
import { RingBufferReader } from '../../runtime/bpf/ringbuf.ts'
import { compileFixture, objectPath, requireFeature, root, waitFor } from './kernel.ts'

const fixture = compileFixture('attach')

interface AttachEvent { cookie: bigint; program: number; tgid: number; value: number; port: number }
/** The fixture's decoder, generated from its BTF as the build does for bpf/lib. */
const decodeAttachEvent: (view: DataView, offset: number) => AttachEvent = await (async () => {
  const spec = ObjectSpec.open(fixture)
  const source = generateTypes({ name: 'attach', btf: new BtfTypes(native.btfTypes(fixture)), programs: spec.programs().map((p) => p.name), maps: spec.maps() })
  spec.close()
  const dir = mkdtempSync(join(tmpdir(), 'periscope-attach-types-'))
  try {
    writeFileSync(join(dir, 'attach.types.ts'), source)
    return ((await import(pathToFileURL(join(dir, 'attach.types.ts')).href)) as { decodeAttachEvent: (view: DataView, offset: number) => AttachEvent }).decodeAttachEvent
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})()

// the fixture's enum attach_program
const FIRED = { tracepoint: 1, raw_tp: 2, tp_btf: 3, uprobe: 4, uretprobe: 5, perf_event: 6, tc: 7, kprobe: 8, fentry: 9 } as const

/**
 * Loads the fixture with only `program` and reads its ring buffer into `events`; everything is
 * closed when the test ends, passed or failed. Every process's events are recorded: the tests
 * pick theirs, so a filter in the fixture cannot hide a wrong answer.
 */
async function loadOnly(t: TestContext, program: string, options: { attachType?: string } = {}) {
  const spec = ObjectSpec.open(fixture)
  for (const p of spec.programs()) spec.setAutoload(p.name, p.name === program)
  if (options.attachType !== undefined) spec.setExpectedAttachType(program, options.attachType)
  const object = await spec.load()
  const events: AttachEvent[] = []
  const reader = new RingBufferReader(object, 'events', { onBatch: (batch) => forEachRecord(batch, (view, offset) => { events.push(decodeAttachEvent(view, offset)) }) })
  // the reader first: it must never outlive the ring buffer map it reads
  const close = () => {
    reader.close()
    object.close()
  }
  t.after(close)
  return { object, events, reader, close }
}

/** Loads probes.bpf.o, the feature probes' object, with only `program`. */
async function loadProbe(program: string): Promise<LoadedObject> {
  const spec = ObjectSpec.open(objectPath('probes'))
  for (const p of spec.programs()) spec.setAutoload(p.name, p.name === program)
  return spec.load()
}

const bpftoolLinkIds = (): number[] => (JSON.parse(execFileSync('bpftool', ['-j', 'link', 'list']).toString()) as { id: number }[]).map((l) => l.id)
const fork = (): number => spawnSync('/bin/true').pid!

test('feature probes match this kernel', async () => {
  const kprobePmu = existsSync('/sys/bus/event_source/devices/kprobe')
  assert.equal((await probeAttach('kprobe')).status, kprobePmu ? 'supported' : 'unsupported')
  for (const kind of ['tracepoint', 'tp_btf', 'raw_tp', 'uprobe', 'uprobe_multi', 'perf_event', 'cgroup_skb', 'tc'] as const) {
    assert.equal((await probeAttach(kind)).status, 'supported', kind)
  }
  // this machine family refuses fentry (EPERM as root); elsewhere the answer must still be conclusive
  const fentry = await probeAttach('fentry')
  assert.notEqual(fentry.status, 'failed')
  if (!kprobePmu) assert.equal(fentry.status, 'unsupported')
  assert.equal(probeMapType('ringbuf').status, 'supported')
  assert.equal(probeMapType('perf_event_array').status, 'supported')
  assert.equal(probeProgramType('tracepoint').status, 'supported')
  assert.equal(probeProgramType('definitely_not_a_type').status, 'unsupported')
  for (const kind of attachKinds) assert.notEqual((await probeAttach(kind)).status, 'failed', kind)
})

test('tracepoint: attaches, fires with its cookie for exactly the fork it saw, shows in bpftool, detaches', async (t) => {
  const { object, events, reader } = await loadOnly(t, 'on_fork_tracepoint')
  const link = attachTracepoint(object, 'on_fork_tracepoint', 'sched', 'sched_process_fork', { cookie: 42n })
  assert.ok(link.id > 0)
  assert.ok(bpftoolLinkIds().includes(link.id))
  assert.equal(link.info().type, 'perf_event')
  const child = fork()
  reader.drain()
  // this process may start threads meanwhile (each fires sched_process_fork too): pick the child
  const forks = events.filter((e) => e.value === child)
  assert.deepEqual(forks, [{ cookie: 42n, program: FIRED.tracepoint, tgid: process.pid, value: child, port: 0 }])
  assert.equal(link.detach(), true)
  assert.equal(link.detach(), false)
  assert.ok(!bpftoolLinkIds().includes(link.id))
  const after = fork()
  reader.drain()
  assert.deepEqual(events.filter((e) => e.value === after), [], 'a detached tracepoint does not fire')
})

test('raw_tp and tp_btf: attach and see the child of exactly one fork', async (t) => {
  for (const [kind, program, attach] of [
    ['raw_tp', 'on_fork_raw_tp', (o: LoadedObject) => attachRawTracepoint(o, 'on_fork_raw_tp', 'sched_process_fork')],
    ['tp_btf', 'on_fork_tp_btf', (o: LoadedObject) => attachTracing(o, 'on_fork_tp_btf')],
  ] as const) {
    if (!requireFeature(t, kind, await probeAttach(kind))) return
    const { object, events, reader, close } = await loadOnly(t, program)
    const link = attach(object)
    assert.ok(link.id > 0, program)
    // tp_btf links are raw tracepoint links too, with a BTF-typed program behind them
    assert.equal(link.info().type, 'raw_tracepoint')
    const child = fork()
    reader.drain()
    assert.deepEqual(events.filter((e) => e.value === child).map((e) => [e.program, e.tgid]), [[FIRED[kind], process.pid]], program)
    close()
    assert.ok(!bpftoolLinkIds().includes(link.id), 'closing the object detaches its links')
  }
})

/** Builds fixtures/uprobe-target.c; returns the binary and the file offset of periscope_target. */
function buildUprobeTarget(): { binary: string; offset: number } {
  const binary = join(mkdtempSync(join(tmpdir(), 'periscope-uprobe-')), 'uprobe-target')
  execFileSync('cc', ['-O2', '-g', '-o', binary, join(root, 'test/bpf/fixtures/uprobe-target.c')])
  const symbol = execFileSync('nm', ['--defined-only', binary]).toString().split('\n').find((l) => l.endsWith(' periscope_target'))
  assert.ok(symbol !== undefined, 'the target defines periscope_target')
  const address = BigInt(`0x${symbol.split(' ')[0]}`)
  const segment = execFileSync('readelf', ['-lW', binary]).toString().split('\n')
    .filter((l) => l.trim().startsWith('LOAD'))
    .map((l) => l.trim().split(/\s+/))
    .map(([, offset, vaddr, , filesz]) => ({ offset: BigInt(offset!), vaddr: BigInt(vaddr!), size: BigInt(filesz!) }))
    .find((s) => address >= s.vaddr && address < s.vaddr + s.size)
  assert.ok(segment !== undefined)
  return { binary, offset: Number(address - segment.vaddr + segment.offset) }
}

/** Starts the target, which calls periscope_target `calls` times once released. */
function startTarget(binary: string, calls: number) {
  const child = spawn(binary, [String(calls)], { stdio: ['pipe', 'pipe', 'inherit'] })
  let output = ''
  child.stdout.on('data', (d) => { output += d })
  // 'close', not 'exit': the exit can come before the last of stdout is read
  const exited = new Promise<void>((resolve, reject) => child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`uprobe target exited ${code}`)))))
  return { pid: child.pid!, release: () => child.stdin.end('go\n'), exited, output: () => output }
}

test('uprobe and uretprobe: by symbol and by offset, with cookies, and a pid filter that excludes other processes', async (t) => {
  if (!requireFeature(t, 'uprobe', await probeAttach('uprobe'))) return
  const { binary, offset } = buildUprobeTarget()
  const a = startTarget(binary, 3)
  const b = startTarget(binary, 5)
  const entry = await loadOnly(t, 'on_uprobe')
  const exit = await loadOnly(t, 'on_uretprobe')
  t.after(() => rmSync(join(binary, '..'), { recursive: true, force: true }))
  {
    attachUprobe(entry.object, 'on_uprobe', binary, { symbol: 'periscope_target', pid: a.pid, cookie: 7n })
    attachUprobe(entry.object, 'on_uprobe', binary, { offset, pid: b.pid, cookie: 9n })
    attachUprobe(exit.object, 'on_uretprobe', binary, { symbol: 'periscope_target', retprobe: true, cookie: 8n })
    a.release()
    b.release()
    await Promise.all([a.exited, b.exited])
    assert.equal(a.output(), '6\n')
    entry.reader.drain()
    exit.reader.drain()
    const seen = (events: AttachEvent[], cookie: bigint) => events.filter((e) => e.cookie === cookie).map((e) => [e.program, e.tgid, e.value])
    // by symbol, only process a: its 3 calls with their arguments, none of b's 5
    assert.deepEqual(seen(entry.events, 7n), [0, 1, 2].map((n) => [FIRED.uprobe, a.pid, n]))
    // by offset, only process b
    assert.deepEqual(seen(entry.events, 9n), [0, 1, 2, 3, 4].map((n) => [FIRED.uprobe, b.pid, n]))
    assert.equal(entry.events.length, 8, 'nothing but those fired')
    // the uretprobe has no pid filter: both processes, with the return values (twice the argument)
    const returns = seen(exit.events, 8n)
    assert.deepEqual(returns.filter(([, tgid]) => tgid === a.pid), [0, 1, 2].map((n) => [FIRED.uretprobe, a.pid, 2 * n]))
    assert.deepEqual(returns.filter(([, tgid]) => tgid === b.pid), [0, 1, 2, 3, 4].map((n) => [FIRED.uretprobe, b.pid, 2 * n]))
  }
})

test('uprobe_multi: by a symbol found in user space and by offset, with cookies, a pid filter and a uretprobe; detaching removes each link', async (t) => {
  if (!requireFeature(t, 'uprobe_multi', await probeAttach('uprobe_multi'))) return
  const { binary, offset } = buildUprobeTarget()
  t.after(() => rmSync(join(binary, '..'), { recursive: true, force: true }))
  const a = startTarget(binary, 3)
  const b = startTarget(binary, 5)
  const entry = await loadOnly(t, 'on_uprobe', { attachType: UPROBE_MULTI_ATTACH_TYPE })
  const exit = await loadOnly(t, 'on_uretprobe', { attachType: UPROBE_MULTI_ATTACH_TYPE })
  assert.equal(entry.object.programs()[0]!.attachType, 'trace_uprobe_multi')
  // attachUprobe takes the uprobe_multi path for a program loaded for it
  const bySymbol = attachUprobe(entry.object, 'on_uprobe', binary, { symbol: 'periscope_target', pid: a.pid, cookie: 7n })
  const byOffset = attachUprobeMulti(entry.object, 'on_uprobe', binary, { offset, pid: b.pid, cookie: 9n })
  const returns = attachUprobe(exit.object, 'on_uretprobe', binary, { symbol: 'periscope_target', retprobe: true, cookie: 8n })
  const links = [bySymbol, byOffset, returns]
  assert.deepEqual(links.map((l) => [l.target, l.info().type, l.info().kind]), [
    [`uprobe_multi ${binary}:periscope_target`, 'uprobe_multi', 'uprobe_multi'],
    [`uprobe_multi ${binary}:0x${offset.toString(16)}`, 'uprobe_multi', 'uprobe_multi'],
    [`uretprobe_multi ${binary}:periscope_target`, 'uprobe_multi', 'uretprobe_multi'],
  ])
  const listed = bpftoolLinkIds()
  assert.ok(links.every((l) => l.id > 0 && listed.includes(l.id)))
  a.release()
  b.release()
  await Promise.all([a.exited, b.exited])
  entry.reader.drain()
  exit.reader.drain()
  const seen = (events: AttachEvent[], cookie: bigint) => events.filter((e) => e.cookie === cookie).map((e) => [e.program, e.tgid, e.value])
  // the arguments prove the probe sits at the function's first instruction
  assert.deepEqual(seen(entry.events, 7n), [0, 1, 2].map((n) => [FIRED.uprobe, a.pid, n]))
  assert.deepEqual(seen(entry.events, 9n), [0, 1, 2, 3, 4].map((n) => [FIRED.uprobe, b.pid, n]))
  assert.equal(entry.events.length, 8, 'nothing but those fired')
  const returned = seen(exit.events, 8n)
  assert.deepEqual(returned.filter(([, tgid]) => tgid === a.pid), [0, 1, 2].map((n) => [FIRED.uretprobe, a.pid, 2 * n]))
  assert.deepEqual(returned.filter(([, tgid]) => tgid === b.pid), [0, 1, 2, 3, 4].map((n) => [FIRED.uretprobe, b.pid, 2 * n]))

  assert.deepEqual(links.map((l) => l.detach()), [true, true, true])
  assert.deepEqual(links.map((l) => l.detach()), [false, false, false])
  const left = bpftoolLinkIds()
  assert.ok(links.every((l) => !left.includes(l.id)), 'no link is left in the kernel')
  const c = startTarget(binary, 4)
  c.release()
  await c.exited
  entry.reader.drain()
  exit.reader.drain()
  assert.deepEqual([...entry.events, ...exit.events].filter((e) => e.tgid === c.pid), [], 'detached uprobes do not fire')
})

test('uprobe_multi: a missing symbol is ENOSYMBOL; a program loaded as a classic uprobe is refused with what to do', async (t) => {
  if (!requireFeature(t, 'uprobe_multi', await probeAttach('uprobe_multi'))) return
  const { binary } = buildUprobeTarget()
  t.after(() => rmSync(join(binary, '..'), { recursive: true, force: true }))
  const multi = await loadOnly(t, 'on_uprobe', { attachType: UPROBE_MULTI_ATTACH_TYPE })
  assert.throws(() => attachUprobe(multi.object, 'on_uprobe', binary, { symbol: 'no_such_function' }), {
    code: 'ENOSYMBOL',
    message: `attach on_uprobe to uprobe_multi ${binary}:no_such_function: ${binary} has no function symbol no_such_function (searched .dynsym and .symtab)`,
  })
  const classic = await loadOnly(t, 'on_uretprobe')
  assert.throws(() => attachUprobeMulti(classic.object, 'on_uretprobe', binary, { symbol: 'periscope_target', retprobe: true }), {
    message: `attach on_uretprobe to uretprobe_multi ${binary}:periscope_target: the program was not loaded for uprobe_multi links; ` +
      "call setExpectedAttachType('on_uretprobe', 'trace_uprobe_multi') on its ObjectSpec before load",
  })
})

test('perf_event sampling attaches on every online CPU and fires on each', async (t) => {
  if (!requireFeature(t, 'perf_event', await probeAttach('perf_event'))) return
  const { object, events, reader, close } = await loadOnly(t, 'on_perf_event')
  const links = attachPerfEvent(object, 'on_perf_event', { frequency: 99, cookie: 3n })
  const cpus = onlineCpus()
  assert.equal(links.length, cpus.length)
  assert.ok(links.every((l) => l.id > 0))
  // the CPU clock does not tick on an idle CPU: keep each one busy until it has given a sample
  const spinners = cpus.map((cpu) => spawn('taskset', ['-c', String(cpu), 'sh', '-c', 'while :; do :; done'], { stdio: 'ignore' }))
  t.after(() => { for (const spinner of spinners) spinner.kill('SIGKILL') })
  await waitFor(() => {
    reader.drain()
    return cpus.every((cpu) => events.some((e) => e.value === cpu))
  }, 'a sample from every online CPU', 5000)
  assert.ok(events.every((e) => e.program === FIRED.perf_event && e.cookie === 3n))
  close()
  assert.ok(links.every((l) => !bpftoolLinkIds().includes(l.id)))
})

test('hardware perf events: sampled where the machine has a PMU, a clear error where it has none', async (t) => {
  if (!requireFeature(t, 'perf_event', await probeAttach('perf_event'))) return
  const object = await loadProbe('probe_perf_event')
  if (existsSync('/sys/bus/event_source/devices/cpu')) {
    const links = attachPerfEvent(object, 'probe_perf_event', { type: PERF_TYPE_HARDWARE, config: PERF_COUNT_HW_CPU_CYCLES, period: 1_000_000 })
    assert.ok(links.length > 0 && links.every((l) => l.id > 0))
  } else {
    assert.throws(() => attachPerfEvent(object, 'probe_perf_event', { type: PERF_TYPE_HARDWARE, config: PERF_COUNT_HW_CPU_CYCLES, period: 1_000_000 }),
      /attach probe_perf_event to perf_event type 0 config 0 cpu \d+: perf_event_open/)
  }
  object.close()
})

test('cgroup_skb attaches to a fresh cgroup, and closing the object detaches it', async (t) => {
  if (!requireFeature(t, 'cgroup_skb', await probeAttach('cgroup_skb'))) return
  const dir = `${cgroup2Root()}/periscope-test-${process.pid}`
  mkdirSync(dir)
  try {
    const object = await loadProbe('probe_cgroup_skb')
    const link = attachCgroup(object, 'probe_cgroup_skb', dir)
    assert.ok(link.id > 0)
    assert.equal(link.info().type, 'cgroup')
    assert.ok(bpftoolLinkIds().includes(link.id))
    object.close()
    assert.ok(!bpftoolLinkIds().includes(link.id))
  } finally {
    rmdirSync(dir)
  }
})

/** Sleeps this thread, for polling inside a synchronous callback. */
const pause = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)

test('tc: attaches to lo in a network namespace of its own, fires for exactly the packets sent there, leaves the host untouched', async (t) => {
  if (!requireFeature(t, 'tc', await probeAttach('tc'))) return
  const qdiscsBefore = execFileSync('tc', ['qdisc', 'show', 'dev', 'lo']).toString()
  const port = 40_000 + (process.pid % 20_000)
  const { object, events, reader, close } = await loadOnly(t, 'on_tc')
  const ours = () => events.filter((e) => e.port === port)
  // children spawned from this thread inherit its namespace, so ip, tc and bash act inside it
  const inside = native.withFreshNetworkNamespace(() => {
    execFileSync('ip', ['link', 'set', 'lo', 'up'])
    const link = attachTc(object, 'on_tc', 'lo', { direction: 'ingress', priority: 7 })
    const filters = execFileSync('tc', ['filter', 'show', 'dev', 'lo', 'ingress']).toString()
    execFileSync('bash', ['-c', `for i in 1 2 3; do echo x > /dev/udp/127.0.0.1/${port}; done`])
    const deadline = Date.now() + 2000
    while (ours().length < 3 && Date.now() < deadline) {
      reader.drain()
      pause(5)
    }
    assert.equal(link.id, 0)
    assert.equal(link.detach(), true)
    return { filters, after: execFileSync('tc', ['filter', 'show', 'dev', 'lo', 'ingress']).toString() }
  })
  assert.match(inside.filters, /on_tc/)
  assert.doesNotMatch(inside.after, /on_tc/)
  // each "x\n" datagram: 14 bytes of Ethernet, 20 of IPv4, 8 of UDP, 2 of payload
  assert.deepEqual(ours().map((e) => [e.program, e.value]), [[FIRED.tc, 44], [FIRED.tc, 44], [FIRED.tc, 44]])
  close()
  assert.equal(execFileSync('tc', ['qdisc', 'show', 'dev', 'lo']).toString(), qdiscsBefore, 'the host\'s lo keeps the qdiscs it had')
})

test('kprobe: attaches and fires where the kernel allows, a clear error where it does not', async (t) => {
  const { object, events, reader } = await loadOnly(t, 'on_unlink_kprobe')
  if ((await probeAttach('kprobe')).status === 'supported') {
    attachKprobe(object, 'on_unlink_kprobe', 'do_unlinkat', { cookie: 5n })
    const file = join(tmpdir(), `periscope-kprobe-${process.pid}`)
    writeFileSync(file, '')
    unlinkSync(file)
    reader.drain()
    assert.deepEqual(events.filter((e) => e.tgid === process.pid).map((e) => [e.program, e.cookie]), [[FIRED.kprobe, 5n]])
  } else {
    assert.throws(() => attachKprobe(object, 'on_unlink_kprobe', 'do_unlinkat'), (error: Error & { code?: string }) => {
      assert.match(error.message, /attach on_unlink_kprobe to kprobe do_unlinkat/)
      assert.ok(error.code !== undefined)
      return true
    })
  }
})

test('fentry: attaches and fires where the kernel allows, a clear error where it does not', async (t) => {
  if ((await probeAttach('fentry')).status === 'supported') {
    const { object, events, reader } = await loadOnly(t, 'on_unlink_fentry')
    const link = attachTracing(object, 'on_unlink_fentry')
    assert.equal(link.info().type, 'tracing')
    const file = join(tmpdir(), `periscope-fentry-${process.pid}`)
    writeFileSync(file, '')
    unlinkSync(file)
    reader.drain()
    assert.deepEqual(events.filter((e) => e.tgid === process.pid).map((e) => e.program), [FIRED.fentry])
  } else {
    const spec = ObjectSpec.open(fixture)
    for (const p of spec.programs()) spec.setAutoload(p.name, p.name === 'on_unlink_fentry')
    await assert.rejects(spec.load(), /load BPF object .*attach\.bpf\.o/)
  }
})

test('a syscall program runs on demand (test run) and its records arrive, numbered', async () => {
  const object = await ObjectSpec.open(objectPath('loopgen')).load()
  const seqs: number[] = []
  const reader = new RingBufferReader(object, 'events', {
    onBatch: (batch) => forEachRecord(batch, (view, offset, size) => {
      assert.equal(size, 64)
      seqs.push(decodeLoopgenEvent(view, offset).seq)
    }),
  })
  const context = new Uint8Array(8)
  new DataView(context.buffer).setUint32(0, 10, true)
  assert.equal(testRun(object, 'generate', context), 0)
  reader.drain()
  assert.deepEqual(seqs, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
  reader.close()
  object.close()
})

test('nothing from these tests is left on the host', () => {
  assert.deepEqual(readdirSync(cgroup2Root()!).filter((name) => name.startsWith('periscope-')), [])
})

test('closing an object detaches every one of its links, released side by side, and its programs with them', async () => {
  // fileio attaches 30 tracepoint links; close() releases them on threads of its own
  const { openLibraryObject } = await import('../../runtime/library/index.ts')
  const library = await openLibraryObject('fileio', { log: () => {} })
  const links = library.links().map((l) => l.id)
  const programs = library.programStats().map((p) => p.id)
  assert.equal(links.length, 30)
  assert.deepEqual(links.filter((id) => !bpftoolLinkIds().includes(id)), [], 'attached before the close')
  library.close()
  const left = new Set(bpftoolLinkIds())
  assert.deepEqual(links.filter((id) => left.has(id)), [], 'no link left after the close')
  const loaded = new Set((JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'list']).toString()) as { id: number }[]).map((p) => p.id))
  assert.deepEqual(programs.filter((id) => loaded.has(id)), [], 'no program left after the close')
})
