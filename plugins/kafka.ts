/**
 * Kafka producer and consumer spans and the messaging.client.operation.duration histogram for
 * every Kafka client on the host, with no change to the applications. The `sockdata` object hands
 * this plugin only the records of connections the kernel classified as Kafka (a whole
 * size-prefixed request as the first bytes), so its cost follows Kafka traffic alone.
 *
 * Per connection, the Kafka parser (runtime/protocols/kafka.ts) pairs each request with its
 * response by correlation id. A Produce request makes one `send` span (kind producer): one network
 * operation with one duration, so a request that carries batches of several topics is one span,
 * named after its topic when it has one (the messaging conventions name a batch's destination only
 * when all its messages share it). A Fetch whose response returned records, or an error, makes one
 * `receive` span (kind client); the empty long polls of an idle consumer make none, since they
 * would drown everything else. Topic ids (Produce and Fetch v13+) are named from the Metadata
 * responses any traced client received. Only the client end of a connection makes spans: the
 * broker's own records (and its controller traffic) are skipped.
 *
 * Everything here is public plugin API: a user plugin can do the same.
 */
import { definePlugin, type PluginContext, type TopicEvent } from 'periscope/plugin'
import { clientSpansFromConfig, type ClientSpans, type ClientConnection } from 'periscope/protocols/client-spans'
import { ClientStreams } from 'periscope/protocols/client-streams'
import { API_PRODUCE, KafkaParser, kafkaErrorName, type KafkaConnection, type KafkaOperation } from 'periscope/protocols/kafka'
import { PROTOCOL_KAFKA, claimProtocol } from 'periscope/protocols/sockdata'

const config = {
  /**
   * Payload bytes the kernel copies per call. Request headers, topics and error codes fit in far
   * less; record counts need every record batch header: a Produce request's (one batch per
   * partition, at its start) nearly always fit, a Fetch response's only when the response does.
   * Raise it (at most 16384) for exact counts of larger fetches; spans whose count could not be
   * seen have no messaging.batch.message_count, and are counted in periscope.kafka.message_counts_unknown.
   */
  capture_bytes: 4096,
  /** Only these processes (empty: every process). */
  target_pids: [] as number[],
  /** Only processes in these cgroups or below them, by cgroup v2 id (from `plugins.kafka.target_cgroups`). */
  target_cgroup_ids: [] as number[],
  /** Ports whose traffic is never traced, at either end. */
  excluded_ports: [] as number[],
  /** Connections tracked at once; the least recently used is forgotten past this. */
  max_connections: 16384,
  /** The messaging.client.operation.duration histogram. */
  metrics: true,
  /** Spans shorter than this are not exported (the histogram still counts them). */
  min_duration_ms: 0,
  /** Head sampling of traces by trace id, in percent; errors are always kept. */
  sampling_percent: 100,
}
type Config = typeof config

type SockEvent = TopicEvent<'sockdata:kafka'>

interface Conn {
  client: ClientConnection
  stream: KafkaConnection
}

export default definePlugin({
  name: 'kafka',
  objects: ['sockdata'],
  config,
  async setup(ctx) {
    const plugin = new KafkaTracing(ctx)
    const { target_pids: targetPids, target_cgroup_ids: targetCgroupIds, excluded_ports: excludedPorts, capture_bytes: captureBytes } = ctx.config
    // client spans only: the broker's end of each connection stays in the kernel
    await claimProtocol(ctx, PROTOCOL_KAFKA, { captureBytes, targetPids, targetCgroupIds, excludedPorts, clientEndOnly: true })
    ctx.on('sockdata:kafka', (event) => plugin.onRecord(event), { onLoss: (lost) => plugin.onLoss(lost) })
    // closes come on a ring of their own: a connection's stream ends a grace after its close
    ctx.on('sockdata:connections', (event) => plugin.onConnectionEvent(event))
    ctx.every('200ms', () => plugin.closeDue())
    ctx.every('10s', () => plugin.report())
    const targets = [...targetPids.length > 0 ? [`pids ${targetPids.join(', ')}`] : [], ...targetCgroupIds.length > 0 ? [`cgroups ${targetCgroupIds.join(', ')} and below`] : []]
    ctx.log.info(`tracing Kafka clients on ${targets.length === 0 ? 'the whole host' : targets.join(' and ')}`)
  },
})

class KafkaTracing {
  readonly #ctx: PluginContext<Config>
  readonly #conns: ClientStreams<Conn>
  readonly #parser: KafkaParser<Conn>
  readonly #spans: ClientSpans
  /** Operations whose record count was not exported: batch headers past the capture size. */
  #countsUnknown = 0

