// Process churn: 10,000 short-lived processes while `periscope run` runs every shipped plugin
// (as a user gets it with no config), exporting to a real Collector. Every per-process table in
// the kernel must come back to near its size before the churn, since each object removes a
// process's entries when it exits: the test reads the entry count of every hash map Periscope
// holds (found through its file descriptors, counted with `bpftool map dump`), so a map of any
// object, present or future, that keeps an entry per process it saw fails it. The processes
// plugin's own table of processes must come back too, and it must log the exit of every one of the
// processes. Periscope's RSS must grow by less than 64 MiB (after a warm-up): 6.7 KiB a process, so
// a leak of two pages a process fails it. The 20,000 start and exit logs queue in the exporter
// while it sends them, and the heap they took is not all given back: 20 to 36 MiB of growth here on
// a quiet machine, more when the machine is so loaded that the exporter falls far behind.
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { after, before, describe, it } from 'node:test'
import { attributesOf, flatten, startCollector, type Collector } from '../peers/otelcol.ts'
import { startPeriscope, type Periscope } from '../peers/periscope.ts'
import { pollUntil } from '../peers/poll.ts'

type Json = Record<string, unknown>

const CHURN = 10_000
/**
 * Processes started first, so caches, JIT and exporter buffers reach their working size before
 * measuring. The CPU profiler samples some of the churn's processes, and each sampled process
 * fills bounded caches (its exporter resource, its mappings in the unwinder and the symbolizer):
 * measured growth over successive 10,000-process churns was 66, 50 and then 16 MiB, so the caches
 * are full only after about 30,000 processes.
 */
const WARM_UP = 30_000
/** Entries a map may hold beyond its size before the churn: other processes on the host come and go meanwhile. */
const MAP_SLACK = 300
const RSS_GROWTH_BOUND = 64 * 1024 * 1024

const hashTypes = new Set(['hash', 'lru_hash', 'percpu_hash', 'lru_percpu_hash'])

interface MapInfo {
  id: number
  name: string
  type: string
  maxEntries: number
}

/** The BPF maps a process holds open, from its fdinfo. */
function mapsOf(pid: number): MapInfo[] {
  const ids = new Set<number>()
  for (const fd of readdirSync(`/proc/${pid}/fdinfo`)) {
    let info: string
    try {
      info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8')
    } catch {
      continue // closed meanwhile
    }
    const id = /^map_id:\s+(\d+)$/m.exec(info)
    if (id !== null) ids.add(Number(id[1]))
  }
  return [...ids].map((id) => {
    const shown = JSON.parse(execFileSync('bpftool', ['map', 'show', 'id', String(id), '-j'], { encoding: 'utf8' })) as { name?: string; type: string; max_entries: number }
    return { id, name: shown.name ?? `id ${id}`, type: shown.type, maxEntries: shown.max_entries }
  })
}

function entryCount(id: number): number {
  return (JSON.parse(execFileSync('bpftool', ['map', 'dump', 'id', String(id), '-j'], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 })) as unknown[]).length
}

/** Entry counts of every hash map `pid` holds, by map id. */
function hashMapSizes(pid: number): Map<number, { map: MapInfo; entries: number }> {
  return new Map(mapsOf(pid).filter((m) => hashTypes.has(m.type)).map((map) => [map.id, { map, entries: entryCount(map.id) }]))
}

/** The latest value of the processes plugin's `periscope.processes.tracked` gauge: its own per-process table. */
function trackedProcesses(lines: readonly Json[]): number | undefined {
  const points = flatten('metrics', lines).filter(({ item }) => item.name === 'periscope.processes.tracked').flatMap(({ item }) => (item.gauge as Json).dataPoints as Json[])
  const latest = points.sort((a, b) => Number(BigInt(a.timeUnixNano as string) - BigInt(b.timeUnixNano as string))).at(-1)
  return latest === undefined ? undefined : Number(latest.asInt ?? latest.asDouble)
}

function rssBytes(pid: number): number {
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024
}

/** Runs `count` short-lived processes (each /bin/true, forked by one shell); resolves to the shell's pid. */
async function churn(count: number): Promise<number> {
  const shell = spawn('/bin/sh', ['-c', `i=0; while [ $i -lt ${count} ]; do /bin/true; i=$((i+1)); done`], { stdio: 'ignore' })
  const code = await new Promise<number | null>((resolve) => shell.once('exit', resolve))
  assert.equal(code, 0)
  return shell.pid!
}

