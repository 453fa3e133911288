// The processes plugin end to end: `periscope run` with only it, exporting to a real Collector,
// while this test runs known workloads under executable names of their own. A workload that
// sleeps 1 ms 30 times, touches 1000 fresh pages and exits with 7 gives exactly one start and one
// exit log (code 7) and context switch and page fault counts between the kernel's own counts of
// it and those plus its last steps; a shell forking 20 children gives exactly 20 start and 20
// exit logs under it; a workload past its memory cgroup's limit gives exactly one OOM kill log;
// the run-queue latency histogram arrives with the kernel's log2 buckets.
import assert from 'node:assert/strict'
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { attributesOf, counterTotal, flatten, type Collector } from '../peers/otelcol.ts'
import { startPluginRun, type PluginRun } from '../peers/plugin-run.ts'
import { memoryCgroup } from '../peers/memory-cgroup.ts'
import { pollUntil } from '../peers/poll.ts'
import { runqBoundaries } from '../../runtime/protocols/sched.ts'

type Json = Record<string, unknown>

const root = fileURLToPath(new URL('../../', import.meta.url))
/** comm is 15 bytes at most: a prefix and 8 hex digits name this run's workload alone. */
const workloadName = `pswl-${randomBytes(4).toString('hex')}`

interface LogRecord {
  eventName: string
  attributes: Record<string, unknown>
}

function logsOf(lines: readonly Json[]): LogRecord[] {
  return flatten('logs', lines).filter((l) => l.scope.name === 'processes').map(({ item }) => ({ eventName: item.eventName as string, attributes: attributesOf(item.attributes) }))
}

