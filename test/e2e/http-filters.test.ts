// The receiver block's trace filters and sampling, and redaction, end to end: `periscope run` with
// the shipped plugins and a seed-shaped `receiver` block, Debian's nginx, real curl, a real
// Collector. Filters and sampling decide which spans are exported; the RED metrics still count
// every request; secrets never leave.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { attributesOf, flatten, startCollector, type Collector } from '../peers/otelcol.ts'
import { startNginx, type Nginx } from '../peers/nginx.ts'
import { runCurl } from '../peers/clients.ts'
import { startPeriscope, type Periscope } from '../peers/periscope.ts'

type Json = Record<string, unknown>

describe('receiver.traces filters, sampling and redaction', { timeout: 180_000 }, () => {
  let collector: Collector
  let nginx: Nginx
  let periscope: Periscope

  before(async () => {
    collector = await startCollector()
    nginx = await startNginx({})
    periscope = await startPeriscope({
      endpoint: collector.httpEndpoint,
      config: {
        receiver: { traces: { protocols: ['http', 'https'], filters: [{ http_methods: ['GET', 'POST'] }], sampling: '0%' } },
        exporter: { metrics: { intervalMs: 500 } },
      },
      shipped: ['http'],
      ready: /running 1 of \d+ plugins/,
    })
    await periscope.waitForOutput(/tracing HTTP\/1\.x/, 'the http plugin to start')
  })

  after(async () => {
    await periscope?.stop()
    await nginx?.stop()
    await collector?.stop()
  })

  const spansWith = (lines: Json[], marker: string) =>
    flatten('traces', lines).map(({ item }) => ({ item, attributes: attributesOf(item.attributes) }))
      .filter((s) => String(s.attributes['url.query'] ?? '').includes(marker))

  it('at 0% sampling only errors are exported, methods outside the filter never, and metrics count everything', async () => {
    const marker = `m${process.pid}`
    const ok = await runCurl(`${nginx.baseUrl}/?case=${marker}-ok`)
    const failed = await runCurl(`${nginx.baseUrl}/status/500?case=${marker}-fail&token=abc123&page=2`, {
      headers: { Authorization: 'Bearer s3cr3t-bearer', Cookie: 'session=s3cr3t-cookie' },
    })
    const deleted = await runCurl(`${nginx.baseUrl}/status/500?case=${marker}-delete`, { method: 'DELETE' })
    assert.deepEqual([ok.transfers[0]!.status, failed.transfers[0]!.status, deleted.transfers[0]!.status], [200, 500, 500])
    // the RED histogram counts the 200 and the DELETE even though neither becomes a span
    await collector.waitFor('metrics', (lines) => {
      const counts = serverCounts(lines)
      return (counts.get('GET 200 /') ?? 0) >= 1 && (counts.get('DELETE 500 /status/*') ?? 0) >= 1 && (counts.get('GET 500 /status/*') ?? 0) >= 1
    }, 30_000)
    // spans leave in their own batches: wait for the error's two, then nothing else may be there
    const lines = await collector.waitFor('traces', (all) => spansWith(all, marker).length >= 2, 30_000)
    const spans = spansWith(lines, marker)
    // the error request: its server span and curl's client span, nothing else
    assert.deepEqual(spans.map((s) => `${s.item.kind} ${s.attributes['url.query']}`).sort(),
      [`2 case=${marker}-fail&token=REDACTED&page=2`, `3 case=${marker}-fail&token=REDACTED&page=2`])
    const text = JSON.stringify(lines)
    for (const secret of ['s3cr3t-bearer', 's3cr3t-cookie', 'abc123']) assert.ok(!text.includes(secret), `${secret} was exported`)
  })
})

/** The latest cumulative count of http.server.request.duration per "method status route". */
function serverCounts(lines: Json[]): Map<string, number> {
  const counts = new Map<string, number>()
  for (const { item } of flatten('metrics', lines)) {
    if (item.name !== 'http.server.request.duration') continue
    for (const point of (item.histogram as { dataPoints: Json[] }).dataPoints) {
      const a = attributesOf(point.attributes)
      counts.set(`${a['http.request.method']} ${a['http.response.status_code']} ${a['http.route']}`, Number(point.count))
    }
  }
  return counts
}
