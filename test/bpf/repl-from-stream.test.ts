/**
 * plugin.fromStream (repl/from-stream.ts) against a real runtime over its admin socket: a
 * `trace()` stream that worked in the REPL becomes a plugin file in the runtime's plugin
 * directory, which the runtime's watcher hot-loads, and which emits what the stream showed on
 * the same workload (test/bpf/fixtures/repl-trace-workload.c, a static binary: no loader opens):
 * `.filter().count(field)` as a counter with the same counts per key, a `.hist()` as a histogram
 * with bpftrace's buckets, an event stream through an emit function, and a uretprobe stream
 * (test/bpf/fixtures/repl-uprobe-target.c) over ctx.onUprobe. What cannot become a plugin is
 * refused, saying why.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { trace } from '../../repl/explore.ts'
import { fromStream } from '../../repl/from-stream.ts'
import { openSession, type RuntimeSession } from '../../repl/session.ts'
import { Stream } from '../../repl/stream.ts'
import { memoryLogger } from '../../runtime/plugins/log.ts'
import { startHarness, type Harness } from '../plugin-harness.ts'
import { root, waitFor } from './kernel.ts'
import { decodersPath, provider } from './plugin-api-fixture.ts'
import { holdProcess, type HeldProcess } from './repl-bpftrace.ts'

const PATHS = 5
const path = (j: number) => `/nonexistent/periscope-trace/${j}`
/** the workload's openat calls, in order: path j j + 2 times, then the end marker */
const OPENED = [...Array.from({ length: PATHS }, (_, j) => Array<string>(j + 2).fill(path(j))).flat(), '/nonexistent/periscope-trace/end']

const workloadDir = mkdtempSync(join(tmpdir(), 'periscope-from-stream-'))
process.once('exit', () => rmSync(workloadDir, { recursive: true, force: true }))
chmodSync(workloadDir, 0o755)
/** its comm, unique to these tests */
const WORKLOAD = 'pscope-fromstrm'
execFileSync('cc', ['-O2', '-Wall', '-Werror', '-static', '-o', join(workloadDir, WORKLOAD), join(root, 'test/bpf/fixtures/repl-trace-workload.c')])
const heldWorkload = (): HeldProcess => holdProcess(join(workloadDir, WORKLOAD), [String(PATHS)], WORKLOAD)
const uprobeTarget = join(workloadDir, 'repl-uprobe-target')
execFileSync('gcc', ['-O2', '-o', uprobeTarget, join(root, 'test/bpf/fixtures/repl-uprobe-target.c')])
const ROUNDS = 5

let h: Harness
let session: RuntimeSession
before(async () => {
  h = await startHarness({ provider: provider(), decodersPath, adminSocket: true })
  session = await openSession({ socket: h.runtime.admin!.path, log: memoryLogger() })
  assert.match(session.where, /^connected to the periscope run at /)
})
after(async () => {
  await session?.close()
  await h?.close()
})

/** Runs `workload` once under a run of `runnable`, the run attached first; the run ends after the workload exits. */
async function runOver(runnable: { run(out: { write(text: string): void }, signal: AbortSignal): Promise<void> }, attached: () => boolean): Promise<string> {
  const workload = heldWorkload()
  const stop = new AbortController()
  let printed = ''
  try {
    const running = runnable.run({ write: (text) => { printed += text } }, stop.signal)
    await waitFor(attached, 'the stream attaching', 60_000)
    await workload.release()
    stop.abort()
    await running
  } finally {
    workload.kill()
  }
  return printed
}

/** BPF links this process holds: the runtime's plugins' and the streams'. */
function links(): number {
  return readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === 'anon_inode:bpf_link'
    } catch {
      return false
    }
  }).length
}

/** Whether a stream started now has attached: a link more than before it. */
function streamAttached(): () => boolean {
  const before = links()
  return () => links() > before
}

