/**
 * User-space unwinding of real CPU samples (bpf/lib/stacks.bpf.o on the real kernel, unwound by
 * runtime/profiling/unwind.ts) of a C burner built `-O2 -fomit-frame-pointer`: its stacks go
 * through main with the right functions, in the ratio `perf record --call-graph dwarf` (Debian's
 * perf, an independent unwinder: libdw) measures on the same process at the same time; a copy too
 * short for the stack is reported truncated, never complete.
 */
import assert from 'node:assert/strict'
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { decodeStackSample, STACK_SAMPLE_SIZE } from '../../bpf/lib/stacks.types.ts'
import { probeAttach } from '../../runtime/bpf/features.ts'
import { SAMPLE_BP, SAMPLE_COMM, SAMPLE_COPY_END, SAMPLE_CPU, SAMPLE_IP, SAMPLE_KERNEL, SAMPLE_KERNEL_FRAMES, SAMPLE_PID, SAMPLE_SP, SAMPLE_STACK, SAMPLE_STACK_SIZE, SAMPLE_TID, SAMPLE_TIMESTAMP, SAMPLE_VALUE, StackUnwinder, UNWIND_COMPLETE, UNWIND_COPY_ENDED, UNWIND_END_NAMES } from '../../runtime/profiling/unwind.ts'
import { pollUntil } from '../peers/poll.ts'
import { requireFeature, root } from './kernel.ts'
import { frameNamer, sampleProcess } from './unwind-fixture.ts'

const work = mkdtempSync(join(tmpdir(), 'periscope-unwind-'))
const burner = join(work, 'burner')
let child: ChildProcess

/** Until the burner has run 50 ms of CPU: past the dynamic loader's start-up, in its loops. */
function burning(pid: number): Promise<void> {
  const userTicks = () => Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[11])
  return pollUntil(() => userTicks() >= 5, { what: `the burner (pid ${pid}) to run 50 ms of CPU`, timeoutMs: 60_000 })
}

before(async () => {
  execFileSync('cc', ['-O2', '-fomit-frame-pointer', '-o', burner, join(root, 'test/bpf/fixtures/unwind-burner.c')])
  // no function sets up a frame pointer; middle() keeps a value of its own in rbp, so only the
  // .eh_frame rule for the caller's saved rbp gives main's rbp back
  for (const name of ['main', 'middle', 'hot_loop', 'cold_loop']) {
    const code = execFileSync('objdump', ['-d', '--no-show-raw-insn', `--disassemble=${name}`, burner], { encoding: 'utf8' })
    assert.doesNotMatch(code, /mov\s+%rsp,%rbp/, `${name} is built without a frame pointer`)
  }
  // an empty environment: the stack above main stays a few hundred bytes, whatever the test's own
  child = spawn(burner, { stdio: 'ignore', env: {} })
  await burning(child.pid!)
})

after(() => {
  child?.kill('SIGKILL')
  rmSync(work, { recursive: true, force: true })
})

/** The leaf functions perf's DWARF unwinder saw, from `perf script` (one block per sample, leaf first). */
function perfLeaves(data: string): Map<string, number> {
  const leaves = new Map<string, number>()
  const script = execFileSync('perf', ['script', '-i', data, '-F', 'ip,sym'], { encoding: 'utf8', maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'ignore'] })
  for (const block of script.split(/\n\s*\n/)) {
    const leaf = block.trim().split('\n')[0]?.trim().split(/\s+/)[1]
    if (leaf !== undefined) leaves.set(leaf, (leaves.get(leaf) ?? 0) + 1)
  }
  return leaves
}

