/**
 * The runtime registers per-object and per-plugin self-metrics with a sink that takes them, and the
 * totals survive close() for the exporter's final collection.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import { parseConfig } from '../../runtime/config/index.ts'
import { memoryLogger } from '../../runtime/plugins/log.ts'
import { MemorySink } from '../../runtime/plugins/sink.ts'
import { startRuntime } from '../../runtime/run.ts'
import type { SelfMetricPoint } from '../../runtime/telemetry/metrics.ts'
import { fixtureDecoders } from '../plugin-harness.ts'
import { counterPlugin } from '../plugin-fixtures/sources.ts'
import { SyntheticProvider } from '../plugin-fixtures/synthetic.ts'

/** name → [attributes, value] pairs, for exact comparison. */
function table(points: SelfMetricPoint[], name: string): [Record<string, unknown>, number][] {
  return points.filter((p) => p.name === name).map((p) => [{ ...p.attributes }, p.value])
}

test('events received and dropped per object, handled and dropped per plugin by reason, plugin CPU and memory', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'periscope-self-metrics-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(path.join(dir, 'counter.ts'), counterPlugin())
  const sources = new Map<string, () => SelfMetricPoint[]>()
  const sink = Object.assign(new MemorySink(), {
    registerSelfMetrics(source: string, collect: () => SelfMetricPoint[]) {
      sources.set(source, collect)
      return () => { sources.delete(source) }
    },
  })
  const collect = () => [...sources.values()].flatMap((read) => read())
  const provider = new SyntheticProvider()
  const log = memoryLogger()
  const runtime = await startRuntime({
    provider,
    sink,
    log,
    pluginDirs: [dir],
    // a rate limit of 10 per second makes the second batch a counted drop
    config: parseConfig({ plugins: { counter: { resource_limits: { max_events_per_second: 10 } } } }),
    decodersPath: fixtureDecoders,
    adminSocket: false,
    keepCapabilities: true,
  })
  let closed = false
  t.after(async () => { if (!closed) await runtime.close() })
  assert.equal(runtime.manager.list()[0]?.status, 'running', log.lines.map((l) => l.message).join('\n'))

  provider.gen.push('events', 5)
  await runtime.manager.whenIdle()
  provider.gen.push('events', 20)
  await runtime.manager.whenIdle()

  const live = collect()
  assert.deepEqual(table(live, 'periscope.bpf.events.received'), [[{ 'bpf.object': 'gen' }, 25]])
  assert.deepEqual(table(live, 'periscope.bpf.events.dropped'), [[{ 'bpf.object': 'gen' }, 0]])
  assert.deepEqual(table(live, 'periscope.plugin.events.handled'), [[{ plugin: 'counter' }, 5]])
  assert.deepEqual(table(live, 'periscope.plugin.events.dropped'), [
    [{ plugin: 'counter', reason: 'queue_full' }, 0],
    [{ plugin: 'counter', reason: 'rate_limit' }, 20],
    [{ plugin: 'counter', reason: 'cpu_limit' }, 0],
    [{ plugin: 'counter', reason: 'failure' }, 0],
    [{ plugin: 'counter', reason: 'unsubscribed' }, 0],
    [{ plugin: 'counter', reason: 'shutdown' }, 0],
  ])
  const [[cpuAttributes, cpuSeconds]] = table(live, 'periscope.plugin.cpu.time')
  assert.deepEqual(cpuAttributes, { plugin: 'counter' })
  assert.ok(cpuSeconds > 0 && cpuSeconds < 10, `plugin CPU time in seconds, got ${cpuSeconds}`)
  const [[, heapBytes]] = table(live, 'periscope.plugin.memory.usage')
  assert.ok(heapBytes > 100_000, `the isolate's heap in bytes, got ${heapBytes}`)
  for (const point of live) {
    assert.ok(point.unit !== undefined && point.description !== undefined, `${point.name} has a unit and a description`)
  }

  closed = true
  await runtime.close()
  assert.equal(provider.opened[0]?.closed, true)
  const final = collect()
  assert.deepEqual(table(final, 'periscope.bpf.events.received'), [[{ 'bpf.object': 'gen' }, 25]], 'the totals outlive the closed object')
  assert.deepEqual(table(final, 'periscope.plugin.events.handled'), [[{ plugin: 'counter' }, 5]], 'the totals outlive the stopped plugin')
  assert.deepEqual(table(final, 'periscope.plugin.events.dropped').map(([, v]) => v), [0, 20, 0, 0, 0, 0])
})

test('a sink without registerSelfMetrics (MemorySink) runs the runtime as before', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'periscope-self-metrics-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(path.join(dir, 'counter.ts'), counterPlugin())
  const provider = new SyntheticProvider()
  const sink = new MemorySink()
  const runtime = await startRuntime({ provider, sink, log: memoryLogger(), pluginDirs: [dir], decodersPath: fixtureDecoders, adminSocket: false, keepCapabilities: true })
  provider.gen.push('events', 3)
  await runtime.manager.whenIdle()
  assert.equal(runtime.manager.list()[0]?.stats.handled, 3)
  await runtime.close()
})
