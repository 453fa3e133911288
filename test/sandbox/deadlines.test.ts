/**
 * Every await on plugin code has a deadline: a promise that never settles, from an async setup()
 * or a ctx.every callback, stops that version like any other failure, and can hold up neither a
 * reload nor an unload nor a shutdown.
 */
import assert from 'node:assert/strict'
import { afterEach, describe, it } from 'node:test'
import type { HostEvent } from '../../runtime/plugins/host.ts'
import type { PluginFailure } from '../../runtime/plugins/sandbox.ts'
import { type Harness, startHarness } from '../plugin-harness.ts'
import { counterPlugin, lastCount } from '../plugin-fixtures/sources.ts'
import { SyntheticProvider } from '../plugin-fixtures/synthetic.ts'

type Rejected = Extract<HostEvent, { type: 'rejected' }>
type Failed = Extract<HostEvent, { type: 'failed' }>

let h: Harness | undefined
afterEach(async () => {
  await h?.close()
  h = undefined
})

const hangingSetup = `import { definePlugin } from 'periscope/plugin'
export default definePlugin({
  name: 'hang',
  objects: ['gen'],
  async setup(ctx) {
    await new Promise(() => {})
  },
})
`

/**
 * A plugin whose first timer run never settles. The run first writes `version` into gen:counts
 * (key 0), so the test sees which version's timer is hanging.
 */
function hangingTimer(version: number): string {
  return `import { definePlugin } from 'periscope/plugin'
export default definePlugin({
  name: 'hang',
  objects: ['gen'],
  setup(ctx) {
    const counts = ctx.map('gen:counts')
    ctx.every('10ms', () => {
      void counts.update(new Uint8Array(4), new Uint8Array(8).fill(${version}))
      return new Promise<void>(() => {})
    })
  },
})
`
}

/** The version whose timer wrote last, or undefined. */
const hangingVersion = (provider: SyntheticProvider) => provider.opened.findLast((o) => !o.closed)?.counts.get('00000000')?.[0]

const deadline = (ms: string) => ({ plugins: { hang: { resource_limits: { call_deadline: ms } } } })

/** How long `fn` takes, in milliseconds. */
async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now()
  await fn()
  return performance.now() - start
}

describe('deadlines on plugin code', () => {
  it('an async setup() that never settles is stopped at its deadline and reported', async () => {
    const provider = new SyntheticProvider()
    h = await startHarness({ provider, config: deadline('300ms') })
    const rejected = h.nextEvent('rejected', 'hang') as Promise<Rejected>
    h.write('hang.ts', hangingSetup)
    const event = await rejected
    const failure = event.error as PluginFailure
    assert.equal(failure.kind, 'deadline')
    assert.equal(failure.message, 'plugin hang: setup() did not settle within 300 ms ' +
      '(a promise that never resolves, or an await on something that never comes); it was stopped')
    const hang = h.runtime.manager.list().find((p) => p.name === 'hang')!
    assert.equal(hang.status, 'failed')
    assert.deepEqual(hang.objects, [])
    assert.equal(provider.opened.length, 1)
    assert.equal(provider.opened[0]!.closed, true, 'the object opened for it was closed again')
  })

  it('a ctx.every promise that never settles fails the version, which restarts with backoff', async () => {
    h = await startHarness({ provider: new SyntheticProvider(), config: deadline('200ms'), plugins: { 'hang.ts': hangingTimer(1) } })
    const failed = (await h.nextEvent('failed', 'hang')) as Failed
    assert.equal(failed.failure.kind, 'deadline')
    assert.equal(failed.failure.message, 'plugin hang: the ctx.every callback #1 did not settle within 200 ms ' +
      '(a promise that never resolves, or an await on something that never comes); it was stopped')
    assert.equal(failed.restartInMs, 50)
    await h.nextEvent('loaded', 'hang')
    assert.equal(h.runtime.manager.list()[0]!.stats.restarts, 1)
  })

  it('a reload is not held up by a timer that never settles', async () => {
    const provider = new SyntheticProvider()
    h = await startHarness({ provider, config: deadline('400ms'), plugins: { 'hang.ts': hangingTimer(1) } })
    await h.waitFor(() => hangingVersion(provider) === 1, 'the first timer run to start')
    const loaded = h.nextEvent('loaded', 'hang')
    const took = await timed(async () => {
      h!.write('hang.ts', hangingTimer(2))
      await loaded
    })
    assert.ok(took < 2000, `the reload finished in ${Math.round(took)} ms, within the 400 ms deadline plus a build`)
    await h.waitFor(() => hangingVersion(provider) === 2, 'the new version to run its timer')
    assert.equal(h.runtime.manager.list()[0]!.stats.reloads, 1)
  })

  it('unloading and shutting down end a hung timer and a hung setup() at once, not at the deadline', async () => {
    const provider = new SyntheticProvider()
    // the default deadline (5 s): stopping must not wait for it
    h = await startHarness({ provider, plugins: { 'hang.ts': hangingTimer(1), 'counter.ts': counterPlugin() } })
    const sink = h.sink
    await h.waitFor(() => hangingVersion(provider) === 1, 'the timer to hang')
    h.write('setup-hang.ts', hangingSetup.replace(`name: 'hang'`, `name: 'setup-hang'`))
    // its name is claimed once its bundle ran, right before its objects and setup()
    await h.waitFor(() => h!.runtime.manager.list().some((p) => p.name === 'setup-hang' && p.status === 'starting'), 'the second plugin to reach setup()')
    provider.gen.push('events', 10)
    await h.waitFor(() => lastCount(sink.signals('counter').metrics)?.value === 10, 'the counter to count')
    const { runtime, events } = h
    const took = await timed(() => runtime.close())
    h = undefined
    assert.ok(took < 1500, `shutdown took ${Math.round(took)} ms; it must not wait out the 5000 ms deadline`)
    assert.equal(provider.opened.every((o) => o.closed), true, 'every object was closed')
    // written after the start, so its events all reach the harness
    assert.deepEqual(events.filter((e) => 'plugin' in e && e.plugin === 'setup-hang').map((e) => e.type), ['unloaded'],
      'the hung setup() never became a running version')
  })
})
