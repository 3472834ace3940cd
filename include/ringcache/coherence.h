/*
 * coherence.h - the coherence thread: the only thread that talks to Redis
 * (L2).  Shards never touch a socket to Redis; they hand it messages over
 * SPSC rings and get the same messages back with the reply filled in.
 *
 *    shard 0 ──in[0]──▶ ┌───────────────────┐ ──cmd conn──▶ GET/PTTL/SET/DEL/
 *    shard 0 ◀─out[0]── │ coherence thread  │               PUBLISH/registry
 *      ...              │ (poll + eventfd)  │
 *    shard N ──in[N]──▶ │                   │ ◀─sub conn─── SUBSCRIBE
 *    shard N ◀─out[N]── └───────────────────┘               <prefix>invalidate
 *
 *    shard i ══ its own read connection (struct coh_read) ══▶ GET+PTTL
 *
 * The one exception to "only the coherence thread talks to Redis": each
 * shard may keep a read connection of its own for L1 misses (coh_read
 * below), so an L2 hit costs one Redis round trip instead of two thread
 * hand-offs.  The coherence thread keeps everything else, and publishes
 * what those reads must honour: the gate (breaker state and subscription
 * epoch) and each shard's count of unsettled writes.
 *
 * A request (GET, SET, DEL, CLUSTER) is created by a shard, travels to the
 * coherence thread, and comes back on the origin shard's out ring with
 * `status` (and for GET/CLUSTER the value) filled in; the shard destroys it.
 * INVALIDATE and FLUSH are created by the coherence thread and destroyed by
 * the shard that polls them.  A message belongs to exactly one thread at a
 * time; the ring's release/acquire pair makes its contents visible.
 *
 * Parking (the protocol of ring.h): the coherence thread stores its parked
 * flag and then peeks every input ring before sleeping in poll(); a shard's
 * coh_flush() publishes with a seq_cst store and then reads the flag, and
 * writes the eventfd only when the thread is parked.  In the other direction
 * the thread publishes a shard's out ring and then calls wake(arg, shard);
 * the shard's own parking check is coh_pending().
 *
 * Formats in Redis, the breaker, the replay queue and the failure behaviour
 * are described in docs/coherence.md.
 */
#ifndef RINGCACHE_COHERENCE_H
#define RINGCACHE_COHERENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringcache/buf.h"

#define COH_KEY_MAX 1024u          /* same bound as the L1 store's keys */
#define COH_EXT_MAX 2048u          /* longest extension header in an RCV2 frame
				    * (docs/coherence.md); L1's is shorter */
#define COH_TAG_MAX 128u           /* longest tag (L1's rule: src/cache/tags.h) */
#define COH_TAG_PREFIX "tag:"      /* <prefix>tag:<tag> sets; "tag:<tag>" purge messages */
#define COH_CTYPE_MAX 255u         /* longest Content-Type kept with a value: L1's
                                    * limit (REPR_TYPE_MAX), so every type in L2
                                    * can be served from L1 */
#define COH_INSTANCE_ID_MAX 128u   /* printable ASCII, no spaces */
#define COH_LEASE_MAX 64u          /* a fill lease's token (docs/cache-aside.md) */

struct coh;

/*
 * Every numeric field: 0 selects the documented default, so a zeroed struct
 * plus redis_url, nshards and advertise is a valid configuration.
 */
struct coh_config {
	const char *redis_url;     /* redis://[user:password@]HOST[:PORT][/DB] */
	const char *prefix;        /* of every key and channel; NULL: "ringcache:" */
	const char *instance_id;   /* NULL or "": hostname-pid-random */
	const char *advertise;     /* "HOST:PORT" recorded in the registry; NULL: "" */
	const char *version;       /* recorded in the registry; NULL: RINGCACHE_VERSION */
	int cpu;                   /* pin the thread to this CPU; -1: do not pin */
	unsigned nshards;          /* 1..1024 */
	uint32_t ring_size;        /* entries per ring, power of two; default 128 */
	uint32_t timeout_ms;       /* deadline of each Redis operation; default 50 */
	uint32_t connect_timeout_ms; /* connect + AUTH/SELECT/PING or SUBSCRIBE; 500 */
	uint32_t replay_max;       /* distinct keys queued while Redis is away; 10000 */
	uint32_t breaker_failures; /* consecutive failures that open the breaker; 5 */
	uint32_t backoff_min_ms;   /* first reconnect delay; default 50 */
	uint32_t backoff_max_ms;   /* reconnect delay doubles up to this; default 2000 */
	uint32_t heartbeat_ms;     /* registry heartbeat and subscription PING; 1000 */
	uint32_t heartbeat_ttl_ms; /* TTL of the heartbeat key; default 5000 */
	uint32_t spin_us;          /* idle polling before parking; default 50 */
};

