// The span encoder must write exactly what the SDK's ProtobufTraceSerializer writes for the same
// spans: same fields, same order, same varints, same grouping by resource and scope.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { OtlpTraceEncoder } from '../../runtime/telemetry/otlp-traces.ts'
import { TracePipeline, type PluginSpan } from '../../runtime/telemetry/traces.ts'
import type { SpanInput } from '../../runtime/telemetry/signals.ts'

const T0 = 1_767_225_600_000_000_000
const resources = [
  resourceFromAttributes({ 'service.name': 'periscope', 'host.name': 'h' }),
  resourceFromAttributes({ 'service.name': 'nginx', 'process.pid': 4242, 'process.command': 'nginx: worker process' }),
  resourceFromAttributes({ 'service.name': 'ünïcode ✓', 'process.pid': 1 }),
]

function build(inputs: { scope: string; version?: string; resource: number; span: SpanInput }[]): PluginSpan[] {
  const built: PluginSpan[] = []
  const traces = new TracePipeline({ runtimeResource: resources[0]!, ratio: 1, keepErrors: true, deliver: (spans) => built.push(...(spans as PluginSpan[])) })
  for (const { scope, version, resource, span } of inputs) {
    const problem = traces.emit(scope, version, [span], () => resources[resource])
    assert.equal(problem, undefined)
  }
  return built
}

function assertSameBytes(spans: PluginSpan[], encoder = new OtlpTraceEncoder()): void {
  const expected = Buffer.from(ProtobufTraceSerializer.serializeRequest(spans)!)
  const actual = Buffer.from(encoder.encode(spans))
  assert.equal(actual.toString('hex'), expected.toString('hex'))
}

test('HTTP spans encode as the SDK encodes them', () => {
  const spans = build([
    {
      scope: 'http', version: '1.0.0', resource: 1,
      span: {
        name: 'GET /users/{id}', kind: 'server', startTimeNs: T0 + 123_456_789, endTimeNs: T0 + 223_456_789,
        traceId: '4bf92f3577b34da6a3ce929d0e0e4736', parentSpanId: '00f067aa0ba902b7', spanId: 'b7ad6b7169203331',
        attributes: { 'http.request.method': 'GET', 'url.path': '/users/7', 'http.response.status_code': 200, 'server.port': 8080, 'client.address': '127.0.0.1' },
        status: { code: 'unset' },
      },
    },
    {
      scope: 'http', version: '1.0.0', resource: 0,
      span: {
        name: 'GET', kind: 'client', startTimeNs: T0, endTimeNs: T0 + 5_000,
        attributes: { 'error.type': '500', 'http.response.status_code': 500 },
        status: { code: 'error', message: 'HTTP 500' },
      },
    },
    {
      scope: 'other', resource: 1,
      span: { name: 'internal work', startTimeNs: 1, endTimeNs: 2, status: { code: 'ok' }, events: [{ name: 'ev', timeNs: T0 + 7, attributes: { n: null as never, s: 'x' } }] },
    },
  ])
  assertSameBytes(spans)
})

test('large spans (lengths past one varint byte) and many resources and scopes encode as the SDK encodes them', () => {
  const long = 'x'.repeat(20_000)
  const spans = build(Array.from({ length: 40 }, (_, i) => ({
    scope: `scope-${i % 3}`, version: i % 2 === 0 ? '2.0' : undefined, resource: i % resources.length,
    span: {
      name: i === 7 ? long : `span ${i}`, kind: (['internal', 'server', 'client', 'producer', 'consumer'] as const)[i % 5],
      startTimeNs: T0 + i * 1_000_003, endTimeNs: T0 + i * 1_000_003 + 999,
      attributes: Object.fromEntries(Array.from({ length: i }, (_, k) => [`key.${k}`, k % 2 === 0 ? `value ${k} ${i === 9 ? long : ''}` : k * 1_000_000_007])),
    },
  })))
  assertSameBytes(spans)
})

const hex = (length: number) => fc.stringMatching(new RegExp(`^[0-9a-f]{${length}}$`)).filter((s) => !/^0+$/.test(s))
const attributeValue = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 }),
  fc.maxSafeInteger(),
  fc.double({ noNaN: false }),
  fc.constantFrom(2 ** 62, -(2 ** 62), 2 ** 63, -(2 ** 63), -0),
  fc.boolean(),
  fc.array(fc.oneof(fc.string({ maxLength: 5 }), fc.constant(null)), { maxLength: 4 }),
  fc.array(fc.integer(), { maxLength: 4 }),
  fc.array(fc.double(), { maxLength: 3 }),
  fc.array(fc.boolean(), { maxLength: 3 }),
)
const time = fc.oneof(fc.integer({ min: 1, max: 2 ** 40 }), fc.double({ min: 1, max: 4e18, noNaN: true }))
const spanInput: fc.Arbitrary<SpanInput> = fc.record({
  name: fc.string({ unit: 'binary', maxLength: 30 }),
  kind: fc.constantFrom('internal', 'server', 'client', 'producer', 'consumer'),
  startTimeNs: time,
  duration: fc.integer({ min: 0, max: 1e12 }),
  traceId: fc.option(hex(32), { nil: undefined }),
  parentSpanId: fc.option(hex(16), { nil: undefined }),
  spanId: fc.option(hex(16), { nil: undefined }),
  attributes: fc.dictionary(fc.string({ unit: 'binary', maxLength: 12 }), attributeValue, { maxKeys: 12 }),
  status: fc.option(fc.record({ code: fc.constantFrom('unset', 'ok', 'error'), message: fc.option(fc.string({ unit: 'grapheme', maxLength: 20 }), { nil: undefined }) }), { nil: undefined }),
  events: fc.option(fc.array(fc.record({ name: fc.string({ maxLength: 10 }), timeNs: time, attributes: fc.dictionary(fc.string({ maxLength: 5 }), fc.oneof(attributeValue, fc.constant(null))) }), { maxLength: 3 }), { nil: undefined }),
}).map(({ duration, ...span }) => ({ ...span, endTimeNs: span.startTimeNs + duration } as SpanInput))

test('arbitrary spans encode as the SDK encodes them, with one encoder reused across batches', () => {
  const encoder = new OtlpTraceEncoder()
  fc.assert(
    fc.property(fc.array(fc.record({ scope: fc.constantFrom('a', 'b'), resource: fc.integer({ min: 0, max: 2 }), span: spanInput }), { maxLength: 20 }), (inputs) => {
      assertSameBytes(build(inputs), encoder)
    }),
    { numRuns: 500 },
  )
})
