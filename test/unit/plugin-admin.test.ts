/** The admin socket: mode 0600, listings, stats, reload by name, streaming a topic. */
import assert from 'node:assert/strict'
import { statSync } from 'node:fs'
import { after, before, describe, it } from 'node:test'
import { type AdminClient, connectAdmin } from '../../runtime/admin/client.ts'
import type { PluginInfo } from '../../runtime/plugins/manager.ts'
import { type Harness, startHarness } from '../plugin-harness.ts'
import { counterPlugin } from '../plugin-fixtures/sources.ts'
import { SyntheticProvider } from '../plugin-fixtures/synthetic.ts'

let h: Harness
let client: AdminClient
const provider = new SyntheticProvider()

describe('admin socket', () => {
  before(async () => {
    h = await startHarness({ provider, plugins: { 'counter.ts': counterPlugin() }, adminSocket: true })
    client = await connectAdmin(h.runtime.admin!.path)
  })
  after(async () => {
    client.close()
    await h.close()
  })

  it('is a socket only its owner can use', () => {
    const stat = statSync(h.runtime.admin!.path)
    assert.ok(stat.isSocket())
    assert.equal(stat.mode & 0o777, 0o600)
  })

  it('lists plugins, objects, maps and links', async () => {
    const plugins = await client.request<PluginInfo[]>('plugins')
    assert.deepEqual(plugins.map((p) => [p.name, p.status, p.topics]), [['counter', 'running', ['gen:events']]])
    const objects = await client.request<{ name: string; users: string[] }[]>('objects')
    assert.deepEqual(objects.map((o) => o.name), ['gen'])
    const maps = await client.request<{ topic: string; listeners: number }[]>('maps')
    assert.deepEqual(maps.map((m) => [m.topic, m.listeners]), [['gen:events', 1]])
    const links = await client.request<{ object: string; id: number }[]>('links')
    assert.deepEqual(links.map((l) => [l.object, l.id]), provider.gen.links().map((l) => ['gen', l.id]))
  })

  it('reports per-plugin stats: events in, handled, dropped, CPU and memory', async () => {
    provider.gen.push('events', 300)
    await h.runtime.manager.whenIdle()
    const stats = await client.request<{ plugins: { name: string; eventsIn: number; handled: number; dropped: number; cpuTimeMs: number; heapBytes: number }[]; process: { rssBytes: number } }>('stats')
    const counter = stats.plugins.find((p) => p.name === 'counter')!
    assert.equal(counter.eventsIn, 300)
    assert.equal(counter.handled, 300)
    assert.equal(counter.dropped, 0)
    assert.ok(counter.cpuTimeMs > 0)
    assert.ok(counter.heapBytes > 0)
    assert.ok(stats.process.rssBytes > 0)
  })

  it('reloads a plugin by name, and says which names exist when one is wrong', async () => {
    const info = await client.request<PluginInfo>('reload', { name: 'counter' })
    assert.equal(info.stats.reloads, 1)
    await assert.rejects(client.request('reload', { name: 'nope' }), /no plugin named 'nope'; loaded plugins: counter/)
  })

  it('streams a subscription as decoded events until unsubscribed', async () => {
    const events: Record<string, unknown>[] = []
    const stop = await client.subscribe('gen:events', (e) => events.push(e))
    provider.gen.push('events', 5)
    await h.waitFor(() => events.length === 5, 'five streamed events')
    const first = Number(events[0]!.seq)
    assert.deepEqual(events.map((e) => e.seq), [0, 1, 2, 3, 4].map((i) => first + i), 'every event, in order, decoded')
    assert.equal(typeof events[0]!.timeNs, 'string', '64-bit integers arrive as decimal strings')
    await stop()
    provider.gen.push('events', 5)
    await h.runtime.manager.whenIdle()
    assert.equal(events.length, 5)
  })

  it('refuses a stream it cannot decode, naming the topics it can', async () => {
    await assert.rejects(client.subscribe('gen:nope', () => {}), /no decoder for 'gen:nope' in .*decoders\.ts; topics with decoders: gen:events, gen:other/)
  })

  it('rejects unknown methods with the list of methods', async () => {
    await assert.rejects(client.request('shutdown'), /unknown method 'shutdown'; methods: plugins/)
  })
})
