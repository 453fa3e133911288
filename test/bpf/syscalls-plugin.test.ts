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
import { after, afterEach, before, describe, it } from 'node:test'
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

/** Starts the workload fixture and resolves once it waits for its first line. */
async function startWorkload(binary: string, calls: number) {
  const child = spawn(binary, ['count', String(calls), '0'])
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
  await waitFor(() => output.includes('ready\n'), 'the workload to start', 10_000)
  return {
    pid: child.pid!,
    /** Sends the line that starts its calls and waits until they are made. */
    async run() {
      child.stdin.write('go\n')
      await waitFor(() => output.includes('done\n'), 'the workload to run', 60_000)
    },
    async exit() {
      child.stdin.write('go\n')
      assert.equal(await exited, 0)
    },
  }
}

describe('the syscalls plugin', { timeout: 120_000 }, () => {
  let h: Harness | undefined
  const dir = mkdtempSync(join(tmpdir(), 'periscope-syscalls-plugin-'))
  const binary = join(dir, 'syscall-workload')
  const source = readFileSync(join(root, 'plugins/syscalls.ts'), 'utf8')

  before(() => {
    execFileSync('cc', ['-O2', '-Wall', '-o', binary, join(root, 'test/bpf/fixtures/syscall-workload.c')])
  })

  afterEach(async () => {
    await h?.close()
    h = undefined
  })

  after(() => {
    rmSync(dir, { recursive: true, force: true })
  })

  async function start(topN: number, intervalMs = 300): Promise<{ harness: Harness; points: () => MetricPointInput[] }> {
    h = await startHarness({
      provider: provider(), decodersPath,
      plugins: { 'syscalls.ts': source },
      config: { plugins: { syscalls: { enabled: true, config: { top_n: topN, collect_interval_ms: intervalMs } } } },
    })
    const harness = h
    const points = () => harness.sink.signals('syscalls').metrics as MetricPointInput[]
    await harness.waitFor(() => harness.log.lines.some((l) => l.message.startsWith('plugin syscalls: loaded')), 'the syscalls plugin to load', 30_000)
    return { harness, points }
  }

  /** The getppid calls the plugin exported for `pid` so far. */
  const getppidOf = (points: readonly MetricPointInput[], pid: number) => points
    .filter((p) => p.name === 'process.syscall.calls' && p.attributes?.['syscall.name'] === 'getppid' && p.attributes?.['process.pid'] === pid)
    .reduce((sum, p) => sum + p.value, 0)

  it('exports the top_n busiest pairs of each collection with their process, and the rest per syscall', async () => {
    const { harness, points } = await start(2)
    const workload = await startWorkload(binary, CALLS)
    await workload.run()
    await workload.exit()
    const pid = workload.pid
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

  it('neither repeats nor loses counts across a hot reload: what the old version exported is where the new one starts', async () => {
    const { harness, points } = await start(100_000)
    const workload = await startWorkload(binary, 2500)
    await workload.run()
    await harness.waitFor(() => getppidOf(points(), workload.pid) === 2500, 'the workload\'s 2500 getppid calls, counted live', 30_000)
    const reloaded = harness.nextEvent('loaded', 'syscalls', 30_000)
    harness.write('syscalls.ts', `${source}\n// reloaded\n`)
    await reloaded
    const collected = collections(points()).length
    // its last counts come on its exit records, to the new version
    await workload.exit()
    await harness.waitFor(() => collections(points()).length >= collected + 2, 'two collections of the new version after the exit', 30_000)
    assert.equal(getppidOf(points(), workload.pid), 2500)
    const exitReads = points().filter((p) => p.name === 'process.syscall.calls' && p.attributes?.['process.pid'] === workload.pid && p.attributes?.['syscall.name'] === 'read')
    // the dynamic loader's reads, and its two reads of stdin, the second sent at its exit to the new version
    assert.ok(exitReads.reduce((sum, p) => sum + p.value, 0) >= 2)
  })

  it('carries what it has not exported yet across a hot reload: a process that exits just before it still counts', async () => {
    // a long interval: the workload's exit records reach the old version, which reloads before it collects
    const { harness, points } = await start(100_000, 3000)
    const workload = await startWorkload(binary, 2500)
    await workload.run()
    await workload.exit()
    const reloaded = harness.nextEvent('loaded', 'syscalls', 30_000)
    harness.write('syscalls.ts', `${source}\n// reloaded\n`)
    await reloaded
    await harness.waitFor(() => getppidOf(points(), workload.pid) >= 2500, 'the workload\'s getppid calls from the new version', 30_000)
    const collected = collections(points()).length
    await harness.waitFor(() => collections(points()).length > collected, 'one more collection', 30_000)
    assert.equal(getppidOf(points(), workload.pid), 2500)
  })
})
