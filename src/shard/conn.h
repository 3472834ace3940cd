/*
 * conn.h - a client connection: bytes in, requests out to the router, answers
 * back through its pipeline, in request order.  Only the shard that accepted
 * a connection touches it.
 *
 *   recv (multishot, provided buffers) -> parse (http.h) -> route.h
 *   route / fwd / l2 -> pipeline (pipeline.h) -> out -> send (one in flight)
 *
 *   sending: the bytes of the one send in flight; the kernel reads them until
 *            its completion, so they are never moved or grown
 */
#ifndef RINGCACHE_CONN_H
#define RINGCACHE_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <liburing.h>

#include "pipeline.h"
#include "ringcache/buf.h"
#include "ringcache/http.h"

struct cmd_session;
struct fill_note;
struct shard;

enum conn_flags {
	C_RECV = 1 << 0,         /* a multishot recv is armed */
	C_SEND = 1 << 1,         /* a send is in flight */
	C_DIRTY = 1 << 2,        /* in sh->dirty */
	C_LINGER = 1 << 3,       /* FIN sent; discarding input until EOF */
	C_CLOSED = 1 << 4,       /* shut down; freed when the kernel is done with it */
	C_PAUSED = 1 << 5,       /* too much queued output: input waits */
	C_RECV_OFF = 1 << 6,     /* recv cancelled for back-pressure */
	C_CANCELING = 1 << 7,    /* a cancel is in flight (of the recv; at an abort, of all) */
	C_EOF = 1 << 8,          /* the client sent FIN (or the recv failed): no more input */
	C_POLL = 1 << 9,         /* a poll for a reset is armed (multishot) */
	C_TCP = 1 << 10,         /* a TCP socket: it may send zero-copy (outq.h) */
	C_CANCEL_ALL = 1 << 11,  /* the cancel in flight is an abort's, of all (else the recv's) */
};

/*
 * Per connection, the answers not yet sent (in flight, in `out`, in DONE
 * slots, and the room reserved for outstanding ones) and the copies of its
 * requests that travel (a fwd's, kept until its answer leaves the pipeline,
 * and each part of a RESP command of many keys until it is home: pipeline.h
 * `held`, keys.h) stop the parsing of more requests, and the sending of more
 * parts, at CONN_OUT_MAX; an outstanding answer gets CONN_ROOM of room (a
 * /cluster COH_CLUSTER_MAX + CONN_ANSWER_HEAD: F below is at least that), and
 * one that needs more comes back and is made again when it is the next to go
 * and what is ahead of it leaves room for it, or nothing is (fwd.h, "bounce";
 * parsing waits meanwhile).  So a connection holds at most CONN_OUT_MAX of
 * these, plus the last request parsed or part sent (its answer, at most A =
 * --max-value + CONN_ANSWER_HEAD, or its copy and room: at most F =
 * --max-head + --max-value + CONN_ROOM + CONN_ANSWER_HEAD, the struct fwd
 * included, or with --redis a /cluster's room, COH_CLUSTER_MAX +
 * CONN_ANSWER_HEAD, if larger; a part's key and value are within its command's --max-head +
 * --max-value), plus one answer made again (A): with the request in progress
 * (at most --max-head + --max-value, plus one receive buffer the kernel had
 * delivered) a connection holds at most
 *
 *   B = --max-head + --max-value + --recv-buffer-size + CONN_OUT_MAX + F + A
 *
 * whatever its client does (README "Memory per connection").
 */
#define CONN_OUT_MAX (8u << 20)
#define CONN_IOV 16             /* iovecs per sendmsg; more wait for the next */
#define CONN_ROOM (64u << 10)
#define CONN_ANSWER_HEAD 1024u

enum req_state { RS_IDLE = 0, RS_HEAD, RS_BODY };

