// Profiles: gzipped pprof that `go tool pprof` reads, and the OTLP profiles signal that a real
// Collector (profiles enabled) accepts and writes back out with the same stacks and values.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readdir, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { gunzipSync } from 'node:zlib'
import { Profile } from 'pprof-format'
import { createTelemetry } from '../../runtime/telemetry/index.ts'
import type { ProfileSampleInput, Telemetry } from '../../runtime/telemetry/index.ts'
import { attributesOf, flatten, startCollector } from '../peers/otelcol.ts'
import { scratchDir } from '../peers/scratch-dir.ts'

const GO = process.env.GO ?? '/usr/local/go/bin/go'
const NGINX = { pid: 4242, executablePath: '/usr/sbin/nginx' }
const MAPPING = { file: '/usr/sbin/nginx', buildId: '5f0c2a1e9b', start: 0x400000, end: 0x500000, offset: 0 }

// 3 samples of one stack and 1 of another, 10 ms each; pprof stacks are leaf first
const SAMPLES: ProfileSampleInput[] = [
  ...Array.from({ length: 3 }, () => ({
    type: 'cpu',
    frames: [
      { address: 0x401000, function: 'ngx_http_parse_request_line', file: 'src/http/ngx_http_parse.c', line: 104, mapping: MAPPING },
      { address: 0x402000, function: 'ngx_http_process_request', file: 'src/http/ngx_http_request.c', line: 2001, mapping: MAPPING },
      { address: 0x403000, function: 'main', file: 'src/core/nginx.c', line: 200, mapping: MAPPING },
    ],
    values: [1, 10_000_000],
    labels: { 'thread.name': 'worker' },
    process: NGINX,
  })),
  {
    type: 'cpu',
    frames: [
      { address: 0x404000, function: 'ngx_http_write_filter', mapping: MAPPING },
      { address: 0x402000, function: 'ngx_http_process_request', file: 'src/http/ngx_http_request.c', line: 2001, mapping: MAPPING },
      { address: 0x403000, function: 'main', file: 'src/core/nginx.c', line: 200, mapping: MAPPING },
    ],
    values: [1, 10_000_000],
    labels: { 'thread.name': 'worker' },
    process: NGINX,
  },
]

async function pprof(...args: string[]): Promise<string> {
  const { stdout } = await promisify(execFile)(GO, ['tool', 'pprof', ...args], { env: { ...process.env, HOME: process.env.HOME ?? tmpdir() } })
  return stdout
}

test('a CPU profile written by the embedded store loads in go tool pprof -top with the right functions and values', async () => {
  const dataDir = scratchDir('periscope-pprof-')
  const telemetry = await createTelemetry({ config: { dataDir, prometheus: { enabled: false } }, env: {}, log: () => {} })
  telemetry.scope('cpu-profile').profiles(SAMPLES)
  await telemetry.shutdown(5000)

  const files = (await readdir(join(dataDir, 'profiles'))).filter((name) => name.endsWith('.pb.gz'))
  assert.equal(files.length, 1)
  assert.match(files[0], /^\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3}-000000-cpu-profile-cpu\.pb\.gz$/)
  const path = join(dataDir, 'profiles', files[0])

  const top = await pprof('-top', '-sample_index=cpu', path)
  assert.match(top, /Type: cpu/)
  assert.match(top, /Showing nodes accounting for 40ms, 100% of 40ms total/)
  assert.match(top, /^\s+30ms\s+75\.00%\s+75\.00%\s+30ms\s+75\.00%\s+ngx_http_parse_request_line$/m)
  assert.match(top, /^\s+10ms\s+25\.00%\s+100%\s+10ms\s+25\.00%\s+ngx_http_write_filter$/m)
  assert.match(top, /^\s+0\s+0%\s+100%\s+40ms\s+100%\s+ngx_http_process_request$/m)
  assert.match(top, /^\s+0\s+0%\s+100%\s+40ms\s+100%\s+main$/m)

  const counts = await pprof('-top', '-sample_index=samples', path)
  assert.match(counts, /^\s+3\s+75\.00%.*ngx_http_parse_request_line$/m)

  // labels (the plugin's, under pprof's names, and the pid) travel with each sample
  const tags = await pprof('-tags', path)
  assert.match(tags, /pid: Total 40ms of 40ms \(\s*100%\)\s+40ms \(\s*100%\): 4242/)
  assert.match(tags, /comm: Total 40ms of 40ms \(\s*100%\)\s+40ms \(\s*100%\): worker/)
})