enum coh_op {
	/* shard -> coherence, answered on the origin shard's out ring */
	COH_GET = 1,        /* read key from L2 */
	COH_SET,            /* write value+ctype with ttl, then publish an invalidation */
	COH_DEL,            /* delete key, then publish an invalidation */
	COH_CLUSTER,        /* live instances as JSON in value (no key), at most
			     * COH_CLUSTER_MAX bytes */
	COH_PURGE,          /* key: a tag.  Delete the keys of <prefix>tag:<tag> whose
			     * values still carry it, in bounded batches, then
			     * publish "tag:<tag>"; count: keys deleted in Redis */
	/* coherence -> shard, unsolicited */
	COH_INVALIDATE,     /* drop key from L1 (another instance or an application changed it) */
	COH_FLUSH,          /* drop every L1 item stored before older_than */
	/* fill leases across the fleet (docs/cache-aside.md), shard -> coherence */
	COH_LEASE_GET,      /* one EVAL: read key as COH_GET does; if absent, take
			     * <prefix>lease:<key> = lease (NX, PX lease_ttl_ms):
			     * COH_MISS with COH_F_LEASED or COH_F_LEASE_HELD; a
			     * value left with its stale-if-error window alone
			     * takes it too: COH_OK with one of those flags */
	COH_LEASE_RELEASE,  /* one EVAL: drop <prefix>lease:<key> if it is still
			     * `lease`, and then publish an invalidation of key */
	COH_PURGE_TAG,      /* key: a tag: purge the keys carrying it from L1 (another
			     * instance or an application purged it) */
};

/*
 * The longest COH_CLUSTER answer.  The registry is anyone's to write, and a
 * shard reserves this much room on its connection for each /cluster it
 * asks (route.c), so that a client pipelining /cluster holds no more than
 * any other client; entries past it are left out and counted in the
 * answer's "left_out".  About 7000 instances' entries.
 */
#define COH_CLUSTER_MAX ((size_t)1 << 20)

enum coh_status {
	COH_OK = 0,         /* GET: value, ctype, ttl filled; SET/DEL: Redis acknowledged */
	COH_MISS,           /* GET: not in Redis */
	COH_TIMEOUT,        /* no answer within timeout_ms (a write may still be applied) */
	COH_ERROR,          /* Redis answered with an error, or no memory */
	COH_SKIPPED,        /* breaker open: not sent.  SET/DEL are queued for replay */
	COH_BAD_DATA,       /* GET: wrong type or corrupt format in Redis; counted */
};

/*
 * GET reply flag: the value may be older than a write or invalidation of the
 * same key that arrived while the read was in flight, or the invalidation
 * feed was down.  Answer the request with it, but do not store it in L1.
 */
#define COH_F_NOCACHE 0x1u
#define COH_F_EXISTED 0x2u   /* DEL: Redis had the key */
#define COH_F_LEASED 0x4u    /* LEASE_GET: absent (or stale-if-error only), and the lease is the caller's now */
#define COH_F_LEASE_HELD 0x8u /* LEASE_GET: absent (or stale-if-error only), another holds its lease */
#define COH_F_LEASE_LOST 0x10u /* SET with a lease: not the key's lease, nothing written */

/*
 * One message.  key, ctype and value point into memory the message owns;
 * coh_msg_destroy() frees it all.  Fields below "private" belong to the
 * coherence thread while it holds the message.
 */
