// Kafka spans end to end: a real Kafka 4.1.1 broker (KRaft, one node; test/peers/kafka.ts), Kafka's
// own producer and consumer tools as separate JVMs, `periscope run` with only the kafka plugin
// exporting to a real Collector. Every record produced must be counted once in the producer's send
// spans and once in the consumer's receive spans, with the topic, client id and broker address; a
// broker error must give an error span with its Kafka error name; the broker's own connections
// (to its controller) and the empty long polls must give no span.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { attributesOf, flatten, startCollector, type Collector } from '../peers/otelcol.ts'
import { startKafka, type Kafka } from '../peers/kafka.ts'
import { startPeriscope, type Periscope } from '../peers/periscope.ts'

type Json = Record<string, unknown>

/** OTLP span kinds */
const CLIENT = 3
const PRODUCER = 4

interface Span {
  name: string
  kind: number
  attributes: Record<string, unknown>
  resource: Record<string, unknown>
  error: boolean
  statusMessage: string
  startNs: bigint
  endNs: bigint
}

function spansOf(lines: Json[]): Span[] {
  return flatten('traces', lines).map(({ item, resource }) => {
    const status = item.status as { code?: number; message?: string } | undefined
    return {
      name: item.name as string,
      kind: item.kind as number,
      attributes: attributesOf(item.attributes),
      resource,
      error: status?.code === 2,
      statusMessage: status?.message ?? '',
      startNs: BigInt(item.startTimeUnixNano as string),
      endNs: BigInt(item.endTimeUnixNano as string),
    }
  })
}

const pidOf = (span: Span): number => Number(span.attributes['process.pid'])
const messages = (spans: Span[]): number => spans.reduce((sum, s) => sum + Number(s.attributes['messaging.batch.message_count'] ?? 0), 0)

/** The latest cumulative count of each series of a histogram whose attributes include `match`, summed. */
function histogramCount(lines: Json[], name: string, match: Record<string, unknown>): number {
  const latest = new Map<string, number>()
  for (const { item } of flatten('metrics', lines)) {
    if (item.name !== name) continue
    for (const point of (item.histogram as { dataPoints?: Json[] } | undefined)?.dataPoints ?? []) {
      const attributes = attributesOf(point.attributes)
      if (Object.entries(match).every(([key, value]) => attributes[key] === value)) latest.set(JSON.stringify(attributes), Number(point.count))
    }
  }
  return [...latest.values()].reduce((a, b) => a + b, 0)
}

const RECORDS = 100