describe('10,000 short-lived processes under the default plugins', { timeout: 900_000 }, () => {
  let collector: Collector
  let periscope: Periscope

  before(async () => {
    collector = await startCollector()
    periscope = await startPeriscope({
      endpoint: collector.httpEndpoint,
      // room for every start and exit log of the churn: none may be dropped on the way
      config: { plugins: { processes: { config: { collect_interval_ms: 1000 } } }, exporter: { queue: { logs: 4 * CHURN }, batch: { maxSize: 4096 } } },
      readyTimeoutMs: 120_000,
    })
    await periscope.waitForOutput(/plugin processes: process metrics/, 'the processes plugin to start')
  })

  after(async () => {
    await periscope?.stop()
    await collector?.stop()
  })

  it('leaves every per-process map near its starting size, RSS bounded, and logs every process', async () => {
    const exitsUnder = (lines: readonly Json[], parent: number): number => flatten('logs', lines)
      .filter(({ scope, item }) => scope.name === 'processes' && item.eventName === 'process.exit' && attributesOf(item.attributes)['process.parent_pid'] === parent).length

    const warmUpShell = await churn(WARM_UP)
    await collector.waitFor('logs', (lines) => exitsUnder(lines, warmUpShell) === WARM_UP, 120_000)
    const mapsBefore = hashMapSizes(periscope.pid)
    const rssBefore = rssBytes(periscope.pid)
    const trackedBefore = trackedProcesses(await collector.waitFor('metrics', (lines) => trackedProcesses(lines) !== undefined, 30_000))!
    assert.ok(mapsBefore.size > 0, 'Periscope holds hash maps')
    const names = new Set([...mapsBefore.values()].map((m) => m.map.name))
    // the per-process maps known today must be among them, so the check is not vacuous
    for (const name of ['proc_stats', 'exec_start']) assert.ok(names.has(name), `Periscope holds no map named ${name}; it holds ${[...names].join(', ')}`)

    const started = Date.now()
    const shell = await churn(CHURN)
    const churnMs = Date.now() - started
    // every exit logged: the exit records (and the last counts they carry) all came through
    await collector.waitFor('logs', (lines) => exitsUnder(lines, shell) >= CHURN, 300_000)
    const logs = await collector.read('logs')
    assert.equal(exitsUnder(logs, shell), CHURN)

    // the kernel removes entries at exit; wait out processes of the host that are still exiting
    let mapsAfter = new Map<number, { map: MapInfo; entries: number }>()
    const grown = (): string[] => [...mapsAfter].flatMap(([id, { map, entries }]) => {
      const before = mapsBefore.get(id)?.entries ?? 0
      return entries > before + MAP_SLACK ? [`${map.name} (id ${id}, ${map.type}, max ${map.maxEntries}): ${before} → ${entries} entries`] : []
    })
    await pollUntil(() => {
      mapsAfter = hashMapSizes(periscope.pid)
      return grown().length === 0
    }, { what: `every hash map of Periscope to come back within ${MAP_SLACK} entries of its size before the churn`, timeoutMs: 30_000, intervalMs: 1000, details: () => grown().join('\n') })
    // the plugin's own table of processes follows the live ones too
    let trackedAfter: number | undefined
    await pollUntil(async () => (trackedAfter = trackedProcesses(await collector.read('metrics'))) !== undefined && trackedAfter <= trackedBefore + MAP_SLACK,
      { what: `the processes plugin to track about as many processes as before the churn (${trackedBefore})`, timeoutMs: 30_000, intervalMs: 500, details: () => `tracked: ${trackedAfter}` })
    const rssAfter = rssBytes(periscope.pid)
    const table = [...mapsAfter].map(([id, { map, entries }]) => `${map.name}: ${mapsBefore.get(id)?.entries ?? 0} → ${entries}`).join(', ')
    console.log(`churn: ${CHURN} processes in ${churnMs} ms; RSS ${(rssBefore / 2 ** 20).toFixed(1)} → ${(rssAfter / 2 ** 20).toFixed(1)} MiB; processes tracked by the plugin ${trackedBefore} → ${trackedAfter}; hash maps: ${table}`)
    assert.ok(rssAfter - rssBefore < RSS_GROWTH_BOUND, `RSS grew by ${((rssAfter - rssBefore) / 2 ** 20).toFixed(1)} MiB (${rssBefore} → ${rssAfter} bytes)`)
  })
})