struct coh_msg {
	uint8_t op;                /* enum coh_op */
	uint8_t status;            /* enum coh_status; set in replies */
	uint16_t flags;            /* COH_F_*; set in replies */
	uint32_t shard;            /* origin of a request, destination of INVALIDATE/FLUSH */
	uint32_t key_len;
	uint32_t ctype_len;        /* 0: none given (the shard applies its default) */
	uint32_t ttl;              /* seconds, 0: none.  SET: the value's TTL;
	                            * GET reply: what is left of it in Redis, rounded up */
	uint32_t older_than;       /* FLUSH: store clock (clock_store_now()) */
	uint64_t hash;             /* hash_bytes(key, key_len, HASH_KEY_SEED) */
	size_t value_len;
	void *cookie;              /* the shard's; never touched by the coherence thread */
	char *key;
	char *ctype;
	char *value;
	/* SET: store only if <prefix>lease:<key> is this (then drop it), in one
	 * EVAL; LEASE_GET/LEASE_RELEASE: the token.  lease_len 0: none */
	char lease[COH_LEASE_MAX + 1];
	uint8_t lease_len;
	uint32_t lease_ttl_ms;     /* LEASE_GET: PX of the lease taken */
	/* SET: the value's extension header (stale windows, tags: opaque here,
	 * src/cache/repr.h), written in an RCV2 frame when ext_len > 0; GET
	 * reply: the one an RCV2 frame carried (0: RCV1 or a plain value).
	 * Lives in the message's memory, like value. */
	char *ext;
	uint32_t ext_len;
	/* SET: the value's tags, inside ext at tags_off: ntags times a length
	 * byte (1..COH_TAG_MAX) and the tag; each key is added to the set
	 * <prefix>tag:<tag> (docs/coherence.md) */
	uint32_t tags_off;
	uint8_t ntags;
	uint64_t count;            /* PURGE reply: keys deleted in Redis */
	uint32_t batches;          /* PURGE: batches sent (bounded: PURGE_BATCHES_MAX) */
	/* private */
	void *value_mem;           /* value allocated apart from the message, or NULL */
	struct coh_msg *next;
	uint64_t seq;               /* writes: order, for the replay queue; a GET on a
	                             * shard's read connection: the gate it was sent under */
};

/*
 * Creates a message with room for a value of value_len bytes, which the
 * caller writes through m->value; key (1..COH_KEY_MAX bytes, 0 for CLUSTER)
 * and ctype (0..COH_CTYPE_MAX bytes, any byte but the controls other than
 * tab and DEL: what L1 accepts as a Content-Type) are copied.  The caller
 * sets ttl and cookie.  Returns NULL on bad lengths or no memory.  Any
 * thread.
 */
struct coh_msg *coh_msg_create(enum coh_op op, unsigned shard, uint64_t hash,
			       const void *key, size_t key_len,
			       const void *ctype, size_t ctype_len, size_t value_len);
void coh_msg_destroy(struct coh_msg *m);

/*
 * For a SET: the first ext_len bytes the caller wrote to m->value are the
 * value's extension header (1..COH_EXT_MAX bytes), the rest the value:
 * m->ext points at them and m->value past them.  -EINVAL (m unchanged) when
 * ext_len is 0, over COH_EXT_MAX or over m->value_len.
 */
int coh_msg_split_ext(struct coh_msg *m, uint32_t ext_len);

/*
 * Creates the module: parses the URL, allocates the 2 * nshards rings and
 * the eventfd, generates or checks the instance id.  Does not connect.
 * wake(arg, shard) is called from the coherence thread after it published
 * messages on shard's out ring; it must be cheap and must not block.
 * Returns 0 or -EINVAL (bad URL, prefix, id, nshards, ring_size), -ENOMEM.
 */
int coh_create(struct coh **out, const struct coh_config *cfg,
	       void (*wake)(void *arg, unsigned shard), void *arg);

/* Starts the thread, which connects in the background.  0 or -errno
 * (-EINVAL if cfg->cpu cannot be used). */
int coh_start(struct coh *c);

/*
 * Stops the thread (removing this instance from the registry if Redis
 * answers within timeout_ms), then frees everything, including messages
 * still queued in either direction.  Call it once the shards no longer call
 * the shard-side functions.  Accepts NULL.
 */
void coh_destroy(struct coh *c);

/* The instance id in use (generated or given).  Any thread. */
const char *coh_instance_id(const struct coh *c);

/*
 * True if the Redis name of cache key key[0..len), <prefix><key>, is one of
 * the registry's: "instances" (the hash of instances) or any key starting
 * with "instance:" (heartbeats), or a tag set's: any key starting with
 * "tag:" (issue 9).  A shard refuses such keys so that a PUT cannot
 * overwrite the fleet's registry or tag sets.  False for c == NULL (no L2).
 * Any thread.
 */
bool coh_key_reserved(const struct coh *c, const void *key, size_t len);

/*
 * Shard side.  Each is called only by shard `shard`'s thread.
 *
 * coh_submit() queues a request (unpublished until coh_flush()); false when
 * the ring is full: the caller keeps the message and retries after a flush.
 * coh_flush() publishes what was submitted and wakes the coherence thread if
 * it is parked.  coh_poll() returns the next reply or unsolicited message,
 * or NULL.  coh_pending() is the seq_cst peek of the shard's parking check.
 */
