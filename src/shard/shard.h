/*
 * shard.h - one shard: a pinned thread, its io_uring and the loop that drives
 * it, and the state only that thread touches.
 *
 * A shard owns, and alone touches: its io_uring, its listeners (SO_REUSEPORT;
 * --listen for HTTP, and --resp-listen for RESP when given),
 * the connections that listener accepted (conn.h), its store partition, the
 * producer side of the rings it sends on (fwd.h) and its side of the
 * coherence thread (l2.h).  Other threads touch only `parked` and `event_fd`
 * (the doorbell, ring.h explains the protocol), and read `turns`.
 *
 * Life: shard_create() (main thread: memory only) -> shard_main() in the
 * shard's thread (io_uring, buffers, listener, store are created there, so
 * they are NUMA-local and the ring has its single issuer) -> loop -> drain
 * at stop -> shard_destroy() (main thread, after the join).
 */
#ifndef RINGCACHE_SHARD_H
#define RINGCACHE_SHARD_H

#include <liburing.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "ringcache/http_render.h"
#include "ringcache/ring.h"
#include "ringcache/stats.h"
#include "server.h"

struct cache;
struct conn;
struct fwd_state;
struct l2_state;
struct lease_tab;
struct lease_waiter;
struct stats_shard;
struct store;

/* What the kernel's io_uring gave this shard; logged at startup. */
struct shard_features {
	bool single_issuer;
	bool defer_taskrun;
	bool coop_taskrun;
	bool ext_arg;
};

/* An address this shard accepts on (listen.h): its own TCP socket, or the
 * server's Unix socket, which every shard shares. */
struct shard_listener {
	alignas(8) int fd;              /* 8: its address carries an OP in 3 bits */
	uint8_t proto;                  /* enum answer_proto */
	bool own;                       /* this shard's socket (TCP), closed at its stop */
	bool armed;                     /* a multishot accept is armed on fd */
	unsigned next;                  /* shared: the shard its next connection goes to */
};

struct shard {
	/* Read by other threads: the doorbell.  On its own line. */
	alignas(RING_LINE) _Atomic int parked;
	int event_fd;

	/*
	 * Read by the main thread: one more at the end of every iteration of
	 * loop(), the shard's heartbeat.  A shard whose count stops moving is
	 * inside an iteration that does not end (wedged): the systemd watchdog
	 * is then held.  Moving past the value read after a swap of the API
	 * keys means no iteration that could still hold the old key set is
	 * running (the grace period of src/main.c).  The store is seq_cst, not
	 * relaxed: main.c explains the store-buffering pattern it closes.  On
	 * its own line; written by this shard only.
	 */
	alignas(RING_LINE) _Atomic uint64_t turns;

	alignas(RING_LINE) unsigned id;
	int cpu;
	struct server *srv;
	const struct config *cfg;
	pthread_t thread;
	int error;                      /* startup failure, -errno */
	char error_msg[256];

	struct io_uring ring;
	struct shard_features features;
	struct shard_listener listeners[LISTEN_MAX];
	unsigned nlisteners;
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

	/* live connections (timeouts, stop), and those with output to flush */
	struct conn **conns;
	uint32_t nconns;
	struct conn **dirty;
	uint32_t ndirty;

	struct fwd_state *fwd;          /* fwd.c: backlogs, messages alive */
	struct l2_state *l2;            /* l2.c; NULL without --redis */
	struct lease_tab *lease;        /* fill.c: the leases of keys this shard owns */
	struct lease_waiter *lease_next, *lease_last;   /* fill.c: fleet hand-overs due */

	/* Memory held for connections (conn_account(), fwds): over the share of
	 * --conn-memory, every connection stops reading and parsing (one with a
	 * request under way once that request is handled) and drained buffers
	 * are freed, until it is back under 7/8 of it (conn_pause_all()). */
	size_t conn_mem;
	size_t conn_budget;
	size_t conn_mem_peak;           /* the most conn_mem since malloc_trim() last ran */
	uint64_t trimmed_ns;            /* when it last ran */
	bool mem_tight;
	bool mem_pause;                 /* just went over: stop reading every connection */
	bool mem_resume;                /* back under: resume the paused connections */

	uint8_t *key_scratch;           /* a routed key or tag with escapes, decoded */
	char *resp_scratch;             /* an inline RESP command's decoded arguments */
	struct buf kv_scratch;          /* values a RESP operation builds or copies */

	uint64_t now_ns;                /* monotonic ns, read when io_uring_enter
					 * returns and again before a turn's sends
					 * (exchange): not per request on the hit
					 * path, since a clock read costs as much as
					 * a small part of a hit (docs/stats.md,
					 * Latency); an L2 read's completion reads
					 * it (l2read.c) */
	int64_t date_s;                 /* wall-clock second of `date` */
	char date[HTTP_DATE_LINE];      /* "Date: ...\r\n" of responses made here */
	uint32_t now_s;                 /* store clock */
	uint64_t last_work_ns;
	uint64_t last_sweep_ns;
	bool stopping;
};

/* Main thread: a shard's memory; the rest is set up in its thread. */
struct shard *shard_create(struct server *srv, unsigned id, int cpu);
/*
 * Main thread, after every shard's thread ended: frees the shard's
 * connections and the messages it still owns.  A connection's send may
 * hold values of other shards' stores (store_pin), so every shard's
 * clients go before any shard's store (server_destroy).  Accepts NULL.
 */
void shard_drop_clients(struct shard *sh);

/* Then the rest (shard_drop_clients() first if not done).  Accepts NULL. */
void shard_destroy(struct shard *sh);

/* The thread. */
void *shard_main(void *arg);

/* Any thread: wakes `sh` if it is parked (ring.h). */
void shard_wake(struct shard *sh);

/* A connection another shard accepted on a shared socket and passed here
 * (fwd_send_conn): token = fd << 8 | listener << 1 | 1. */
void shard_adopt(struct shard *sh, uintptr_t token);

/* Queues `c` to have its output flushed at the end of this iteration. */
void shard_dirty(struct shard *sh, struct conn *c);

/* user_data of each SQE: a pointer with the operation in its low 3 bits */
enum shard_op {
	OP_SEND_ZC = 0,                 /* on a struct outq_zc (outq.h); NULL: ignored */
	OP_ACCEPT = 1,                  /* on a struct shard_listener */
	OP_RECV,
	OP_SEND,
	OP_EVENT,
	OP_CANCEL,
	OP_POLL,
	OP_L2,          /* the shard's Redis read connection (l2read.h) */
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

/* Keeps sh->date on the wall clock's current second (cheap when it has not
 * changed: one coarse clock read). */
void shard_date_update(struct shard *sh);

/* Returns a provided receive buffer to the kernel. */
void shard_recycle_buffer(struct shard *sh, unsigned bid);

/* Connection memory: `delta` bytes more (or fewer) held. */
static inline void shard_memory_add(struct shard *sh, ssize_t delta)
{
	sh->conn_mem += (size_t)delta;
	if (sh->conn_mem > sh->conn_mem_peak)
		sh->conn_mem_peak = sh->conn_mem;
	if (!sh->mem_tight && sh->conn_mem >= sh->conn_budget) {
		sh->mem_tight = true;
		sh->mem_pause = true;
		stats_inc(&sh->stats->memory_pauses);
	} else if (sh->mem_tight && sh->conn_mem < sh->conn_budget / 8 * 7) {
		sh->mem_tight = false;
		sh->mem_resume = true;
	}
}

/* Whether connections must stop taking input for memory (--conn-memory). */
static inline bool shard_memory_tight(const struct shard *sh)
{
	return sh->mem_tight;
}

#endif
