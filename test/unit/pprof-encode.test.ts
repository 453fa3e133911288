// pprof files as `go tool pprof` expects them: each profile type's sample types in Go's own names,
// the CPU period, mappings with build ids and has_functions, and pid/thread/comm labels; every file
// written here is loaded by `go tool pprof -top`.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { gunzipSync } from 'node:zlib'
import { Profile } from 'pprof-format'
import type { AggregatedProfile, AggregatedSample } from '../../runtime/telemetry/profiles.ts'
import { encodePprof, mergeProfiles, ProfileAggregator, PROFILE_TYPES, samplingPeriod } from '../../runtime/telemetry/profiles.ts'
import type { FrameInput } from '../../runtime/telemetry/signals.ts'

const GO = process.env.GO ?? '/usr/local/go/bin/go'
const BURNER = { file: '/opt/burner', buildId: '8d0d2f1c0ffee5', start: 0x555555554000, end: 0x555555556000, offset: 0x1000 }
const LIBC = { file: '/usr/lib/x86_64-linux-gnu/libc.so.6', buildId: '2a1f0be2d0', start: 0x7ffff7dd0000, end: 0x7ffff7f50000, offset: 0x26000 }
const STRIPPED = { file: '/opt/stripped.so', buildId: 'feedface', start: 0x7ffff7a00000, end: 0x7ffff7a10000, offset: 0 }
const PERIOD_99HZ = Math.round(1e9 / 99)

const named = (fn: string, address: number, mapping: FrameInput['mapping'] = BURNER): FrameInput => ({ address, function: fn, mapping })

function profileOf(type: string, samples: AggregatedSample[], process?: AggregatedProfile['process']): AggregatedProfile {
  const spec = PROFILE_TYPES[type]
  return {
    scope: { name: `${type}-profile` },
    type,
    process,
    resourceAttributes: {},
    startNs: 1_764_547_200e9,
    endNs: 1_764_547_205e9,
    sampleTypes: spec.sampleTypes,
    periodType: spec.periodType,
    samples,
  }
}

const cpuLabels = (tid: number, comm: string) => ({ 'process.pid': 4242, 'thread.id': tid, 'thread.name': comm })

const CPU = profileOf('cpu', [
  { frames: [named('hot_loop', 0x555555555100), named('main', 0x555555555200)], values: [80, 80 * PERIOD_99HZ], labels: cpuLabels(4242, 'burner') },
  { frames: [named('warm_loop', 0x555555555150), named('main', 0x555555555200)], values: [20, 20 * PERIOD_99HZ], labels: cpuLabels(4243, 'burner-2') },
  {
    frames: [
      { address: 0x7ffff7a00123, mapping: STRIPPED },
      named('memcpy', 0x7ffff7e80010, LIBC),
      { address: 0x7ffff7e90020, mapping: LIBC },
      named('main', 0x555555555210),
    ],
    values: [5, 5 * PERIOD_99HZ],
    labels: cpuLabels(4242, 'burner'),
  },
], { pid: 4242, executablePath: '/opt/burner', command: 'burner' })

async function pprof(...args: string[]): Promise<string> {
  const { stdout } = await promisify(execFile)(GO, ['tool', 'pprof', ...args], { env: { ...process.env, HOME: process.env.HOME ?? tmpdir() } })
  return stdout
}

async function written(t: { after(fn: () => Promise<void>): void }, name: string, bytes: Uint8Array): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'periscope-pprof-unit-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const path = join(dir, name)
  await writeFile(path, bytes)
  return path
}

const decode = (bytes: Uint8Array) => Profile.decode(gunzipSync(bytes))

