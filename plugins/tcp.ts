/**
 * TCP metrics for every connection on the host, in every network namespace, counted in the
 * kernel by the `tcp` object and read every `collect_interval_ms`: nothing crosses to user space
 * per packet or per connection. Connections are counted from the `sock:inet_sock_set_state`
 * tracepoint, retransmits from `tcp:tcp_retransmit_skb`, resets from `tcp:tcp_send_reset` and
 * `tcp:tcp_receive_reset`; bytes, segments and RTTs are the kernel's own per-connection counters
 * (struct tcp_sock, RFC 4898), rolled up into their port's totals when a connection closes and,
 * for live connections, by the object's `collect` iterator at each collection.
 *
 * A connection is counted under its service's end: `network.local.port` for one this host
 * accepted (`tcp.connection.direction=inbound`), `network.peer.port` for one it opened
 * (`outbound`). The client's port is ephemeral, one per connection, so it is never an attribute.
 *
 * Metrics (counters are cumulative in the exporter; each point here is the increment since the
 * last collection):
 * - `tcp.connections.opened` {connection}: connections that reached ESTABLISHED (a handshake
 *   completed), by direction and port.
 * - `tcp.connections.closed` {connection}: established connections that closed (FIN or reset), by
 *   direction and port.
 * - `tcp.state_transitions` {transition}: every state change of a TCP socket on the host, by
 *   `tcp.state.from` and `tcp.state.to` (`network.connection.state`'s values: `syn_sent`,
 *   `established`, `time_wait`, ..., plus Linux's `new_syn_recv` and `bound_inactive`).
 * - `tcp.retransmits` {segment}: segments sent again, by direction and port (`retransmits: true`);
 *   a listener's SYN-ACKs sent again count as inbound on its port.
 * - `tcp.resets` {segment}: resets, by direction and port and `network.io.direction` (`transmit`:
 *   sent by this host; `receive`: received). A reset this host sends for a port with no socket
 *   (nothing listens) counts as inbound on that port.
 * - `tcp.io` (By): bytes of data by direction and port and `network.io.direction`. Sent bytes
 *   count retransmitted data again (the kernel's `bytes_sent`, RFC 4898's DataOctetsOut);
 *   received bytes are the data delivered in order, each byte once.
 * - `tcp.segments` {segment}: segments sent and received (handshake and pure ACKs included), by
 *   direction and port and `network.io.direction`.
 * - `tcp.rtt` (s, histogram): the kernel's smoothed round-trip time of a connection, observed once
 *   per connection per collection in which it received segments (so at least at its close), by
 *   direction and port; log2 buckets of 1 µs to 2^23 µs, counted in the kernel.
 * - `periscope.tcp.untracked` {event}: what the kernel could not store because a map was full, by
 *   `bpf.map`: `conns` (a connection whose bytes, segments and RTT are not counted; it is still
 *   counted opened and closed) and `port_stats` (an event, or a roll-up, of a port key that had no
 *   room).
 *
 * `connections: false` turns off every metric above but `tcp.retransmits` and the untracked
 * counts; `retransmits: false` turns off `tcp.retransmits`.
 *
 * Limits: connections opened before Periscope started are counted from its start when they are in
 * Periscope's network namespace (the start-up scan finds them), and not at all in other
 * namespaces, where only their close is counted. Which end of such a connection is the server is
 * told by the ports seen listening.
 *
 * Everything here is public plugin API: a user plugin can do the same.
 */
import { definePlugin, type PluginContext } from 'periscope/plugin'
import {
  decodeTcpPortKey, decodeTcpPortStats, TCP_DIRECTION_INBOUND, TCP_OVERFLOW_CONNS, TCP_OVERFLOW_PORT_STATS, TCP_RTT_BOUNDARIES_S, TCP_STATE_BITS, TCP_STATE_NAMES,
  type TcpPortStats,
} from 'periscope/protocols/tcp'