bool coh_submit(struct coh *c, unsigned shard, struct coh_msg *m);
void coh_flush(struct coh *c, unsigned shard);
struct coh_msg *coh_poll(struct coh *c, unsigned shard);
bool coh_pending(struct coh *c, unsigned shard);

/*
 * A shard's own read connection (read.c).  The protocol half only: the
 * shard's loop owns the socket and moves the bytes on its io_uring; this
 * object says what to send, parses what comes back with the command
 * connection's reader and bounds (COH_REPLY_MAX, COH_REPLY_ELEMENTS_MAX),
 * decodes values exactly as the coherence thread does, keeps the deadlines
 * (timeout_ms per read, connect_timeout_ms per handshake) and the reconnect
 * backoff, and hands back the COH_GET messages it completed, with `status`,
 * the value and COH_F_NOCACHE set as the coherence thread would set them.
 *
 *   DOWN --open--> CONNECTING --connected(0)--> HANDSHAKE --PONG--> READY
 *     ^                 any failure: lost() -> DOWN, retry after backoff      |
 *     +-----------------------------------------------------------------------+
 *
 * What a read must honour, published by the coherence thread:
 *   - the gate: while the breaker is open no read is sent (COH_SKIPPED at
 *     once); a read completes with COH_F_NOCACHE if the gate changed while
 *     it was in flight (the subscription was lost: an invalidation of its
 *     key may have been missed);
 *   - the shard's unsettled writes: writes the coherence thread holds on
 *     the shard's behalf whose fate in Redis is not known yet (answered
 *     TIMEOUT or SKIPPED: late, or queued for replay).  While there are any,
 *     a read on this connection could overtake one of them, so the shard's
 *     reads go through the coherence thread, ordered behind them.
 * The caller keeps its own writes in flight and its invalidations per key
 * (a read of a key with a write of it in flight goes through the coherence
 * thread; a read overtaken by a write or invalidation is not cached).
 *
 * Failures: COH_TIMEOUT for a read past its deadline, COH_ERROR for error
 * replies and reads lost with the connection.  breaker_failures consecutive
 * failures make this connection give up (the caller drops it) and trip the
 * coherence thread's breaker, as failures on its own command connection do.
 *
 * Every call is made by the shard that created the object.
 */
struct coh_read;

enum coh_read_state {
	COH_READ_DOWN = 0,
	COH_READ_CONNECTING,
	COH_READ_HANDSHAKE,
	COH_READ_READY,
};

/* For shard `shard` of c; connects nothing yet.  0 or -ENOMEM. */
int coh_read_create(struct coh_read **out, struct coh *c, unsigned shard);
/* Frees it with every message it still holds.  Touches nothing of the
 * struct coh (which may be gone already).  Accepts NULL. */
void coh_read_destroy(struct coh_read *r);

enum coh_read_state coh_read_state(const struct coh_read *r);

/*
 * DOWN and due to retry: a new non-blocking TCP socket (TCP_NODELAY) in *fd
 * for the caller to connect to *addr (the address the coherence thread's
 * command connection last reached; no name resolution here), with the
 * handshake (AUTH, SELECT, PING) queued.  -EAGAIN: not now (backoff, or no
 * address published yet); -errno: socket() failed (retried later).
 */
int coh_read_open(struct coh_read *r, uint64_t now, int *fd, const void **addr,
		  uint32_t *addr_len);
/* The connect finished: res 0 or -errno.  0, or -errno: drop the
 * connection (call coh_read_lost()). */
int coh_read_connected(struct coh_read *r, int res, uint64_t now);
/*
 * Output: swaps what is queued for sending into *out, which must be empty
 * (len 0), and returns its length (0: nothing, or not connected yet).  The
 * buffer stays the caller's until it is sent; swapping back an empty buffer
 * keeps its memory in use.
 */
size_t coh_read_output(struct coh_read *r, struct buf *out);
/* Input: bytes read from the socket.  Completed reads are queued for
 * coh_read_done().  0, or -errno: drop the connection (protocol error,
 * reply past the bounds, handshake refused, breaker tripped). */
int coh_read_input(struct coh_read *r, const char *p, size_t n, uint64_t now);
/* Deadlines.  0, or -ETIMEDOUT: drop the connection (handshake too slow, or
 * breaker_failures reads in a row timed out). */
