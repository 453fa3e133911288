/**
 * The syscalls plugin (plugins/syscalls.ts) on the real kernel with top_n: 2: each collection
 * exports at most two process and syscall pairs with their process, and the calls of all the
 * others per syscall in overflow series, so no call is lost. A workload making 200,000 getppid
 * calls (test/bpf/fixtures/syscall-workload.c) is the busiest pair, with its process.
 */
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import type { MetricPointInput } from '../../runtime/telemetry/signals.ts'
import { startHarness, type Harness } from '../plugin-harness.ts'
import { root, waitFor } from './kernel.ts'
import { decodersPath, provider } from './plugin-api-fixture.ts'

const CALLS = 200_000

/** The points of each collection: every collection ends with its one periscope.syscalls.compat_calls point. */
function collections(points: readonly MetricPointInput[]): MetricPointInput[][] {
  const out: MetricPointInput[][] = [[]]
  for (const point of points) {
    out.at(-1)!.push(point)
    if (point.name === 'periscope.syscalls.compat_calls') out.push([])
  }
  return out.slice(0, -1)
}

describe('the syscalls plugin', { timeout: 120_000 }, () => {
  let h: Harness | undefined
  const dir = mkdtempSync(join(tmpdir(), 'periscope-syscalls-plugin-'))

  after(async () => {
    await h?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('exports the top_n busiest pairs of each collection with their process, and the rest per syscall', async () => {
    const binary = join(dir, 'syscall-workload')
    execFileSync('cc', ['-O2', '-Wall', '-o', binary, join(root, 'test/bpf/fixtures/syscall-workload.c')])
    h = await startHarness({
      provider: provider(), decodersPath,
      plugins: { 'syscalls.ts': readFileSync(join(root, 'plugins/syscalls.ts'), 'utf8') },
      config: { plugins: { syscalls: { enabled: true, config: { top_n: 2, collect_interval_ms: 300 } } } },
    })
    const harness = h
    const points = () => harness.sink.signals('syscalls').metrics as MetricPointInput[]
    await harness.waitFor(() => collections(points()).length >= 1, 'the syscalls plugin\'s first collection', 30_000)

    const child = spawn(binary, ['count', String(CALLS), '0'])
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
    await waitFor(() => output.includes('ready\n'), 'the workload to start', 10_000)
    child.stdin.write('go\n')
    await waitFor(() => output.includes('done\n'), 'the workload to run', 60_000)
    child.stdin.write('go\n')
    assert.equal(await exited, 0)
    const pid = child.pid!
    const getppid = (match: (p: MetricPointInput) => boolean) => points()
      .filter((p) => p.name === 'process.syscall.calls' && p.attributes?.['syscall.name'] === 'getppid' && match(p))
      .reduce((sum, p) => sum + p.value, 0)
    const ofWorkload = (p: MetricPointInput) => p.attributes?.['process.pid'] === pid
    const overflow = (p: MetricPointInput) => p.attributes?.['otel.metric.overflow'] === true
    // its exit records come with the next collection after it exits
    await harness.waitFor(() => getppid(ofWorkload) + getppid(overflow) >= CALLS && collections(points()).length >= 2, 'the workload\'s getppid calls, with or without their process', 30_000)

    for (const collection of collections(points())) {
      const withProcess = collection.filter((p) => p.name === 'process.syscall.calls' && p.attributes?.['process.pid'] !== undefined)
      assert.ok(withProcess.length <= 2, `a collection exported ${withProcess.length} pairs with their process`)
    }
    assert.ok(getppid(ofWorkload) > 0, 'the busiest pair is exported with its process')
    assert.ok(getppid(ofWorkload) <= CALLS)
    const overflowSeries = points().filter((p) => p.name === 'process.syscall.calls' && overflow(p))
    assert.ok(overflowSeries.length > 0)
    assert.ok(overflowSeries.every((p) => p.attributes?.['process.pid'] === undefined && p.attributes?.['process.executable.name'] === undefined))
  })
})
