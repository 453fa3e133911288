/**
 * BPF self-metrics on the real kernel: each program's run count and run time, exported per object
 * and program, rise by exactly the runs the test causes; the kernel counts them only while
 * Periscope runs (it holds a BPF_ENABLE_STATS fd) and stops when it closes, leaving the
 * kernel.bpf_stats_enabled sysctl as it was.
 *
 * The fixture's programs are cgroup socket hooks on a cgroup of the test's own: the kernel runs
 * them once per socket() and once per socket close of a process in it, and for nothing else.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it, type TestContext } from 'node:test'
import type { ObjectProvider } from '../../runtime/bus.ts'
import { attachCgroup } from '../../runtime/bpf/links.ts'
import type { PeriscopeConfig } from '../../runtime/config/schema.ts'
import { ObjectSpec } from '../../runtime/bpf/object.ts'
import { LibraryObject } from '../../runtime/library/index.ts'
import { memoryLogger } from '../../runtime/plugins/log.ts'
import { MemorySink } from '../../runtime/plugins/sink.ts'
import { startRuntime } from '../../runtime/run.ts'
import type { SelfMetricPoint } from '../../runtime/telemetry/metrics.ts'
import { TestCgroup } from '../peers/cgroup.ts'
import { compileFixture, root, sleep } from './kernel.ts'

const fixture = compileFixture('prog-stats')
const decodersPath = join(root, 'bpf/lib/index.types.ts')

async function openFixture(cgroup: TestCgroup): Promise<LibraryObject> {
  const loaded = await ObjectSpec.open(fixture).load()
  try {
    const links = [attachCgroup(loaded, 'on_socket', cgroup.path), attachCgroup(loaded, 'on_release', cgroup.path)]
    return new LibraryObject('progstats', loaded, links, () => {})
  } catch (error) {
    loaded.close()
    throw error
  }
}

/** A process inside `cgroup` that opens and closes `count` sockets, then exits. */
async function socketsInCgroup(cgroup: TestCgroup, count: number): Promise<void> {
  const child = spawn('python3', ['-c', `import socket, sys\nsys.stdin.readline()\nfor _ in range(${count}): socket.socket().close()`], { stdio: ['pipe', 'inherit', 'inherit'] })
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once('error', reject)
    child.once('exit', resolve)
  })
  cgroup.add(child.pid as number)
  // it waits on stdin: every socket it opens is opened inside the cgroup
  child.stdin.end('go\n')
  assert.equal(await exited, 0, 'the socket-making process failed')
}

/** Processes holding a BPF_ENABLE_STATS fd, each once per fd. */
function statsHolders(): number[] {
  const holders: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    let fds: string[]
    try {
      fds = readdirSync(`/proc/${entry}/fd`)
    } catch {
      continue // exited meanwhile
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${entry}/fd/${fd}`) === 'anon_inode:bpf-stats') holders.push(Number(entry))
      } catch {
        // closed meanwhile
      }
    }
  }
  return holders
}

const otherHolders = () => statsHolders().filter((pid) => pid !== process.pid)
const ownStatsFds = () => statsHolders().filter((pid) => pid === process.pid).length
const sysctl = () => readFileSync('/proc/sys/kernel/bpf_stats_enabled', 'utf8').trim()

/**
 * How much `read` rises across `trigger` while no other process turns the kernel's stats on (other
 * Periscope runs on the machine do): waits for such a window and measures again if one began meanwhile.
 */
async function riseWhileAlone(trigger: () => Promise<void>, read: () => number): Promise<number> {
  const deadline = Date.now() + 300_000
  for (;;) {
    while (otherHolders().length > 0) {
      if (Date.now() > deadline) throw new Error(`processes ${otherHolders().join(', ')} kept the kernel's BPF stats on for 5 minutes; run this test alone`)
      await sleep(50)
    }
    const before = read()
    await trigger()
    const rise = read() - before
    if (otherHolders().length === 0) return rise
  }
}

