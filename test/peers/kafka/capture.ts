/**
 * Records the Kafka conversations the parser's unit tests replay (test/unit/kafka-captures.json):
 * a real broker (../kafka.ts) advertises a recording proxy, so every connection of Kafka's own
 * tools passes through it, and each request and response frame is kept whole, by connection.
 *
 *   node test/peers/kafka/capture.ts > test/unit/kafka-captures.json
 */
import { createServer, connect, type Socket } from 'node:net'
import { freePort } from '../otelcol.ts'
import { KAFKA_VERSION, startKafka } from '../kafka.ts'

interface Frame {
  /** request: sent by the client; response: sent by the broker */
  direction: 'request' | 'response'
  hex: string
}

const connections: { frames: Frame[] }[] = []

/** Splits one direction's bytes into size-prefixed frames as they arrive. */
function framer(frames: Frame[], direction: Frame['direction']): (chunk: Buffer) => void {
  let pending = Buffer.alloc(0)
  return (chunk) => {
    pending = Buffer.concat([pending, chunk])
    while (pending.length >= 4 && pending.length >= 4 + pending.readInt32BE(0)) {
      const size = 4 + pending.readInt32BE(0)
      frames.push({ direction, hex: pending.subarray(0, size).toString('hex') })
      pending = pending.subarray(size)
    }
  }
}

const proxyPort = await freePort()
let brokerPort = 0
const proxy = createServer((client: Socket) => {
  const record = { frames: [] as Frame[] }
  connections.push(record)
  const broker = connect(brokerPort, '127.0.0.1')
  client.on('data', framer(record.frames, 'request'))
  broker.on('data', framer(record.frames, 'response'))
  client.pipe(broker)
  broker.pipe(client)
  client.on('error', () => broker.destroy())
  broker.on('error', () => client.destroy())
})
await new Promise<void>((resolve) => proxy.listen(proxyPort, '127.0.0.1', resolve))
const kafka = await startKafka({ advertisedPort: proxyPort })
brokerPort = kafka.port
try {
  await kafka.createTopic('orders')
  await kafka.createTopic('small', { config: { 'max.message.bytes': '200' } })
  const sessions: Record<string, { code: number | null; stdout: string; stderr: string }> = {}
  sessions.produce = await kafka.produce({ topic: 'orders', records: 10, recordSize: 40, clientId: 'capture-producer', properties: { acks: '1', 'linger.ms': '0', 'batch.size': '200' } }).done
  sessions.consume = await kafka.consume({ topic: 'orders', maxMessages: 10, clientId: 'capture-consumer', group: 'capture-group' }).done
  sessions.tooLarge = await kafka.produce({ topic: 'small', records: 1, recordSize: 500, clientId: 'capture-too-large', properties: { acks: '1', retries: '0' } }).done
  sessions.outOfRange = await kafka.consume({ topic: 'orders', maxMessages: 1, clientId: 'capture-out-of-range', partition: 0, offset: 1000, timeoutMs: 3000 }).done
  process.stdout.write(JSON.stringify({ kafka: KAFKA_VERSION, sessions: Object.fromEntries(Object.entries(sessions).map(([k, v]) => [k, v.code])), connections }, null, 1) + '\n')
} finally {
  await kafka.stop()
  proxy.close()
}
