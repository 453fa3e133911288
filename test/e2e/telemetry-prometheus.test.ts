// The embedded default's Prometheus endpoint: its scrape passes Debian's `promtool check metrics`
// and a real Prometheus server (Debian's `prometheus` package) scrapes it.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { createTelemetry } from '../../runtime/telemetry/index.ts'
import { freePort } from '../peers/otelcol.ts'
import { scratchDir } from '../peers/scratch-dir.ts'

test('the Prometheus endpoint passes promtool check metrics and a real Prometheus scrapes it', async (t) => {
  const port = await freePort()
  const telemetry = await createTelemetry({
    config: { dataDir: scratchDir('periscope-prom-'), prometheus: { port } },
    env: {},
    log: () => {},
  })
  t.after(() => telemetry.shutdown(1000))
  assert.equal(telemetry.stats().prometheus, `http://127.0.0.1:${port}/metrics`)
  const scope = telemetry.scope('http', '1.0.0')
  scope.metrics([
    { name: 'http.server.requests', kind: 'counter', value: 5, attributes: { 'http.route': '/a"b', 'http.request.method': 'GET' } },
    { name: 'http.server.request.duration', kind: 'histogram', value: 0.3, unit: 's', description: 'Duration with "quotes"\nand a newline', boundaries: [0.1, 1] },
    { name: 'tcp.rtt', kind: 'exponential_histogram', value: 3 },
    { name: 'queue.depth', kind: 'gauge', value: 7 },
    { name: 'connections', kind: 'updown', value: -2 },
  ])

  const body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  const check = spawnSync('promtool', ['check', 'metrics'], { input: body, encoding: 'utf8' })
  assert.equal(check.status, 0, `promtool check metrics failed:\n${check.stdout}${check.stderr}\n--- scrape ---\n${body}`)
  assert.equal(`${check.stdout}${check.stderr}`.trim(), '', 'no lint findings either')
  // promtool really checks: the same scrape with one broken line is refused
  const broken = spawnSync('promtool', ['check', 'metrics'], { input: body.replace('queue_depth{', 'queue depth{'), encoding: 'utf8' })
  assert.notEqual(broken.status, 0)

  assert.match(body, /^http_server_requests_total\{http_route="\/a\\"b",http_request_method="GET",otel_scope_name="http",otel_scope_version="1\.0\.0"\} 5$/m)
  assert.match(body, /^http_server_request_duration_bucket\{otel_scope_name="http",otel_scope_version="1\.0\.0",le="1"\} 1$/m)
  assert.match(body, /^queue_depth\{otel_scope_name="http",otel_scope_version="1\.0\.0"\} 7$/m)
  assert.match(body, /^process_memory_usage\{otel_scope_name="periscope"\} \d+$/m)
  assert.doesNotMatch(body, /tcp_rtt/, 'exponential histograms have no text-format form and are left out')

  // a real Prometheus server scraping the endpoint
  const promPort = await freePort()
  const promDir = scratchDir('periscope-prometheus-')
  await writeFile(
    join(promDir, 'prometheus.yml'),
    `global: { scrape_interval: 1s, evaluation_interval: 1s }\nscrape_configs:\n  - job_name: periscope\n    static_configs: [{ targets: ['127.0.0.1:${port}'] }]\n`,
  )
  const prometheus = spawn(
    'prometheus',
    [`--config.file=${join(promDir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(promDir, 'data')}`, `--web.listen-address=127.0.0.1:${promPort}`],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  )
  let promLog = ''
  prometheus.stderr.on('data', (chunk: Buffer) => (promLog += chunk.toString()))
  const exited = new Promise((resolve) => prometheus.once('exit', resolve))
  t.after(async () => {
    prometheus.kill('SIGTERM')
    await exited
  })
  const query = async (expr: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> => {
    const response = await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(expr)}`)
    return ((await response.json()) as { data: { result: { metric: Record<string, string>; value: [number, string] }[] } }).data.result
  }
  const deadline = Date.now() + 20_000
  let result: Awaited<ReturnType<typeof query>> = []
  while (Date.now() < deadline) {
    result = await query('http_server_requests_total').catch(() => [])
    if (result.length > 0) break
    await sleep(250)
  }
  assert.equal(result.length, 1, `Prometheus never scraped the series; its log:\n${promLog.slice(-3000)}`)
  assert.equal(result[0].value[1], '5')
  assert.equal(result[0].metric.http_route, '/a"b')
  assert.equal(result[0].metric.job, 'periscope')
  const up = await query('up{job="periscope"}')
  assert.equal(up[0]?.value[1], '1', 'the scrape succeeded')
})
