/**
 * What protocol plugins need to read `sockdata` records and fill its filter maps: the constants of
 * bpf/lib/sockdata.h (checked against the header by test/unit/sockdata-constants.test.ts) and the
 * encoders of its map values. Pure TypeScript, bundled into plugins.
 */
import type { PluginContext } from 'periscope/plugin'

/** `kind` */
export const SOCK_DATA = 0
export const SOCK_OPEN = 1
export const SOCK_CLOSE = 2
export const SOCK_CONNECT_FAILED = 3

/** `direction`: egress is what this process sent, ingress what it received. */
export const DIRECTION_EGRESS = 0
export const DIRECTION_INGRESS = 1

/** `role`: whether this end connected (client) or accepted (server). */
export const ROLE_UNKNOWN = 0
export const ROLE_CLIENT = 1
export const ROLE_SERVER = 2

/** `protocol`, as the kernel classified the connection from its first bytes. */
export const PROTOCOL_UNKNOWN = 0
export const PROTOCOL_HTTP = 1
export const PROTOCOL_HTTP2 = 2
export const PROTOCOL_REDIS = 3
export const PROTOCOL_POSTGRES = 4
export const PROTOCOL_MYSQL = 5
export const PROTOCOL_KAFKA = 6

/** `wanted` of `struct protocol_config`: which ends of a connection send records. */
export const WANTED_BOTH_ENDS = 1
export const WANTED_CLIENT_END = 2

/** `flags` */
export const SOCK_FLAG_TLS = 1
export const SOCK_FLAG_SENDFILE = 2
export const SOCK_FLAG_LOSS = 4
export const SOCK_FLAG_PREEXISTING = 8
export const SOCK_FLAG_TRUNCATED = 16

const AF_INET = 2
const AF_INET6 = 10

/**
 * Whether a connection's other end may be a process on this host, from its addresses as
 * formatAddress gives them: loopback, or the connection's own address. Plugins that link both
 * ends of a connection wait for a local client only then.
 */
export function mayBeLocalPeer(local: string, remote: string): boolean {
  return remote === local || remote.startsWith('127.') || remote === '::1'
}

