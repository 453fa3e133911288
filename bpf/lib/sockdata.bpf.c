// SPDX-License-Identifier: GPL-2.0
/*
 * Socket data for L7 protocol plugins. Each send and receive on a stream socket (TCP, unix) is
 * followed to its connection, whose protocol the kernel tags from its first bytes; a record goes
 * to that protocol's ring only when some plugin claimed the protocol (`protocols`), so traffic
 * nobody wants never leaves the kernel. TLS plaintext comes from uprobes on OpenSSL and on Go's
 * crypto/tls, which plugins attach at run time; the connection table is filled at start by two
 * task_file iterators, so connections older than Periscope are traced too.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "fd_file.h"
#include "file_path.h"
#include "periscope.h"
#include "sockdata.h"

_Static_assert(SOCK_LIBRARY_PATH_LEN == FILE_PATH_LEN, "a library record holds one walked path");

char LICENSE[] SEC("license") = "GPL";

#define AF_UNIX 1
#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define PROT_EXEC 0x4
#define VM_EXEC 0x4
#define EINTR 4
#define MSG_PEEK 2
#define EAGAIN 11
#define EISCONN 106
#define EALREADY 114
#define EINPROGRESS 115

/* undecided records before a connection is classified as other */
#define CLASSIFY_ATTEMPTS 4
/* bytes into a direction within which a TLS handshake means the connection switched to TLS */
#define TLS_UPGRADE_WINDOW 4096
/* bytes the classifier looks at */
#define HEAD_LEN 16
/*
 * iovecs gathered per call (until the capture size is reached): gRPC and HTTP/2 stacks write each
 * frame header and payload as an iovec of one writev, 3 per call, for many calls at once (grpc-js
 * wrote 90 for 30 concurrent calls); and messages per sendmmsg/recvmmsg
 */
#define MAX_IOV 512
#define MAX_MMSG 8

/*
 * A ring per protocol, so one protocol's flood cannot crowd out another's records. Each is 2 MB,
 * resident in full once mapped (the six are 12 MB of the runtime's RSS). 1 MB lost records in
 * bursts the tests make on purpose (redis-benchmark -P 16); 2 MB loses none there, and the 15 MB
 * MySQL result a client reads gives the same span as at 4 MB. Only under overload do smaller
 * rings lose more: wrk against nginx at 35,000 requests/s, where the http plugin's queue drops
 * 10 times as many records, the ring dropped 46,000-82,000 of them in 10 s (13,000-54,000 at 4 MB).
 */
#define PROTOCOL_RING(name)                         \
	struct {                                    \
		__uint(type, BPF_MAP_TYPE_RINGBUF); \
		__uint(max_entries, 2 << 20);       \
	} name SEC(".maps");                        \
	RECORD(name, struct sock_event)

PROTOCOL_RING(http);
PROTOCOL_RING(http2);
PROTOCOL_RING(redis);
PROTOCOL_RING(postgres);
PROTOCOL_RING(mysql);
PROTOCOL_RING(kafka);

/* open, close and connect-failed of the connections of wanted processes */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} connections SEC(".maps");
RECORD(connections, struct sock_event);

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 << 10);
} libraries SEC(".maps");
RECORD(libraries, struct library_event);

DROP_COUNTER;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PROTOCOL_COUNT);
	__type(key, __u32);
	__type(value, struct protocol_config);
} protocols SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct protocol_pid);
	__type(value, __u8);
} target_pids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct protocol_cgroup);
	__type(value, __u8);
} target_cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct protocol_port);
	__type(value, __u8);
} excluded_ports SEC(".maps");

/* Periscope's own processes, written by the runtime when it opens the object */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u8);
} self_tgids SEC(".maps");

/* Periscope's TCP connections as its end sees them; their other end is not traced either */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct self_flow);
	__type(value, __u8);
} self_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} self_listen_ports SEC(".maps");

/* Periscope's sockets between SYN_SENT and ESTABLISHED, when their source port is known */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u8);
} self_socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct conn_key);
	__type(value, struct conn_info);
} conns SEC(".maps");

/*
 * Per process with a connection in `conns`: one past the highest fd among them. A process that
 * exits without close() (redis-cli, most short-lived clients), or execs with its sockets
 * close-on-exec, has its fds closed in the kernel, where no syscall tracepoint sees it; its exit
 * or exec then closes the connections under this bound (close_gone). A process this table lost
 * (over its size) leaves its connections to the LRU of `conns`, as before.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u32);
} conn_fd_bounds SEC(".maps");

/* the most fds an exit or exec looks at: a bpf_loop step each */
#define GONE_MAX_FDS (1 << 16)

/*
 * Listening TCP ports, with how many sockets listen on each (SO_REUSEPORT gives several): a
 * connection on one of them was accepted.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct listen_key);
	__type(value, __u32);
} listening SEC(".maps");

enum call_shape {
	SHAPE_BUFFER = 0,
	SHAPE_IOVEC = 1,
	SHAPE_MSG = 2,
	SHAPE_MMSG = 3,
	SHAPE_SENDFILE = 4,
	SHAPE_CONNECT = 5,
	SHAPE_ACCEPT = 6,
	/* a syscall that moves no socket data */
	SHAPE_NONE = 7,
};

/* where a call's entry was seen: that says where its iovecs are and which exit takes it */
enum call_origin {
	/* a syscall tracepoint: buffers, iovecs and msghdrs as the process passed them */
	ORIGIN_SYSCALL = 0,
	/* a socket function's entry (fentry or kprobe): the iovec array is the kernel's copy */
	ORIGIN_SOCKET_FUNCTION = 1,
};

/* a syscall (or one socket function call of it) between its entry and exit, per thread */
struct active_call {
	__u64 start_ns;
	/* the buffer, iovec array, msghdr, mmsghdr array or (connect) sockaddr */
	__u64 source;
	__s32 fd;
	/* iovcnt or vlen */
	__u32 count;
	__u8 shape;
	__u8 direction;
	__u8 origin;
	__u8 pad[5];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct active_call);
} active_calls SEC(".maps");

/* an SSL_read/SSL_write between its entry and return, per thread */
struct ssl_call {
	__u64 start_ns;
	__u64 ssl;
	__u64 buf;
	/* the _ex forms' size_t *written / *readbytes; 0 for SSL_read/SSL_write */
	__u64 count_ptr;
	/* from a socket syscall nested in the call; -1 until one is seen */
	__s32 fd;
	__u8 direction;
	__u8 pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct ssl_call);
} ssl_calls SEC(".maps");

struct ssl_key {
	__u32 tgid;
	__u32 pad;
	__u64 ssl;
};

/* the socket of an SSL*, for calls OpenSSL serves from its buffer without a syscall */
struct ssl_socket {
	__u64 conn_id;
	__s32 fd;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct ssl_key);
	__type(value, struct ssl_socket);
} ssl_sockets SEC(".maps");

/*
 * The ciphertext socket a thread last began to read: OpenSSL on memory BIOs (Node's TLS) never
 * touches the socket in SSL_read, but decrypts in the callback of the read that brought the
 * bytes, on the same thread, right after it.
 */
struct tls_read {
	__u64 conn_id;
	__u64 start_ns;
	__s32 fd;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct tls_read);
} tls_reads SEC(".maps");

/* how long after its socket read an SSL call on memory BIOs may come and still be taken for that socket's */
#define TLS_READ_WINDOW_NS 10000000ULL

/* a thread's cgroup v2 id and its ancestors', nearest first; 0 past the root */
struct cgroup_ancestors {
	__u64 ids[SOCK_CGROUP_LEVELS];
};

/*
 * A non-blocking connect in progress, whose failure shows as SYN_SENT -> CLOSE, often in softirq
 * on whatever task was running: what the failure record and its filter need from the
 * connecting thread is kept here.
 */
struct pending_connect {
	struct conn_key key;
	__u64 conn_id;
	__u64 start_ns;
	__u32 tid;
	__u32 pad;
	char comm[SOCK_COMM_LEN];
	struct cgroup_ancestors cgroups;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct pending_connect);
} pending_connects SEC(".maps");

/* payloads are gathered here; twice the cap, so the verifier can bound offset + length */
struct payload_buffer {
	__u8 bytes[2 * SOCK_DATA_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct payload_buffer);
} scratch SEC(".maps");

/*
 * emit_data's record header, off its stack: the verifier allows 512 bytes for a program and the
 * functions it calls together, and go_tls_write, emit_data and classify came to 592
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sock_event);
} event_scratch SEC(".maps");

/*
 * conn_id counters, one per CPU, with the CPU in the low bits: unique without atomics, which
 * the build's BPF CPU version cannot return a value from. Tracing programs do not nest on a CPU.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} conn_counters SEC(".maps");

/*
 * The HTTP request each thread is serving (read, its response not written yet): tid -> the
 * request's context id (sock_event.context). Client calls the thread makes meanwhile carry it.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u64);
} thread_contexts SEC(".maps");

/* what one record is made from */
struct capture {
	__u64 start_ns;
	/* one buffer, or an iovec array when iovcnt > 0 */
	__u64 source;
	__u32 iovcnt;
	__u32 bytes;
	__u32 tgid;
	__s32 fd;
	__u8 direction;
	/* SOCK_FLAG_TLS or SOCK_FLAG_SENDFILE */
	__u8 flags;
	/* enum call_origin: where the iovec array is */
	__u8 origin;
	__u8 pad[5];
};

static __always_inline bool is_self(__u32 tgid)
{
	return bpf_map_lookup_elem(&self_tgids, &tgid) != NULL;
}

static __always_inline __u64 next_conn_id(void)
{
	__u32 zero = 0;
	__u64 *counter = bpf_map_lookup_elem(&conn_counters, &zero);

	if (!counter)
		return 0;
	*counter += 1;
	return (*counter << 10) | (bpf_get_smp_processor_id() & 1023);
}

/* the file's socket when it is a stream socket: a sockfs inode whose socket points back */
static __always_inline struct socket *stream_socket(struct file *file)
{
	struct socket *sock;

	if (!file || file_type(file) != S_IFSOCK)
		return NULL;
	sock = BPF_CORE_READ(file, private_data);
	if (BPF_CORE_READ(sock, file) != file || BPF_CORE_READ(sock, type) != SOCK_STREAM)
		return NULL;
	return sock;
}

/* IPv4 as IPv4-mapped IPv6, so both kinds of socket meet in one key */
static __always_inline void as_ipv6(__u8 out[SOCK_ADDR_LEN], const __u8 in[SOCK_ADDR_LEN], __u16 family)
{
	if (family != AF_INET) {
		__builtin_memcpy(out, in, SOCK_ADDR_LEN);
		return;
	}
	__builtin_memset(out, 0, 10);
	out[10] = 0xff;
	out[11] = 0xff;
	__builtin_memcpy(out + 12, in, 4);
}

static __always_inline bool is_loopback(const __u8 addr[SOCK_ADDR_LEN])
{
	__u64 high, low;

	__builtin_memcpy(&high, addr, 8);
	__builtin_memcpy(&low, addr + 8, 8);
	if (high != 0)
		return false;
	/* ::1, or ::ffff:127.x.y.z */
	return low == bpf_cpu_to_be64(1) || (low >> 32 == bpf_htonl(0xffff) && addr[12] == 127);
}

static __always_inline bool same_address(const __u8 a[SOCK_ADDR_LEN], const __u8 b[SOCK_ADDR_LEN])
{
	__u64 a0, a1, b0, b1;

	__builtin_memcpy(&a0, a, 8);
	__builtin_memcpy(&a1, a + 8, 8);
	__builtin_memcpy(&b0, b, 8);
	__builtin_memcpy(&b1, b + 8, 8);
	return a0 == b0 && a1 == b1;
}

