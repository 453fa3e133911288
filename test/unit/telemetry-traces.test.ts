import { test } from 'node:test'
import assert from 'node:assert/strict'
import { SpanKind, SpanStatusCode } from '@opentelemetry/api'
import { resourceFromAttributes } from '@opentelemetry/resources'
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base'
import { TracePipeline, copyAttributes, nsToHrTime } from '../../runtime/telemetry/traces.ts'
import { ProcessResources } from '../../runtime/telemetry/resource.ts'
import type { SpanInput } from '../../runtime/telemetry/signals.ts'

const T0 = 1_767_225_600_000_000_000

function pipeline(ratio = 1, keepErrors = true) {
  const delivered: ReadableSpan[] = []
  const traces = new TracePipeline({
    runtimeResource: resourceFromAttributes({ 'service.name': 'periscope' }),
    ratio,
    keepErrors,
    deliver: (spans) => delivered.push(...spans),
  })
  return { traces, delivered }
}

const randomTraceId = () => Array.from({ length: 32 }, () => Math.floor(Math.random() * 16).toString(16)).join('')

test('a span is built with the given trace id, parent, times, events and status', () => {
  const { traces, delivered } = pipeline()
  const problem = traces.emit('http', '1.0.0', [
    {
      name: 'GET /',
      kind: 'server',
      startTimeNs: T0 + 123_456_789,
      endTimeNs: T0 + 223_456_789,
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      parentSpanId: '00f067aa0ba902b7',
      attributes: { 'http.request.method': 'GET', 'http.response.status_code': 200 },
      events: [{ name: 'ev', timeNs: T0 + 150_000_000 }],
      status: { code: 'ok', message: 'ignored for ok' },
    },
  ], () => undefined)
  assert.equal(problem, undefined)
  assert.equal(delivered.length, 1)
  const [span] = delivered
  assert.equal(span.spanContext().traceId, '4bf92f3577b34da6a3ce929d0e0e4736')
  assert.equal(span.parentSpanContext?.spanId, '00f067aa0ba902b7')
  assert.equal(span.parentSpanContext?.isRemote, true)
  assert.equal(span.kind, SpanKind.SERVER)
  assert.deepEqual(span.startTime, [1_767_225_600, 123_456_768]) // the double nearest T0 + 123456789
  assert.deepEqual(span.endTime, nsToHrTime(T0 + 223_456_789))
  assert.deepEqual(span.attributes, { 'http.request.method': 'GET', 'http.response.status_code': 200 })
  assert.deepEqual(span.events.map((e) => [e.name, e.time]), [['ev', nsToHrTime(T0 + 150_000_000)]])
  assert.deepEqual(span.status, { code: SpanStatusCode.OK })
  assert.deepEqual(span.instrumentationScope, { name: 'http', version: '1.0.0', schemaUrl: undefined })
  assert.equal(span.resource.attributes['service.name'], 'periscope')
})

test('a trace id without a parent starts a span in that trace; other spans get fresh ids', () => {
  const { traces, delivered } = pipeline()
  traces.emit('x', undefined, [
    { name: 'root', startTimeNs: T0, endTimeNs: T0 + 1, traceId: 'a3ce929d0e0e47364bf92f3577b34da6' },
    { name: 'fresh', startTimeNs: T0, endTimeNs: T0 + 1 },
  ], () => undefined)
  assert.equal(delivered[0].spanContext().traceId, 'a3ce929d0e0e47364bf92f3577b34da6')
  assert.equal(delivered[0].parentSpanContext, undefined)
  assert.notEqual(delivered[1].spanContext().traceId, 'a3ce929d0e0e47364bf92f3577b34da6')
})

test('attributes are cleaned and limited as the SDK span does', () => {
  const span: Record<string, unknown> = {}
  const dropped = copyAttributes(
    { '': 'empty key', s: 'abcdef', n: 1, nul: null, obj: { nested: 1 }, mixed: [1, 'a'], list: ['abcdef', 'x'], b: true, late: 'over the limit' },
    span as never,
    4,
    3,
    false,
  )
  assert.deepEqual(span, { s: 'abc', n: 1, list: ['abc', 'x'], b: true })
  assert.equal(dropped, 1)

  const event: Record<string, unknown> = {}
  assert.equal(copyAttributes({ nul: null, s: 'abcdef' }, event as never, 128, Infinity, true), 0)
  assert.deepEqual(event, { nul: null, s: 'abcdef' })

  const list = ['a']
  const copy: Record<string, unknown> = {}
  copyAttributes({ list }, copy as never, 128, Infinity, false)
  assert.notEqual(copy.list, list, 'arrays are copied, so a plugin reusing one cannot change a queued span')
})

