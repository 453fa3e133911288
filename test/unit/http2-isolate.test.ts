/**
 * The HTTP/2 parser runs where plugins run: bundled by esbuild the way plugin builds bundle
 * `periscope/protocols/http2`, inside a bare isolated-vm isolate with V8's builtins only, it reads
 * a recorded gRPC conversation exactly as it does in Node.
 */
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import * as esbuild from 'esbuild'
import ivm from 'isolated-vm'
import { chunksOf } from './http2-capture.ts'
import { feed, grpcCapture } from './http2-scenarios.ts'

const protocolsDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../runtime/protocols')

const driver = `
import { Http2Parser, grpcStatusName } from 'periscope/protocols/http2'
const exchanges = []
const parser = new Http2Parser((exchange, context, side) => exchanges.push({ ...exchange, side }), {
  headers: ['content-type', 'user-agent', 'grpc-status'],
  onRequest() {},
})
const connection = parser.connection(null, 'server')
for (const chunk of globalThis.records) connection.push({ ...chunk, data: Uint8Array.from(chunk.data) })
connection.close()
globalThis.result = JSON.stringify({ exchanges, errors: parser.errors, name: grpcStatusName(5), textDecoder: typeof TextDecoder, buffer: typeof Buffer })
`

describe('HTTP/2 parser in a plugin isolate', () => {
  it('bundles with no Node import and reads a gRPC conversation as in Node', async () => {
    const { records } = await grpcCapture()
    const chunks = chunksOf(records, 'server')
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
    const isolate = new ivm.Isolate({ memoryLimit: 32 })
    try {
      const context = await isolate.createContext()
      const plain = chunks.map((chunk) => ({ ...chunk, data: [...chunk.data] }))
      await context.global.set('records', new ivm.ExternalCopy(plain).copyInto())
      await context.eval(bundle.outputFiles[0]!.text)
      const result = JSON.parse(await context.eval('result', { copy: true }))
      const inNode = feed(chunks, 'server')
      assert.equal(result.exchanges.length, 6)
      assert.deepEqual(result, { exchanges: JSON.parse(JSON.stringify(inNode.exchanges)), errors: {}, name: 'NOT_FOUND', textDecoder: 'undefined', buffer: 'undefined' })
      assert.equal(result.exchanges[2].response.grpcMessage, 'bad thingé')
    } finally {
      isolate.dispose()
    }
  })
})