/* the other end of one of Periscope's own connections, or a client of its listening ports */
static __always_inline bool is_peer_of_self(struct conn_info *conn)
{
	struct self_flow flow = {};
	__u32 port = conn->remote_port;

	if (conn->family != AF_INET && conn->family != AF_INET6)
		return false;
	as_ipv6(flow.local_addr, conn->remote_addr, conn->family);
	as_ipv6(flow.remote_addr, conn->local_addr, conn->family);
	flow.local_port = conn->remote_port;
	flow.remote_port = conn->local_port;
	if (bpf_map_lookup_elem(&self_flows, &flow))
		return true;
	if (!bpf_map_lookup_elem(&self_listen_ports, &port))
		return false;
	return is_loopback(flow.local_addr) || same_address(flow.local_addr, flow.remote_addr);
}

/* family, addresses and ports of a socket; false for families other than inet, inet6, unix */
static __always_inline bool read_endpoints(struct conn_info *conn, struct sock *sk)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	conn->family = family;
	if (family == AF_UNIX)
		return true;
	if (family == AF_INET) {
		bpf_core_read(conn->local_addr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(conn->remote_addr, 4, &sk->__sk_common.skc_daddr);
	} else if (family == AF_INET6) {
		bpf_core_read(conn->local_addr, SOCK_ADDR_LEN, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(conn->remote_addr, SOCK_ADDR_LEN, &sk->__sk_common.skc_v6_daddr);
	} else {
		return false;
	}
	conn->local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
	conn->remote_port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	return true;
}

static __always_inline __u32 netns_of(struct sock *sk)
{
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

/*
 * Adds a connection to the table under key. ROLE_UNKNOWN asks for the role from the listening
 * sockets: a TCP connection on a listening port was accepted.
 */
static __always_inline struct conn_info *new_conn(struct conn_key *key, struct file *file, struct socket *sock, __u8 role, __u8 flags)
{
	struct sock *sk = BPF_CORE_READ(sock, sk);
	struct conn_info conn = {};
	__u32 *bound;

	if (!read_endpoints(&conn, sk))
		return NULL;
	if (role == ROLE_UNKNOWN && conn.family != AF_UNIX) {
		struct listen_key listener = { .netns = netns_of(sk), .port = conn.local_port };

		role = bpf_map_lookup_elem(&listening, &listener) ? ROLE_SERVER : ROLE_CLIENT;
	}
	conn.conn_id = next_conn_id();
	conn.file = (__u64)file;
	conn.role = role;
	conn.flags = flags;
	conn.excluded = is_peer_of_self(&conn);
	bpf_map_update_elem(&conns, key, &conn, BPF_ANY);
	bound = bpf_map_lookup_elem(&conn_fd_bounds, &key->tgid);
	if (!bound || *bound <= (__u32)key->fd) {
		__u32 next = (__u32)key->fd + 1;

		bpf_map_update_elem(&conn_fd_bounds, &key->tgid, &next, BPF_ANY);
	}
	return bpf_map_lookup_elem(&conns, key);
}

/* the connection of the current task's fd, whose file is `file`, made at first sight; NULL for non-sockets */
static __always_inline struct conn_info *conn_for_file(__u32 tgid, int fd, struct file *file)
{
	struct conn_key key = { .tgid = tgid, .fd = fd };
	struct conn_info *conn;
	struct socket *sock;

	if (!file)
		return NULL;
	conn = bpf_map_lookup_elem(&conns, &key);
	if (conn && conn->file == (__u64)file)
		return conn;
	sock = stream_socket(file);
	if (!sock) {
		/* a closed socket's fd, reused without a close we saw */
		if (conn)
			bpf_map_delete_elem(&conns, &key);
		return NULL;
	}
	return new_conn(&key, file, sock, ROLE_UNKNOWN, 0);
}

/* the connection an fd of the current task names, made at first sight; NULL for non-sockets */
static __always_inline struct conn_info *conn_for_fd(__u32 tgid, int fd)
{
	return conn_for_file(tgid, fd, fd_file(fd));
}

/* ciphertext from now on: the plaintext stream is classified and counted afresh */
static __always_inline void start_tls(struct conn_info *conn)
{
	conn->tls = 1;
	conn->tls_ns = bpf_ktime_get_boot_ns();
	conn->protocol = PROTOCOL_UNKNOWN;
	conn->attempts = 0;
	conn->positions[0] = 0;
	conn->positions[1] = 0;
	conn->loss[0] = 0;
	conn->loss[1] = 0;
	conn->framed[0] = 0;
	conn->framed[1] = 0;
}

/* a socket syscall inside an SSL call names the SSL object's socket, which is then TLS */
static __always_inline void note_ssl_socket(__u64 id, int fd, struct conn_info *conn)
{
	struct ssl_call *call = bpf_map_lookup_elem(&ssl_calls, &id);

	if (!call)
		return;
	call->fd = fd;
	if (!conn->tls)
		start_tls(conn);
}

/* the current thread's cgroup v2 level (0 is the root), by loads through BTF: no helper calls */
static __always_inline int current_cgroup_level(void)
{
	struct task_struct *task = bpf_get_current_task_btf();

	return task->cgroups->dfl_cgrp->level;
}

static __always_inline void current_cgroup_ancestors(struct cgroup_ancestors *out)
{
	int level = current_cgroup_level(), i;

	for (i = 0; i < SOCK_CGROUP_LEVELS && i <= level; i++)
		out->ids[i] = bpf_get_current_ancestor_cgroup_id(level - i);
}

/*
 * Whether a process is in one of a protocol's target cgroups, or below one: a Kubernetes pod's
 * cgroup then covers its containers (its children), a slice its services. The process's own
 * cgroup is looked up first, then its ancestors up the tree (SOCK_CGROUP_LEVELS in all), so a
 * service's own cgroup matches at the first lookup. The cgroup is the current thread's, read
 * live: every record of a connection in the table is made in its own process (data in the
 * syscall or SSL call, open in connect or accept, close in close), so a process moved to
 * another cgroup is filtered by where it is now. The one record made elsewhere, a non-blocking
 * connect's failure (inet_sock_set_state, in softirq), passes the connecting thread's ancestors
 * kept in its pending_connect. The start-up scan filters nothing: its connections' records come
 * later, from their own processes.
 */
__noinline int cgroup_targeted(__u32 protocol, struct cgroup_ancestors *kept)
{
	struct protocol_cgroup key = { .protocol = protocol };
	int level = 0, i;

	if (!kept)
		level = current_cgroup_level();
	for (i = 0; i < SOCK_CGROUP_LEVELS; i++) {
		if (kept)
			key.cgroup = kept->ids[i];
		else
			key.cgroup = i <= level ? bpf_get_current_ancestor_cgroup_id(level - i) : 0;
		if (!key.cgroup)
			return 0;
		if (bpf_map_lookup_elem(&target_cgroups, &key))
			return 1;
	}
	return 0;
}

/*
 * The protocol's config when a record of it from this process and connection goes out. cgroups:
 * the connection's thread's, when it is not the current one (NULL: the current thread's). With
 * both a pid and a cgroup filter, a process named by either passes.
 */
static __always_inline struct protocol_config *protocol_passes(__u32 protocol, __u32 tgid, struct conn_info *conn, struct cgroup_ancestors *cgroups)
{
	struct protocol_config *config;
	struct protocol_pid pid = { .protocol = protocol, .pid = tgid };
	struct protocol_port port = { .protocol = protocol };

	if (protocol == PROTOCOL_UNKNOWN || protocol >= PROTOCOL_TLS)
		return NULL;
	config = bpf_map_lookup_elem(&protocols, &protocol);
	if (!config || !config->wanted)
		return NULL;
	/* a server's records would only be skipped in user space, after crossing the ring */
	if (config->wanted == WANTED_CLIENT_END && conn->role == ROLE_SERVER)
		return NULL;
	if ((config->pid_filter || config->cgroup_filter) &&
	    !(config->pid_filter && bpf_map_lookup_elem(&target_pids, &pid)) &&
	    !(config->cgroup_filter && cgroup_targeted(protocol, cgroups)))
		return NULL;
	port.port = conn->local_port;
	if (bpf_map_lookup_elem(&excluded_ports, &port))
		return NULL;
	port.port = conn->remote_port;
	if (bpf_map_lookup_elem(&excluded_ports, &port))
		return NULL;
	return config;
}

/*
 * open, close and connect-failed go out for connections some wanted protocol could be on;
 * cgroups as for protocol_passes
 */
static __always_inline bool lifecycle_wanted(struct conn_info *conn, __u32 tgid, struct cgroup_ancestors *cgroups)
{
	__u32 protocol = conn->protocol;

	if (conn->excluded)
		return false;
	if (protocol != PROTOCOL_UNKNOWN)
		return protocol_passes(protocol, tgid, conn, cgroups) != NULL;
	for (protocol = PROTOCOL_HTTP; protocol < PROTOCOL_TLS; protocol++) {
		if (protocol_passes(protocol, tgid, conn, cgroups))
			return true;
	}
	return false;
}

static __always_inline bool any_protocol_wanted(void)
{
	struct protocol_config *config;
	__u32 protocol;

	for (protocol = PROTOCOL_HTTP; protocol < PROTOCOL_TLS; protocol++) {
		config = bpf_map_lookup_elem(&protocols, &protocol);
		if (config && config->wanted)
			return true;
	}
	return false;
}

static __always_inline void fill_header(struct sock_event *e, struct conn_info *conn, __u32 tgid, __u32 tid, __s32 fd)
{
	e->conn_id = conn->conn_id;
	e->pid = tgid;
	e->tid = tid;
	e->fd = fd;
	e->family = conn->family;
	e->local_port = conn->local_port;
	e->remote_port = conn->remote_port;
	e->role = conn->role;
	e->protocol = conn->protocol;
	e->flags = conn->flags;
	__builtin_memcpy(e->local_addr, conn->local_addr, SOCK_ADDR_LEN);
	__builtin_memcpy(e->remote_addr, conn->remote_addr, SOCK_ADDR_LEN);
}

/* a lifecycle record; comm is the current task's unless given (softirq context) */
static __always_inline void emit_lifecycle(struct conn_info *conn, __u8 kind, __u32 tgid, __u32 tid, __s32 fd, __u64 start_ns, __u32 error, const char *comm)
{
	struct sock_event e = {};

	fill_header(&e, conn, tgid, tid, fd);
	e.kind = kind;
	e.start_ns = start_ns;
	e.end_ns = bpf_ktime_get_boot_ns();
	e.bytes = error;
	if (comm)
		__builtin_memcpy(e.comm, comm, SOCK_COMM_LEN);
	else
		bpf_get_current_comm(e.comm, sizeof(e.comm));
	if (bpf_ringbuf_output(&connections, &e, sizeof(e), 0))
		count_drop(&dropped);
}

/* iovec `index` of the call's array: the process's own, or the kernel's copy of it */
static __always_inline long read_iovec(struct iovec *iov, struct capture *c, __u64 index)
{
	struct iovec *at = (struct iovec *)c->source + index;

	if (c->origin == ORIGIN_SOCKET_FUNCTION)
		return bpf_probe_read_kernel(iov, sizeof(*iov), at);
	return bpf_probe_read_user(iov, sizeof(*iov), at);
}

/*
 * Copies up to `left` bytes of the call's iovec `index` to offset `at` of the buffer; returns
 * how many, or -1 when it could not be read. Global, like the other helpers of emit_data, so
 * the verifier checks it once per program instead of once per loop iteration.
 */
__noinline int copy_iovec(struct payload_buffer *buffer, struct capture *c, __u64 index, __u64 at, __u64 left)
{
	struct iovec iov;
	__u64 len;

	if (!buffer || !c || at >= SOCK_DATA_MAX)
		return -1;
	if (read_iovec(&iov, c, index))
		return -1;
	len = iov.iov_len < left ? iov.iov_len : left;
	if (len == 0)
		return 0;
	if (len > SOCK_DATA_MAX)
		return -1;
	/* the mask changes nothing but shows the verifier the bound on whichever register it reads */
	if (bpf_probe_read_user(buffer->bytes + (at & (SOCK_DATA_MAX - 1)), len, iov.iov_base))
		return -1;
	return len;
}

/* copies up to cap bytes of the call's data (one buffer or its iovecs) into the buffer; how many */
__noinline __u32 gather(struct payload_buffer *buffer, __u32 cap, struct capture *c)
{
	__u64 want, copied = 0;
	int i, n;

	if (!buffer || !c)
		return 0;
	want = c->bytes < cap ? c->bytes : cap;
	if (want > SOCK_DATA_MAX)
		want = SOCK_DATA_MAX;
	if (c->iovcnt == 0) {
		/* the mask changes nothing (want <= SOCK_DATA_MAX) but bounds every copy of the register */
		if (want == 0 || bpf_probe_read_user(buffer->bytes, want & (2 * SOCK_DATA_MAX - 1), (void *)c->source))
			return 0;
		return want;
	}
	for (i = 0; i < MAX_IOV && i < c->iovcnt && copied < want; i++) {
		n = copy_iovec(buffer, c, i, copied, want - copied);
		if (n < 0)
			break;
		copied += n;
	}
	return copied;
}

/* the first bytes of the call's data (its first iovec's, for vectors) into dst; returns how many */
static __always_inline __u32 read_head(__u8 *dst, struct capture *c)
{
	__u64 source = c->source, len = c->bytes;
	struct iovec iov;

	if (c->iovcnt > 0) {
		if (read_iovec(&iov, c, 0))
			return 0;
		source = (__u64)iov.iov_base;
		if (iov.iov_len < len)
			len = iov.iov_len;
	}
	if (len > HEAD_LEN)
		len = HEAD_LEN;
	if (len == 0 || bpf_probe_read_user(dst, len, (void *)source))
		return 0;
	return len;
}

/* a string literal's first bytes as a little-endian word, folded at compile time */
#define BYTE_AT(s, i) (sizeof(s) - 1 > (i) ? (__u64)(__u8)(s)[i] << (8 * (i)) : 0)
#define WORD(s) (BYTE_AT(s, 0) | BYTE_AT(s, 1) | BYTE_AT(s, 2) | BYTE_AT(s, 3) | \
		 BYTE_AT(s, 4) | BYTE_AT(s, 5) | BYTE_AT(s, 6) | BYTE_AT(s, 7))
#define MASK(len) ((len) >= 8 ? ~0ULL : (1ULL << (8 * (len))) - 1)
/* whether the head (word: its first 8 bytes, n of them valid) starts with a literal of <= 8 bytes */
#define STARTS(literal) (n >= sizeof(literal) - 1 && (word & MASK(sizeof(literal) - 1)) == WORD(literal))

static __always_inline bool is_digit(__u8 c)
{
	return c >= '0' && c <= '9';
}

static __always_inline __u32 be32_at(const __u8 *p)
{
	return (__u32)p[0] << 24 | (__u32)p[1] << 16 | (__u32)p[2] << 8 | p[3];
}

static __always_inline __u32 be16_at(const __u8 *p)
{
	return (__u32)p[0] << 8 | p[1];
}

/*
 * Whether a record starts with a whole HTTP/2 frame of a kind a connection in use sends: a 9-byte
 * header (24-bit length, type, flags, reserved bit clear, 31-bit stream) whose frame fits in the
 * record, with only the flags its type defines, on the stream its type belongs to (SETTINGS,
 * PING, GOAWAY on stream 0 with their lengths; HEADERS, DATA, RST_STREAM on a stream).
 * PRIORITY, PUSH_PROMISE and CONTINUATION, rare or never first, are left out to stay strict.
 * A record of exactly a frame's header counts too: Go's HTTP/2 server reads each header, then
 * its payload, in calls of their own.
 */
static __always_inline bool is_http2_frame(const __u8 *head, __u32 n, __u32 bytes)
{
	__u32 length = (__u32)head[0] << 16 | (__u32)head[1] << 8 | head[2], stream = be32_at(head + 5);
	__u8 type = head[3], flags = head[4];

	if (n < 9 || (stream & 0x80000000) || (length + 9 > bytes && !(bytes == 9 && length > 0)))
		return false;
	switch (type) {
	/* DATA: END_STREAM, PADDED */
	case 0: return stream != 0 && !(flags & ~0x09);
	/* HEADERS: END_STREAM, END_HEADERS, PADDED, PRIORITY */
	case 1: return stream != 0 && length > 0 && !(flags & ~0x2d);
	/* RST_STREAM: an error code */
	case 3: return stream != 0 && length == 4 && flags == 0;
	/* SETTINGS: 6 bytes a setting, at most the 7 RFC 9113 defines plus a few; an ACK is empty */
	case 4: return stream == 0 && (flags == 0 ? length % 6 == 0 && length <= 6 * 16 : flags == 1 && length == 0);
	/* PING: 8 bytes of opaque data, ACK */
	case 6: return stream == 0 && length == 8 && !(flags & ~0x01);
	/* GOAWAY: last stream and error code, then debug data */
	case 7: return stream == 0 && length >= 8 && flags == 0;
	/* WINDOW_UPDATE: a non-zero 31-bit increment */
	case 8: return n >= 13 && length == 4 && flags == 0 && !(head[9] & 0x80) && be32_at(head + 9) != 0;
	}
	return false;
}

/*
 * The protocol the first bytes of a connection speak; PROTOCOL_UNKNOWN when undecided. A
 * connection found by the start-up scan (preexisting) is seen mid-stream, where some protocols
 * are recognised from a whole message; a new one only from how it starts, so no other length-
 * prefixed protocol (esbuild's IPC, say) is taken for one of those.
 */
__noinline __u8 classify(struct payload_buffer *buffer, __u32 n, __u32 bytes, __u32 preexisting)
{
	__u64 word, second;
	__u8 *head;

	if (!buffer || n > HEAD_LEN)
		return PROTOCOL_UNKNOWN;
	head = buffer->bytes;
	__builtin_memcpy(&word, head, 8);
	__builtin_memcpy(&second, head + 8, 8);
	/* a TLS record: change cipher spec, alert, handshake or application data, version 3.x */
	if (n >= 3 && head[0] >= 20 && head[0] <= 23 && head[1] == 3 && head[2] <= 4)
		return PROTOCOL_TLS;
	if (STARTS("GET ") || STARTS("POST ") || STARTS("PUT ") || STARTS("HEAD ") || STARTS("DELETE ") ||
	    STARTS("OPTIONS ") || STARTS("PATCH ") || STARTS("CONNECT ") || STARTS("TRACE ") || STARTS("HTTP/1."))
		return PROTOCOL_HTTP;
	if (n >= 14 && word == WORD("PRI * HT") && (second & MASK(6)) == WORD("TP/2.0"))
		return PROTOCOL_HTTP2;
	/* a RESP command: an array of bulk strings, *<count>\r\n$ */
	if (n >= 6 && head[0] == '*' && is_digit(head[1]) &&
	    ((head[2] == '\r' && head[3] == '\n' && head[4] == '$') ||
	     (is_digit(head[2]) && head[3] == '\r' && head[4] == '\n' && head[5] == '$')))
		return PROTOCOL_REDIS;
	if (n >= 8) {
		__u32 length = be32_at(head), code = be32_at(head + 4);

		/* PostgreSQL: a 3.0 startup message, or an SSL or GSS encryption request */
		if ((code == 0x00030000 && length == bytes) || (length == 8 && (code == 80877103 || code == 80877104)))
			return PROTOCOL_POSTGRES;
		/*
		 * PostgreSQL mid-stream (a connection opened before Periscope): a whole simple Query, or
		 * a Parse that starts an extended-query batch
		 */
		length = be32_at(head + 1);
		if (preexisting && ((head[0] == 'Q' && length >= 5 && length + 1 == bytes) || (head[0] == 'P' && length >= 8 && length + 1 <= bytes && length < 65536)))
			return PROTOCOL_POSTGRES;
	}
	/* MySQL: the server's greeting, packet 0 of protocol 10 with a version string */
	if (n >= 6 && head[3] == 0 && head[4] == 10 && is_digit(head[5])) {
		__u32 length = head[0] | (__u32)head[1] << 8 | (__u32)head[2] << 16;

		if (length > 0 && length < 1024)
			return PROTOCOL_MYSQL;
	}
	/*
	 * MySQL mid-stream: a whole command packet (sequence 0) of a client that connected before
	 * Periscope: COM_INIT_DB, COM_QUERY, COM_PING, COM_STMT_PREPARE or COM_STMT_EXECUTE
	 */
	if (preexisting && n >= 5 && head[3] == 0 && (head[4] == 2 || head[4] == 3 || head[4] == 14 || head[4] == 22 || head[4] == 23)) {
		__u32 length = head[0] | (__u32)head[1] << 8 | (__u32)head[2] << 16;

		if (length > 0 && length + 4 == bytes)
			return PROTOCOL_MYSQL;
	}
	/* Kafka: a whole request, size-prefixed, with a known API key and version and a client id */
	if (n >= 14 && be32_at(head) + 4 == bytes && be16_at(head + 4) <= 100 && be16_at(head + 6) <= 30) {
		__u32 client_id = be16_at(head + 12);

		if (client_id <= 255 || client_id == 0xffff)
			return PROTOCOL_KAFKA;
	}
	/* HTTP/2 mid-stream: a connection in use has long sent its preface */
	if (preexisting && is_http2_frame(head, n, bytes))
		return PROTOCOL_HTTP2;
	return PROTOCOL_UNKNOWN;
}

/* a TLS handshake record (ClientHello or ServerHello) of version 3.x */
static __always_inline bool is_tls_handshake(const __u8 *head)
{
	return head[0] == 22 && head[1] == 3 && head[2] <= 4;
}

/* writes header and payload to one ring with the record's exact size; 0 when it went out */
static __always_inline long write_record(void *ring, struct sock_event *e, __u8 *payload, __u32 captured)
{
	struct bpf_dynptr record;
	long err;

	/* captured never exceeds SOCK_DATA_MAX; the mask shows the verifier a bound on every register copy */
	captured &= 2 * SOCK_DATA_MAX - 1;
	err = bpf_ringbuf_reserve_dynptr(ring, sizeof(*e) + captured, 0, &record);
	if (err) {
		bpf_ringbuf_discard_dynptr(&record, 0);
		return err;
	}
	bpf_dynptr_write(&record, 0, e, sizeof(*e), 0);
	if (captured)
		bpf_dynptr_write(&record, sizeof(*e), payload, captured, 0);
	bpf_ringbuf_submit_dynptr(&record, 0);
	return 0;
}

static __always_inline long output(__u8 protocol, struct sock_event *e, __u8 *payload, __u32 captured)
{
	switch (protocol) {
	case PROTOCOL_HTTP: return write_record(&http, e, payload, captured);
	case PROTOCOL_HTTP2: return write_record(&http2, e, payload, captured);
	case PROTOCOL_REDIS: return write_record(&redis, e, payload, captured);
	case PROTOCOL_POSTGRES: return write_record(&postgres, e, payload, captured);
	case PROTOCOL_MYSQL: return write_record(&mysql, e, payload, captured);
	case PROTOCOL_KAFKA: return write_record(&kafka, e, payload, captured);
	}
	return -1;
}

/*
 * The record's thread context (sock_event.context). A server's HTTP connection starts a new
 * request context at its first ingress after a response (or ever), and the reading thread serves
 * it until the connection's next egress (the response). A client connection's records carry the
 * context of the request their thread serves. Only records that go out get here, so a context is
 * only ever named when the HTTP plugin sees the request that made it.
 */
static __always_inline __u64 thread_context(struct conn_info *conn, __u8 direction, __u32 tid)
{
	__u64 *serving;

	if (conn->role == ROLE_CLIENT) {
		serving = bpf_map_lookup_elem(&thread_contexts, &tid);
		return serving ? *serving : 0;
	}
	if (conn->role != ROLE_SERVER || conn->protocol != PROTOCOL_HTTP)
		return 0;
	if (direction == DIRECTION_INGRESS) {
		if (!conn->context || conn->answered) {
			conn->context = next_conn_id();
			conn->answered = 0;
		}
		bpf_map_update_elem(&thread_contexts, &tid, &conn->context, BPF_ANY);
		return conn->context;
	}
	conn->answered = 1;
	serving = bpf_map_lookup_elem(&thread_contexts, &tid);
	if (serving && *serving == conn->context)
		bpf_map_delete_elem(&thread_contexts, &tid);
	return conn->context;
}

/*
 * One call's data on a connection: classifies the connection while it is undecided, advances
 * the direction's position, and sends the record to its protocol's ring if that is wanted.
 * A global function, so the verifier checks it once per program rather than once per call.
 */
__noinline int emit_data(struct capture *c, struct conn_info *conn)
{
	struct protocol_config *config;
	__u8 direction, sendfile;
	struct sock_event *e;
	__u32 zero = 0, cap, captured = 0;
	struct payload_buffer *payload;
	__u64 position, id;

	if (!c || !conn)
		return 0;
	direction = c->direction & 1;
	sendfile = c->flags & SOCK_FLAG_SENDFILE;
	/* ciphertext of a TLS connection: the uprobes give its plaintext */
	if (conn->tls && !(c->flags & SOCK_FLAG_TLS))
		return 0;
	payload = bpf_map_lookup_elem(&scratch, &zero);
	if (!payload)
		return 0;
	if (conn->protocol == PROTOCOL_UNKNOWN && !sendfile) {
		__u8 protocol = classify(payload, read_head(payload->bytes, c), c->bytes, conn->flags & SOCK_FLAG_PREEXISTING);

		if (protocol == PROTOCOL_TLS) {
			if (!(c->flags & SOCK_FLAG_TLS))
				start_tls(conn);
			return 0;
		}
		if (protocol == PROTOCOL_UNKNOWN && ++conn->attempts >= CLASSIFY_ATTEMPTS)
			protocol = PROTOCOL_OTHER;
		conn->protocol = protocol;
	}
	/* a plaintext protocol that switches to TLS (PostgreSQL's SSLRequest, MySQL's SSL request, an HTTP CONNECT tunnel) */
	else if (!conn->tls && !(c->flags & SOCK_FLAG_TLS) && !sendfile && conn->positions[direction] < TLS_UPGRADE_WINDOW &&
		 read_head(payload->bytes, c) >= 3 && is_tls_handshake(payload->bytes)) {
		start_tls(conn);
		return 0;
	}
	position = conn->positions[direction];
	conn->positions[direction] = position + c->bytes;
	/*
	 * HTTP/2 found mid-stream: a call in flight when the object opened (its entry unseen, a
	 * goroutine parked in Read, a thread blocked in recv) took bytes uncounted, maybe part of a
	 * frame, so each direction goes out from a record that starts a frame; until then they are
	 * counted, like the records before the classification
	 */
	if ((conn->flags & SOCK_FLAG_PREEXISTING) && conn->protocol == PROTOCOL_HTTP2 && !conn->framed[direction]) {
		if (!sendfile && !is_http2_frame(payload->bytes, read_head(payload->bytes, c), c->bytes))
			return 0;
		conn->framed[direction] = 1;
	}
	config = protocol_passes(conn->protocol, c->tgid, conn, NULL);
	if (!config)
		return 0;
	e = bpf_map_lookup_elem(&event_scratch, &zero);
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	id = bpf_get_current_pid_tgid();
	e->context = thread_context(conn, direction, (__u32)id);
	if (!sendfile) {
		cap = config->capture_bytes ? config->capture_bytes : SOCK_CAPTURE_DEFAULT;
		captured = gather(payload, cap < SOCK_DATA_MAX ? cap : SOCK_DATA_MAX, c);
	}

	fill_header(e, conn, c->tgid, (__u32)id, c->fd);
	e->start_ns = c->start_ns;
	e->end_ns = bpf_ktime_get_boot_ns();
	e->position = position;
	e->bytes = c->bytes;
	e->captured = captured;
	e->kind = SOCK_DATA;
	e->direction = direction;
	e->flags |= c->flags;
	if (conn->loss[direction])
		e->flags |= SOCK_FLAG_LOSS;
	if (!sendfile && captured < c->bytes)
		e->flags |= SOCK_FLAG_TRUNCATED;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	if (output(conn->protocol, e, payload->bytes, captured)) {
		count_drop(&dropped);
		conn->loss[direction] = 1;
	} else {
		conn->loss[direction] = 0;
	}
	return 0;
}

/*
 * Whether no plugin wants this end of a classified connection: its protocol is not claimed, or
 * is claimed at the client end only and this is the server's end. Such calls are dropped at their
 * entry, before any copy (a local server's syscalls then pay only the lookup).
 */
static __always_inline bool end_unwanted(struct conn_info *conn)
{
	__u32 protocol = conn->protocol;
	struct protocol_config *config;

	if (protocol == PROTOCOL_UNKNOWN || protocol >= PROTOCOL_TLS)
		return false;
	config = bpf_map_lookup_elem(&protocols, &protocol);
	return !config || !config->wanted || (config->wanted == WANTED_CLIENT_END && conn->role == ROLE_SERVER);
}

/*
 * A send or receive on a TLS connection's socket, whatever it moved: the SSL call it is nested
 * in learns its socket, and a read is noted for the SSL_read that may follow it (memory BIOs).
 */
static __always_inline void note_tls_use(__u64 id, int fd, struct conn_info *conn, __u8 direction)
{
	note_ssl_socket(id, fd, conn);
	if (conn->tls && direction == DIRECTION_INGRESS && !conn->excluded) {
		struct tls_read read = { .conn_id = conn->conn_id, .start_ns = bpf_ktime_get_boot_ns(), .fd = fd };

		bpf_map_update_elem(&tls_reads, &id, &read, BPF_ANY);
	}
}

/* whether a send or receive on conn could give a record: its plaintext, of a claimed protocol */
static __always_inline bool data_wanted(struct conn_info *conn, __u8 direction)
{
	if (conn->excluded || conn->tls || conn->protocol == PROTOCOL_OTHER)
		return false;
	if (end_unwanted(conn)) {
		/* the bytes of this call are not counted: the next record that goes out says so */
		conn->loss[direction & 1] = 1;
		return false;
	}
	return true;
}

/*
 * A send or receive begins on a socket fd (a syscall's entry, or a socket function's entry in
 * it): remembers the call for its exit, if the connection's data could be wanted.
 */
static __always_inline int remember_call(int fd, __u64 source, __u32 count, __u8 shape, __u8 direction, __u8 origin)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct active_call call = {};
	struct conn_info *conn;

	conn = conn_for_fd(id >> 32, fd);
	if (!conn)
		return 0;
	note_tls_use(id, fd, conn, direction);
	if (!data_wanted(conn, direction))
		return 0;
	call.start_ns = bpf_ktime_get_boot_ns();
	call.source = source;
	call.fd = fd;
	call.count = count;
	call.shape = shape;
	call.direction = direction;
	call.origin = origin;
	if (bpf_map_update_elem(&active_calls, &id, &call, BPF_ANY)) {
		count_drop(&dropped);
		conn->loss[direction & 1] = 1;
	}
	return 0;
}