/** A record's address bytes as text: dotted IPv4, or IPv6 in its RFC 5952 short form. */
export function formatAddress(family: number, bytes: Uint8Array): string {
  if (family === AF_INET) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`
  if (family !== AF_INET6) return ''
  // an IPv4-mapped address (::ffff:a.b.c.d) is shown as the IPv4 it is
  if (bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) {
    return `${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`
  }
  const groups: number[] = []
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!)
  // the longest run of two or more zero groups becomes ::
  let bestStart = -1
  let bestLength = 1
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) { i++; continue }
    let j = i
    while (j < 8 && groups[j] === 0) j++
    if (j - i > bestLength) { bestStart = i; bestLength = j - i }
    i = j
  }
  const hex = groups.map((g) => g.toString(16))
  if (bestStart < 0) return hex.join(':')
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`
}

/**
 * The value of `sockdata:protocols` for one protocol (`struct protocol_config`). pidFilter: only
 * the pids in `sockdata:target_pids`; cgroupFilter: only processes in the cgroups of
 * `sockdata:target_cgroups` or below them; with both, a process named by either.
 */
export function protocolConfig(options: { wanted: boolean; captureBytes: number; pidFilter: boolean; cgroupFilter?: boolean; clientEndOnly?: boolean }): Uint8Array {
  const out = new Uint8Array(16)
  const view = new DataView(out.buffer)
  view.setUint32(0, !options.wanted ? 0 : options.clientEndOnly === true ? WANTED_CLIENT_END : WANTED_BOTH_ENDS, true)
  view.setUint32(4, options.captureBytes, true)
  view.setUint32(8, options.pidFilter ? 1 : 0, true)
  view.setUint32(12, options.cgroupFilter === true ? 1 : 0, true)
  return out
}

/** A key of `sockdata:target_cgroups` (`struct protocol_cgroup`): a protocol and a cgroup v2 id. */
export function protocolCgroup(protocol: number, cgroupId: number): Uint8Array {
  const out = new Uint8Array(16)
  const view = new DataView(out.buffer)
  view.setUint32(0, protocol, true)
  view.setBigUint64(8, BigInt(cgroupId), true)
  return out
}

/** A key of the maps keyed by protocol and a 32-bit value (`target_pids`, `excluded_ports`). */
function protocolKey(protocol: number, value: number): Uint8Array {
  const out = new Uint8Array(8)
  const view = new DataView(out.buffer)
  view.setUint32(0, protocol, true)
  view.setUint32(4, value, true)
  return out
}

/** What a protocol plugin asks of the kernel for its protocol. */
export interface ProtocolClaim {
  /** Payload bytes copied per call (0: the kernel's default, 4096; at most 16384). */
  captureBytes: number
  /** Only these processes (empty: every process). */
  targetPids: readonly number[]
  /** Only processes in these cgroup v2 ids or below them; with targetPids, a process named by either. */
  targetCgroupIds: readonly number[]
  /** Ports whose connections are never traced, at either end. */
  excludedPorts: readonly number[]
  /**
   * Only the records of the end that connected (and of connections whose role is unknown): for a
   * plugin that makes client spans only, the server's end never crosses the ring.
   */
  clientEndOnly?: boolean
}

/**
 * Tells the kernel to send `protocol`'s records to this plugin's ring, how much payload to copy,
 * and for whom, through claims the plugin holds while it runs (released when it stops, so a
 * protocol nobody traces costs nothing in the kernel).
 */
export async function claimProtocol(ctx: PluginContext<Record<string, unknown>>, protocol: number, claim: ProtocolClaim): Promise<void> {
  const { captureBytes, targetPids, targetCgroupIds, excludedPorts, clientEndOnly } = claim
  const one = Uint8Array.of(1)
  const protocolId = new Uint8Array(4)
  new DataView(protocolId.buffer).setUint32(0, protocol, true)
  await ctx.map('sockdata:protocols').claim(protocolId,
    protocolConfig({ wanted: true, captureBytes, pidFilter: targetPids.length > 0, cgroupFilter: targetCgroupIds.length > 0, clientEndOnly }))
  const pids = ctx.map('sockdata:target_pids')
  for (const pid of targetPids) await pids.claim(protocolKey(protocol, pid), one)
  const cgroups = ctx.map('sockdata:target_cgroups')
  for (const cgroup of targetCgroupIds) await cgroups.claim(protocolCgroup(protocol, cgroup), one)
  const ports = ctx.map('sockdata:excluded_ports')
  for (const port of excludedPorts) await ports.claim(protocolKey(protocol, port), one)
}

/** A data record as the stream parsers read it; each parser reads the fields it needs. */
export interface SockChunk {
  direction: number
  position: number
  bytes: number
  data: Uint8Array
  /** Boot ns when the data was there: a send's entry, a receive's exit. */
  startNs: number
  endNs: number
  /** Records of this direction were lost before this one. */
  loss: boolean
  /** Plaintext from the OpenSSL uprobes. */
  tls: boolean
  tid: number
  context: number
}

export function newSockChunk(): SockChunk {
  return { direction: 0, position: 0, bytes: 0, data: new Uint8Array(0), startNs: 0, endNs: 0, loss: false, tls: false, tid: 0, context: 0 }
}

/**
 * Fills `chunk` from a data record and returns it. Plugins reuse one chunk for every record (the
 * parsers keep nothing of it), so reading a record allocates nothing.
 */
export function fillChunk(chunk: SockChunk, event: { direction: number; position: number; bytes: number; data: Uint8Array; start_ns: number; end_ns: number; flags: number; tid: number; context: number }): SockChunk {
  chunk.direction = event.direction
  chunk.position = event.position
  chunk.bytes = event.bytes
  chunk.data = event.data
  // a receive may wait long (an idle connection, a long poll, a blocking command) before its data
  // arrives; its exit is the one time known to follow the arrival, so received data starts there
  chunk.startNs = event.direction === DIRECTION_INGRESS ? event.end_ns : event.start_ns
  chunk.endNs = event.end_ns
  chunk.loss = (event.flags & SOCK_FLAG_LOSS) !== 0
  chunk.tls = (event.flags & SOCK_FLAG_TLS) !== 0
  chunk.tid = event.tid
  chunk.context = event.context
  return chunk
}
