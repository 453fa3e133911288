/**
 * The shipped http2 plugin (plugins/http2.ts) on the real kernel, in-process, when a connection's
 * close is read before its data. The sockdata object's rings are read each on its own, so on a
 * loaded host the `connections` ring may hand over a close before the `http2` ring hands over any
 * record of that connection; here the `http2` ring's batches are held back until nginx's close
 * has passed, then handed over in their order. nginx answers /big over h2c with 64 KiB in two
 * writev calls of four 8 KiB DATA frames, captured 16 KiB a call, so the frame with END_STREAM is
 * never seen and the stream ends with the connection's close: that close must not be lost for
 * coming first.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { decodeSockEvent } from '../../bpf/lib/sockdata.types.ts'
import type { ObjectProvider } from '../../runtime/bus.ts'
import { forEachRecord, type RecordBatch } from '../../runtime/bpf/batch.ts'
import { openLibraryObject } from '../../runtime/library/index.ts'
import type { SpanInput } from '../../runtime/telemetry/signals.ts'
import { runCurl } from '../peers/clients.ts'
import { startNginx, type Nginx } from '../peers/nginx.ts'
import { startHarness, type Harness } from '../plugin-harness.ts'
import { root } from './kernel.ts'
import { CLOSE } from './sockdata-peers.ts'

/**
 * The real library, whose sockdata object holds back (copies of) its `http2` batches while
 * `holding`, and notes every close its `connections` ring hands over.
 */
class HeldHttp2Ring {
  holding = false
  readonly closes: { pid: number; localPort: number; remotePort: number }[] = []
  readonly #held: (() => void)[] = []

  readonly provider: ObjectProvider = {
    open: async (name, settings) => {
      const object = await openLibraryObject(name, { settings, log: () => {} })
      if (name !== 'sockdata') return object
      const subscribe = object.subscribe.bind(object)
      object.subscribe = (stream, onBatch) => subscribe(stream, (batch) => {
        if (stream === 'connections') this.#noteCloses(batch)
        if (stream !== 'http2' || !this.holding) return onBatch(batch)
        // a ring buffer batch is lent for this call only
        const copy: RecordBatch = { ...batch, buffer: batch.buffer.slice(0, batch.byteLength) }
        this.#held.push(() => onBatch(copy))
      })
      return object
    },
  }

  #noteCloses(batch: RecordBatch): void {
    forEachRecord(batch, (view, offset, size) => {
      const event = decodeSockEvent(view, offset, size)
      if (event.kind === CLOSE) this.closes.push({ pid: event.pid, localPort: event.local_port, remotePort: event.remote_port })
    })
  }

  /** Hands over the held batches, in their order, and stops holding. */
  release(): void {
    this.holding = false
    for (const deliver of this.#held.splice(0)) deliver()
  }
}

const ring = new HeldHttp2Ring()
let nginx: Nginx
let h: Harness

before(async () => {
  nginx = await startNginx({ http: false, http2: true })
  h = await startHarness({
    provider: ring.provider,
    decodersPath: join(root, 'bpf/lib/index.types.ts'),
    // plaintext only: no uprobes to attach
    config: { plugins: { http2: { config: { https: false, go_tls: false } } } },
    plugins: { 'http2.ts': readFileSync(join(root, 'plugins/http2.ts'), 'utf8') },
  })
  await h.waitFor(() => h.log.lines.some((line) => line.message.includes('tracing gRPC and HTTP/2')), 'the http2 plugin to start', 60_000)
})

after(async () => {
  ring.release()
  await h?.close()
  await nginx?.stop()
})

test('an h2c response whose end went uncaptured ends with its connection\'s close, read before any of its data', async () => {
  ring.holding = true
  const run = await runCurl(`${nginx.h2cUrl}/big?case=close-first`, { extraArgs: ['--http2-prior-knowledge'] })
  assert.deepEqual(run.transfers.map((t) => [t.status, t.httpVersion, t.bodyBytes]), [[200, '2', 65536]], run.stderr)
  const clientPort = run.transfers[0]!.localPort
  const workers = nginx.workerPids()
  await h.waitFor(() => ring.closes.some((c) => workers.includes(c.pid) && c.localPort === nginx.h2cPort && c.remotePort === clientPort), 'nginx\'s close of the connection', 30_000)
  ring.release()

  const spans = (): SpanInput[] => h.sink.signals('http2').spans.filter((s) => s.attributes?.['url.query'] === 'case=close-first')
  await h.waitFor(() => spans().some((s) => s.kind === 'server'), 'the server span of /big', 30_000)
  const [server] = spans().filter((s) => s.kind === 'server')
  assert.deepEqual([server!.name, server!.attributes?.['http.response.status_code'], server!.attributes?.['client.port']], ['GET /big', 200, clientPort])
  assert.ok(workers.includes(Number(server!.attributes?.['process.pid'])), `a span of an nginx worker (${workers})`)
})
