/**
 * The HTTP/1 parser (runtime/protocols/http1.ts) on hand-written wire bytes: every exchange it
 * hands over is compared in full (times, body byte counts, kept headers) with what the bytes and
 * the record times say it must be.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { Http1Request, Http1Response } from '../../runtime/protocols/http1.ts'
import { EGRESS, INGRESS, Wire, wire, type RecordTimes } from './http1-wire.ts'

function request(fields: Partial<Http1Request> & RecordTimes): Http1Request {
  return { method: 'GET', target: '/', version: '1.1', headers: {}, bodyBytes: 0, tid: 0, context: 0, ...fields }
}

function response(fields: Partial<Http1Response> & RecordTimes): Http1Response {
  return { status: 200, version: '1.1', headers: {}, bodyBytes: 0, tid: 0, context: 0, ...fields }
}

/** Start of the first record, end of the last. */
function span(first: RecordTimes, last: RecordTimes = first): RecordTimes {
  return { startNs: first.startNs, endNs: last.endNs }
}

describe('HTTP/1 parser: one exchange', () => {
  it('pairs a client GET with its Content-Length response, keeping only the asked-for headers', () => {
    const w = new Wire('client')
    const q = w.send(EGRESS, 'GET /users/7?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n', { tid: 41, context: 5 })
    const r = w.send(INGRESS, 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nServer: nginx\r\n\r\nhello', { tid: 42 })
    assert.deepEqual(w.exchanges, [{
      side: 'client',
      request: request({ target: '/users/7?x=1', headers: { host: 'example.com', 'user-agent': 'curl/7.88.1' }, tid: 41, context: 5, ...span(q) }),
      response: response({ headers: { 'content-type': 'text/plain' }, bodyBytes: 5, tid: 42, ...span(r) }),
    }])
    assert.deepEqual(w.errors(), {})
    assert.equal(w.connection.pending, 0)
  })

  it('takes requests from the ingress side of a server', () => {
    const w = new Wire('server')
    const q = w.send(INGRESS, 'POST /api HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc')
    const r = w.send(EGRESS, 'HTTP/1.0 201 Created\r\nContent-Length: 0\r\n\r\n')
    assert.deepEqual(w.exchanges, [{
      side: 'server',
      request: request({ method: 'POST', target: '/api', version: '1.0', bodyBytes: 3, ...span(q) }),
      response: response({ status: 201, version: '1.0', ...span(r) }),
    }])
  })

  it('decides an unknown role from the first start line: a request received makes it a server', () => {
    const w = new Wire('unknown')
    assert.equal(w.connection.role, 'unknown')
    const q = w.send(INGRESS, 'GET / HTTP/1.1\r\n\r\n')
    assert.equal(w.connection.role, 'server')
    const r = w.send(EGRESS, 'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n')
    assert.deepEqual(w.exchanges, [{ side: 'server', request: request(span(q)), response: response({ status: 404, ...span(r) }) }])
  })

  it('decides an unknown role from a status line too; a response with no request is counted, not handed over', () => {
    const w = new Wire('unknown')
    w.send(INGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok')
    assert.equal(w.connection.role, 'client')
    const q = w.send(EGRESS, 'GET /next HTTP/1.1\r\n\r\n')
    const r = w.send(INGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok')
    assert.deepEqual(w.exchanges, [{ side: 'client', request: request({ target: '/next', ...span(q) }), response: response({ bodyBytes: 2, ...span(r) }) }])
    assert.deepEqual(w.stats(), { unmatchedResponses: 1 })
    assert.deepEqual(w.errors(), {})
  })

  it('joins repeated kept headers, matches names in any case, trims optional whitespace', () => {
    const w = new Wire('client')
    const q = w.send(EGRESS, 'GET / HTTP/1.1\r\nHOST:a\r\ntraceParent: \t00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01 \r\nhost:  b\r\n\r\n')
    const r = w.send(INGRESS, 'HTTP/1.1 204 No Content\r\n\r\n')
    assert.deepEqual(w.exchanges, [{
      side: 'client',
      request: request({ headers: { host: 'a, b', traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' }, ...span(q) }),
      response: response({ status: 204, ...span(r) }),
    }])
  })

  it('decodes header values and targets byte for byte (latin-1), with no TextDecoder', () => {
    const w = new Wire('client')
    const q = w.send(EGRESS, 'GET /caf\xe9 HTTP/1.1\r\nUser-Agent: na\xefve \xff\r\n\r\n')
    const r = w.send(INGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')
    assert.deepEqual(w.exchanges, [{ side: 'client', request: request({ target: '/caf\xe9', headers: { 'user-agent': 'na\xefve \xff' }, ...span(q) }), response: response(span(r)) }])
  })

  it('calls onRequest when a request head is read, before its body, with the same object it hands over later', () => {
    const heads: { target: string; bodyBytes: number; tid: number; side: string }[] = []
    const w = new Wire('server', { onRequest: (req, _context, side) => heads.push({ target: req.target, bodyBytes: req.bodyBytes, tid: req.tid, side }) })
    const head = w.send(INGRESS, 'PUT /f HTTP/1.1\r\nContent-Length: 4\r\n\r\n', { tid: 7 })
    assert.deepEqual(heads, [{ target: '/f', bodyBytes: 0, tid: 7, side: 'server' }])
    const body = w.send(INGRESS, 'data', { tid: 8 })
    const r = w.send(EGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', { tid: 7 })
    assert.deepEqual(w.exchanges, [{
      side: 'server',
      request: request({ method: 'PUT', target: '/f', bodyBytes: 4, tid: 7, ...span(head, body) }),
      response: response({ tid: 7, ...span(r) }),
    }])
    assert.equal(heads.length, 1)
  })
})

describe('HTTP/1 parser: keep-alive and pipelining', () => {
  it('pairs three exchanges on one keep-alive connection in order', () => {
    const w = new Wire('client')
    const expected = []
    for (const [path, status] of [['/a', 200], ['/b', 404], ['/c', 500]] as const) {
      const q = w.send(EGRESS, `GET ${path} HTTP/1.1\r\nHost: h\r\n\r\n`)
      const r = w.send(INGRESS, `HTTP/1.1 ${status} X\r\nContent-Length: 1\r\n\r\n!`)
      expected.push({ side: 'client', request: request({ target: path, headers: { host: 'h' }, ...span(q) }), response: response({ status, bodyBytes: 1, ...span(r) }) })
    }
    assert.deepEqual(w.exchanges, expected)
  })

  it('pairs pipelined requests in one write with responses split differently, in FIFO order', () => {
    const w = new Wire('client')
    const q = w.send(EGRESS, 'GET /1 HTTP/1.1\r\n\r\nHEAD /2 HTTP/1.1\r\n\r\nPOST /3 HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi')
    assert.equal(w.connection.pending, 3)
    const r1 = w.send(INGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none')
    // HEAD's response announces a length it does not send; the next response follows at once
    const r2 = w.send(INGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nth')
    const r3 = w.send(INGRESS, 'ree')
    assert.deepEqual(w.exchanges, [
      { side: 'client', request: request({ target: '/1', ...span(q) }), response: response({ bodyBytes: 3, ...span(r1) }) },
      { side: 'client', request: request({ method: 'HEAD', target: '/2', ...span(q) }), response: response(span(r2)) },
      { side: 'client', request: request({ method: 'POST', target: '/3', bodyBytes: 2, ...span(q) }), response: response({ status: 201, bodyBytes: 5, ...span(r2, r3) }) },
    ])
    assert.equal(w.connection.pending, 0)
  })

  it('ignores empty lines between messages (RFC 9112 2.2)', () => {
    const w = new Wire('client')
    w.send(EGRESS, 'GET /a HTTP/1.1\r\n\r\n')
    w.send(INGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')
    const q = w.send(EGRESS, '\r\n\r\nGET /b HTTP/1.1\r\n\r\n')
    const r = w.send(INGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')
    assert.deepEqual(w.exchanges[1], { side: 'client', request: request({ target: '/b', ...span(q) }), response: response(span(r)) })
    assert.deepEqual(w.errors(), {})
  })

  it('caps the queue: requests beyond maxPending are counted and their responses skipped, so later pairs stay right', () => {
    const w = new Wire('client', { maxPending: 2 })
    const q = w.send(EGRESS, 'GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\nGET /4 HTTP/1.1\r\n\r\n')
    assert.equal(w.connection.pending, 2)
    const ok = (n: number) => `HTTP/1.1 ${200 + 10 * n} X\r\nContent-Length: 1\r\n\r\n${n}`
    const r = w.send(INGRESS, ok(1) + ok(2))
    // /5 waits before the responses to /3 and /4, which must not be taken for its own
    const q5 = w.send(EGRESS, 'GET /5 HTTP/1.1\r\n\r\n')
    const r5 = w.send(INGRESS, ok(3) + ok(4) + ok(5))
    assert.deepEqual(w.exchanges, [
      { side: 'client', request: request({ target: '/1', ...span(q) }), response: response({ status: 210, bodyBytes: 1, ...span(r) }) },
      { side: 'client', request: request({ target: '/2', ...span(q) }), response: response({ status: 220, bodyBytes: 1, ...span(r) }) },
      { side: 'client', request: request({ target: '/5', ...span(q5) }), response: response({ status: 250, bodyBytes: 1, ...span(r5) }) },
    ])
    assert.deepEqual(w.stats(), { queueOverflows: 2, unmatchedResponses: 2 })
  })
})

describe('HTTP/1 parser: bodies', () => {
  it('reads a chunked response whose chunk sizes, extensions and trailers are split across records', () => {
    const w = new Wire('client')
    const q = w.send(EGRESS, 'GET /stream HTTP/1.1\r\n\r\n')
    const r1 = w.send(INGRESS, 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n1')
    w.send(INGRESS, '0;name=val')
    w.send(INGRESS, 'ue\r\n0123456789')
    w.send(INGRESS, 'abcdef\r')
    w.send(INGRESS, '\n3\r\nxyz\r\n0\r\nExpires: never\r')
    const r6 = w.send(INGRESS, '\n\r\n')
    const body = '10;name=value\r\n0123456789abcdef\r\n3\r\nxyz\r\n0\r\nExpires: never\r\n\r\n'
    assert.deepEqual(w.exchanges, [{ side: 'client', request: request({ target: '/stream', ...span(q) }), response: response({ bodyBytes: body.length, ...span(r1, r6) }) }])
    assert.equal(body.length, 62)
    assert.deepEqual(w.errors(), {})
  })

  it('reads a chunked request body and accepts bare LF after chunk data', () => {
    const w = new Wire('server')
    const q = w.send(INGRESS, 'POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n4\r\nwiki\n5\r\npedia\r\n0\r\n\r\n')
    const r = w.send(EGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')
    // Transfer-Encoding overrides Content-Length (RFC 9112 6.3)
    assert.deepEqual(w.exchanges, [{ side: 'server', request: request({ method: 'POST', target: '/up', bodyBytes: 23, ...span(q) }), response: response(span(r)) }])
  })

  it('accepts a list of identical Content-Length values as one length', () => {
    const w = new Wire('client')
    w.send(EGRESS, 'GET / HTTP/1.1\r\n\r\n')
    const r = w.send(INGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\nabc')
    assert.deepEqual(w.exchanges[0]!.response, response({ bodyBytes: 3, ...span(r) }))
    assert.deepEqual(w.errors(), {})
  })

  it('reads an HTTP/1.0 response without a length until the connection closes', () => {
    const w = new Wire('client')
    const q = w.send(EGRESS, 'GET /old HTTP/1.0\r\n\r\n')
    const r1 = w.send(INGRESS, 'HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n<html>')
    const r2 = w.send(INGRESS, '</html>', { bytes: 5000 })
    assert.deepEqual(w.exchanges, [])
    w.connection.close()
    assert.deepEqual(w.exchanges, [{
      side: 'client',
      request: request({ target: '/old', version: '1.0', ...span(q) }),
      response: response({ version: '1.0', headers: { 'content-type': 'text/html' }, bodyBytes: 6 + 5000, ...span(r1, r2) }),
    }])
  })

  it('reads a response with a transfer coding other than chunked until close', () => {
    const w = new Wire('client')
    w.send(EGRESS, 'GET / HTTP/1.1\r\n\r\n')
    const r = w.send(INGRESS, 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\nabcdef')
    w.connection.close()
    assert.deepEqual(w.exchanges[0]!.response, response({ bodyBytes: 6, ...span(r) }))
    assert.equal(w.exchanges[0]!.incomplete, undefined)
  })

  it('counts no body after HEAD, 204 and 304 even with a Content-Length', () => {
    const w = new Wire('client')
    const q1 = w.send(EGRESS, 'HEAD /h HTTP/1.1\r\n\r\n')
    const r1 = w.send(INGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 123\r\n\r\n')
    const q2 = w.send(EGRESS, 'DELETE /d HTTP/1.1\r\n\r\n')
    const r2 = w.send(INGRESS, 'HTTP/1.1 204 No Content\r\n\r\n')
    const q3 = w.send(EGRESS, 'GET /c HTTP/1.1\r\nIf-None-Match: "x"\r\n\r\n')
    const r3 = w.send(INGRESS, 'HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n')
    const q4 = w.send(EGRESS, 'GET /after HTTP/1.1\r\n\r\n')
    const r4 = w.send(INGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok')
    assert.deepEqual(w.exchanges, [
      { side: 'client', request: request({ method: 'HEAD', target: '/h', ...span(q1) }), response: response(span(r1)) },
      { side: 'client', request: request({ method: 'DELETE', target: '/d', ...span(q2) }), response: response({ status: 204, ...span(r2) }) },
      { side: 'client', request: request({ target: '/c', ...span(q3) }), response: response({ status: 304, ...span(r3) }) },
      { side: 'client', request: request({ target: '/after', ...span(q4) }), response: response({ bodyBytes: 2, ...span(r4) }) },
    ])
  })
})

describe('HTTP/1 parser: interim responses and protocol switches', () => {
  it('skips 100 Continue: the request body follows it, and the final response pairs with the request', () => {
    const w = new Wire('client')
    const head = w.send(EGRESS, 'POST /upload HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n')
    w.send(INGRESS, 'HTTP/1.1 100 Continue\r\n\r\n')
    const body = w.send(EGRESS, '0123456789')
    const r = w.send(INGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')
    assert.deepEqual(w.exchanges, [{ side: 'client', request: request({ method: 'POST', target: '/upload', bodyBytes: 10, ...span(head, body) }), response: response(span(r)) }])
  })

  it('ends a 100-continue request at its head when a final response refuses it before the body', () => {
    const w = new Wire('client')
    const q = w.send(EGRESS, 'PUT /big HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1000000\r\n\r\n')
    const r = w.send(INGRESS, 'HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n')
    assert.deepEqual(w.exchanges, [{ side: 'client', request: request({ method: 'PUT', target: '/big', ...span(q) }), response: response({ status: 417, ...span(r) }) }])
    // the client may send the body anyway: it is skipped up to the next request
    w.send(EGRESS, 'x'.repeat(100), { bytes: 1000000 })
    const q2 = w.send(EGRESS, 'GET /next HTTP/1.1\r\n\r\n')
    const r2 = w.send(INGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')
    assert.deepEqual(w.exchanges[1], { side: 'client', request: request({ target: '/next', ...span(q2) }), response: response(span(r2)) })
    assert.deepEqual(w.errors(), {})
  })

  it('skips 103 Early Hints (with headers) before the final response in the same record', () => {
    const w = new Wire('client')
    const q = w.send(EGRESS, 'GET / HTTP/1.1\r\n\r\n')
    const r = w.send(INGRESS, 'HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\nContent-Type: x/interim\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n.')
    assert.deepEqual(w.exchanges, [{ side: 'client', request: request(span(q)), response: response({ bodyBytes: 1, ...span(r) }) }])
  })

  it('hands over the 101 exchange and then ignores the connection (WebSocket frames are not HTTP)', () => {
    const w = new Wire('client')
    const q = w.send(EGRESS, 'GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n')
    const r = w.send(INGRESS, 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello')
    w.send(EGRESS, '\x81\x85abcdGET / HTTP/1.1\r\n\r\n')
    w.send(INGRESS, 'HTTP/1.1 200 OK\r\n\r\n')
    w.connection.close()
    assert.deepEqual(w.exchanges, [{ side: 'client', request: request({ target: '/ws', ...span(q) }), response: response({ status: 101, ...span(r) }) }])
    assert.deepEqual(w.stats(), { upgrades: 1 })
    assert.deepEqual(w.errors(), {})
  })

  it('stops at a CONNECT tunnel that was accepted, but not at one that was refused', () => {
    const w = new Wire('client')
    const q1 = w.send(EGRESS, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n')
    const r1 = w.send(INGRESS, 'HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n')
    const q2 = w.send(EGRESS, 'CONNECT example.com:443 HTTP/1.1\r\n\r\n')
    const r2 = w.send(INGRESS, 'HTTP/1.1 200 Connection Established\r\n\r\n')
    w.send(EGRESS, '\x16\x03\x01\x02\x00\x01')
    w.send(INGRESS, '\x16\x03\x03\x00\x7a')
    assert.deepEqual(w.exchanges, [
      { side: 'client', request: request({ method: 'CONNECT', target: 'example.com:443', headers: { host: 'example.com:443' }, ...span(q1) }), response: response({ status: 407, ...span(r1) }) },
      { side: 'client', request: request({ method: 'CONNECT', target: 'example.com:443', ...span(q2) }), response: response(span(r2)) },
    ])
    assert.deepEqual(w.errors(), {})
  })
})

describe('HTTP/1 parser: messages split across reads', () => {
  const req = 'POST /form?a=b HTTP/1.1\r\nHost: split.example\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n\r\nq=hello'
  const res = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n2\r\nok\r\n0\r\n\r\n'

  for (const size of [1, 2, 3, 7, 16]) {
    it(`reads a request and a chunked response fed ${size} byte(s) per record, with exact first and last times`, () => {
      const w = new Wire('client')
      const q = w.sendInPieces(EGRESS, req, size)
      const r = w.sendInPieces(INGRESS, res, size)
      assert.deepEqual(w.exchanges, [{
        side: 'client',
        request: request({ method: 'POST', target: '/form?a=b', headers: { host: 'split.example', 'content-type': 'application/x-www-form-urlencoded' }, bodyBytes: 7, ...span(q.first, q.last) }),
        response: response({ headers: { 'content-type': 'text/plain' }, bodyBytes: 12, ...span(r.first, r.last) }),
      }])
      assert.deepEqual(w.errors(), {})
      assert.deepEqual(w.stats(), {})
    })
  }

  it('reads a second request split one byte at a time after a first one (not resynchronising)', () => {
    const w = new Wire('server')
    w.send(INGRESS, 'GET /1 HTTP/1.1\r\n\r\n')
    w.send(EGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')
    const q = w.sendInPieces(INGRESS, 'GET /2 HTTP/1.1\r\nUser-Agent: slow\r\n\r\n', 1)
    const r = w.send(EGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')
    assert.deepEqual(w.exchanges[1], { side: 'server', request: request({ target: '/2', headers: { 'user-agent': 'slow' }, ...span(q.first, q.last) }), response: response(span(r)) })
  })
})

describe('HTTP/1 parser: bytes that were not captured', () => {
  it('counts a Content-Length body larger than the capture by the byte counts of its records', () => {
    const w = new Wire('client')
    const q = w.send(EGRESS, 'GET /big HTTP/1.1\r\n\r\n')
    const head = 'HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n'
    const r1 = w.send(INGRESS, `${head}xxxx`, { bytes: head.length + 16384 })
    w.send(INGRESS, 'yyyy', { bytes: 65536 })
    const r3 = w.send(INGRESS, 'zzzz', { bytes: 100000 - 16384 - 65536 })
    const q2 = w.send(EGRESS, 'GET /next HTTP/1.1\r\n\r\n')
    const r4 = w.send(INGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')
    assert.deepEqual(w.exchanges, [
      { side: 'client', request: request({ target: '/big', ...span(q) }), response: response({ bodyBytes: 100000, ...span(r1, r3) }) },
      { side: 'client', request: request({ target: '/next', ...span(q2) }), response: response(span(r4)) },
    ])
    assert.deepEqual(w.stats(), {})
  })

  it('counts a sendfile body (a record with no data) on the server side', () => {
    const w = new Wire('server')
    const q = w.send(INGRESS, 'GET /file.bin HTTP/1.1\r\n\r\n')
    const r1 = w.send(EGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n')
    const r2 = w.send(EGRESS, new Uint8Array(0), { bytes: 1048576 })
    assert.deepEqual(w.exchanges, [{ side: 'server', request: request({ target: '/file.bin', ...span(q) }), response: response({ bodyBytes: 1048576, ...span(r1, r2) }) }])
  })

  it('follows chunked framing when a record is cut inside chunk data and its CRLF', () => {
    const w = new Wire('client')
    const q = w.send(EGRESS, 'GET / HTTP/1.1\r\n\r\n')
    // each record is one chunk written whole: size line, 8000 bytes of data, CRLF; only 100 bytes captured
    const head = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'
    assert.equal(head.length, 47)
    const r1 = w.send(INGRESS, `${head}1f40\r\n${'a'.repeat(50)}`, { bytes: 47 + 6 + 8000 + 2 })
    w.send(INGRESS, '1f40\r\n' + 'b'.repeat(94), { bytes: 6 + 8000 + 2 })
    // the CR was the last captured byte: only the LF is unseen
    w.send(INGRESS, '5\r\nccccc\r', { bytes: 10 })
    // a trailer: only followed framing finds this end
    const r4 = w.send(INGRESS, '0\r\nX-Trailer: 1\r\n\r\n')
    assert.deepEqual(w.exchanges, [{ side: 'client', request: request(span(q)), response: response({ bodyBytes: 8008 * 2 + 10 + 19, ...span(r1, r4) }) }])
    assert.deepEqual(w.stats(), {})
  })

  it('ends a chunked body whose framing went out of sight at its visible last chunk', () => {
    const w = new Wire('client')
    const q = w.send(EGRESS, 'GET / HTTP/1.1\r\n\r\n')
    // a reader's large read: chunk sizes beyond the capture
    const r1 = w.send(INGRESS, 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n', { bytes: 20000 })
    const r2 = w.send(INGRESS, 'tail of data\r\n0\r\n\r\n')
    assert.deepEqual(w.exchanges, [{ side: 'client', request: request(span(q)), response: response({ bodyBytes: 20000 - 47 + 19, ...span(r1, r2) }) }])
  })

  it('ends a chunked body whose end was not captured where the next response starts', () => {
    const w = new Wire('client')
    const q1 = w.send(EGRESS, 'GET /1 HTTP/1.1\r\n\r\n')
    const r1 = w.send(INGRESS, 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4000\r\n', { bytes: 47 + 30000 })
    const q2 = w.send(EGRESS, 'GET /2 HTTP/1.1\r\n\r\n')
    const r2 = w.send(INGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')
    assert.deepEqual(w.exchanges, [
      { side: 'client', request: request({ target: '/1', ...span(q1) }), response: response({ bodyBytes: 30000, ...span(r1) }) },
      { side: 'client', request: request({ target: '/2', ...span(q2) }), response: response(span(r2)) },
    ])
  })

  it('keeps a request whose head is longer than the capture: it ends when its response ends', () => {
    const w = new Wire('server')
    const head = 'GET /cookie HTTP/1.1\r\nHost: h\r\nCookie: '
    const q = w.send(INGRESS, `${head}${'c'.repeat(60)}`, { bytes: 6000 })
    const r = w.send(EGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')
    // handed over now, not when the next request shows where this one ended
    assert.equal(w.exchanges.length, 1)
    const q2 = w.send(INGRESS, 'GET /2 HTTP/1.1\r\n\r\n')
    const r2 = w.send(EGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')
    assert.deepEqual(w.exchanges, [
      { side: 'server', request: request({ target: '/cookie', headers: { host: 'h' }, bodyBytes: 6000 - head.length - 60, ...span(q) }), response: response(span(r)) },
      { side: 'server', request: request({ target: '/2', ...span(q2) }), response: response(span(r2)) },
    ])
    assert.deepEqual(w.stats(), { headsCut: 1 })
  })
})

describe('HTTP/1 parser: lost records', () => {
  it('absorbs a gap inside a Content-Length body: the exchange is complete', () => {
    const w = new Wire('client')
    const q = w.send(EGRESS, 'GET / HTTP/1.1\r\n\r\n')
    const r1 = w.send(INGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n' + 'a'.repeat(1000))
    const r2 = w.send(INGRESS, 'c'.repeat(1000), { lostBefore: 1000 })
    assert.deepEqual(w.exchanges, [{ side: 'client', request: request(span(q)), response: response({ bodyBytes: 3000, ...span(r1, r2) }) }])
    assert.deepEqual(w.stats(), { lostBytes: 1000 })
  })

  it('marks the exchange whose response lost its place as lost, and pairs the next one after resynchronising', () => {
    const w = new Wire('client')
    const q1 = w.send(EGRESS, 'GET /1 HTTP/1.1\r\n\r\n')
    const r1 = w.send(INGRESS, 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel')
    // lost: the rest of the body, its last chunk, and part of nothing else
    const q2 = w.send(EGRESS, 'GET /2 HTTP/1.1\r\n\r\n')
    w.send(INGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok', { lostBefore: 12 })
    assert.deepEqual(w.exchanges, [
      { side: 'client', request: request({ target: '/1', ...span(q1) }), response: response({ headers: { 'content-type': 'text/plain' }, bodyBytes: 6, ...span(r1) }), incomplete: 'lost' },
      // /2 was queued before the loss came to light: its response might have been in the gap
      { side: 'client', request: request({ target: '/2', ...span(q2) }), incomplete: 'lost' },
    ])
    const q3 = w.send(EGRESS, 'GET /3 HTTP/1.1\r\n\r\n')
    const r3 = w.send(INGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')
    assert.deepEqual(w.exchanges[2], { side: 'client', request: request({ target: '/3', ...span(q3) }), response: response(span(r3)) })
    assert.deepEqual(w.stats(), { lostBytes: 12, resyncs: 1, unmatchedResponses: 1 })
  })

  it('resynchronises on a request that starts in the middle of a record after a request-side gap', () => {
    const w = new Wire('server')
    const q1 = w.send(INGRESS, 'POST /1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123')
    const q2 = w.send(INGRESS, '\r\n0\r\n\r\nGET /2 HTTP/1.1\r\nHost: two\r\n\r\n', { lostBefore: 20 })
    const r = w.send(EGRESS, 'HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')
    assert.deepEqual(w.exchanges, [
      { side: 'server', request: request({ method: 'POST', target: '/1', bodyBytes: 8, ...span(q1) }), response: response({ status: 400, ...span(r) }), incomplete: 'lost' },
      { side: 'server', request: request({ target: '/2', headers: { host: 'two' }, ...span(q2) }), response: response(span(r)) },
    ])
    assert.deepEqual(w.stats(), { lostBytes: 20, resyncs: 1, skippedBytes: 7 })
  })

  it('leaves a response unmatched when it was read before the queued request was sent (its request was lost)', () => {
    const w = new Wire('client')
    w.send(EGRESS, 'GET /1 HTTP/1.1\r\n\r\n')
    w.send(INGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')
    // request /2 was lost; its response was read (at 250-260) before /3 was sent (at 300), but
    // arrives after /3 (records from different CPUs, as through a perf buffer)
    const q3 = w.send(EGRESS, 'GET /3 HTTP/1.1\r\n\r\n', { lostBefore: 19, times: { startNs: 300, endNs: 310 } })
    w.send(INGRESS, 'HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n', { times: { startNs: 250, endNs: 260 } })
    const r3 = w.send(INGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')
    assert.equal(r3.startNs, 500)
    assert.equal(w.exchanges.length, 2)
    assert.deepEqual(w.exchanges[1], { side: 'client', request: request({ target: '/3', ...span(q3) }), response: response(span(r3)) })
    assert.deepEqual(w.stats(), { lostBytes: 19, resyncs: 1, unmatchedResponses: 1 })
  })

  it('flushes the requests waiting when whole responses may have been lost between two of them', () => {
    const w = new Wire('client')
    w.send(EGRESS, 'GET /1 HTTP/1.1\r\n\r\n')
    w.send(INGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')
    const q2 = w.send(EGRESS, 'GET /2 HTTP/1.1\r\n\r\n')
    const q3 = w.send(EGRESS, 'GET /3 HTTP/1.1\r\n\r\n')
    // the response to /2 was lost: the response seen next must not be taken for it
    w.send(INGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', { lostBefore: 38 })
    assert.deepEqual(w.exchanges.map((e) => [e.request.target, e.response?.status, e.incomplete]), [
      ['/1', 200, undefined],
      ['/2', undefined, 'lost'],
      ['/3', undefined, 'lost'],
    ])
    assert.deepEqual(w.exchanges[1]!.request, request({ target: '/2', ...span(q2) }))
    assert.deepEqual(w.exchanges[2]!.request, request({ target: '/3', ...span(q3) }))
    assert.deepEqual(w.stats(), { lostBytes: 38, resyncs: 1, unmatchedResponses: 1 })
  })
})

describe('HTTP/1 parser: closing and connections already open', () => {
  it('hands over an exchange cut by close as closed, with what was seen of the response', () => {
    const w = new Wire('client')
    const q = w.send(EGRESS, 'GET /slow HTTP/1.1\r\n\r\n')
    const r = w.send(INGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial')
    w.connection.close()
    assert.deepEqual(w.exchanges, [{ side: 'client', request: request({ target: '/slow', ...span(q) }), response: response({ bodyBytes: 7, ...span(r) }), incomplete: 'closed' }])
  })

  it('hands over requests with no response at close, in order, and ignores records after close', () => {
    const w = new Wire('server')
    const q1 = w.send(INGRESS, 'GET /1 HTTP/1.1\r\n\r\n')
    const q2 = w.send(INGRESS, 'POST /2 HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc')
    w.connection.close()
    w.send(EGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')
    assert.deepEqual(w.exchanges, [
      { side: 'server', request: request({ target: '/1', ...span(q1) }), incomplete: 'closed' },
      { side: 'server', request: request({ method: 'POST', target: '/2', bodyBytes: 3, ...span(q2) }), incomplete: 'closed' },
    ])
    assert.equal(w.connection.pending, 0)
  })

  it('skips to the first message start on a connection found mid-message, counting no error', () => {
    const w = new Wire('server')
    // the end of a body and of a head from before Periscope started, then a new request
    const q = w.send(INGRESS, 'ta":[1,2]}\r\nX-Old: 1\r\n\r\nGET /fresh HTTP/1.1\r\n\r\n')
    w.send(EGRESS, 'lo world</html>')
    const r = w.send(EGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')
    assert.deepEqual(w.exchanges, [{ side: 'server', request: request({ target: '/fresh', ...span(q) }), response: response(span(r)) }])
    assert.deepEqual(w.errors(), {})
    assert.deepEqual(w.stats(), { skippedBytes: 24 + 15 })
  })

  it('finds a request line glued to the end of a body on a connection found mid-message', () => {
    const w = new Wire('server')
    const q = w.send(INGRESS, '{"a":1}POST /glued HTTP/1.1\r\nContent-Length: 0\r\n\r\n')
    const r = w.send(EGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')
    assert.deepEqual(w.exchanges, [{ side: 'server', request: request({ method: 'POST', target: '/glued', ...span(q) }), response: response(span(r)) }])
  })
})

describe('HTTP/1 parser: malformed input is counted, never thrown', () => {
  const ok = 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'

  function afterFirst(bad: string): Wire {
    const w = new Wire('server')
    w.send(INGRESS, 'GET /first HTTP/1.1\r\n\r\n')
    w.send(EGRESS, ok)
    w.send(INGRESS, bad)
    return w
  }

  it('a bad request line: counted, and the next good request is still read', () => {
    const w = afterFirst('GET /a b c HTTP/1.1\r\n\r\n')
    const q = w.send(INGRESS, 'GET /good HTTP/1.1\r\n\r\n')
    const r = w.send(EGRESS, ok)
    assert.deepEqual(w.errors(), { 'start-line': 1 })
    assert.deepEqual(w.exchanges[1], { side: 'server', request: request({ target: '/good', ...span(q) }), response: response(span(r)) })
  })

  it('versions other than 1.0 and 1.1 are not HTTP/1', () => {
    const w = afterFirst('GET / HTTP/2.0\r\n\r\n')
    assert.deepEqual(w.errors(), { 'start-line': 1 })
    const v = afterFirst('GET / HTTP/1.2\r\n\r\n')
    assert.deepEqual(v.errors(), { 'start-line': 1 })
  })

  it('a header line without a colon or with a space before it marks the request lost', () => {
    for (const bad of ['Host example\r\n', 'Host : example\r\n', ': empty\r\n']) {
      const w = afterFirst(`GET /x HTTP/1.1\r\n${bad}\r\n`)
      const r = w.send(EGRESS, 'HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n')
      assert.deepEqual(w.errors(), { 'header-line': 1 }, bad)
      assert.deepEqual(w.exchanges[1]?.response, response({ status: 400, ...span(r) }), bad)
      assert.equal(w.exchanges[1]?.incomplete, 'lost', bad)
    }
  })

  it('invalid or conflicting Content-Length', () => {
    for (const bad of ['Content-Length: 12a', 'Content-Length: -1', 'Content-Length: 1, 2', 'Content-Length: 1234567890123456', 'Content-Length:']) {
      const w = afterFirst(`POST /x HTTP/1.1\r\n${bad}\r\n\r\n`)
      assert.deepEqual(w.errors(), { 'content-length': 1 }, bad)
    }
    const w = afterFirst('POST /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n')
    assert.deepEqual(w.errors(), { 'content-length': 1 })
  })

  it('a request whose last transfer coding is not chunked', () => {
    const w = afterFirst('POST /x HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n')
    assert.deepEqual(w.errors(), { 'transfer-encoding': 1 })
  })

  it('bad chunk sizes and chunk data not followed by CRLF', () => {
    for (const [body, reason] of [['zz\r\n', 'chunk-size'], ['\r\n', 'chunk-size'], ['12345678901234\r\n', 'chunk-size'], ['2\r\nabX', 'chunk-end'], [`1;${'e'.repeat(5000)}\r\n`, 'chunk-size']] as const) {
      const w = afterFirst(`POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n${body}`)
      assert.deepEqual(w.errors(), { [reason]: 1 }, body)
    }
  })

  it('a head longer than maxHeadBytes', () => {
    const w = new Wire('server', { maxHeadBytes: 100 })
    w.send(INGRESS, `GET / HTTP/1.1\r\nX-Long: ${'v'.repeat(200)}\r\n\r\n`)
    assert.deepEqual(w.errors(), { 'head-too-long': 1 })
  })

  it('a record whose position goes backwards', () => {
    const w = new Wire('server')
    w.send(INGRESS, 'GET / HTTP/1.1\r\n\r\n')
    w.connection.push({ direction: INGRESS, position: 3, bytes: 5, data: wire('xxxxx'), startNs: 1, endNs: 2 })
    assert.deepEqual(w.errors(), { position: 1 })
  })

  it('a status line on the request side of a client does not pair, and counts', () => {
    const w = new Wire('client')
    w.send(EGRESS, 'GET / HTTP/1.1\r\n\r\n')
    w.send(INGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')
    w.send(EGRESS, 'HTTP/1.1 200 OK\r\n\r\n')
    assert.deepEqual(w.errors(), { 'start-line': 1 })
  })
})

describe('HTTP/1 parser: bounded memory', () => {
  it('cuts kept header values at maxHeaderBytes per message and counts the cut bytes', () => {
    const w = new Wire('client', { maxHeaderBytes: 10 })
    const q = w.send(EGRESS, 'GET / HTTP/1.1\r\nHost: 12345678\r\nUser-Agent: abcdef\r\nContent-Type: x\r\n\r\n')
    const r = w.send(INGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')
    assert.deepEqual(w.exchanges, [{ side: 'client', request: request({ headers: { host: '12345678', 'user-agent': 'ab' }, ...span(q) }), response: response(span(r)) }])
    assert.deepEqual(w.stats(), { headerBytesCut: 4 + 1 })
  })

  it('counts the separators of repeated headers against maxHeaderBytes, so empty repeats cannot grow a value', () => {
    const w = new Wire('client', { maxHeaderBytes: 10 })
    w.send(EGRESS, `GET / HTTP/1.1\r\n${'Host:\r\n'.repeat(1000)}Host: abc\r\n\r\n`)
    w.send(INGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')
    // '' then five ', ' separators fill the 10 bytes; the rest is cut
    assert.deepEqual(w.exchanges[0]!.request.headers, { host: ', , , , , ' })
    assert.deepEqual(w.stats(), { headerBytesCut: 3 })
  })

  it('cuts the request target at maxTargetBytes', () => {
    const w = new Wire('client', { maxTargetBytes: 8 })
    w.send(EGRESS, 'GET /0123456789abc HTTP/1.1\r\n\r\n')
    w.send(INGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')
    assert.equal(w.exchanges[0]!.request.target, '/0123456')
    assert.deepEqual(w.stats(), { targetBytesCut: 6 })
  })

  it('keeps the start of a header line split across records up to maxLineBytes', () => {
    const w = new Wire('client', { maxLineBytes: 64 })
    w.send(EGRESS, 'GET / HTTP/1.1\r\nUser-Agent: ')
    w.send(EGRESS, 'x'.repeat(100))
    w.send(EGRESS, 'y'.repeat(100) + '\r\n\r\n')
    w.send(INGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')
    assert.equal(w.exchanges[0]!.request.headers['user-agent'], 'x'.repeat(64 - 12))
    assert.deepEqual(w.stats(), { lineBytesCut: 100 + 100 + 1 - 52 })
    assert.equal(w.connection.retainedBytes(), 64)
  })

  it('holds only the line buffers and the queued requests’ kept text', () => {
    const w = new Wire('client')
    assert.equal(w.connection.retainedBytes(), 0)
    w.send(EGRESS, 'GET /abc HTTP/1.1\r\nHost: hh\r\n\r\n')
    assert.equal(w.connection.retainedBytes(), 4 + 2)
    w.send(INGRESS, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')
    assert.equal(w.connection.retainedBytes(), 0)
  })

  it('rejects limits that are not integers at construction, with the option named', () => {
    assert.throws(() => new Wire('client', { maxPending: 0 }), /maxPending must be an integer of at least 1, got 0/)
    assert.throws(() => new Wire('client', { headers: ['bad name'] }), /"bad name" is not an HTTP token/)
  })
})