const REDIS = { pid: 5151, executablePath: '/usr/bin/redis-server' }
const REDIS_MAPPING = { file: '/usr/bin/redis-server', buildId: '77aa01', start: 0x500000, offset: 0 }
const redisSample = (fn: string, count: number): ProfileSampleInput => ({
  type: 'cpu',
  frames: [
    { address: 0x501000, function: fn, mapping: REDIS_MAPPING },
    { address: 0x502000, function: 'main', mapping: REDIS_MAPPING },
  ],
  values: [count, count * 10_000_000],
  labels: { 'process.pid': REDIS.pid, 'thread.id': REDIS.pid, 'thread.name': 'redis-server' },
  process: REDIS,
})

/** Each sample of a pprof file: its pid and comm labels, its count and its leaf function. */
async function samplesOf(path: string): Promise<string[]> {
  const profile = Profile.decode(gunzipSync(await readFile(path)))
  const str = (i: unknown) => profile.stringTable.strings[Number(i)]
  const functions = new Map(profile.function.map((f) => [Number(f.id), str(f.name)]))
  const leaf = new Map(profile.location.map((l) => [Number(l.id), functions.get(Number(l.line[0]?.functionId))]))
  return profile.sample
    .map((sample) => {
      const label = (key: string) => sample.label.find((l) => str(l.key) === key)
      return `${Number(label('pid')?.num)} ${str(label('comm')?.str)} ${Number(sample.value[0])} ${leaf.get(Number(sample.locationId[0]))}`
    })
    .sort()
}

test('the embedded store writes one pprof file per plugin, type and interval, the processes told apart by labels', async () => {
  const dataDir = scratchDir('periscope-pprof-interval-')
  const telemetry = await createTelemetry({ config: { dataDir, prometheus: { enabled: false } }, env: {}, log: () => {} })
  telemetry.scope('cpu-profile').profiles([...SAMPLES, redisSample('processCommand', 2)])
  telemetry.scope('offcpu-profile').profiles([{ ...redisSample('epoll_wait', 1), type: 'offcpu', values: [5_000_000] }])
  await telemetry.flush(5000)
  telemetry.scope('cpu-profile').profiles([redisSample('dictFind', 4)])
  await telemetry.shutdown(5000)

  const dir = join(dataDir, 'profiles')
  const files = (await readdir(dir)).sort()
  assert.equal(files.length, 3, files.join(', '))
  assert.match(files[0], /-000000-cpu-profile-cpu\.pb\.gz$/)
  assert.match(files[1], /-000001-offcpu-profile-offcpu\.pb\.gz$/)
  assert.match(files[2], /-000002-cpu-profile-cpu\.pb\.gz$/)
  assert.deepEqual(await samplesOf(join(dir, files[0])), [
    '4242 worker 1 ngx_http_write_filter',
    '4242 worker 3 ngx_http_parse_request_line',
    '5151 redis-server 2 processCommand',
  ])
  assert.deepEqual(await samplesOf(join(dir, files[1])), ['5151 redis-server 5000000 epoll_wait'])
  assert.deepEqual(await samplesOf(join(dir, files[2])), ['5151 redis-server 4 dictFind'])

  const both = await pprof('-top', '-sample_index=cpu', join(dir, files[0]))
  assert.match(both, /Showing nodes accounting for 60ms, 100% of 60ms total/)
  assert.match(both, /^\s+30ms\s+50\.00%.*ngx_http_parse_request_line$/m)
  assert.match(both, /^\s+20ms\s+33\.33%.*processCommand$/m)
  assert.match(both, /^\s+10ms\s+16\.67%.*ngx_http_write_filter$/m)
  const redisOnly = await pprof('-top', '-sample_index=cpu', '-tagfocus=pid=5151', join(dir, files[0]))
  // -tagfocus keeps the whole file's total: redis-server's 20 ms of the 60 ms
  assert.match(redisOnly, /Showing nodes accounting for 20ms, 33\.33% of 60ms total/)
  assert.match(redisOnly, /^\s+20ms\s+33\.33%\s+33\.33%\s+20ms\s+33\.33%\s+processCommand$/m)
  assert.match(redisOnly, /^\s+0\s+0%\s+33\.33%\s+20ms\s+33\.33%\s+main$/m)
  assert.doesNotMatch(redisOnly, /ngx_http/)
})

