// The file-io plugin end to end: `periscope run` with only it (per_pid on, one target file),
// exporting to a real Collector. A dd writing 300 blocks of 4096 bytes into a file with
// conv=fsync, and one reading them back, give exactly those calls and bytes under their pids,
// beyond what a dd copying nothing shows (its loader reading libc); a dd writing into a socket
// counts no write; the target file's own metrics count the read-back alone; every call is in the
// latency histogram, with the kernel's log2 buckets. By default (per_pid off) the runs of one
// executable add up in one series without a pid.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmodSync, copyFileSync, mkdtempSync, realpathSync, rmSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { attributesOf, counterTotal, flatten, type Collector } from '../peers/otelcol.ts'
import type { Periscope } from '../peers/periscope.ts'
import { startPluginRun, type PluginRun } from '../peers/plugin-run.ts'
import { pollUntil } from '../peers/poll.ts'
import { fileioLatencyBoundaries } from '../../runtime/protocols/fileio.ts'

type Json = Record<string, unknown>

const BLOCK = 4096
const BLOCKS = 300
/** "C": no locale files read, so every dd's start-up reads are the same */
const env = { ...process.env, LC_ALL: 'C', LANG: 'C' }

interface HistogramPoint {
  attributes: Record<string, unknown>
  count: number
  bucketCounts: number[]
  explicitBounds: number[]
}

/** The latest point of each series of a histogram whose attributes include `match`. */
function histogramPoints(lines: readonly Json[], name: string, match: Record<string, unknown>): HistogramPoint[] {
  const latest = new Map<string, HistogramPoint>()
  for (const { item } of flatten('metrics', lines)) {
    if (item.name !== name) continue
    for (const point of ((item.histogram as Json).dataPoints as Json[])) {
      const attributes = attributesOf(point.attributes)
      if (!Object.entries(match).every(([key, value]) => attributes[key] === value)) continue
      latest.set(JSON.stringify(attributes), {
        attributes,
        count: Number(point.count),
        bucketCounts: (point.bucketCounts as string[]).map(Number),
        explicitBounds: (point.explicitBounds as number[]).map(Number),
      })
    }
  }
  return [...latest.values()]
}

