import { test } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { ExportQueue } from '../../runtime/telemetry/queue.ts'
import type { ExportQueueOptions } from '../../runtime/telemetry/queue.ts'
import { pollUntil } from '../peers/poll.ts'

/** A destination that can be switched up and down, recording what it accepted. */
function destination() {
  const state = { up: true, accepted: [] as number[][], attempts: 0 }
  const send = async (batch: number[]): Promise<void> => {
    state.attempts++
    await sleep(1)
    if (!state.up) throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:4318'), { code: 'ECONNREFUSED' })
    state.accepted.push(batch)
  }
  return { state, send }
}

function queue(send: (batch: number[]) => Promise<void>, overrides: Partial<ExportQueueOptions<number>> = {}, logs: string[] = []) {
  return new ExportQueue<number>({
    signal: 'traces',
    destination: 'http://127.0.0.1:4318/v1/traces',
    capacity: 100,
    maxBatch: 10,
    maxInFlight: 1,
    intervalMs: 20,
    initialBackoffMs: 20,
    maxBackoffMs: 50,
    send,
    log: (level, message) => logs.push(`${level}: ${message}`),
    ...overrides,
  })
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i)

test('batches are sent in order, at most maxBatch at a time', async () => {
  const { state, send } = destination()
  const q = queue(send)
  q.push(range(0, 25))
  await q.flush(Date.now() + 2000)
  assert.deepEqual(state.accepted, [range(0, 10), range(10, 20), range(20, 25)])
  assert.deepEqual(q.stats(), { queued: 0, inFlight: 0, capacity: 100, sent: 25, failedExports: 0, dropped: 0, droppedAtShutdown: 0, rejected: 0 })
  await q.close(Date.now())
})

test('a full queue drops the oldest items, counts them exactly, and keeps the newest', async () => {
  const { state, send } = destination()
  state.up = false
  const logs: string[] = []
  const q = queue(send, { capacity: 30 }, logs)
  for (let i = 0; i < 100; i += 5) {
    q.push(range(i, i + 5))
    await sleep(3)
  }
  // wait for a failure with nothing in flight: the failed batch is back at the head of the queue
  while (!(q.stats().failedExports > 0 && q.stats().inFlight === 0)) await sleep(2)
  assert.equal(q.stats().queued, 30)
  assert.equal(q.stats().dropped, 70)
  assert.equal(q.stats().sent, 0)
  assert.equal(logs.filter((l) => l.startsWith('warn')).length, 1, 'one warning per outage, not one per retry')
  assert.match(logs[0], /^warn: traces: export to http:\/\/127\.0\.0\.1:4318\/v1\/traces failed: connect ECONNREFUSED 127\.0\.0\.1:4318\. Retrying with backoff; up to 30 item\(s\) are kept/)

  state.up = true
  await q.flush(Date.now() + 2000)
  assert.deepEqual(state.accepted.flat(), range(70, 100))
  assert.equal(q.stats().sent, 30)
  assert.ok(logs.some((l) => /^info: traces: export to .* recovered after \d+ failed attempt\(s\); 70 item\(s\) dropped so far$/.test(l)))
  await q.close(Date.now())
})

test('retries back off exponentially up to the maximum', async () => {
  const { state, send } = destination()
  state.up = false
  const q = queue(send, { initialBackoffMs: 40, maxBackoffMs: 80, intervalMs: 5 })
  q.push([1])
  await sleep(600)
  // attempts at ~0, 40, 120, 200, 280, ... (±20% jitter): far fewer than the 5 ms interval allows
  const attempts = state.attempts
  assert.ok(attempts >= 5 && attempts <= 9, `attempts: ${attempts}`)
  await q.close(Date.now())
  // an attempt can be in flight at the count above: its failure is counted when it returns
  await pollUntil(() => q.stats().failedExports === state.attempts, { what: `every attempt counted failed (${q.stats().failedExports} of ${state.attempts})`, timeoutMs: 5000 })
  assert.ok(state.attempts - attempts <= 1, 'no attempt after close')
})

