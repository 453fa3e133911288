/**
 * The HTTP/1 parser runs where plugins run: bundled by esbuild the way plugin builds bundle
 * `periscope/protocols/http1`, inside a bare isolated-vm isolate with V8's builtins only (no
 * TextDecoder, no Buffer, no Node module).
 */
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import * as esbuild from 'esbuild'
import ivm from 'isolated-vm'

const protocolsDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../runtime/protocols')

/** Feeds a split request, a response with a latin-1 header, and returns what the parser reported. */
const driver = `
import { Http1Parser, EGRESS, INGRESS } from 'periscope/protocols/http1'
const bytes = (text) => Uint8Array.from(text, (c) => c.charCodeAt(0))
const exchanges = []
const parser = new Http1Parser((exchange, context, side) => exchanges.push({ exchange, context, side }), { headers: ['host', 'server'] })
const connection = parser.connection('c1', 'unknown')
const records = [
  [EGRESS, 'GET /x HTTP/1.1\\r\\nHo'],
  [EGRESS, 'st: h\\r\\n\\r\\n'],
  [INGRESS, 'HTTP/1.1 200 OK\\r\\nServer: caf\\xe9\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n3\\r\\nabc\\r\\n0\\r\\n\\r\\n'],
]
const positions = [0, 0]
records.forEach(([direction, text], i) => {
  const data = bytes(text)
  connection.push({ direction, position: positions[direction], bytes: data.length, data, startNs: i * 10, endNs: i * 10 + 5 })
  positions[direction] += data.length
})
globalThis.result = JSON.stringify({ exchanges, errors: parser.errors, textDecoder: typeof TextDecoder, buffer: typeof Buffer })
`

describe('HTTP/1 parser in a plugin isolate', () => {
  it('bundles with no Node import and parses inside a bare isolate', async () => {
    const bundle = await esbuild.build({
      stdin: { contents: driver, resolveDir: protocolsDir, loader: 'ts' },
      bundle: true,
      write: false,
      format: 'iife',
      platform: 'neutral',
      target: 'es2024',
      alias: { 'periscope/protocols': protocolsDir },
      logLevel: 'silent',
    })
    const isolate = new ivm.Isolate({ memoryLimit: 16 })
    try {
      const context = await isolate.createContext()
      await context.eval(bundle.outputFiles[0]!.text)
      const result = JSON.parse(await context.eval('result', { copy: true }))
      assert.deepEqual(result, {
        exchanges: [{
          context: 'c1',
          side: 'client',
          exchange: {
            request: { method: 'GET', target: '/x', version: '1.1', headers: { host: 'h' }, bodyBytes: 0, startNs: 0, endNs: 15, tid: 0, context: 0 },
            response: { status: 200, version: '1.1', headers: { server: 'caf\xe9' }, bodyBytes: 13, startNs: 20, endNs: 25, tid: 0, context: 0 },
          },
        }],
        errors: { 'start-line': 0, 'header-line': 0, 'head-too-long': 0, 'content-length': 0, 'transfer-encoding': 0, 'chunk-size': 0, 'chunk-end': 0, position: 0 },
        textDecoder: 'undefined',
        buffer: 'undefined',
      })
    } finally {
      isolate.dispose()
    }
  })
})