struct conn {
	struct shard *sh;
	int fd;
	uint32_t idx;                   /* position in sh->conns */
	uint32_t flags;
	uint8_t proto;                  /* enum answer_proto: the listener's */
	uint8_t state;                  /* enum req_state */
	bool continue_sent;
	bool chunked;                   /* the request in progress has a chunked body */
	size_t scanned;                 /* parser state of the current head */
	size_t head_len;                /* chunked: its head's length */
	size_t chunk_used;              /* chunked: encoded bytes consumed after the head */
	size_t chunk_dropped;           /* chunked: encoded bytes decoded and dropped from `in` */
	struct http_chunked chunk;
	struct buf in;                  /* input: from in_off on, not yet handled */
	size_t in_off;                  /* bytes at the start of `in` already handled */
	struct buf body;                /* decoded chunked body */
	struct outq sending;            /* the send in flight (outq.h) */
	size_t sent;
	struct msghdr msg;              /* a sendmsg in flight: heads and values */
	struct iovec iov[CONN_IOV];
	struct pipeline pipe;           /* answers, in order; pipe.close: no more requests */
	struct cmd_session *resp;       /* a RESP connection's state (cmd.h); NULL for HTTP */
	struct fill_note *leases;       /* fill leases its clients were handed (fill.h) */
	uint32_t nleases;
	size_t mem;                     /* what conn_account() last counted for this connection */
	uint64_t last_active_ns;
	uint64_t send_ns;               /* when the send in flight was queued */
	uint64_t req_start_ns;          /* first byte of an incomplete request; 0: none */
	uint64_t linger_until_ns;
};

/* An accepted socket becomes a connection speaking `proto` (enum
 * answer_proto, the listener's) with a recv armed; over --max-conns or
 * without memory the socket is closed.  tcp: not a Unix socket (TCP_NODELAY). */
void conn_create(struct shard *sh, int fd, uint8_t proto, bool tcp);
/* Frees c at once (stop, teardown): its outstanding answers are orphaned. */
void conn_destroy(struct conn *c);

/* io_uring completions, from the shard's loop. */
void conn_on_recv(struct conn *c, struct io_uring_cqe *cqe);
void conn_on_send(struct conn *c, int res);
/* A completion of a zero-copy send (shard.h OP_SEND_ZC): its own, or the
 * kernel's notification that it no longer reads the bytes. */
void conn_on_send_zc(struct outq_zc *z, struct io_uring_cqe *cqe);
void conn_on_cancel(struct conn *c);

/* Once per loop iteration for each connection with new output: send it,
 * close what is done.  The one place a connection is freed. */
void conn_flush(struct conn *c);

/* Timeouts, a few times a second. */
void conn_sweep(struct shard *sh);
/* Stop: shuts every connection. */
void conn_close_all(struct shard *sh);

/* Ends the connection now (both directions).  Never frees it: conn_flush() does. */
void conn_abort(struct conn *c);

/*
 * The answer to the request being handled, known now (route.c, l2.c): in
 * order, through the pipeline.  Without memory for it the connection ends.
 */
void conn_answer(struct conn *c, const struct reply *r, const struct pipeline_req *q);

/* The answer will come later in s (fwd.h), with `room` bytes reserved for
 * it: see pipeline_wait(). */
void conn_wait(struct conn *c, struct slot *s, const struct pipeline_req *q, size_t room);

/* s, which c waited for, holds its answer now. */
void conn_complete(struct conn *c, struct slot *s);

/* Answer bytes not yet sent, sent or promised (see CONN_OUT_MAX). */
static inline size_t conn_unsent(const struct conn *c)
{
	return outq_len(&c->sending) - c->sent + pipeline_bytes(&c->pipe);
}

/* Whether c must stop taking requests until its answers drain (the bounds
 * above, the shard's --conn-memory share, a RESP command's parts out). */
bool conn_congested(const struct conn *c);

/* c was paused for congestion and may have drained: resume parsing. */
void conn_maybe_resume(struct conn *c);

/* Updates the shard's connection memory with what c holds now. */
void conn_account(struct conn *c);

/* The shard's connection memory reached its share: every connection stops
 * reading now, not at its next request, except one with a request under way,
 * which reads and handles the rest of it first; drained buffers are freed. */
void conn_pause_all(struct shard *sh);

/* Resumes the connections paused while the shard's connection memory was
 * over its share (shard.c, once it is back under). */
void conn_resume_paused(struct shard *sh);

/* The poll for a reset completed (more: it stays armed). */
void conn_on_poll(struct conn *c, int res, bool more);

/* A request of c that went elsewhere came back unanswered: its answer did
 * not fit the room it had (fwd.h).  Sent again once it is at the head of
 * c's answers and there is room. */
void conn_bounced(struct conn *c, struct slot *s);

#endif
