/**
 * Streams without a kernel: the operators over `Stream.from()` and a source that records when
 * it is opened and closed, and the aggregates' output against what Debian's bpftrace 0.17
 * printed for the same events (repl-stream-cases.ts; test/bpf/repl-trace.test.ts checks those
 * bytes against bpftrace itself and runs `trace()` on the kernel).
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { endIterations, Stream, type Source } from '../../repl/stream.ts'
import { AGGREGATIONS, BPFTRACE_0_17, caseName, EVENTS, type Sample } from './repl-stream-cases.ts'

/** Runs `runnable` to its end and returns what it printed. */
async function output(runnable: { run(out: { write(text: string): void }, signal: AbortSignal): Promise<void> }, signal = new AbortController().signal): Promise<string> {
  let text = ''
  await runnable.run({ write: (chunk) => { text += chunk } }, signal)
  return text
}

/** A source that delivers pushes on demand and records opens and closes, as a kernel source would attach and detach. */
function manualSource<T>() {
  const state = { opened: 0, closed: 0, lost: 0, push: undefined as ((event: T) => void) | undefined, end: undefined as ((error?: unknown) => void) | undefined }
  const source: Source<T> = {
    async open(push, end) {
      state.opened++
      state.push = push
      state.end = end
      return { dropped: () => state.lost, close: () => { state.closed++ } }
    },
  }
  return { source, state }
}

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setImmediate(resolve))
}

test('filter, map and take pass the events bpftrace-style one-liners would, in order', async () => {
  const seen: unknown[] = []
  for await (const value of Stream.from(EVENTS).filter((e) => e.comm === 'sshd').map((e) => e.bytes).take(4)) seen.push(value)
  assert.deepEqual(seen, [0, 3, 64, 1])
})

test('take(n) ends the run and closes the source once n events passed, and ignores later pushes', async () => {
  const { source, state } = manualSource<number>()
  let text = ''
  const running = new Stream(source).take(2).run({ write: (t) => { text += t } }, new AbortController().signal)
  await until(() => state.push !== undefined)
  // three in one batch, as a ring-buffer batch delivers them: the third is past take(2)
  state.push!(1)
  state.push!(2)
  state.push!(3)
  await running
  assert.equal(text, '1\n2\n')
  assert.deepEqual([state.opened, state.closed], [1, 1])
})

test('aborting the signal (Ctrl-C) ends a run and closes the source; an aggregate still prints its map', async () => {
  const { source, state } = manualSource<Sample>()
  const stop = new AbortController()
  let text = ''
  const running = new Stream(source).count('comm').run({ write: (t) => { text += t } }, stop.signal)
  await until(() => state.push !== undefined)
  for (const event of EVENTS) state.push!(event)
  stop.abort()
  await running
  assert.equal(text, BPFTRACE_0_17['count by comm'])
  assert.deepEqual([state.opened, state.closed], [1, 1])
})

test('breaking out of for await closes the source', async () => {
  const { source, state } = manualSource<number>()
  const stream = new Stream(source)
  const feeding = until(() => state.push !== undefined).then(() => { for (let i = 0; i < 10; i++) state.push!(i) })
  const seen: number[] = []
  for await (const value of stream) {
    seen.push(value)
    if (value === 4) break
  }
  await feeding
  assert.deepEqual(seen, [0, 1, 2, 3, 4])
  assert.deepEqual([state.opened, state.closed], [1, 1])
})

test('endIterations() ends the for await loops that wait, as Ctrl-C in the REPL does: the loop ends and the source closes; a loop that ended is not touched', async () => {
  const { source, state } = manualSource<number>()
  const seen: number[] = []
  const waiting = (async () => {
    for await (const value of new Stream(source)) seen.push(value)
  })()
  await until(() => state.push !== undefined)
  state.push!(1)
  state.push!(2)
  // the loop has taken both and waits for more
  await until(() => seen.length === 2)
  endIterations()
  await waiting
  assert.deepEqual(seen, [1, 2])
  assert.deepEqual([state.opened, state.closed], [1, 1])
  endIterations()
  assert.deepEqual([state.opened, state.closed], [1, 1])
})

test('a for await loop that falls 100,000 events behind fails with what to do instead, after the events it had, and the source closes', async () => {
  const { source, state } = manualSource<number>()
  const iterator = new Stream(source)[Symbol.asyncIterator]()
  const first = iterator.next()
  await until(() => state.push !== undefined)
  // one callback's worth of events with the loop not running
  for (let i = 0; i <= 100_000; i++) state.push!(i)
  assert.deepEqual(await first, { value: 0, done: false })
  let received = 1
  await assert.rejects(async () => {
    while (!(await iterator.next()).done) received++
  }, /fell 100000 events behind the stream and stopped it: filter or aggregate in the stream/)
  assert.equal(received, 100_000)
  assert.equal(state.closed, 1)
})

test('a function that throws ends the run with its error and closes the source', async () => {
  const { source, state } = manualSource<number>()
  const running = new Stream(source).map((n) => { if (n === 2) throw new Error('bad event 2'); return n }).run({ write: () => {} }, new AbortController().signal)
  await until(() => state.push !== undefined)
  state.push!(1)
  state.push!(2)
  await assert.rejects(running, /bad event 2/)
  assert.equal(state.closed, 1)
})

test('each run attaches again; an aborted signal never attaches', async () => {
  const { source, state } = manualSource<number>()
  const stream = new Stream(source).take(1)
  for (let run = 1; run <= 2; run++) {
    const running = output(stream)
    await until(() => state.opened === run)
    state.push!(run)
    assert.equal(await running, `${run}\n`)
  }
  const aborted = new AbortController()
  aborted.abort()
  await output(stream, aborted.signal)
  assert.deepEqual([state.opened, state.closed], [2, 2])
})

