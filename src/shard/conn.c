/*
 * conn.c - a connection's life on its shard: bytes in (multishot recv into
 * provided buffers), requests parsed and handed to route.c, responses out in
 * request order (one send in flight at a time), and the ways a connection
 * ends.
 *
 * Input is parsed straight out of the kernel's provided buffer when the
 * connection has nothing buffered (the common case: whole requests in one
 * segment); only an incomplete tail is copied into conn->in.  A request is
 * re-parsed from its first byte each time more of it arrives; the parser's
 * `scanned` state keeps that linear, and bodies are only waited for, never
 * re-read.
 *
 * Closing: a protocol error or "Connection: close" sets C_CLOSE_AFTER; once
 * the last response is sent the write side is shut (FIN) and input is
 * discarded until the client closes or a linger timeout passes, so the
 * client reads the response instead of a reset.  An abort shuts both sides,
 * which ends the multishot recv; the descriptor is closed and the memory
 * freed only when no recv, send or forwarded request still refers to it.
 *
 * A client that half-closes (FIN after its last request) still gets every
 * answer, including those of requests buffered while input was paused.
 *
 * Back-pressure: when a connection has PEND_MAX responses or OUT_MAX bytes
 * waiting (in `out` and in the pending FIFO), or INFLIGHT_MAX requests out
 * at other shards or at Redis, parsing pauses; when its
 * buffered input passes one request's worth the recv is cancelled too, and
 * re-armed once the backlog is sent.  A client that reads nothing for
 * --idle-timeout while a send is in flight is disconnected.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "ringcache/clock.h"

#define PEND_MAX 1024                  /* responses queued per connection before input waits */
#define OUT_MAX (8u << 20)             /* bytes queued per connection before input waits */
#define INFLIGHT_MAX 64                /* requests out at other shards or Redis, per connection */
#define LINGER_NS (2ull * 1000000000)  /* how long a closing connection drains input */
#define CHUNK_SLACK (64u << 10)        /* chunked framing allowed beyond 2 x --max-value */
#define BUF_KEEP (256u << 10)          /* a drained buffer larger than this is freed */

/* A large value's buffers are not kept for the rest of the connection's life. */
static void buf_trim(struct buf *b)
{
	if (b->len == 0 && b->cap > BUF_KEEP)
		buf_deinit(b);
}

static const char continue_100[] = "HTTP/1.1 100 Continue\r\n\r\n";

static void conn_process(struct shard *sh, struct conn *c);
static void send_ready(struct shard *sh, struct conn *c);

static void arm_recv(struct shard *sh, struct conn *c)
{
	struct io_uring_sqe *sqe = shard_sqe(sh);

	if (!sqe) {
		conn_abort(sh, c);
		return;
	}
	io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = 0;
	io_uring_sqe_set_data64(sqe, shard_udata(c, OP_RECV));
	c->flags |= C_RECV;
}

/*
 * The one place a recv is (re)armed: when the connection still wants input
 * and has no recv armed or being cancelled.  Called wherever one of those
 * conditions may have changed.
 */
static void recv_update(struct shard *sh, struct conn *c)
{
	if (!(c->flags & (C_RECV | C_CANCELING | C_RECV_OFF | C_EOF | C_CLOSED)))
		arm_recv(sh, c);
}

static void cancel_recv(struct shard *sh, struct conn *c)
{
	struct io_uring_sqe *sqe = shard_sqe(sh);

	if (!sqe) {
		conn_abort(sh, c);
		return;
	}
	io_uring_prep_cancel64(sqe, shard_udata(c, OP_RECV), 0);
	io_uring_sqe_set_data64(sqe, shard_udata(c, OP_CANCEL));
	c->flags |= C_CANCELING;
}

void conn_accept(struct shard *sh, int fd)
{
	const struct config *cfg = sh->srv->cfg;
	int one = 1;

	if (sh->nconns >= cfg->max_conns) {
		stats_inc(&sh->stats->accept_errors);
		close(fd);
		return;
	}
	struct conn *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->fd = fd;
	c->idx = sh->nconns;
	c->last_active_ns = sh->now_ns;
	sh->conns[sh->nconns++] = c;
	stats_inc(&sh->stats->connections_accepted);
	stats_inc(&sh->stats->connections);
	arm_recv(sh, c);
}

