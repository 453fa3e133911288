/** The admin socket: mode 0600, listings, stats, reload by name, streaming a topic, bounded requests. */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
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

  it('lists plugins, objects, streams and links', async () => {
    const plugins = await client.request<PluginInfo[]>('plugins')
    assert.deepEqual(plugins.map((p) => [p.name, p.status, p.topics]), [['counter', 'running', ['gen:events']]])
    const objects = await client.request<{ name: string; users: string[] }[]>('objects')
    assert.deepEqual(objects.map((o) => o.name), ['gen'])
    const streams = await client.request<{ topic: string; listeners: number }[]>('streams')
    assert.deepEqual(streams.map((m) => [m.topic, m.listeners]), [['gen:events', 1]])
    const links = await client.request<{ object: string; id: number; program: string; attach: string }[]>('links')
    assert.deepEqual(links, provider.gen.links().map((l) => ({ object: 'gen', ...l })))
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

  it('lists the maps of open objects, and dumps one (as hex without generated codecs)', async () => {
    assert.deepEqual(await client.request('maps'), [{ map: 'gen:events', type: 'stream' }, { map: 'gen:other', type: 'stream' }])
    provider.gen.map('counts').update(Uint8Array.of(1, 0, 0, 0), Uint8Array.of(7, 0, 0, 0, 0, 0, 0, 0))
    assert.deepEqual(await client.request('dump', { topic: 'gen:counts' }), [{ key: '01000000', value: '0700000000000000' }])
    await assert.rejects(client.request('dump', { topic: 'gen:events' }), /'gen:events' is a stream \(a ring or perf buffer\), not a map to read/)
    await assert.rejects(client.request('dump', { topic: 'exec:events' }), /object 'exec' is not open: no plugin uses it.*; open objects: gen /)
  })

  it('loads a plugin by its absolute path', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'periscope-admin-load-'))
    try {
      const file = path.join(dir, 'second.ts')
      writeFileSync(file, counterPlugin('second'))
      await assert.rejects(client.request('load', { file: 'second.ts' }), /load needs params.file, the plugin file's absolute path/)
      const info = await client.request<PluginInfo>('load', { file })
      assert.deepEqual([info.name, info.status, info.file], ['second', 'running', file])
      assert.deepEqual(h.runtime.manager.list().map((p) => p.name).sort(), ['counter', 'second'])
      await h.runtime.manager.remove(file)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
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

  it('rejects unknown methods with the list of methods, Object.prototype names included', async () => {
    await assert.rejects(client.request('shutdown'), /unknown method 'shutdown'; methods: plugins, pluginDirs, objects, streams, links, stats, maps, dump, reload, load, subscribe, unsubscribe$/)
    await assert.rejects(client.request('constructor'), /unknown method 'constructor'/)
    await assert.rejects(client.request('hasOwnProperty'), /unknown method 'hasOwnProperty'/)
  })

  it('answers JSON that is not a request with the expected shape, and keeps serving', async () => {
    const raw = await rawConnection()
    for (const line of ['null', '[]', '5', '{"id":"1","method":"plugins"}', '{"id":1,"method":"plugins","params":[]}', '{not json']) raw.socket.write(`${line}\n`)
    raw.socket.write(`${JSON.stringify({ id: 2, method: 'plugins' })}\n`)
    await h.waitFor(() => raw.lines().length === 7, 'seven answers')
    const answers = raw.lines()
    assert.deepEqual(answers.slice(0, 5).map((a) => a.error), Array(5).fill('a request is an object {"id": <number>, "method": <string>, "params"?: <object>}'))
    assert.equal(answers[5]!.error, 'request is not JSON; send one JSON object per line')
    assert.equal(answers[6]!.id, 2)
    assert.equal((answers[6]!.result as unknown[]).length, 1)
    raw.socket.destroy()
  })

  it('answers a request line of exactly 1 MiB, and closes a connection whose line is longer, saying why', async () => {
    const request = (id: number, bytes: number) => {
      const bare = JSON.stringify({ id, method: 'plugins', params: { pad: '' } })
      return JSON.stringify({ id, method: 'plugins', params: { pad: 'x'.repeat(bytes - bare.length) } })
    }
    const raw = await rawConnection()
    assert.equal(Buffer.byteLength(request(1, 1024 * 1024)), 1024 * 1024)
    raw.socket.write(`${request(1, 1024 * 1024)}\n`)
    await h.waitFor(() => raw.lines().length === 1, 'the answer to the 1 MiB request')
    assert.equal(raw.lines()[0]!.id, 1)
    assert.ok(Array.isArray(raw.lines()[0]!.result))

    // one byte more, never ending: the server stops reading at the limit instead of buffering
    raw.socket.write(request(2, 1024 * 1024 + 1))
    await h.waitFor(() => raw.closed, 'the server to close the connection')
    assert.deepEqual(raw.lines()[1], { id: null, error: 'request line longer than 1048576 bytes; closing the connection' })
    assert.equal(raw.lines().length, 2)
    assert.deepEqual((await client.request<PluginInfo[]>('plugins')).map((p) => p.name), ['counter'], 'other connections are served')
  })
})

/** A connection that keeps every line the server sends, to check the wire itself. */
async function rawConnection() {
  const socket = net.connect(h.runtime.admin!.path)
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject))
  const raw = {
    socket,
    received: '',
    closed: false,
    lines: () => raw.received.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { id: number | null; result?: unknown; error?: string }),
  }
  socket.setEncoding('utf8')
  socket.on('data', (chunk: string) => { raw.received += chunk })
  socket.on('close', () => { raw.closed = true })
  socket.on('error', () => {})
  return raw
}

describe('admin socket, a client gone while its subscription waits for the object to open', () => {
  it('releases the object instead of holding it open for nobody', async () => {
    const inner = new SyntheticProvider()
    let release!: () => void
    const gate = new Promise<void>((resolve) => { release = resolve })
    let asked = false
    const gated = await startHarness({ provider: { open: async (name) => { asked = true; await gate; return inner.open(name) } }, adminSocket: true })
    try {
      const socket = net.connect(gated.runtime.admin!.path)
      await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject))
      socket.write(`${JSON.stringify({ id: 1, method: 'subscribe', params: { topic: 'gen:events' } })}\n`)
      await gated.waitFor(() => asked, 'the object to start opening')
      socket.destroy()
      // a later connection's answer: the server has read the first one's end by then
      const barrier = await connectAdmin(gated.runtime.admin!.path)
      await barrier.request('plugins')
      barrier.close()
      release()
      await gated.waitFor(() => inner.opened.length === 1 && inner.opened[0]!.closed, 'the object to close again')
      assert.deepEqual(gated.runtime.bus.listObjects(), [])
    } finally {
      release()
      await gated.close()
    }
  })
})