/** The sum of the points of `metric` per value of its attribute `key`. */
function pointsBy(plugin: string, metric: string, key: string): Map<unknown, number> {
  const sums = new Map<unknown, number>()
  for (const point of h.sink.signals(plugin).metrics.filter((m) => m.name === metric)) sums.set(point.attributes?.[key], (sums.get(point.attributes?.[key]) ?? 0) + point.value)
  return sums
}

describe('plugin.fromStream', () => {
  it('turns .filter().count(field) into a hot-loaded plugin whose counter has the counts the stream showed', { timeout: 300_000 }, async () => {
    const counts = trace('syscalls:sys_enter_openat', { comm: WORKLOAD }).filter((e) => !String(e.args?.filename).endsWith('/end')).count('args.filename')
    await runOver(counts, streamAttached())
    const shown = new Map(counts.snapshot().entries.map((entry) => [entry.key[0], Number(entry.value)]))
    assert.deepEqual(shown, new Map(Array.from({ length: PATHS }, (_, j) => [path(j), j + 2])))

    const written = await fromStream(session, counts, { name: 'openat.calls', unit: '{call}' }, { name: 'opens-by-path', intervalMs: 100 })
    assert.deepEqual(written, { file: join(h.dir, 'opens-by-path.ts'), name: 'opens-by-path', status: 'running' })
    const source = readFileSync(written.file, 'utf8')
    // readable: it names where it traces and carries the filter as typed
    assert.match(source, /\["syscalls:sys_enter_openat", "tracepoint:syscalls:sys_enter_openat", \{"comm":"pscope-fromstrm","strings":\["filename"\]\}\]/)
    assert.match(source, /const filter1 = \(\(e\) => !String\(e\.args\?\.filename\)\.endsWith\('\/end'\)\)/)

    const workload = heldWorkload()
    try {
      await workload.release()
    } finally {
      workload.kill()
    }
    await h.waitFor(() => [...pointsBy('opens-by-path', 'openat.calls', 'filename').values()].reduce((a, b) => a + b, 0) >= OPENED.length - 1, 'the plugin\'s counts')
    assert.deepEqual(pointsBy('opens-by-path', 'openat.calls', 'filename'), shown)
    for (const point of h.sink.signals('opens-by-path').metrics) assert.deepEqual([point.kind, point.unit], ['counter', '{call}'])
    h.remove('opens-by-path.ts')
    await h.waitFor(() => !h.runtime.manager.list().some((p) => p.name === 'opens-by-path'), 'the plugin to unload')
  })

  it('turns .hist(field) into a histogram with bpftrace\'s power-of-two buckets, and an event stream into emit calls in order', { timeout: 300_000 }, async () => {
    // the length of each path: /nonexistent/periscope-trace/<j> is 30 bytes, /end 32
    const lengths = trace('syscalls:sys_enter_openat', { comm: WORKLOAD }).map((e) => ({ comm: e.comm, length: String(e.args?.filename).length })).hist('length', 'comm')
    await fromStream(session, lengths, 'openat.path_length', { name: 'path-lengths', intervalMs: 100 })
    await fromStream(session, trace('syscalls:sys_enter_openat', { comm: WORKLOAD }).map((e) => e.args?.filename), (filename: unknown, emit: { log(record: { body: string }): void }) => emit.log({ body: String(filename) }), { name: 'path-log' })
    const workload = heldWorkload()
    try {
      await workload.release()
    } finally {
      workload.kill()
    }
    await h.waitFor(() => h.sink.signals('path-log').logs.length >= OPENED.length, 'the logged paths')
    assert.deepEqual(h.sink.signals('path-log').logs.map((l) => l.body), OPENED)
    const histogram = () => h.sink.signals('path-lengths').metrics.filter((m) => m.name === 'openat.path_length')
    await h.waitFor(() => histogram().reduce((n, p) => n + p.bucketCounts!.reduce((a, b) => a + b, 0), 0) >= OPENED.length, 'the histogram')
    // hist() buckets: [16, 32) holds the 30-byte paths, [32, 64) the 32-byte one; bounds 15 and 31 and 63 as upper-inclusive integers
    const buckets = histogram().map((p) => p.bucketCounts!).reduce((a, b) => a.map((n, i) => n + b[i]!))
    const bounds = histogram()[0]!.boundaries!
    assert.deepEqual(bounds.slice(0, 8), [-1, 0, 1, 3, 7, 15, 31, 63])
    assert.equal(buckets[bounds.indexOf(31)], OPENED.length - 1)
    assert.equal(buckets[bounds.indexOf(63)], 1)
    assert.equal(buckets.reduce((a, b) => a + b), OPENED.length)
    assert.equal(histogram().reduce((sum, p) => sum + p.value, 0), (OPENED.length - 1) * 30 + 32)
    assert.deepEqual(new Set(histogram().map((p) => p.attributes?.comm)), new Set([WORKLOAD]))
    h.remove('path-lengths.ts')
    h.remove('path-log.ts')
  })

  it('turns a uretprobe stream\'s .count(retval) into a plugin over ctx.onUprobe whose counter has the counts the stream showed', { timeout: 300_000 }, async () => {
    // comm in user space, as trace() filters it: the plugin's run is another process of the same binary
    const squares = trace(`uretprobe:${uprobeTarget}:repl_work_square`, { comm: 'repl-uprobe-tar' }).count('retval')
    const run = async () => {
      const held = holdProcess(uprobeTarget, [String(ROUNDS)], 'the uprobe target')
      try {
        await held.release()
      } finally {
        held.kill()
      }
    }
    const stop = new AbortController()
    const attached = streamAttached()
    const running = squares.run({ write: () => {} }, stop.signal)
    await waitFor(attached, 'the stream attaching', 60_000)
    await run()
    stop.abort()
    await running
    // repl_work_square(i) for i < ROUNDS returns i * i
    const shown = new Map(squares.snapshot().entries.map((entry) => [Number(entry.key[0]), Number(entry.value)]))
    assert.deepEqual(shown, new Map(Array.from({ length: ROUNDS }, (_, i) => [i * i, 1])))

    const written = await fromStream(session, squares, 'square.results', { name: 'squares', intervalMs: 100 })
    assert.equal(written.status, 'running')
    assert.match(readFileSync(written.file, 'utf8'), /await ctx\.onUprobe\(target, \(event\) => \{ if \(event\.comm !== "repl-uprobe-tar"\) return;/)
    await run()
    await h.waitFor(() => [...pointsBy('squares', 'square.results', 'retval').values()].reduce((a, b) => a + b, 0) >= ROUNDS, 'the plugin\'s counts')
    assert.deepEqual(pointsBy('squares', 'square.results', 'retval'), shown)
    h.remove('squares.ts')
  })

  it('refuses what cannot become a plugin, saying why, and writes nothing', async () => {
    const openat = trace('syscalls:sys_enter_openat', { comm: WORKLOAD })
    const refusals: [unknown, unknown, RegExp][] = [
      [Stream.from([1, 2, 3]).count(), 'n', /a stream of values at hand \(Stream\.from\) cannot become a plugin yet: plugins trace tracepoints \(ctx\.onTracepoint\) and functions \(ctx\.onUprobe\)/],
      [openat.take(3).count(), 'n', /\.take\(3\) ends a stream, and a plugin runs until it is unloaded/],
      [openat.avg('args.flags'), 'n', /\.avg\(\) has no OpenTelemetry metric that adds up across exports/],
      [openat.count(), 'not a metric name!', /an aggregate's emit is its metric's name/],
      [openat, 'not a function', /emit \(for a stream: \(event, emit\) => \{ emit\.log\(\.\.\.\) \}\) must be a function/],
      [openat.filter(Math.sign as never), (e: unknown) => e, /the function given to \.filter\(\) is a built-in or bound function/],
      [{ count: 3 }, 'n', /give a stream made with trace/],
    ]
    for (const [stream, emit, message] of refusals) await assert.rejects(fromStream(session, stream, emit, { name: 'refused' }), message)
    assert.equal(existsSync(join(h.dir, 'refused.ts')), false)
  })
})
