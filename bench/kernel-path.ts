/**
 * The kernel-to-plugin path as the runtime runs it, measured against a host-side reader of the
 * same records: loopgen records written by the kernel (bench/loopgen-producer.c, a separate
 * process on the other CPU, so its work never counts against the consumer), read from the real
 * ring buffer, through the bus, into plugins whose handlers read one decoded field per event.
 * The baseline reader decodes the same field with the same generated decoder, once per plugin.
 *
 * Each round alternates baseline and plugins, each on a fresh object; each side first consumes
 * untimed warm-up bursts, then timed bursts. The producer writes one burst at a time and the next
 * only once the last has been handled, so the ring never overflows and the plugins' queues stay
 * under their default limits; any drop anyway (kernel, queue, limits) is reported. Figures are
 * records per consumer CPU-second (this process, all threads: the capacity of the path) and
 * records per second of wall time; with two plugins, each record is handled twice.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { decodeLoopgenEvent } from '../bpf/lib/loopgen.types.ts'
import { forEachRecord } from '../runtime/bpf/batch.ts'
import { Bus } from '../runtime/bus.ts'
import { openLibraryObject, type LibraryObject } from '../runtime/library/index.ts'
import { memoryLogger } from '../runtime/plugins/log.ts'
import { PluginManager } from '../runtime/plugins/manager.ts'
import { MemorySink } from '../runtime/plugins/sink.ts'
import { LoopgenProducer, median, pinSelf, programId, waitFor } from './common.ts'

const CONSUMER_CPU = 0
const PRODUCER_CPU = 1
const decodersPath = path.resolve(import.meta.dirname, '../bpf/lib/index.types.ts')

export interface PathOptions {
  /** Bytes per record (loopgen's record_size). */
  recordSize: number
  /** Plugins listening to the records, each reading one field per event. */
  plugins: number
  /** Records per producer burst: what the 16 MiB ring holds with room to spare. */
  burst: number
  warmBursts: number
  timedBursts: number
  rounds: number
}

export interface PathRun {
  /** Records handled (by every plugin) per CPU-second of this process. */
  perCpuSecond: number
  perWallSecond: number
  /** Records lost in the kernel, and events dropped by the plugins (queue full, limits, failure). */
  kernelDrops: number
  pluginDrops: number
  /** Records per batch the consumer was handed: fewer when it keeps up and is woken more often. */
  meanBatch: number
}

interface Consumer {
  object: LibraryObject
  /** Events handled so far, counted once per plugin (or per baseline handler). */
  handled(): number
  pluginDrops(): number
  /** Batches handed to the first plugin (or baseline handler) so far. */
  batches(): number
  close(): Promise<void>
}

async function timeBursts(consumer: Consumer, options: PathOptions): Promise<PathRun> {
  const producer = new LoopgenProducer(programId(consumer.object.object.program('generate').fd()), PRODUCER_CPU)
  try {
    let expected = 0
    const burst = async (): Promise<void> => {
      await producer.produce(options.burst)
      expected += options.burst * options.plugins
      await waitFor(() => consumer.handled() + consumer.pluginDrops() >= expected, `${expected} events handled`)
    }
    for (let i = 0; i < options.warmBursts; i++) await burst()
    const batchesBefore = consumer.batches()
    const cpuBefore = process.cpuUsage()
    const started = performance.now()
    for (let i = 0; i < options.timedBursts; i++) await burst()
    const wall = (performance.now() - started) / 1000
    const cpu = process.cpuUsage(cpuBefore)
    const records = options.timedBursts * options.burst
    return {
      perCpuSecond: records / ((cpu.user + cpu.system) / 1e6),
      perWallSecond: records / wall,
      kernelDrops: consumer.object.stats().dropped,
      pluginDrops: consumer.pluginDrops(),
      meanBatch: records / (consumer.batches() - batchesBefore),
    }
  } finally {
    await producer.close()
  }
}

/** The baseline: the same records read in this process, one decoding pass per plugin it stands for. */
async function hostReader(options: PathOptions): Promise<Consumer> {
  const object = await openLibraryObject('loopgen', { settings: { record_size: options.recordSize }, log: () => {} })
  let handled = 0
  let batches = 0
  const sums = new Array<number>(options.plugins).fill(0)
  object.subscribe('events', (batch) => {
    batches++
    for (let p = 0; p < options.plugins; p++) {
      forEachRecord(batch, (view, offset, size) => {
        sums[p] += decodeLoopgenEvent(view, offset, size).seq
        handled++
      })
    }
  })
  return { object, handled: () => handled, pluginDrops: () => 0, batches: () => batches, close: () => object.close() }
}

