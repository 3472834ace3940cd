/*
 * conn.h - a client connection and the messages that carry its requests to
 * other shards.  Only the shard that accepted a connection touches it.
 *
 * Responses leave in request order even when some requests are answered by
 * other shards: while any answer is outstanding, every later response waits
 * in the connection's pending FIFO, behind it:
 *
 *   pend_head -> [fwd: GET k7 @shard1, waiting] -> [done: 404] -> [fwd ...]
 *                 the FIFO drains into `out` from the head while done
 *
 *   out      : bytes ready to send, appended to freely
 *   sending  : the bytes of the one send in flight; the kernel reads them
 *              until its completion, so they are never moved or grown
 */
#ifndef RINGCACHE_CONN_H
#define RINGCACHE_CONN_H

#include <stdint.h>

#include "shard.h"

enum conn_flags {
	C_RECV = 1 << 0,         /* a multishot recv is armed */
	C_SEND = 1 << 1,         /* a send is in flight */
	C_DIRTY = 1 << 2,        /* in sh->dirty */
	C_CLOSE_AFTER = 1 << 3,  /* no more requests: close once all is sent */
	C_LINGER = 1 << 4,       /* FIN sent; discarding input until EOF */
	C_CLOSED = 1 << 5,       /* shut down; freed when nothing is in flight */
	C_PAUSED = 1 << 6,       /* too much queued output: input waits */
	C_RECV_OFF = 1 << 7,     /* recv cancelled for back-pressure */
	C_CANCELING = 1 << 8,    /* a cancel of the recv is in flight */
	C_EOF = 1 << 9,          /* the client sent FIN (or the recv failed): no more input */
};

enum req_state { RS_IDLE = 0, RS_HEAD, RS_BODY };

/*
 * A response slot in a connection's pending FIFO.  For a forwarded request
 * it is also the message that travels to the owner shard and back:
 *
 *   origin: fwd_create (copies key, body, headers into data[])
 *        -> ring[origin*n+owner] -> owner: cache_exec into resp
 *        -> ring[owner*n+origin] -> origin: conn_on_reply, then freed
 */
struct fwd {
	struct fwd *pnext;              /* the connection's pending FIFO */
	struct fwd *qnext;              /* a backlog FIFO (ring was full) */
	struct conn *conn;
	uint16_t origin;
	bool reply;                     /* travelling back to the origin */
	bool done;                      /* resp is complete */
	bool remote;                    /* executed by another shard */
	bool close;                     /* resp says "Connection: close" (a 500) */
	bool l2;                        /* went to Redis: not an L1 hit, whatever its outcome */
	uint8_t outcome;                /* enum cache_outcome, set by the owner */
	uint64_t t0;                    /* origin's time the request completed */
	struct buf resp;
	struct cache_req req;
	uint8_t data[];
};

struct conn {
	int fd;
	uint32_t idx;                   /* position in sh->conns */
	uint32_t flags;
	uint8_t state;                  /* enum req_state */
	bool continue_sent;
	uint32_t npend;
	size_t pend_bytes;              /* response bytes waiting in the pending FIFO */
	uint32_t inflight;              /* fwds out at other shards or the coherence thread */
	size_t scanned;                 /* parser state of the current head */
	size_t chunk_used;              /* chunked: encoded bytes consumed after the head */
	struct http_chunked chunk;
	struct buf in;                  /* unconsumed input, from the request start */
	struct buf body;                /* decoded chunked body */
	struct buf out;
	struct buf sending;
	size_t sent;
	struct fwd *pend_head, *pend_tail;
	uint64_t last_active_ns;
	uint64_t send_ns;               /* when the send in flight was queued */
	uint64_t req_start_ns;          /* first byte of an incomplete request; 0: none */
	uint64_t linger_until_ns;
	uint64_t t_local;               /* completion time of the unflushed local answers */
	uint32_t local_reqs;            /* local answers queued since the last send */
	uint32_t local_hits;            /* of which hits */
};

/* conn.c, for route.c: answering on a connection, in request order */
void conn_abort(struct shard *sh, struct conn *c);
struct buf *conn_response_buf(struct conn *c, struct fwd **slot);
void conn_slot_filled(struct conn *c, const struct fwd *slot);
void conn_emit(struct shard *sh, struct conn *c, int status, uint8_t minor, bool keep_alive,
	       const char *extra, const char *body, bool head);

/* route.c: a request whose head (and body) arrived */
void route_request(struct shard *sh, struct conn *c, const struct http_request *req,
		   const uint8_t *body, size_t body_len);
bool route_refuse_early(struct shard *sh, struct conn *c, const struct http_request *req);

#endif