test('span limits come from the OTEL_* variables the SDK reads', () => {
  const limits = { OTEL_ATTRIBUTE_COUNT_LIMIT: '2', OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT: '4', OTEL_SPAN_EVENT_COUNT_LIMIT: '2', OTEL_SPAN_ATTRIBUTE_PER_EVENT_COUNT_LIMIT: '1' }
  Object.assign(process.env, limits)
  let traces: TracePipeline
  let delivered: ReadableSpan[]
  try {
    ;({ traces, delivered } = pipeline())
  } finally {
    for (const key of Object.keys(limits)) delete process.env[key]
  }
  traces.emit('x', undefined, [
    {
      name: 'limited',
      startTimeNs: T0,
      endTimeNs: T0 + 2e9,
      attributes: { a: 'long value', b: 2, c: 3 },
      events: [1, 2, 3].map((i) => ({ name: `e${i}`, timeNs: T0 + i, attributes: { x: i, y: i } })),
    },
  ], () => undefined)
  const [span] = delivered
  assert.deepEqual(span.attributes, { a: 'long', b: 2 })
  assert.equal(span.droppedAttributesCount, 1)
  assert.deepEqual(span.events.map((e) => [e.name, e.attributes, e.droppedAttributesCount]), [['e2', { x: 2 }, 1], ['e3', { x: 3 }, 1]])
  assert.equal(span.droppedEventsCount, 1)
  assert.deepEqual(span.duration, [2, 0])
})

test('spans share their scope and resource objects, which the OTLP serializers group by', () => {
  const { traces, delivered } = pipeline()
  const nginx = resourceFromAttributes({ 'service.name': 'nginx' })
  const input = (name: string, pid?: number): SpanInput => ({ name, startTimeNs: T0, endTimeNs: T0 + 1, process: pid === undefined ? undefined : { pid } })
  traces.emit('http', '1.0.0', [input('a', 1), input('b')], (span) => (span.process === undefined ? undefined : nginx))
  traces.emit('http', '1.0.0', [input('c', 1)], () => nginx)
  traces.emit('dns', undefined, [input('d', 1)], () => nginx)
  const [a, b, c, d] = delivered
  assert.equal(a.resource, nginx)
  assert.equal(b.resource.attributes['service.name'], 'periscope')
  assert.equal(a.instrumentationScope, c.instrumentationScope)
  assert.deepEqual(d.instrumentationScope, { name: 'dns', version: undefined, schemaUrl: undefined })
  assert.equal(a.spanContext().traceFlags, 1)
  assert.match(a.spanContext().spanId, /^[0-9a-f]{16}$/)
  assert.notEqual(a.spanContext().spanId, c.spanContext().spanId)
})

test('ratio 0 with keepErrors drops every span except errors', () => {
  const { traces, delivered } = pipeline(0, true)
  const spans: SpanInput[] = Array.from({ length: 100 }, (_, i) => ({
    name: `s${i}`,
    startTimeNs: T0,
    endTimeNs: T0 + 1,
    status: i % 10 === 0 ? { code: 'error' } : { code: 'ok' },
  }))
  traces.emit('x', undefined, spans, () => undefined)
  assert.deepEqual(delivered.map((s) => s.name), ['s0', 's10', 's20', 's30', 's40', 's50', 's60', 's70', 's80', 's90'])
  assert.equal(traces.stats().sampledOut, 90)

  const strict = pipeline(0, false)
  strict.traces.emit('x', undefined, spans, () => undefined)
  assert.equal(strict.delivered.length, 0)
})

test('ratio sampling keeps about the ratio, and decides per trace id', () => {
  const { traces, delivered } = pipeline(0.25, true)
  const ids = Array.from({ length: 4000 }, randomTraceId)
  traces.emit('x', undefined, ids.map((traceId) => ({ name: 'a', startTimeNs: T0, endTimeNs: T0 + 1, traceId })), () => undefined)
  const kept = new Set(delivered.map((s) => s.spanContext().traceId))
  assert.ok(kept.size > 800 && kept.size < 1200, `kept ${kept.size} of 4000 at ratio 0.25`)
  delivered.length = 0
  // the same traces again, as children: exactly the same ones are kept
  traces.emit('x', undefined, ids.map((traceId) => ({ name: 'b', startTimeNs: T0, endTimeNs: T0 + 1, traceId, parentSpanId: '00f067aa0ba902b7' })), () => undefined)
  assert.deepEqual(new Set(delivered.map((s) => s.spanContext().traceId)), kept)
})

test('malformed spans are rejected with a reason, counted, and do not stop the batch', () => {
  const { traces, delivered } = pipeline()
  const problem = traces.emit('x', undefined, [
    { name: 'bad ids', startTimeNs: T0, endTimeNs: T0 + 1, traceId: 'XYZ' },
    { name: 'backwards', startTimeNs: T0 + 1_000_000, endTimeNs: T0 },
    { name: 'bad parent', startTimeNs: T0, endTimeNs: T0 + 1, traceId: '4bf92f3577b34da6a3ce929d0e0e4736', parentSpanId: '0000000000000000' },
    { name: 'bad kind', startTimeNs: T0, endTimeNs: T0 + 1, kind: 'sideways' as never },
    null as never,
    { name: 'good', startTimeNs: T0, endTimeNs: T0 + 1 },
  ], () => undefined)
  assert.equal(problem, 'span "bad ids": traceId "XYZ" is not 32 lowercase hex digits (non-zero)')
  assert.equal(traces.stats().rejected, 5)
  assert.deepEqual(delivered.map((s) => s.name), ['good'])
})

