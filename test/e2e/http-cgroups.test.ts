// plugins.http.target_cgroups end to end: two Debian nginx instances, one moved (master and
// workers) into a cgroup of the test's own, `periscope run` configured with that cgroup's path,
// real curl over HTTP and HTTPS, a real Collector. Only the nginx in the cgroup gets spans: the
// other nginx gets none, and neither does curl, which runs outside the cgroup.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { TestCgroup } from '../peers/cgroup.ts'
import { attributesOf, flatten, startCollector, type Collector } from '../peers/otelcol.ts'
import { startNginx, type Nginx } from '../peers/nginx.ts'
import { runCurl } from '../peers/clients.ts'
import { startPeriscope, type Periscope } from '../peers/periscope.ts'

type Json = Record<string, unknown>

interface Span {
  kind: number
  pid: number
  query: string
  scheme: string
}

function spansOf(lines: Json[], marker: string): Span[] {
  return flatten('traces', lines)
    .map(({ item }) => ({ item, attributes: attributesOf(item.attributes) }))
    .filter(({ attributes }) => String(attributes['url.query'] ?? '').includes(marker))
    .map(({ item, attributes }) => ({
      kind: item.kind as number,
      pid: Number(attributes['process.pid']),
      query: String(attributes['url.query']),
      scheme: String(attributes['url.scheme']),
    }))
}

describe('plugins.http.target_cgroups', { timeout: 180_000 }, () => {
  let collector: Collector
  let cgroup: TestCgroup
  let inside: Nginx
  let outside: Nginx
  let periscope: Periscope

  before(async () => {
    collector = await startCollector()
    cgroup = TestCgroup.create()
    inside = await startNginx({ tls: true, workerProcesses: 2 })
    outside = await startNginx({ tls: true })
    // nginx is started by the peer helper; master and workers move in before Periscope starts
    for (const pid of [inside.pid, ...inside.workerPids()]) cgroup.add(pid)
    assert.deepEqual(cgroup.pids().sort(), [inside.pid, ...inside.workerPids()].sort())
    periscope = await startPeriscope({
      endpoint: collector.httpEndpoint,
      config: { plugins: { http: { target_cgroups: [cgroup.path] } } },
      shipped: ['http'],
      ready: /running 1 of \d+ plugins/,
    })
    await periscope.waitForOutput(new RegExp(`tracing HTTP/1\\.x and HTTPS \\(OpenSSL, Go crypto/tls uprobes\\) on cgroups ${cgroup.id} and below`), 'the http plugin to start')
  })

  after(async () => {
    await periscope?.stop()
    await inside?.stop()
    await outside?.stop()
    await cgroup?.remove()
    await collector?.stop()
  })

  it("gives spans only to the cgroup's nginx, over HTTP and HTTPS; the other nginx and curl get none", async () => {
    const marker = `cg${process.pid}`
    const urls = (nginx: Nginx, name: string) => [`${nginx.baseUrl}/?case=${marker}-${name}-http`, `${nginx.tlsUrl}/?case=${marker}-${name}-https`]
    const curl = (nginx: Nginx, name: string) => runCurl(urls(nginx, name), { cacert: nginx.certPath })
    // the other nginx first: by the time the cgroup's spans are exported, its would have been
    const before = await curl(outside, 'outside')
    const inCgroup = await curl(inside, 'inside')
    assert.deepEqual([...before.transfers, ...inCgroup.transfers].map((t) => t.status), [200, 200, 200, 200])
    await collector.waitFor('traces', (lines) => spansOf(lines, `${marker}-inside`).length >= 2, 30_000)
    // one more request to the cgroup's nginx, after everything above has ended: its span comes
    // after any late span of the first round
    const last = await curl(inside, 'last')
    assert.deepEqual(last.transfers.map((t) => t.status), [200, 200])
    await collector.waitFor('traces', (lines) => spansOf(lines, `${marker}-last`).length >= 2, 30_000)

    const spans = spansOf(await collector.read('traces'), marker)
    const workers = new Set(inside.workerPids())
    const served = (name: string) => [
      { kind: 2, query: `case=${marker}-${name}-http`, scheme: 'http' },
      { kind: 2, query: `case=${marker}-${name}-https`, scheme: 'https' },
    ]
    assert.deepEqual(spans.map(({ kind, query, scheme }) => ({ kind, query, scheme })).sort((a, b) => a.query.localeCompare(b.query)),
      [...served('inside'), ...served('last')])
    for (const span of spans) assert.ok(workers.has(span.pid), `span of pid ${span.pid}, not one of the cgroup's nginx workers ${[...workers].join(', ')}`)
  })
})
