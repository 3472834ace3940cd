/*
 * state.h - the state of the coherence module (struct coh) and the parts it
 * is made of.  Everything here belongs to the coherence thread, except:
 *
 *   - the configuration block, fixed by coh_create() before any thread runs;
 *   - struct coh_shard's rings, `polled`, `trips` and its counters, used by
 *     the shard-side calls (msg.c, read.c) on shard threads, and its
 *     `unsettled`, which the thread writes and the shard reads;
 *   - `parked` and `stop`, the parking handshake (ring.h's protocol);
 *   - the gate and the published address, which the thread writes and the
 *     shards' read connections read (read.c);
 *   - the counters, written by the coherence thread alone and read by any
 *     thread through coh_stats().
 *
 * Layout, in RING_LINE (128-byte) lines, so that no two threads write one
 * line (production is ARM64, whose prefetcher pairs 64-byte lines):
 *
 *   | configuration ... (read-only after coh_create)                  |
 *   | parked, stop       (shards read `parked` at every coh_flush)    |
 *   | gate, address      (thread writes rarely; shards read)          |
 *   | counters           (thread writes, coh_stats() reads)  2 lines  |
 *   | now, cmd, sub, ... (the thread's own state)                     |
 */
#ifndef RINGCACHE_COH_STATE_H
#define RINGCACHE_COH_STATE_H

#include <pthread.h>
#include <assert.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "ringcache/buf.h"
#include "ringcache/coherence.h"
#include "ringcache/ring.h"

#include "conn.h"
#include "keytab.h"
#include "url.h"

#define COH_MS 1000000ull

#define coh_container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

struct redisReply;

struct coh_counters {
#define COH_COUNTER_FIELD(name, kind, help) _Atomic uint64_t name;
	COH_STATS(COH_COUNTER_FIELD)
#undef COH_COUNTER_FIELD
};

/* One per shard.  The lines keep the shard's fields away from the thread's. */
struct coh_shard {
	struct ring *in;                    /* shard -> coherence */
	struct ring *out;                   /* coherence -> shard */
	/* the shard's: */
	alignas(RING_LINE) uint32_t polled; /* pops since the last release */
	_Atomic uint64_t trips;             /* its read connection tripped the breaker */
	struct coh_counters st;             /* its read connection's (summed by coh_stats) */
	/* the thread's, read by the shard before each read on its connection */
	alignas(RING_LINE) _Atomic uint32_t unsettled;
	/* the thread's own */
	alignas(RING_LINE) struct coh_msg *backlog, *backlog_tail;
	uint32_t backlog_len;
	bool dirty;                         /* pushed since the last ring_flush */
	uint64_t trips_seen;                /* `trips` when the thread last looked */
};

/* A GET in flight, shared by every waiter for the same key. */
struct coh_get {
	struct coh_kt_node node;            /* key points into the first waiter */
	struct coh_msg *waiters, **tail;
	struct redisReply *value;           /* GET's reply, until PTTL's arrives */
	uint64_t epoch;                     /* c->sub_epoch when sent */
	bool in_table;                      /* later GETs may still join */
	bool nocache;
	bool answered;                      /* waiters got a TIMEOUT or ERROR */
};

/* A shard's own read connection (read.c): its shard's alone. */
struct coh_read {
	struct coh *c;                  /* running: gate, unsettled, trips, address, config */
	struct coh_shard *cs;           /* c->shards[shard]: its counters */
	struct coh_conn cn;             /* fd unused (-1): the shard's loop owns the socket */
	struct sockaddr_storage addr;   /* of the connection being made */
	uint32_t addr_len;
	struct redisReply *held;        /* GET's reply until PTTL's */
	struct coh_msg *done, **done_tail;
	uint32_t failures;              /* consecutive: deadlines, error replies */
	uint64_t rng;
};

/* A write kept for replay; at most one per key (the latest). */
struct coh_replay {
	struct coh_kt_node node;            /* key points into m */
	struct coh_msg *m;                  /* internal copy, op SET or DEL; NULL: superseded */
	struct coh_replay *next;
};

/* Single writer (the coherence thread, or for a coh_shard's counters its
 * shard): a load and a store, no RMW. */
#define COH_ADD(c, field, n)                                                          \
	atomic_store_explicit(&(c)->st.field,                                        \
			      atomic_load_explicit(&(c)->st.field, memory_order_relaxed) + (n), \
			      memory_order_relaxed)
#define COH_SET(c, field, v) atomic_store_explicit(&(c)->st.field, (v), memory_order_relaxed)