static void conn_free(struct shard *sh, struct conn *c)
{
	struct conn *last = sh->conns[--sh->nconns];

	last->idx = c->idx;
	sh->conns[c->idx] = last;
	close(c->fd);
	/* inflight is 0: every slot is back home, and only this FIFO holds it */
	for (struct fwd *f = c->pend_head, *next; f; f = next) {
		next = f->pnext;
		fwd_destroy(f);
	}
	buf_deinit(&c->in);
	buf_deinit(&c->body);
	buf_deinit(&c->out);
	buf_deinit(&c->sending);
	stats_dec(&sh->stats->connections);
	free(c);
}

static void conn_maybe_free(struct shard *sh, struct conn *c)
{
	if ((c->flags & C_CLOSED) && !(c->flags & (C_RECV | C_SEND | C_CANCELING)) &&
	    c->inflight == 0)
		conn_free(sh, c);
}

/* Ends the connection.  Never frees it: only conn_flush() does, from the
 * loop, so no caller is left holding a freed connection. */
void conn_abort(struct shard *sh, struct conn *c)
{
	if (c->flags & C_CLOSED)
		return;
	c->flags |= C_CLOSED;
	/* ends an armed multishot recv (close() alone would not) */
	shutdown(c->fd, SHUT_RDWR);
	shard_mark_dirty(sh, c);
}

void shard_mark_dirty(struct shard *sh, struct conn *c)
{
	if (!(c->flags & C_DIRTY)) {
		c->flags |= C_DIRTY;
		sh->dirty[sh->ndirty++] = c;
	}
}

/* Where the next response of `c` goes: straight to `out`, or into a slot
 * behind the answers still outstanding. */
struct buf *conn_response_buf(struct conn *c, struct fwd **slot)
{
	*slot = NULL;
	if (!c->pend_head)
		return &c->out;
	struct fwd *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->conn = c;
	f->done = true;
	c->pend_tail->pnext = f;
	c->pend_tail = f;
	c->npend++;
	*slot = f;
	return &f->resp;
}

/* Counts the bytes of a response written into a pending slot. */
void conn_slot_filled(struct conn *c, const struct fwd *slot)
{
	if (slot)
		c->pend_bytes += slot->resp.len;
}

/* A response of its own: `body` is sent, or for HEAD only its length. */
void conn_emit(struct shard *sh, struct conn *c, int status, uint8_t minor, bool keep_alive,
	       const char *extra, const char *body, bool head)
{
	struct fwd *slot;
	struct buf *b = conn_response_buf(c, &slot);

	if (!b || cache_respond_status(b, status, minor, keep_alive, extra, body)) {
		conn_abort(sh, c);
		return;
	}
	if (head && body && status >= 200 && status != 204 && status != 304)
		b->len -= strlen(body); /* the headers GET would send, no body */
	conn_slot_filled(c, slot);
	if (status >= 400)
		stats_inc(&sh->stats->errors);
	if (!keep_alive)
		c->flags |= C_CLOSE_AFTER;
	shard_mark_dirty(sh, c);
}

/* A request that cannot be answered in kind: answer with its status and end
 * the connection (the stream may be out of sync).  `err` is an HTTP status
 * from the parser, or an errno (out of memory: 500). */
static void protocol_error(struct shard *sh, struct conn *c, int err)
{
	conn_emit(sh, c, err >= 400 && err <= 599 ? err : 500, 1, false, NULL, NULL, false);
}

static void request_done(struct conn *c)
{
	c->state = RS_IDLE;
	c->scanned = 0;
	c->chunk_used = 0;
	c->continue_sent = false;
	c->body.len = 0;
	buf_trim(&c->body);
	c->req_start_ns = 0;
}

static void send_continue(struct shard *sh, struct conn *c, const struct http_request *req)
{
	struct fwd *slot;
	struct buf *b;

	if (!req->expect_continue || c->continue_sent || req->minor == 0)
		return;
	c->continue_sent = true;
	b = conn_response_buf(c, &slot);
	if (!b || buf_append(b, continue_100, sizeof(continue_100) - 1)) {
		conn_abort(sh, c);
		return;
	}
	conn_slot_filled(c, slot);
	shard_mark_dirty(sh, c);
}

/*
 * Handles the request at the start of p[0..n).  Returns the bytes it used
 * (the whole request), 0 when the request is not complete yet, or n after
 * a protocol error (the rest of the stream is not trusted).
 */