const config = {
  /** How often the kernel's counts are read and exported. */
  collect_interval_ms: 10_000,
  /** Connections opened and closed, state transitions, resets, bytes, segments and RTTs. */
  connections: true,
  /** Retransmitted segments. */
  retransmits: true,
}
type Config = typeof config

/** A port key's counters in one flat list: the struct's fields in order, the RTT buckets last. */
const COUNTERS = ['opened', 'closed', 'retransmits', 'resets_sent', 'resets_received', 'bytes_sent', 'bytes_received', 'segments_sent', 'segments_received', 'rtt_sum_us'] as const
const RTT_BUCKETS_AT = COUNTERS.length

/** The attribute sets of one port key, made once. */
interface PortSeries {
  attributes: Record<string, string | number>
  transmit: Record<string, string | number>
  receive: Record<string, string | number>
}

/** What carries across a hot reload, so the new version neither repeats nor skips counts. */
interface CarriedState {
  ports: [string, number[]][]
  transitions: number[]
  overflows: number[]
}

export default definePlugin({
  name: 'tcp',
  objects: ['tcp'],
  config,
  async setup(ctx) {
    const metrics = new TcpMetrics(ctx)
    await metrics.start(ctx.state.tcp as CarriedState | undefined)
    ctx.every(ctx.config.collect_interval_ms, () => metrics.collect())
    const on = [...ctx.config.connections ? ['connections, bytes, resets and RTTs'] : [], ...ctx.config.retransmits ? ['retransmits'] : []]
    ctx.log.info(`TCP metrics: ${on.length === 0 ? 'none (connections and retransmits are off)' : on.join(' and ')}, by port, every ${ctx.config.collect_interval_ms} ms`)
  },
})

class TcpMetrics {
  readonly #ctx: PluginContext<Config>
  /** Each port key's counters as last exported, by `local/remote/direction`. */
  #ports = new Map<string, number[]>()
  #transitions: number[] = []
  #overflows: number[] = []
  readonly #series = new Map<string, PortSeries>()

  constructor(ctx: PluginContext<Config>) {
    this.#ctx = ctx
  }

  /** Takes the previous version's counts, or else what the maps hold now: only later counts are exported. */
  async start(carried: CarriedState | undefined): Promise<void> {
    if (carried !== undefined) {
      this.#ports = new Map(carried.ports)
      this.#transitions = carried.transitions
      this.#overflows = carried.overflows
    } else {
      await this.#read(() => {})
    }
    this.#carry()
  }

  async collect(): Promise<void> {
    // rolls the live connections' bytes, segments and RTTs into port_stats
    await this.#ctx.iterate('tcp:collect')
    await this.#read((key, counters, last) => this.#emitPort(key, counters, last))
    this.#carry()
  }

  async #read(onPort: (key: string, counters: number[], last: number[] | undefined) => void): Promise<void> {
    const [ports, transitions, overflows] = await Promise.all([
      this.#ctx.map('tcp:port_stats').entries(),
      this.#ctx.map('tcp:transitions').entries(),
      this.#ctx.map('tcp:overflows').entries(),
    ])
    for (const [keyBytes, valueBytes] of ports) {
      const key = decodeTcpPortKey(viewOf(keyBytes), 0)
      const name = `${key.local_port}/${key.remote_port}/${key.direction}`
      const counters = flatten(decodeTcpPortStats(viewOf(valueBytes), 0))
      onPort(name, counters, this.#ports.get(name))
      this.#ports.set(name, counters)
    }
    this.#transitions = this.#readArray(transitions, this.#transitions, (index, added) => this.#emitTransition(index, added))
    this.#overflows = this.#readArray(overflows, this.#overflows, (index, added) => this.#emitOverflow(index, added))
  }

