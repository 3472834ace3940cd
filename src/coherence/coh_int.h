/*
 * coh_int.h - what the files of the coherence module share: the state of the
 * coherence thread (struct coh), the Redis connection (conn.c), the key table
 * used for coalescing and the replay queue (keytab.c), the formats of values
 * and invalidations in Redis (format.c), the registry (registry.c) and the
 * request/reply logic (ops.c).  Everything here except the shard-side ring
 * state is owned by the coherence thread alone.
 */
#ifndef RINGCACHE_COH_INT_H
#define RINGCACHE_COH_INT_H

#include <netdb.h>
#include <stddef.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>

#include <hiredis/hiredis.h>

#include "ringcache/buf.h"
#include "ringcache/coherence.h"
#include "ringcache/ring.h"

#define COH_MS 1000000ull

#define coh_container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* --- redis:// URLs (conn.c) --- */

struct coh_url {
	char host[256];
	char port[8];
	char user[256];
	char password[256];
	bool auth;                 /* user and/or password given */
	unsigned db;
};

/* Parses redis://[[user]:password@]HOST[:PORT][/DB]; 0 or -EINVAL. */
int coh_url_parse(const char *s, struct coh_url *u);

/* --- one Redis connection (conn.c) --- */

enum coh_conn_state {
	COH_CONN_DOWN = 0,      /* no socket; retry_at says when to try again */
	COH_CONN_CONNECTING,    /* non-blocking connect() in progress */
	COH_CONN_HANDSHAKE,     /* connected, AUTH/SELECT/PING or SUBSCRIBE sent */
	COH_CONN_READY,
};

/* Why a reply is awaited; each sent command has one entry, in order. */
enum coh_pend_kind {
	COH_P_HANDSHAKE = 1,    /* AUTH, SELECT: must not be an error */
	COH_P_READY,            /* the last handshake reply: PING or SUBSCRIBE */
	COH_P_GET,              /* p: struct coh_get */
	COH_P_PTTL,             /* p: struct coh_get; completes it */
	COH_P_WRITE,            /* SET or DEL; p: struct coh_msg (see COH_PF_SHARD) */
	COH_P_IGNORE,           /* PUBLISH, HSET: reply only checked for errors */
	COH_P_HEARTBEAT,        /* SET of the heartbeat key: counts for the breaker */
	COH_P_REAP_KEYS,        /* HKEYS of the registry */
	COH_P_REAP_EXISTS,      /* p: malloc'd instance id */
	COH_P_REAP_DEL,         /* HDEL of a dead instance */
	COH_P_CLUSTER,          /* HGETALL of the registry; p: struct coh_msg */
	COH_P_PING,             /* subscription health PING */
	COH_P_BYE,              /* HDEL/DEL of our own entry at shutdown */
};

#define COH_PF_SHARD 0x1u      /* p is a shard's message still waiting for its reply */
#define COH_PF_EXPIRED 0x2u    /* deadline passed and handled; reply arrives late */

struct coh_pend {
	uint8_t kind;
	uint8_t flags;
	uint64_t deadline;      /* mono ns; 0: none */
	void *p;
};

struct coh_conn {
	int fd;
	enum coh_conn_state state;
	const char *name;       /* "command" or "subscription", for nothing but gdb */
	struct buf out;
	size_t out_off;         /* bytes of out already written */
	redisReader *reader;
	struct coh_pend *q;     /* circular: q[(head + i) & (cap - 1)] */
	uint32_t q_head, q_len, q_cap;
	uint32_t q_checked;     /* entries [0, q_checked) were checked for expiry */
	uint64_t deadline;      /* handshake deadline while not READY */
	uint64_t retry_at;      /* DOWN: next attempt */
	uint32_t backoff_ms;    /* delay before the next attempt after a failure */
};

void coh_conn_init(struct coh_conn *cn, const char *name);
/* Closes the socket and forgets buffered input/output; the caller must have
 * emptied the queue of pending replies. */