describe('unwinding CPU samples of an -O2 -fomit-frame-pointer burner', () => {
  it('stacks go through main with the right functions, in the ratio perf --call-graph dwarf sees', async (t) => {
    if (!requireFeature(t, 'perf_event', await probeAttach('perf_event'))) return
    const pid = child.pid!
    const perfData = join(work, 'perf.data')
    let perf: ChildProcess | undefined
    let perfExit: Promise<unknown> | undefined
    const { records, dropped } = await sampleProcess(pid, {
      stackBytes: 8192,
      count: 300,
      // perf samples the same process over the same time, with its own DWARF unwinder
      whileSampling: () => {
        perf = spawn('perf', ['record', '-F', '99', '--call-graph', 'dwarf', '-p', String(pid), '-o', perfData], { stdio: 'ignore' })
        perfExit = new Promise((resolve) => perf!.once('exit', resolve))
      },
    })
    perf!.kill('SIGINT')
    await perfExit
    assert.equal(dropped, 0)

    const unwinder = new StackUnwinder()
    const frames = new Float64Array(128)
    const name = frameNamer(pid, burner)
    const leaves = new Map<string, number>()
    let throughMain = 0, complete = 0
    for (const record of records) {
      const count = unwinder.unwindSample(record, 0, frames)
      const names = name(frames.subarray(0, count))
      leaves.set(names[0]!, (leaves.get(names[0]!) ?? 0) + 1)
      if (unwinder.end === UNWIND_COMPLETE) complete++
      // the leaf, then middle, then main: the burner's only call chain
      if (/^(hot|cold)_loop$/.test(names[0]!) && names[1] === 'middle' && names[2] === 'main' && names.at(-1) === '_start' && unwinder.end === UNWIND_COMPLETE) throughMain++
      assert.equal(unwinder.framePointerFrames, 0, `every frame from .eh_frame: ${names.join(' < ')}`)
    }
    const samples = records.length
    assert.ok(throughMain >= 0.9 * samples, `${throughMain} of ${samples} samples unwind hot_loop|cold_loop < middle < main < … < _start; leaves ${JSON.stringify([...leaves])}`)
    assert.equal(complete, samples, 'every stack of the burner is whole (the main thread\'s stack fits 8 KB)')

    const ours = (leaves.get('hot_loop') ?? 0) / ((leaves.get('hot_loop') ?? 0) + (leaves.get('cold_loop') ?? 0))
    const theirs = perfLeaves(perfData)
    const perfHot = theirs.get('hot_loop') ?? 0, perfCold = theirs.get('cold_loop') ?? 0
    assert.ok(perfHot + perfCold >= 30, `perf recorded ${perfHot + perfCold} samples in the two loops: ${JSON.stringify([...theirs])}`)
    const perfShare = perfHot / (perfHot + perfCold)
    t.diagnostic(`hot_loop share: ${(100 * ours).toFixed(1)}% of ${samples} samples here, ${(100 * perfShare).toFixed(1)}% of ${perfHot + perfCold} by perf`)
    assert.ok(Math.abs(ours - perfShare) <= 0.1, `hot_loop share ${ours.toFixed(3)} here, ${perfShare.toFixed(3)} by perf`)
    assert.ok(Math.abs(ours - 0.8) <= 0.1, `hot_loop share ${ours.toFixed(3)}, the burner spends 80% there`)
  })

  it('a signal handler\'s stacks go on through the kernel\'s signal frame to the code it interrupted and main', async (t) => {
    if (!requireFeature(t, 'perf_event', await probeAttach('perf_event'))) return
    const signalled = spawn(burner, ['signal'], { stdio: 'ignore' })
    t.after(() => signalled.kill('SIGKILL'))
    await burning(signalled.pid!)
    const { records } = await sampleProcess(signalled.pid!, { stackBytes: 8192, count: 200 })
    const unwinder = new StackUnwinder()
    const frames = new Float64Array(128)
    const name = frameNamer(signalled.pid!, burner)
    let inHandler = 0, throughMain = 0
    for (const record of records) {
      const names = name(frames.subarray(0, unwinder.unwindSample(record, 0, frames)))
      const complete = unwinder.end === UNWIND_COMPLETE && names.at(-1) === '_start' && names.includes('main')
      if (complete) throughMain++
      const handler = names.indexOf('in_handler')
      if (handler < 0) continue
      inHandler++
      // the handler returns to glibc's __restore_rt, above which are the interrupted frames
      assert.equal(names[handler + 1], 'libc.so.6', names.join(' < '))
      assert.match(names[handler + 2]!, /^(hot_loop|cold_loop|middle|main)$/, names.join(' < '))
      assert.ok(complete, `${names.join(' < ')}: ${UNWIND_END_NAMES[unwinder.end]}`)
    }
    // the handler runs about 4/9 of the time: hot_loop(4M) every 10 ms of the burner's CPU
    assert.ok(inHandler >= 0.2 * records.length, `${inHandler} of ${records.length} samples in the handler`)
    assert.ok(throughMain >= 0.9 * records.length, `${throughMain} of ${records.length} samples reach main and _start`)
  })

  it('a copy shorter than the stack gives truncated stacks, never complete ones', async (t) => {
    if (!requireFeature(t, 'perf_event', await probeAttach('perf_event'))) return
    // 256 bytes hold the innermost frames, not those of libc's start code above main
    const { records } = await sampleProcess(child.pid!, { stackBytes: 256, count: 30 })
    const unwinder = new StackUnwinder()
    const frames = new Float64Array(128)
    for (const record of records) {
      assert.equal(record.getUint32(SAMPLE_STACK_SIZE, true), 256)
      assert.equal(record.getUint32(SAMPLE_COPY_END, true), 1, 'STACK_COPY_LIMIT: the stack goes on above the copy')
      unwinder.unwindSample(record, 0, frames)
      assert.equal(unwinder.end, UNWIND_COPY_ENDED)
    }
  })

  it('with wakeup_bytes the samples wait in the ring for a drain, whole', async (t) => {
    if (!requireFeature(t, 'perf_event', await probeAttach('perf_event'))) return
    // the ring (4 MB) never holds 1 GB: no sample wakes the reader, the fixture's drain() reads them
    const { records, dropped } = await sampleProcess(child.pid!, { stackBytes: 8192, wakeupBytes: 2 ** 30, count: 50 })
    assert.equal(dropped, 0)
    const unwinder = new StackUnwinder()
    const frames = new Float64Array(128)
    for (const record of records) {
      assert.equal(record.getUint32(SAMPLE_PID, true), child.pid)
      unwinder.unwindSample(record, 0, frames)
      assert.equal(unwinder.end, UNWIND_COMPLETE)
    }
  })

  it('the record layout the unwinder reads is the generated decoder\'s', async (t) => {
    if (!requireFeature(t, 'perf_event', await probeAttach('perf_event'))) return
    const { records } = await sampleProcess(child.pid!, { stackBytes: 32768, count: 5 })
    for (const record of records) {
      const decoded = decodeStackSample(record, 0, record.byteLength)
      assert.equal(record.getUint32(SAMPLE_PID, true), decoded.pid)
      assert.equal(record.getUint32(SAMPLE_TID, true), decoded.tid)
      assert.equal(record.getBigUint64(SAMPLE_IP, true), decoded.ip)
      assert.equal(record.getBigUint64(SAMPLE_SP, true), decoded.sp)
      assert.equal(record.getBigUint64(SAMPLE_BP, true), decoded.bp)
      assert.equal(record.getUint32(SAMPLE_STACK_SIZE, true), decoded.stack_size)
      assert.equal(record.getBigUint64(SAMPLE_TIMESTAMP, true), BigInt(decoded.timestamp_ns))
      assert.equal(record.getUint32(SAMPLE_CPU, true), decoded.cpu)
      assert.equal(record.getUint32(SAMPLE_KERNEL_FRAMES, true), decoded.kernel_frames)
      assert.equal(record.getBigUint64(SAMPLE_VALUE, true), BigInt(decoded.value))
      assert.equal(record.getBigUint64(SAMPLE_KERNEL, true), decoded.kernel[0])
      assert.equal(new TextDecoder().decode(new Uint8Array(record.buffer, record.byteOffset + SAMPLE_COMM, 6)), decoded.comm)
      assert.equal(SAMPLE_STACK, STACK_SAMPLE_SIZE)
      // a CPU sample weighs one
      assert.equal(decoded.value, 1)
      assert.equal(decoded.pid, child.pid)
      assert.equal(decoded.comm, 'burner')
      // the main thread's stack (main's frame, then argv, the environment and the aux vector) ends
      // a few KB above sp: the copy stops there, not at 32 KB
      assert.ok(decoded.stack_size > 0 && decoded.stack_size < 32768, `${decoded.stack_size} bytes`)
      assert.equal(decoded.copy_end, 0)
    }
  })
})
