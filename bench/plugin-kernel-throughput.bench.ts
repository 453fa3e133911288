/**
 * Kernel to plugin handler: numbered 64-byte loopgen records, produced by the kernel on demand
 * (bpf_prog_test_run), read from the real ring buffer and delivered into one plugin's handler,
 * which reads one decoded field (seq) per event. The baseline, measured in the same run with the
 * same producer, is a host-side reader decoding the same field with the same generated decoder.
 *
 *   node_modules/.bin/node bench/plugin-kernel-throughput.bench.ts
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { decodeLoopgenEvent } from '../bpf/lib/loopgen.types.ts'
import { forEachRecord } from '../runtime/bpf/batch.ts'
import { testRun } from '../runtime/bpf/links.ts'
import { Bus } from '../runtime/bus.ts'
import { openLibraryObject, type LibraryObject } from '../runtime/library/index.ts'
import { memoryLogger } from '../runtime/plugins/log.ts'
import { PluginManager } from '../runtime/plugins/manager.ts'
import { MemorySink } from '../runtime/plugins/sink.ts'

const PER_RUN = 8192
const EVENTS = 500 * PER_RUN
const ROUNDS = 3
const TARGET = 1_000_000
const decodersPath = path.resolve(import.meta.dirname, '../bpf/lib/index.types.ts')

const args = new Uint8Array(8)
new DataView(args.buffer).setUint32(0, PER_RUN, true)

/** Produces EVENTS records, yielding to the loop between test runs so the consumer keeps up. */
async function produce(object: LibraryObject, done: () => boolean): Promise<number> {
  const start = performance.now()
  for (let made = 0; made < EVENTS; made += PER_RUN) {
    testRun(object.object, 'generate', args)
    await new Promise((resolve) => setImmediate(resolve))
  }
  while (!done()) await new Promise((resolve) => setTimeout(resolve, 1))
  return EVENTS / ((performance.now() - start) / 1000)
}

async function hostBaseline(): Promise<number> {
  const object = await openLibraryObject('loopgen', { log: () => {} })
  let seen = 0
  let sum = 0
  object.subscribe('events', (batch) => forEachRecord(batch, (view, offset, size) => {
    sum += decodeLoopgenEvent(view, offset, size).seq
    seen++
  }))
  const rate = await produce(object, () => seen === EVENTS)
  await object.close()
  if (sum === 0) throw new Error('the baseline read nothing')
  return rate
}

async function pluginRun(): Promise<number> {
  const opened: LibraryObject[] = []
  const bus = new Bus({ open: async (name, settings) => { const o = await openLibraryObject(name, { settings, log: () => {} }); opened.push(o); return o } })
  const log = memoryLogger()
  const manager = new PluginManager({ bus, sink: new MemorySink(), log, decodersPath, limits: { maxQueuedBytes: 1024 * 1024 * 1024 } })
  const dir = mkdtempSync(path.join(tmpdir(), 'periscope-bench-'))
  const file = path.join(dir, 'seq.ts')
  writeFileSync(file, `import { definePlugin } from 'periscope/plugin'
export default definePlugin({
  name: 'seq',
  objects: ['loopgen'],
  setup(ctx) {
    let sum = 0
    ctx.on('loopgen:events', (ev) => { sum += ev.seq })
    ctx.every('1s', () => { if (sum < 0) ctx.log.info('unreachable') })
  },
})
`)
  try {
    await manager.add(file)
    const object = opened.find((o) => o.name === 'loopgen')
    if (object === undefined) throw new Error(`the plugin did not open loopgen:\n${log.lines.map((l) => l.message).join('\n')}`)
    const handled = () => manager.list()[0]!.stats.handled
    const rate = await produce(object, () => handled() === EVENTS)
    const stats = manager.list()[0]!.stats
    if (stats.dropped !== 0 || object.stats().dropped !== 0) throw new Error(`drops: plugin ${stats.dropped}, kernel ${object.stats().dropped}`)
    return rate
  } finally {
    await manager.close()
    await bus.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

const median = (xs: number[]): number => xs.toSorted((a, b) => a - b)[Math.floor(xs.length / 2)]!
const host: number[] = []
const plugin: number[] = []
for (let round = 0; round < ROUNDS; round++) {
  host.push(await hostBaseline())
  plugin.push(await pluginRun())
}
const m = (x: number) => `${(x / 1e6).toFixed(2)} M/s`
console.log(`kernel → plugin handler: ${m(median(plugin))} (rounds ${plugin.map(m).join(', ')}; target ≥ ${m(TARGET)}) ` +
  `${median(plugin) >= TARGET ? 'met' : 'MISSED'}`)
console.log(`kernel → host reader (baseline, same producer): ${m(median(host))}; ratio ${(median(plugin) / median(host)).toFixed(2)}`)
if (median(plugin) < TARGET) process.exitCode = 1