test('a CPU profile: samples/count and cpu/nanoseconds, the period of 99 Hz, and pprof reads its functions and times', async (t) => {
  const bytes = encodePprof(CPU)
  const decoded = decode(bytes)
  const str = (i: unknown) => decoded.stringTable.strings[Number(i)]
  assert.deepEqual(decoded.sampleType.map((v) => `${str(v.type)}/${str(v.unit)}`), ['samples/count', 'cpu/nanoseconds'])
  assert.equal(`${str(decoded.periodType!.type)}/${str(decoded.periodType!.unit)}`, 'cpu/nanoseconds')
  assert.equal(Number(decoded.period), PERIOD_99HZ)
  assert.equal(Number(decoded.durationNanos), 5e9)

  const path = await written(t, 'cpu.pb.gz', bytes)
  // as a user runs it: pprof tries the files of the mappings without functions, and must still load
  const top = await pprof('-top', path)
  // the process's executable is the first mapping, which pprof names the profile after
  assert.match(top, /^File: burner\nBuild ID: 8d0d2f1c0ffee5\nType: cpu\n/)
  assert.match(top, /Duration: 5s, Total samples = 1060\.61ms/)
  assert.match(top, /^\s+808\.08ms\s+76\.19%\s+76\.19%\s+808\.08ms\s+76\.19%\s+hot_loop$/m)
  assert.match(top, /^\s+202\.02ms\s+19\.05%\s+95\.24%\s+202\.02ms\s+19\.05%\s+warm_loop$/m)
  // the unnamed frames go by their module
  assert.match(top, /^\s+50\.51ms\s+4\.76%\s+100%\s+50\.51ms\s+4\.76%\s+\[stripped\.so\]$/m)
  assert.match(top, /^\s+0\s+0%\s+100%\s+1060\.61ms\s+100%\s+main$/m)
  const counts = await pprof('-top', '-symbolize=none', '-sample_index=samples', path)
  assert.match(counts, /^\s+80\s+76\.19%\s+76\.19%\s+80\s+76\.19%\s+hot_loop$/m)
})

test('a CPU profile: mappings carry build ids and has_functions only where a frame was named', () => {
  const decoded = decode(encodePprof(CPU))
  const str = (i: unknown) => decoded.stringTable.strings[Number(i)]
  const mappings = decoded.mapping.map((m) => ({
    file: str(m.filename), buildId: str(m.buildId), start: Number(m.memoryStart), limit: Number(m.memoryLimit), offset: Number(m.fileOffset), hasFunctions: m.hasFunctions,
  }))
  assert.deepEqual(mappings, [
    { file: '/opt/burner', buildId: '8d0d2f1c0ffee5', start: BURNER.start, limit: BURNER.end, offset: 0x1000, hasFunctions: true },
    { file: '/opt/stripped.so', buildId: 'feedface', start: STRIPPED.start, limit: STRIPPED.end, offset: 0, hasFunctions: false },
    // libc's first frame seen is unnamed, its second named: the mapping has functions
    { file: LIBC.file, buildId: '2a1f0be2d0', start: LIBC.start, limit: LIBC.end, offset: 0x26000, hasFunctions: true },
  ])
  // one location per distinct frame, each in its own mapping; unnamed frames have no line
  const byAddress = new Map(decoded.location.map((l) => [Number(l.address), l]))
  assert.equal(decoded.location.length, 7)
  assert.equal(str(decoded.mapping.find((m) => m.id === byAddress.get(0x7ffff7a00123)!.mappingId)!.filename), '/opt/stripped.so')
  assert.equal(byAddress.get(0x7ffff7a00123)!.line.length, 0)
  assert.equal(str(decoded.function.find((f) => f.id === byAddress.get(0x7ffff7e80010)!.line[0].functionId)!.name), 'memcpy')
})