static size_t handle_one(struct shard *sh, struct conn *c, const char *p, size_t n)
{
	const struct config *cfg = sh->srv->cfg;
	struct http_request req;
	int rc;

	if (c->state == RS_IDLE) {
		c->state = RS_HEAD;
		c->req_start_ns = sh->now_ns;
	}
	rc = http_parse_request(p, n, &c->scanned, &sh->srv->limits, &req);
	if (rc == HTTP_AGAIN)
		return 0;
	if (rc < 0) {
		protocol_error(sh, c, -rc);
		return n;
	}
	size_t head = (size_t)rc;

	if (req.chunked) {
		size_t used = 0;
		bool first = c->state == RS_HEAD;
		if (first) {
			http_chunked_init(&c->chunk);
			c->state = RS_BODY;
		}
		rc = http_chunked_feed(&c->chunk, p + head + c->chunk_used,
				       n - head - c->chunk_used, &used, &c->body, cfg->max_value);
		c->chunk_used += used;
		if (rc < 0) {
			protocol_error(sh, c, -rc);
			return n;
		}
		if (c->chunk_used > 2 * cfg->max_value + CHUNK_SLACK) {
			/* the encoded body is kept until it ends: bound the framing too */
			protocol_error(sh, c, 413);
			return n;
		}
		if (rc == 0) {
			if (first && route_refuse_early(sh, c, &req))
				return n;
			send_continue(sh, c, &req);
			return 0;
		}
		route_request(sh, c, &req, (const uint8_t *)c->body.data, c->body.len);
		size_t total = head + c->chunk_used;
		request_done(c);
		return total;
	}
	if (req.content_length > 0) {
		if ((uint64_t)req.content_length > cfg->max_value) {
			protocol_error(sh, c, 413);
			return n;
		}
		if (n - head < (uint64_t)req.content_length) {
			if (c->state == RS_HEAD && route_refuse_early(sh, c, &req))
				return n;
			c->state = RS_BODY;
			send_continue(sh, c, &req);
			return 0;
		}
	}
	size_t blen = req.content_length > 0 ? (size_t)req.content_length : 0;
	route_request(sh, c, &req, (const uint8_t *)p + head, blen);
	request_done(c);
	return head + blen;
}

/*
 * Whether input must wait.  An answer still out at another shard has no
 * size yet, so their number is bounded too: a client that pipelines GETs of
 * large values and reads nothing makes this connection hold at most OUT_MAX
 * plus INFLIGHT_MAX answers, not PEND_MAX of them.
 */
static bool conn_congested(const struct conn *c)
{
	return c->npend >= PEND_MAX || c->inflight >= INFLIGHT_MAX ||
	       c->out.len + c->pend_bytes >= OUT_MAX;
}

/* After EOF: once buffered requests are parsed (input not paused), what is
 * left can never complete, so close after the last answer. */
static void eof_settle(struct conn *c)
{
	if ((c->flags & C_EOF) && !(c->flags & C_PAUSED))
		c->flags |= C_CLOSE_AFTER;
}

static bool conn_accepts_input(const struct conn *c)
{
	return !(c->flags & (C_CLOSE_AFTER | C_LINGER | C_CLOSED | C_PAUSED));
}

/* Handles complete requests in p[0..n); returns the bytes used. */
static size_t process_bytes(struct shard *sh, struct conn *c, const char *p, size_t n)
{
	size_t pos = 0;

	while (pos < n && conn_accepts_input(c)) {
		size_t used = handle_one(sh, c, p + pos, n - pos);
		if (used == 0)
			break;
		pos += used;
		if (conn_congested(c))
			c->flags |= C_PAUSED;
	}
	return pos;
}

/* Handles what is buffered in conn->in. */
static void conn_process(struct shard *sh, struct conn *c)
{
	size_t used = process_bytes(sh, c, c->in.data, c->in.len);

	buf_consume(&c->in, used);
	if (c->flags & (C_CLOSE_AFTER | C_CLOSED))
		c->in.len = 0;
	buf_trim(&c->in);
}

static void stop_reading_if_flooded(struct shard *sh, struct conn *c)
{
	const struct config *cfg = sh->srv->cfg;
	size_t limit = cfg->max_head + cfg->max_value + cfg->recv_buffer_size;

	if ((c->flags & C_PAUSED) && c->in.len > limit && (c->flags & C_RECV) &&
	    !(c->flags & (C_RECV_OFF | C_CANCELING))) {
		c->flags |= C_RECV_OFF;
		cancel_recv(sh, c);
	}
}

static void recycle_buffer(struct shard *sh, unsigned bid)
{
	io_uring_buf_ring_add(sh->br, sh->bufs + (size_t)bid * sh->buf_size, sh->buf_size,
			      (unsigned short)bid, io_uring_buf_ring_mask(sh->nbufs), 0);
	/* store-release of the tail (liburing 2.3's cq_advance variant lacks it) */
	io_uring_buf_ring_advance(sh->br, 1);
}

