/**
 * Hot reload with a synthetic numbered stream: swaps keep the object open and its stream
 * subscribed, lose no event, carry ctx.state and account for every record; a build error or
 * throwing setup keeps the old version; add and delete load and unload, closing objects nobody
 * uses. That the kernel links survive a reload is proven on the real kernel, in
 * test/bpf/plugins-kernel.test.ts.
 */
import assert from 'node:assert/strict'
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { afterEach, describe, it } from 'node:test'
import { type Harness, startHarness } from '../plugin-harness.ts'
import { counterPlugin, lastCount } from '../plugin-fixtures/sources.ts'
import { SyntheticProvider } from '../plugin-fixtures/synthetic.ts'

let h: Harness | undefined
afterEach(async () => {
  await h?.close()
  h = undefined
})

describe('hot reload', () => {
  it('swaps to the new code with the object kept open, no gap and ctx.state carried over', async () => {
    const provider = new SyntheticProvider()
    h = await startHarness({ provider, plugins: { 'counter.ts': counterPlugin('counter', 1) } })
    let pushed = 0
    // Keep events flowing through the whole swap.
    const pump = setInterval(() => { provider.gen.push('events', 64); pushed += 64 }, 1)
    try {
      await h.waitFor(() => pushed > 2000, 'events before the edit')
      const loaded = h.nextEvent('loaded', 'counter')
      h.write('counter.ts', counterPlugin('counter', 2))
      await loaded
      const after = pushed
      await h.waitFor(() => pushed > after + 2000, 'events after the swap')
    } finally {
      clearInterval(pump)
    }
    const sink = h.sink
    await h.waitFor(() => lastCount(sink.signals('counter').metrics)?.value === pushed, `count to reach ${pushed}`)
    const last = lastCount(sink.signals('counter').metrics)!
    assert.equal(last.attributes!.version, 2, 'the new version is the one counting')
    assert.equal(last.attributes!.gaps, 0, 'no sequence gap across the swap')
    assert.equal(provider.opened.length, 1, 'the object was not reopened')
    assert.equal(provider.gen.closed, false)
    assert.equal(provider.gen.subscribeCalls, 1, 'the stream was never re-subscribed')
    assert.equal(provider.gen.unsubscribeCalls, 0)
    const info = h.runtime.manager.list()[0]!
    assert.equal(info.stats.reloads, 1)
    assert.equal(info.stats.dropped, 0)
  })

  it('does not charge the old versions\' CPU to the new one under max_cpu_percent', async () => {
    const provider = new SyntheticProvider()
    // version 1 spends 300 ms of CPU in setup(), three times the 10% allowed per second
    const slowStart = counterPlugin('counter', 1).replace('setup(ctx) {', 'setup(ctx) {\n    const until = Date.now() + 300\n    while (Date.now() < until) {}')
    h = await startHarness({ provider, plugins: { 'counter.ts': slowStart }, config: { plugins: { counter: { resource_limits: { max_cpu_percent: 10 } } } } })
    const sink = h.sink
    provider.gen.push('events', 100)
    await h.waitFor(() => lastCount(sink.signals('counter').metrics)?.value === 100, 'the first 100 events')
    const loaded = h.nextEvent('loaded', 'counter')
    h.write('counter.ts', counterPlugin('counter', 2))
    await loaded
    provider.gen.push('events', 1000)
    await h.waitFor(() => lastCount(sink.signals('counter').metrics)?.attributes!.version === 2 &&
      lastCount(sink.signals('counter').metrics)?.value === 1100, 'the new version to count all 1100')
    assert.deepEqual(h.runtime.manager.list()[0]!.stats.droppedBy.cpuLimit, 0)
  })

  it('counts the records queued for a topic the new version no longer listens to', async () => {
    const provider = new SyntheticProvider()
    const both = `import { definePlugin } from 'periscope/plugin'
export default definePlugin({
  name: 'both',
  objects: ['gen'],
  setup(ctx) {
    ctx.on('gen:events', () => {})
    ctx.on('gen:other', () => { const until = Date.now() + 100; while (Date.now() < until) {} })
  },
})
`
    h = await startHarness({ provider, plugins: { 'both.ts': both }, config: { plugins: { both: { resource_limits: { batch_budget: '10s' } } } } })
    const stats = () => h!.runtime.manager.list()[0]!.stats
    // 10 records, a second of work: in flight while the rest queue up behind them and the reload
    // builds
    provider.gen.push('other', 10)
    await h.waitFor(() => stats().batchesIn === 1 && stats().queuedBatches === 0, 'the first batch to be in the isolate')
    for (let i = 0; i < 40; i++) provider.gen.push('other', 10)
    const loaded = h.nextEvent('loaded', 'both')
    h.write('both.ts', both.replace(/\n    ctx\.on\('gen:other'.*\n/, '\n'))
    await loaded
    await h.runtime.manager.whenIdle()
    assert.equal(stats().eventsIn, 410)
    assert.equal(stats().handled, 10, 'the batch in flight at the swap was handled')
    assert.equal(stats().droppedBy.unsubscribed, 400, 'the 400 queued behind it were counted')
    assert.equal(stats().dropped, 400)
  })


  it('keeps the old version running on a syntax error and reports file:line', async () => {
    const provider = new SyntheticProvider()
    h = await startHarness({ provider, plugins: { 'counter.ts': counterPlugin('counter', 1) } })
    const rejected = h.nextEvent('rejected')
    h.write('counter.ts', `import { definePlugin } from 'periscope/plugin'\nexport default definePlugin({\n  name: 'counter',\n  setup(ctx) { const = 1 },\n})\n`)
    const event = await rejected
    assert.match((event as { error: Error }).error.message, /counter\.ts:4:\d+: /)
    assert.ok(h.log.lines.some((l) => /counter\.ts:4:\d+/.test(l.message) && /previous version of counter keeps running/.test(l.message)))
    provider.gen.push('events', 500)
    const sink = h.sink
    await h.waitFor(() => lastCount(sink.signals('counter').metrics)?.value === 500, 'the old version to count')
    assert.equal(lastCount(sink.signals('counter').metrics)!.attributes!.version, 1)
  })

  it('keeps the old version when the new setup() throws, with the .ts line', async () => {
    const provider = new SyntheticProvider()
    h = await startHarness({ provider, plugins: { 'counter.ts': counterPlugin('counter', 1) } })
    provider.gen.push('events', 100)
    const rejected = h.nextEvent('rejected')
    h.write('counter.ts', `import { definePlugin } from 'periscope/plugin'\nexport default definePlugin({\n  name: 'counter',\n  objects: ['gen'],\n  setup(ctx) {\n    throw new RangeError('bad setup')\n  },\n})\n`)
    const event = (await rejected) as unknown as { error: Error & { pluginStack: string } }
    assert.match(event.error.message, /RangeError: bad setup/)
    assert.match(event.error.pluginStack, /counter\.ts:6:\d+/)
    provider.gen.push('events', 100)
    const sink = h.sink
    await h.waitFor(() => lastCount(sink.signals('counter').metrics)?.value === 200, 'the old version to keep counting, state intact')
    assert.equal(h.runtime.manager.list()[0]!.status, 'running')
    assert.equal(provider.opened.length, 1)
    assert.equal(provider.gen.closed, false)
  })

  it('loads an added file and unloads a deleted one, closing objects nobody uses', async () => {
    const provider = new SyntheticProvider()
    h = await startHarness({ provider, plugins: { 'a.ts': counterPlugin('a') } })
    const loaded = h.nextEvent('loaded', 'b')
    h.write('b.ts', counterPlugin('b'))
    await loaded
    assert.deepEqual(h.runtime.manager.list().map((p) => p.name).sort(), ['a', 'b'])
    assert.deepEqual(h.runtime.bus.listObjects()[0]!.users.length, 2)
    let unloaded = h.nextEvent('unloaded', 'a')
    h.remove('a.ts')
    await unloaded
    assert.equal(provider.gen.closed, false, 'b still uses gen')
    unloaded = h.nextEvent('unloaded', 'b')
    h.remove('b.ts')
    await unloaded
    await h.waitFor(() => provider.opened[0]!.closed, 'gen to close')
    assert.equal(h.runtime.bus.listObjects().length, 0)
    assert.equal(h.runtime.manager.list().length, 0)
  })

  it('rebuilds a plugin when a helper module it imports changes', async () => {
    const provider = new SyntheticProvider()
    h = await startHarness({ provider })
    mkdirSync(path.join(h.dir, 'lib'))
    writeFileSync(path.join(h.dir, 'lib', 'label.ts'), `export const label = 'one'\n`)
    const source = `import { definePlugin } from 'periscope/plugin'
import { label } from './lib/label.ts'
export default definePlugin({ name: 'helper', setup(ctx) { ctx.emit.log({ body: label }) } })
`
    let loaded = h.nextEvent('loaded', 'helper')
    h.write('helper.ts', source)
    await loaded
    loaded = h.nextEvent('loaded', 'helper')
    writeFileSync(path.join(h.dir, 'lib', 'label.ts'), `export const label = 'two'\n`)
    await loaded
    assert.deepEqual(h.sink.signals('helper').logs.map((l) => l.body), ['one', 'two'])
    assert.equal(h.runtime.manager.list().length, 1, 'the helper is not loaded as a plugin')
  })

  it('refuses a second file using a name already taken', async () => {
    const provider = new SyntheticProvider()
    h = await startHarness({ provider, plugins: { 'a.ts': counterPlugin('same') } })
    const rejected = h.nextEvent('rejected')
    h.write('b.ts', counterPlugin('same'))
    assert.match(((await rejected) as { error: Error }).error.message, /plugin name 'same' is already used by another file/)
  })

  it('passes config overrides and skips disabled plugins', async () => {
    const provider = new SyntheticProvider()
    const configured = `import { definePlugin } from 'periscope/plugin'
export default definePlugin({ name: 'configured', config: { threshold: 10, mode: 'a' }, setup(ctx) { ctx.emit.log({ body: JSON.stringify(ctx.config) }) } })
`
    h = await startHarness({
      provider,
      plugins: { 'configured.ts': configured, 'off.ts': counterPlugin('off') },
      config: { plugins: { configured: { config: { threshold: 25 }, target_pids: [42] }, off: { enabled: false } } },
    })
    assert.deepEqual(JSON.parse(h.sink.signals('configured').logs[0]!.body as string), { threshold: 25, mode: 'a', target_pids: [42] })
    const off = h.runtime.manager.list().find((p) => p.file.endsWith('off.ts'))!
    assert.equal(off.status, 'disabled')
    assert.equal(provider.opened.length, 0, 'a disabled plugin opens no object')
  })
})
