// SPDX-License-Identifier: GPL-2.0
/*
 * TCP metrics aggregated in the kernel, by port: connections opened and closed, state
 * transitions, retransmits (of SYN-ACKs too), resets sent and received, bytes and segments sent
 * and received, and a histogram of smoothed RTTs. User space reads port_stats (counters that
 * only grow) and transitions at each collection, after running the `collect` iterator, which
 * rolls the byte and segment counters of live connections up into port_stats.
 *
 * Bytes and segments come from the kernel's own counters in struct tcp_sock (RFC 4898's), not
 * from a probe per packet: a connection in conns remembers how much of them was rolled up, and
 * the rest is added at its close (sock:inet_sock_set_state, under the socket's lock) or by the
 * next collection, whichever comes first. Both move a counter's rolled-up mark atomically (the
 * close exchanges it, a collection compares and swaps it), so nothing is counted twice when
 * they meet.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "periscope.h"
#include "tcp.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tcp_port_key);
	__type(value, struct tcp_port_stats);
} port_stats SEC(".maps");

/* connections whose bytes and segments are followed, by struct sock address */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct tcp_conn);
} conns SEC(".maps");

/* ports seen listening since the object loaded: which end of an untracked connection is the server */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} listening_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TCP_TRANSITIONS);
	__type(key, __u32);
	__type(value, __u64);
} transitions SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TCP_OVERFLOWS);
	__type(key, __u32);
	__type(value, __u64);
} overflows SEC(".maps");

/* a new port_stats entry's value; never written */
static struct tcp_port_stats empty_stats;

static __always_inline void count_overflow(__u32 which)
{
	__u64 *count = bpf_map_lookup_elem(&overflows, &which);

	if (count)
		__sync_fetch_and_add(count, 1);
}

static __always_inline struct tcp_port_stats *stats_for(const struct tcp_port_key *key)
{
	struct tcp_port_stats *stats = bpf_map_lookup_elem(&port_stats, key);
	long err;

	if (stats)
		return stats;
	err = bpf_map_update_elem(&port_stats, key, &empty_stats, BPF_NOEXIST);
	/* -EEXIST: another CPU added it first */
	if (err && err != -17) {
		count_overflow(TCP_OVERFLOW_PORT_STATS);
		return NULL;
	}
	return bpf_map_lookup_elem(&port_stats, key);
}

static __always_inline struct tcp_port_key port_key(__u16 local_port, __u16 remote_port, __u32 direction)
{
	struct tcp_port_key key = { .direction = direction };

	if (direction == TCP_DIRECTION_INBOUND)
		key.local_port = local_port;
	else
		key.remote_port = remote_port;
	return key;
}

/* for a connection not in conns: the server's end is the one whose port listens here */
static __always_inline __u32 guess_direction(__u16 local_port)
{
	__u32 port = local_port;

	return bpf_map_lookup_elem(&listening_ports, &port) ? TCP_DIRECTION_INBOUND : TCP_DIRECTION_OUTBOUND;
}

static __always_inline struct tcp_port_key key_of(__u64 sk, __u16 local_port, __u16 remote_port)
{
	struct tcp_conn *conn = bpf_map_lookup_elem(&conns, &sk);

	if (conn)
		return conn->key;
	return port_key(local_port, remote_port, guess_direction(local_port));
}

static __always_inline void mark_listening(__u16 local_port)
{
	__u32 port = local_port;
	__u8 yes = 1;

	bpf_map_update_elem(&listening_ports, &port, &yes, BPF_ANY);
}

/* a connection's states from established to its close */
static __always_inline bool is_open_state(int state)
{
	return state == TCP_ESTABLISHED || state == TCP_FIN_WAIT1 || state == TCP_FIN_WAIT2 ||
	       state == TCP_CLOSE_WAIT || state == TCP_LAST_ACK || state == TCP_CLOSING;
}

/* the bucket of (2^(k-1), 2^k] microseconds; the last one is unbounded */
static __always_inline __u32 rtt_bucket(__u64 rtt_us)
{
	__u64 v = rtt_us > 0 ? rtt_us - 1 : 0;
	__u32 k = 0;

	if (v >= 1 << 16) { v >>= 16; k += 16; }
	if (v >= 1 << 8) { v >>= 8; k += 8; }
	if (v >= 1 << 4) { v >>= 4; k += 4; }
	if (v >= 1 << 2) { v >>= 2; k += 2; }
	if (v >= 1 << 1) { v >>= 1; k += 1; }
	k += v;
	return k < TCP_RTT_BUCKETS ? k : TCP_RTT_BUCKETS - 1;
}

/*
 * Moves a counter's rolled-up mark to `now`; returns what that adds. A close takes the mark
 * whatever it was; a collection only if nobody moved it since it read it (else the mover counted
 * it), and never back: a 64-bit count read below the mark (see payload_received) adds nothing
 * until it passes the mark. The kernel's 32-bit segment counters wrap, hence `wide`.
 */