void coh_conn_close(struct coh_conn *cn);
void coh_conn_deinit(struct coh_conn *cn);
/* Starts a non-blocking connect to u; state becomes CONNECTING or HANDSHAKE.
 * Commands may be appended at once: they are sent when connected. */
int coh_conn_open(struct coh_conn *cn, const struct coh_url *u);
/* Completes a connect after POLLOUT; 0 or -errno. */
int coh_conn_connected(struct coh_conn *cn);
/* Writes buffered commands; 0 (maybe partially written) or -errno. */
int coh_conn_write(struct coh_conn *cn);
/* Reads what the socket has into the reply parser; 0, or -errno (-ECONNRESET on EOF). */
int coh_conn_read(struct coh_conn *cn);
/* Next complete reply: 1 (*out set), 0 none yet, -EPROTO. */
int coh_conn_reply(struct coh_conn *cn, redisReply **out);
bool coh_conn_wants_write(const struct coh_conn *cn);

/* RESP encoding into cn->out: one array header, then its bulk strings. */
int coh_conn_array(struct coh_conn *cn, unsigned n);
int coh_conn_bulk(struct coh_conn *cn, const void *p, size_t n);
int coh_conn_bulk2(struct coh_conn *cn, const void *a, size_t an, const void *b, size_t bn);
int coh_conn_bulk3(struct coh_conn *cn, const void *a, size_t an, const void *b, size_t bn,
		   const void *c, size_t cn_);
int coh_conn_bulk_u64(struct coh_conn *cn, uint64_t v);

/* The queue of replies awaited, in the order the commands were appended.
 * coh_conn_reserve() makes the next n pushes infallible. */
int coh_conn_reserve(struct coh_conn *cn, uint32_t n);
int coh_conn_push(struct coh_conn *cn, uint8_t kind, uint8_t flags, uint64_t deadline, void *p);
struct coh_pend *coh_conn_front(struct coh_conn *cn);
struct coh_pend *coh_conn_at(struct coh_conn *cn, uint32_t i);
void coh_conn_pop(struct coh_conn *cn);

/* --- key table (keytab.c) --- */

struct coh_kt_node {
	struct coh_kt_node *next;
	uint64_t hash;
	const char *key;
	uint32_t key_len;
};

struct coh_kt {
	struct coh_kt_node **b;
	uint32_t mask;
	uint32_t count;
};

int coh_kt_init(struct coh_kt *t, uint32_t buckets);
void coh_kt_deinit(struct coh_kt *t);
struct coh_kt_node *coh_kt_find(const struct coh_kt *t, uint64_t hash, const void *key, uint32_t len);
/* The key must not be in the table; never fails (chains grow when it cannot resize). */
void coh_kt_insert(struct coh_kt *t, struct coh_kt_node *n);
void coh_kt_remove(struct coh_kt *t, struct coh_kt_node *n);

/* --- formats in Redis (format.c) --- */

#define COH_VALUE_MAGIC "\0RCV1"
#define COH_INVAL_MAGIC "\0RCI1"
#define COH_MAGIC_LEN 5u

/* Header of a stored value: magic, ctype, '\n'.  Returns its length (buf
 * holds COH_MAGIC_LEN + COH_CTYPE_MAX + 1 bytes). */
size_t coh_value_header(char *buf, const char *ctype, size_t ctype_len);

/*
 * Decodes a value read from Redis.  0: framed (ctype at *ctype_off,
 * *ctype_len bytes; value from *value_off); 1: a plain value written by
 * someone else (whole string, no ctype); -EINVAL: starts with the magic but
 * is corrupt.
 */
int coh_value_decode(const char *s, size_t n, size_t *ctype_off, size_t *ctype_len,
		     size_t *value_off);

/* True if ctype may be stored (printable ASCII or tab, at most COH_CTYPE_MAX). */
bool coh_ctype_valid(const char *ctype, size_t n);

/*
 * Decodes an invalidation payload.  1: our framed message from instance
 * (*id, *id_len); 0: a bare key; -EINVAL: malformed.  Either way the key
 * is returned in *key, *key_len (1..COH_KEY_MAX).
 */
