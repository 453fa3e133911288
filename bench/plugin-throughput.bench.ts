/**
 * Plugin runtime figures from synthetic 64-byte records (test/plugin-fixtures, no kernel), each
 * against a baseline measured in the same run:
 * - events per CPU-second (this process, all threads; robust to other load on the machine) and
 *   per second of wall time into one plugin's handler reading one decoded field, vs the same
 *   decoding loop in the host. Both sides are warmed, then timed over the same pre-built batches in
 *   alternating rounds. The plugin runs with the default limits: batches are handed
 *   over as the plugin takes them (at most WINDOW waiting), so the 64 MB queue never fills; drops
 *   are reported;
 * - reload latency from a file write to the new code handling events, vs a warm esbuild rebuild of
 *   the same edit (the part of a reload no runtime can skip).
 *
 *   node_modules/.bin/node bench/plugin-throughput.bench.ts
 */
import * as esbuild from 'esbuild'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { forEachRecord, type RecordBatch } from '../runtime/bpf/batch.ts'
import { Bus } from '../runtime/bus.ts'
import { pluginApiPath } from '../runtime/plugins/build.ts'
import { memoryLogger } from '../runtime/plugins/log.ts'
import { PluginManager } from '../runtime/plugins/manager.ts'
import { MemorySink } from '../runtime/plugins/sink.ts'
import { watchPlugins } from '../runtime/plugins/watch.ts'
import { decodeGen, decoders } from '../test/plugin-fixtures/decoders.ts'
import { makeBatch, SyntheticProvider } from '../test/plugin-fixtures/synthetic.ts'
import { median, verdict } from './common.ts'

const decodersPath = path.resolve(import.meta.dirname, '../test/plugin-fixtures/decoders.ts')
const BATCH = 4096
const DISTINCT_BATCHES = 64
const WARM_BATCHES = 200
const TIMED_BATCHES = 1000
const WINDOW = 8
const ROUNDS = 5
const RELOADS = 11
const TARGET_RATE = 1_000_000
const TARGET_RELOAD_MS = 200

const dir = mkdtempSync(path.join(tmpdir(), 'periscope-bench-'))
const provider = new SyntheticProvider()
const bus = new Bus(provider)
const sink = new MemorySink()
const log = memoryLogger()
// the default limits: the queue holds 64 MB
const manager = new PluginManager({ bus, sink, log, decodersPath })
const batches = Array.from({ length: DISTINCT_BATCHES }, (_, i) => makeBatch(i * BATCH, BATCH))

function pluginSource(name: string, version: number): string {
  return `import { definePlugin } from 'periscope/plugin'
export default definePlugin({
  name: '${name}',
  objects: ['gen'],
  setup(ctx) {
    let sum = 0
    let announced = false
    ctx.on('gen:events', (ev) => {
      sum += ev.pid as number
      if (!announced) { announced = true; ctx.emit.log({ body: 'v${version}' }) }
    })
    ctx.every('1s', () => { if (sum < 0) ctx.log.info('unreachable') })
  },
})
`
}

interface Timed { rate: number; cpuRate: number }

function timed(events: number, run: () => void | Promise<void>): Promise<Timed> {
  return (async () => {
    const cpuBefore = process.cpuUsage()
    const start = performance.now()
    await run()
    const seconds = (performance.now() - start) / 1000
    const cpu = process.cpuUsage(cpuBefore)
    return { rate: events / seconds, cpuRate: events / ((cpu.user + cpu.system) / 1e6) }
  })()
}

const decode = decoders['gen:events'] as typeof decodeGen
let hostSum = 0
function hostLoop(count: number): void {
  for (let i = 0; i < count; i++) forEachRecord(batches[i % DISTINCT_BATCHES]!, (view, offset) => { hostSum += decode(view, offset).pid })
}

/** Hands `count` batches to the plugin, never more than WINDOW waiting, and waits until all are handled or dropped. */
async function feedPlugin(count: number): Promise<void> {
  const listeners = provider.gen.listeners.get('events')
  if (listeners === undefined || listeners.size === 0) throw new Error('the plugin did not subscribe to gen:events')
  const stats = () => manager.list()[0]!.stats
  const base = stats()
  const settled = () => { const s = stats(); return (s.handled - base.handled + s.dropped - base.dropped) / BATCH }
  let sent = 0
  while (settled() < count) {
    while (sent < count && sent - settled() < WINDOW) {
      const batch: RecordBatch = batches[sent % DISTINCT_BATCHES]!
      for (const listener of listeners) listener(batch)
      sent++
    }
    await new Promise((resolve) => setImmediate(resolve))
  }
}

