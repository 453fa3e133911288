import assert from 'node:assert/strict'
import { test } from 'node:test'
import { redactQuery, defaultSensitiveQueryKeys } from '../../runtime/protocols/redact.ts'
import { RouteTable, routePattern } from '../../runtime/protocols/routes.ts'
import { newSpanId, newTraceId, parseTraceparent, sampledByTraceId } from '../../runtime/protocols/trace-context.ts'

test('traceparent: the W3C examples parse; malformed and invalid ones are ignored', () => {
  assert.deepEqual(parseTraceparent('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'),
    { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', parentSpanId: '00f067aa0ba902b7', sampled: true })
  assert.deepEqual(parseTraceparent(' 00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-00 '),
    { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', parentSpanId: '00f067aa0ba902b7', sampled: false })
  // a future version may append fields
  assert.equal(parseTraceparent('01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra')?.traceId, '4bf92f3577b34da6a3ce929d0e0e4736')
  for (const bad of [
    undefined, '', 'garbage',
    '00-00000000000000000000000000000000-00f067aa0ba902b7-01',
    '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01',
    'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra',
    '00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01',
  ]) assert.equal(parseTraceparent(bad), undefined, String(bad))
})

test('generated ids have the W3C shapes and differ', () => {
  const traces = new Set(Array.from({ length: 1000 }, newTraceId))
  const spans = new Set(Array.from({ length: 1000 }, newSpanId))
  assert.equal(traces.size, 1000)
  assert.equal(spans.size, 1000)
  for (const id of traces) assert.match(id, /^[0-9a-f]{32}$/)
  for (const id of spans) assert.match(id, /^[0-9a-f]{16}$/)
})

test('sampling by trace id keeps about the asked share, the same answer for the same trace', () => {
  const ids = Array.from({ length: 20000 }, newTraceId)
  const kept = ids.filter((id) => sampledByTraceId(id, 25)).length
  assert.ok(kept > 4600 && kept < 5400, `kept ${kept} of 20000 at 25%`)
  for (const id of ids.slice(0, 100)) assert.equal(sampledByTraceId(id, 25), sampledByTraceId(id, 25))
  assert.equal(ids.filter((id) => sampledByTraceId(id, 100)).length, 20000)
  assert.equal(ids.filter((id) => sampledByTraceId(id, 0)).length, 0)
})

test('route patterns replace ids and keep words', () => {
  const cases: [string, string][] = [
    ['/', '/'],
    ['', '/'],
    ['/users/123', '/users/*'],
    ['/users/123/orders/9', '/users/*/orders/*'],
    ['/api/v1/items/550e8400-e29b-41d4-a716-446655440000', '/api/v1/items/*'],
    ['/blobs/deadbeefcafe', '/blobs/*'],
    ['/session/a1b2c3d4e5f6g7h8', '/session/*'],
    ['/static/app.js', '/static/app.js'],
    ['/status/404', '/status/*'],
    ['/docs/', '/docs/'],
    ['/a/b/c/d/e/f/g/h/i/j', '/a/b/c/d/e/f/g/h/**'],
  ]
  for (const [path, route] of cases) assert.equal(routePattern(path), route, path)
})

test('a route table collapses past its cap per service and counts each collapse', () => {
  const table = new RouteTable(3)
  assert.equal(table.route('nginx', '/a'), '/a')
  assert.equal(table.route('nginx', '/b'), '/b')
  assert.equal(table.route('nginx', '/c/1'), '/c/*')
  assert.equal(table.route('nginx', '/c/2'), '/c/*')
  assert.equal(table.route('nginx', '/d'), '/*')
  assert.equal(table.route('nginx', '/e'), '/*')
  assert.equal(table.collapsed, 2)
  // another service has its own budget; a forgotten one starts over
  assert.equal(table.route('api', '/d'), '/d')
  table.forget('nginx')
  assert.equal(table.route('nginx', '/d'), '/d')
})

test('a route table past its services cap collapses new services entirely', () => {
  const table = new RouteTable(10, 2)
  assert.equal(table.route('a', '/x'), '/x')
  assert.equal(table.route('b', '/x'), '/x')
  assert.equal(table.route('c', '/x'), '/*')
  assert.equal(table.collapsed, 1)
  assert.equal(table.route('a', '/y'), '/y')
})

test('query values of sensitive keys are redacted, names and other values kept', () => {
  const keys = defaultSensitiveQueryKeys
  assert.equal(redactQuery('q=shoes&page=2', keys), 'q=shoes&page=2')
  assert.equal(redactQuery('access_token=abc&q=1', keys), 'access_token=REDACTED&q=1')
  assert.equal(redactQuery('API_KEY=k&Password=p&flag', keys), 'API_KEY=REDACTED&Password=REDACTED&flag')
  assert.equal(redactQuery('x%5Ftoken=abc', keys), 'x%5Ftoken=REDACTED')
  assert.equal(redactQuery('bad%zz=1', keys), 'bad%zz=1')
  assert.equal(redactQuery('color=red', ['color']), 'color=REDACTED')
  assert.equal(redactQuery('', keys), '')
})