for (const aggregation of Object.keys(AGGREGATIONS)) {
  for (const keyed of [false, true]) {
    for (const json of [false, true]) {
      const name = caseName(aggregation, keyed, json)
      test(`.${name} prints what bpftrace 0.17 printed for the same map`, async () => {
        const made = AGGREGATIONS[aggregation].make(Stream.from(EVENTS), keyed ? 'comm' : undefined)
        assert.equal(await output(json ? made.json() : made), BPFTRACE_0_17[name])
      })
    }
  }
}

test('top(2) prints what bpftrace prints for print(@, 2), of a count and of a hist map, in text and JSON', async () => {
  for (const aggregation of ['count', 'hist']) {
    for (const json of [false, true]) {
      const top = AGGREGATIONS[aggregation].make(Stream.from(EVENTS), 'comm').top(2)
      const printed = await output(json ? top.json() : top)
      // bpftrace's case prints print(@, 2), then clears @ and prints the empty map at exit ("\n" in text, nothing in JSON)
      assert.equal(printed, `\n\n${BPFTRACE_0_17[caseName(aggregation, true, json, 2)].slice(0, json ? -2 : -3)}`)
    }
  }
})

test('a function key and a two-part key print as @[key] and @[a, b]', async () => {
  assert.equal(await output(Stream.from(EVENTS).count((e) => e.bytes > 100)), '\n\n@[1]: 3\n@[0]: 9\n')
  const twoPart = await output(Stream.from(EVENTS.slice(0, 3)).sum('bytes', ['comm', (e) => e.bytes % 2]))
  assert.equal(twoPart, '\n\n@[sshd, 0]: 0\n@[bash, 1]: 1\n@[sshd, 1]: 3\n')
})

test('every() prints the map at each interval and keeps it; the end prints it as bpftrace exits', async () => {
  const { source, state } = manualSource<Sample>()
  const stop = new AbortController()
  let text = ''
  const running = new Stream(source).count().every('10ms').run({ write: (t) => { text += t } }, stop.signal)
  await until(() => state.push !== undefined)
  state.push!(EVENTS[0])
  await until(() => text.includes('@: 1\n'))
  state.push!(EVENTS[1])
  await until(() => text.includes('@: 2\n'))
  stop.abort()
  await running
  const lines = text.split('\n')
  assert.deepEqual(lines.slice(-4), ['', '', '@: 2', ''])
  assert.ok(lines.slice(0, -4).every((line) => line === '@: 1' || line === '@: 2'), text)
})

test('snapshot() is the map so far during a run and what it ended with after it', async () => {
  const { source, state } = manualSource<Sample>()
  const stop = new AbortController()
  const counts = new Stream(source).count('comm')
  assert.deepEqual(counts.snapshot().entries, [])
  const running = output(counts, stop.signal)
  await until(() => state.push !== undefined)
  state.push!(EVENTS[0])
  assert.deepEqual(counts.snapshot().entries, [{ key: ['sshd'], value: 1n }])
  state.push!(EVENTS[1])
  stop.abort()
  await running
  assert.deepEqual(counts.snapshot(), { name: '@', kind: 'count', signed: false, keys: ['string'], entries: [{ key: ['sshd'], value: 1n }, { key: ['bash'], value: 1n }] })
})

test('lost events print as bpftrace prints them, in text and JSON', async () => {
  for (const json of [false, true]) {
    const { source, state } = manualSource<Sample>()
    state.lost = 7
    const running = output(json ? new Stream(source).json() : new Stream(source))
    await until(() => state.end !== undefined)
    state.push!(EVENTS[0])
    state.end!()
    assert.equal(await running, json
      ? '{"type": "event", "data": {"comm": "sshd", "bytes": 0}}\n{"type": "lost_events", "data": {"events": 7}}\n'
      : "{ comm: 'sshd', bytes: 0 }\nLost 7 events\n")
  }
})

test('print() prints each event as it passes and still feeds the aggregate after it', async () => {
  const printed = await output(Stream.from(EVENTS.slice(0, 2)).map((e) => e.comm).print().count())
  assert.equal(printed, 'sshd\nbash\n\n\n@: 2\n')
})

test('field names the stream knows are checked before anything attaches; bad arguments say what to give', () => {
  const stream = new Stream<Sample>({ open: () => { throw new Error('must not attach') } }, undefined, { what: 'tracepoint:x:y', top: ['comm'], args: ['bytes'] })
  assert.throws(() => stream.count('byte'), { message: '.count("byte"): tracepoint:x:y events have no field byte; they have comm, args.bytes' })
  assert.doesNotThrow(() => stream.hist('args.bytes', 'comm'))
  assert.throws(() => stream.take(0), RangeError)
  assert.throws(() => stream.lhist('bytes', 10, 5, 1), { message: 'lhist() min must be less than max' })
  assert.throws(() => stream.lhist('bytes', 0, 10000, 1), { message: 'lhist() too many buckets, must be <= 1000' })
  assert.throws(() => stream.count().every('soon'), /every\("soon"\): give an interval/)
})

test('a value that is not an integer, and a key that changes type, end the run with an error', async () => {
  await assert.rejects(output(Stream.from([{ v: 'x' }]).sum('v')), /sum\(\): 'x' is not an integer/)
  await assert.rejects(output(Stream.from([{ k: 1 }, { k: 'a' }]).count('k')), /key part 1 was an integer, then 'a'/)
})
