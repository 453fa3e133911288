// HTTP and HTTPS traces end to end: Debian's nginx (plain, TLS, and as a reverse proxy to a second
// nginx) driven by real curl and by raw clients in this process, `periscope run` with its shipped
// plugins exporting to a real Collector. Every request must give exactly one SERVER span from the
// nginx worker and exactly one CLIENT span from the process that sent it, with the right
// attributes, and no span may be invented.
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { once } from 'node:events'
import { after, before, describe, it } from 'node:test'
import { collectorSpans as spansOf, freePort, startCollector, type Collector, type CollectorSpan } from '../peers/otelcol.ts'
import { NGINX_BIG_BODY, startNginx, type Nginx, type AccessLogEntry } from '../peers/nginx.ts'
import { connectHttp, getRequest, runCurl, type HttpConnection } from '../peers/clients.ts'
import { startPeriscope, type Periscope } from '../peers/periscope.ts'
import { attachTracing, onlineCpus } from '../../runtime/bpf/links.ts'
import { ObjectSpec } from '../../runtime/bpf/object.ts'
import { compileFixture } from '../bpf/kernel.ts'

type Span = CollectorSpan

const pidOf = (span: Span): number => Number(span.attributes['process.pid'])

describe('HTTP traces from nginx and curl', { timeout: 300_000 }, () => {
  let collector: Collector
  let nginx: Nginx
  let periscope: Periscope
  let early: HttpConnection
  let refusedPort: number

  before(async () => {
    collector = await startCollector()
    nginx = await startNginx({ tls: true, proxy: true })
    // opened before Periscope starts: it must still be traced once Periscope runs
    early = await connectHttp(nginx.port!)
    assert.equal((await early.request(getRequest('/?case=before-periscope'))).status, 200)
    refusedPort = await freePort()
    periscope = await startPeriscope({
      endpoint: collector.httpEndpoint,
      config: { plugins: { http: { config: { connect_error_ports: [refusedPort] } } } },
      shipped: ['http'],
      ready: /running 1 of \d+ plugins/,
    })
    await periscope.waitForOutput(/tracing HTTP\/1\.x and HTTPS/, 'the http plugin to start')
  })

  after(async () => {
    await early?.close()
    await periscope?.stop()
    await nginx?.stop()
    await collector?.stop()
  })

  /** Waits until spans with `case=<name>` in their query satisfy `done`, and returns them. */
  async function spansForCase(name: string, done: (spans: Span[]) => boolean, timeoutMs = 20_000): Promise<Span[]> {
    let found: Span[] = []
    await collector.waitFor('traces', (lines) => {
      found = spansOf(lines).filter((s) => String(s.attributes['url.query'] ?? '').split('&').includes(`case=${name}`))
      return done(found)
    }, timeoutMs).catch((error: Error) => {
      throw new Error(`${error.message}\nspans so far for case=${name}: ${JSON.stringify(found, (_, v) => (typeof v === 'bigint' ? String(v) : v), 1)}\nperiscope output:\n${periscope.output().slice(-3000)}`)
    })
    return found
  }

  /** Exactly one server span from an nginx worker and one client span from `clientPid`, per request. */
  async function exchangeSpans(name: string, clientPid: number, requests = 1): Promise<{ server: Span[]; client: Span[] }> {
    const workers = new Set(nginx.workerPids())
    const spans = await spansForCase(name, (s) => s.filter((x) => x.kind === 'server').length >= requests && s.filter((x) => x.kind === 'client').length >= requests)
    const server = spans.filter((s) => s.kind === 'server')
    const client = spans.filter((s) => s.kind === 'client')
    assert.equal(server.length, requests, `server spans for case=${name}`)
    assert.equal(client.length, requests, `client spans for case=${name}`)
    for (const s of server) assert.ok(workers.has(pidOf(s)), `server span pid ${pidOf(s)} is an nginx worker (${[...workers]})`)
    for (const s of client) assert.equal(pidOf(s), clientPid, 'client span from the client process')
    assert.equal(spans.length, 2 * requests, 'no other span carries this case')
    return { server, client }
  }

  function logEntry(uri: string): AccessLogEntry {
    const entries = nginx.accessLog().filter((e) => e.uri === uri)
    assert.equal(entries.length, 1, `one access log line for ${uri}`)
    return entries[0]!
  }

  it('a GET answered 200: both spans with the semantic-convention attributes', async () => {
    const run = await runCurl(`${nginx.baseUrl}/?case=ok`)
    assert.equal(run.transfers[0]!.status, 200)
    const { server: [server], client: [client] } = await exchangeSpans('ok', run.pid)
    const port = run.transfers[0]!.localPort
    assert.equal(server!.name, 'GET /')
    assert.deepEqual(pick(server!, ['http.request.method', 'url.path', 'url.query', 'url.scheme', 'http.route', 'http.response.status_code', 'network.protocol.version', 'server.port', 'client.address', 'client.port', 'network.peer.address', 'network.peer.port']), {
      'http.request.method': 'GET', 'url.path': '/', 'url.query': 'case=ok', 'url.scheme': 'http', 'http.route': '/', 'http.response.status_code': 200,
      'network.protocol.version': '1.1', 'server.port': nginx.port, 'client.address': '127.0.0.1', 'client.port': port, 'network.peer.address': '127.0.0.1', 'network.peer.port': port,
    })
    assert.equal(server!.error, false)
    assert.match(String(server!.attributes['user_agent.original']), /^curl\//)
    assert.equal(client!.name, 'GET')
    assert.deepEqual(pick(client!, ['http.request.method', 'url.path', 'url.scheme', 'http.response.status_code', 'server.address', 'server.port', 'network.peer.port']), {
      'http.request.method': 'GET', 'url.path': '/', 'url.scheme': 'http', 'http.response.status_code': 200, 'server.address': '127.0.0.1', 'server.port': nginx.port, 'network.peer.port': nginx.port,
    })
    assert.equal(client!.error, false)
    // the client's span encloses the server's, and both ends on this host make one trace
    assert.ok(client!.startNs <= server!.startNs && server!.endNs <= client!.endNs, 'client span encloses server span')
    assert.equal(server!.traceId, client!.traceId)
    assert.equal(server!.parentSpanId, client!.spanId)
    assert.equal(client!.parentSpanId, '')
    assert.equal(Number(server!.resource['process.pid']), pidOf(server!))
    // an nginx worker and curl each serve the request on their one thread: the main thread's id is the pid
    assert.equal(server!.attributes['thread.id'], pidOf(server!))
    assert.equal(client!.attributes['thread.id'], pidOf(client!))
  })

  it('404 is an error for the client only; 500 for both', async () => {
    const notFound = await runCurl(`${nginx.baseUrl}/status/404?case=404`)
    assert.equal(notFound.transfers[0]!.status, 404)
    const a = await exchangeSpans('404', notFound.pid)
    assert.equal(a.server[0]!.attributes['http.response.status_code'], 404)
    assert.equal(a.server[0]!.error, false)
    assert.equal(a.client[0]!.error, true)
    assert.equal(a.client[0]!.attributes['error.type'], '404')
    const failed = await runCurl(`${nginx.baseUrl}/status/500?case=500`)
    assert.equal(failed.transfers[0]!.status, 500)
    const b = await exchangeSpans('500', failed.pid)
    assert.equal(b.server[0]!.error, true)
    assert.equal(b.client[0]!.error, true)
    assert.equal(b.server[0]!.attributes['http.route'], '/status/*')
  })

  it('a POST with a body, HTTP/1.0, and a chunked response', async () => {
    const post = await runCurl(`${nginx.baseUrl}/echo?case=post`, { body: 'x'.repeat(3000) })
    assert.equal(post.transfers[0]!.status, 200)
    const p = await exchangeSpans('post', post.pid)
    assert.equal(p.server[0]!.attributes['http.request.method'], 'POST')
    assert.equal(p.client[0]!.attributes['http.request.method'], 'POST')
    const old = await runCurl(`${nginx.baseUrl}/?case=http10`, { http10: true })
    const o = await exchangeSpans('http10', old.pid)
    assert.equal(o.server[0]!.attributes['network.protocol.version'], '1.0')
    assert.equal(o.client[0]!.attributes['network.protocol.version'], '1.0')
    const chunked = await runCurl(`${nginx.baseUrl}/chunked?case=chunked`)
    assert.equal(chunked.transfers[0]!.headers['transfer-encoding']?.[0], 'chunked')
    const c = await exchangeSpans('chunked', chunked.pid)
    assert.equal(c.server[0]!.attributes['http.response.status_code'], 200)
    assert.equal(c.client[0]!.attributes['http.response.status_code'], 200)
  })

  it('a body larger than the capture size, then a request on the same connection', async () => {
    const run = await runCurl([`${nginx.baseUrl}/big?case=big`, `${nginx.baseUrl}/?case=after-big`])
    assert.equal(run.transfers[0]!.bodyBytes, NGINX_BIG_BODY.length)
    assert.equal(run.transfers[1]!.newConnections, 0, 'curl reused the connection')
    await exchangeSpans('big', run.pid)
    await exchangeSpans('after-big', run.pid)
  })

  it('several requests on one keep-alive connection', async () => {
    const urls = [1, 2, 3].map((i) => `${nginx.baseUrl}/?case=keepalive&n=${i}`)
    const run = await runCurl(urls)
    assert.deepEqual(run.transfers.map((t) => t.newConnections), [1, 0, 0])
    const { server, client } = await exchangeSpans('keepalive', run.pid, 3)
    assert.deepEqual(server.map((s) => s.attributes['url.query']).sort(), ['case=keepalive&n=1', 'case=keepalive&n=2', 'case=keepalive&n=3'])
    assert.deepEqual(client.map((s) => s.attributes['url.query']).sort(), ['case=keepalive&n=1', 'case=keepalive&n=2', 'case=keepalive&n=3'])
    assert.equal(new Set(server.map((s) => s.attributes['client.port'])).size, 1)
  })

  it('pipelined requests and a request written in several small writes', async () => {
    const connection = await connectHttp(nginx.port!)
    try {
      await connection.send([getRequest('/?case=pipelined&n=1') + getRequest('/?case=pipelined&n=2') + getRequest('/?case=pipelined&n=3')])
      const responses = await connection.responses(3)
      assert.deepEqual(responses.map((r) => r.status), [200, 200, 200])
      const { server } = await exchangeSpans('pipelined', process.pid, 3)
      assert.deepEqual(server.map((s) => s.attributes['url.query']).sort(), ['case=pipelined&n=1', 'case=pipelined&n=2', 'case=pipelined&n=3'])
      const request = getRequest('/?case=small-writes', { 'User-Agent': 'periscope-test' })
      const pieces = [request.slice(0, 3), request.slice(3, 11), request.slice(11, 30), request.slice(30)]
      await connection.send(pieces, { separateReads: true })
      assert.equal((await connection.responses(1))[0]!.status, 200)
      const small = await exchangeSpans('small-writes', process.pid)
      assert.equal(small.server[0]!.attributes['user_agent.original'], 'periscope-test')
    } finally {
      await connection.close()
    }
  })

  it('a refused connection gives a client span with an error', async () => {
    const run = await runCurl(`http://127.0.0.1:${refusedPort}/?case=refused`)
    assert.equal(run.transfers[0]!.exitCode, 7)
    let found: Span[] = []
    await collector.waitFor('traces', (lines) => {
      found = spansOf(lines).filter((s) => pidOf(s) === run.pid)
      return found.length > 0
    })
    assert.equal(found.length, 1)
    assert.equal(found[0]!.kind, 'client')
    assert.equal(found[0]!.error, true)
    assert.equal(found[0]!.attributes['server.port'], refusedPort)
    assert.equal(found[0]!.attributes['error.type'], 'connection_failed')
  })

  it('through the reverse proxy, a traceparent puts nginx and the backend in the same trace', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736'
    const parent = '00f067aa0ba902b7'
    const run = await runCurl(`${nginx.baseUrl}/proxy/?case=proxied`, { headers: { traceparent: `00-${traceId}-${parent}-01` } })
    assert.equal(run.transfers[0]!.status, 200)
    const workers = new Set(nginx.workerPids())
    const backendWorkers = new Set(nginx.backend!.workerPids())
    const spans = await spansForCase('proxied', (s) => s.length >= 4)
    const frontServer = spans.filter((s) => s.kind === 'server' && workers.has(pidOf(s)))
    const frontClient = spans.filter((s) => s.kind === 'client' && workers.has(pidOf(s)))
    const backendServer = spans.filter((s) => s.kind === 'server' && backendWorkers.has(pidOf(s)))
    const curlClient = spans.filter((s) => s.kind === 'client' && pidOf(s) === run.pid)
    assert.deepEqual([frontServer.length, frontClient.length, backendServer.length, curlClient.length], [1, 1, 1, 1])
    assert.equal(spans.length, 4)
    for (const s of spans) assert.equal(s.traceId, traceId, `${s.kind} span of pid ${pidOf(s)} joins the trace`)
    assert.equal(frontServer[0]!.parentSpanId, parent)
    // nginx forwards the same traceparent, which names the caller's span: it wins over inference
    assert.equal(frontClient[0]!.parentSpanId, parent)
    assert.equal(backendServer[0]!.parentSpanId, parent)
    assert.equal(frontClient[0]!.attributes['server.port'], nginx.backend!.port)
  })

  it('without a traceparent, curl → nginx → backend on this host is one trace, each span the child of the one before, for each of 20 chains', async () => {
    // 20 chains: the backend's read of nginx's request is at times seen before nginx's write of it
    // (each record is written at its syscall's exit), and both orders must link
    const chains = Array.from({ length: 20 }, (_, i) => `chain-${i}`)
    const run = await runCurl(chains.map((name) => `${nginx.baseUrl}/proxy/?case=${name}`))
    assert.deepEqual(run.transfers.map((t) => t.status), chains.map(() => 200))
    const workers = new Set(nginx.workerPids())
    const backendWorkers = new Set(nginx.backend!.workerPids())
    for (const name of chains) {
      const spans = await spansForCase(name, (s) => s.length >= 4)
      assert.equal(spans.length, 4)
      const one = (what: string, match: (s: Span) => boolean): Span => {
        const found = spans.filter(match)
        assert.equal(found.length, 1, `${what} of ${name}`)
        return found[0]!
      }
      const curlClient = one('curl client', (s) => s.kind === 'client' && pidOf(s) === run.pid)
      const frontServer = one('nginx server', (s) => s.kind === 'server' && workers.has(pidOf(s)))
      const frontClient = one('nginx client', (s) => s.kind === 'client' && workers.has(pidOf(s)))
      const backendServer = one('backend server', (s) => s.kind === 'server' && backendWorkers.has(pidOf(s)))
      const shown = `${name}:\n${spans.map((s) => `${s.kind} pid ${pidOf(s)} trace ${s.traceId} span ${s.spanId} parent ${s.parentSpanId}`).join('\n')}`
      for (const s of spans) assert.equal(s.traceId, curlClient.traceId, shown)
      assert.deepEqual([curlClient.parentSpanId, frontServer.parentSpanId, frontClient.parentSpanId, backendServer.parentSpanId],
        ['', curlClient.spanId, frontServer.spanId, frontClient.spanId], shown)
    }
  })

  /**
   * A Python client sends `method target` with a body of `bodyBytes` to nginx in one send(),
   * through a 64 KB send buffer, run under `wrapper` (a command prefix) and named `commBeforeSend`
   * once connected; returns the status line and the client's pid.
   */
  async function sendRequest(method: string, target: string, bodyBytes: number, wrapper: string[] = [], commBeforeSend?: string): Promise<{ statusLine: string; pid: number }> {
    const [command, ...args] = [...wrapper, 'python3', '-c', [
      'import socket',
      's = socket.socket()',
      's.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)',
      `s.connect(("127.0.0.1", ${nginx.port}))`,
      `body = b'x' * ${bodyBytes}`,
      ...commBeforeSend === undefined ? [] : [`open('/proc/self/comm', 'w').write('${commBeforeSend}')`],
      `s.sendall(b'${method} ${target} HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nConnection: close\\r\\nContent-Length: %d\\r\\n\\r\\n' % len(body) + body)`,
      "reply = b''",
      'while chunk := s.recv(65536): reply += chunk',
      'print(reply.split(b"\\r\\n")[0].decode(), flush=True)',
    ].join('\n')]
    const client = spawn(command!, args, { stdio: ['ignore', 'pipe', 'inherit'] })
    let stdout = ''
    client.stdout.setEncoding('utf8').on('data', (text: string) => { stdout += text })
    assert.deepEqual(await once(client, 'close'), [0, null])
    return { statusLine: stdout, pid: client.pid! }
  }

  it("a client's write seen after the server read its request (a 1 MB body through a 64 KB send buffer): the server span is still the client span's child", async () => {
    // the client's one send() returns only once nginx has read most of the body, so nginx's read
    // of the head exits, and its record comes, before the client's record of that send
    const { statusLine, pid } = await sendRequest('POST', '/echo?case=late-client', 1 << 20)
    assert.equal(statusLine, 'HTTP/1.1 200 OK\n')
    const { server, client: sent } = await exchangeSpans('late-client', pid)
    assert.equal(server[0]!.traceId, sent[0]!.traceId)
    assert.equal(server[0]!.parentSpanId, sent[0]!.spanId)
    assert.equal(server[0]!.attributes['http.request.method'], 'POST')
  })

  /**
   * Runs `send` with the late-writer fixture attached (test/bpf/fixtures/late-writer.bpf.c) and
   * nginx's workers on the second CPU: `send` runs its client on `clientCpu`, named `late-writer`
   * before the write to be seen late. Checks that the fixture held that client once.
   */
  async function withLateWriter(send: (clientCpu: number) => Promise<void>): Promise<void> {
    const cpus = onlineCpus()
    assert.ok(cpus.length >= 2, `two CPUs to run the client and nginx apart (${cpus.length} online)`)
    const workers = nginx.workerPids()
    const affinity = new Map(workers.map((pid) => [pid, execFileSync('taskset', ['-pc', String(pid)], { encoding: 'utf8' }).split(':').pop()!.trim()]))
    const loaded = await ObjectSpec.open(compileFixture('late-writer')).load()
    const link = attachTracing(loaded, 'hold_late_writer')
    try {
      for (const pid of workers) execFileSync('taskset', ['-a', '-pc', String(cpus[1]), String(pid)], { stdio: 'ignore' })
      await send(cpus[0]!)
      // the fixture's `spun`: it held the client, so the order was the late one
      assert.equal(Buffer.from(loaded.map('late_wri.bss').lookup(new Uint8Array(4))!).readUInt32LE(0), 1, 'the fixture held the client once')
    } finally {
      link.detach()
      loaded.close()
      for (const [pid, list] of affinity) execFileSync('taskset', ['-a', '-pc', list, String(pid)], { stdio: 'ignore' })
    }
  }

  it("a client's write seen after the server answered (the client held on its CPU inside the write): the server span is still the client span's child", async () => {
    // CI met this order by chance, a client preempted at its write's exit under load; the
    // late-writer fixture makes it on purpose: nginx, on the other CPU, reads and answers while the
    // client spins in the kernel before its write returns and its record is written
    await withLateWriter(async (clientCpu) => {
      const { statusLine, pid } = await sendRequest('GET', '/?case=early-answer', 0, ['taskset', '-c', String(clientCpu)], 'late-writer')
      assert.equal(statusLine, 'HTTP/1.1 200 OK\n')
      const { server, client: sent } = await exchangeSpans('early-answer', pid)
      assert.deepEqual([server[0]!.traceId, server[0]!.parentSpanId, sent[0]!.parentSpanId], [sent[0]!.traceId, sent[0]!.spanId, ''])
    })
  })

  it("a request with a traceparent whose client's write is seen late, then a plain one on the same connection: the second server span is the second client span's child", async () => {
    // the server span of the first takes its parent from the traceparent; the client's late record
    // must still be taken as read by the server, or it waits beside the second request and the
    // server's read of that one finds two waiting and links neither
    const traceId = '5bf92f3577b34da6a3ce929d0e0e4736'
    await withLateWriter(async (clientCpu) => {
      const client = spawn('taskset', ['-c', String(clientCpu), 'python3', '-c', [
        'import socket',
        `s = socket.create_connection(("127.0.0.1", ${nginx.port}))`,
        'def exchange(request):',
        '    s.sendall(request)',
        "    head = b''",
        "    while b'\\r\\n\\r\\n' not in head: head += s.recv(1)",
        "    length = int([l for l in head.split(b'\\r\\n') if l.lower().startswith(b'content-length:')][0].split(b':')[1])",
        "    body = b''",
        '    while len(body) < length: body += s.recv(length - len(body))',
        "    print(head.split(b'\\r\\n')[0].decode(), flush=True)",
        "open('/proc/self/comm', 'w').write('late-writer')",
        `exchange(b'GET /?case=traceparent-late HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\ntraceparent: 00-${traceId}-00f067aa0ba902b7-01\\r\\n\\r\\n')`,
        "exchange(b'GET /?case=after-traceparent-late HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n\\r\\n')",
      ].join('\n')], { stdio: ['ignore', 'pipe', 'inherit'] })
      let stdout = ''
      client.stdout.setEncoding('utf8').on('data', (text: string) => { stdout += text })
      assert.deepEqual(await once(client, 'close'), [0, null])
      assert.equal(stdout, 'HTTP/1.1 200 OK\nHTTP/1.1 200 OK\n')
      const first = await exchangeSpans('traceparent-late', client.pid!)
      assert.deepEqual([first.server[0]!.traceId, first.server[0]!.parentSpanId, first.client[0]!.traceId], [traceId, '00f067aa0ba902b7', traceId])
      const second = await exchangeSpans('after-traceparent-late', client.pid!)
      assert.deepEqual([second.server[0]!.traceId, second.server[0]!.parentSpanId, second.client[0]!.parentSpanId], [second.client[0]!.traceId, second.client[0]!.spanId, ''])
    })
  })

  it('HTTPS through nginx gives the same spans with url.scheme=https', async () => {
    const run = await runCurl(`${nginx.tlsUrl}/?case=tls`, { cacert: nginx.certPath })
    assert.equal(run.transfers[0]!.status, 200)
    const { server, client } = await exchangeSpans('tls', run.pid)
    assert.equal(server[0]!.attributes['url.scheme'], 'https')
    assert.equal(client[0]!.attributes['url.scheme'], 'https')
    assert.equal(server[0]!.attributes['server.port'], nginx.tlsPort)
    assert.equal(server[0]!.attributes['http.response.status_code'], 200)
    assert.equal(client[0]!.attributes['http.response.status_code'], 200)
  })

  it('a connection opened before Periscope started is traced', async () => {
    assert.equal((await early.request(getRequest('/?case=early-connection'))).status, 200)
    const { server, client } = await exchangeSpans('early-connection', process.pid)
    assert.equal(server[0]!.attributes['client.port'], early.localPort)
    assert.equal(client[0]!.attributes['network.peer.port'], nginx.port)
  })

  it("Periscope's own export is never traced", async () => {
    const lines = await collector.read('traces')
    const own = spansOf(lines).filter((s) => pidOf(s) === periscope.pid || s.attributes['server.port'] === Number(new URL(collector.httpEndpoint).port))
    assert.deepEqual(own.map((s) => `${s.name} pid ${pidOf(s)}`), [])
    assert.ok(logEntry('/?case=ok').status === 200)
  })
})

function pick(span: Span, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.map((k) => [k, span.attributes[k]]))
}