/* Allocated with aligned_alloc(RING_LINE, ...), so the lines below are real. */
struct coh {
	/* configuration, fixed after coh_create() */
	struct coh_url url;
	unsigned nshards;
	int cpu;
	uint64_t timeout_ns, connect_timeout_ns, heartbeat_ns, spin_ns;
	uint32_t heartbeat_ttl_ms, backoff_min_ms, backoff_max_ms;
	uint32_t replay_max, breaker_failures;
	char *prefix;
	size_t prefix_len;
	char id[COH_INSTANCE_ID_MAX + 1];
	size_t id_len;
	char *channel;                      /* <prefix>invalidate */
	char *instances_key;                /* <prefix>instances */
	char *heartbeat_key;                /* <prefix>instance:<id> */
	struct buf reg_json;                /* our registry value */
	void (*wake)(void *arg, unsigned shard);
	void *wake_arg;

	struct coh_shard *shards;
	int efd;
	pthread_t thread;
	bool started;

	/* the parking handshake */
	alignas(RING_LINE) _Atomic int parked;
	_Atomic bool stop;

	/*
	 * What the shards' read connections honour (read.c), written by the
	 * thread, read by shards: the gate, (sub_epoch << 1) | breaker open,
	 * stored seq_cst whenever either changes; and the address the command
	 * connection last reached, copied under addr_lock (a shard only
	 * trylocks it, so it never waits).
	 */
	alignas(RING_LINE) _Atomic uint64_t gate;
	pthread_mutex_t addr_lock;
	struct sockaddr_storage addr;
	uint32_t addr_len;                  /* 0: no address yet */

	alignas(RING_LINE) struct coh_counters st;

	/* the coherence thread's own state */
	alignas(RING_LINE) uint64_t now;    /* clock_mono_ns() at the top of the loop */
	struct coh_conn cmd, sub;
	uint32_t failures;                  /* consecutive, for the breaker */
	bool trip;                          /* failures reached the threshold */
	uint64_t write_seq;
	uint64_t rng;
	bool link_up;                       /* breaker closed: cmd READY and subscribed */
	bool ever_up;
	bool sub_lost;                      /* a FLUSH is owed at the next subscription */
	uint32_t lost_at;                   /* store clock when the loss was seen */
	uint64_t sub_epoch;                 /* bumped at every subscription loss */
	uint64_t ping_due;                  /* next subscription PING */
	bool ping_out;                      /* a PING is unanswered */
	uint64_t heartbeat_due;
	size_t reap_next;                   /* registry field the next reap starts at */
	struct coh_kt gets;                 /* struct coh_get by key */
	struct coh_kt replay_tab;           /* struct coh_replay by key */
	struct coh_replay *replay, **replay_tail;
	uint32_t replay_len;
	uint32_t replay_inflight;           /* replayed writes awaiting Redis (ops.c) */
	uint64_t backlog_total;
	uint64_t backlog_unsol;             /* of them, invalidations and purges (coh_unsolicited) */
};

#define COH_GATE_OPEN 1u

static_assert(offsetof(struct coh, st) % RING_LINE == 0 &&
	      offsetof(struct coh, gate) >= offsetof(struct coh, parked) + RING_LINE &&
	      offsetof(struct coh, st) >= offsetof(struct coh, gate) + RING_LINE &&
	      offsetof(struct coh, now) >= offsetof(struct coh, st) + sizeof(struct coh_counters),
	      "the counters have lines of their own");

/* coh.c: hands m to m->shard's out ring (or its backlog); the thread's only
 * way to give a message back to a shard. */
void coh_send(struct coh *c, struct coh_msg *m);

/*
 * Invalidations and tag purges waiting in the shards' backlogs at most.
 * They come from the subscription, as fast as anyone who may PUBLISH on
 * the Redis sends them, and the shards drain them only so fast (a fake
 * Redis pushed 600,000 a second against 220,000 drained: 1.85 million
 * queued, 460 MB, growing with the flood).  Past the bound the
 * subscription is dropped (link.c), which is a subscription loss: the
 * shards are FLUSHed once it is back, so nothing dropped can leave a stale
 * entry, and what waits is bounded by this many messages of at most a
 * 1024-byte key each.
 */
#define COH_BACKLOG_UNSOL_MAX 65536u

/* Whether m is one the subscription brought (counted in backlog_unsol). */
static inline bool coh_unsolicited(const struct coh_msg *m)
{
	return m->op == COH_INVALIDATE || m->op == COH_PURGE_TAG;
}

/* link.c: stores the gate from sub_epoch and link_up (seq_cst). */
void coh_gate_publish(struct coh *c);

#endif
