/**
 * A plugin may choose a span's id (SpanInput.spanId) so that spans it emits later name it as their
 * parent; a malformed id is refused and counted, never exported with a random id in its place.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { resourceFromAttributes } from '@opentelemetry/resources'
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base'
import { TracePipeline } from '../../runtime/telemetry/traces.ts'

const T0 = 1_767_225_600_000_000_000
const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736'

function pipeline() {
  const delivered: ReadableSpan[] = []
  const traces = new TracePipeline({
    runtimeResource: resourceFromAttributes({ 'service.name': 'periscope' }),
    ratio: 1,
    keepErrors: true,
    deliver: (spans) => delivered.push(...spans),
  })
  return { traces, delivered }
}

test('a chosen span id is exported as the span\'s id, and a child names it as its parent', () => {
  const { traces, delivered } = pipeline()
  const problem = traces.emit('http', undefined, [
    { name: 'server', kind: 'server', startTimeNs: T0, endTimeNs: T0 + 10, traceId: TRACE, spanId: '1111222233334444' },
    { name: 'client', kind: 'client', startTimeNs: T0 + 1, endTimeNs: T0 + 9, traceId: TRACE, parentSpanId: '1111222233334444', spanId: 'aaaabbbbccccdddd' },
    { name: 'no trace id', startTimeNs: T0, endTimeNs: T0 + 1, spanId: '00000000000000ff' },
  ], () => undefined)
  assert.equal(problem, undefined)
  assert.deepEqual(delivered.map((s) => [s.name, s.spanContext().traceId === TRACE, s.spanContext().spanId, s.parentSpanContext?.spanId]), [
    ['server', true, '1111222233334444', undefined],
    ['client', true, 'aaaabbbbccccdddd', '1111222233334444'],
    ['no trace id', false, '00000000000000ff', undefined],
  ])
  assert.deepEqual(traces.stats(), { sampledOut: 0, rejected: 0, contextJoined: 0, contextUnjoined: 0 })
})

test('malformed span ids are refused and counted; the other spans of the batch go out', () => {
  const { traces, delivered } = pipeline()
  const bad = ['0000000000000000', 'ABCDEFABCDEFABCD', '123', '1111222233334444ff', 42 as unknown as string, 'zzzzzzzzzzzzzzzz']
  const problem = traces.emit('http', undefined, [
    ...bad.map((spanId) => ({ name: `bad ${String(spanId)}`, startTimeNs: T0, endTimeNs: T0 + 1, spanId })),
    { name: 'good', startTimeNs: T0, endTimeNs: T0 + 1 },
  ], () => undefined)
  assert.equal(problem, 'span "bad 0000000000000000": spanId "0000000000000000" is not 16 lowercase hex digits (non-zero)')
  assert.deepEqual(delivered.map((s) => s.name), ['good'])
  assert.match(delivered[0]!.spanContext().spanId, /^[0-9a-f]{16}$/)
  assert.deepEqual(traces.stats(), { sampledOut: 0, rejected: bad.length, contextJoined: 0, contextUnjoined: 0 })
})
