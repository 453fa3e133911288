/**
 * The shipped tcp plugin (plugins/tcp.ts) in the plugin runtime over the real tcp object: the
 * increments it emits for a server of the test's own add up to exactly the connections and bytes
 * made, across a hot reload of the plugin (the new version takes the old one's last counts, so it
 * neither repeats nor skips any) and over later collections.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { openLibraryObject } from '../../runtime/library/index.ts'
import type { MetricPointInput } from '../../runtime/telemetry/signals.ts'
import { startHarness, type Harness } from '../plugin-harness.ts'
import { root } from './kernel.ts'
import { exchange, startReplyServer } from './tcp-peers.ts'

const source = readFileSync(join(root, 'plugins/tcp.ts'), 'utf8')
let h: Harness | undefined
after(() => h?.close())

/** The sum of the increments emitted for one counter series. */
function emitted(points: readonly MetricPointInput[], name: string, attributes: Record<string, unknown>): number {
  return points.filter((p) => p.name === name && JSON.stringify(p.attributes) === JSON.stringify(attributes)).reduce((sum, p) => sum + p.value, 0)
}

test('its increments add up to the exact connections and bytes, across a hot reload', async () => {
  h = await startHarness({
    provider: { open: (name, settings) => openLibraryObject(name, { settings, log: () => {} }) },
    decodersPath: join(root, 'bpf/lib/index.types.ts'),
    plugins: { 'tcp.ts': source },
    config: { plugins: { tcp: { config: { collect_interval_ms: 100 } } } },
  })
  const harness = h
  await harness.waitFor(() => harness.log.lines.some((line) => line.message.includes('TCP metrics:')), 'the tcp plugin to start', 30_000)
  const server = await startReplyServer(2000)
  const inbound = { 'tcp.connection.direction': 'inbound', 'network.local.port': server.port }
  const outbound = { 'tcp.connection.direction': 'outbound', 'network.peer.port': server.port }
  const points = () => harness.sink.signals('tcp').metrics
  const totals = () => [
    emitted(points(), 'tcp.connections.opened', inbound), emitted(points(), 'tcp.connections.closed', outbound),
    emitted(points(), 'tcp.io', { ...inbound, 'network.io.direction': 'receive' }), emitted(points(), 'tcp.io', { ...outbound, 'network.io.direction': 'receive' }),
  ]
  try {
    await Promise.all(Array.from({ length: 5 }, () => exchange(server.port, 1000)))
    await harness.waitFor(() => totals().join() === [5, 5, 5000, 10_000].join(), `the first five connections (emitted so far: ${totals()})`, 30_000)

    const loaded = harness.nextEvent('loaded', 'tcp', 30_000)
    harness.write('tcp.ts', `${source}\n// version 2\n`)
    await loaded
    await Promise.all(Array.from({ length: 5 }, () => exchange(server.port, 1000)))
    await harness.waitFor(() => totals().every((total, i) => total >= [10, 10, 10_000, 20_000][i]!), `the next five connections (emitted so far: ${totals()})`, 30_000)
    // a connection to another server shows in a later collection: by then nothing was counted twice
    const marker = await startReplyServer(0)
    await exchange(marker.port, 1)
    await marker.close()
    await harness.waitFor(() => emitted(points(), 'tcp.connections.closed', { 'tcp.connection.direction': 'inbound', 'network.local.port': marker.port }) === 1, 'the marker connection', 30_000)
    assert.deepEqual(totals(), [10, 10, 10_000, 20_000])
  } finally {
    await server.close()
  }
})
