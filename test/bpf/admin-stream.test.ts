/** The admin socket streams a real object's events decoded by the generated decoders, as JSON lines. */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import net from 'node:net'
import { join } from 'node:path'
import { test } from 'node:test'
import { testRun } from '../../runtime/bpf/links.ts'
import { openLibraryObject, type LibraryObject } from '../../runtime/library/index.ts'
import { startHarness } from '../plugin-harness.ts'
import { root, waitFor } from './kernel.ts'

/** The runtime on the real library with an admin socket, and a raw client connected to it. */
async function runtimeWithRawClient() {
  const opened = new Map<string, LibraryObject>()
  const h = await startHarness({
    provider: { open: async (name, settings) => { const o = await openLibraryObject(name, { settings, log: () => {} }); opened.set(name, o); return o } },
    decodersPath: join(root, 'bpf/lib/index.types.ts'),
    adminSocket: true,
  })
  // a raw socket, to check the wire format itself: one JSON object per line
  const socket = net.connect(h.runtime.admin!.path)
  const client = { h, socket, opened, received: '' }
  socket.setEncoding('utf8')
  socket.on('data', (chunk: string) => { client.received += chunk })
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject))
  return client
}

test('subscribing to exec:events over the admin socket streams decoded exec events', async () => {
  const client = await runtimeWithRawClient()
  const { h, socket } = client
  try {
    socket.write(`${JSON.stringify({ id: 7, method: 'subscribe', params: { topic: 'exec:events' } })}\n`)
    await waitFor(() => client.received.includes('"subscribed"'), 'the subscription to be confirmed')
    execFileSync('/bin/echo', ['admin-stream-test', 'decoded'])
    const ours = () => client.received.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { id: number; event?: Record<string, unknown> })
      .find((m) => m.event?.kind === 1 && (m.event.args as string[])[1] === 'admin-stream-test')
    await waitFor(() => ours() !== undefined, 'the exec event on the admin stream')
    const { id, event } = ours()!
    assert.equal(id, 7)
    assert.deepEqual(event!.args, ['/bin/echo', 'admin-stream-test', 'decoded'])
    assert.equal(event!.filename, '/bin/echo')
    assert.equal(event!.comm, 'echo')
    assert.equal(event!.ppid, process.pid, 'the parent is this test process')
    assert.ok(client.received.split('\n').filter((l) => l !== '').every((l) => typeof JSON.parse(l) === 'object'), 'every line is one JSON object')
  } finally {
    socket.destroy()
    await h.close()
  }
})

test('links lists the kernel links of an open object with their program and target, as structured fields', async () => {
  const client = await runtimeWithRawClient()
  const { h, socket } = client
  try {
    socket.write(`${JSON.stringify({ id: 1, method: 'subscribe', params: { topic: 'exec:events' } })}\n`)
    await waitFor(() => client.received.includes('"subscribed"'), 'the subscription to be confirmed')
    socket.write(`${JSON.stringify({ id: 2, method: 'links' })}\n`)
    const answer = () => client.received.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { id: number; result?: { object: string; id: number; program: string; attach: string }[] }).find((m) => m.id === 2)
    await waitFor(() => answer() !== undefined, 'the links answer')
    const links = answer()!.result!
    assert.deepEqual(links.map(({ id: _id, ...rest }) => rest), [
      { object: 'exec', program: 'handle_exec', attach: 'tracepoint sched:sched_process_exec' },
      { object: 'exec', program: 'handle_exit', attach: 'tracepoint sched:sched_process_exit' },
      { object: 'exec', program: 'handle_fork', attach: 'raw_tp sched_process_fork' },
    ])
    // each id is the kernel's: bpftool finds that link, running that program
    for (const link of links) {
      const kernel = JSON.parse(execFileSync('bpftool', ['-j', 'link', 'show', 'id', String(link.id)]).toString()) as { id: number; prog_id: number }
      const program = JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'show', 'id', String(kernel.prog_id)]).toString()) as { name: string }
      assert.equal(program.name, link.program)
    }
  } finally {
    socket.destroy()
    await h.close()
  }
})

test('a client that stops reading has its events skipped and counted, not buffered', async () => {
  const client = await runtimeWithRawClient()
  const { h, socket, opened } = client
  try {
    socket.write(`${JSON.stringify({ id: 1, method: 'subscribe', params: { topic: 'loopgen:events' } })}\n`)
    await waitFor(() => client.received.includes('"subscribed"'), 'the subscription to be confirmed')
    // stop reading: the kernel socket buffer fills, then the server's pending writes grow
    socket.pause()
    const loopgen = opened.get('loopgen')!
    const args = new Uint8Array(8)
    new DataView(args.buffer).setUint32(0, 20_000, true)
    const total = 20 * 20_000
    for (let i = 0; i < 20; i++) {
      testRun(loopgen.object, 'generate', args)
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    await waitFor(() => loopgen.stats().received === total, 'every record to reach the runtime', 10_000)
    socket.resume()
    // only complete lines: the last one may still be arriving
    const lines = () => client.received.slice(0, client.received.lastIndexOf('\n') + 1).split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { event?: unknown; lost?: number })
    await waitFor(() => {
      const all = lines()
      return all.filter((m) => m.event !== undefined).length + all.reduce((sum, m) => sum + (m.lost ?? 0), 0) === total
    }, 'events plus counted losses to add up', 10_000)
    const lost = lines().reduce((sum, m) => sum + (m.lost ?? 0), 0)
    assert.ok(lost > 0, 'a client that does not read must lose events')
  } finally {
    socket.destroy()
    await h.close()
  }
})
