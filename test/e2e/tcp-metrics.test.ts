// The tcp plugin end to end: `periscope run` with only it, exporting to a real Collector, while
// this test makes known TCP traffic. Ten loopback connections to a server of the test's own, each
// sending 5000 bytes and receiving 20000, give exactly ten opened and ten closed at each end and
// exactly those bytes received, an RTT histogram of ten observations per end in the kernel's
// buckets, and the same totals collections later (nothing counted twice). A client in a network
// namespace of the test's own, over a veth pair that loses packets, gives retransmits.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { after, before, describe, it } from 'node:test'
import { attributesOf, counterTotal, flatten, startCollector, type Collector } from '../peers/otelcol.ts'
import { startPeriscope, type Periscope } from '../peers/periscope.ts'
import { pollUntil } from '../peers/poll.ts'
import { VethLink } from '../peers/netns.ts'
import { TCP_RTT_BOUNDARIES_S } from '../../runtime/protocols/tcp.ts'
import { exchange, startReplyServer } from '../bpf/tcp-peers.ts'

type Json = Record<string, unknown>

const CONNECTIONS = 10
const REQUEST = 5000
const REPLY = 20_000

/** The latest cumulative histogram point of the series with exactly these attributes. */
function latestHistogram(lines: readonly Json[], name: string, attributes: Record<string, unknown>): Json | undefined {
  let latest: Json | undefined
  for (const { item, scope } of flatten('metrics', lines)) {
    if (item.name !== name || scope.name !== 'tcp') continue
    for (const point of (item.histogram as Json).dataPoints as Json[]) {
      if (JSON.stringify(attributesOf(point.attributes)) === JSON.stringify(attributes)) latest = point
    }
  }
  return latest
}

describe('TCP metrics through a real Collector', { timeout: 600_000 }, () => {
  let collector: Collector
  let periscope: Periscope

  before(async () => {
    collector = await startCollector()
    periscope = await startPeriscope({
      endpoint: collector.httpEndpoint,
      shipped: ['tcp'],
      ready: /running 1 of \d+ plugins/,
      config: { plugins: { tcp: { config: { collect_interval_ms: 500 } } }, exporter: { metrics: { intervalMs: 500 } } },
    })
    await periscope.waitForOutput(/plugin tcp: TCP metrics/, 'the tcp plugin to start')
  })

  after(async () => {
    await periscope?.stop()
    await collector?.stop()
  })

  it('counts known loopback connections exactly: opened, closed, bytes received, RTTs, and never twice', async () => {
    const server = await startReplyServer(REPLY)
    const port = server.port
    try {
      const replies = await Promise.all(Array.from({ length: CONNECTIONS }, () => exchange(port, REQUEST)))
      assert.deepEqual(replies, Array(CONNECTIONS).fill(REPLY))
    } finally {
      await server.close()
    }
    const inbound = { 'tcp.connection.direction': 'inbound', 'network.local.port': port }
    const outbound = { 'tcp.connection.direction': 'outbound', 'network.peer.port': port }
    const expected = [
      ['tcp.connections.opened', inbound, CONNECTIONS], ['tcp.connections.closed', inbound, CONNECTIONS],
      ['tcp.connections.opened', outbound, CONNECTIONS], ['tcp.connections.closed', outbound, CONNECTIONS],
      ['tcp.io', { ...inbound, 'network.io.direction': 'receive' }, CONNECTIONS * REQUEST],
      ['tcp.io', { ...outbound, 'network.io.direction': 'receive' }, CONNECTIONS * REPLY],
    ] as const
    const totals = (lines: readonly Json[]) => expected.map(([name, match]) => counterTotal(lines, name, match, 'tcp'))
    let lines: Json[] = []
    await pollUntil(async () => {
      lines = await collector.read('metrics')
      return totals(lines).every((total, i) => total >= expected[i]![2])
    }, { what: 'the connections and bytes in the Collector', timeoutMs: 60_000, intervalMs: 200, details: () => `totals so far: ${totals(lines).join(', ')}` })
    assert.deepEqual(totals(lines), expected.map(([, , value]) => value))

    for (const attributes of [inbound, outbound]) {
      const rtt = latestHistogram(lines, 'tcp.rtt', attributes)!
      assert.ok(rtt !== undefined, `a tcp.rtt histogram for ${JSON.stringify(attributes)}`)
      assert.equal(Number(rtt.count), CONNECTIONS)
      assert.deepEqual((rtt.explicitBounds as number[]).map(Number), TCP_RTT_BOUNDARIES_S)
      assert.equal((rtt.bucketCounts as string[]).map(Number).reduce((a, b) => a + b, 0), CONNECTIONS)
      // loopback RTTs are below 1 s even on a loaded machine
      assert.ok(Number(rtt.sum) > 0 && Number(rtt.sum) < CONNECTIONS, `RTT sum ${rtt.sum} s`)
    }

    // four more exports later, the cumulative totals have not moved
    const exportsSoFar = lines.length
    await collector.waitFor('metrics', (later) => later.length >= exportsSoFar + 4, 30_000)
    assert.deepEqual(totals(await collector.read('metrics')), expected.map(([, , value]) => value))
  })

  it('counts retransmits on a lossy veth pair between two network namespaces', async (t) => {
    const link = await VethLink.create({ lossPercent: 10 })
    t.after(() => link.remove())
    t.diagnostic(`loss induced by ${link.lossBy}${link.lossBy === 'xdp' ? ' (this kernel has no sch_netem)' : ''}`)
    const server = link.spawn('b', process.execPath, ['-e', `
      const server = require('node:net').createServer((socket) => { socket.resume(); socket.on('end', () => socket.end(() => server.close())) })
      server.listen(0, process.argv[1], () => console.log(server.address().port))
    `, link.addressB])
    let serverOut = ''
    server.stdout!.on('data', (chunk) => { serverOut += chunk })
    await pollUntil(() => /^\d+\n/.test(serverOut), { what: 'the server in namespace b to listen', timeoutMs: 30_000 })
    const port = Number(serverOut.trim())
    const client = link.spawn('a', process.execPath, ['-e', `
      const socket = require('node:net').connect({ host: process.argv[1], port: Number(process.argv[2]) }, () => socket.end(Buffer.alloc(2 * 1024 * 1024)))
      socket.resume()
    `, link.addressB, String(port)])
    const [code] = await once(client, 'exit')
    assert.equal(code, 0)
    const outbound = { 'tcp.connection.direction': 'outbound', 'network.peer.port': port }
    let lines: Json[] = []
    await pollUntil(async () => {
      lines = await collector.read('metrics')
      return counterTotal(lines, 'tcp.connections.closed', outbound, 'tcp') === 1 && counterTotal(lines, 'tcp.retransmits', outbound, 'tcp') > 0
    }, { what: 'the client\'s retransmits in the Collector', timeoutMs: 60_000, intervalMs: 200, details: () => `retransmits: ${counterTotal(lines, 'tcp.retransmits', outbound, 'tcp')}` })
    assert.equal(counterTotal(lines, 'tcp.io', { 'tcp.connection.direction': 'inbound', 'network.local.port': port, 'network.io.direction': 'receive' }, 'tcp'), 2 * 1024 * 1024)
  })
})