describe('Kafka spans from a real broker and Kafka\'s own clients', { timeout: 600_000 }, () => {
  let collector: Collector
  let kafka: Kafka
  let periscope: Periscope

  before(async () => {
    collector = await startCollector()
    const started = Date.now()
    kafka = await startKafka()
    process.stderr.write(`Kafka broker ready in ${Date.now() - started} ms\n`)
    await kafka.createTopic('orders')
    await kafka.createTopic('ledger', { partitions: 3 })
    // a broker-side limit the producer does not know: its 500-byte record is refused by the broker
    await kafka.createTopic('small', { config: { 'max.message.bytes': '200' } })
    periscope = await startPeriscope({
      endpoint: collector.httpEndpoint,
      shipped: ['kafka'],
      // the consumer's one fetch returns ~10 record batches in ~7 KB: all their headers must be captured
      config: { plugins: { kafka: { config: { capture_bytes: 16384 } } } },
      ready: /running 1 of \d+ plugins/,
    })
    await periscope.waitForOutput(/tracing Kafka clients/, 'the kafka plugin to start')
  })

  after(async () => {
    await periscope?.stop()
    await kafka?.stop()
    await collector?.stop()
  })

  /** Polls the Collector until the spans of `pid` satisfy `done`; returns them. */
  async function spansOfPid(pid: number, done: (spans: Span[]) => boolean, what: string): Promise<Span[]> {
    let found: Span[] = []
    try {
      await collector.waitFor('traces', (lines) => done(found = spansOf(lines).filter((s) => pidOf(s) === pid)), 60_000)
    } catch (error) {
      throw new Error(`${what}: ${found.length} span(s) of pid ${pid} so far: ${JSON.stringify(found.map((s) => [s.name, s.attributes]), null, 1)}\n${(error as Error).message}\nperiscope output:\n${periscope.output().slice(-3000)}`)
    }
    return found
  }

  it(`${RECORDS} records produced and consumed: send spans and receive spans each count every record once`, async () => {
    const producer = kafka.produce({ topic: 'orders', records: RECORDS, recordSize: 50, clientId: 'e2e-producer', properties: { acks: '1', 'batch.size': '1000', 'linger.ms': '0' } })
    const produced = await producer.done
    assert.equal(produced.code, 0, `the producer failed:\n${produced.stdout}${produced.stderr}`)
    assert.match(produced.stdout, new RegExp(`^${RECORDS} records sent`, 'm'))
    const consumer = kafka.consume({ topic: 'orders', maxMessages: RECORDS, clientId: 'e2e-consumer', group: 'e2e-group' })
    const consumed = await consumer.done
    assert.equal(consumed.code, 0, `the consumer failed:\n${consumed.stderr}`)
    assert.match(consumed.stderr, new RegExp(`Processed a total of ${RECORDS} messages`))

    const receives = await spansOfPid(consumer.pid, (spans) => messages(spans) >= RECORDS, 'the consumer\'s receive spans')
    // the producer finished before the consumer started, so its spans were exported first
    const sends = await spansOfPid(producer.pid, () => true, 'the producer\'s send spans')

    assert.ok(sends.length >= 1)
    assert.equal(messages(sends), RECORDS, 'every produced record is counted once')
    for (const span of sends) {
      assert.equal(span.name, 'send orders')
      assert.equal(span.kind, PRODUCER)
      assert.equal(span.error, false, span.statusMessage)
      assert.deepEqual(
        [span.attributes['messaging.system'], span.attributes['messaging.operation.type'], span.attributes['messaging.operation.name'],
          span.attributes['messaging.destination.name'], span.attributes['messaging.destination.partition.id'], span.attributes['messaging.client.id'],
          span.attributes['server.address'], span.attributes['server.port'], span.resource['process.pid']],
        ['kafka', 'send', 'send', 'orders', '0', 'e2e-producer', '127.0.0.1', kafka.port, producer.pid],
      )
      assert.ok(Number(span.attributes['messaging.batch.message_count']) >= 1)
      assert.ok(span.endNs > span.startNs)
    }

    assert.equal(messages(receives), RECORDS, 'every consumed record is counted once')
    for (const span of receives) {
      assert.equal(span.name, 'receive orders')
      assert.equal(span.kind, CLIENT)
      assert.equal(span.error, false, span.statusMessage)
      assert.deepEqual(
        [span.attributes['messaging.system'], span.attributes['messaging.operation.type'], span.attributes['messaging.destination.name'],
          span.attributes['messaging.client.id'], span.attributes['server.port']],
        ['kafka', 'receive', 'orders', 'e2e-consumer', kafka.port],
      )
    }
    // a consumer that read everything in one poll long-polls empty fetches until it exits: none is a span
    assert.ok(receives.every((s) => Number(s.attributes['messaging.batch.message_count']) >= 1))

    // the record values (random letters the consumer printed) never leave the host
    const values = consumed.stdout.split('\n').filter((line) => line.length === 50)
    assert.equal(values.length, RECORDS)
    const exported = JSON.stringify(await collector.read('traces')) + JSON.stringify(await collector.read('metrics'))
    for (const value of values) assert.ok(!exported.includes(value), `record value ${value} was exported`)

    // the histogram counts each of these spans once (the Collector gets it at the next export)
    await collector.waitFor('metrics', (lines) =>
      histogramCount(lines, 'messaging.client.operation.duration', { 'messaging.operation.name': 'send', 'messaging.destination.name': 'orders', 'server.port': kafka.port }) === sends.length &&
      histogramCount(lines, 'messaging.client.operation.duration', { 'messaging.operation.name': 'receive', 'messaging.destination.name': 'orders', 'server.port': kafka.port }) === receives.length,
    60_000)
  })

  it('a topic of 3 partitions: every record counted once each way, a fetch of all three partitions one span', async () => {
    // no key: the producer's sticky partitioner fills a batch of ~1000 bytes for one partition, then moves on
    const producer = kafka.produce({ topic: 'ledger', records: 90, recordSize: 40, clientId: 'e2e-ledger-producer', properties: { acks: 'all', 'batch.size': '1000', 'linger.ms': '20' } })
    assert.equal((await producer.done).code, 0)
    const consumer = kafka.consume({ topic: 'ledger', maxMessages: 90, clientId: 'e2e-ledger-consumer', group: 'e2e-ledger' })
    const consumed = await consumer.done
    assert.match(consumed.stderr, /Processed a total of 90 messages/)
    const receives = await spansOfPid(consumer.pid, (spans) => messages(spans) >= 90, 'the ledger consumer\'s receive spans')
    const sends = await spansOfPid(producer.pid, () => true, 'the ledger producer\'s send spans')
    assert.equal(messages(sends), 90)
    assert.equal(messages(receives), 90)
    for (const span of [...sends, ...receives]) {
      assert.equal(span.attributes['messaging.destination.name'], 'ledger')
      assert.equal(span.error, false, span.statusMessage)
      // a partition id only where the operation had exactly one partition
      const partition = span.attributes['messaging.destination.partition.id']
      assert.ok(partition === undefined || ['0', '1', '2'].includes(partition as string), String(partition))
    }
    // the consumer was assigned all three partitions and read them in the same fetches
    assert.ok(receives.some((s) => s.attributes['messaging.destination.partition.id'] === undefined), 'a fetch returned several partitions')
  })

  it('a record larger than the topic allows: one send span with error.type MESSAGE_TOO_LARGE', async () => {
    const producer = kafka.produce({ topic: 'small', records: 1, recordSize: 500, clientId: 'e2e-too-large', properties: { acks: '1', retries: '0' } })
    const produced = await producer.done
    assert.equal(produced.code, 0, `${produced.stdout}${produced.stderr}`)
    const [span, ...more] = await spansOfPid(producer.pid, (spans) => spans.length >= 1, 'the refused send\'s span')
    assert.deepEqual(more, [])
    assert.equal(span!.name, 'send small')
    assert.equal(span!.error, true)
    assert.equal(span!.attributes['error.type'], 'MESSAGE_TOO_LARGE')
    assert.equal(span!.statusMessage, 'Kafka error MESSAGE_TOO_LARGE (10) on small partition 0')
    assert.equal(span!.attributes['messaging.batch.message_count'], 1)
  })

  it('a fetch from an offset past the log\'s end: one receive span with error.type OFFSET_OUT_OF_RANGE', async () => {
    const consumer = kafka.consume({ topic: 'orders', maxMessages: 1, clientId: 'e2e-out-of-range', partition: 0, offset: RECORDS * 10, timeoutMs: 3000 })
    await consumer.done
    const spans = await spansOfPid(consumer.pid, (found) => found.some((s) => s.error), 'the out-of-range fetch\'s span')
    // the consumer then resets to the log's end, where its fetches return nothing: no other span
    assert.deepEqual(spans.map((s) => [s.name, s.attributes['error.type'], s.statusMessage]), [
      ['receive orders', 'OFFSET_OUT_OF_RANGE', 'Kafka error OFFSET_OUT_OF_RANGE (1) on orders partition 0'],
    ])
  })

  it('the broker\'s own connections (its controller traffic) make no span; the clients\' traffic parsed with no error', async () => {
    const lines = await collector.read('traces')
    assert.deepEqual(spansOf(lines).filter((s) => pidOf(s) === kafka.pid).map((s) => s.name), [])
    // the plugin's report after both topics' ids were learned covers all the traffic above
    const metrics = await collector.waitFor('metrics', (found) => (latestGauge(found, 'periscope.kafka.topic_ids').get(undefined) ?? 0) >= 2, 60_000)
    const errors = latestGauge(metrics, 'periscope.kafka.parse_errors')
    // resync and unanswered may count the broker's connection to its controller, open before Periscope
    for (const reason of ['bad_frame_size', 'truncated_header', 'truncated_body', 'bad_request', 'malformed', 'unsupported_version', 'legacy_message_format', 'unknown_topic_id', 'internal']) {
      assert.equal(errors.get(reason), 0, `parse errors ${reason}: ${JSON.stringify([...errors])}`)
    }
    assert.equal(latestGauge(metrics, 'periscope.kafka.message_counts_unknown').get(undefined), 0)
  })
})

/** A gauge's latest value by its `reason` attribute (undefined: none). */
function latestGauge(lines: Json[], name: string): Map<string | undefined, number> {
  const latest = new Map<string | undefined, number>()
  for (const { item } of flatten('metrics', lines)) {
    if (item.name !== name) continue
    for (const point of (item.gauge as { dataPoints?: Json[] } | undefined)?.dataPoints ?? []) {
      latest.set(attributesOf(point.attributes).reason as string | undefined, Number(point.asDouble ?? point.asInt))
    }
  }
  return latest
}
