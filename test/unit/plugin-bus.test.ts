/** The bus: objects are refcounted across users, one kernel subscription per stream fans out. */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Bus } from '../../runtime/bus.ts'
import { SyntheticProvider } from '../plugin-fixtures/synthetic.ts'

describe('bus', () => {
  it('opens an object once and closes it after the last user', async () => {
    const provider = new SyntheticProvider()
    const bus = new Bus(provider)
    const [a, b] = await Promise.all([bus.acquire('gen', 'a'), bus.acquire('gen', 'b')])
    assert.equal(a, b)
    assert.equal(provider.opened.length, 1)
    await bus.release('gen', 'a')
    assert.equal(provider.gen.closed, false)
    await bus.release('gen', 'b')
    assert.equal(provider.opened[0]!.closed, true)
    assert.deepEqual(bus.listObjects(), [])
  })

  it('fans one stream subscription out to every listener', async () => {
    const provider = new SyntheticProvider()
    const bus = new Bus(provider)
    await bus.acquire('gen', 'a')
    const seen: number[] = []
    const stopA = bus.subscribe('gen:events', (batch) => seen.push(batch.count))
    bus.subscribe('gen:events', (batch) => seen.push(-batch.count))
    provider.gen.push('events', 3)
    assert.deepEqual(seen, [3, -3])
    assert.equal(provider.gen.subscribeCalls, 1)
    stopA()
    provider.gen.push('events', 2)
    assert.deepEqual(seen, [3, -3, -2])
    assert.deepEqual(bus.listStreams(), [{ topic: 'gen:events', listeners: 1, batches: 2, records: 5, lost: 0 }])
    await bus.close()
  })

  it('gives every listener the batch when one throws, then rethrows what it threw', async () => {
    const provider = new SyntheticProvider()
    const bus = new Bus(provider)
    await bus.acquire('gen', 'a')
    const seen: string[] = []
    bus.subscribe('gen:events', () => { seen.push('first'); throw new RangeError('first broke') })
    bus.subscribe('gen:events', () => { seen.push('second') })
    assert.throws(() => provider.gen.push('events', 1), { name: 'RangeError', message: 'first broke' })
    assert.deepEqual(seen, ['first', 'second'])
    bus.subscribe('gen:events', () => { throw new TypeError('third broke') })
    assert.throws(() => provider.gen.push('events', 1), (e: AggregateError) =>
      e.message === "2 listeners of 'gen:events' threw" && e.errors.map((x: Error) => x.message).join() === 'first broke,third broke')
    assert.deepEqual(seen, ['first', 'second', 'first', 'second'])
    await bus.close()
  })

  it('explains bad topics and failed opens', async () => {
    const bus = new Bus(new SyntheticProvider())
    assert.throws(() => bus.subscribe('gen', () => {}), /topic 'gen' is not '<object>:<map>'/)
    assert.throws(() => bus.subscribe('gen:events', () => {}), /object 'gen' is not open; acquire it first/)
    await assert.rejects(bus.acquire('tcp', 'a'), /open object 'tcp': no object 'tcp' in the synthetic library/)
    assert.deepEqual(bus.listObjects(), [])
  })
})
