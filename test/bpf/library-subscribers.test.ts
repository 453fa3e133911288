/**
 * A stream subscriber that throws, through the real library provider (runtime/library/index.ts)
 * and the bus: the other subscribers still get every batch, the failure is logged with its stack
 * and causes, counted in the object's stats, and exported as periscope.bpf.listener.errors.
 */
import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { forEachRecord, type RecordBatch } from '../../runtime/bpf/batch.ts'
import { testRun } from '../../runtime/bpf/links.ts'
import { Bus } from '../../runtime/bus.ts'
import { createObjectProvider, type LibraryObject } from '../../runtime/library/index.ts'
import { objectSelfMetrics } from '../../runtime/self-metrics.ts'
import { waitFor } from './kernel.ts'

const RECORDS = 3000
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i)

const generate = (loopgen: LibraryObject, count: number): void => {
  const args = new Uint8Array(8)
  new DataView(args.buffer).setUint32(0, count, true)
  testRun(loopgen.object, 'generate', args)
}

/** Collects the sequence numbers of loopgen records. */
const collector = (into: number[]) => (batch: RecordBatch): void => {
  forEachRecord(batch, (view, offset) => { into.push(Number(view.getBigUint64(offset, true))) })
}

/** loopgen from the real provider, through a bus (whose listObjects the self-metrics read). */
async function openLoopgen(t: TestContext): Promise<{ bus: Bus; loopgen: LibraryObject; log: string[] }> {
  const log: string[] = []
  const bus = new Bus(await createObjectProvider((message) => log.push(message)))
  t.after(() => bus.close())
  // the real provider's objects are this class; the bus knows them by their interface
  return { bus, loopgen: await bus.acquire('loopgen', 'test') as LibraryObject, log }
}

const listenerErrorsMetric = (bus: Bus): [Record<string, unknown>, number][] =>
  objectSelfMetrics(bus).filter((p) => p.name === 'periscope.bpf.listener.errors').map((p) => [{ ...p.attributes }, p.value])

test('a subscriber that throws does not keep the batch from the next one; the failure is logged with its stack and cause, counted and exported', async (t) => {
  const { bus, loopgen, log } = await openLoopgen(t)
  const first: number[] = []
  const second: number[] = []
  let firstBatches = 0
  const rootCause = new Error('the root cause')
  const collectFirst = collector(first)
  loopgen.subscribe('events', function throwingSubscriber(batch) {
    collectFirst(batch)
    if (++firstBatches === 1) throw new Error('subscriber failed on purpose', { cause: rootCause })
  })
  loopgen.subscribe('events', collector(second))
  generate(loopgen, RECORDS / 2)
  await waitFor(() => second.length >= RECORDS / 2, 'the first half at the second subscriber')
  generate(loopgen, RECORDS / 2)
  await waitFor(() => second.length >= RECORDS && first.length >= RECORDS, `${RECORDS} records at both subscribers`)

  assert.deepEqual(second, range(RECORDS), 'the second subscriber gets every batch, the failed one too')
  assert.deepEqual(first, range(RECORDS), 'the throwing subscriber still gets the later batches')
  assert.equal(log.length, 1, log.join('\n---\n'))
  const [entry] = log
  assert.match(entry, /^Error: loopgen:events: the batch listener threw: 1 of 2 subscribers threw on this batch; the others received it/)
  assert.match(entry, /\n {2}caused by: AggregateError: 1 of 2 subscribers threw on this batch; the others received it\n {4}- Error: subscriber failed on purpose\n\s+at throwingSubscriber \(.*library-subscribers\.test\.ts:\d+:\d+\)/)
  assert.match(entry, /\n {8}caused by: Error: the root cause\n/)
  assert.deepEqual(loopgen.stats(), { received: RECORDS, dropped: 0, listenerErrors: 1 })
  assert.deepEqual(listenerErrorsMetric(bus), [[{ 'bpf.object': 'loopgen' }, 1]])
})

test('subscribers that all throw on one batch are each reported, and the batch is counted once', async (t) => {
  const { bus, loopgen, log } = await openLoopgen(t)
  let batches = 0
  const seqs: number[] = []
  loopgen.subscribe('events', collector(seqs))
  loopgen.subscribe('events', () => { throw new Error('first failed') })
  loopgen.subscribe('events', () => { batches++; throw new TypeError('second failed') })
  generate(loopgen, RECORDS)
  await waitFor(() => seqs.length >= RECORDS, `${RECORDS} records`)

  assert.deepEqual(seqs, range(RECORDS))
  assert.equal(log.length, batches, 'one log entry per failed batch')
  assert.match(log[0], /caused by: AggregateError: 2 of 3 subscribers threw on this batch; the others received it\n {4}- Error: first failed\n[^]*\n {4}- TypeError: second failed\n/)
  assert.equal(loopgen.stats().listenerErrors, batches)
  assert.deepEqual(listenerErrorsMetric(bus), [[{ 'bpf.object': 'loopgen' }, batches]])
})
