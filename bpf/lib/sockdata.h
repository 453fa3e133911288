/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef SOCKDATA_H
#define SOCKDATA_H

#define SOCK_COMM_LEN 16
#define SOCK_ADDR_LEN 16
/* the hard cap of a record's payload: the per-CPU scratch buffer's size */
#define SOCK_DATA_MAX 16384
/* the payload cap of a protocol whose config leaves capture_bytes at 0 */
#define SOCK_CAPTURE_DEFAULT 4096
#define SOCK_LIBRARY_PATH_LEN 256
/* cgroups the cgroup filter looks at per process: its own, then its nearest ancestors, this many in all */
#define SOCK_CGROUP_LEVELS 8

/* what the kernel classified a connection as, from its first bytes; also the ring it goes to */
enum sock_protocol {
	PROTOCOL_UNKNOWN = 0,
	PROTOCOL_HTTP = 1,
	PROTOCOL_HTTP2 = 2,
	PROTOCOL_REDIS = 3,
	PROTOCOL_POSTGRES = 4,
	PROTOCOL_MYSQL = 5,
	PROTOCOL_KAFKA = 6,
	/* ciphertext handshake seen: never emitted; plaintext comes from the OpenSSL uprobes */
	PROTOCOL_TLS = 7,
	/* classified as nothing Periscope knows: never emitted */
	PROTOCOL_OTHER = 8,
	PROTOCOL_COUNT = 9,
};

enum sock_event_kind {
	SOCK_DATA = 0,
	/* connect or accept seen */
	SOCK_OPEN = 1,
	SOCK_CLOSE = 2,
	/* bytes holds the errno (ECONNREFUSED, ETIMEDOUT, ...) */
	SOCK_CONNECT_FAILED = 3,
};

enum sock_direction {
	/* this process sent */
	DIRECTION_EGRESS = 0,
	/* this process received */
	DIRECTION_INGRESS = 1,
};

enum sock_role {
	ROLE_UNKNOWN = 0,
	/* this end connected */
	ROLE_CLIENT = 1,
	/* this end accepted */
	ROLE_SERVER = 2,
};

enum sock_flag {
	/* plaintext of a TLS connection, from the OpenSSL uprobes */
	SOCK_FLAG_TLS = 1,
	/* sendfile: bytes were sent, none captured */
	SOCK_FLAG_SENDFILE = 2,
	/* records of this direction were dropped since the previous one */
	SOCK_FLAG_LOSS = 4,
	/*
	 * the connection existed before the object opened (found by the start-up scan), or its TLS
	 * plaintext was missed until uprobes came (mark_tls_midstream): it is seen mid-stream
	 */
	SOCK_FLAG_PREEXISTING = 8,
	/* data was cut at the protocol's capture size; bytes is the full count */
	SOCK_FLAG_TRUNCATED = 16,
};

/*
 * One record of a protocol ring (http, http2, redis, postgres, mysql, kafka) or of `connections`
 * (captured 0). Written with its exact size: the header, then `captured` bytes of data.
 */
struct sock_event {
	/* boot clock at syscall (or SSL call) entry and exit */
	__u64 start_ns;
	__u64 end_ns;
	/* unique per connection for the object's life; a reused fd gets a new one */
	__u64 conn_id;
	/* bytes of this direction before this record (plaintext for TLS) */
	__u64 position;
	/*
	 * The thread context: on a server's HTTP connection, an id of the request being read (the same
	 * for every record of it, a new one after a response); on a client connection, the id of the
	 * request the calling thread was serving (read, its response not yet written), else 0. A
	 * client call and the server request with the same id are parent and child.
	 */
	__u64 context;
	__u32 pid;
	__u32 tid;
	__s32 fd;
	/* the call's byte count (its return value); the errno for SOCK_CONNECT_FAILED */
	__u32 bytes;
	/* bytes in data */
	__u32 captured;
	/* AF_INET, AF_INET6 or AF_UNIX */
	__u16 family;
	/* host byte order */
	__u16 local_port;
	__u16 remote_port;
	__u8 kind;
	__u8 direction;
	__u8 role;
	__u8 protocol;
	__u8 flags;
	__u8 pad[1];
	/* IPv4 in the first 4 bytes; network byte order */
	__u8 local_addr[SOCK_ADDR_LEN];
	__u8 remote_addr[SOCK_ADDR_LEN];
	char comm[SOCK_COMM_LEN];
	__u8 data[];
};

