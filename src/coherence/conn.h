/*
 * conn.h - one Redis connection of the coherence thread (conn.c): a
 * non-blocking socket, the RESP commands waiting to be written, hiredis'
 * reply parser, and the FIFO of replies awaited.  Owned by the coherence
 * thread alone.
 */
#ifndef RINGCACHE_COH_CONN_H
#define RINGCACHE_COH_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <hiredis/hiredis.h>

#include "ringcache/buf.h"

struct coh_url;

/*
 * Bounds on one reply from Redis.  Every byte from Redis is hostile: without
 * them a bulk length of 2^62 would make the reader buffer whatever follows,
 * and an array reply costs ~70 bytes of memory per 4-byte element on the
 * wire.  The byte bound is Redis' own default proto-max-bulk-len (the
 * largest string it stores unless reconfigured); the element bound counts
 * the elements of every array in one reply (the only arrays we ask for are
 * the registry's).  A reply past either is a protocol error: the connection
 * is dropped as on any error.
 */
#define COH_REPLY_MAX ((size_t)512 << 20)
#define COH_REPLY_ELEMENTS_MAX (1u << 20)

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
	COH_P_REAP_EXISTS,      /* p: malloc'd instance id (registry.c), free() it */
	COH_P_REAP_DEL,         /* HDEL of a dead instance */
	COH_P_CLUSTER,          /* HGETALL of the registry; p: struct coh_msg */
	COH_P_PING,             /* subscription health PING */
	COH_P_BYE,              /* HDEL/DEL of our own entry at shutdown */
	COH_P_LEASE,            /* EVAL of a LEASE_GET or LEASE_RELEASE; p: struct coh_msg */
	COH_P_PURGE,            /* a batch of a tag purge (EVAL); p: struct coh_msg */
};

#define COH_PF_SHARD 0x1u      /* p is a shard's message still waiting for its reply */
#define COH_PF_EXPIRED 0x2u    /* deadline passed and handled; reply arrives late */
#define COH_PF_REPLAY 0x4u     /* a replayed write, counted in replay_inflight */

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
	redisReplyObjectFunctions fns;      /* hiredis' own, createArray counting */
	const redisReplyObjectFunctions *base;
	size_t reply_bytes;     /* bytes read of the reply being parsed */
	size_t reply_elements;  /* array elements in it so far */
	size_t reply_max;       /* COH_REPLY_MAX; tests lower them */
	size_t elements_max;    /* COH_REPLY_ELEMENTS_MAX */
	struct coh_pend *q;     /* circular: q[(head + i) & (cap - 1)] */
	uint32_t q_head, q_len, q_cap;
	uint32_t q_checked;     /* entries [0, q_checked) were checked for expiry */
	uint64_t deadline;      /* handshake deadline while not READY */
	uint64_t retry_at;      /* DOWN: next attempt */
	uint32_t backoff_ms;    /* delay before the next attempt after a failure */
	struct sockaddr_storage addr;       /* what the last coh_conn_open() connected to */
	uint32_t addr_len;
};

void coh_conn_init(struct coh_conn *cn, const char *name);
/* Closes the socket and forgets buffered input/output; the caller must have
 * emptied the queue of pending replies. */
void coh_conn_close(struct coh_conn *cn);
void coh_conn_deinit(struct coh_conn *cn);
/* Starts a non-blocking connect to u; state becomes CONNECTING or HANDSHAKE.
 * Commands may be appended at once: they are sent when connected. */
int coh_conn_open(struct coh_conn *cn, const struct coh_url *u);
/*
 * Queues the handshake and its awaited replies: AUTH when u has a user or
 * password, SELECT when select_db and u names a database, then SUBSCRIBE
 * channel (channel not NULL) or PING.  The last reply is COH_P_READY, the
 * others COH_P_HANDSHAKE.  0 or -ENOMEM.
 */
int coh_conn_hello(struct coh_conn *cn, const struct coh_url *u, bool select_db,
		   const char *channel);
/* Whether r is a string or status reply equal to s, ignoring case. */
bool coh_reply_is(const redisReply *r, const char *s);
/* Whether r is a good answer to the handshake entry `kind`: no error for
 * AUTH/SELECT, then PONG, or the SUBSCRIBE confirmation when sub. */
bool coh_conn_hello_ok(uint8_t kind, const redisReply *r, bool sub);
/*
 * Sets cn->retry_at after a failure: cn->backoff_ms, jittered to 75-125% so
 * a fleet does not reconnect in step, from `now`.  A connection that was
 * ready retries first after min_ms; otherwise the delay doubles up to
 * max_ms.  *rng is the caller's xorshift state (not 0).
 */
void coh_conn_backoff(struct coh_conn *cn, uint64_t now, bool was_ready, uint64_t *rng,
		      uint32_t min_ms, uint32_t max_ms);
/* Completes a connect after POLLOUT; 0 or -errno. */
int coh_conn_connected(struct coh_conn *cn);
/* Writes buffered commands; 0 (maybe partially written) or -errno. */
int coh_conn_write(struct coh_conn *cn);
/* Reads what the socket has into the reply parser; 0, or -errno (-ECONNRESET on EOF). */
int coh_conn_read(struct coh_conn *cn);
/* Hands bytes read from Redis to the reply parser (created if the
 * connection has none yet: the fuzz target feeds it without a socket).
 * 0 or -ENOMEM. */
int coh_conn_feed(struct coh_conn *cn, const char *p, size_t n);
/* Next complete reply: 1 (*out set), 0 none yet, -EPROTO (malformed, or
 * past COH_REPLY_MAX / COH_REPLY_ELEMENTS_MAX). */
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

#endif
