/*
 * shard.h - the server's threads and their shared wiring.
 *
 * A server is N shards.  Each shard is one pinned thread that owns, and alone
 * touches: its io_uring, its listener (SO_REUSEPORT), the connections that
 * listener accepted, its store partition, and the producer side of the rings
 * it sends on.  Everything that crosses threads goes through a struct ring:
 *
 *         rings[from * n + to]: shard `from` produces, shard `to` consumes
 *
 *   shard 0 --ring[0*n+1]--> shard 1      requests for keys shard 1 owns,
 *   shard 0 <--ring[1*n+0]-- shard 1      and the replies to shard 1's ones
 *
 * A message is a struct fwd (forward.c): the origin shard allocates it, the
 * owner executes it against its store and sends the same message back with
 * the response attached, and the origin frees it.
 */
#ifndef RINGCACHE_SHARD_H
#define RINGCACHE_SHARD_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "ringcache/auth.h"
#include "ringcache/buf.h"
#include "ringcache/cache.h"
#include "ringcache/coherence.h"
#include "ringcache/config.h"
#include "ringcache/http.h"
#include "ringcache/ring.h"
#include "ringcache/stats.h"
#include "ringcache/store.h"

struct shard;
struct conn;
struct fwd;
struct l2_get;

struct server {
	const struct config *cfg;
	unsigned nshards;
	struct shard **shards;
	struct ring **rings;            /* nshards * nshards, [from * n + to] */
	struct stats_shard **stats;     /* one per shard, for /stats and /metrics */
	struct auth *auth;              /* NULL: no API keys configured */
	struct coh *coh;                /* NULL: L1 only (no --redis) */
	char advertise[80];             /* HOST:PORT recorded in the registry */
	int listen_claim;               /* holds --listen's port for this process (listen.h) */
	_Atomic bool stop;
	_Atomic unsigned closing;       /* shards still ending connections (teardown) */
	pthread_barrier_t ready;
	struct http_limits limits;
};

/* What the kernel's io_uring gave this shard; logged at startup. */
struct shard_features {
	bool single_issuer;
	bool defer_taskrun;
	bool coop_taskrun;
	bool ext_arg;
};

/* A FIFO of messages waiting for room in a ring to one peer. */
struct fwd_queue {
	struct fwd *head, *tail;
};

struct shard {
	/* Read by other threads: the doorbell.  On its own line. */
	alignas(RING_LINE) _Atomic int parked;
	int event_fd;

	alignas(RING_LINE) unsigned id;
	int cpu;
	struct server *srv;
	pthread_t thread;
	int error;                      /* startup failure, -errno */
	char error_msg[256];

	struct io_uring ring;
	struct shard_features features;
	int listen_fd;
	bool accept_armed;              /* a multishot accept is armed */
	bool event_armed;               /* a read of event_fd (the doorbell) is armed */
	uint64_t event_buf;

	/* provided receive buffers (buffer group 0) */
	struct io_uring_buf_ring *br;
	char *bufs;
	uint32_t nbufs;
	uint32_t buf_size;

	struct store *store;
	struct cache *cache;
	struct stats_shard *stats;

	/* live connections, for timeouts and shutdown */
	struct conn **conns;
	uint32_t nconns;
	/* connections with new output to send this iteration */
	struct conn **dirty;
	uint32_t ndirty;

	struct fwd_queue *backlog;      /* per peer: messages the ring had no room for */
	bool *touched;                  /* per peer: pushed since the last flush */

	uint8_t *key_scratch;           /* decoded key of the request being handled */

	/* messages for the coherence thread its ring had no room for (l2.c) */
	struct coh_msg **l2_queue;
	uint32_t l2_head, l2_len, l2_cap;
	bool l2_touched;
	struct l2_get **l2_gets;        /* Redis reads in flight, by key */

	uint64_t now_ns;                /* taken once per loop iteration */
	uint32_t now_s;                 /* store clock */
	uint64_t last_work_ns;
	uint64_t last_sweep_ns;
	bool stopping;
};

/* server.c: creating, starting and stopping the shards. */
int server_create(struct server **out, const struct config *cfg, char *err, size_t errlen);
int server_run(struct server *srv, char *err, size_t errlen);
void server_stop(struct server *srv);
void server_destroy(struct server *srv);

/* shard.c: the thread and its loop. */
void *shard_main(void *arg);
void shard_wake(struct shard *sh);

/* conn.c: connections. */
void shard_mark_dirty(struct shard *sh, struct conn *c);
void conn_accept(struct shard *sh, int fd);
void conn_on_recv(struct shard *sh, struct conn *c, struct io_uring_cqe *cqe);
void conn_on_send(struct shard *sh, struct conn *c, int res);
void conn_flush(struct shard *sh, struct conn *c);
void conn_sweep(struct shard *sh);
void conn_close_all(struct shard *sh);
void conn_on_reply(struct shard *sh, struct fwd *f);
void conn_on_cancel(struct shard *sh, struct conn *c);
bool conn_exec_forwarded(struct shard *sh, struct fwd *f);

/* l2.c: the Redis L2, through the coherence thread. */
int l2_setup(struct shard *sh);
void l2_teardown(struct shard *sh);
bool l2_key_reserved(const struct shard *sh, const uint8_t *key, size_t len);
bool l2_begin(struct shard *sh, struct fwd *f, enum cache_outcome oc);
bool l2_cluster(struct shard *sh, struct fwd *f);
bool l2_drain(struct shard *sh);
void l2_flush(struct shard *sh);
bool l2_pending(struct shard *sh);

/* forward.c: requests for keys another shard owns. */
struct fwd *fwd_create(struct conn *c, unsigned origin, const struct cache_req *r);
enum cache_outcome fwd_exec(struct shard *sh, struct fwd *f);
void fwd_destroy(struct fwd *f);
void fwd_send(struct shard *sh, unsigned to, struct fwd *f);
bool fwd_flush(struct shard *sh);
bool fwd_drain(struct shard *sh);
bool fwd_pending(struct shard *sh);
bool fwd_backlogged(const struct shard *sh);

/* user_data of each SQE: a pointer with the operation in its low 3 bits */
enum shard_op {
	OP_ACCEPT = 1,
	OP_RECV,
	OP_SEND,
	OP_EVENT,
	OP_CANCEL,
};

static inline uint64_t shard_udata(void *p, enum shard_op op)
{
	return (uint64_t)(uintptr_t)p | (uint64_t)op;
}

/*
 * The next SQE.  When the SQ is full, what is queued is submitted first
 * (completions stay queued for the loop).  NULL only when the kernel takes
 * nothing (CQ overflow backed up): callers then end what needed the SQE.
 */
static inline struct io_uring_sqe *shard_sqe(struct shard *sh)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&sh->ring);

	for (int i = 0; !sqe && i < 3; i++) {
		io_uring_submit(&sh->ring);
		sqe = io_uring_get_sqe(&sh->ring);
	}
	return sqe;
}

#endif
