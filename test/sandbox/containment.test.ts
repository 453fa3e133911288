/**
 * Hostile plugins (throwing, looping, memory bomb, emit flood, rejected promise) are stopped,
 * reported with a source-mapped stack and restarted with backoff, while a well-behaved plugin on
 * the same stream keeps counting every event.
 */
import assert from 'node:assert/strict'
import { afterEach, describe, it } from 'node:test'
import type { HostEvent } from '../../runtime/plugins/host.ts'
import type { PluginFailure } from '../../runtime/plugins/sandbox.ts'
import { type Harness, startHarness } from '../plugin-harness.ts'
import { counterPlugin, handlerPlugin, lastCount } from '../plugin-fixtures/sources.ts'
import { SyntheticProvider } from '../plugin-fixtures/synthetic.ts'

type Failed = Extract<HostEvent, { type: 'failed' }>
let h: Harness | undefined

afterEach(async () => {
  await h?.close()
  h = undefined
})

/**
 * Starts `counter` and `hostile`, pushes batches until `hostile` has failed `failures` times, then
 * checks that counter saw every event without a gap.
 */
async function contain(hostile: string, failures: number, config = {}): Promise<Failed[]> {
  const provider = new SyntheticProvider()
  h = await startHarness({
    provider,
    plugins: { 'counter.ts': counterPlugin(), 'hostile.ts': hostile },
    config,
    backoffMs: 20,
  })
  const seen: Failed[] = []
  h.runtime.manager.on('failed', (e: Failed) => { if (e.plugin === 'hostile') seen.push(e) })
  let pushed = 0
  const deadline = Date.now() + 20_000
  while (seen.length < failures) {
    assert.ok(Date.now() < deadline, `hostile failed ${seen.length} of ${failures} times before the deadline`)
    provider.gen.push('events', 256)
    pushed += 256
    await new Promise((r) => setTimeout(r, 10))
  }
  const sink = h.sink
  await h.waitFor(() => lastCount(sink.signals('counter').metrics)?.value === pushed, `counter to reach ${pushed}`)
  assert.equal(lastCount(sink.signals('counter').metrics)!.attributes!.gaps, 0, 'counter saw no gap')
  const counter = h.runtime.manager.list().find((p) => p.name === 'counter')!
  assert.equal(counter.status, 'running')
  assert.equal(counter.stats.restarts, 0)
  return seen
}