describe('file I/O metrics through a real Collector', { timeout: 600_000 }, () => {
  let pluginRun: PluginRun | undefined
  let collector: Collector
  let periscope: Periscope
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'periscope-file-io-')))
  const target = join(dir, 'target')

  before(async () => {
    pluginRun = await startPluginRun('file-io', { config: { collect_interval_ms: 500, per_pid: true, target_paths: [target] } }, /plugin file-io: file I\/O metrics/)
    collector = pluginRun.collector
    periscope = pluginRun.periscope
  })

  after(async () => {
    await pluginRun?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  /** Runs dd (or a shell) to its end; its pid. */
  async function run(command: string, args: string[]): Promise<number> {
    const child = spawn(command, args, { env, stdio: ['ignore', 'ignore', 'inherit'] })
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
    assert.equal(code, 0, `${command} ${args.join(' ')} exited with ${code}`)
    return child.pid!
  }

  /**
   * Waits until the Collector has the file.operation counts of `pid` running dd for every op in
   * `want`, at least; returns them all (a shell that execs dd counts apart, under its own name).
   */
  async function operationsOf(pid: number, want: Record<string, number>): Promise<{ lines: Json[]; ops: Record<string, number> }> {
    const opsIn = (lines: readonly Json[]): Record<string, number> => Object.fromEntries(['read', 'write', 'fsync', 'fdatasync']
      .map((op) => [op, counterTotal(lines, 'process.file.operations', { 'process.pid': pid, 'process.executable.name': 'dd', 'file.operation': op })]))
    let ops: Record<string, number> = {}
    const reached = await collector.waitFor('metrics', (l) => Object.entries(want).every(([op, n]) => (ops = opsIn(l))[op]! >= n), 180_000).catch((error: Error) => {
      throw new Error(`${error.message}\npid ${pid} has ${JSON.stringify(ops)}, want ${JSON.stringify(want)}\nperiscope output:\n${periscope.output().slice(-3000)}`)
    })
    // a collection may have caught the process alive: its last counts come with a later export
    const lines = await collector.waitFor('metrics', (l) => l.length >= reached.length + 3, 180_000)
    return { lines, ops: opsIn(lines) }
  }

  const bytesOf = (lines: readonly Json[], pid: number, direction: string): number =>
    counterTotal(lines, 'process.file.io', { 'process.pid': pid, 'process.executable.name': 'dd', 'file.io.direction': direction })

  it('dd into a file and back: exactly its calls and bytes beyond a dd that copies nothing, under its pid, comm and executable', async () => {
    const idle = await run('dd', ['if=/dev/zero', 'of=/dev/null', 'count=0', 'status=none'])
    const { lines: idleLines, ops: startup } = await operationsOf(idle, { read: 1 })
    const startupBytes = bytesOf(idleLines, idle, 'read')
    assert.deepEqual({ ...startup, read: 0 }, { read: 0, write: 0, fsync: 0, fdatasync: 0 })

    const writer = await run('dd', ['if=/dev/zero', `of=${target}`, `bs=${BLOCK}`, `count=${BLOCKS}`, 'conv=fsync', 'status=none'])
    const written = await operationsOf(writer, { read: startup.read!, write: BLOCKS, fsync: 1 })
    assert.deepEqual(written.ops, { read: startup.read, write: BLOCKS, fsync: 1, fdatasync: 0 })
    assert.equal(bytesOf(written.lines, writer, 'write'), BLOCKS * BLOCK)
    assert.equal(bytesOf(written.lines, writer, 'read'), startupBytes)

    const reader = await run('dd', [`if=${target}`, 'of=/dev/null', `bs=${BLOCK}`, 'status=none'])
    const read = await operationsOf(reader, { read: startup.read! + BLOCKS + 1 })
    // the last read is the one that finds the end of the file
    assert.deepEqual(read.ops, { read: startup.read! + BLOCKS + 1, write: 0, fsync: 0, fdatasync: 0 })
    assert.equal(bytesOf(read.lines, reader, 'read'), startupBytes + BLOCKS * BLOCK)
    assert.equal(bytesOf(read.lines, reader, 'write'), 0)

    const [series] = flatten('metrics', read.lines).filter(({ item }) => item.name === 'process.file.io').flatMap(({ item }) =>
      ((item.sum as Json).dataPoints as Json[]).map((p) => attributesOf(p.attributes))).filter((a) => a['process.pid'] === reader)
    assert.equal(series!['process.executable.name'], 'dd')
    assert.equal(series!['process.executable.path'], realpathSync('/usr/bin/dd'))

    const durations = histogramPoints(read.lines, 'process.file.operation.duration', { 'process.pid': reader, 'file.operation': 'read' })
    assert.equal(durations.length, 1)
    assert.equal(durations[0]!.count, startup.read! + BLOCKS + 1)
    assert.equal(durations[0]!.bucketCounts.reduce((a, b) => a + b, 0), startup.read! + BLOCKS + 1)
    assert.deepEqual(durations[0]!.explicitBounds, fileioLatencyBoundaries)
  })

  it('the target file counts the writer\'s and the reader\'s calls on it alone', async () => {
    const lines = await collector.waitFor('metrics', (l) => counterTotal(l, 'file.operations', { 'file.path': target, 'file.operation': 'read' }) >= BLOCKS + 1, 180_000)
    assert.equal(counterTotal(lines, 'file.operations', { 'file.path': target, 'file.operation': 'read' }), BLOCKS + 1)
    assert.equal(counterTotal(lines, 'file.operations', { 'file.path': target, 'file.operation': 'write' }), BLOCKS)
    assert.equal(counterTotal(lines, 'file.operations', { 'file.path': target, 'file.operation': 'fsync' }), 1)
    assert.equal(counterTotal(lines, 'file.io', { 'file.path': target, 'file.io.direction': 'read' }), BLOCKS * BLOCK)
    assert.equal(counterTotal(lines, 'file.io', { 'file.path': target, 'file.io.direction': 'write' }), BLOCKS * BLOCK)
  })

  it('dd into a socket writes nothing that counts as file I/O', async () => {
    let received = 0
    const server = createServer((socket) => socket.on('data', (chunk) => (received += chunk.length)))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as AddressInfo
    try {
      const idle = await run('dd', ['if=/dev/zero', 'of=/dev/null', 'count=0', 'status=none'])
      const { ops: startup } = await operationsOf(idle, { read: 1 })
      const pid = await run('bash', ['-c', `exec dd if=/dev/zero bs=${BLOCK} count=${BLOCKS} status=none >/dev/tcp/127.0.0.1/${port}`])
      await pollUntil(() => received === BLOCKS * BLOCK, { what: `the socket to receive dd's ${BLOCKS * BLOCK} bytes (${received} so far)`, timeoutMs: 60_000 })
      const { lines, ops } = await operationsOf(pid, { read: startup.read! })
      assert.deepEqual(ops, { read: startup.read, write: 0, fsync: 0, fdatasync: 0 })
      assert.equal(bytesOf(lines, pid, 'write'), 0)
    } finally {
      server.close()
    }
  })
})

describe('file I/O metrics by default: one series per executable, no pid', { timeout: 600_000 }, () => {
  let pluginRun: PluginRun | undefined
  let collector: Collector
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'periscope-file-io-')))
  /** dd under a name of this run's own, so no other dd on the host shares its series */
  const name = `fio-${randomBytes(4).toString('hex')}`
  const binary = join(dir, name)

  before(async () => {
    copyFileSync('/usr/bin/dd', binary)
    chmodSync(binary, 0o755)
    pluginRun = await startPluginRun('file-io', { config: { collect_interval_ms: 500 } }, /plugin file-io: file I\/O metrics/)
    collector = pluginRun.collector
  })

  after(async () => {
    await pluginRun?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('two runs of one executable add up in one series', async () => {
    for (const count of [10, 20]) {
      const child = spawn(binary, ['if=/dev/zero', `of=${join(dir, `out-${count}`)}`, `bs=${BLOCK}`, `count=${count}`, 'status=none'], { env, stdio: 'ignore' })
      assert.equal(await new Promise((resolve) => child.once('exit', resolve)), 0)
    }
    const match = { 'process.executable.name': name, 'file.operation': 'write' }
    const lines = await collector.waitFor('metrics', (l) => counterTotal(l, 'process.file.operations', match) >= 30, 180_000)
    assert.equal(counterTotal(lines, 'process.file.operations', match), 30)
    assert.equal(counterTotal(lines, 'process.file.io', { 'process.executable.name': name, 'file.io.direction': 'write' }), 30 * BLOCK)
    const series = flatten('metrics', lines).filter(({ item }) => item.name === 'process.file.operations').flatMap(({ item }) =>
      ((item.sum as Json).dataPoints as Json[]).map((p) => attributesOf(p.attributes))).filter((a) => a['process.executable.name'] === name)
    assert.deepEqual(new Set(series.map((a) => JSON.stringify(a))), new Set(['read', 'write'].map((op) =>
      JSON.stringify({ 'process.executable.name': name, 'process.executable.path': binary, 'file.operation': op }))))
  })
})