/* syscall entry of read, write, readv, writev, sendto, recvfrom, sendmsg, recvmsg, sendfile */
static __always_inline int data_enter(int fd, __u64 source, __u32 count, __u8 shape, __u8 direction)
{
	/* most reads and writes are not on sockets: the fd's type first, before any map lookup */
	if (file_type(fd_file(fd)) != S_IFSOCK || is_self(bpf_get_current_pid_tgid() >> 32))
		return 0;
	return remember_call(fd, source, count, shape, direction, ORIGIN_SYSCALL);
}

/* takes the thread's call of this shape, if its entry was seen */
static __always_inline bool take_call(__u64 id, __u8 shape, struct active_call *call)
{
	struct active_call *active = bpf_map_lookup_elem(&active_calls, &id);

	if (!active)
		return false;
	*call = *active;
	bpf_map_delete_elem(&active_calls, &id);
	return call->shape == shape;
}

/* a finished call on conn that moved `ret` bytes: its record, from the buffer or iovecs it named */
static __always_inline int emit_call(struct active_call *call, struct conn_info *conn, long ret)
{
	struct capture c = {};

	c.start_ns = call->start_ns;
	c.bytes = ret;
	c.tgid = bpf_get_current_pid_tgid() >> 32;
	c.fd = call->fd;
	c.direction = call->direction;
	c.source = call->source;
	c.origin = call->origin;
	if (call->shape == SHAPE_IOVEC) {
		c.iovcnt = call->count;
	} else if (call->shape == SHAPE_MSG) {
		struct user_msghdr msg;

		if (bpf_probe_read_user(&msg, sizeof(msg), (void *)call->source))
			return 0;
		c.source = (__u64)msg.msg_iov;
		c.iovcnt = msg.msg_iovlen;
	} else if (call->shape == SHAPE_SENDFILE) {
		c.source = 0;
		c.flags = SOCK_FLAG_SENDFILE;
	}
	if (call->shape != SHAPE_BUFFER && call->shape != SHAPE_SENDFILE && c.iovcnt == 0)
		return 0;
	emit_data(&c, conn);
	return 0;
}

