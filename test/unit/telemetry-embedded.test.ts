// The embedded default (no endpoint): OTLP JSON lines under the data dir in the Collector file
// exporter's format, rotated by size. The Prometheus endpoint is tested in
// test/e2e/telemetry-prometheus.test.ts, against Debian's promtool and Prometheus server.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { createTelemetry } from '../../runtime/telemetry/index.ts'
import { attributesOf, flatten, freePort } from '../peers/otelcol.ts'
import { scratchDir } from '../peers/scratch-dir.ts'

const T0 = 1_767_225_600_000_000_000

async function jsonLines(path: string): Promise<Record<string, unknown>[]> {
  const text = await readFile(path, 'utf8')
  assert.ok(text.endsWith('\n'), `${path} ends with a complete line`)
  return text.trimEnd().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>)
}

test('with no endpoint, every signal lands under the data dir as OTLP JSON lines', async () => {
  const dataDir = scratchDir('periscope-embedded-')
  const telemetry = await createTelemetry({
    config: { dataDir, prometheus: { port: await freePort() } },
    env: { OTEL_SERVICE_NAME: 'embedded-test' },
    log: () => {},
  })
  const scope = telemetry.scope('tcp', '2.0.0')
  scope.spans([{ name: 'connect', kind: 'client', startTimeNs: T0, endTimeNs: T0 + 4096, attributes: { 'server.port': 5432 }, process: { pid: 31, executablePath: '/usr/lib/postgresql/16/bin/postgres' } }])
  scope.metrics([{ name: 'tcp.retransmits', kind: 'counter', value: 9, attributes: { 'network.peer.port': 443 } }])
  scope.logs([{ body: 'setuid(0)', severity: 'warn', eventName: 'process.setuid', timeNs: T0 }])
  await telemetry.shutdown(3000)

  assert.deepEqual((await readdir(dataDir)).sort(), ['logs.jsonl', 'metrics.jsonl', 'traces.jsonl'])
  const spans = flatten('traces', await jsonLines(join(dataDir, 'traces.jsonl')))
  assert.equal(spans.length, 1)
  assert.equal(spans[0].item.name, 'connect')
  assert.equal(spans[0].item.kind, 3)
  assert.equal(spans[0].item.startTimeUnixNano, BigInt(T0).toString())
  assert.equal(spans[0].item.endTimeUnixNano, BigInt(T0 + 4096).toString())
  assert.match(spans[0].item.traceId as string, /^[0-9a-f]{32}$/, 'ids are hex, as the file exporter writes them')
  assert.deepEqual(attributesOf(spans[0].item.attributes), { 'server.port': 5432 })
  assert.equal(spans[0].resource['service.name'], 'postgres')
  assert.equal(spans[0].resource['collection.method'], 'ebpf')

  const metrics = flatten('metrics', await jsonLines(join(dataDir, 'metrics.jsonl')))
  const retransmits = metrics.find((m) => m.item.name === 'tcp.retransmits')
  assert.ok(retransmits !== undefined)
  assert.deepEqual(retransmits.scope, { name: 'tcp', version: '2.0.0' })
  assert.equal(retransmits.resource['service.name'], 'embedded-test')
  const [point] = (retransmits.item.sum as { dataPoints: { asDouble?: number; asInt?: number; attributes: unknown }[] }).dataPoints
  assert.equal(Number(point.asDouble ?? point.asInt), 9)
  assert.deepEqual(attributesOf(point.attributes), { 'network.peer.port': 443 })

  const logs = flatten('logs', await jsonLines(join(dataDir, 'logs.jsonl')))
  assert.deepEqual(
    logs.map((l) => [l.item.body, l.item.severityText, l.item.eventName, l.item.timeUnixNano]),
    [[{ stringValue: 'setuid(0)' }, 'WARN', 'process.setuid', BigInt(T0).toString()]],
  )
})

test('JSON lines files rotate by size and keep a bounded number of rotated files', async () => {
  const dataDir = scratchDir('periscope-rotation-')
  const telemetry = await createTelemetry({
    config: { dataDir, rotation: { maxBytes: 4000, maxFiles: 2 }, prometheus: { enabled: false }, batch: { maxSize: 5 } },
    env: {},
    log: () => {},
  })
  const scope = telemetry.scope('rot')
  for (let i = 0; i < 40; i++) {
    scope.spans(Array.from({ length: 5 }, (_, j) => ({ name: `span-${i * 5 + j}`, startTimeNs: T0, endTimeNs: T0 + 1 })))
    await telemetry.flush(2000)
  }
  await telemetry.shutdown(2000)
  const files = (await readdir(dataDir)).filter((name) => name.startsWith('traces')).sort()
  const rotated = files.filter((name) => name !== 'traces.jsonl')
  assert.equal(rotated.length, 2, `two rotated files kept: ${files.join(', ')}`)
  for (const name of rotated) assert.match(name, /^traces-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3}(\.\d+)?\.jsonl$/)
  let newest = ''
  for (const name of files) {
    const text = await readFile(join(dataDir, name), 'utf8')
    assert.ok(Buffer.byteLength(text) <= 4000, `${name} is within the size limit`)
    for (const line of text.trimEnd().split('\n')) JSON.parse(line)
    if (name === 'traces.jsonl') newest = text
  }
  assert.ok(newest.includes('"span-199"'), 'the live file holds the newest spans')
})