/** The runtime's path: the bus opens loopgen for the plugins, each in its own isolate. */
async function pluginReader(options: PathOptions): Promise<Consumer> {
  const opened: LibraryObject[] = []
  const bus = new Bus(
    { open: async (name, settings) => { const o = await openLibraryObject(name, { settings, log: () => {} }); opened.push(o); return o } },
    { loopgen: { record_size: options.recordSize } },
  )
  const log = memoryLogger()
  // the default limits: the queue holds 64 MB per plugin
  const manager = new PluginManager({ bus, sink: new MemorySink(), log, decodersPath })
  const dir = mkdtempSync(path.join(tmpdir(), 'periscope-bench-'))
  const close = async (): Promise<void> => {
    await manager.close()
    await bus.close()
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    for (let p = 0; p < options.plugins; p++) {
      const file = path.join(dir, `reader${p}.ts`)
      writeFileSync(file, `import { definePlugin } from 'periscope/plugin'
export default definePlugin({
  name: 'reader${p}',
  objects: ['loopgen'],
  setup(ctx) {
    let sum = 0
    ctx.on('loopgen:events', (ev) => { sum += ev.seq })
    ctx.every('1s', () => { if (sum < 0) ctx.log.info('unreachable') })
  },
})
`)
      await manager.add(file)
    }
    const object = opened.find((o) => o.name === 'loopgen')
    const running = manager.list().filter((p) => p.status === 'running').length
    if (object === undefined || running !== options.plugins) {
      throw new Error(`${running} of ${options.plugins} plugins running:\n${log.lines.map((l) => l.message).join('\n')}`)
    }
    const total = (pick: (stats: ReturnType<PluginManager['list']>[number]['stats']) => number) => () =>
      manager.list().reduce((sum, p) => sum + pick(p.stats), 0)
    return {
      object,
      handled: total((s) => s.handled),
      pluginDrops: total((s) => s.dropped),
      batches: () => manager.list()[0]!.stats.batchesIn,
      close,
    }
  } catch (error) {
    await close()
    throw error
  }
}

async function measure(open: (options: PathOptions) => Promise<Consumer>, options: PathOptions): Promise<PathRun> {
  const consumer = await open(options)
  try {
    return await timeBursts(consumer, options)
  } finally {
    await consumer.close()
  }
}

export interface PathFigures {
  pinned: boolean
  host: PathRun[]
  plugin: PathRun[]
}

export async function measurePath(options: PathOptions): Promise<PathFigures> {
  const pinned = pinSelf(CONSUMER_CPU)
  const host: PathRun[] = []
  const plugin: PathRun[] = []
  for (let round = 0; round < options.rounds; round++) {
    host.push(await measure(hostReader, options))
    plugin.push(await measure(pluginReader, options))
  }
  return { pinned, host, plugin }
}

const rate = (x: number): string => `${(x / 1e6).toFixed(2)} M/s`

/** Prints the figures; returns whether the plugin path's CPU rate met `target` with no drop. */
export function report(title: string, options: PathOptions, figures: PathFigures, target: number): boolean {
  const { host, plugin } = figures
  const cpu = (runs: PathRun[]) => median(runs.map((r) => r.perCpuSecond))
  const wall = (runs: PathRun[]) => median(runs.map((r) => r.perWallSecond))
  const drops = (runs: PathRun[]) => runs.reduce((sum, r) => sum + r.kernelDrops + r.pluginDrops, 0)
  const meanBatch = (runs: PathRun[]) => median(runs.map((r) => r.meanBatch)).toFixed(0)
  const met = cpu(plugin) >= target && drops(plugin) === 0
  console.log(`${title}: ${options.recordSize}-byte records into ${options.plugins} plugin(s), ` +
    `${options.timedBursts} timed bursts of ${options.burst} after ${options.warmBursts} warm-up, medians of ${options.rounds} rounds; ` +
    `consumer ${figures.pinned ? `pinned to CPU ${CONSUMER_CPU}` : 'NOT pinned (taskset failed)'}, producer process on CPU ${PRODUCER_CPU}; default plugin limits`)
  console.log(`  plugins:  ${rate(cpu(plugin))} per consumer CPU-second (rounds ${plugin.map((r) => rate(r.perCpuSecond)).join(', ')}; target ≥ ${rate(target)}) ` +
    `${met ? 'met' : 'MISSED'}; ${rate(wall(plugin))} wall; mean batch ${meanBatch(plugin)} records; ` +
    `drops: kernel ${plugin.reduce((s, r) => s + r.kernelDrops, 0)}, plugins ${plugin.reduce((s, r) => s + r.pluginDrops, 0)}`)
  console.log(`  baseline host reader, same records, same decoder: ${rate(cpu(host))} per consumer CPU-second, ${rate(wall(host))} wall; ` +
    `mean batch ${meanBatch(host)} records; drops: kernel ${drops(host)}`)
  console.log(`  ratio plugins / baseline: ${(cpu(plugin) / cpu(host)).toFixed(2)} per CPU-second, ${(wall(plugin) / wall(host)).toFixed(2)} wall`)
  return met
}