async function throughput(): Promise<{ host: Timed[]; plugin: Timed[]; dropped: number }> {
  const file = path.join(dir, 'bench.ts')
  writeFileSync(file, pluginSource('bench', 1))
  await manager.add(file)
  if (manager.list()[0]?.status !== 'running') throw new Error(`the plugin is not running:\n${log.lines.map((l) => l.message).join('\n')}`)
  hostLoop(WARM_BATCHES)
  await feedPlugin(WARM_BATCHES)
  const host: Timed[] = []
  const plugin: Timed[] = []
  for (let round = 0; round < ROUNDS; round++) {
    host.push(await timed(TIMED_BATCHES * BATCH, () => hostLoop(TIMED_BATCHES)))
    plugin.push(await timed(TIMED_BATCHES * BATCH, () => feedPlugin(TIMED_BATCHES)))
  }
  if (hostSum === 0) throw new Error('the baseline loop did not run')
  const stats = manager.list()[0]!.stats
  const fed = (WARM_BATCHES + ROUNDS * TIMED_BATCHES) * BATCH
  if (stats.handled + stats.dropped !== fed) throw new Error(`the plugin handled ${stats.handled} and dropped ${stats.dropped} of ${fed} events`)
  await manager.remove(file)
  return { host, plugin, dropped: stats.dropped }
}

/** A warm esbuild rebuild of the same edit: the floor under a reload. */
async function warmRebuilds(file: string): Promise<number[]> {
  const context = await esbuild.context({
    entryPoints: [file], bundle: true, write: false, format: 'iife', platform: 'neutral', logLevel: 'silent',
    alias: { 'periscope/plugin': pluginApiPath },
  })
  try {
    await context.rebuild()
    const times: number[] = []
    for (let version = 100; version < 100 + RELOADS; version++) {
      writeFileSync(file, pluginSource('rebuild', version))
      const start = performance.now()
      await context.rebuild()
      times.push(performance.now() - start)
    }
    return times
  } finally {
    await context.dispose()
  }
}

async function reloadLatency(): Promise<{ reloads: number[]; rebuilds: number[] }> {
  const file = path.join(dir, 'reload.ts')
  writeFileSync(file, pluginSource('reload', 1))
  const watcher = await watchPlugins([dir], manager, log)
  await manager.whenIdle()
  const feeder = setInterval(() => provider.gen.push('events', 64), 1)
  const reloads: number[] = []
  try {
    for (let version = 2; version < 2 + RELOADS; version++) {
      const logs = sink.signals('reload').logs
      const start = performance.now()
      writeFileSync(file, pluginSource('reload', version))
      while (!logs.some((l) => l.body === `v${version}`)) {
        if (performance.now() - start > 10_000) throw new Error(`version ${version} never handled an event:\n${log.lines.map((l) => l.message).join('\n')}`)
        await new Promise((resolve) => setTimeout(resolve, 1))
      }
      reloads.push(performance.now() - start)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  } finally {
    clearInterval(feeder)
    await watcher.close()
  }
  // the watcher is closed: this file is esbuild's alone
  const rebuildFile = path.join(dir, 'rebuild.ts')
  writeFileSync(rebuildFile, pluginSource('rebuild', 99))
  return { reloads, rebuilds: await warmRebuilds(rebuildFile) }
}

try {
  const { host, plugin: inPlugin, dropped } = await throughput()
  const { reloads, rebuilds } = await reloadLatency()
  const m = (runs: Timed[], key: keyof Timed) => median(runs.map((r) => r[key]))
  const rate = (x: number) => `${(x / 1e6).toFixed(2)} M/s`
  const rateMet = m(inPlugin, 'cpuRate') >= TARGET_RATE && dropped === 0
  const reloadMet = median(reloads) <= TARGET_RELOAD_MS
  console.log(`plugin throughput (synthetic 64-byte records, ${BATCH} per batch, ${TIMED_BATCHES} batches per side per round, medians of ${ROUNDS} alternating rounds, ` +
    `both warmed; default plugin limits)`)
  console.log(`  one plugin handler: ${rate(m(inPlugin, 'cpuRate'))} per CPU-second (rounds ${inPlugin.map((r) => rate(r.cpuRate)).join(', ')}; target ≥ ${rate(TARGET_RATE)}) ${verdict(rateMet)}; ` +
    `${rate(m(inPlugin, 'rate'))} wall; dropped ${dropped}`)
  console.log(`  baseline host loop, same decoder: ${rate(m(host, 'cpuRate'))} per CPU-second, ${rate(m(host, 'rate'))} wall; ` +
    `ratio ${(m(inPlugin, 'cpuRate') / m(host, 'cpuRate')).toFixed(2)} per CPU-second, ${(m(inPlugin, 'rate') / m(host, 'rate')).toFixed(2)} wall`)
  console.log(`reload latency, file write to the new version handling an event: median ${median(reloads).toFixed(0)} ms, worst ${Math.max(...reloads).toFixed(0)} ms ` +
    `over ${reloads.length} edits (target ≤ ${TARGET_RELOAD_MS}) ${verdict(reloadMet)}`)
  console.log(`  baseline warm esbuild rebuild of the same edit: median ${median(rebuilds).toFixed(1)} ms; ratio ${(median(reloads) / median(rebuilds)).toFixed(1)}`)
  if (!rateMet || !reloadMet) process.exitCode = 1
} finally {
  await manager.close()
  await bus.close()
  rmSync(dir, { recursive: true, force: true })
}