test('a CPU profile: labels pid, thread and comm on every sample, which pprof filters on', async (t) => {
  const decoded = decode(encodePprof(CPU))
  const str = (i: unknown) => decoded.stringTable.strings[Number(i)]
  const labels = decoded.sample.map((s) => Object.fromEntries(s.label.map((l) => [str(l.key), Number(l.str) === 0 ? Number(l.num) : str(l.str)])))
  assert.deepEqual(labels, [
    { pid: 4242, thread: 4242, comm: 'burner' },
    { pid: 4242, thread: 4243, comm: 'burner-2' },
    { pid: 4242, thread: 4242, comm: 'burner' },
  ])
  const path = await written(t, 'cpu.pb.gz', encodePprof(CPU))
  const tags = await pprof('-tags', '-symbolize=none', path)
  assert.match(tags, /comm: Total 1\.06s of 1\.06s \(\s*100%\)\s+858\.59ms \(80\.95%\): burner\s+202\.02ms \(19\.05%\): burner-2/)
  assert.match(tags, /pid: Total 1\.06s of 1\.06s \(\s*100%\)\s+1\.06s \(\s*100%\): 4242/)
  assert.match(tags, /thread: Total 1\.06s of 1\.06s \(\s*100%\)\s+858\.59ms \(80\.95%\): 4242\s+202\.02ms \(19\.05%\): 4243/)
  const focused = await pprof('-top', '-symbolize=none', '-tagfocus=comm=burner-2', path)
  assert.match(focused, /Showing nodes accounting for 202\.02ms, 19\.05% of 1060\.61ms total/)
})

test('an off-CPU profile: one value, off_cpu/nanoseconds, and pprof shows the blocked time per stack', async (t) => {
  const profile = profileOf('offcpu', [
    { frames: [named('clock_nanosleep', 0x7ffff7e80100, LIBC), named('main', 0x555555555200)], values: [2_000_000_000], labels: cpuLabels(4242, 'sleeper') },
    { frames: [named('read', 0x7ffff7e80200, LIBC), named('main', 0x555555555210)], values: [500_000_000], labels: cpuLabels(4242, 'sleeper') },
  ], { pid: 4242 })
  const bytes = encodePprof(profile)
  const decoded = decode(bytes)
  const str = (i: unknown) => decoded.stringTable.strings[Number(i)]
  assert.deepEqual(decoded.sampleType.map((v) => `${str(v.type)}/${str(v.unit)}`), ['off_cpu/nanoseconds'])
  assert.equal(decoded.periodType, undefined)
  assert.equal(Number(decoded.period), 0)
  const top = await pprof('-top', '-symbolize=none', await written(t, 'offcpu.pb.gz', bytes))
  assert.match(top, /Type: off_cpu/)
  assert.match(top, /^\s+2000ms\s+80\.00%\s+80\.00%\s+2000ms\s+80\.00%\s+clock_nanosleep$/m)
  assert.match(top, /^\s+500ms\s+20\.00%\s+100%\s+500ms\s+20\.00%\s+read$/m)
})

test('an allocation profile: alloc_space/bytes and inuse_space/bytes, pprof showing bytes in use by default', async (t) => {
  const profile = profileOf('alloc', [
    { frames: [named('malloc', 0x7ffff7e80300, LIBC), named('make_buffers', 0x555555555300), named('main', 0x555555555200)], values: [4 * 1048576, 1048576], labels: cpuLabels(4242, 'alloc') },
    { frames: [named('malloc', 0x7ffff7e80300, LIBC), named('make_nodes', 0x555555555400), named('main', 0x555555555200)], values: [1048576, 1048576], labels: cpuLabels(4242, 'alloc') },
  ], { pid: 4242 })
  const bytes = encodePprof(profile)
  const decoded = decode(bytes)
  const str = (i: unknown) => decoded.stringTable.strings[Number(i)]
  assert.deepEqual(decoded.sampleType.map((v) => `${str(v.type)}/${str(v.unit)}`), ['alloc_space/bytes', 'inuse_space/bytes'])
  const path = await written(t, 'alloc.pb.gz', bytes)
  const inuse = await pprof('-top', '-symbolize=none', '-cum', path)
  assert.match(inuse, /Type: inuse_space/)
  assert.match(inuse, /^\s+0\s+0%\s+0%\s+2MB\s+100%\s+main$/m)
  assert.match(inuse, /^\s+0\s+0%\s+100%\s+1MB\s+50\.00%\s+make_buffers$/m)
  const allocated = await pprof('-top', '-symbolize=none', '-cum', '-sample_index=alloc_space', path)
  assert.match(allocated, /^\s+0\s+0%\s+100%\s+4MB\s+80\.00%\s+make_buffers$/m)
})

