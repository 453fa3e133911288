/**
 * The HPACK decoder (runtime/protocols/hpack.ts) against a real encoder: nghttp2, through
 * `node:http2`. Random header sets (repeated, so the dynamic table is used; large, so it evicts;
 * with random table sizes announced in SETTINGS, so the encoder sends size updates) cross a
 * recording proxy, and every header block decodes to exactly the fields the other end received.
 * Then the same blocks decoded from the middle of the connection: whatever resolves is right.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { HPACK_OK, HpackDecoder } from '../../runtime/protocols/hpack.ts'
import { capture, headerBlocks, pairs } from './http2-capture.ts'

const runs = Number(process.env.HPACK_FUZZ_RUNS ?? 40)

type Field = [string | undefined, string | undefined]

function decodeAll(decoder: HpackDecoder, block: Uint8Array): { status: number; fields: Field[] } {
  const fields: Field[] = []
  const status = decoder.decode(block, 0, block.length, { field: (_name, text, value) => fields.push([text, value]) })
  return { status, fields }
}

const valueChar = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~!#$%&*+/:;<=>?@[]^`{|}'.split(''))
const headerValue = fc.oneof(
  fc.string({ unit: valueChar, maxLength: 24 }),
  // long values evict entries from small tables
  fc.string({ unit: valueChar, minLength: 100, maxLength: 400 }),
  // inner spaces
  fc.tuple(fc.string({ unit: valueChar, minLength: 1, maxLength: 8 }), fc.string({ unit: valueChar, minLength: 1, maxLength: 8 })).map(([a, b]) => `${a} ${b}`),
)
const headerName = fc.string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789-'.split('')), minLength: 1, maxLength: 12 }).map((name) => `x-${name}`)
const headerSet = fc.uniqueArray(fc.tuple(headerName, headerValue), { selector: ([name]) => name, maxLength: 8 })
const tableSize = fc.constantFrom(0, 64, 256, 1000, 4096, 65536)

interface Conversation {
  records: Awaited<ReturnType<typeof capture>>['records']
  /** by stream id: the fields the server received, and those the client received */
  requests: Map<number, [string, string][]>
  responses: Map<number, [string, string][]>
}

/** Sends `order` requests (indexes into `sets`), each answered with the set after it. */
async function converse(sets: [string, string][][], order: number[], serverTable: number, clientTable: number): Promise<Conversation> {
  const requests = new Map<number, [string, string][]>()
  const responses = new Map<number, [string, string][]>()
  const { records } = await capture(
    (stream, headers, rawHeaders) => {
      requests.set(stream.id!, pairs(rawHeaders))
      const k = Number(String(headers[':path']).slice(1))
      stream.respond({ ':status': 200, ...Object.fromEntries(sets[(k + 1) % sets.length]!) }, { endStream: true })
    },
    async (session) => {
      for (const k of order) {
        const stream = session.request({ ':path': `/${k}`, ...Object.fromEntries(sets[k]!) })
        await new Promise<void>((resolve, reject) => {
          stream.on('response', (_headers, _flags, raw) => responses.set(stream.id!, pairs(raw as unknown as string[])))
          stream.resume()
          stream.on('close', resolve)
          stream.on('error', reject)
        })
      }
    },
    { server: { headerTableSize: serverTable }, client: { headerTableSize: clientTable } },
  )
  return { records, requests, responses }
}

describe('HPACK decoder against nghttp2', () => {
  it('decodes every header block of random conversations exactly', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(headerSet, { minLength: 1, maxLength: 5 }), fc.array(fc.nat(), { minLength: 1, maxLength: 12 }), tableSize, tableSize, async (sets, picks, serverTable, clientTable) => {
        const order = picks.map((pick) => pick % sets.length)
        const conversation = await converse(sets, order, serverTable, clientTable)
        // a decoder keeping only some names must size the others' entries right to stay in step
        const kept = [':path', ':status', ...sets.flat().filter((_, i) => i % 2 === 0).map(([name]) => name)]
        for (const [direction, truth] of [['c2s', conversation.requests], ['s2c', conversation.responses]] as const) {
          const decoder = new HpackDecoder()
          const some = new HpackDecoder({ names: kept })
          const blocks = headerBlocks(conversation.records, direction)
          assert.equal(blocks.length, order.length)
          for (const { stream, block } of blocks) {
            assert.deepEqual(decodeAll(decoder, block), { status: HPACK_OK, fields: truth.get(stream) }, `${direction} stream ${stream}`)
            const fields: Field[] = []
            assert.equal(some.decode(block, 0, block.length, { field: (name, _text, value) => void (name >= 0 && fields.push([kept[name], value])) }), HPACK_OK)
            assert.deepEqual(fields, truth.get(stream)!.filter(([name]) => kept.includes(name)))
          }
          assert.deepEqual(decoder.errors, {})
          assert.equal(decoder.unresolved, 0)
          assert.equal(some.tableSize, decoder.tableSize)
        }
      }),
      { numRuns: runs },
    )
  })

  it('from the middle of a connection, resolves what was added since, leaves the rest undefined, and counts it', async () => {
    const before: [string, string][] = [['x-session', 'alpha-1234'], ['x-tenant', 'blue']]
    const after: [string, string][] = [['x-session', 'omega-9876'], ['x-region', 'north']]
    // sets 0 and 1 before the cut; after it, 1 again (entries from before) and 2 twice (refilled)
    const conversation = await converse([before, before, after], [0, 1, 2, 2, 1], 4096, 4096)
    const blocks = headerBlocks(conversation.records, 'c2s')
    const decoder = new HpackDecoder()
    decoder.unsync()
    const decoded = blocks.slice(2).map(({ stream, block }) => ({ stream, ...decodeAll(decoder, block) }))
    for (const { stream, status, fields } of decoded) {
      assert.equal(status, HPACK_OK)
      const truth = conversation.requests.get(stream)!
      assert.equal(fields.length, truth.length)
      fields.forEach(([name, value], i) => {
        if (name !== undefined) assert.equal(name, truth[i]![0])
        if (value !== undefined) assert.equal(value, truth[i]![1])
        // a field is resolved or not, never half
        assert.equal(name === undefined, value === undefined)
      })
    }
    const unresolved = decoded.map(({ fields }) => fields.filter(([name]) => name === undefined).length)
    // the first `after` block refers to :authority and to the name x-session from before; its new
    // entries refill the table, so the second resolves x-region by index (its x-session entry took
    // the unknown name along); the last `before` block refers to three entries from before
    assert.deepEqual(unresolved, [2, 2, 3])
    assert.equal(decoder.unresolved, 7)
    assert.ok(blocks[3]!.block.length < 12, 'the second `after` block is all indices')
    assert.deepEqual(decoded[1]!.fields.at(-1), ['x-region', 'north'])
  })
})