int coh_inval_decode(const char *s, size_t n, const char **id, size_t *id_len,
		     const char **key, size_t *key_len);

/* Appends a JSON string literal (quotes included) to b. */
int coh_json_str(struct buf *b, const char *s, size_t n);
/* True if s[0..n) is one well-formed JSON object (nesting at most 16 deep). */
bool coh_json_object_valid(const char *s, size_t n);

/* --- the module state --- */

/* One per shard.  The lines keep the shard's fields away from the thread's. */
struct coh_shard {
	struct ring *in;                    /* shard -> coherence */
	struct ring *out;                   /* coherence -> shard */
	alignas(RING_LINE) uint32_t polled; /* shard's: pops since the last release */
	alignas(RING_LINE) struct coh_msg *backlog, *backlog_tail; /* thread's */
	uint32_t backlog_len;
	bool dirty;                         /* pushed since the last ring_flush */
};

/* A GET in flight, shared by every waiter for the same key. */
struct coh_get {
	struct coh_kt_node node;            /* key points into the first waiter */
	struct coh_msg *waiters, **tail;
	redisReply *value;                  /* GET's reply, until PTTL's arrives */
	uint64_t epoch;                     /* c->sub_epoch when sent */
	bool in_table;                      /* later GETs may still join */
	bool nocache;
	bool answered;                      /* waiters got a TIMEOUT or ERROR */
};

/* A write kept for replay; at most one per key (the latest). */
struct coh_replay {
	struct coh_kt_node node;            /* key points into m */
	struct coh_msg *m;                  /* internal copy, op SET or DEL */
	struct coh_replay *next;
};

struct coh_counters {
#define COH_COUNTER_FIELD(name, kind, help) _Atomic uint64_t name;
	COH_STATS(COH_COUNTER_FIELD)
#undef COH_COUNTER_FIELD
};

/* Single writer (the coherence thread): a load and a store, no RMW. */
#define COH_ADD(c, field, n)                                                          \
	atomic_store_explicit(&(c)->st.field,                                        \
			      atomic_load_explicit(&(c)->st.field, memory_order_relaxed) + (n), \
			      memory_order_relaxed)
#define COH_SET(c, field, v) atomic_store_explicit(&(c)->st.field, (v), memory_order_relaxed)

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
	alignas(RING_LINE) _Atomic int parked;
	_Atomic bool stop;
	struct coh_counters st;

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
	struct coh_kt gets;                 /* struct coh_get by key */
	struct coh_kt replay_tab;           /* struct coh_replay by key */
	struct coh_replay *replay, **replay_tail;
	uint32_t replay_len;
	uint64_t backlog_total;
};

/* coh.c */
void coh_send(struct coh *c, struct coh_msg *m);    /* to m->shard's out ring (or backlog) */
void coh_fail(struct coh *c);                       /* one failure for the breaker */
void coh_succeed(struct coh *c);
void coh_cmd_lost(struct coh *c);
void coh_sub_lost(struct coh *c);
struct coh_msg *coh_msg_copy(const struct coh_msg *m);

/* ops.c */
void coh_request(struct coh *c, struct coh_msg *m);
void coh_cmd_reply(struct coh *c, struct coh_pend *p, redisReply *r);
void coh_pend_expire(struct coh *c, struct coh_pend *p);
void coh_pend_abandon(struct coh *c, struct coh_pend *p);
void coh_sub_message(struct coh *c, redisReply *r);
void coh_replay_start(struct coh *c);
void coh_replay_drop_all(struct coh *c);
int coh_key_bulk(struct coh *c, struct coh_conn *cn, const char *key, size_t len);

/* registry.c */
int coh_registry_init(struct coh *c, const char *instance_id, const char *advertise,
		      const char *version);
void coh_registry_beat(struct coh *c);
void coh_registry_reply(struct coh *c, struct coh_pend *p, redisReply *r);
void coh_registry_bye(struct coh *c);
void coh_cluster_send(struct coh *c, struct coh_msg *m);
void coh_cluster_reply(struct coh *c, struct coh_msg *m, redisReply *r);

#endif
