/**
 * The Kafka parser (runtime/protocols/kafka.ts) on conversations captured from Kafka 4.1.1's own
 * tools (ProducerPerformance, ConsoleConsumer; kafka-captures.json) and on frames written from the
 * message schemas for the versions and cases those tools do not send.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { API_FETCH, API_PRODUCE, kafkaErrorName } from '../../runtime/protocols/kafka.ts'
import {
  capturedConnections, fetchRequest, fetchResponse, javaReads, metadataRequest, metadataResponse, produceRequest, produceResponse,
  recordBatch, recordsOf, replay, type Frame, type Record_,
} from './kafka-wire.ts'

const captured = capturedConnections()
const ORDERS_ID = '1bfbe8cc5f1146668407023822c00958'

/** What the tests compare of an operation. */
function summary(op: ReturnType<typeof replay>['operations'][number]) {
  return {
    api: op.apiKey === API_PRODUCE ? 'produce' : 'fetch',
    version: op.apiVersion,
    clientId: op.clientId,
    outcome: op.outcome,
    records: op.records,
    exact: op.recordsExact,
    error: op.errorCode === 0 ? undefined : kafkaErrorName(op.errorCode),
    topics: op.topics.map((t) => `${t.name ?? t.id}:${t.partitions}:${t.records}${t.errorCode === 0 ? '' : `:${kafkaErrorName(t.errorCode)}@${t.errorPartition}`}`),
  }
}

const producerOps = Array.from({ length: 5 }, () => ({
  api: 'produce', version: 13, clientId: 'capture-producer', outcome: 'response', records: 2, exact: true, error: undefined, topics: ['orders:1:2'],
}))

describe('Kafka parser on captured Kafka 4.1.1 conversations', () => {
  it('the captures are the conversations the tests expect (connections by client id)', () => {
    assert.deepEqual(captured.map((c) => c.clientId), [
      'adminclient-1', 'adminclient-1', 'adminclient-1', 'adminclient-1', 'capture-producer', 'capture-producer',
      'capture-consumer', 'capture-consumer', 'capture-consumer', 'capture-too-large', 'capture-too-large',
      'capture-out-of-range', 'capture-out-of-range',
    ])
  })

  it('every Produce and Fetch with its topic (ids named by the Metadata of another connection), records and errors', () => {
    const { operations, errors } = replay(captured.map((c) => recordsOf(c.frames)))
    assert.deepEqual(errors, {})
    const byClient = (id: string) => operations.filter((op) => op.clientId === id).map(summary)
    // ProducerPerformance: 10 records of 40 bytes with batch.size=200: five pipelined Produce v13 of 2
    assert.deepEqual(byClient('capture-producer'), producerOps)
    const consumer = byClient('capture-consumer')
    assert.deepEqual(consumer[0], { api: 'fetch', version: 18, clientId: 'capture-consumer', outcome: 'response', records: 10, exact: true, error: undefined, topics: ['orders:1:10'] })
    // the rest are the long polls of an incremental fetch session that returned nothing
    assert.deepEqual(consumer.slice(1).map((op) => [op.records, op.topics.length, op.error]), [[0, 0, undefined], [0, 0, undefined]])
    assert.deepEqual(byClient('capture-too-large'), [
      { api: 'produce', version: 13, clientId: 'capture-too-large', outcome: 'response', records: 1, exact: true, error: 'MESSAGE_TOO_LARGE', topics: ['small:1:1:MESSAGE_TOO_LARGE@0'] },
    ])
    const outOfRange = byClient('capture-out-of-range')
    assert.deepEqual(outOfRange[0], { api: 'fetch', version: 18, clientId: 'capture-out-of-range', outcome: 'response', records: 0, exact: true, error: 'OFFSET_OUT_OF_RANGE', topics: ['orders:1:0:OFFSET_OUT_OF_RANGE@0'] })
    assert.equal(outOfRange.filter((op) => op.error !== undefined).length, 1)
    assert.equal(operations.length, 5 + 3 + 1 + 7)
  })

  it('the same from records cut as a Java client reads (a response\'s 4-byte size alone, then its body)', () => {
    const whole = replay(captured.map((c) => recordsOf(c.frames)))
    const java = replay(captured.map((c) => recordsOf(c.frames, javaReads)))
    assert.deepEqual(java.errors, {})
    assert.deepEqual(java.operations.map(summary), whole.operations.map(summary))
  })

  it('times: a Produce span runs from its request\'s first record to its response\'s last', () => {
    // producer connection alone (index 5) after its metadata connection (index 4): records 0..n numbered per replay
    const connection = captured[5]!
    const records = recordsOf(connection.frames, javaReads)
    const { operations } = replay([recordsOf(captured[4]!.frames), records])
    const first = operations[0]!
    const metadataRecords = captured[4]!.frames.length
    // the first Produce is the producer connection's fourth record (after ApiVersions and its response's size and body)
    assert.equal(first.startNs, (metadataRecords + 3) * 10)
    // five requests, then responses as size + body pairs: the first response's body is record 3 + 5 + 1
    assert.equal(first.endNs, (metadataRecords + 3 + 5 + 1) * 10 + 5)
  })

  it('a topic id no Metadata named is kept as the id, and counted', () => {
    const { operations, errors } = replay([recordsOf(captured[5]!.frames)])
    assert.deepEqual(operations.map((op) => op.topics.map((t) => [t.name, t.id])), Array.from({ length: 5 }, () => [[undefined, ORDERS_ID]]))
    assert.deepEqual(errors, { unknown_topic_id: 5 })
  })

  it('a capture size that cuts the record batches: every operation still comes, with its topic, counts marked inexact', () => {
    // 120 bytes: the Metadata responses' bodies (119 bytes) fit, and so do a Produce v13 request's
    // header, topic id and partition; its batch header (bytes 62 to 123, the record count last) does not
    const { operations, errors } = replay(captured.map((c) => recordsOf(c.frames, javaReads)), { captureBytes: 120 })
    const producer = operations.filter((op) => op.clientId === 'capture-producer').map(summary)
    assert.deepEqual(producer, producerOps.map((op) => ({ ...op, records: 0, exact: false, topics: ['orders:1:0'] })))
    const fetch = operations.find((op) => op.clientId === 'capture-consumer' && op.recordBytes > 0)!
    assert.equal(fetch.recordsExact, false)
    assert.equal(fetch.topics[0]!.name, 'orders')
    // a capture that cuts record data is no parse error: the operations say their counts are inexact
    assert.deepEqual(errors, {})
  })
})

