/**
 * The shipped processes plugin (plugins/processes.ts) in the plugin runtime over the real sched
 * object, hot-reloaded while a workload's counts wait uncollected in the kernel: the increments
 * both versions emit for the workload's pid add up to the kernel's own counts of it (nothing
 * repeated, nothing skipped), and its start and exit are logged once each.
 */
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { openLibraryObject } from '../../runtime/library/index.ts'
import type { MetricPointInput } from '../../runtime/telemetry/signals.ts'
import { startHarness, type Harness } from '../plugin-harness.ts'
import { root, waitFor } from './kernel.ts'

const source = readFileSync(join(root, 'plugins/processes.ts'), 'utf8')
let h: Harness | undefined
const dir = mkdtempSync(join(tmpdir(), 'periscope-sched-plugin-'))
after(async () => {
  await h?.close()
  rmSync(dir, { recursive: true, force: true })
})

function emitted(points: readonly MetricPointInput[], name: string, pid: number): number {
  return points.filter((p) => p.name === name && p.attributes?.['process.pid'] === pid).reduce((sum, p) => sum + p.value, 0)
}

function kernelCounts(pid: number): { switches: number; faults: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)![1])
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return { switches: field('voluntary_ctxt_switches') + field('nonvoluntary_ctxt_switches'), faults: Number(fields[7]) + Number(fields[9]) }
}

test('a hot reload between a workload\'s work and its collection neither repeats nor skips its counts', async () => {
  const workload = join(dir, 'sched-workload')
  execFileSync('cc', ['-O2', '-Wall', '-pthread', '-o', workload, join(root, 'test/bpf/fixtures/sched-workload.c')])
  h = await startHarness({
    provider: { open: (name, settings) => openLibraryObject(name, { settings, log: () => {} }) },
    decodersPath: join(root, 'bpf/lib/index.types.ts'),
    plugins: { 'processes.ts': source },
    // long enough that the work below is still uncollected when the reload comes
    config: { plugins: { processes: { config: { collect_interval_ms: 3000, per_pid: true } } } },
  })
  const harness = h
  await harness.waitFor(() => harness.log.lines.some((line) => line.message.includes('process metrics')), 'the processes plugin to start', 30_000)

  const child = spawn(workload, ['run', '40', '500', '4'])
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
  const pid = child.pid!
  try {
    await waitFor(() => output.includes('ready\n'), 'the workload to start', 10_000)
    child.stdin.write('go\n')
    await waitFor(() => output.includes('done\n'), 'the workload to run', 30_000)
    const kernel = kernelCounts(pid)
    const metrics = () => harness.sink.signals('processes').metrics
    assert.equal(emitted(metrics(), 'process.context_switches', pid), 0, 'nothing collected before the reload')

    const loaded = harness.nextEvent('loaded', 'processes', 30_000)
    harness.write('processes.ts', `${source}\n// version 2\n`)
    await loaded
    child.stdin.write('go\n')
    assert.equal(await exited, 4)
    // its exit record carries its last counts into the next collection
    const logsOfPid = () => harness.sink.signals('processes').logs.filter((l) => l.attributes?.['process.pid'] === pid)
    await harness.waitFor(() => logsOfPid().some((l) => l.eventName === 'process.exit'), 'the exit log', 30_000)
    const collections = () => metrics().filter((p) => p.name === 'periscope.processes.tracked').length
    const before = collections()
    await harness.waitFor(() => collections() > before, 'a collection after the exit', 30_000)
    const switches = emitted(metrics(), 'process.context_switches', pid)
    const faults = emitted(metrics(), 'process.paging.faults', pid)
    // the kernel's counts when it waited, and the few of its last steps
    assert.ok(switches >= kernel.switches && switches <= kernel.switches + 5, `emitted ${switches} switches, the kernel counted ${kernel.switches} before its last steps`)
    assert.ok(faults >= kernel.faults && faults <= kernel.faults + 10, `emitted ${faults} faults, the kernel counted ${kernel.faults} before its last steps`)
    assert.deepEqual(logsOfPid().map((l) => l.eventName).sort(), ['process.exit', 'process.start'])
  } finally {
    child.kill()
  }
})
