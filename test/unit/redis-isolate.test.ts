/**
 * The Redis parser runs where plugins run: bundled by esbuild the way plugin builds bundle
 * `periscope/protocols/redis`, inside a bare isolated-vm isolate with V8's builtins only (no
 * TextDecoder, no Buffer, no Node module).
 */
import assert from 'node:assert/strict'
import path from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import * as esbuild from 'esbuild'
import ivm from 'isolated-vm'

const protocolsDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../runtime/protocols')

/** A pipelined SET and GET of a UTF-8 key split across records, then a WRONGTYPE error. */
const driver = `
import { RedisParser, EGRESS, INGRESS } from 'periscope/protocols/redis'
const bytes = (text) => Uint8Array.from(text, (c) => c.charCodeAt(0))
const commands = []
const parser = new RedisParser((c, context, side) => commands.push({ name: c.name, key: c.key, outcome: c.outcome, errorPrefix: c.errorPrefix, database: c.database, context, side }))
const connection = parser.connection('c1', 'client')
const key = 'k\\xc3\\xa9'
const records = [
  [EGRESS, '*3\\r\\n$3\\r\\nSET\\r\\n$3\\r\\n' + key + '\\r\\n$1\\r\\nv\\r\\n*2\\r\\n$3\\r'],
  [EGRESS, '\\nGET\\r\\n$3\\r\\n' + key + '\\r\\n*2\\r\\n$4\\r\\nINCR\\r\\n$3\\r\\n' + key + '\\r\\n'],
  [INGRESS, '+OK\\r\\n$1\\r\\nv\\r\\n-WRONGTYPE Operation against a key holding the wrong kind of value\\r\\n'],
]
const positions = [0, 0]
records.forEach(([direction, text], i) => {
  const data = bytes(text)
  connection.push({ direction, position: positions[direction], bytes: data.length, data, startNs: i * 10, endNs: i * 10 + 5 })
  positions[direction] += data.length
})
globalThis.result = JSON.stringify({ commands, errors: parser.errors, textDecoder: typeof TextDecoder, buffer: typeof Buffer })
`

describe('Redis parser in a plugin isolate', () => {
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
      assert.deepEqual(result.commands, [
        { name: 'SET', key: 'ké', outcome: 'ok', database: 0, context: 'c1', side: 'client' },
        { name: 'GET', key: 'ké', outcome: 'ok', database: 0, context: 'c1', side: 'client' },
        { name: 'INCR', key: 'ké', outcome: 'error', errorPrefix: 'WRONGTYPE', database: 0, context: 'c1', side: 'client' },
      ])
      assert.ok(Object.values(result.errors).every((n) => n === 0))
      assert.deepEqual([result.textDecoder, result.buffer], ['undefined', 'undefined'])
    } finally {
      isolate.dispose()
    }
  })
})