int coh_read_timers(struct coh_read *r, uint64_t now);
/* The next deadline coh_read_timers() has to see (mono ns), 0 if none. */
uint64_t coh_read_next_wake(const struct coh_read *r);
/* When the oldest read still awaited (deadline not passed) was sent (mono
 * ns), 0 if none. */
uint64_t coh_read_waiting_since(const struct coh_read *r);
/* The connection is gone (the caller closed it): reads in flight complete
 * COH_ERROR, the state is DOWN with a retry time. */
void coh_read_lost(struct coh_read *r, uint64_t now);

/*
 * Sends m, a COH_GET created by this shard (m->cookie is the caller's), on
 * the connection.  0: sent; it comes back from coh_read_done().  -EAGAIN:
 * not now (connection not ready, or writes of this shard unsettled): give
 * it to the coherence thread (coh_submit).  -ECANCELED: the breaker is
 * open; m->status is COH_SKIPPED and m is still the caller's, to answer at
 * once.  -ENOMEM.
 */
int coh_read_get(struct coh_read *r, struct coh_msg *m, uint64_t now);
/* The next completed read (status set), or NULL.  The caller destroys it. */
struct coh_msg *coh_read_done(struct coh_read *r);

/*
 * Counters and gauges, one table so /stats and /metrics names cannot drift:
 * X(field, kind, help), kind COUNTER or GAUGE.
 */
#define COH_STATS(X)                                                                 \
	X(gets, COUNTER, "GET requests from shards")                                 \
	X(get_hits, COUNTER, "GET replies with a value")                             \
	X(get_misses, COUNTER, "GET replies: not in Redis")                          \
	X(coalesced, COUNTER, "GETs that joined a read already in flight")          \
	X(redis_gets, COUNTER, "GET commands sent to Redis")                         \
	X(sets, COUNTER, "SET requests from shards")                                 \
	X(dels, COUNTER, "DEL requests from shards")                                 \
	X(timeouts, COUNTER, "operations past their deadline")                      \
	X(errors, COUNTER, "error replies and lost operations")                     \
	X(skipped, COUNTER, "requests answered SKIPPED (breaker open)")             \
	X(bad_data, COUNTER, "values of the wrong type or format in Redis")         \
	X(raw_values, COUNTER, "plain values written by other applications read")   \
	X(invalidations_sent, COUNTER, "invalidations published")                   \
	X(invalidations_received, COUNTER, "invalidations delivered to shards")     \
	X(invalidations_own, COUNTER, "own invalidations ignored")                  \
	X(invalidations_bad, COUNTER, "malformed invalidation messages ignored")    \
	X(purges, COUNTER, "tag purges asked by shards (DELETE /tags/)")           \
	X(purged_keys, COUNTER, "keys deleted from Redis by tag purges")           \
	X(purges_received, COUNTER, "tag purge messages delivered to shards")     \
	X(flushes, COUNTER, "subscription losses answered with FLUSH")              \
	X(sub_overflows, COUNTER, "subscriptions dropped: invalidations came faster than shards took them") \
	X(connects, COUNTER, "successful connections (command and subscription)")   \
	X(connect_failures, COUNTER, "failed connection attempts")                  \
	X(breaker_opens, COUNTER, "times the circuit breaker opened")               \
	X(replay_queued, COUNTER, "writes queued for replay")                       \
	X(replayed, COUNTER, "queued writes sent after a reconnect")                \
	X(replay_overflow, COUNTER, "writes not queued: replay queue full")         \
	X(instances_reaped, COUNTER, "registry entries of dead instances removed")  \
	X(shard_reads, COUNTER, "GETs sent on the shards' own read connections")   \
	X(shard_trips, COUNTER, "breaker trips by timeouts on shards' connections") \
	X(backlog, GAUGE, "messages waiting for room in a shard's ring")            \
	X(replay_pending, GAUGE, "writes waiting in the replay queue")              \
	X(breaker_open, GAUGE, "1 while GETs and writes are not sent to Redis")     \
	X(subscribed, GAUGE, "1 while the invalidation feed is up")                 \
	X(shard_conns, GAUGE, "shards whose own read connection is ready")

struct coh_stats {
#define COH_STATS_FIELD(name, kind, help) uint64_t name;
	COH_STATS(COH_STATS_FIELD)
#undef COH_STATS_FIELD
};

/* A snapshot of the counters (relaxed loads, so not one instant): the
 * coherence thread's plus those of the shards' read connections.  Any
 * thread. */
void coh_stats(const struct coh *c, struct coh_stats *out);

#endif
