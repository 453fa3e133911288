/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef TCP_H
#define TCP_H

/* which end of the connection this host is: it accepted it (inbound) or connected (outbound) */
enum tcp_direction {
	TCP_DIRECTION_INBOUND = 1,
	TCP_DIRECTION_OUTBOUND = 2,
};

/* the RTT histogram's buckets: (-inf, 1 us], (1, 2], (2, 4] ... (2^22, 2^23 us], (2^23 us, +inf) */
#define TCP_RTT_BOUNDARIES 24
#define TCP_RTT_BUCKETS (TCP_RTT_BOUNDARIES + 1)

/* TCP states (include/net/tcp_states.h) fit in 4 bits: transitions[old << 4 | new] */
#define TCP_STATE_BITS 4
#define TCP_TRANSITIONS (1 << (2 * TCP_STATE_BITS))

/* indexes of the overflows map */
enum tcp_overflow {
	/* events not counted because port_stats was full */
	TCP_OVERFLOW_PORT_STATS = 0,
	/* connections opened while conns was full: their bytes and segments are not counted */
	TCP_OVERFLOW_CONNS = 1,
	TCP_OVERFLOWS = 2,
};

/*
 * A port_stats key: the service's end of a connection. The client's port is ephemeral, one per
 * connection, so it is 0: the local port of an outbound connection, the remote port of an
 * inbound one.
 */
struct tcp_port_key {
	__u16 local_port;
	__u16 remote_port;
	__u32 direction;
};

/* what every connection of one port key did since the object loaded; counters only grow */
struct tcp_port_stats {
	__u64 opened;
	__u64 closed;
	__u64 retransmits;
	__u64 resets_sent;
	__u64 resets_received;
	__u64 bytes_sent;
	__u64 bytes_received;
	__u64 segments_sent;
	__u64 segments_received;
	/* smoothed RTT observations: their sum in microseconds and their count per bucket */
	__u64 rtt_sum_us;
	__u64 rtt_buckets[TCP_RTT_BUCKETS];
};

/* a connection tracked in conns: its port key and what of its counters was already rolled up */
struct tcp_conn {
	struct tcp_port_key key;
	__u64 bytes_sent;
	__u64 bytes_received;
	/* the kernel's segment counters are 32-bit: these hold their last value seen */
	__u64 segments_sent;
	__u64 segments_received;
};

#endif