describe('containment', () => {
  it('a handler that throws is stopped with its .ts line, restarted with growing backoff', async () => {
    const failures = await contain(handlerPlugin('hostile', `if (ev.seq >= 0) { throw new Error('boom at ' + ev.seq) }`), 3)
    assert.equal(failures[0]!.failure.kind, 'throw')
    assert.match(failures[0]!.failure.message, /plugin hostile: Error: boom at \d+/)
    // line 8 of hostile.ts is the handler body (handlerPlugin puts it there)
    assert.match(failures[0]!.failure.pluginStack, /hostile\.ts:8:\d+/)
    assert.deepEqual(failures.slice(0, 3).map((f) => f.restartInMs), [20, 40, 80])
    assert.ok(h!.log.lines.some((l) => l.level === 'error' && /hostile\.ts:8:\d+/.test(l.message)), 'the log shows the .ts line')
    const hostile = h!.runtime.manager.list().find((p) => p.name === 'hostile')!
    assert.ok(hostile.stats.restarts >= 2, `restarted ${hostile.stats.restarts} times`)
    assert.ok(hostile.stats.droppedBy.failure > 0)
  })

  it('an endless loop is stopped by the per-batch time budget', async () => {
    const failures = await contain(handlerPlugin('hostile', `for (;;) {}`), 2,
      { plugins: { hostile: { resource_limits: { batch_budget: '50ms' } } } })
    assert.equal(failures[0]!.failure.kind, 'time-budget')
    assert.equal(failures[0]!.failure.message,
      'plugin hostile: exceeded its time budget for one call (an endless loop, or too much work per batch); it was stopped')
  })

  it('a crash-looping plugin deleted in the middle of a restart stays deleted', async () => {
    const provider = new SyntheticProvider()
    // setup() counts its runs in gen:counts; every run after the first spins, then throws
    const crash = `import { definePlugin } from 'periscope/plugin'
export default definePlugin({
  name: 'crash',
  objects: ['gen'],
  async setup(ctx) {
    const runs = ctx.map('gen:counts')
    const n = (await runs.lookup(new Uint8Array(4)))?.[0] ?? 0
    await runs.update(new Uint8Array(4), new Uint8Array(8).fill(n + 1))
    if (n === 0) { ctx.every('10ms', () => { throw new Error('crash') }); return }
    const until = Date.now() + 300
    while (Date.now() < until) {}
    throw new Error('setup crash ' + n)
  },
})
`
    h = await startHarness({ provider, plugins: { 'crash.ts': crash }, backoffMs: 20 })
    const runs = () => provider.opened[0]!.counts.get('00000000')?.[0] ?? 0
    await h.waitFor(() => runs() >= 3, 'the second restart to be in its setup()')
    const unloaded = h.nextEvent('unloaded', 'crash')
    h.remove('crash.ts')
    await unloaded
    const runsAtStop = runs()
    const linesAtStop = h.log.lines.length
    const eventsAtStop = h.events.length
    // the longest backoff so far is 80 ms: a restart that survived stop() would run within this
    await new Promise((resolve) => setTimeout(resolve, 800))
    assert.equal(runs(), runsAtStop, 'no setup() ran after the unload')
    assert.deepEqual(h.log.lines.slice(linesAtStop).map((l) => l.message).filter((m) => !/: unloaded \(/.test(m)), [], 'nothing tried to restart it')
    assert.deepEqual(h.events.slice(eventsAtStop), [])
    assert.deepEqual(h.runtime.manager.list(), [])
    assert.equal(provider.opened.every((o) => o.closed), true, 'no object is held for the deleted plugin')
    assert.deepEqual(h.runtime.bus.listObjects(), [])
  })

  it('by default an isolate gets 64 MB of heap and 1 s of wall time per call', async () => {
    const provider = new SyntheticProvider()
    h = await startHarness({ provider, backoffMs: 60_000 })
    // arrays of doubles, 8 MB each, kept alive in ctx.state
    const hoard = (name: string, arrays: number) => `import { definePlugin } from 'periscope/plugin'
export default definePlugin({
  name: '${name}',
  setup(ctx) {
    const kept: number[][] = []
    for (let i = 0; i < ${arrays}; i++) kept.push(new Array(1_000_000).fill(i + 0.5))
    ctx.state.kept = kept
    ctx.emit.log({ body: 'holding ' + kept.length * 8 + ' MB' })
  },
})
`
    const fits = h.nextEvent('loaded', 'fits')
    h.write('fits.ts', hoard('fits', 5))
    await fits
    assert.equal(h.sink.signals('fits').logs[0]!.body, 'holding 40 MB')
    const rejected = h.nextEvent('rejected', 'hog') as Promise<Extract<HostEvent, { type: 'rejected' }>>
    h.write('hog.ts', hoard('hog', 10))
    assert.equal(((await rejected).error as PluginFailure).kind, 'memory', '80 MB does not fit')

    const spin = (name: string, ms: number) => handlerPlugin(name, `const until = Date.now() + ${ms}; while (Date.now() < until) {}`)
    const loaded = [h.nextEvent('loaded', 'spin700'), h.nextEvent('loaded', 'spin1500')]
    h.write('spin700.ts', spin('spin700', 700))
    h.write('spin1500.ts', spin('spin1500', 1500))
    await Promise.all(loaded)
    const failed = h.nextEvent('failed', 'spin1500') as Promise<Failed>
    provider.gen.push('events', 1)
    assert.equal((await failed).failure.kind, 'time-budget')
    await h.waitFor(() => h!.runtime.manager.list().find((p) => p.name === 'spin700')!.stats.handled === 1, 'spin700 to handle its event')
    assert.equal(h.runtime.manager.list().find((p) => p.name === 'spin700')!.status, 'running')
  })

  it('reading a plugin\'s stats does not wait for a long call in its isolate', async () => {
    const provider = new SyntheticProvider()
    h = await startHarness({ provider, plugins: { 'slow.ts': handlerPlugin('slow', `const until = Date.now() + 800; while (Date.now() < until) {}`) } })
    const stats = () => h!.runtime.manager.list()[0]!.stats
    provider.gen.push('events', 1)
    await h.waitFor(() => stats().queuedBatches === 0, 'the batch to be in the isolate')
    const start = performance.now()
    const during = stats()
    const took = performance.now() - start
    assert.equal(during.handled, 0, 'the call was still running')
    assert.ok(took < 200, `stats took ${Math.round(took)} ms; they must not wait for the 800 ms call`)
    assert.ok(during.heapBytes > 100_000, `the heap as last measured (${during.heapBytes})`)
  })

  it('a memory bomb hits the isolate memory limit', async () => {
    const failures = await contain(handlerPlugin('hostile', `const hoard: number[][] = (globalThis as any).hoard ??= []; for (;;) hoard.push(new Array(100000).fill(ev.seq))`), 2,
      { plugins: { hostile: { resource_limits: { max_memory_mb: 16, batch_budget: '10s' } } } })
    assert.equal(failures[0]!.failure.kind, 'memory')
    assert.match(failures[0]!.failure.message, /out of memory/)
  })

  it('an emit flood is stopped even when the plugin catches the error', async () => {
    const failures = await contain(handlerPlugin('hostile',
      `try { for (;;) ctx.emit.metric({ name: 'flood', kind: 'counter', value: 1 }) } catch { /* hide it */ }`), 2)
    assert.equal(failures[0]!.failure.kind, 'emit-flood')
    assert.match(failures[0]!.failure.message, /emitted more than 100000/)
    assert.equal(h!.sink.signals('hostile').metrics.length, 0, 'nothing of the flood was exported')
  })

  it('a rejected promise from an async handler counts as a failure', async () => {
    const failures = await contain(handlerPlugin('hostile', `return Promise.reject(new Error('late ' + ev.seq))`), 1)
    assert.equal(failures[0]!.failure.kind, 'throw')
    assert.match(failures[0]!.failure.message, /asynchronous failure: late \d+/)
    assert.match(failures[0]!.failure.pluginStack, /hostile\.ts:8:\d+/)
  })

  it('a throwing timer is a failure too', async () => {
    const failures = await contain(handlerPlugin('hostile', ``, `ctx.every('15ms', () => { throw new TypeError('timer broke') })`), 1)
    assert.match(failures[0]!.failure.message, /TypeError: timer broke/)
    assert.match(failures[0]!.failure.pluginStack, /hostile\.ts:6:\d+/)
  })
})
