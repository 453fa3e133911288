// HTTPS from a process that starts after Periscope, with a libssl file no process mapped before:
// Periscope (running as nobody by then) must notice the mapping, attach its OpenSSL uprobes to that
// file, trace the process's requests as https spans, and remove the uprobes once the process exits.
// The client is Debian's python3 (its _ssl links libssl.so.3) loading a private copy of libssl
// through LD_LIBRARY_PATH, so the file is new to Periscope; the server is Debian's nginx with TLS.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { after, before, it } from 'node:test'
import { connectAdmin } from '../../runtime/admin/client.ts'
import { attributesOf, flatten, startCollector, type Collector } from '../peers/otelcol.ts'
import { startNginx, type Nginx } from '../peers/nginx.ts'
import { startPeriscope, type Periscope } from '../peers/periscope.ts'

const PYTHON = '/usr/bin/python3'
const LIBSSL = '/lib/x86_64-linux-gnu/libssl.so.3'

/** Reads case names on stdin; for each, one HTTPS GET /?case=<name> on a new connection. */
const CLIENT = `
import socket, ssl, sys
port = int(sys.argv[1])
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
print('ready', flush=True)
for line in sys.stdin:
    name = line.strip()
    with socket.create_connection(('127.0.0.1', port)) as raw:
        with context.wrap_socket(raw, server_hostname='localhost') as tls:
            tls.sendall(('GET /?case=%s HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' % name).encode())
            reply = b''
            while True:
                data = tls.recv(65536)
                if not data:
                    break
                reply += data
    print('done %s %s' % (name, reply.split(b' ')[1].decode()), flush=True)
`

let collector: Collector
let nginx: Nginx
let periscope: Periscope
let dir: string

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'periscope-https-late-'))
  collector = await startCollector()
  nginx = await startNginx({ http: false, tls: true })
  periscope = await startPeriscope({ endpoint: collector.httpEndpoint, shipped: ['http'], ready: /running 1 of \d+ plugins/ })
  await periscope.waitForOutput(/tracing HTTP\/1\.x and HTTPS/, 'the http plugin to start')
  await periscope.waitForOutput(/continues as nobody|dropped CAP_/, 'the privilege drop')
})

after(async () => {
  await periscope?.stop()
  await nginx?.stop()
  await collector?.stop()
  await rm(dir, { recursive: true, force: true })
})

async function uprobeTargets(): Promise<string[]> {
  const admin = await connectAdmin(join(periscope.dir, 'admin.sock'))
  try {
    const links = await admin.request<{ object: string; attach: string }[]>('links')
    return links.filter((l) => l.object === 'sockdata').map((l) => l.attach)
  } finally {
    admin.close()
  }
}

it('a process started later with a new libssl file is traced over HTTPS, and its uprobes go when it exits', { timeout: 120_000 }, async () => {
  const libs = join(dir, 'libs')
  await mkdir(libs)
  await copyFile(LIBSSL, join(libs, 'libssl.so.3'))
  await writeFile(join(dir, 'client.py'), CLIENT)
  assert.deepEqual((await uprobeTargets()).filter((t) => t.includes(libs)), [], 'nothing attached to the copy before it is used')

  const client = spawn(PYTHON, [join(dir, 'client.py'), String(nginx.tlsPort)], { env: { ...process.env, LD_LIBRARY_PATH: libs }, stdio: ['pipe', 'pipe', 'inherit'] })
  const exited = new Promise((resolve) => client.once('exit', resolve))
  const lines = createInterface({ input: client.stdout! })[Symbol.asyncIterator]()
  const next = async (): Promise<string> => String((await lines.next()).value)
  try {
    assert.equal(await next(), 'ready')
    // Periscope learns of the mapping from the kernel and attaches in the background, one probe
    // after the other: once all eight (entry and return of SSL_write, SSL_read and their _ex
    // forms, which Python uses) are on the copy, every request is traced. Waiting for the first
    // only let a loaded run send its request before SSL_read_ex's were on, and see no response
    const deadline = Date.now() + 30_000
    while ((await uprobeTargets()).filter((t) => t.includes(`${libs}/libssl.so.3:`)).length < 8) {
      assert.ok(Date.now() < deadline, `no uprobe on ${libs}/libssl.so.3 after 30 s; links: ${JSON.stringify(await uprobeTargets())}\n${periscope.output().slice(-3000)}`)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    const marker = `late${client.pid}`
    client.stdin!.write(`${marker}\n`)
    assert.equal(await next(), `done ${marker} 200`)
    const spans = await collector.waitFor('traces', (all) => matching(all, marker).length >= 2)
    const found = matching(spans, marker)
    assert.equal(found.length, 2, JSON.stringify(found))
    const clientSpan = found.find((s) => s.kind === 3)!
    const serverSpan = found.find((s) => s.kind === 2)!
    assert.equal(clientSpan.attributes['process.pid'], client.pid)
    assert.equal(clientSpan.attributes['url.scheme'], 'https')
    assert.equal(clientSpan.attributes['http.response.status_code'], 200)
    assert.ok(nginx.workerPids().includes(Number(serverSpan.attributes['process.pid'])))
    assert.equal(serverSpan.attributes['url.scheme'], 'https')
  } finally {
    client.stdin!.end()
    await exited
  }
  // its last user gone, the copy loses its uprobes
  const deadline = Date.now() + 30_000
  while ((await uprobeTargets()).some((t) => t.includes(libs))) {
    assert.ok(Date.now() < deadline, `uprobes still on the copy 30 s after its last user exited: ${JSON.stringify(await uprobeTargets())}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
})

function matching(lines: Record<string, unknown>[], marker: string): { kind: number; attributes: Record<string, unknown> }[] {
  return flatten('traces', lines)
    .map(({ item }) => ({ kind: item.kind as number, attributes: attributesOf(item.attributes) }))
    .filter((s) => s.attributes['url.query'] === `case=${marker}`)
}
