/**
 * Plugin runtime figures, each against a baseline measured in the same run:
 * - events/s into one plugin's handler reading one decoded field, vs the same loop in the host;
 * - reload latency from file write to the new code handling events, vs a cold esbuild build of it;
 * - RSS with 3 idle plugins, vs the same process before any plugin loaded.
 * Synthetic 64-byte records (test/plugin-fixtures); run: node bench/plugin-throughput.bench.ts
 */
import * as esbuild from 'esbuild'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { forEachRecord } from '../runtime/bpf/batch.ts'
import { Bus } from '../runtime/bus.ts'
import { pluginApiPath } from '../runtime/plugins/build.ts'
import { memoryLogger } from '../runtime/plugins/log.ts'
import { PluginManager } from '../runtime/plugins/manager.ts'
import { MemorySink } from '../runtime/plugins/sink.ts'
import { watchPlugins } from '../runtime/plugins/watch.ts'
import { decodeGen, decoders } from '../test/plugin-fixtures/decoders.ts'
import { makeBatch, SyntheticProvider } from '../test/plugin-fixtures/synthetic.ts'

const decodersPath = path.resolve(import.meta.dirname, '../test/plugin-fixtures/decoders.ts')
const BATCH = 4096
const BATCHES = 500
const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(1)
const rssBefore = process.memoryUsage.rss()

const dir = mkdtempSync(path.join(tmpdir(), 'periscope-bench-'))
const provider = new SyntheticProvider()
const bus = new Bus(provider)
const sink = new MemorySink()
const log = memoryLogger()
// The whole run is queued at once, so the queue must hold it (the default 64 MB would drop, and count, the rest).
const manager = new PluginManager({ bus, sink, log, decodersPath, limits: { maxQueuedBytes: 1024 * 1024 * 1024 } })

function plugin(name: string, version: number): string {
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

async function idleRss(): Promise<void> {
  for (const name of ['idle1', 'idle2', 'idle3']) writeFileSync(path.join(dir, `${name}.ts`), plugin(name, 1))
  const watcher = await watchPlugins([dir], manager, log)
  await watcher.close()
  const running = manager.list().filter((p) => p.status === 'running').length
  await new Promise((r) => setTimeout(r, 500))
  process.stdout.write(JSON.stringify({ rss: process.memoryUsage.rss(), rssBefore, running }))
}

try {
  if (process.argv.includes('--idle-rss')) {
    await idleRss()
  } else {
    await throughputAndReload()
  }
} finally {
  await manager.close()
  await bus.close()
  rmSync(dir, { recursive: true, force: true })
}

async function throughputAndReload(): Promise<void> {
  // Throughput --------------------------------------------------------------------------------
  const batches = Array.from({ length: BATCHES }, (_, i) => makeBatch(i * BATCH, BATCH))
  let hostSum = 0
  const decode = decoders['gen:events'] as typeof decodeGen
  let t = performance.now()
  for (const batch of batches) forEachRecord(batch, (view, offset) => { hostSum += decode(view, offset).pid })
  const hostRate = (BATCHES * BATCH) / ((performance.now() - t) / 1000)
  if (hostSum === 0) throw new Error('baseline loop did not run')

  const file = path.join(dir, 'bench.ts')
  writeFileSync(file, plugin('bench', 1))
  await manager.add(file)
  const pushAll = () => { for (const batch of batches) for (const l of provider.gen.listeners.get('events') ?? []) l(batch) }
  pushAll() // warm-up
  await manager.whenIdle()
  t = performance.now()
  pushAll()
  await manager.whenIdle()
  const pluginRate = (BATCHES * BATCH) / ((performance.now() - t) / 1000)
  const handled = manager.list()[0]!.stats.handled
  if (handled !== 2 * BATCHES * BATCH) throw new Error(`plugin handled ${handled} of ${2 * BATCHES * BATCH} events`)

  // Reload latency ----------------------------------------------------------------------------
  await manager.remove(file)
  const watcher = await watchPlugins([dir], manager, log)
  await manager.whenIdle()
  const feeder = setInterval(() => provider.gen.push('events', 64), 1)
  const latencies: number[] = []
  for (let version = 2; version <= 11; version++) {
    const logs = sink.signals('bench').logs
    const start = performance.now()
    writeFileSync(file, plugin('bench', version))
    while (!logs.some((l) => l.body === `v${version}`)) {
      if (performance.now() - start > 10_000) throw new Error(`version ${version} never handled an event:\n${log.lines.map((l) => l.message).join('\n')}`)
      await new Promise((r) => setTimeout(r, 1))
    }
    latencies.push(performance.now() - start)
    await new Promise((r) => setTimeout(r, 50))
  }
  clearInterval(feeder)
  latencies.sort((a, b) => a - b)
  const median = latencies[Math.floor(latencies.length / 2)]!
  t = performance.now()
  await esbuild.build({ entryPoints: [file], bundle: true, write: false, format: 'iife', platform: 'neutral', alias: { 'periscope/plugin': pluginApiPath } })
  const coldBuild = performance.now() - t

  // RSS with 3 idle plugins, in a fresh process so the throughput run's buffers do not count.
  await watcher.close()
  const child = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--idle-rss'], { encoding: 'utf8' })
  if (child.status !== 0) throw new Error(`idle RSS run failed:\n${child.stderr}`)
  const { rss, rssBefore, running } = JSON.parse(child.stdout) as { rss: number; rssBefore: number; running: number }

  console.log(`plugin throughput: ${(pluginRate / 1e6).toFixed(2)} M events/s into one handler (target >= 1.00), ` +
    `host loop ${(hostRate / 1e6).toFixed(2)} M/s, ratio ${(pluginRate / hostRate).toFixed(2)}`)
  console.log(`reload latency: median ${median.toFixed(0)} ms, worst ${latencies.at(-1)!.toFixed(0)} ms over ${latencies.length} edits (target <= 200), ` +
    `cold esbuild build ${coldBuild.toFixed(0)} ms, ratio ${(median / coldBuild).toFixed(2)}`)
  console.log(`RSS with ${running} idle plugins: ${mb(rss)} MB (target <= 120), before any plugin ${mb(rssBefore)} MB, ratio ${(rss / rssBefore).toFixed(2)}`)
}