/** A runtime over the fixture object, whose self-metrics the test reads as the exporter would. */
async function runtimeWithFixture(t: TestContext, cgroup: TestCgroup, objects: string[], config?: PeriscopeConfig): Promise<{ close(): Promise<void>; selfMetrics: () => SelfMetricPoint[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'periscope-prog-stats-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'holder.ts'), `import { definePlugin } from 'periscope/plugin'
export default definePlugin({ name: 'holder', objects: ${JSON.stringify(objects)}, setup() {} })
`)
  const sources = new Map<string, () => SelfMetricPoint[]>()
  const sink = Object.assign(new MemorySink(), {
    registerSelfMetrics(source: string, collect: () => SelfMetricPoint[]) {
      sources.set(source, collect)
      return () => { sources.delete(source) }
    },
  })
  const provider: ObjectProvider = {
    async open(name) {
      if (name !== 'progstats') throw new Error(`this test serves only object progstats, not ${name}`)
      return openFixture(cgroup)
    },
  }
  const log = memoryLogger()
  const runtime = await startRuntime({ provider, sink, log, config, pluginDirs: [dir], decodersPath, adminSocket: false, keepCapabilities: true })
  let closed: Promise<void> | undefined
  const close = () => (closed ??= runtime.close())
  t.after(close)
  assert.equal(runtime.manager.list()[0]?.status, 'running', log.lines.map((l) => l.message).join('\n'))
  return { close, selfMetrics: () => [...sources.values()].flatMap((read) => read()) }
}

/** program → value of one self-metric of object progstats. */
function byProgram(points: SelfMetricPoint[], name: string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const point of points) {
    if (point.name !== name || point.attributes?.['bpf.object'] !== 'progstats') continue
    out[point.attributes['bpf.program'] as string] = point.value
  }
  return out
}

describe('BPF program self-metrics', () => {
  it('run count rises by exactly the runs caused, per object and program, and run time with it', async (t) => {
    const cgroup = TestCgroup.create()
    t.after(() => cgroup.remove())
    const { close, selfMetrics } = await runtimeWithFixture(t, cgroup, ['progstats'])

    const first = selfMetrics()
    assert.deepEqual(byProgram(first, 'periscope.bpf.program.run.count'), { on_socket: 0, on_release: 0 })
    assert.deepEqual(byProgram(first, 'periscope.bpf.program.run.time'), { on_socket: 0, on_release: 0 })
    const point = first.find((p) => p.name === 'periscope.bpf.program.run.time')
    assert.equal(point?.unit, 's')
    assert.equal(point?.kind, 'counter')

    await socketsInCgroup(cgroup, 37)
    const second = selfMetrics()
    assert.deepEqual(byProgram(second, 'periscope.bpf.program.run.count'), { on_socket: 37, on_release: 37 })
    const time = byProgram(second, 'periscope.bpf.program.run.time')
    // each run takes more than a nanosecond and, for a program that returns at once, far less than 100 µs
    for (const program of ['on_socket', 'on_release']) {
      assert.ok(time[program] > 37e-9 && time[program] < 37 * 100e-6, `${program}: ${time[program]} s for 37 runs`)
    }

    await socketsInCgroup(cgroup, 5)
    assert.deepEqual(byProgram(selfMetrics(), 'periscope.bpf.program.run.count'), { on_socket: 42, on_release: 42 })

    // the final collection, read at close, keeps the totals
    await close()
    assert.deepEqual(byProgram(selfMetrics(), 'periscope.bpf.program.run.count'), { on_socket: 42, on_release: 42 })
  })

  it('the kernel counts runs only while Periscope runs: stats on at start, off at close, the sysctl left as it was', async (t) => {
    const cgroup = TestCgroup.create()
    t.after(() => cgroup.remove())
    const object = await openFixture(cgroup)
    t.after(() => object.close())
    const runs = () => object.programStats().find((p) => p.name === 'on_socket')?.runCount ?? Number.NaN
    const sysctlBefore = sysctl()
    // an administrator's sysctl keeps the stats on whatever Periscope does
    const riseWhenOff = sysctlBefore === '1' ? 20 : 0
    assert.equal(ownStatsFds(), 0)
    assert.equal(await riseWhileAlone(() => socketsInCgroup(cgroup, 20), runs), riseWhenOff, 'counted before Periscope started')

    // a runtime with no objects: the stats are the runtime's, for every program on the machine
    const { close } = await runtimeWithFixture(t, cgroup, [])
    assert.equal(ownStatsFds(), 1, 'the runtime holds one BPF_ENABLE_STATS fd while it runs')
    const before = runs()
    await socketsInCgroup(cgroup, 20)
    assert.equal(runs() - before, 20, 'counted while Periscope runs')

    await close()
    assert.equal(ownStatsFds(), 0, 'the fd is closed with the runtime')
    assert.equal(sysctl(), sysctlBefore)
    assert.equal(await riseWhileAlone(() => socketsInCgroup(cgroup, 20), runs), riseWhenOff, 'counted after Periscope stopped')
  })

  it('with self_metrics.bpf_program_stats false the runtime leaves the stats alone and exports no program series', async (t) => {
    const cgroup = TestCgroup.create()
    t.after(() => cgroup.remove())
    const { close, selfMetrics } = await runtimeWithFixture(t, cgroup, ['progstats'], { self_metrics: { bpf_program_stats: false } })
    assert.equal(ownStatsFds(), 0, 'no BPF_ENABLE_STATS fd held')
    await socketsInCgroup(cgroup, 5)
    // an administrator's sysctl has them on anyway: then they cost nothing more, and are exported
    const expected = sysctl() === '1' ? { on_socket: 5, on_release: 5 } : {}
    assert.deepEqual(byProgram(selfMetrics(), 'periscope.bpf.program.run.count'), expected)
    await close()
  })
})