test('process resources: service.name from rule, plugin, executable, command; LRU bounded', () => {
  const processes = new ProcessResources<number>(
    2,
    { 'host.name': 'h' },
    { 'service.name': 'not-for-processes', team: 'sre' },
    [{ commandLine: '^java .*-jar billing\\.jar', serviceName: 'billing' }],
    () => 0,
  )
  const java = processes.get({ pid: 1, executablePath: '/usr/bin/java', commandLine: 'java -Xmx1g -jar billing.jar' }).resource.attributes
  assert.deepEqual(java, {
    'host.name': 'h',
    team: 'sre',
    'collection.method': 'ebpf',
    'telemetry.sdk.name': 'opentelemetry',
    'telemetry.sdk.language': 'nodejs',
    'telemetry.sdk.version': '2.12.1',
    'telemetry.distro.name': 'periscope',
    'process.pid': 1,
    'service.name': 'billing',
    'process.executable.path': '/usr/bin/java',
    'process.executable.name': 'java',
    'process.command_line': 'java -Xmx1g -jar billing.jar',
  })
  assert.equal(processes.serviceNameOf({ pid: 2, executablePath: '/usr/sbin/nginx', serviceName: 'frontend' }), 'frontend')
  assert.equal(processes.serviceNameOf({ pid: 2, executablePath: '/usr/sbin/nginx' }), 'nginx')
  assert.equal(processes.serviceNameOf({ pid: 2, command: 'redis-server' }), 'redis-server')
  assert.equal(processes.serviceNameOf({ pid: 2 }), 'unknown_service:pid2')

  const lookup = processes.batchLookup()
  const nginx = lookup({ pid: 3, executablePath: '/usr/sbin/nginx' })
  assert.equal(lookup({ pid: 3, executablePath: '/usr/sbin/nginx' }), nginx, 'one cache entry per process within a batch')
  assert.notEqual(lookup({ pid: 3, executablePath: '/usr/bin/curl' }), nginx, 'a pid reused by another executable is another process')
  assert.equal(processes.get({ pid: 3, executablePath: '/usr/sbin/nginx' }), nginx)

  const first = processes.get({ pid: 10 })
  processes.get({ pid: 11 })
  processes.get({ pid: 12 })
  assert.equal(processes.size, 2)
  assert.notEqual(processes.get({ pid: 10 }), first, 'an evicted process gets a fresh entry')
})

test('a client span made in a thread context waits for the server span of that context, then joins its trace as its child', () => {
  const { traces, delivered } = pipeline()
  const client = (name: string, parentContext: number): SpanInput => ({ name, kind: 'client', startTimeNs: T0 + 10, endTimeNs: T0 + 20, parentContext })
  traces.emit('redis', undefined, [client('GET', 7), client('SET', 7), client('PING', 8)], () => undefined)
  assert.equal(delivered.length, 0, 'the children wait for their parent')
  traces.emit('http', undefined, [{ name: 'GET /a', kind: 'server', startTimeNs: T0, endTimeNs: T0 + 30, context: 7, spanId: '1111111111111111' }], () => undefined)
  const server = delivered.find((s) => s.name === 'GET /a')!
  const children = delivered.filter((s) => s.name === 'GET' || s.name === 'SET')
  assert.equal(children.length, 2)
  for (const child of children) {
    assert.equal(child.spanContext().traceId, server.spanContext().traceId)
    assert.equal(child.parentSpanContext?.spanId, '1111111111111111')
  }
  // a child that comes after its parent joins at once
  traces.emit('redis', undefined, [client('DEL', 7)], () => undefined)
  assert.equal(delivered.at(-1)!.name, 'DEL')
  assert.equal(delivered.at(-1)!.parentSpanContext?.spanId, '1111111111111111')
  // a context nobody names: released (flush, shutdown, or after the wait) as a trace of its own
  assert.equal(delivered.some((s) => s.name === 'PING'), false)
  traces.releaseWaiting()
  const alone = delivered.find((s) => s.name === 'PING')!
  assert.equal(alone.parentSpanContext, undefined)
  assert.deepEqual({ joined: traces.stats().contextJoined, alone: traces.stats().contextUnjoined }, { joined: 3, alone: 1 })
})

test('a span with its own trace id ignores parentContext; a context that is not a positive integer is refused', () => {
  const { traces, delivered } = pipeline()
  const traceId = randomTraceId()
  traces.emit('redis', undefined, [{ name: 'GET', startTimeNs: T0, endTimeNs: T0 + 1, traceId, parentContext: 9 }], () => undefined)
  assert.equal(delivered[0]!.spanContext().traceId, traceId)
  const problem = traces.emit('redis', undefined, [{ name: 'bad', startTimeNs: T0, endTimeNs: T0 + 1, parentContext: -1 }], () => undefined)
  assert.match(problem ?? '', /parentContext -1 is not a positive integer/)
})
