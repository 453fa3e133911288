/**
 * CPU profiles end to end: `periscope run` with only the shipped cpu-profile plugin (99 Hz,
 * target_pids, a 2 s interval), its gzipped pprof files decoded as a backend would read them.
 * - a C burner built -fno-omit-frame-pointer (80% hot_loop, 20% cold_loop): ≥90% of samples in
 *   the two, in that ratio within 10%, every stack through main, the same top functions as
 *   Debian's `perf record -g` on the same process;
 * - the same burner -O2 -fomit-frame-pointer and a C++ program of templates: the same stacks
 *   through main, names demangled, the same leaves as `perf record --call-graph dwarf`;
 * - a busy Debian redis-server (redis-benchmark): ≥90% of samples reach _start or a thread's start;
 * - Node with --perf-basic-prof: its hot JavaScript function by name;
 * - Python 3.12 with -X perf: its hot function by name, stacks whole through its perf trampolines.
 * Everything starts at once; each program is killed once its test has what it needs.
 */
import assert from 'node:assert/strict'
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { homedir, tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { pollUntil } from '../peers/poll.ts'
import { startPeriscope, type Periscope } from '../peers/periscope.ts'
import { storedProfiles } from '../peers/pprof-files.ts'
import { REDIS_BENCHMARK, startRedis, type Redis } from '../peers/redis.ts'

const root = join(import.meta.dirname, '../..')
const work = mkdtempSync(join(tmpdir(), 'periscope-cpu-profile-'))
const burnerSource = join(root, 'test/bpf/fixtures/unwind-burner.c')

/** One pprof sample, its frames named leaf first. */
interface Sampled {
  pid: number
  thread: number
  comm: string
  count: number
  functions: string[]
}

/** Every sample of every pprof file the run wrote so far. */
function readProfiles(periscope: Periscope): Sampled[] {
  return storedProfiles(periscope).flatMap(({ file, profile }) => {
    const str = (i: unknown) => profile.stringTable.strings[Number(i)]!
    const functions = new Map(profile.function.map((f) => [Number(f.id), str(f.name)]))
    const locations = new Map(profile.location.map((l) => [Number(l.id), l.line.map((line) => functions.get(Number(line.functionId)) ?? '?')[0] ?? '?']))
    return profile.sample.map((sample) => {
      const label = (key: string) => sample.label.find((l) => str(l.key) === key)
      return {
        pid: Number(label('pid')?.num),
        thread: Number(label('thread')?.num),
        comm: str(label('comm')?.str),
        count: Number(sample.value[0]),
        functions: sample.locationId.map((id) => locations.get(Number(id))!),
      }
    })
  })
}

function samplesOf(periscope: Periscope, pid: number): Sampled[] {
  return readProfiles(periscope).filter((s) => s.pid === pid)
}

const total = (samples: Sampled[]) => samples.reduce((sum, s) => sum + s.count, 0)

/** Samples by leaf function, most first: the first user frame, past the kernel frames of an interrupt taken there. */
function leaves(samples: Sampled[]): Map<string, number> {
  const counts = new Map<string, number>()
  for (const s of samples) {
    const leaf = s.functions[s.functions.findLastIndex((f) => f.startsWith('asm_')) + 1] ?? '?'
    counts.set(leaf, (counts.get(leaf) ?? 0) + s.count)
  }
  return new Map([...counts].sort((a, b) => b[1] - a[1]))
}

/** The share of samples whose stack is whole (no `[truncated: …]` root), for the diagnostics. */
function completeShare(samples: Sampled[]): string {
  const truncated = total(samples.filter((s) => s.functions.at(-1)!.startsWith('[truncated')))
  return `${total(samples) - truncated} of ${total(samples)} samples complete`
}

/** The leaf functions perf recorded, by samples (`perf script`: one block per sample, leaf first). */
function perfLeaves(data: string): Map<string, number> {
  const counts = new Map<string, number>()
  const script = execFileSync('perf', ['script', '-i', data, '-F', 'ip,sym'], { encoding: 'utf8', maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'ignore'] })
  for (const block of script.split(/\n\s*\n/)) {
    const leaf = block.trim().split('\n')[0]?.trim().split(/\s+/).slice(1).join(' ')
    if (leaf !== undefined && leaf !== '') counts.set(leaf, (counts.get(leaf) ?? 0) + 1)
  }
  return new Map([...counts].sort((a, b) => b[1] - a[1]))
}

function topTwo(counts: Map<string, number>): string[] {
  return [...counts.keys()].slice(0, 2).sort()
}

/** Until `pid` has run 50 ms of CPU: past the dynamic loader, in its loops. */
function burning(pid: number): Promise<void> {
  const ticks = () => Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[11])
  return pollUntil(() => ticks() >= 5, { what: `process ${pid} to run 50 ms of CPU`, timeoutMs: 60_000 })
}