/* a process mapped an executable file whose name starts with "libssl" */
struct library_event {
	__u64 timestamp_ns;
	__u64 inode;
	/* the file's device, as the kernel encodes it (MAJOR << 20 | MINOR) */
	__u32 dev;
	__u32 pid;
	char comm[SOCK_COMM_LEN];
	/* from the global root, crossing mounts (a container's file has its host path) */
	char path[SOCK_LIBRARY_PATH_LEN];
};

/* value of `protocols`, indexed by enum sock_protocol */
enum protocol_wanted {
	/* records of both ends of a connection */
	WANTED_BOTH_ENDS = 1,
	/* only the end that connected (or whose role is unknown): a plugin that makes client spans only */
	WANTED_CLIENT_END = 2,
};

struct protocol_config {
	/* records of this protocol go out only when set: WANTED_BOTH_ENDS or WANTED_CLIENT_END */
	__u32 wanted;
	/* payload cap; 0 means SOCK_CAPTURE_DEFAULT, at most SOCK_DATA_MAX */
	__u32 capture_bytes;
	/* 1: only pids in target_pids for this protocol (or, with cgroup_filter too, in either) */
	__u32 pid_filter;
	/* 1: only processes in a cgroup of target_cgroups for this protocol, or below one */
	__u32 cgroup_filter;
};

struct protocol_pid {
	__u32 protocol;
	__u32 pid;
};

/* a cgroup v2 id: the inode number of the cgroup's directory, as bpf_get_current_cgroup_id gives */
struct protocol_cgroup {
	__u32 protocol;
	__u32 pad;
	__u64 cgroup;
};

/* either end's port */
struct protocol_port {
	__u32 protocol;
	__u32 port;
};

/* a TCP connection of Periscope itself, as its own end sees it */
struct self_flow {
	__u8 local_addr[SOCK_ADDR_LEN];
	__u8 remote_addr[SOCK_ADDR_LEN];
	__u16 local_port;
	__u16 remote_port;
	__u16 family;
	__u16 pad;
};

struct conn_key {
	__u32 tgid;
	__s32 fd;
};

/* what the kernel keeps per connection (the `conns` table) */
struct conn_info {
	__u64 conn_id;
	/* the struct file the fd named when the entry was made: a reused fd number is told apart */
	__u64 file;
	__u64 positions[2];
	__u16 family;
	__u16 local_port;
	__u16 remote_port;
	__u8 role;
	/* enum sock_protocol of what is emitted: the plaintext's for TLS connections */
	__u8 protocol;
	/* undecided classifications so far */
	__u8 attempts;
	/* ciphertext: socket records are never emitted */
	__u8 tls;
	/* Periscope's own traffic, or the other end of it */
	__u8 excluded;
	/* SOCK_FLAG_PREEXISTING when found by the start-up scan */
	__u8 flags;
	__u8 loss[2];
	/* an open record went out: its close goes out too, even if no data was ever classified */
	__u8 opened;
	/* a non-blocking connect failed (reported): the next connect's error is that same failure */
	__u8 failed;
	/* server side: the response to `context` was written, so the next ingress is a new request */
	__u8 answered;
	/*
	 * HTTP/2 found mid-stream: the direction went out from a record that starts a frame (a call
	 * in flight when the object opened took bytes nobody counted, maybe part of a frame)
	 */
	__u8 framed[2];
	__u8 pad[5];
	/* server side: the request being read or answered (see sock_event.context), 0 before any */
	__u64 context;
	/* boot-clock ns when the ciphertext began (the TLS handshake was seen), 0 for plaintext */
	__u64 tls_ns;
	__u8 local_addr[SOCK_ADDR_LEN];
	__u8 remote_addr[SOCK_ADDR_LEN];
};

/* a listening socket's port, per network namespace (for the role of pre-existing connections) */
struct listen_key {
	__u32 netns;
	__u32 port;
};

#endif