describe('process metrics and lifecycle logs through a real Collector', { timeout: 600_000 }, () => {
  let run: PluginRun | undefined
  let collector: Collector
  let workload: string
  let dir: string

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'periscope-processes-'))
    const built = join(dir, 'sched-workload')
    execFileSync('cc', ['-O2', '-Wall', '-pthread', '-o', built, join(root, 'test/bpf/fixtures/sched-workload.c')])
    workload = join(dir, workloadName)
    copyFileSync(built, workload)
    execFileSync('chmod', ['755', workload])
    run = await startPluginRun('processes', { config: { collect_interval_ms: 500 } }, /plugin processes: process metrics/)
    collector = run.collector
  })

  after(async () => {
    await run?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('gives a workload exactly one start and one exit log, and its switches and faults within the kernel\'s counts', async () => {
    const child = spawn(workload, ['run', '30', '1000', '7'])
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
    const pid = child.pid!
    await pollUntil(() => output.includes('ready\n'), { what: 'the workload to start', timeoutMs: 10_000 })
    child.stdin.write('go\n')
    await pollUntil(() => output.includes('done\n'), { what: 'the workload to run', timeoutMs: 30_000 })
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const switches = ['voluntary_ctxt_switches', 'nonvoluntary_ctxt_switches'].reduce((sum, field) => sum + Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(status)![1]), 0)
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').slice(readFileSync(`/proc/${pid}/stat`, 'utf8').lastIndexOf(')') + 2).split(' ')
    const faults = Number(stat[7]) + Number(stat[9])
    child.stdin.write('go\n')
    assert.equal(await exited, 7)

    const match = { 'process.executable.name': workloadName }
    const lines = await collector.waitFor('logs', (l) => logsOf(l).some((r) => r.eventName === 'process.exit' && r.attributes['process.pid'] === pid), 30_000)
    const ofPid = logsOf(lines).filter((r) => r.attributes['process.pid'] === pid)
    assert.deepEqual(ofPid.map((r) => r.eventName).sort(), ['process.exit', 'process.start'])
    const exit = ofPid.find((r) => r.eventName === 'process.exit')!.attributes
    assert.equal(exit['process.exit.code'], 7)
    assert.equal(exit['process.exit.signal'], undefined)
    assert.equal(exit['process.executable.name'], workloadName)
    assert.equal(exit['process.parent_pid'], process.pid)
    assert.equal(ofPid.find((r) => r.eventName === 'process.start')!.attributes['process.parent_pid'], process.pid)

    // its last counts travel on its exit record, so they arrive with the next collection
    let metrics: Json[] = []
    await pollUntil(async () => {
      metrics = await collector.read('metrics')
      return counterTotal(metrics, 'process.context_switches', match) >= switches && counterTotal(metrics, 'process.paging.faults', match) >= 1000
    }, { what: `the workload's switches (${switches} by the kernel's count) and faults (≥ 1000) in the Collector`, timeoutMs: 30_000, intervalMs: 200 })
    const exported = counterTotal(metrics, 'process.context_switches', match)
    assert.ok(exported <= switches + 5, `exported ${exported} switches, the kernel counted ${switches} before its last steps`)
    assert.ok(counterTotal(metrics, 'process.context_switches', { ...match, 'process.context_switch_type': 'voluntary' }) >= 30)
    // by executable name only, unless per_pid asks for pids
    const pidSeries = flatten('metrics', metrics).filter(({ item }) => item.name === 'process.context_switches')
      .flatMap(({ item }) => (item.sum as Json).dataPoints as Json[]).filter((point) => 'process.pid' in attributesOf(point.attributes))
    assert.equal(pidSeries.length, 0)
    const exportedFaults = counterTotal(metrics, 'process.paging.faults', match)
    assert.ok(exportedFaults >= faults && exportedFaults <= faults + 10, `exported ${exportedFaults} faults, the kernel counted ${faults} before its last steps`)
  })

  it('gives a shell that forks 20 children exactly 20 start and 20 exit logs under it', async () => {
    const shell = spawnSync('/bin/sh', ['-c', 'i=0; while [ $i -lt 20 ]; do /bin/true & wait; i=$((i+1)); done'])
    assert.equal(shell.status, 0)
    const under = (lines: readonly Json[], event: string) => logsOf(lines).filter((r) => r.eventName === event && r.attributes['process.parent_pid'] === shell.pid)
    const lines = await collector.waitFor('logs', (l) => under(l, 'process.exit').length >= 20, 30_000)
    assert.equal(under(lines, 'process.start').length, 20)
    const exits = under(lines, 'process.exit')
    assert.equal(exits.length, 20)
    assert.ok(exits.every((r) => r.attributes['process.exit.code'] === 0 && r.attributes['process.executable.name'] === 'true'))
    assert.deepEqual(new Set(exits.map((r) => r.attributes['process.pid'])), new Set(under(lines, 'process.start').map((r) => r.attributes['process.pid'])))
  })

  it('gives a process killed by the OOM killer exactly one OOM kill log and an exit log with signal 9', async () => {
    const limit = 64 * 1024 * 1024
    const cgroup = memoryCgroup(limit)
    try {
      const child = cgroup.spawnInside(workload, ['hog'])
      assert.equal(await new Promise((resolve) => child.once('exit', (_code, signal) => resolve(signal))), 'SIGKILL')
      const pid = child.pid!
      const lines = await collector.waitFor('logs', (l) => logsOf(l).some((r) => r.eventName === 'process.exit' && r.attributes['process.pid'] === pid), 30_000)
      const kills = logsOf(lines).filter((r) => r.eventName === 'process.oom_kill' && r.attributes['process.pid'] === pid)
      assert.equal(kills.length, 1)
      const kill = kills[0]!.attributes
      assert.equal(kill['process.executable.name'], workloadName)
      assert.equal(kill['oom.trigger.pid'], pid)
      assert.equal(kill['user.id'], 0)
      assert.ok(Number(kill['process.memory.usage']) >= limit / 2, `resident ${kill['process.memory.usage']} bytes at the kill`)
      const exit = logsOf(lines).find((r) => r.eventName === 'process.exit' && r.attributes['process.pid'] === pid)!.attributes
      assert.equal(exit['process.exit.signal'], 9)
      const metrics = await collector.waitFor('metrics', (l) => counterTotal(l, 'system.memory.oom_kills', {}) >= 1, 30_000)
      assert.ok(counterTotal(metrics, 'system.memory.oom_kills', {}) >= 1)
    } finally {
      await cgroup.remove()
    }
  })

  it('exports the run-queue latency histogram with the kernel\'s log2 buckets', async () => {
    const lines = await collector.waitFor('metrics', (l) => flatten('metrics', l).some((m) => m.item.name === 'system.scheduler.runqueue.latency'), 30_000)
    const metric = flatten('metrics', lines).filter((m) => m.item.name === 'system.scheduler.runqueue.latency').at(-1)!.item
    assert.equal(metric.unit, 's')
    const [point] = (metric.histogram as Json).dataPoints as Json[]
    assert.deepEqual(point!.explicitBounds, runqBoundaries)
    const buckets = (point!.bucketCounts as string[]).map(Number)
    assert.equal(buckets.length, runqBoundaries.length + 1)
    assert.equal(buckets.reduce((a, b) => a + b, 0), Number(point!.count))
    assert.ok(Number(point!.count) > 0 && Number(point!.sum) > 0)
  })
})