  /** An array map's u64 counters; `onAdded` hears each one's increment since `last`. */
  #readArray(entries: [Uint8Array, Uint8Array][], last: number[], onAdded: (index: number, added: number) => void): number[] {
    const now: number[] = []
    for (const [keyBytes, valueBytes] of entries) {
      const index = viewOf(keyBytes).getUint32(0, true)
      const value = Number(viewOf(valueBytes).getBigUint64(0, true))
      now[index] = value
      if (last.length > 0 && value > (last[index] ?? 0)) onAdded(index, value - (last[index] ?? 0))
    }
    return now
  }

  #emitPort(key: string, counters: number[], last: number[] | undefined): void {
    const added = (field: typeof COUNTERS[number]) => {
      const at = COUNTERS.indexOf(field)
      return counters[at]! - (last?.[at] ?? 0)
    }
    const emit = this.#ctx.emit
    const series = this.#seriesOf(key)
    const count = (name: string, unit: string, value: number, attributes: Record<string, string | number>) => {
      if (value > 0) emit.metric({ name, kind: 'counter', unit, value, attributes })
    }
    if (this.#ctx.config.retransmits) count('tcp.retransmits', '{segment}', added('retransmits'), series.attributes)
    if (!this.#ctx.config.connections) return
    count('tcp.connections.opened', '{connection}', added('opened'), series.attributes)
    count('tcp.connections.closed', '{connection}', added('closed'), series.attributes)
    count('tcp.resets', '{segment}', added('resets_sent'), series.transmit)
    count('tcp.resets', '{segment}', added('resets_received'), series.receive)
    count('tcp.io', 'By', added('bytes_sent'), series.transmit)
    count('tcp.io', 'By', added('bytes_received'), series.receive)
    count('tcp.segments', '{segment}', added('segments_sent'), series.transmit)
    count('tcp.segments', '{segment}', added('segments_received'), series.receive)
    const buckets = counters.slice(RTT_BUCKETS_AT).map((n, i) => n - (last?.[RTT_BUCKETS_AT + i] ?? 0))
    if (buckets.some((n) => n > 0)) {
      emit.metric({ name: 'tcp.rtt', kind: 'histogram', unit: 's', value: added('rtt_sum_us') / 1e6, boundaries: [...TCP_RTT_BOUNDARIES_S], bucketCounts: buckets, attributes: series.attributes })
    }
  }

  #emitTransition(index: number, added: number): void {
    if (!this.#ctx.config.connections) return
    const from = TCP_STATE_NAMES[index >> TCP_STATE_BITS] ?? String(index >> TCP_STATE_BITS)
    const to = TCP_STATE_NAMES[index & ((1 << TCP_STATE_BITS) - 1)] ?? String(index & ((1 << TCP_STATE_BITS) - 1))
    this.#ctx.emit.metric({ name: 'tcp.state_transitions', kind: 'counter', unit: '{transition}', value: added, attributes: { 'tcp.state.from': from, 'tcp.state.to': to } })
  }

  #emitOverflow(index: number, added: number): void {
    const map = index === TCP_OVERFLOW_CONNS ? 'conns' : index === TCP_OVERFLOW_PORT_STATS ? 'port_stats' : String(index)
    this.#ctx.emit.metric({ name: 'periscope.tcp.untracked', kind: 'counter', unit: '{event}', value: added, attributes: { 'bpf.map': map } })
  }

  #seriesOf(key: string): PortSeries {
    let series = this.#series.get(key)
    if (series === undefined) {
      const [local, remote, direction] = key.split('/').map(Number) as [number, number, number]
      const attributes: Record<string, string | number> = direction === TCP_DIRECTION_INBOUND
        ? { 'tcp.connection.direction': 'inbound', 'network.local.port': local }
        : { 'tcp.connection.direction': 'outbound', 'network.peer.port': remote }
      series = { attributes, transmit: { ...attributes, 'network.io.direction': 'transmit' }, receive: { ...attributes, 'network.io.direction': 'receive' } }
      this.#series.set(key, series)
    }
    return series
  }

  #carry(): void {
    const carried: CarriedState = { ports: [...this.#ports], transitions: this.#transitions, overflows: this.#overflows }
    this.#ctx.state.tcp = carried
  }
}

function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

function flatten(stats: TcpPortStats): number[] {
  return [...COUNTERS.map((field) => stats[field]), ...stats.rtt_buckets]
}