/* a finished call that moved `ret` bytes, on the connection its fd names */
static __always_inline int finish_call(struct active_call *call, long ret)
{
	struct conn_key key = { .tgid = bpf_get_current_pid_tgid() >> 32, .fd = call->fd };
	struct conn_info *conn = bpf_map_lookup_elem(&conns, &key);

	return conn ? emit_call(call, conn, ret) : 0;
}

/* syscall exit of read, write, readv, writev, sendto, recvfrom, sendmsg, recvmsg, sendfile */
static __always_inline int data_exit(long ret, __u8 shape)
{
	struct active_call call;

	if (!take_call(bpf_get_current_pid_tgid(), shape, &call) || ret <= 0)
		return 0;
	return finish_call(&call, ret);
}

/* a call that got no record: the connection's next record of that direction carries the loss flag */
static __always_inline void lose_record(struct conn_info *conn, __u8 direction, __u32 tgid)
{
	conn->loss[direction & 1] = 1;
	if (protocol_passes(conn->protocol, tgid, conn, NULL))
		count_drop(&dropped);
}

/* sendmmsg/recvmmsg exit: one record per message, up to MAX_MMSG; the rest are flagged as lost */
static __always_inline int mmsg_exit(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct active_call call;
	struct capture c = {};
	struct conn_key key = { .tgid = id >> 32 };
	struct conn_info *conn;
	struct mmsghdr msg;
	int i;

	if (!take_call(id, SHAPE_MMSG, &call) || ret <= 0)
		return 0;
	key.fd = call.fd;
	conn = bpf_map_lookup_elem(&conns, &key);
	if (!conn)
		return 0;
	c.start_ns = call.start_ns;
	c.tgid = key.tgid;
	c.fd = call.fd;
	c.direction = call.direction;
	for (i = 0; i < MAX_MMSG; i++) {
		if (i >= ret)
			break;
		if (bpf_probe_read_user(&msg, sizeof(msg), (struct mmsghdr *)call.source + i))
			break;
		if (msg.msg_len == 0 || msg.msg_hdr.msg_iovlen == 0)
			continue;
		c.source = (__u64)msg.msg_hdr.msg_iov;
		c.iovcnt = msg.msg_hdr.msg_iovlen;
		c.bytes = msg.msg_len;
		emit_data(&c, conn);
	}
	if (i < ret)
		lose_record(conn, call.direction, key.tgid);
	return 0;
}