interface Dictionary {
  stringTable: string[]
  functionTable: { nameStrindex?: number }[]
  locationTable: { mappingIndex?: number; address?: string; line?: { functionIndex?: number; line?: string }[] }[]
  mappingTable: { filenameStrindex?: number; attributeIndices?: number[] }[]
  attributeTable: { key: string; value: Record<string, unknown> }[]
}

test('profiles reach a real Collector as the OTLP profiles signal, with stacks, values and resource intact', async (t) => {
  const collector = await startCollector()
  const state: { telemetry?: Telemetry } = {}
  t.after(async () => {
    await state.telemetry?.shutdown(2000)
    await collector.stop()
  })
  const dataDir = scratchDir('periscope-otlp-profiles-')
  const telemetry = (state.telemetry = await createTelemetry({
    config: { dataDir, profiles: { writePprof: true } },
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: collector.httpEndpoint },
    log: () => {},
  }))
  telemetry.scope('cpu-profile', '0.3.0').profiles(SAMPLES)
  await telemetry.flush(5000)
  assert.equal(telemetry.stats().signals.profiles.sent, 1)

  const lines = await collector.waitFor('profiles', (l) => l.length >= 1)
  const profiles = flatten('profiles', lines)
  assert.equal(profiles.length, 1)
  const [{ resource, scope, item: profile }] = profiles
  assert.deepEqual(scope, { name: 'cpu-profile', version: '0.3.0' })
  assert.equal(resource['service.name'], 'nginx')
  assert.equal(resource['process.pid'], 4242)
  assert.equal(resource['collection.method'], 'ebpf')

  const dictionary = (lines[0] as { dictionary: Dictionary }).dictionary
  const str = (index: number | undefined) => dictionary.stringTable[index ?? 0]
  assert.equal(dictionary.stringTable[0], '')
  const sampleTypes = (profile.sampleType as { typeStrindex?: number; unitStrindex?: number }[]).map((v) => `${str(v.typeStrindex)}/${str(v.unitStrindex)}`)
  assert.deepEqual(sampleTypes, ['samples/count', 'cpu/nanoseconds'])

  const locationIndices = (profile.locationIndices as number[] | undefined) ?? []
  const stacks = (profile.sample as { locationsStartIndex?: number; locationsLength: number; value: string[]; attributeIndices?: number[] }[]).map((sample) => {
    const start = sample.locationsStartIndex ?? 0
    const functions = locationIndices.slice(start, start + sample.locationsLength).map((index) => {
      const location = dictionary.locationTable[index]
      return str(dictionary.functionTable[location.line?.[0]?.functionIndex ?? 0].nameStrindex)
    })
    const labels = attributesOf((sample.attributeIndices ?? []).map((i) => dictionary.attributeTable[i]))
    return { functions, values: sample.value.map(Number), labels }
  })
  assert.deepEqual(stacks, [
    {
      functions: ['ngx_http_parse_request_line', 'ngx_http_process_request', 'main'],
      values: [3, 30_000_000],
      labels: { 'thread.name': 'worker', pid: 4242 },
    },
    {
      functions: ['ngx_http_write_filter', 'ngx_http_process_request', 'main'],
      values: [1, 10_000_000],
      labels: { 'thread.name': 'worker', pid: 4242 },
    },
  ])
  const leaf = dictionary.locationTable[locationIndices[0]]
  assert.equal(leaf.address, String(0x401000))
  assert.equal(leaf.line?.[0]?.line, '104')
  const mapping = dictionary.mappingTable[leaf.mappingIndex ?? 0]
  assert.equal(str(mapping.filenameStrindex), '/usr/sbin/nginx')
  assert.deepEqual(attributesOf((mapping.attributeIndices ?? []).map((i) => dictionary.attributeTable[i])), {
    'process.executable.build_id.gnu': '5f0c2a1e9b',
  })

  // writePprof: the same profile also lands as a pprof file next to the OTLP export
  const files = await readdir(join(dataDir, 'profiles'))
  assert.equal(files.length, 1)
  assert.match(await pprof('-top', '-sample_index=cpu', join(dataDir, 'profiles', files[0])), /30ms\s+75\.00%.*ngx_http_parse_request_line/)
})

