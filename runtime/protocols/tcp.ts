/**
 * What the tcp plugin needs to read the `tcp` object's maps: the codecs generated from its BTF
 * and the constants of bpf/lib/tcp.h (checked against the header by test/bpf/tcp.test.ts). Pure
 * TypeScript, bundled into plugins.
 */
export { decodeTcpPortKey, decodeTcpPortStats, type TcpPortKey, type TcpPortStats } from '../../bpf/lib/tcp.types.ts'

/** enum tcp_direction: this host accepted the connection, or opened it. */
export const TCP_DIRECTION_INBOUND = 1
export const TCP_DIRECTION_OUTBOUND = 2

/** enum tcp_overflow: indexes of the `overflows` map. */
export const TCP_OVERFLOW_PORT_STATS = 0
export const TCP_OVERFLOW_CONNS = 1

/** `transitions` is indexed by old << TCP_STATE_BITS | new. */
export const TCP_STATE_BITS = 4

/**
 * TCP states by number (include/net/tcp_states.h), named as the semantic conventions name them
 * in `network.connection.state`; the last two are Linux's own (a request socket awaiting its
 * handshake's end, and a bound socket that never listened or connected).
 */
export const TCP_STATE_NAMES = [
  '', 'established', 'syn_sent', 'syn_recv', 'fin_wait_1', 'fin_wait_2', 'time_wait', 'close',
  'close_wait', 'last_ack', 'listen', 'closing', 'new_syn_recv', 'bound_inactive',
] as const

/**
 * The RTT histogram's upper bounds in seconds: 2^k µs for k = 0 … 23 (TCP_RTT_BOUNDARIES), the
 * kernel's buckets; a 25th bucket holds what is above 2^23 µs (8.4 s).
 */
export const TCP_RTT_BOUNDARIES_S: readonly number[] = Array.from({ length: 24 }, (_, k) => 2 ** k / 1e6)
