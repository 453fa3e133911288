// The syscalls plugin end to end: `periscope run` with only it (switched on, as it is off by
// default), exporting to a real Collector, while this test runs a workload of known syscalls
// (test/bpf/fixtures/syscall-workload.c). Its 2500 getppid and 37 openat failing with ENOENT
// arrive exactly, by pid, executable name and syscall name, the failures also host-wide by errno
// name; its last counts arrive after it exits.
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { counterTotal, type Collector } from '../peers/otelcol.ts'
import { startPluginRun, type PluginRun } from '../peers/plugin-run.ts'
import { pollUntil } from '../peers/poll.ts'

type Json = Record<string, unknown>

const root = fileURLToPath(new URL('../../', import.meta.url))
/** comm is 15 bytes at most: a prefix and 8 hex digits name this run's workload alone. */
const workloadName = `scwl-${randomBytes(4).toString('hex')}`

describe('syscall counts through a real Collector', { timeout: 600_000 }, () => {
  let run: PluginRun | undefined
  let collector: Collector
  let workload: string
  let dir: string

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'periscope-syscalls-'))
    workload = join(dir, workloadName)
    execFileSync('cc', ['-O2', '-Wall', '-o', workload, join(root, 'test/bpf/fixtures/syscall-workload.c')])
    run = await startPluginRun('syscalls', { enabled: true, config: { collect_interval_ms: 500, top_n: 100_000 } }, /plugin syscalls: syscall counts/)
    collector = run.collector
  })

  after(async () => {
    await run?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('exports a workload\'s 2500 getppid and 37 failed openat exactly, and the failures by errno name', async () => {
    const child = spawn(workload, ['count', '2500', '37'])
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
    const pid = child.pid!
    await pollUntil(() => output.includes('ready\n'), { what: 'the workload to start', timeoutMs: 10_000 })
    child.stdin.write('go\n')
    await pollUntil(() => output.includes('done\n'), { what: 'the workload to run', timeoutMs: 30_000 })
    const ofWorkload = { 'process.pid': pid, 'process.executable.name': workloadName }
    // the live process's counts, read from the kernel's map
    await pollUntil(async () => counterTotal(await collector.read('metrics'), 'process.syscall.calls', { ...ofWorkload, 'syscall.name': 'getppid' }) === 2500,
      { what: 'the workload\'s 2500 getppid calls in the Collector', timeoutMs: 30_000, intervalMs: 200 })
    child.stdin.write('go\n')
    assert.equal(await exited, 0)

    // its last counts (its exit's read of stdin) travel on its exit records
    let metrics: Json[] = []
    await pollUntil(async () => {
      metrics = await collector.read('metrics')
      return counterTotal(metrics, 'process.syscall.calls', { ...ofWorkload, 'syscall.name': 'read' }) >= 2
    }, { what: 'the workload\'s second read of stdin, counted at its exit', timeoutMs: 30_000, intervalMs: 200 })
    assert.equal(counterTotal(metrics, 'process.syscall.calls', { ...ofWorkload, 'syscall.name': 'getppid' }), 2500)
    assert.equal(counterTotal(metrics, 'process.syscall.errors', { ...ofWorkload, 'syscall.name': 'getppid' }), 0)
    // the dynamic loader's openat calls all succeed; the workload's 37 fail
    assert.equal(counterTotal(metrics, 'process.syscall.errors', { ...ofWorkload, 'syscall.name': 'openat' }), 37)
    assert.ok(counterTotal(metrics, 'process.syscall.calls', { ...ofWorkload, 'syscall.name': 'openat' }) > 37)
    // host-wide, other processes may fail to open files too
    assert.ok(counterTotal(metrics, 'system.syscall.errors', { 'syscall.name': 'openat', 'error.type': 'ENOENT' }) >= 37)
    assert.equal(counterTotal(metrics, 'periscope.syscalls.map_overflow', {}), 0)
  })
})