test('with OTLP and writePprof, each process is its own OTLP profile and the interval is one pprof file', async (t) => {
  const collector = await startCollector()
  const state: { telemetry?: Telemetry } = {}
  t.after(async () => {
    await state.telemetry?.shutdown(2000)
    await collector.stop()
  })
  const dataDir = scratchDir('periscope-otlp-pprof-')
  const telemetry = (state.telemetry = await createTelemetry({
    config: { dataDir, profiles: { writePprof: true } },
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: collector.httpEndpoint },
    log: () => {},
  }))
  telemetry.scope('cpu-profile').profiles([...SAMPLES, redisSample('processCommand', 2)])
  await telemetry.flush(5000)
  // the exporter counts collections: one interval
  assert.equal(telemetry.stats().signals.profiles.sent, 1)
  const lines = await collector.waitFor('profiles', (l) => flatten('profiles', l).length >= 2)
  assert.deepEqual(flatten('profiles', lines).map(({ resource }) => resource['process.pid']).sort(), [4242, 5151])

  const dir = join(dataDir, 'profiles')
  const files = await readdir(dir)
  assert.equal(files.length, 1, files.join(', '))
  assert.deepEqual(await samplesOf(join(dir, files[0])), [
    '4242 worker 1 ngx_http_write_filter',
    '4242 worker 3 ngx_http_parse_request_line',
    '5151 redis-server 2 processCommand',
  ])
})

test('a collection of 1,000 processes reaches the Collector whole: each process its own profile, none dropped', async (t) => {
  const collector = await startCollector()
  const state: { telemetry?: Telemetry } = {}
  t.after(async () => {
    await state.telemetry?.shutdown(2000)
    await collector.stop()
  })
  const dataDir = scratchDir('periscope-otlp-many-')
  const telemetry = (state.telemetry = await createTelemetry({
    config: { dataDir },
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: collector.httpEndpoint },
    log: () => {},
  }))
  const pids = Array.from({ length: 1000 }, (_, i) => 10_000 + i)
  // more processes in one interval than the queue holds collections, or than one request carries
  telemetry.scope('cpu-profile').profiles(pids.map((pid) => ({ ...redisSample('processCommand', pid % 7 + 1), process: { pid, executablePath: '/usr/bin/redis-server' } })))
  await telemetry.flush(30_000)
  const { sent, dropped } = telemetry.stats().signals.profiles
  assert.deepEqual({ sent, dropped }, { sent: 1, dropped: 0 })
  const lines = await collector.waitFor('profiles', (l) => flatten('profiles', l).length >= pids.length)
  const received = flatten('profiles', lines).map(({ resource, item }) => `${resource['process.pid']}:${(item.sample as { value: string[] }[])[0]!.value[0]}`)
  assert.deepEqual(received.sort(), pids.map((pid) => `${pid}:${pid % 7 + 1}`).sort())
})
