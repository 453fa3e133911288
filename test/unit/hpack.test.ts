/**
 * The HPACK decoder (runtime/protocols/hpack.ts) against RFC 7541 Appendix C, block by block:
 * every field and the dynamic table's size after each block.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { HPACK_CUT, HPACK_ERROR, HPACK_OK, HPACK_OTHER, HPACK_UNRESOLVED, HpackDecoder, huffmanBound, huffmanDecode } from '../../runtime/protocols/hpack.ts'

type Field = [string | undefined, string | undefined]

/** Decodes a whole block with a decoder that keeps every field. */
export function decodeAll(decoder: HpackDecoder, block: Uint8Array): { status: number; fields: Field[] } {
  const fields: Field[] = []
  const status = decoder.decode(block, 0, block.length, { field: (_name, text, value) => fields.push([text, value]) })
  return { status, fields }
}

const hex = (text: string) => Uint8Array.from(Buffer.from(text, 'hex'))

const date21: Field = ['date', 'Mon, 21 Oct 2013 20:13:21 GMT']
const date22: Field = ['date', 'Mon, 21 Oct 2013 20:13:22 GMT']
const location: Field = ['location', 'https://www.example.com']
const cookie: Field = ['set-cookie', 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1']
const requests: Field[][] = [
  [[':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com']],
  [[':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com'], ['cache-control', 'no-cache']],
  [[':method', 'GET'], [':scheme', 'https'], [':path', '/index.html'], [':authority', 'www.example.com'], ['custom-key', 'custom-value']],
]
const responses: Field[][] = [
  [[':status', '302'], ['cache-control', 'private'], date21, location],
  [[':status', '307'], ['cache-control', 'private'], date21, location],
  [[':status', '200'], ['cache-control', 'private'], date22, location, ['content-encoding', 'gzip'], cookie],
]

/** Each sequence shares one decoder; [hex, fields, table size after]. */
const sequences: { name: string; tableSize: number; blocks: [string, Field[], number][] }[] = [
  { name: 'C.2.1 literal with indexing', tableSize: 4096, blocks: [['400a637573746f6d2d6b65790d637573746f6d2d686561646572', [['custom-key', 'custom-header']], 55]] },
  { name: 'C.2.2 literal without indexing', tableSize: 4096, blocks: [['040c2f73616d706c652f70617468', [[':path', '/sample/path']], 0]] },
  { name: 'C.2.3 literal never indexed', tableSize: 4096, blocks: [['100870617373776f726406736563726574', [['password', 'secret']], 0]] },
  { name: 'C.2.4 indexed', tableSize: 4096, blocks: [['82', [[':method', 'GET']], 0]] },
  {
    name: 'C.3 requests without Huffman',
    tableSize: 4096,
    blocks: [
      ['828684410f7777772e6578616d706c652e636f6d', requests[0]!, 57],
      ['828684be58086e6f2d6361636865', requests[1]!, 110],
      ['828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565', requests[2]!, 164],
    ],
  },
  {
    name: 'C.4 requests with Huffman',
    tableSize: 4096,
    blocks: [
      ['828684418cf1e3c2e5f23a6ba0ab90f4ff', requests[0]!, 57],
      ['828684be5886a8eb10649cbf', requests[1]!, 110],
      ['828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf', requests[2]!, 164],
    ],
  },
  {
    name: 'C.5 responses without Huffman, evicting from a 256-byte table',
    tableSize: 256,
    blocks: [
      ['4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31333a323120474d546e1768747470733a2f2f7777772e6578616d706c652e636f6d', responses[0]!, 222],
      ['4803333037c1c0bf', responses[1]!, 222],
      ['88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a04677a69707738666f6f3d4153444a4b48514b425a584f5157454f50495541585157454f49553b206d61782d6167653d333630303b2076657273696f6e3d31', responses[2]!, 215],
    ],
  },
  {
    name: 'C.6 responses with Huffman, evicting from a 256-byte table',
    tableSize: 256,
    blocks: [
      ['488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b97c8e9ae82ae43d3', responses[0]!, 222],
      ['4883640effc1c0bf', responses[1]!, 222],
      ['88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007', responses[2]!, 215],
    ],
  },
]

describe('HPACK decoder, RFC 7541 Appendix C', () => {
  for (const sequence of sequences) {
    it(sequence.name, () => {
      const decoder = new HpackDecoder({ tableSize: sequence.tableSize })
      for (const [block, fields, size] of sequence.blocks) {
        assert.deepEqual(decodeAll(decoder, hex(block)), { status: HPACK_OK, fields })
        assert.equal(decoder.tableSize, size)
      }
      assert.deepEqual(decoder.errors, {})
    })
  }

  it('decodes only the names asked for, and still sizes the entries of the others', () => {
    const decoder = new HpackDecoder({ names: [':status', 'set-cookie'], tableSize: 256 })
    const seen: [number, string | undefined, string | undefined][] = []
    const sink = { field: (name: number, text: string | undefined, value: string | undefined) => void seen.push([name, text, value]) }
    for (const [block, , size] of sequences.at(-1)!.blocks) {
      assert.equal(decoder.decode(hex(block), 0, hex(block).length, sink), HPACK_OK)
      assert.equal(decoder.tableSize, size)
    }
    assert.deepEqual(seen.filter(([name]) => name !== HPACK_OTHER), [[0, undefined, '302'], [0, undefined, '307'], [0, undefined, '200'], [1, undefined, cookie[1]]])
    assert.equal(seen.length, 14)
  })
})

describe('HPACK decoder, damaged and unknown input', () => {
  it('a block cut inside a field gives the fields before it and HPACK_CUT', () => {
    const block = hex('828684418cf1e3c2e5f23a6ba0ab90f4ff')
    const decoder = new HpackDecoder()
    const fields: Field[] = []
    assert.equal(decoder.decode(block, 0, 8, { field: (_n, text, value) => fields.push([text, value]) }), HPACK_CUT)
    assert.deepEqual(fields, requests[0]!.slice(0, 3))
    assert.equal(decoder.complete, false)
  })

  it('index 0, an index past a known table, EOS in a Huffman string, and a late size update are errors', () => {
    for (const [block, reason] of [['80', 'hpack-index'], ['be', 'hpack-index'], ['4100', undefined], ['0083ffffff', 'hpack-huffman'], ['8220', 'hpack-size-update'], ['3fe1ffffff0f', 'hpack-integer']] as const) {
      const decoder = new HpackDecoder()
      const { status } = decodeAll(decoder, hex(block))
      if (reason === undefined) {
        assert.equal(status, HPACK_OK, block)
        continue
      }
      assert.equal(status, HPACK_ERROR, block)
      assert.deepEqual(decoder.errors, { [reason]: 1 }, block)
    }
  })

  it('after unsync, references past the refilled entries are unresolved, later literals resolve, a size update to 0 resynchronises', () => {
    const decoder = new HpackDecoder()
    decoder.unsync()
    // C.3.2 refers to :authority at 62, which this decoder never saw
    assert.deepEqual(decodeAll(decoder, hex('828684be58086e6f2d6361636865')).fields, [...requests[1]!.slice(0, 3), [undefined, undefined], ['cache-control', 'no-cache']])
    assert.equal(decoder.unresolved, 1)
    // C.3.3 refers to 62 (custom-key, added before it) and 63 (cache-control, now known)... and 64 is unknown
    assert.deepEqual(decodeAll(decoder, hex('bebfc0')).fields, [['cache-control', 'no-cache'], [undefined, undefined], [undefined, undefined]])
    assert.equal(decoder.unresolved, 3)
    assert.deepEqual(decodeAll(decoder, hex('2030be')).status, HPACK_ERROR)
    assert.equal(decoder.complete, false)
    const fresh = new HpackDecoder()
    fresh.unsync()
    assert.equal(decodeAll(fresh, hex('203fe11f')).status, HPACK_OK)
    assert.equal(fresh.complete, true)
    assert.equal(decodeAll(fresh, hex('be')).status, HPACK_ERROR)
  })

  it('a name that is unresolved yields HPACK_UNRESOLVED and an entry that later resolves as unresolved too', () => {
    const decoder = new HpackDecoder({ names: [':path'] })
    decoder.unsync()
    const seen: [number, string | undefined][] = []
    const sink = { field: (name: number, _text: string | undefined, value: string | undefined) => void seen.push([name, value]) }
    // literal with incremental indexing, name index 70 (unknown), value "x"; then the new entry (62)
    decoder.decode(hex('7f0701 78 be'.replaceAll(' ', '')), 0, 5, sink)
    assert.deepEqual(seen, [[HPACK_UNRESOLVED, undefined], [HPACK_UNRESOLVED, undefined]])
    assert.equal(decoder.unresolved, 2)
  })
})

describe('Huffman decoding', () => {
  it('rejects padding longer than 7 bits or not all ones', () => {
    const out = new Uint8Array(huffmanBound(4))
    // "a" is 00011 (5 bits): 00011111 is valid; 00011000 pads with zeros; 00011111 11111111 pads 11 bits
    assert.equal(huffmanDecode(hex('1f'), 0, 1, out), 1)
    assert.equal(out[0], 0x61)
    assert.equal(huffmanDecode(hex('18'), 0, 1, out), -1)
    assert.equal(huffmanDecode(hex('1fff'), 0, 2, out), -1)
  })
})
