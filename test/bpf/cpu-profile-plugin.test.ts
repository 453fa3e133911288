/**
 * The shipped cpu-profile plugin on the real kernel, in-process (the runtime with a memory sink):
 * its profile samples hold what its self-metric counts, with the thread's labels, a wall time
 * of this run and each file frame's offset and build id; a stack copy too short for the stack
 * (objects.stacks.stack_bytes: 256) makes every stack truncated, shown by a
 * `[truncated: copy ended]` root frame and counted by reason; naming that outlasts the call
 * deadline does not stop the plugin; its ring is read at the catalogue's pace.
 */
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, it } from 'node:test'
import { probeAttach } from '../../runtime/bpf/features.ts'
import { ProcessMappings } from '../../runtime/symbols/mappings.ts'
import type { MetricPointInput, ProfileSampleInput } from '../../runtime/telemetry/signals.ts'
import { startHarness, type Harness } from '../plugin-harness.ts'
import { cpuSeconds, requireFeature, root, stealSeconds } from './kernel.ts'
import { decodersPath, provider } from './plugin-api-fixture.ts'
import { useBurner } from './unwind-burner.ts'

const burner = useBurner('periscope-cpu-plugin-', ['-fomit-frame-pointer'])
let h: Harness | undefined

afterEach(async () => {
  await h?.close()
  h = undefined
})

const sum = (values: number[]) => values.reduce((a, b) => a + b, 0)
const metricTotal = (points: MetricPointInput[], name: string, attributes: Record<string, unknown> = {}) =>
  sum(points.filter((p) => p.name === name && Object.entries(attributes).every(([k, v]) => p.attributes?.[k] === v)).map((p) => p.value))

/** Runs the shipped plugin on the burner at 99 Hz with a 1 s interval until `count` samples were exported. */
async function profile(count: number, options: { objects?: Record<string, Record<string, number>>; callDeadline?: string; pid?: number } = {}): Promise<{ profiles: ProfileSampleInput[]; metrics: MetricPointInput[]; startMs: number }> {
  const limits = options.callDeadline === undefined ? {} : { resource_limits: { call_deadline: options.callDeadline } }
  h = await startHarness({
    provider: provider(), decodersPath,
    config: { objects: options.objects ?? {}, plugins: { 'cpu-profile': { config: { frequency: 99, collect_interval_ms: 1000, target_pids: [options.pid ?? burner.pid] }, ...limits } } },
  })
  const harness = h
  const startMs = Date.now()
  harness.write('cpu-profile.ts', readFileSync(join(root, 'plugins/cpu-profile.ts'), 'utf8'))
  const signals = harness.sink.signals('cpu-profile')
  await harness.waitFor(() => sum(signals.profiles.map((p) => p.values[0]!)) >= count, `${count} samples exported`, 120_000)
  return { profiles: [...signals.profiles], metrics: [...signals.metrics], startMs }
}