describe('CPU profiles from periscope run', { timeout: 600_000 }, () => {
  const children: ChildProcess[] = []
  let periscope: Periscope
  let redis: Redis
  let framePointers: ChildProcess, noFramePointers: ChildProcess, templates: ChildProcess, node: ChildProcess, python: ChildProcess, benchmark: ChildProcess
  const perf = new Map<number, { data: string; done: Promise<unknown> }>()

  const start = (binary: string, args: string[] = [], options: { cwd?: string } = {}) => {
    const child = spawn(binary, args, { stdio: 'ignore', env: {}, cwd: options.cwd ?? work })
    children.push(child)
    return child
  }
  /** perf record on `pid` for 6 s, as a user would run it beside Periscope. */
  const record = (pid: number, callGraph: string[]) => {
    const data = join(work, `perf-${pid}.data`)
    const child = spawn('perf', ['record', '-F', '99', ...callGraph, '-p', String(pid), '-o', data, '--', 'sleep', '6'], { stdio: 'ignore' })
    children.push(child)
    perf.set(pid, { data, done: new Promise((resolve) => child.once('exit', resolve)) })
  }

  before(async () => {
    const cc = (output: string, flags: string[], source = burnerSource, compiler = 'cc') =>
      execFileSync(compiler, ['-O2', ...flags, '-o', join(work, output), source])
    cc('burner-fp', ['-fno-omit-frame-pointer'])
    cc('burner-nofp', ['-fomit-frame-pointer'])
    cc('templates', ['-fomit-frame-pointer'], join(root, 'test/e2e/fixtures/cpu-templates.cpp'), 'g++')
    framePointers = start(join(work, 'burner-fp'))
    noFramePointers = start(join(work, 'burner-nofp'))
    templates = start(join(work, 'templates'))
    // this very node binary (the repository's launcher would be another process); without
    // inlining the hot function keeps code of its own, which the perf map names
    node = spawn(process.execPath, ['--perf-basic-prof', '--no-turbo-inlining', '-e',
      'function periscopeHotFunction(n) { let x = 0; for (let i = 0; i < n; i++) x = (x * 31 + i) | 0; return x }\n' +
      'let sink = 0; for (;;) sink += periscopeHotFunction(100000)'], { stdio: 'ignore', cwd: work })
    children.push(node)
    const versions = readdirSync(join(homedir(), '.pyenv/versions')).filter((v) => /^3\.1[2-9]\./.test(v)).sort()
    assert.ok(versions.length > 0, 'pyenv has a Python 3.12 or later')
    python = start(join(homedir(), '.pyenv/versions', versions[0]!, 'bin/python'), ['-X', 'perf', '-c',
      'def periscope_hot_function(n):\n    s = 0\n    for i in range(n):\n        s += (i * i) % 7\n    return s\n' +
      'while True:\n    periscope_hot_function(100000)\n'])
    redis = await startRedis()
    for (const child of [framePointers, noFramePointers, templates, node, python]) await burning(child.pid!)
    const pids = [framePointers, noFramePointers, templates, node, python].map((c) => c.pid!).concat(redis.pid)
    periscope = await startPeriscope({
      shipped: ['cpu-profile'],
      config: {
        receiver: { profiles: { cpu_sampling_rate: 99, collect_interval: '2s', target_pids: pids } },
        exporter: { profiles: { intervalMs: 2000 } },
      },
      ready: /running 1 of \d+ plugins/,
    })
    await periscope.waitForOutput(/CPU profiles at 99 Hz of pids/, 'the cpu-profile plugin to start')
    children.push(benchmark = spawn(REDIS_BENCHMARK, ['-h', '127.0.0.1', '-p', String(redis.port), '-q', '-l', '-n', '1000000', '-P', '4', '-r', '100000', '-t', 'set,get,incr,lpush,lpop,hset,zadd'], { stdio: 'ignore' }))
    record(framePointers.pid!, ['-g'])
    record(noFramePointers.pid!, ['--call-graph', 'dwarf'])
    record(templates.pid!, ['--call-graph', 'dwarf'])
  })

  after(async () => {
    for (const child of children) child.kill('SIGKILL')
    for (const child of [node, python]) if (child?.pid !== undefined) rmSync(`/tmp/perf-${child.pid}.map`, { force: true })
    await periscope?.stop()
    await redis?.stop()
    rmSync(work, { recursive: true, force: true })
  })

  /** The samples of `pid` once there are at least `count`. */
  async function profileOf(pid: number, count: number): Promise<Sampled[]> {
    let samples: Sampled[] = []
    await pollUntil(() => total(samples = samplesOf(periscope, pid)) >= count,
      { what: `${count} samples of pid ${pid} in the pprof files (have ${total(samples)})`, timeoutMs: 120_000, intervalMs: 500 })
    return samples
  }

  it('a frame-pointer burner: 90% of samples in its two loops, 80:20 within 10%, all through main, perf -g agrees', async (t) => {
    const pid = framePointers.pid!
    // 200 samples: the 80:20 split within 10% at 3 standard deviations
    const samples = await profileOf(pid, 200)
    t.diagnostic(`frame pointers: ${completeShare(samples)}`)
    const byLeaf = leaves(samples)
    const hot = byLeaf.get('hot_loop') ?? 0, cold = byLeaf.get('cold_loop') ?? 0
    const all = total(samples)
    assert.ok(hot + cold >= 0.9 * all, `${hot + cold} of ${all} samples in hot_loop and cold_loop: ${JSON.stringify([...byLeaf])}`)
    assert.ok(Math.abs(hot / (hot + cold) - 0.8) <= 0.1, `hot_loop share ${(hot / (hot + cold)).toFixed(3)}`)
    for (const s of samples) {
      assert.ok(s.functions.includes('main') && s.functions.at(-1) === '_start', s.functions.join(' < '))
      assert.equal(s.comm, 'burner-fp')
      assert.equal(s.thread, pid)
    }
    await perf.get(pid)!.done
    // done with it: the cores go to the other programs
    framePointers.kill('SIGKILL')
    const theirs = perfLeaves(perf.get(pid)!.data)
    const perfHot = theirs.get('hot_loop') ?? 0, perfCold = theirs.get('cold_loop') ?? 0
    t.diagnostic(`hot_loop share: ${(100 * hot / (hot + cold)).toFixed(1)}% of ${all} samples here, ${(100 * perfHot / (perfHot + perfCold)).toFixed(1)}% of ${perfHot + perfCold} by perf -g`)
    assert.deepEqual(topTwo(theirs), ['cold_loop', 'hot_loop'])
    assert.deepEqual(topTwo(byLeaf), ['cold_loop', 'hot_loop'])
  })

  it('the burner without frame pointers and a C++ program of templates: whole stacks through main, demangled, the leaves perf --call-graph dwarf sees', async (t) => {
    const burner = await profileOf(noFramePointers.pid!, 120)
    t.diagnostic(`no frame pointers: ${completeShare(burner)}`)
    for (const s of burner) {
      // a sample in middle or main themselves (between the calls) has them for leaf
      assert.match(s.functions.join(' < '), /(^|< )(((hot_loop|cold_loop) < )?middle < )?main < .* < _start$/)
    }
    const cpp = await profileOf(templates.pid!, 120)
    t.diagnostic(`C++: ${completeShare(cpp)}`)
    for (const s of cpp) {
      assert.match(s.functions.join(' < '), /(^|< )((periscope::Spinner<(double|unsigned long)>::spin\((double|unsigned long), unsigned long\) < )?(double|unsigned long) periscope::churn<(double|unsigned long)>\(unsigned long\) < )?main < .* < _start$/)
    }
    for (const [child, samples] of [[noFramePointers, burner], [templates, cpp]] as const) {
      await perf.get(child.pid!)!.done
      child.kill('SIGKILL')
      // perf prints C++ names without their parameters
      const bare = (names: string[]) => names.map((name) => name.replace(/\(.*\)$/, ''))
      const theirs = topTwo(perfLeaves(perf.get(child.pid!)!.data))
      assert.deepEqual(bare(topTwo(leaves(samples))), theirs, `perf's top leaves of pid ${child.pid}: ${theirs.join(', ')}`)
    }
  })

  it('a busy redis-server: 90% of samples reach _start or the thread start', async (t) => {
    const samples = await profileOf(redis.pid, 200)
    benchmark.kill('SIGKILL')
    t.diagnostic(`redis-server: ${completeShare(samples)}`)
    const roots = new Map<string, number>()
    for (const s of samples) roots.set(s.functions.at(-1)!, (roots.get(s.functions.at(-1)!) ?? 0) + s.count)
    const reached = (roots.get('_start') ?? 0) + (roots.get('clone3') ?? 0) + (roots.get('clone') ?? 0)
    assert.ok(reached >= 0.9 * total(samples), `${reached} of ${total(samples)} samples reach _start or clone3; roots ${JSON.stringify([...roots])}`)
  })

  it('Node with --perf-basic-prof: the hot JavaScript function by name', async () => {
    const samples = await profileOf(node.pid!, 100)
    const named = samples.filter((s) => s.functions.some((f) => /periscopeHotFunction/.test(f)))
    assert.ok(total(named) >= 0.5 * total(samples), `${total(named)} of ${total(samples)} samples in periscopeHotFunction: ${JSON.stringify([...leaves(samples)].slice(0, 5))}`)
    node.kill('SIGKILL')
  })

  it('Python with -X perf: the hot function by name, stacks whole through its perf trampolines', async (t) => {
    const samples = await profileOf(python.pid!, 100)
    t.diagnostic(`python: ${completeShare(samples)}`)
    const named = samples.filter((s) => s.functions.includes('py::periscope_hot_function:<string>'))
    assert.ok(total(named) >= 0.9 * total(samples), `${total(named)} of ${total(samples)} samples in periscope_hot_function`)
    for (const s of named) {
      // the function's trampoline returns into the interpreter, which was called from the module's
      // (python's main is a tail call to Py_BytesMain); a sample in the trampoline's own few
      // instructions has the function as its leaf (1 of 394 in a CI run)
      assert.match(s.functions.join(' < '), /(^|< )py::periscope_hot_function:<string> < py_trampoline_evaluator < .* < py::<module>:<string> < py_trampoline_evaluator < .* < Py_BytesMain < __libc_start_call_main < .* < _start$/, s.functions.join(' < '))
    }
    python.kill('SIGKILL')
  })
})