test('a refused batch (not retryable) is counted as rejected and not retried', async () => {
  let attempts = 0
  const logs: string[] = []
  const q = queue(
    async () => {
      attempts++
      throw Object.assign(new Error('HTTP 400 Bad Request'), { retryable: false })
    },
    {},
    logs,
  )
  q.push([1, 2, 3])
  await q.flush(Date.now() + 500)
  assert.equal(attempts, 1)
  assert.equal(q.stats().rejected, 3)
  assert.equal(q.stats().queued, 0)
  assert.match(logs.find((l) => l.startsWith('error')) ?? '', /refused 3 item\(s\) for good: HTTP 400 Bad Request/)
  await q.close(Date.now())
})

test('close flushes within its deadline, then counts what is left as dropped at shutdown', async () => {
  const { state, send } = destination()
  state.up = false
  const logs: string[] = []
  const q = queue(send, {}, logs)
  q.push(range(0, 15))
  const started = Date.now()
  await q.close(started + 150)
  assert.ok(Date.now() - started < 400, 'close respects its deadline')
  assert.equal(q.stats().droppedAtShutdown, 15)
  assert.ok(logs.some((l) => l.includes('15 item(s) not exported before the shutdown deadline')))
  q.push([99])
  assert.equal(q.stats().dropped, 1, 'pushes after close are counted, not kept')
})

test('exported items are let go while the queue never empties under load', async () => {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  let sends = 0
  let feeding = true
  const item = () => ({ payload: new Array(16).fill(sends) })
  const q = new ExportQueue<object>({
    signal: 'traces', destination: 'test', capacity: 1000, maxBatch: 10, maxInFlight: 1, intervalMs: 20,
    initialBackoffMs: 20, maxBackoffMs: 50, log: () => {},
    // each export brings as many new items as it takes, so the queue always holds a batch more
    send: async () => {
      sends++
      if (feeding) q.push(Array.from({ length: 10 }, item))
      await sleep(0)
    },
  })
  const refs = ((): WeakRef<object>[] => {
    const first = Array.from({ length: 20 }, item)
    q.push(first)
    return first.map((o) => new WeakRef(o))
  })()
  while (sends < 50) await sleep(1)
  feeding = false
  assert.ok(q.stats().queued > 0, 'the queue was never empty')
  await sleep(0)
  gc()
  assert.equal(refs.filter((r) => r.deref() !== undefined).length, 0, 'items exported 48 batches ago are collectable')
  await q.close(Date.now() + 1000)
  assert.equal(q.stats().sent, 20 + 10 * 50)
})

test('up to maxInFlight batches are sent at once; a failing destination gets one at a time', async () => {
  const pending: { batch: number[]; resolve(): void; reject(error: Error): void }[] = []
  const q = queue((batch) => new Promise((resolve, reject) => pending.push({ batch, resolve, reject })), { maxInFlight: 3, initialBackoffMs: 10, maxBackoffMs: 10 })
  q.push(range(0, 45))
  await sleep(5)
  assert.deepEqual(pending.map((p) => p.batch), [range(0, 10), range(10, 20), range(20, 30)], 'three full batches at once, oldest first')
  assert.deepEqual([q.stats().inFlight, q.stats().queued], [30, 15])
  pending.shift()!.resolve()
  await sleep(1)
  assert.deepEqual(pending.map((p) => p.batch[0]), [10, 20, 30], 'a freed flight takes the next full batch at once')
  assert.equal(q.stats().queued, 5, 'a partial batch waits for the interval')

  for (const p of pending.splice(0)) p.reject(new Error('connect ECONNREFUSED'))
  await sleep(5)
  assert.equal(q.stats().queued, 35, 'failed batches are back in the queue')
  while (pending.length === 0) await sleep(1)
  await sleep(5)
  assert.equal(pending.length, 1, 'while failing, one probe at a time')
  assert.deepEqual(pending[0]!.batch, range(10, 20), 'the oldest batch is retried first')
  pending.shift()!.resolve()
  while (pending.length < 3) await sleep(1)
  assert.deepEqual(pending.map((p) => p.batch[0]), [20, 30, 40], 'recovered: three at once again')
  for (const p of pending.splice(0)) p.resolve()
  await q.flush(Date.now() + 1000)
  assert.equal(q.stats().sent, 45)
  await q.close(Date.now())
})