describe('the cpu-profile plugin', () => {
  // first: the runtime's symbolizer is shared by the tests of this file, and this one needs it cold
  it('keeps running when naming a collection takes longer than a timer callback may', async (t) => {
    if (!requireFeature(t, 'perf_event', await probeAttach('perf_event'))) return
    // naming a node process reads node's 105,000 symbols the first time: about 0.7 s here, past
    // a 200 ms call deadline, which setup() (claims and the attach) meets
    const busy = spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' })
    t.after(() => busy.kill('SIGKILL'))
    const { profiles } = await profile(50, { callDeadline: '200ms', pid: busy.pid! })
    assert.ok(sum(profiles.map((p) => p.values[0]!)) >= 50)
    assert.deepEqual(h!.events.filter((e) => e.type === 'failed'), [], 'no failure: the timer callback does not wait for the naming')
  })

  it('exports the target\'s samples as counted by the self-metric, labelled with its thread, at a wall time of this run, with file offsets and build ids', async (t) => {
    if (!requireFeature(t, 'perf_event', await probeAttach('perf_event'))) return
    const { profiles, metrics, startMs } = await profile(100)
    const maps = ProcessMappings.read(burner.pid)
    const buildId = /Build ID: ([0-9a-f]+)/.exec(execFileSync('readelf', ['-n', burner.path], { encoding: 'utf8' }))![1]
    const samples = sum(profiles.map((p) => p.values[0]!))
    assert.equal(metricTotal(metrics, 'periscope.profile.samples', { 'profile.type': 'cpu' }), samples, 'the self-metric counts what the profiles hold')
    assert.equal(metricTotal(metrics, 'periscope.profile.stacks.truncated'), 0)
    for (const p of profiles) {
      assert.equal(p.type, 'cpu')
      assert.equal(p.values[1], p.values[0]! * Math.round(1e9 / 99), 'cpu ns: samples × the sampling period')
      assert.deepEqual(p.labels, { 'process.pid': burner.pid, 'thread.id': burner.pid, 'thread.name': 'burner' })
      assert.deepEqual(p.process, { pid: burner.pid })
      assert.ok(p.timeNs! >= startMs * 1e6 && p.timeNs! <= Date.now() * 1e6, `sample time ${p.timeNs} within the run`)
      const names = p.frames.map((f) => f.function ?? '?')
      assert.equal(names.at(-1), '_start', names.join(' < '))
      assert.ok(names.includes('main'), names.join(' < '))
      // a backend names a frame later from the file offset (address - start) and the build id
      for (const frame of p.frames.filter((f) => f.mapping?.file === burner.path)) {
        const mapping = maps.find(frame.address)!
        assert.equal(frame.address - frame.mapping!.start!, frame.address - Number(mapping.start) + Number(mapping.offset))
        assert.equal(frame.mapping!.offset, 0)
        assert.equal(frame.mapping!.buildId, buildId)
      }
    }
  })

  it('reads its ring twice a second at 19 Hz, each read one batch: not a batch per 100 ms idle drain', async (t) => {
    if (!requireFeature(t, 'perf_event', await probeAttach('perf_event'))) return
    // 19 samples a second of the burner (about 250 KB) never reach the program's wakeup_bytes
    // (512 KB): only the catalogue's paced read (500 ms) takes them, each time a batch
    h = await startHarness({ provider: provider(), decodersPath, config: { plugins: { 'cpu-profile': { config: { frequency: 19, collect_interval_ms: 1000, target_pids: [burner.pid] } } } } })
    const harness = h
    harness.write('cpu-profile.ts', readFileSync(join(root, 'plugins/cpu-profile.ts'), 'utf8'))
    const stream = () => harness.runtime.bus.listStreams().find((s) => s.topic === 'stacks:samples')
    await harness.waitFor(() => (stream()?.records ?? 0) > 0, 'the first samples', 60_000)
    // the burner is sampled only while it runs, and other work on the host can take its CPU:
    // its own CPU time says how many samples to expect, and at most that plus the vCPUs' steal
    const before = stream()!, cpuBefore = cpuSeconds(burner.pid), stealBefore = stealSeconds()
    const startMs = performance.now()
    await harness.waitFor(() => performance.now() - startMs >= 4000, '4 s', 10_000)
    const after = stream()!, cpu = cpuSeconds(burner.pid) - cpuBefore, stolen = stealSeconds() - stealBefore
    const seconds = (performance.now() - startMs) / 1000
    const records = after.records - before.records, batches = after.batches - before.batches
    const what = `${records} samples in ${batches} batches in ${seconds.toFixed(1)} s, the burner on a CPU for ${cpu.toFixed(2)} s of them, ${stolen.toFixed(2)} s stolen from the vCPUs`
    assert.ok(records >= 0.6 * 19 * cpu && records <= 1.4 * 19 * (cpu + stolen) + 2, `${what}: about 19 samples a second of its CPU time`)
    // 2 reads a second, each one batch (the 100 ms idle drain gave 10), plus one where the window
    // cuts a read, and two where a record wraps the ring's end: it goes as a batch of its own,
    // between the read's batches before and after it (CI: 11 batches in 4.0 s). 4 s of samples
    // (under 9 KB each) wrap the 2 MB ring at most once. A read finds samples when the burner ran
    // in its half second, which it did unless the host was busy
    assert.ok(batches <= 2 * seconds + 3 && batches >= Math.min(1.5 * seconds - 1, records), what)
    t.diagnostic(what)
  })

  it('marks stacks cut short by the copy with a [truncated: copy ended] root and counts them', async (t) => {
    if (!requireFeature(t, 'perf_event', await probeAttach('perf_event'))) return
    // 256 bytes hold the innermost frames, not those of libc's start code above main
    const { profiles, metrics } = await profile(50, { objects: { stacks: { stack_bytes: 256 } } })
    const samples = sum(profiles.map((p) => p.values[0]!))
    for (const p of profiles) assert.equal(p.frames.at(-1)!.function, '[truncated: copy ended]', p.frames.map((f) => f.function).join(' < '))
    assert.equal(metricTotal(metrics, 'periscope.profile.stacks.truncated', { reason: 'copy ended' }), samples)
    assert.equal(metricTotal(metrics, 'periscope.profile.samples'), samples)
  })
})