  constructor(ctx: PluginContext<Config>) {
    this.#ctx = ctx
    this.#parser = new KafkaParser<Conn>((operation, conn) => this.#onOperation(conn, operation))
    this.#spans = clientSpansFromConfig(ctx, 'messaging.client.operation.duration')
    // the least recently used connection is idle: it has no request awaiting an answer worth a span
    this.#conns = new ClientStreams<Conn>(ctx.config.max_connections, (client, role, midStream) => {
      const conn = { client } as Conn
      conn.stream = this.#parser.connection(conn, role, midStream)
      return conn
    }, { closeEvicted: false })
  }

  onLoss(lost: number): void {
    this.#conns.onLoss(lost)
  }

  onConnectionEvent(event: { kind: number; conn_id: number; end_ns: number }): void {
    this.#conns.onConnectionEvent(event)
  }

  closeDue(): void {
    this.#conns.closeDue()
  }

  onRecord(event: SockEvent): void {
    this.#conns.onRecord(event)
  }


  /** Self-reported counters, besides the runtime's own per-plugin metrics. */
  report(): void {
    const attributes = { 'periscope.plugin': 'kafka' }
    const emit = this.#ctx.emit
    this.#conns.report(emit, 'kafka', this.#parser.errors)
    emit.metric({ name: 'periscope.kafka.topic_ids', kind: 'gauge', value: this.#parser.topicNames.size, attributes })
    emit.metric({ name: 'periscope.kafka.message_counts_unknown', kind: 'gauge', value: this.#countsUnknown, attributes })
    this.#spans.report('kafka')
  }

  #onOperation(conn: Conn, operation: KafkaOperation): void {
    const send = operation.apiKey === API_PRODUCE
    const error = operationError(operation)
    // a fetch with no record is a long poll that found nothing (or only a partial batch): no span
    if (!send && error === undefined && operation.records === 0 && (operation.recordsExact || operation.recordBytes === 0)) return
    const operationName = send ? 'send' : 'receive'
    const topic = singleTopic(operation)
    const attributes: Record<string, string | number | boolean> = {
      'messaging.system': 'kafka',
      'messaging.operation.type': operationName,
      'messaging.operation.name': operationName,
    }
    if (operation.clientId !== '') attributes['messaging.client.id'] = operation.clientId
    if (topic !== undefined) attributes['messaging.destination.name'] = topic
    const partition = singlePartition(operation)
    if (partition !== undefined) attributes['messaging.destination.partition.id'] = partition
    if (operation.recordsExact) attributes['messaging.batch.message_count'] = operation.records
    else this.#countsUnknown++
    const metricAttributes: Record<string, string | number> = {
      'messaging.system': 'kafka',
      'messaging.operation.type': operationName,
      'messaging.operation.name': operationName,
    }
    if (topic !== undefined) metricAttributes['messaging.destination.name'] = topic
    this.#spans.emit(conn.client, {
      name: topic === undefined ? operationName : `${operationName} ${topic}`,
      kind: send ? 'producer' : 'client',
      startNs: operation.startNs,
      endNs: operation.endNs,
      context: operation.context,
      attributes,
      metricAttributes,
      error,
    })
  }
}

/** The one topic of an operation, by name; undefined for several, none, or an id never named. */
function singleTopic(operation: KafkaOperation): string | undefined {
  const topics = operation.topics
  if (topics.length === 0) return undefined
  const name = topics[0]!.name
  for (let i = 1; i < topics.length; i++) if (topics[i]!.name !== name) return undefined
  return name
}

/** The partition when the operation names exactly one (as the conventions ask: a string). */
function singlePartition(operation: KafkaOperation): string | undefined {
  if (operation.topics.length !== 1 || operation.topics[0]!.partitions !== 1) return undefined
  return String(operation.topics[0]!.partition)
}

function operationError(operation: KafkaOperation): { type: string; message: string } | undefined {
  if (operation.outcome === 'closed') return { type: 'connection_closed', message: 'the connection closed before the response arrived' }
  if (operation.outcome === 'lost') return { type: 'data_lost', message: 'records of this exchange were lost; its response is unknown' }
  if (operation.errorCode === 0) return undefined
  const type = kafkaErrorName(operation.errorCode)
  const failed = operation.topics.find((t) => t.errorCode === operation.errorCode)
  const where = failed === undefined ? '' : ` on ${failed.name ?? failed.id} partition ${failed.errorPartition}`
  return { type, message: `Kafka error ${type} (${operation.errorCode})${where}` }
}