static __always_inline __u64 advance(__u64 *rolled, __u64 now, bool closing, bool wide)
{
	__u64 old;

	if (closing) {
		old = __sync_lock_test_and_set(rolled, now);
	} else {
		old = *(volatile __u64 *)rolled;
		if (old == now || (wide && now < old) || __sync_val_compare_and_swap(rolled, old, now) != old)
			return 0;
	}
	if (!wide)
		return (__u32)(now - old);
	return now > old ? now - old : 0;
}

/*
 * Bytes of data received. The kernel's count takes the peer's FIN for one more (it moves rcv_nxt),
 * and SOCK_DONE says a FIN came (tcp_fin). Read in that order, a FIN arriving in between costs
 * this roll-up a byte, which the next one (at the latest the close) gives back; the other order
 * would count a byte the close cannot take back.
 */
static __always_inline __u64 payload_received(struct tcp_sock *tp)
{
	__u64 received = BPF_CORE_READ(tp, bytes_received);
	unsigned long flags = BPF_CORE_READ(tp, inet_conn.icsk_inet.sk.__sk_common.skc_flags);

	return (flags & (1UL << SOCK_DONE)) && received > 0 ? received - 1 : received;
}

/* adds what the connection did since its last roll-up to its port's stats */
static __always_inline void roll_up(struct tcp_conn *conn, struct tcp_sock *tp, bool closing)
{
	__u64 bytes_sent = advance(&conn->bytes_sent, BPF_CORE_READ(tp, bytes_sent), closing, true);
	__u64 bytes_received = advance(&conn->bytes_received, payload_received(tp), closing, true);
	__u64 segments_sent = advance(&conn->segments_sent, BPF_CORE_READ(tp, segs_out), closing, false);
	__u64 segments_received = advance(&conn->segments_received, BPF_CORE_READ(tp, segs_in), closing, false);
	struct tcp_port_stats *stats;
	__u64 rtt_us;

	if (!(bytes_sent | bytes_received | segments_sent | segments_received))
		return;
	stats = stats_for(&conn->key);
	if (!stats)
		return;
	__sync_fetch_and_add(&stats->bytes_sent, bytes_sent);
	__sync_fetch_and_add(&stats->bytes_received, bytes_received);
	__sync_fetch_and_add(&stats->segments_sent, segments_sent);
	__sync_fetch_and_add(&stats->segments_received, segments_received);
	/* one RTT observation per connection per roll-up in which it heard from its peer */
	rtt_us = BPF_CORE_READ(tp, srtt_us) >> 3;
	if (!segments_received || !rtt_us)
		return;
	__sync_fetch_and_add(&stats->rtt_sum_us, rtt_us);
	__sync_fetch_and_add(&stats->rtt_buckets[rtt_bucket(rtt_us)], 1);
}

static __always_inline void on_open(__u64 sk, __u16 local_port, __u16 remote_port, __u32 direction)
{
	struct tcp_conn conn = { .key = port_key(local_port, remote_port, direction) };
	struct tcp_port_stats *stats = stats_for(&conn.key);

	if (stats)
		__sync_fetch_and_add(&stats->opened, 1);
	/* a stale entry of a freed socket at this address is the new connection's now */
	if (bpf_map_update_elem(&conns, &sk, &conn, BPF_ANY))
		count_overflow(TCP_OVERFLOW_CONNS);
}

static __always_inline void on_close(__u64 sk, __u16 local_port, __u16 remote_port)
{
	struct tcp_conn *conn = bpf_map_lookup_elem(&conns, &sk);
	struct tcp_port_key key;
	struct tcp_port_stats *stats;

	if (conn) {
		key = conn->key;
		roll_up(conn, (struct tcp_sock *)sk, true);
		bpf_map_delete_elem(&conns, &sk);
	} else {
		key = port_key(local_port, remote_port, guess_direction(local_port));
	}
	stats = stats_for(&key);
	if (stats)
		__sync_fetch_and_add(&stats->closed, 1);
}

SEC("tracepoint/sock/inet_sock_set_state")
int on_state_change(struct trace_event_raw_inet_sock_set_state *ctx)
{
	int old = ctx->oldstate, new = ctx->newstate;
	__u64 sk = (__u64)ctx->skaddr;
	__u32 transition;
	__u64 *count;

	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	transition = ((old & 0xf) << TCP_STATE_BITS) | (new & 0xf);
	count = bpf_map_lookup_elem(&transitions, &transition);
	if (count)
		__sync_fetch_and_add(count, 1);

	if (new == TCP_LISTEN)
		mark_listening(ctx->sport);
	else if (new == TCP_ESTABLISHED && old == TCP_SYN_SENT)
		on_open(sk, ctx->sport, ctx->dport, TCP_DIRECTION_OUTBOUND);
	else if (new == TCP_ESTABLISHED && old == TCP_SYN_RECV)
		on_open(sk, ctx->sport, ctx->dport, TCP_DIRECTION_INBOUND);
	else if (new == TCP_CLOSE && is_open_state(old))
		on_close(sk, ctx->sport, ctx->dport);
	return 0;
}

