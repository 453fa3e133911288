/**
 * Plugin API without the kernel: ctx.on's onLoss for records the runtime dropped for the plugin
 * (its limits, a reload during which no version listened), and ctx.time.wallNs's arithmetic.
 * The kernel's own losses, claims, attach and iterate are tested on the real kernel in
 * test/bpf/plugin-api.test.ts.
 */
import assert from 'node:assert/strict'
import { afterEach, describe, it } from 'node:test'
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { bootToWallOffsetNs } from '../../runtime/bpf/clock.ts'
import { type Harness, startHarness } from '../plugin-harness.ts'
import { SyntheticProvider } from '../plugin-fixtures/synthetic.ts'

const clockModule = fileURLToPath(new URL('../../runtime/bpf/clock.ts', import.meta.url))

let h: Harness | undefined
afterEach(async () => {
  await h?.close()
  h = undefined
})

/**
 * Listens to `topic` with onLoss; reports every 10 ms how many events it saw, and each loss as
 * [events seen before it, records lost] plus the first seq after it.
 */
function lossRecorder(name: string, topic: string, version = 1): string {
  return `import { definePlugin } from 'periscope/plugin'
export default definePlugin({
  name: '${name}',
  objects: ['gen'],
  setup(ctx) {
    const s = ctx.state as { seen?: number; losses?: number[][] }
    s.seen ??= 0
    s.losses ??= []
    let afterLoss = false
    ctx.on('${topic}', (ev) => {
      if (afterLoss) { s.losses!.at(-1)!.push(ev.seq as number); afterLoss = false }
      s.seen! += 1
    }, { onLoss: (lost) => { s.losses!.push([s.seen!, lost]); afterLoss = true } })
    ctx.every('10ms', () => {
      ctx.emit.metric({ name: 'seen', kind: 'gauge', value: s.seen!, attributes: { version: ${version}, losses: JSON.stringify(s.losses) } })
    })
  },
})
`
}

const last = (harness: Harness, name: string) => harness.sink.signals(name).metrics.findLast((m) => m.name === 'seen')

describe('ctx.on onLoss', () => {
  it('reports the records the rate limit dropped before the first event after them, once', async () => {
    const provider = new SyntheticProvider()
    h = await startHarness({
      provider,
      plugins: { 'lossy.ts': lossRecorder('lossy', 'gen:events') },
      config: { plugins: { lossy: { resource_limits: { max_events_per_second: 100 } } } },
    })
    const harness = h
    await harness.waitFor(() => last(harness, 'lossy') !== undefined, 'the plugin to run')
    const rateDropped = () => harness.runtime.manager.list()[0]!.stats.droppedBy.rateLimit
    provider.gen.push('events', 60) // seq 0..59
    provider.gen.push('events', 40) // seq 60..99: the second's 100 are used up
    await harness.waitFor(() => last(harness, 'lossy')?.value === 100, 'the first 100 events')
    provider.gen.push('events', 50) // seq 100..149, dropped whole
    assert.equal(rateDropped(), 50)
    // one record at a time until the next second's window takes one; each refused one is lost too
    let accepted: number | undefined
    while (accepted === undefined) {
      const before = rateDropped()
      const seq = provider.gen.push('events', 1)
      if (rateDropped() === before) accepted = seq
      else await new Promise((resolve) => setTimeout(resolve, 20))
    }
    await harness.waitFor(() => last(harness, 'lossy')?.value === 101, 'the record after the window')
    assert.equal(accepted - 100, rateDropped(), 'every record between was dropped')
    assert.equal(last(harness, 'lossy')!.attributes!.losses, JSON.stringify([[100, accepted - 100, accepted]]))
  })

  it('reports what a stream carried while a reloaded version did not listen to it', async () => {
    const provider = new SyntheticProvider()
    h = await startHarness({ provider, plugins: { 'gap.ts': lossRecorder('gap', 'gen:events', 1) } })
    const harness = h
    await harness.waitFor(() => last(harness, 'gap') !== undefined, 'version 1 to run')
    provider.gen.push('events', 4) // seq 0..3
    await harness.waitFor(() => last(harness, 'gap')?.value === 4, 'version 1\'s 4 events')
    let loaded = harness.nextEvent('loaded', 'gap')
    harness.write('gap.ts', lossRecorder('gap', 'gen:other', 2))
    await loaded
    provider.gen.push('events', 7) // seq 4..10 reach nobody in this plugin
    loaded = harness.nextEvent('loaded', 'gap')
    harness.write('gap.ts', lossRecorder('gap', 'gen:events', 3))
    await loaded
    provider.gen.push('events', 3) // seq 11..13
    await harness.waitFor(() => last(harness, 'gap')?.attributes?.version === 3 && last(harness, 'gap')?.value === 7, 'version 3\'s 3 events')
    assert.equal(last(harness, 'gap')!.attributes!.losses, JSON.stringify([[4, 7, 11]]))
  })

  it('calls onLoss for nothing when nothing was lost', async () => {
    const provider = new SyntheticProvider()
    h = await startHarness({ provider, plugins: { 'calm.ts': lossRecorder('calm', 'gen:events') } })
    const harness = h
    await harness.waitFor(() => last(harness, 'calm') !== undefined, 'the plugin to run')
    for (let i = 0; i < 20; i++) provider.gen.push('events', 50)
    await harness.waitFor(() => last(harness, 'calm')?.value === 1000, 'the 1000 events')
    assert.equal(last(harness, 'calm')!.attributes!.losses, '[]')
  })
})

describe('ctx.time.wallNs', () => {
  it('adds the boot-to-epoch offset the runtime measured, exactly', async () => {
    const provider = new SyntheticProvider()
    h = await startHarness({
      provider,
      plugins: {
        'clock.ts': `import { definePlugin } from 'periscope/plugin'
export default definePlugin({
  name: 'clock',
  setup(ctx) {
    ctx.emit.log({ body: 'wall', attributes: { zero: ctx.time.wallNs(0), second: ctx.time.wallNs(1_000_000_000), odd: ctx.time.wallNs(123_456_789_013) } })
  },
})
`,
      },
    })
    const harness = h
    await harness.waitFor(() => harness.sink.signals('clock').logs.length === 1, 'the log line')
    const offset = bootToWallOffsetNs()
    assert.deepEqual(harness.sink.signals('clock').logs[0]!.attributes, {
      zero: offset, second: 1_000_000_000 + offset, odd: 123_456_789_013 + offset,
    })
  })

  it('turns the boot clock now into the wall clock now, within a millisecond', () => {
    // in a fresh process, which measures the offset at its first use: this one measured it long
    // ago, and the wall clock may have been slewed since (NTP), which the offset does not follow
    const script = `import { bootTimeNs, bootToWallOffsetNs } from ${JSON.stringify(clockModule)}
const before = Date.now()
const wall = Number(bootTimeNs()) + bootToWallOffsetNs()
console.log(JSON.stringify({ before, wall, after: Date.now() }))`
    const { before, wall, after } = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })) as { before: number; wall: number; after: number }
    // Date.now() truncates to the millisecond
    assert.ok(wall >= before * 1e6 && wall < (after + 1) * 1e6, `${wall} is not within [${before}, ${after + 1}) ms`)
  })
})