void conn_on_recv(struct shard *sh, struct conn *c, struct io_uring_cqe *cqe)
{
	int res = cqe->res;
	bool more = cqe->flags & IORING_CQE_F_MORE;

	if (!more)
		c->flags &= ~C_RECV;
	if (res > 0 && (cqe->flags & IORING_CQE_F_BUFFER)) {
		unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		const char *data = sh->bufs + (size_t)bid * sh->buf_size;

		/* the server-side latency of what this completes starts here */
		sh->now_ns = clock_mono_ns();
		c->last_active_ns = sh->now_ns;
		stats_add(&sh->stats->received_bytes, (uint64_t)res);
		if (c->flags & (C_LINGER | C_CLOSED | C_CLOSE_AFTER)) {
			/* closing: input is read only to be discarded */
		} else if (c->in.len == 0 && conn_accepts_input(c)) {
			size_t used = process_bytes(sh, c, data, (size_t)res);
			if (used < (size_t)res && !(c->flags & (C_CLOSE_AFTER | C_CLOSED)) &&
			    buf_append(&c->in, data + used, (size_t)res - used))
				conn_abort(sh, c);
		} else {
			if (buf_append(&c->in, data, (size_t)res))
				conn_abort(sh, c);
			else if (conn_accepts_input(c))
				conn_process(sh, c);
		}
		recycle_buffer(sh, bid);
		stop_reading_if_flooded(sh, c);
		/* queue the send now rather than after every other completion */
		if (!(c->flags & C_CLOSED))
			send_ready(sh, c);
	} else if (res == 0 || (res < 0 && res != -ENOBUFS && res != -ECANCELED)) {
		/* EOF or error: nothing more will come */
		c->flags |= C_EOF;
		more = false;
		if (c->flags & (C_CLOSED | C_LINGER))
			conn_abort(sh, c);
		else if (res == 0 && (c->pend_head || c->out.len || (c->flags & C_SEND) ||
				      ((c->flags & C_PAUSED) && c->in.len)))
			eof_settle(c); /* half-close: answer what was asked */
		else
			conn_abort(sh, c);
	}
	/* ended by ENOBUFS, a cancel or the kernel: re-armed if still wanted */
	if (!more)
		recv_update(sh, c);
	if (c->flags & (C_CLOSED | C_CLOSE_AFTER))
		shard_mark_dirty(sh, c);
}

void conn_on_cancel(struct shard *sh, struct conn *c)
{
	c->flags &= ~C_CANCELING;
	recv_update(sh, c); /* resumed while the cancel was in flight */
	if (c->flags & C_CLOSED)
		shard_mark_dirty(sh, c);
}

static void start_send(struct shard *sh, struct conn *c)
{
	struct io_uring_sqe *sqe = shard_sqe(sh);

	if (!sqe) {
		conn_abort(sh, c);
		return;
	}
	c->send_ns = sh->now_ns;
	io_uring_prep_send(sqe, c->fd, c->sending.data + c->sent, c->sending.len - c->sent,
			   MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, shard_udata(c, OP_SEND));
	c->flags |= C_SEND;
}

/* The local answers in this send: their server-side latency ends here. */
static void record_local(struct shard *sh, struct conn *c)
{
	if (c->local_reqs) {
		uint64_t ns = clock_mono_ns() - c->t_local;
		for (uint32_t i = 0; i < c->local_hits; i++)
			hist_record(&sh->stats->lat_local, ns);
		for (uint32_t i = 0; i < c->local_reqs; i++)
			hist_record(&sh->stats->lat_local_all, ns);
		c->local_hits = c->local_reqs = 0;
	}
}

/* Starts sending what is ready, unless a send is in flight already. */
static void send_ready(struct shard *sh, struct conn *c)
{
	if (!(c->flags & C_SEND) && c->out.len > 0) {
		struct buf t = c->sending;
		c->sending = c->out;
		c->out = t;
		c->out.len = 0;
		c->sent = 0;
		start_send(sh, c);
		record_local(sh, c);
	}
}

/* Called once per loop iteration for each connection with new output. */
void conn_flush(struct shard *sh, struct conn *c)
{
	/*
	 * C_DIRTY stays set until the end: an abort in here (a failed send,
	 * the FIN of a connection with no recv) must not put `c` in sh->dirty
	 * a second time, which the loop is walking and which has room for
	 * each connection once.
	 */
	if (!(c->flags & C_CLOSED)) {
		send_ready(sh, c);
		if (!(c->flags & (C_SEND | C_CLOSED)) && c->out.len == 0 && !c->pend_head &&
		    (c->flags & C_CLOSE_AFTER) && !(c->flags & C_LINGER)) {
			/* everything answered: send FIN, then drain input until EOF */
			c->flags |= C_LINGER;
			c->linger_until_ns = sh->now_ns + LINGER_NS;
			shutdown(c->fd, SHUT_WR);
			if (!(c->flags & C_RECV))
				conn_abort(sh, c);
		}
	}
	c->flags &= ~C_DIRTY;
	if (c->flags & C_CLOSED)
		conn_maybe_free(sh, c); /* the one place a connection is freed */
}