describe('Kafka parser on frames written from the message schemas', () => {
  const orders = (records: number, errorCode = 0): Frame[] => [
    produceRequest(7, 1, 'app', 1, [{ name: 'orders', partitions: [{ index: 0, batches: [recordBatch(records)] }] }]),
    produceResponse(7, 1, [{ name: 'orders', partitions: [{ index: 0, errorCode }] }]),
  ]

  it('Produce v3–v12 name their topics; several topics and partitions, several batches each', () => {
    for (const version of [3, 5, 8, 9, 12]) {
      const frames = [
        produceRequest(version, 7, 'app', -1, [
          { name: 'orders', partitions: [{ index: 0, batches: [recordBatch(3), recordBatch(4)] }, { index: 1, batches: [recordBatch(5)] }] },
          { name: 'audit', partitions: [{ index: 2, batches: [recordBatch(1)] }] },
        ]),
        produceResponse(version, 7, [
          { name: 'orders', partitions: [{ index: 0 }, { index: 1, errorCode: 6 }] },
          { name: 'audit', partitions: [{ index: 2 }] },
        ]),
      ]
      const { operations, errors } = replay([recordsOf(frames)])
      assert.deepEqual(errors, {}, `v${version}`)
      assert.deepEqual(operations.map(summary), [{
        api: 'produce', version, clientId: 'app', outcome: 'response', records: 13, exact: true, error: 'NOT_LEADER_OR_FOLLOWER',
        topics: ['orders:2:12:NOT_LEADER_OR_FOLLOWER@1', 'audit:1:1'],
      }], `v${version}`)
      assert.equal(operations[0]!.acks, -1)
    }
  })

  it('Produce with acks=0 has no response: its operation ends with its request, and the next response still pairs', () => {
    const frames = [
      produceRequest(9, 1, 'fire', 0, [{ name: 't', partitions: [{ index: 0, batches: [recordBatch(2)] }] }]),
      ...orders(4).map((f) => f), // correlation id 1 again is fine: acks=0 was never pending
    ]
    const { operations, errors } = replay([recordsOf(frames)])
    assert.deepEqual(errors, {})
    assert.deepEqual(operations.map((op) => [op.outcome, op.records, op.topics[0]!.name, op.startNs, op.endNs]), [
      ['no_response', 2, 't', 0, 5],
      ['response', 4, 'orders', 10, 25],
    ])
  })

  it('control batches (transaction markers) are not counted as messages', () => {
    const frames = [
      fetchRequest(11, 4, 'c'),
      fetchResponse(11, 4, 0, [{ name: 'tx', partitions: [{ index: 0, batches: [recordBatch(3), recordBatch(1, { control: true })] }] }]),
    ]
    const { operations } = replay([recordsOf(frames)])
    assert.deepEqual(operations.map(summary), [{ api: 'fetch', version: 11, clientId: 'c', outcome: 'response', records: 3, exact: true, error: undefined, topics: ['tx:1:3'] }])
  })

  it('Fetch v4–v12 with names, v13+ with ids; a partial last batch is not counted; the top-level error is the operation\'s', () => {
    for (const version of [4, 7, 11, 12, 13, 17]) {
      const id = 'aa'.repeat(16)
      const partial = recordBatch(9).subarray(0, 70)
      const frames = [
        ...(version >= 13 ? [metadataRequest(12, 1, 'c'), metadataResponse(12, 1, [{ name: 'events', id }])] : []),
        fetchRequest(version, 2, 'c'),
        fetchResponse(version, 2, 0, [{ name: 'events', id, partitions: [{ index: 0, batches: [recordBatch(2), recordBatch(3), partial] }, { index: 1, errorCode: 1 }] }]),
        fetchRequest(version, 3, 'c'),
        fetchResponse(version, 3, version >= 7 ? 70 : 0, []),
      ]
      const { operations, errors } = replay([recordsOf(frames)])
      assert.deepEqual(errors, {}, `v${version}`)
      assert.deepEqual(operations.map(summary), [
        { api: 'fetch', version, clientId: 'c', outcome: 'response', records: 5, exact: true, error: 'OFFSET_OUT_OF_RANGE', topics: ['events:2:5:OFFSET_OUT_OF_RANGE@1'] },
        { api: 'fetch', version, clientId: 'c', outcome: 'response', records: 0, exact: true, error: version >= 7 ? 'FETCH_SESSION_ID_NOT_FOUND' : undefined, topics: [] },
      ], `v${version}`)
    }
  })

  it('the default capture size (4096): a large Produce keeps its exact count (one batch per partition, its header first); a large Fetch does not', () => {
    const frames = [
      produceRequest(9, 1, 'big', 1, [{ name: 'bulk', partitions: [{ index: 0, batches: [recordBatch(1000)] }] }]),
      produceResponse(9, 1, [{ name: 'bulk', partitions: [{ index: 0 }] }]),
      fetchRequest(12, 2, 'big'),
      fetchResponse(12, 2, 0, [{ name: 'bulk', partitions: [{ index: 0, batches: [recordBatch(600), recordBatch(600), recordBatch(600)] }] }]),
    ]
    assert.ok(frames[0]!.bytes.length > 8000 && frames[3]!.bytes.length > 14000)
    const { operations, errors } = replay([recordsOf(frames, javaReads)], { captureBytes: 4096 })
    assert.deepEqual(operations.map((op) => [op.records, op.recordsExact, op.topics[0]!.name]), [[1000, true, 'bulk'], [600, false, 'bulk']])
    assert.deepEqual(errors, {})
  })

  it('a response lost: its Produce ends as lost when the next response pairs, and decoding goes on', () => {
    const frames = [...orders(1), ...orders(2).map((f, i) => i === 0 ? produceRequest(7, 2, 'app', 1, [{ name: 'orders', partitions: [{ index: 0, batches: [recordBatch(2)] }] }]) : produceResponse(7, 2, [{ name: 'orders', partitions: [{ index: 0 }] }]))]
    // request 1, request 2 sent; response 1 lost; response 2 arrives after a loss
    const records: Record_[] = [
      { direction: frames[0]!.direction, bytes: frames[0]!.bytes },
      { direction: frames[2]!.direction, bytes: frames[2]!.bytes },
      { direction: frames[3]!.direction, bytes: frames[3]!.bytes, lostBefore: frames[1]!.bytes.length },
    ]
    const { operations, errors } = replay([records])
    assert.deepEqual(operations.map((op) => [op.correlationId, op.outcome, op.records]), [[1, 'lost', 1], [2, 'response', 2]])
    // the first response record seen is not at position 0: it starts a frame, whose correlation id is pending
    assert.deepEqual(errors, { unanswered: 1 })
  })

  it('a connection first seen mid-stream: a record cut inside a frame is skipped, the next frame boundary resynchronises', () => {
    const frames = [...orders(1), ...orders(2), ...orders(3)]
    const records = recordsOf(frames, (frame) => frame.direction === 0 ? [20] : [])
    // start at the second half of the first request: positions as if 20 bytes were sent before
    const { operations, errors } = replay([records.slice(1)], { startPositions: [[20, 0]] })
    // the first response answers a request never seen
    assert.deepEqual(operations.map((op) => op.records), [2, 3])
    assert.deepEqual(errors, { resync: 1, unknown_correlation_id: 1 })
  })

  it('a connection open before Periscope: its record at position 0 is not trusted as a frame start, so a cut frame cannot swallow the next ones', () => {
    // the tail of a request sent before Periscope started, whose bytes read as a size of 200 and an unknown api key
    const tail = Uint8Array.of(0, 0, 0, 200, 0xff, 0xff, 0xff, 0xff, 0, 0)
    const frames = orders(2)
    const records: Record_[] = [{ direction: 0, bytes: tail }, ...recordsOf(frames)]
    const trusting = replay([records])
    assert.deepEqual(trusting.operations, [], 'taken for a frame start, the tail swallows the next request')
    const { operations, errors } = replay([records], { midStream: true })
    assert.deepEqual(operations.map((op) => op.records), [2])
    assert.deepEqual(errors, { resync: 1 })
  })

  it('a connection of unknown role: an end whose egress is requests is a client; one receiving requests is a server and is ignored', () => {
    const frames = orders(5)
    const client = replay([recordsOf(frames)], { role: 'unknown' })
    assert.deepEqual(client.operations.map((op) => op.records), [5])
    const server = replay([recordsOf(frames.map((f) => ({ ...f, direction: f.direction === 0 ? 1 : 0 } as Frame)))], { role: 'unknown' })
    assert.deepEqual(server.operations, [])
    assert.deepEqual(server.errors, {})
  })

  it('an operation carries the context of its request\'s first record (the HTTP request its thread served)', () => {
    const frames = orders(1)
    const records: Record_[] = [
      { direction: 0, bytes: frames[0]!.bytes.subarray(0, 20), context: 77 },
      { direction: 0, bytes: frames[0]!.bytes.subarray(20), context: 78 },
      { direction: 1, bytes: frames[1]!.bytes, context: 79 },
    ]
    assert.deepEqual(replay([records]).operations.map((op) => op.context), [77])
  })

  it('a connection that closes with a Produce unanswered ends it as closed', () => {
    const { operations } = replay([recordsOf(orders(3).slice(0, 1))])
    assert.deepEqual(operations.map((op) => [op.outcome, op.records]), [['closed', 3]])
  })

  it('garbage that is not Kafka: counted, nothing emitted, nothing thrown', () => {
    const garbage = new Uint8Array(300).map((_, i) => (i * 37 + 11) & 0xff)
    const { operations, errors } = replay([[{ direction: 0, bytes: garbage }, { direction: 1, bytes: garbage }]])
    assert.deepEqual(operations, [])
    assert.ok(Object.values(errors).reduce((a, b) => a + b, 0) >= 1)
  })

  it('error names: known codes by name, -1, and unknown codes as numbers', () => {
    assert.equal(kafkaErrorName(10), 'MESSAGE_TOO_LARGE')
    assert.equal(kafkaErrorName(3), 'UNKNOWN_TOPIC_OR_PARTITION')
    assert.equal(kafkaErrorName(-1), 'UNKNOWN_SERVER_ERROR')
    assert.equal(kafkaErrorName(999), '999')
    assert.equal(API_FETCH, 1)
  })
})