#define ENTER(syscall, shape, direction, count)                                   \
	SEC("tracepoint/syscalls/sys_enter_" #syscall)                           \
	int enter_##syscall(struct trace_event_raw_sys_enter *ctx)               \
	{                                                                         \
		return data_enter(ctx->args[0], ctx->args[1], count, shape, direction); \
	}

#define EXIT(syscall, shape)                                       \
	SEC("tracepoint/syscalls/sys_exit_" #syscall)             \
	int exit_##syscall(struct trace_event_raw_sys_exit *ctx)  \
	{                                                          \
		return data_exit(ctx->ret, shape);                 \
	}

ENTER(write, SHAPE_BUFFER, DIRECTION_EGRESS, 0)
EXIT(write, SHAPE_BUFFER)
ENTER(read, SHAPE_BUFFER, DIRECTION_INGRESS, 0)
EXIT(read, SHAPE_BUFFER)
ENTER(writev, SHAPE_IOVEC, DIRECTION_EGRESS, ctx->args[2])
EXIT(writev, SHAPE_IOVEC)
ENTER(readv, SHAPE_IOVEC, DIRECTION_INGRESS, ctx->args[2])
EXIT(readv, SHAPE_IOVEC)
ENTER(sendto, SHAPE_BUFFER, DIRECTION_EGRESS, 0)
EXIT(sendto, SHAPE_BUFFER)
ENTER(recvfrom, SHAPE_BUFFER, DIRECTION_INGRESS, 0)
EXIT(recvfrom, SHAPE_BUFFER)
ENTER(sendmsg, SHAPE_MSG, DIRECTION_EGRESS, 0)
EXIT(sendmsg, SHAPE_MSG)
ENTER(recvmsg, SHAPE_MSG, DIRECTION_INGRESS, 0)
EXIT(recvmsg, SHAPE_MSG)
ENTER(sendmmsg, SHAPE_MMSG, DIRECTION_EGRESS, ctx->args[2])
ENTER(recvmmsg, SHAPE_MMSG, DIRECTION_INGRESS, ctx->args[2])

SEC("tracepoint/syscalls/sys_exit_sendmmsg")
int exit_sendmmsg(struct trace_event_raw_sys_exit *ctx)
{
	return mmsg_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_recvmmsg")
int exit_recvmmsg(struct trace_event_raw_sys_exit *ctx)
{
	return mmsg_exit(ctx->ret);
}

/* sendfile64(out_fd, in_fd, offset, count): the socket is out_fd */
SEC("tracepoint/syscalls/sys_enter_sendfile64")
int enter_sendfile(struct trace_event_raw_sys_enter *ctx)
{
	return data_enter(ctx->args[0], 0, 0, SHAPE_SENDFILE, DIRECTION_EGRESS);
}

SEC("tracepoint/syscalls/sys_exit_sendfile64")
int exit_sendfile(struct trace_event_raw_sys_exit *ctx)
{
	return data_exit(ctx->ret, SHAPE_SENDFILE);
}

/*
 * Where fentry is refused but the kernel has the sock_recv_length and sock_send_length
 * tracepoints (Linux 6.3): they fire on sockets only, as each receive or send ends, so a read()
 * of a file runs no sockdata program, and a write() only the entry of its syscall (with the
 * syscall tracepoints, each ran two). What the call moved is found from the syscall's saved
 * registers: its number says what its second argument holds.
 * - A receive is taken whole at its end. Nothing sees it begin: its record's start is its end,
 *   the moment the data reached the process.
 * - A send keeps its syscall's entry, which remembers its start: a send blocked on a full socket
 *   buffer ends after its peer read its first bytes, and only its start orders a client's request
 *   before the server's read of it. Its end is the tracepoint's.
 * - recvmmsg and sendmmsg (several messages a call) and sendfile keep their syscall tracepoints,
 *   and are skipped here.
 */

/*
 * x86-64's numbers of the syscalls taken here (the objects are built for x86 only). A 32-bit
 * task's numbers differ; none of its syscalls with these numbers (restart_syscall, exit, lseek,
 * getpid, prof, brk, setgid, getgid) sends or receives, so its socket calls are skipped.
 */
#ifndef __TARGET_ARCH_x86
#error "sockdata.bpf.c's data syscall numbers are x86-64's"
#endif
enum data_syscall {
	NR_READ = 0,
	NR_WRITE = 1,
	NR_READV = 19,
	NR_WRITEV = 20,
	NR_SENDTO = 44,
	NR_RECVFROM = 45,
	NR_SENDMSG = 46,
	NR_RECVMSG = 47,
};

/* the shape of what a data syscall's second argument holds; SHAPE_NONE for other syscalls */
static __always_inline __u8 data_shape(long nr)
{
	switch (nr) {
	case NR_READ:
	case NR_WRITE:
	case NR_RECVFROM:
	case NR_SENDTO:
		return SHAPE_BUFFER;
	case NR_READV:
	case NR_WRITEV:
		return SHAPE_IOVEC;
	case NR_RECVMSG:
	case NR_SENDMSG:
		return SHAPE_MSG;
	}
	return SHAPE_NONE;
}

/* the current task's file of fd, when it is sock's: not a call the kernel makes for the thread */
static __always_inline struct file *socket_file(int fd, struct socket *sock)
{
	struct file *file = fd_file(fd);

	return file && (__u64)file == (__u64)BPF_CORE_READ(sock, file) ? file : NULL;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(on_recv_length, struct sock *sk, int ret, int flags)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	struct active_call call = { .direction = DIRECTION_INGRESS, .origin = ORIGIN_SYSCALL };
	__u64 id = bpf_get_current_pid_tgid();
	struct conn_info *conn;
	struct file *file;

	/* a peek's bytes are read again by the receive that takes them */
	if (flags & MSG_PEEK)
		return 0;
	call.shape = data_shape(BPF_CORE_READ(regs, orig_ax));
	if (call.shape == SHAPE_NONE || is_self(id >> 32))
		return 0;
	call.fd = PT_REGS_PARM1_CORE_SYSCALL(regs);
	file = socket_file(call.fd, BPF_CORE_READ(sk, sk_socket));
	if (!file)
		return 0;
	conn = conn_for_file(id >> 32, call.fd, file);
	if (!conn)
		return 0;
	/* a failed read still ties a running SSL_read to its socket (a handshake's, say) */
	note_tls_use(id, call.fd, conn, DIRECTION_INGRESS);
	if (ret <= 0 || !data_wanted(conn, DIRECTION_INGRESS))
		return 0;
	call.source = PT_REGS_PARM2_CORE_SYSCALL(regs);
	if (call.shape == SHAPE_IOVEC)
		call.count = PT_REGS_PARM3_CORE_SYSCALL(regs);
	call.start_ns = bpf_ktime_get_boot_ns();
	return emit_call(&call, conn, ret);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(on_send_length, struct sock *sk, int ret, int flags)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	__u64 id = bpf_get_current_pid_tgid();
	struct active_call *active = bpf_map_lookup_elem(&active_calls, &id);
	struct active_call call;

	/*
	 * the send its syscall's entry remembered. The syscall's number must give it that shape: a
	 * send made in another syscall (io_uring's, say) must not take a failed write's stale entry,
	 * and sendmmsg's and sendfile's entries are for their exits.
	 */
	if (!active || active->shape != data_shape(BPF_CORE_READ(regs, orig_ax)) || active->direction != DIRECTION_EGRESS || active->origin != ORIGIN_SYSCALL)
		return 0;
	call = *active;
	bpf_map_delete_elem(&active_calls, &id);
	if (ret <= 0 || !socket_file(call.fd, BPF_CORE_READ(sk, sk_socket)))
		return 0;
	return finish_call(&call, ret);
}

/*
 * The preferred data path where fentry is allowed (and kprobes where neither fentry nor the
 * socket tracepoints are): the entry and return of the sendmsg and recvmsg of the stream socket
 * families followed (inet, inet6, unix). Every send and receive syscall reaches one of them;
 * sock_sendmsg and sock_recvmsg are not enough (since Linux 6.6 write, sendto and sendmsg go
 * through __sock_sendmsg, inlined, and recvmmsg skips sock_recvmsg after its first message). The
 * fd is the syscall's first argument, read from the registers it saved, so nothing fires on the
 * host's other reads and writes. Records are made by the syscall path's own helpers from the
 * same table; their start and end are the socket function's entry and return.
 */

/* before Linux 6.4 the iovec array of an iov_iter was `iov` */
struct iov_iter___pre_6_4 {
	const struct iovec *iov;
} __attribute__((preserve_access_index));

static __always_inline __u64 iter_iovecs(struct iov_iter *iter)
{
	if (bpf_core_field_exists(iter->__iov))
		return (__u64)BPF_CORE_READ(iter, __iov);
	return (__u64)BPF_CORE_READ((struct iov_iter___pre_6_4 *)iter, iov);
}

/* the first argument of the syscall the current thread is in: the fd, for every data syscall */
static __always_inline int syscall_fd(void)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());

	return PT_REGS_PARM1_CORE_SYSCALL(regs);
}

/*
 * A thread's socket function call whose return never came: kretprobes miss returns when more
 * threads wait in the function than the probe has instances. Its record is lost; the loss
 * flag on the connection's next record of that direction says so.
 */
static __always_inline void note_missed_return(__u64 id)
{
	struct active_call *stale = bpf_map_lookup_elem(&active_calls, &id);
	struct conn_key key = { .tgid = id >> 32 };
	struct conn_info *conn;

	if (!stale || stale->origin != ORIGIN_SOCKET_FUNCTION)
		return;
	key.fd = stale->fd;
	conn = bpf_map_lookup_elem(&conns, &key);
	if (conn)
		lose_record(conn, stale->direction, key.tgid);
}

/* a socket function's entry: remembers the call when a data syscall runs it on its fd's socket */
static __always_inline int socket_function_enter(struct socket *sock, struct msghdr *msg, __u8 direction)
{
	struct iov_iter *iter = __builtin_preserve_access_index(&msg->msg_iter);
	__u8 type = BPF_CORE_READ(iter, iter_type), shape;
	__u64 offset = BPF_CORE_READ(iter, iov_offset), source, id;
	__u32 count = 0;
	int fd;

	/* a process's own memory; sendfile and splice hand over pages, the kernel's users kvecs */
	if (bpf_core_enum_value_exists(enum iter_type, ITER_UBUF) && type == bpf_core_enum_value(enum iter_type, ITER_UBUF)) {
		shape = SHAPE_BUFFER;
		source = (__u64)BPF_CORE_READ(iter, ubuf) + offset;
	} else if (type == bpf_core_enum_value(enum iter_type, ITER_IOVEC) && offset == 0) {
		/* a syscall's iterator is fresh; a part-consumed one is some kernel caller's */
		shape = SHAPE_IOVEC;
		source = iter_iovecs(iter);
		count = BPF_CORE_READ(iter, nr_segs);
	} else {
		return 0;
	}
	id = bpf_get_current_pid_tgid();
	if (is_self(id >> 32))
		return 0;
	fd = syscall_fd();
	if (!socket_file(fd, sock))
		return 0;
	note_missed_return(id);
	return remember_call(fd, source, count, shape, direction, ORIGIN_SOCKET_FUNCTION);
}

/* a socket function's return: the record of the call its entry remembered */
static __always_inline int socket_function_exit(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct active_call *active = bpf_map_lookup_elem(&active_calls, &id);
	struct active_call call;

	/* a syscall's own entry (sendfile's, around its splice to the socket) is its exit's to take */
	if (!active || active->origin != ORIGIN_SOCKET_FUNCTION)
		return 0;
	call = *active;
	bpf_map_delete_elem(&active_calls, &id);
	if (ret <= 0)
		return 0;
	return finish_call(&call, ret);
}

/*
 * fentry/fexit and kprobe/kretprobe programs of one socket function; the catalogue attaches one
 * kind. `...` are the function's parameters after msg, which fexit must list before the return.
 */
#define SOCKET_FUNCTION_HOOKS(function, direction, ...)                                        \
	SEC("fentry/" #function)                                                                \
	int BPF_PROG(fentry_##function, struct socket *sock, struct msghdr *msg)                \
	{                                                                                       \
		return socket_function_enter(sock, msg, direction);                             \
	}                                                                                       \
	SEC("fexit/" #function)                                                                 \
	int BPF_PROG(fexit_##function, struct socket *sock, struct msghdr *msg, __VA_ARGS__, int ret) \
	{                                                                                       \
		return socket_function_exit(ret);                                               \
	}                                                                                       \
	SEC("kprobe/" #function)                                                                \
	int BPF_KPROBE(kprobe_##function, struct socket *sock, struct msghdr *msg)              \
	{                                                                                       \
		return socket_function_enter(sock, msg, direction);                             \
	}                                                                                       \
	SEC("kretprobe/" #function)                                                             \
	int BPF_KRETPROBE(kretprobe_##function, int ret)                                        \
	{                                                                                       \
		return socket_function_exit(ret);                                               \
	}

SOCKET_FUNCTION_HOOKS(inet_sendmsg, DIRECTION_EGRESS, size_t size)
SOCKET_FUNCTION_HOOKS(inet6_sendmsg, DIRECTION_EGRESS, size_t size)
SOCKET_FUNCTION_HOOKS(unix_stream_sendmsg, DIRECTION_EGRESS, size_t size)
SOCKET_FUNCTION_HOOKS(inet_recvmsg, DIRECTION_INGRESS, size_t size, int flags)
SOCKET_FUNCTION_HOOKS(inet6_recvmsg, DIRECTION_INGRESS, size_t size, int flags)
SOCKET_FUNCTION_HOOKS(unix_stream_recvmsg, DIRECTION_INGRESS, size_t size, int flags)

/* connect, accept and accept4 entries: the fd (and for connect the address) and the start */
static __always_inline int lifecycle_enter(int fd, __u64 source, __u8 shape)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct active_call call = {};

	if (is_self(id >> 32))
		return 0;
	call.start_ns = bpf_ktime_get_boot_ns();
	call.source = source;
	call.fd = fd;
	call.shape = shape;
	bpf_map_update_elem(&active_calls, &id, &call, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_connect")
int enter_connect(struct trace_event_raw_sys_enter *ctx)
{
	return lifecycle_enter(ctx->args[0], ctx->args[1], SHAPE_CONNECT);
}

/* the peer a connect asked for: after a refusal the socket itself no longer holds it */
static __always_inline void read_sockaddr(struct conn_info *conn, __u64 address)
{
	struct sockaddr_in6 in6;
	struct sockaddr_in in;
	__u16 family = 0;

	bpf_probe_read_user(&family, sizeof(family), (void *)address);
	if (family == AF_INET && !bpf_probe_read_user(&in, sizeof(in), (void *)address)) {
		conn->family = AF_INET;
		conn->remote_port = bpf_ntohs(in.sin_port);
		__builtin_memcpy(conn->remote_addr, &in.sin_addr, 4);
	} else if (family == AF_INET6 && !bpf_probe_read_user(&in6, sizeof(in6), (void *)address)) {
		conn->family = AF_INET6;
		conn->remote_port = bpf_ntohs(in6.sin6_port);
		__builtin_memcpy(conn->remote_addr, &in6.sin6_addr, SOCK_ADDR_LEN);
	}
}

/* a non-blocking connect's outcome: SYN_SENT -> CLOSE is a failure, with the socket's error */
static __always_inline void connect_outcome(__u64 sk, int newstate)
{
	struct pending_connect *pending = bpf_map_lookup_elem(&pending_connects, &sk);
	struct conn_info *conn;
	__u32 error;

	if (!pending)
		return;
	conn = bpf_map_lookup_elem(&conns, &pending->key);
	if (newstate == TCP_CLOSE && conn && conn->conn_id == pending->conn_id) {
		error = BPF_CORE_READ((struct sock *)sk, sk_err);
		if (lifecycle_wanted(conn, pending->key.tgid, &pending->cgroups))
			emit_lifecycle(conn, SOCK_CONNECT_FAILED, pending->key.tgid, pending->tid, pending->key.fd, pending->start_ns, error, pending->comm);
		conn->failed = 1;
	}
	bpf_map_delete_elem(&pending_connects, &sk);
}

SEC("tracepoint/syscalls/sys_exit_connect")
int exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct conn_key key = { .tgid = tgid };
	struct active_call call;
	struct conn_info *conn, failed = {};
	struct socket *sock;
	struct file *file;
	long ret = ctx->ret;

	if (!take_call(id, SHAPE_CONNECT, &call))
		return 0;
	key.fd = call.fd;
	file = fd_file(call.fd);
	sock = stream_socket(file);
	if (!sock)
		return 0;
	if (ret == 0 || ret == -EINPROGRESS) {
		conn = new_conn(&key, file, sock, ROLE_CLIENT, 0);
		if (!conn)
			return 0;
		if (lifecycle_wanted(conn, tgid, NULL)) {
			emit_lifecycle(conn, SOCK_OPEN, tgid, (__u32)id, call.fd, call.start_ns, 0, NULL);
			conn->opened = 1;
		}
		if (ret == -EINPROGRESS && conn->family != AF_UNIX) {
			struct pending_connect pending = { .key = key, .conn_id = conn->conn_id, .start_ns = call.start_ns, .tid = (__u32)id };
			struct sock *sk = BPF_CORE_READ(sock, sk);
			__u64 sk_id = (__u64)sk;

			bpf_get_current_comm(pending.comm, sizeof(pending.comm));
			current_cgroup_ancestors(&pending.cgroups);
			bpf_map_update_elem(&pending_connects, &sk_id, &pending, BPF_ANY);
			/* refused on loopback before the call even returned: the state change came too early */
			if (BPF_CORE_READ(sk, __sk_common.skc_state) == TCP_CLOSE)
				connect_outcome(sk_id, TCP_CLOSE);
		}
		return 0;
	}
	/* still under way, or not a new attempt */
	if (ret == -EINTR || ret == -EALREADY || ret == -EISCONN || ret == -EAGAIN)
		return 0;
	conn = bpf_map_lookup_elem(&conns, &key);
	bpf_map_delete_elem(&conns, &key);
	/* the error of a non-blocking attempt whose failure already went out */
	if (conn && conn->file == (__u64)file && conn->failed)
		return 0;
	if (!read_endpoints(&failed, BPF_CORE_READ(sock, sk)))
		return 0;
	read_sockaddr(&failed, call.source);
	failed.conn_id = next_conn_id();
	failed.role = ROLE_CLIENT;
	failed.excluded = is_peer_of_self(&failed);
	if (lifecycle_wanted(&failed, tgid, NULL))
		emit_lifecycle(&failed, SOCK_CONNECT_FAILED, tgid, (__u32)id, call.fd, call.start_ns, -ret, NULL);
	return 0;
}

static __always_inline int accept_exit(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct conn_key key = { .tgid = tgid, .fd = ret };
	struct active_call call;
	struct conn_info *conn;
	struct socket *sock;
	struct file *file;

	if (!take_call(id, SHAPE_ACCEPT, &call) || ret < 0)
		return 0;
	file = fd_file(ret);
	sock = stream_socket(file);
	if (!sock)
		return 0;
	conn = new_conn(&key, file, sock, ROLE_SERVER, 0);
	if (conn && lifecycle_wanted(conn, tgid, NULL)) {
		emit_lifecycle(conn, SOCK_OPEN, tgid, (__u32)id, ret, call.start_ns, 0, NULL);
		conn->opened = 1;
	}
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_accept")
int enter_accept(struct trace_event_raw_sys_enter *ctx)
{
	return lifecycle_enter(ctx->args[0], 0, SHAPE_ACCEPT);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int exit_accept(struct trace_event_raw_sys_exit *ctx)
{
	return accept_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_accept4")
int enter_accept4(struct trace_event_raw_sys_enter *ctx)
{
	return lifecycle_enter(ctx->args[0], 0, SHAPE_ACCEPT);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int exit_accept4(struct trace_event_raw_sys_exit *ctx)
{
	return accept_exit(ctx->ret);
}

/* the close record of the connection under key (if anyone wants it), and its entry gone */
static __always_inline void close_conn(struct conn_key *key, struct conn_info *conn, __u32 tid)
{
	/* a connection nobody heard of (no open record, no wanted data), or one that failed, closes silently */
	if ((conn->opened || conn->protocol != PROTOCOL_UNKNOWN) && !conn->failed && lifecycle_wanted(conn, key->tgid, NULL))
		emit_lifecycle(conn, SOCK_CLOSE, key->tgid, tid, key->fd, bpf_ktime_get_boot_ns(), 0, NULL);
	bpf_map_delete_elem(&conns, key);
}

SEC("tracepoint/syscalls/sys_enter_close")
int enter_close(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct conn_key key = { .tgid = id >> 32, .fd = ctx->args[0] };
	struct conn_info *conn = bpf_map_lookup_elem(&conns, &key);

	if (conn)
		close_conn(&key, conn, (__u32)id);
	return 0;
}

struct gone_scan {
	__u64 id;
	/* exit: every connection of the process is gone; exec: those whose fd no longer names their file */
	bool exited;
};

/* bpf_loop callback: closes the connection at fd `index` if it is gone */
static long close_gone(__u64 index, struct gone_scan *scan)
{
	struct conn_key key = { .tgid = scan->id >> 32, .fd = (__s32)index };
	struct conn_info *conn = bpf_map_lookup_elem(&conns, &key);

	if (conn && (scan->exited || (__u64)fd_file(key.fd) != conn->file))
		close_conn(&key, conn, (__u32)scan->id);
	return 0;
}

/* closes the current process's connections its exit or exec took away */
static __always_inline void close_all_gone(bool exited)
{
	struct gone_scan scan = { .id = bpf_get_current_pid_tgid(), .exited = exited };
	__u32 tgid = scan.id >> 32;
	__u32 *bound = bpf_map_lookup_elem(&conn_fd_bounds, &tgid);
	__u32 fds;

	if (!bound)
		return;
	fds = *bound < GONE_MAX_FDS ? *bound : GONE_MAX_FDS;
	bpf_loop(fds, close_gone, &scan, 0);
	if (exited)
		bpf_map_delete_elem(&conn_fd_bounds, &tgid);
}

/* the process's fds close after this tracepoint (exit_files), at its last thread's exit */
SEC("tracepoint/sched/sched_process_exit")
int on_exit(void *ctx)
{
	if (last_thread_exiting())
		close_all_gone(true);
	return 0;
}

/* the close-on-exec fds were closed by now: their connections end */
SEC("tracepoint/sched/sched_process_exec")
int on_exec(void *ctx)
{
	close_all_gone(false);
	return 0;
}

/* Periscope's own connections and listening ports, so their other ends are not traced */
static __always_inline void track_self(struct trace_event_raw_inet_sock_set_state *ctx, __u64 sk, __u32 tgid)
{
	struct self_flow flow = {};
	__u32 port = ctx->sport;
	__u8 yes = 1;

	if (ctx->newstate == TCP_LISTEN) {
		if (is_self(tgid))
			bpf_map_update_elem(&self_listen_ports, &port, &yes, BPF_ANY);
		return;
	}
	if (ctx->oldstate == TCP_LISTEN) {
		if (is_self(tgid))
			bpf_map_delete_elem(&self_listen_ports, &port);
		return;
	}
	/* the source port may still be 0 at SYN_SENT: the flow is known at ESTABLISHED */
	if (ctx->newstate == TCP_SYN_SENT) {
		if (is_self(tgid))
			bpf_map_update_elem(&self_socks, &sk, &yes, BPF_ANY);
		return;
	}
	if (!bpf_map_lookup_elem(&self_socks, &sk))
		return;
	/* the tracepoint gives IPv4 as IPv4-mapped IPv6 already; a copy the verifier lets through ctx */
	bpf_probe_read_kernel(flow.local_addr, SOCK_ADDR_LEN, ctx->saddr_v6);
	bpf_probe_read_kernel(flow.remote_addr, SOCK_ADDR_LEN, ctx->daddr_v6);
	flow.local_port = ctx->sport;
	flow.remote_port = ctx->dport;
	if (ctx->newstate == TCP_ESTABLISHED) {
		bpf_map_update_elem(&self_flows, &flow, &yes, BPF_ANY);
	} else if (ctx->newstate == TCP_CLOSE) {
		bpf_map_delete_elem(&self_flows, &flow);
		bpf_map_delete_elem(&self_socks, &sk);
	}
}

/* one more socket listens on the port */
static __always_inline void add_listener(struct listen_key *key)
{
	__u32 one = 1, *count = bpf_map_lookup_elem(&listening, key);

	if (count)
		__sync_fetch_and_add(count, 1);
	else
		bpf_map_update_elem(&listening, key, &one, BPF_NOEXIST);
}

/*
 * A socket starts or stops listening. Only LISTEN -> CLOSE ends a listener: every connection
 * accepted on it also leaves LISTEN (its socket is cloned from the listener's, then moves
 * LISTEN -> SYN_RECV), and must not remove the port.
 */
static __always_inline void track_listening(struct trace_event_raw_inet_sock_set_state *ctx, __u64 sk)
{
	struct listen_key key = { .port = ctx->sport };
	__u32 *count;

	key.netns = netns_of((struct sock *)sk);
	if (ctx->newstate == TCP_LISTEN) {
		add_listener(&key);
	} else if (ctx->oldstate == TCP_LISTEN && ctx->newstate == TCP_CLOSE) {
		count = bpf_map_lookup_elem(&listening, &key);
		if (!count)
			return;
		__sync_fetch_and_add(count, -1);
		if (*count == 0)
			bpf_map_delete_elem(&listening, &key);
	}
}

SEC("tracepoint/sock/inet_sock_set_state")
int on_state_change(struct trace_event_raw_inet_sock_set_state *ctx)
{
	__u64 sk = (__u64)ctx->skaddr;

	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	if (ctx->oldstate == TCP_SYN_SENT)
		connect_outcome(sk, ctx->newstate);
	track_self(ctx, sk, bpf_get_current_pid_tgid() >> 32);
	track_listening(ctx, sk);
	return 0;
}

/* the uprobes' common entry: remembers the call for its return and nested syscalls */
static __always_inline int ssl_enter(__u64 ssl, __u64 buf, __u64 count_ptr, __u8 direction)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct ssl_call call = { .ssl = ssl, .buf = buf, .count_ptr = count_ptr, .fd = -1, .direction = direction };

	if (is_self(id >> 32))
		return 0;
	call.start_ns = bpf_ktime_get_boot_ns();
	bpf_map_update_elem(&ssl_calls, &id, &call, BPF_ANY);
	return 0;
}

/*
 * The connection of an SSL call: the socket a syscall nested in it used, else the one its SSL*
 * used before; else, for OpenSSL on memory BIOs, the socket the thread began to read just before
 * the call. The socket is remembered for the SSL* from then on, so the memory-BIO case needs one
 * SSL_read after a socket read (Node calls it in the handshake too) and its writes follow.
 */
static __always_inline struct conn_info *ssl_connection(__u64 id, struct ssl_call *call, struct ssl_key *ssl, struct conn_key *key)
{
	struct ssl_socket *known, socket = {};
	struct tls_read *recent;
	struct conn_info *conn;

	if (call->fd < 0) {
		known = bpf_map_lookup_elem(&ssl_sockets, ssl);
		if (known) {
			key->fd = known->fd;
			conn = bpf_map_lookup_elem(&conns, key);
			return conn && conn->conn_id == known->conn_id ? conn : NULL;
		}
		recent = bpf_map_lookup_elem(&tls_reads, &id);
		if (!recent || recent->start_ns > call->start_ns || call->start_ns - recent->start_ns > TLS_READ_WINDOW_NS)
			return NULL;
		call->fd = recent->fd;
	}
	key->fd = call->fd;
	conn = bpf_map_lookup_elem(&conns, key);
	if (!conn)
		return NULL;
	socket.fd = call->fd;
	socket.conn_id = conn->conn_id;
	bpf_map_update_elem(&ssl_sockets, ssl, &socket, BPF_ANY);
	return conn;
}

/* the uprobes' common return: the plaintext, on the connection of the SSL object's socket */
static __always_inline int ssl_exit(int ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct ssl_call *active = bpf_map_lookup_elem(&ssl_calls, &id);
	struct ssl_call call;
	struct ssl_key ssl = { .tgid = id >> 32 };
	struct conn_key key = { .tgid = id >> 32 };
	struct capture c = {};
	struct conn_info *conn;
	size_t count = 0;

	if (!active)
		return 0;
	call = *active;
	bpf_map_delete_elem(&ssl_calls, &id);
	/* before the result is looked at: a handshake's SSL_read (no data yet) still ties the SSL* to its socket */
	ssl.ssl = call.ssl;
	conn = ssl_connection(id, &call, &ssl, &key);
	if (!conn)
		return 0;
	if (call.count_ptr) {
		/* SSL_read_ex/SSL_write_ex: 1 on success, the count through a pointer */
		if (ret != 1 || bpf_probe_read_user(&count, sizeof(count), (void *)call.count_ptr))
			return 0;
	} else {
		if (ret <= 0)
			return 0;
		count = ret;
	}
	if (count == 0)
		return 0;
	if (!conn->tls)
		start_tls(conn);
	if (conn->excluded || conn->protocol == PROTOCOL_OTHER)
		return 0;
	c.start_ns = call.start_ns;
	c.source = call.buf;
	c.bytes = count;
	c.tgid = key.tgid;
	c.fd = key.fd;
	c.direction = call.direction;
	c.flags = SOCK_FLAG_TLS;
	emit_data(&c, conn);
	return 0;
}

/* int SSL_write(SSL *ssl, const void *buf, int num) */
SEC("uprobe")
int ssl_write(struct pt_regs *ctx)
{
	return ssl_enter(PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), 0, DIRECTION_EGRESS);
}

SEC("uretprobe")
int ssl_write_ret(struct pt_regs *ctx)
{
	return ssl_exit(PT_REGS_RC(ctx));
}

/* int SSL_read(SSL *ssl, void *buf, int num) */
SEC("uprobe")
int ssl_read(struct pt_regs *ctx)
{
	return ssl_enter(PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), 0, DIRECTION_INGRESS);
}

SEC("uretprobe")
int ssl_read_ret(struct pt_regs *ctx)
{
	return ssl_exit(PT_REGS_RC(ctx));
}

/* int SSL_write_ex(SSL *s, const void *buf, size_t num, size_t *written) */
SEC("uprobe")
int ssl_write_ex(struct pt_regs *ctx)
{
	return ssl_enter(PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), PT_REGS_PARM4(ctx), DIRECTION_EGRESS);
}

SEC("uretprobe")
int ssl_write_ex_ret(struct pt_regs *ctx)
{
	return ssl_exit(PT_REGS_RC(ctx));
}

/* int SSL_read_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes) */
SEC("uprobe")
int ssl_read_ex(struct pt_regs *ctx)
{
	return ssl_enter(PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), PT_REGS_PARM4(ctx), DIRECTION_INGRESS);
}

SEC("uretprobe")
int ssl_read_ex_ret(struct pt_regs *ctx)
{
	return ssl_exit(PT_REGS_RC(ctx));
}

/*
 * Go's crypto/tls, which does not use OpenSSL: uprobes on (*Conn).Write at its entry, and on
 * (*Conn).Read at its entry and at every return instruction (never uretprobes: a uretprobe
 * rewrites the return address on the goroutine's stack, which Go moves when it grows). Go's register ABI (amd64, Go 1.17 and
 * later): the receiver in RAX, the []byte's pointer and length in RBX and RCX, the result n in RAX
 * at the return, and the running goroutine (g) in R14 throughout.
 */
#define GO_RECEIVER(ctx) ((ctx)->ax)
#define GO_BUFFER(ctx) ((ctx)->bx)
#define GO_BUFFER_LEN(ctx) ((long)(ctx)->cx)
#define GO_RESULT(ctx) ((long)(ctx)->ax)
#define GO_GOROUTINE(ctx) ((ctx)->r14)

/*
 * From a *tls.Conn to its socket's fd. These layouts have not changed since internal/poll came
 * in Go 1.9; the offsets and hashes below were read by reflection in binaries of Go 1.17, 1.18,
 * 1.19, 1.23 and 1.26 (test/bpf/sockdata-go-tls.test.ts checks the Go installed):
 * - tls.Conn's first field is `conn net.Conn`, an interface: (itab, data) (since Go 1.0);
 * - data is a *net.TCPConn, struct { conn }, and net.conn is struct { fd *netFD }: its first word;
 * - netFD's first field is `pfd poll.FD`, whose fdMutex (uint64 + 2 uint32) is followed by Sysfd.
 */
#define GO_TLS_CONN_DATA 8
#define GO_TCP_CONN_NETFD 0
#define GO_NETFD_SYSFD 16
/*
 * The conn interface must hold a *net.TCPConn, or the words read are some other type's: its itab's
 * Hash (abi.ITab: Inter, Type, then Hash) is the compiler's hash of the type's name "*net.TCPConn":
 * the first 4 bytes (little-endian) of SHA-256 with byte 0 flipped since Go 1.24, of SHA-256 with
 * every byte flipped in Go 1.19 to 1.23, of MD5 in Go 1.17 and 1.18.
 */
#define GO_ITAB_HASH 16
#define GO_TCP_CONN_HASH 0x43fdf3b9
#define GO_TCP_CONN_HASH_GO1_19 0xbc020cb9
#define GO_TCP_CONN_HASH_GO1_17 0xb954d952

/* a goroutine's call: goroutines block in Read and resume on another thread */
struct go_tls_key {
	__u32 tgid;
	__u32 pad;
	__u64 goroutine;
};

/* a (*Conn).Read between its entry and a return */
struct go_tls_call {
	__u64 start_ns;
	__u64 conn;
	__u64 buf;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct go_tls_key);
	__type(value, struct go_tls_call);
} go_tls_calls SEC(".maps");

static __always_inline int go_tls_enter(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct go_tls_key key = { .tgid = id >> 32, .goroutine = GO_GOROUTINE(ctx) };
	struct go_tls_call call = { .conn = GO_RECEIVER(ctx), .buf = GO_BUFFER(ctx) };

	if (is_self(key.tgid))
		return 0;
	call.start_ns = bpf_ktime_get_boot_ns();
	bpf_map_update_elem(&go_tls_calls, &key, &call, BPF_ANY);
	return 0;
}

/* the fd of a *tls.Conn's socket; -1 when its net.Conn is not a *net.TCPConn or cannot be read */
static __always_inline int go_conn_fd(__u64 tls_conn)
{
	__u64 itab = 0, tcp_conn = 0, net_fd = 0;
	__s64 sysfd = -1;
	__u32 hash = 0;

	if (bpf_probe_read_user(&itab, sizeof(itab), (void *)tls_conn) ||
	    bpf_probe_read_user(&hash, sizeof(hash), (void *)(itab + GO_ITAB_HASH)) ||
	    (hash != GO_TCP_CONN_HASH && hash != GO_TCP_CONN_HASH_GO1_19 && hash != GO_TCP_CONN_HASH_GO1_17) ||
	    bpf_probe_read_user(&tcp_conn, sizeof(tcp_conn), (void *)(tls_conn + GO_TLS_CONN_DATA)) ||
	    bpf_probe_read_user(&net_fd, sizeof(net_fd), (void *)(tcp_conn + GO_TCP_CONN_NETFD)) ||
	    bpf_probe_read_user(&sysfd, sizeof(sysfd), (void *)(net_fd + GO_NETFD_SYSFD)))
		return -1;
	return sysfd >= 0 && sysfd < 0x7fffffff ? sysfd : -1;
}

/* `n` bytes of plaintext at `buf` that a *tls.Conn moved, on its socket's connection */
static __always_inline int go_tls_emit(__u32 tgid, __u64 tls_conn, __u64 buf, long n, __u64 start_ns, __u8 direction)
{
	struct capture c = {};
	struct conn_info *conn;
	int fd;

	if (n <= 0)
		return 0;
	fd = go_conn_fd(tls_conn);
	if (fd < 0)
		return 0;
	conn = conn_for_fd(tgid, fd);
	if (!conn)
		return 0;
	if (!conn->tls)
		start_tls(conn);
	if (conn->excluded || conn->protocol == PROTOCOL_OTHER)
		return 0;
	c.start_ns = start_ns;
	c.source = buf;
	c.bytes = n;
	c.tgid = tgid;
	c.fd = fd;
	c.direction = direction;
	c.flags = SOCK_FLAG_TLS;
	emit_data(&c, conn);
	return 0;
}

/* a return of (*Conn).Read: the plaintext it read, on its socket's connection */
static __always_inline int go_tls_exit(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct go_tls_key key = { .tgid = id >> 32, .goroutine = GO_GOROUTINE(ctx) };
	struct go_tls_call *active = bpf_map_lookup_elem(&go_tls_calls, &key);
	struct go_tls_call call;

	if (!active)
		return 0;
	call = *active;
	bpf_map_delete_elem(&go_tls_calls, &key);
	return go_tls_emit(key.tgid, call.conn, call.buf, GO_RESULT(ctx), call.start_ns, DIRECTION_INGRESS);
}

/*
 * runtime.g's sched.pc: g starts with stack (lo, hi), stackguard0, stackguard1, _panic, _defer
 * and m, then sched, a gobuf whose first words are sp and pc (the same since Go 1.4)
 */
#define GO_G_SCHED_PC 64
/*
 * Bytes searched for the jump back to a function's entry after morestack returns: the jump follows
 * the loads of the function's register arguments (Write: 4 loads of 5 bytes, then the jump at 20)
 */
#define GO_MORESTACK_TAIL 32

/*
 * Whether this entry of a Go function is the second of one call: when its prologue finds the stack
 * too small (or the scheduler asked it to yield), it calls morestack, which saves the goroutine's
 * context in g.sched (pc: the instruction after that call, in this function), grows the stack or
 * reschedules, and resumes there; the code there reloads the arguments and jumps back to the
 * entry, so the uprobe fires again with the same arguments. Nothing else leaves g.sched.pc in
 * such code: every later park or syscall (Write always makes one) saves a pc of its own.
 */
static __always_inline bool go_entry_again(struct pt_regs *ctx)
{
	__u8 tail[GO_MORESTACK_TAIL];
	__u64 pc = 0;
	__s32 jump;
	int i;

	if (bpf_probe_read_user(&pc, sizeof(pc), (void *)(GO_GOROUTINE(ctx) + GO_G_SCHED_PC)) || pc == 0 ||
	    bpf_probe_read_user(tail, sizeof(tail), (void *)pc))
		return false;
	for (i = 0; i + 5 <= GO_MORESTACK_TAIL; i++) {
		/* JMP rel32 to this entry (a uprobe's handler sees the ip of its breakpoint) */
		if (tail[i] != 0xe9)
			continue;
		__builtin_memcpy(&jump, tail + i + 1, sizeof(jump));
		if (pc + i + 5 + jump == PT_REGS_IP(ctx))
			return true;
	}
	return false;
}

/*
 * func (c *Conn) Write(b []byte) (int, error), at its entry: all of b is there, and Write sends
 * all of it or fails. Taken now rather than at a return, because the goroutine may return after
 * another one closed the socket (a server's last trailers, read by a client that then hung up),
 * when the fd names nothing any more and the bytes would be lost. The entry that morestack runs
 * again is not a second Write.
 */
SEC("uprobe")
int go_tls_write(struct pt_regs *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	if (is_self(tgid) || go_entry_again(ctx))
		return 0;
	return go_tls_emit(tgid, GO_RECEIVER(ctx), GO_BUFFER(ctx), GO_BUFFER_LEN(ctx), bpf_ktime_get_boot_ns(), DIRECTION_EGRESS);
}

/* func (c *Conn) Read(b []byte) (int, error), at its entry */
SEC("uprobe")
int go_tls_read(struct pt_regs *ctx)
{
	return go_tls_enter(ctx);
}

/* at each return instruction of (*Conn).Read */
SEC("uprobe")
int go_tls_read_ret(struct pt_regs *ctx)
{
	return go_tls_exit(ctx);
}

/* whether a file's name starts with "libssl" */
static __always_inline bool is_libssl(struct file *file)
{
	const unsigned char *name = BPF_CORE_READ(file, f_path.dentry, d_name.name);
	char head[6];

	if (bpf_probe_read_kernel(head, sizeof(head), name))
		return false;
	return head[0] == 'l' && head[1] == 'i' && head[2] == 'b' && head[3] == 's' && head[4] == 's' && head[5] == 'l';
}

/* a process maps a libssl's code: the TLS follower attaches its uprobes to that file */
SEC("tracepoint/syscalls/sys_enter_mmap")
int on_mmap(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct library_event *e;
	struct file *file;
	__u32 zero = 0;
	__u8 *tmp;

	if (!(ctx->args[2] & PROT_EXEC) || (int)ctx->args[4] < 0)
		return 0;
	file = fd_file(ctx->args[4]);
	if (!file || !is_libssl(file) || is_self(id >> 32) || !any_protocol_wanted())
		return 0;
	tmp = bpf_map_lookup_elem(&scratch, &zero);
	if (!tmp)
		return 0;
	e = RESERVE_OR_DROP(libraries, sizeof(*e));
	if (!e)
		return 0;
	e->timestamp_ns = bpf_ktime_get_boot_ns();
	e->inode = BPF_CORE_READ(file, f_inode, i_ino);
	e->dev = BPF_CORE_READ(file, f_inode, i_sb, s_dev);
	e->pid = id >> 32;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	if (!file_path(file, e->path, tmp))
		e->path[0] = 0;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/*
 * Start-up scan, first pass: listening sockets (for the role of the connections found next),
 * and Periscope's own listening ports and connections. Prints "listen <pid> <port>" per
 * listening socket.
 */
SEC("iter/task_file")
int scan_listeners(struct bpf_iter__task_file *ctx)
{
	struct file *file = ctx->file;
	struct task_struct *task = ctx->task;
	struct conn_info conn = {};
	struct self_flow flow = {};
	struct socket *sock;
	struct sock *sk;
	__u32 tgid, port;
	__u8 state, yes = 1;

	if (!file || !task)
		return 0;
	sock = stream_socket(file);
	if (!sock)
		return 0;
	sk = BPF_CORE_READ(sock, sk);
	if (!read_endpoints(&conn, sk) || conn.family == AF_UNIX)
		return 0;
	tgid = task->tgid;
	state = BPF_CORE_READ(sk, __sk_common.skc_state);
	if (state == TCP_LISTEN) {
		struct listen_key key = { .netns = netns_of(sk), .port = conn.local_port };

		add_listener(&key);
		port = conn.local_port;
		if (is_self(tgid))
			bpf_map_update_elem(&self_listen_ports, &port, &yes, BPF_ANY);
		BPF_SEQ_PRINTF(ctx->meta->seq, "listen %u %u\n", tgid, port);
		return 0;
	}
	if (state != TCP_ESTABLISHED || !is_self(tgid))
		return 0;
	as_ipv6(flow.local_addr, conn.local_addr, conn.family);
	as_ipv6(flow.remote_addr, conn.remote_addr, conn.family);
	flow.local_port = conn.local_port;
	flow.remote_port = conn.remote_port;
	bpf_map_update_elem(&self_flows, &flow, &yes, BPF_ANY);
	return 0;
}

/*
 * Start-up scan, second pass: TCP connections that existed before the object opened go into
 * the table, flagged pre-existing. Prints "<pid> <fd> <role> <local port> <remote port>" each.
 */
SEC("iter/task_file")
int scan_sockets(struct bpf_iter__task_file *ctx)
{
	struct file *file = ctx->file;
	struct task_struct *task = ctx->task;
	struct conn_key key = {};
	struct conn_info *conn;
	struct socket *sock;
	struct sock *sk;
	__u16 family;
	__u8 state;

	if (!file || !task)
		return 0;
	key.tgid = task->tgid;
	key.fd = ctx->fd;
	if (is_self(key.tgid))
		return 0;
	sock = stream_socket(file);
	if (!sock)
		return 0;
	sk = BPF_CORE_READ(sock, sk);
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	state = BPF_CORE_READ(sk, __sk_common.skc_state);
	if ((family != AF_INET && family != AF_INET6) || (state != TCP_ESTABLISHED && state != TCP_CLOSE_WAIT))
		return 0;
	conn = bpf_map_lookup_elem(&conns, &key);
	if (conn && conn->file == (__u64)file)
		return 0;
	conn = new_conn(&key, file, sock, ROLE_UNKNOWN, SOCK_FLAG_PREEXISTING);
	if (!conn)
		return 0;
	BPF_SEQ_PRINTF(ctx->meta->seq, "%u %d %s %u %u\n", key.tgid, key.fd, conn->role == ROLE_SERVER ? "server" : "client",
		       conn->local_port, conn->remote_port);
	return 0;
}

/*
 * Per process, when its TLS uprobes were all in place (boot-clock ns), written by whoever runs
 * mark_tls_midstream for it: a connection whose handshake came later had all its plaintext seen,
 * however soon after the attach the iterator runs.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} tls_attached_ns SEC(".maps");

/*
 * After TLS uprobes were attached to a process that was already running (followGoTls): its TLS
 * connections whose plaintext nobody has seen yet are taken as found mid-stream, like the start-up
 * scan's, since the calls made before the uprobes came were missed (an HTTP/2 preface, say). So
 * they are recognised from a whole message and flagged pre-existing. Only those whose handshake
 * came before the process's tls_attached_ns (every one when it has no entry): a connection that is
 * handshaking while the iterator runs is new, and taking it for a middle would unsync its HPACK
 * state. Prints "<pid> <fd>" each.
 */
SEC("iter/task_file")
int mark_tls_midstream(struct bpf_iter__task_file *ctx)
{
	struct file *file = ctx->file;
	struct task_struct *task = ctx->task;
	struct conn_key key = {};
	struct conn_info *conn;
	__u64 *attached_ns;

	if (!file || !task)
		return 0;
	key.tgid = task->tgid;
	key.fd = ctx->fd;
	conn = bpf_map_lookup_elem(&conns, &key);
	if (!conn || conn->file != (__u64)file || !conn->tls || conn->protocol != PROTOCOL_UNKNOWN ||
	    conn->positions[0] || conn->positions[1] || (conn->flags & SOCK_FLAG_PREEXISTING))
		return 0;
	attached_ns = bpf_map_lookup_elem(&tls_attached_ns, &key.tgid);
	if (attached_ns && conn->tls_ns >= *attached_ns)
		return 0;
	conn->flags |= SOCK_FLAG_PREEXISTING;
	BPF_SEQ_PRINTF(ctx->meta->seq, "%u %d\n", key.tgid, key.fd);
	return 0;
}

/* "<pid> <path>\n" for each executable mapping of a file whose name starts with "libssl" */
SEC("iter/task_vma")
int mapped_libraries(struct bpf_iter__task_vma *ctx)
{
	struct vm_area_struct *vma = ctx->vma;
	struct task_struct *task = ctx->task;
	struct file *file;
	const char *path;

	if (!vma || !task || !(vma->vm_flags & VM_EXEC))
		return 0;
	file = vma->vm_file;
	if (!file || !is_libssl(file))
		return 0;
	path = walked_path(file);
	if (!path)
		return 0;
	BPF_SEQ_PRINTF(ctx->meta->seq, "%u %s\n", task->tgid, path);
	return 0;
}

/*
 * "<pid> <path>\n" for each process and the executable it runs, from the global root: Periscope
 * finds the Go binaries already running without reading /proc/<pid>/exe, which other users'
 * processes would need CAP_SYS_PTRACE for. Thread-group leaders only; Periscope itself left out.
 */
SEC("iter/task")
int executables(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct file *exe;
	const char *path;

	if (!task || task->pid != task->tgid || !task->mm || is_self(task->tgid))
		return 0;
	exe = task->mm->exe_file;
	if (!exe)
		return 0;
	path = walked_path(exe);
	if (!path)
		return 0;
	BPF_SEQ_PRINTF(ctx->meta->seq, "%u %s\n", task->tgid, path);
	return 0;
}