test('a mapping given with its start but no end reaches its last frame, so pprof can place every address in it', () => {
  const loaded = { file: '/usr/bin/pie', buildId: '77', start: 0x5600_0000_0000, offset: 0 }
  const profile = profileOf('cpu', [
    { frames: [named('leaf', 0x5600_0000_2000, loaded), named('main', 0x5600_0000_1000, loaded)], values: [1, PERIOD_99HZ], labels: {} },
    { frames: [named('other', 0x5600_0000_3000, loaded), named('main', 0x5600_0000_1000, loaded)], values: [1, PERIOD_99HZ], labels: {} },
  ])
  const decoded = decode(encodePprof(profile))
  assert.deepEqual(decoded.mapping.map((m) => [Number(m.memoryStart), Number(m.memoryLimit), Number(m.fileOffset)]), [[0x5600_0000_0000, 0x5600_0000_3001, 0]])
})

test('ProfileAggregator: a profile spans its interval, from the previous drain to its own', () => {
  let now = 1_000e6
  const aggregator = new ProfileAggregator(10, () => now)
  const sample = { type: 'cpu', frames: [named('main', 0x555555555200)], values: [1, PERIOD_99HZ], process: { pid: 1 } }
  now += 10e6
  aggregator.add({ name: 'cpu-profile' }, [sample], () => ({}))
  now += 10e6
  const [first] = aggregator.drain()
  assert.deepEqual([first!.startNs, first!.endNs], [1_000e6, 1_020e6])
  now += 20e6
  aggregator.add({ name: 'cpu-profile' }, [sample], () => ({}))
  now += 20e6
  const [second] = aggregator.drain()
  // the second starts where the first ended, not when its own first sample came
  assert.deepEqual([second!.startNs, second!.endNs], [1_020e6, 1_060e6])
})

test('samplingPeriod: the weight per count, 0 without a period type', () => {
  assert.equal(samplingPeriod(CPU), PERIOD_99HZ)
  assert.equal(samplingPeriod({ ...CPU, samples: [] }), 0)
  assert.equal(samplingPeriod(profileOf('offcpu', [])), 0)
})

test('mergeProfiles: processes of a whole-host profile become one pprof, each sample labelled with its pid and comm', async (t) => {
  const frames = [named('compute', 0x401000, { file: '/usr/bin/a', buildId: 'aa', start: 0x400000, end: 0x500000, offset: 0 })]
  const a = profileOf('cpu', [{ frames, values: [3, 3 * PERIOD_99HZ], labels: { 'thread.id': 100 } }], { pid: 100, command: 'alpha' })
  const b = profileOf('cpu', [{ frames, values: [1, PERIOD_99HZ], labels: { 'thread.id': 201, 'thread.name': 'beta-worker' } }], { pid: 200, command: 'beta' })
  const merged = mergeProfiles([a, { ...b, startNs: a.startNs - 1e9, endNs: a.endNs + 1e9 }])
  assert.equal(merged.process, undefined)
  assert.equal(merged.endNs - merged.startNs, 7e9)
  assert.deepEqual(merged.samples.map((s) => s.labels), [
    { 'thread.id': 100, 'process.pid': 100, 'thread.name': 'alpha' },
    { 'thread.id': 201, 'thread.name': 'beta-worker', 'process.pid': 200 },
  ])
  const tags = await pprof('-tags', '-symbolize=none', await written(t, 'host.pb.gz', encodePprof(merged)))
  assert.match(tags, /pid: Total 40\.40ms of 40\.40ms \(\s*100%\)\s+30\.30ms \(75\.00%\): 100\s+10\.10ms \(25\.00%\): 200/)
  assert.throws(() => mergeProfiles([a, profileOf('offcpu', [])]), /types cpu and offcpu cannot be one profile/)
  assert.throws(() => mergeProfiles([]), /no profile to merge/)
})