static void maybe_resume(struct shard *sh, struct conn *c)
{
	if (!(c->flags & C_PAUSED) || conn_congested(c) || c->sending.len)
		return;
	c->flags &= ~C_PAUSED;
	conn_process(sh, c);
	if (!(c->flags & C_PAUSED)) {
		c->flags &= ~C_RECV_OFF;
		eof_settle(c);
	}
	recv_update(sh, c);
	shard_mark_dirty(sh, c);
}

void conn_on_send(struct shard *sh, struct conn *c, int res)
{
	c->flags &= ~C_SEND;
	if (res < 0 || (c->flags & C_CLOSED)) {
		conn_abort(sh, c);
		shard_mark_dirty(sh, c);
		return;
	}
	c->last_active_ns = sh->now_ns;
	stats_add(&sh->stats->sent_bytes, (uint64_t)res);
	c->sent += (size_t)res;
	if (c->sent < c->sending.len) {
		start_send(sh, c);
		return;
	}
	c->sending.len = 0;
	c->sent = 0;
	buf_trim(&c->sending); /* becomes `out` at the next send */
	maybe_resume(sh, c);
	shard_mark_dirty(sh, c);
}

/* A forwarded request came back: release the responses now in order. */
void conn_on_reply(struct shard *sh, struct fwd *f)
{
	struct conn *c = f->conn;

	f->done = true;
	c->inflight--;
	if (c->flags & C_CLOSED) {
		/* the connection is gone: conn_free() frees the FIFO, f included */
		shard_mark_dirty(sh, c);
		return;
	}
	if (f->close)
		c->flags |= C_CLOSE_AFTER;
	c->pend_bytes += f->resp.len;
	while (c->pend_head && c->pend_head->done) {
		struct fwd *h = c->pend_head;
		c->pend_head = h->pnext;
		if (!c->pend_head)
			c->pend_tail = NULL;
		c->npend--;
		c->pend_bytes -= h->resp.len;
		if (buf_append(&c->out, h->resp.data, h->resp.len))
			conn_abort(sh, c);
		if (h->t0) {
			/* a store's answer (another shard's, Redis', or ours that
			 * waited behind them): queued for sending now */
			uint64_t ns = clock_mono_ns() - h->t0;
			bool hit = !h->l2 && (h->outcome == CACHE_HIT ||
					      h->outcome == CACHE_NOT_MODIFIED);
			hist_record(h->remote ? &sh->stats->lat_forwarded_all
					      : &sh->stats->lat_local_all, ns);
			if (hit)
				hist_record(h->remote ? &sh->stats->lat_forwarded
						      : &sh->stats->lat_local, ns);
		}
		fwd_destroy(h);
	}
	shard_mark_dirty(sh, c);
	maybe_resume(sh, c);
}

/* Timeouts, checked a few times a second. */
void conn_sweep(struct shard *sh)
{
	const struct config *cfg = sh->srv->cfg;
	uint64_t idle = (uint64_t)cfg->idle_timeout * 1000000000ull;
	uint64_t reqt = (uint64_t)cfg->request_timeout * 1000000000ull;

	for (uint32_t i = 0; i < sh->nconns; i++) {
		struct conn *c = sh->conns[i];

		if (c->flags & C_CLOSED)
			continue;
		if (c->flags & C_LINGER) {
			if (sh->now_ns > c->linger_until_ns)
				conn_abort(sh, c);
		} else if ((c->flags & C_SEND) && sh->now_ns - c->send_ns > idle) {
			conn_abort(sh, c); /* the client stopped reading */
		} else if (c->req_start_ns && sh->now_ns - c->req_start_ns > reqt &&
			   !(c->flags & C_CLOSE_AFTER)) {
			c->in.len = 0;
			protocol_error(sh, c, 408);
		} else if (!c->req_start_ns && !c->pend_head && !c->out.len &&
			   !(c->flags & C_SEND) && sh->now_ns - c->last_active_ns > idle) {
			conn_abort(sh, c);
		}
	}
}

void conn_close_all(struct shard *sh)
{
	for (uint32_t i = 0; i < sh->nconns; i++)
		conn_abort(sh, sh->conns[i]);
}