SEC("tracepoint/tcp/tcp_retransmit_skb")
int on_retransmit(struct trace_event_raw_tcp_retransmit_skb *ctx)
{
	struct tcp_port_key key = key_of((__u64)ctx->skaddr, ctx->sport, ctx->dport);
	struct tcp_port_stats *stats = stats_for(&key);

	if (stats)
		__sync_fetch_and_add(&stats->retransmits, 1);
	return 0;
}

/* a listener sends a SYN-ACK again: its handshake is not a connection yet, so no tcp_retransmit_skb */
SEC("tracepoint/tcp/tcp_retransmit_synack")
int on_retransmit_synack(struct trace_event_raw_tcp_retransmit_synack *ctx)
{
	struct tcp_port_key key = port_key(ctx->sport, ctx->dport, TCP_DIRECTION_INBOUND);
	struct tcp_port_stats *stats = stats_for(&key);

	if (stats)
		__sync_fetch_and_add(&stats->retransmits, 1);
	return 0;
}

SEC("tracepoint/tcp/tcp_receive_reset")
int on_receive_reset(struct trace_event_raw_tcp_event_sk *ctx)
{
	struct tcp_port_key key = key_of((__u64)ctx->skaddr, ctx->sport, ctx->dport);
	struct tcp_port_stats *stats = stats_for(&key);

	if (stats)
		__sync_fetch_and_add(&stats->resets_received, 1);
	return 0;
}

/*
 * A sockaddr_in's or sockaddr_in6's port, which both keep at byte 2. Copied out first: clang
 * addresses the array's bytes from a moved context pointer, which the verifier refuses.
 */
static __always_inline __u16 sockaddr_port(const __u8 *sockaddr)
{
	__u8 head[4] = {};

	bpf_probe_read_kernel(head, sizeof(head), sockaddr);
	return (__u16)head[2] << 8 | head[3];
}

SEC("tracepoint/tcp/tcp_send_reset")
int on_send_reset(struct trace_event_raw_tcp_send_reset *ctx)
{
	/* the record's source is this host's end, taken from the socket or from the segment answered */
	__u16 local_port = sockaddr_port(ctx->saddr), remote_port = sockaddr_port(ctx->daddr);
	struct tcp_port_key key;
	struct tcp_port_stats *stats;
	__u64 sk = (__u64)ctx->skaddr;

	/* no full socket: a segment for a port nothing listens on, or for a connection still in its handshake */
	if (!sk || ctx->state == TCP_TIME_WAIT || ctx->state == TCP_NEW_SYN_RECV)
		key = port_key(local_port, remote_port, TCP_DIRECTION_INBOUND);
	else
		key = key_of(sk, local_port, remote_port);
	stats = stats_for(&key);
	if (stats)
		__sync_fetch_and_add(&stats->resets_sent, 1);
	return 0;
}

static long roll_up_live(struct bpf_map *map, __u64 *sk, struct tcp_conn *conn, void *unused)
{
	struct tcp_sock *tp = (struct tcp_sock *)*sk;

	/* a connection closing right now: its close rolls it up */
	if (BPF_CORE_READ(tp, inet_conn.icsk_inet.sk.__sk_common.skc_state) == TCP_CLOSE)
		return 0;
	roll_up(conn, tp, false);
	return 0;
}

/*
 * Run at each collection and once at load. It walks the TCP sockets of Periscope's network
 * namespace: it notes listening ports and follows connections that conns lacks (opened before
 * the object loaded, or while conns was full), counting them from now on, with a line each. At
 * the end it rolls up every connection in conns, of every namespace.
 */
SEC("iter/tcp")
int collect(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct tcp_conn conn = {};
	struct tcp_sock *tp;
	__u16 local_port, remote_port;
	__u64 sk;

	if (!skc) {
		bpf_for_each_map_elem(&conns, roll_up_live, NULL, 0);
		return 0;
	}
	local_port = skc->skc_num;
	if (skc->skc_state == TCP_LISTEN) {
		mark_listening(local_port);
		return 0;
	}
	if (!is_open_state(skc->skc_state))
		return 0;
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;
	sk = (__u64)tp;
	if (bpf_map_lookup_elem(&conns, &sk))
		return 0;
	/* the iterator visits listeners before connections */
	remote_port = bpf_ntohs(skc->skc_dport);
	conn.key = port_key(local_port, remote_port, guess_direction(local_port));
	conn.bytes_sent = tp->bytes_sent;
	conn.bytes_received = tp->bytes_received;
	conn.segments_sent = tp->segs_out;
	conn.segments_received = tp->segs_in;
	if (bpf_map_update_elem(&conns, &sk, &conn, BPF_NOEXIST))
		return 0;
	BPF_SEQ_PRINTF(ctx->meta->seq, "%u %u\n", local_port, remote_port);
	return 0;
}
