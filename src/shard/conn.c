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
 * Closing: an answer that ends the connection (a protocol error, "Connection:
 * close") sets pipe.close; once the last answer is sent the write side is
 * shut (FIN) and input is discarded until the client closes or a linger
 * timeout passes, so the client reads the response instead of a reset.  An
 * abort shuts both sides, which ends the multishot recv and any send; the
 * connection is freed as soon as the kernel holds no operation on it.
 * Answers still outstanding at other shards or at Redis do not keep it: their
 * messages are orphaned and freed where they come back (fwd.c).
 *
 * A client that half-closes (FIN after its last request) still gets every
 * answer, including those of requests buffered while input was paused.
 *
 * Back-pressure: when a connection has PEND_MAX answers queued, OUT_MAX bytes
 * of answers not yet sent (in flight, in `out` and in the pipeline), or
 * INFLIGHT_MAX requests out at other shards or at Redis, parsing pauses; when its
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
#include "fwd.h"
#include "route.h"
#include "shard.h"
#include "ringcache/clock.h"
#include "ringcache/stats.h"

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

static void conn_process(struct conn *c);
static void send_ready(struct conn *c);

static void arm_recv(struct conn *c)
{
	struct io_uring_sqe *sqe = shard_sqe(c->sh);

	if (!sqe) {
		conn_abort(c);
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
static void recv_update(struct conn *c)
{
	if (!(c->flags & (C_RECV | C_CANCELING | C_RECV_OFF | C_EOF | C_CLOSED)))
		arm_recv(c);
}

static void cancel_recv(struct conn *c)
{
	struct io_uring_sqe *sqe = shard_sqe(c->sh);

	if (!sqe) {
		conn_abort(c);
		return;
	}
	io_uring_prep_cancel64(sqe, shard_udata(c, OP_RECV), 0);
	io_uring_sqe_set_data64(sqe, shard_udata(c, OP_CANCEL));
	c->flags |= C_CANCELING;
}

void conn_create(struct shard *sh, int fd)
{
	int one = 1;

	if (sh->nconns >= sh->cfg->max_conns) {
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
	c->sh = sh;
	c->fd = fd;
	c->idx = sh->nconns;
	c->last_active_ns = sh->now_ns;
	pipeline_init(&c->pipe, sh->stats, fwd_release, fwd_orphan);
	sh->conns[sh->nconns++] = c;
	stats_inc(&sh->stats->connections_accepted);
	stats_inc(&sh->stats->connections);
	arm_recv(c);
}

void conn_destroy(struct conn *c)
{
	struct shard *sh = c->sh;
	struct conn *last = sh->conns[--sh->nconns];

	last->idx = c->idx;
	sh->conns[c->idx] = last;
	close(c->fd);
	pipeline_deinit(&c->pipe);
	buf_deinit(&c->in);
	buf_deinit(&c->body);
	buf_deinit(&c->sending);
	stats_dec(&sh->stats->connections);
	free(c);
}

/* The kernel holds no operation on c any more: free it. */
static void conn_maybe_free(struct conn *c)
{
	if ((c->flags & C_CLOSED) && !(c->flags & (C_RECV | C_SEND | C_CANCELING)))
		conn_destroy(c);
}

void conn_abort(struct conn *c)
{
	if (c->flags & C_CLOSED)
		return;
	c->flags |= C_CLOSED;
	/* ends an armed multishot recv and a send in flight (close() would not) */
	shutdown(c->fd, SHUT_RDWR);
	shard_dirty(c->sh, c);
}

void conn_answer(struct conn *c, const struct reply *r, const struct pipeline_req *q)
{
	if (pipeline_answer(&c->pipe, r, q)) {
		conn_abort(c);
		return;
	}
	shard_dirty(c->sh, c);
}

void conn_wait(struct conn *c, struct slot *s, const struct pipeline_req *q)
{
	pipeline_wait(&c->pipe, s, q);
}

/* A request that cannot be answered in kind: answer with its status and end
 * the connection (the stream may be out of sync).  `status` comes from the
 * parser (anything outside 400..599 is answered 500). */
static void protocol_error(struct conn *c, int status)
{
	struct pipeline_req q = { .to = { .minor = 1, .keep_alive = false } };
	struct reply r;

	reply_status(&r, status >= 400 && status <= 599 ? status : 500, NULL);
	conn_answer(c, &r, &q);
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

static void send_continue(struct conn *c, const struct http_request *req)
{
	if (!req->expect_continue || c->continue_sent || req->minor == 0)
		return;
	c->continue_sent = true;
	if (pipeline_interim(&c->pipe, continue_100, sizeof(continue_100) - 1)) {
		conn_abort(c);
		return;
	}
	shard_dirty(c->sh, c);
}

/* A whole request: nothing after one that said "Connection: close" is
 * parsed, even while its answer is still being made elsewhere. */
static void conn_route(struct conn *c, const struct http_request *req, const uint8_t *body,
		       size_t body_len)
{
	if (!req->keep_alive)
		c->pipe.close = true;
	route_request(c, req, body, body_len);
}

/*
 * Handles the request at the start of p[0..n).  Returns the bytes it used
 * (the whole request), 0 when the request is not complete yet, or n after
 * a protocol error (the rest of the stream is not trusted).
 */
static size_t handle_one(struct conn *c, const char *p, size_t n)
{
	struct shard *sh = c->sh;
	const struct config *cfg = sh->cfg;
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
		protocol_error(c, -rc);
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
			protocol_error(c, -rc);
			return n;
		}
		if (c->chunk_used > 2 * cfg->max_value + CHUNK_SLACK) {
			/* the encoded body is kept until it ends: bound the framing too */
			protocol_error(c, 413);
			return n;
		}
		if (rc == HTTP_AGAIN) {
			if (first && route_refuse_early(c, &req))
				return n;
			send_continue(c, &req);
			return 0;
		}
		conn_route(c, &req, (const uint8_t *)c->body.data, c->body.len);
		size_t total = head + c->chunk_used;
		request_done(c);
		return total;
	}
	if (req.content_length > 0) {
		if ((uint64_t)req.content_length > cfg->max_value) {
			protocol_error(c, 413);
			return n;
		}
		if (n - head < (uint64_t)req.content_length) {
			if (c->state == RS_HEAD && route_refuse_early(c, &req))
				return n;
			c->state = RS_BODY;
			send_continue(c, &req);
			return 0;
		}
	}
	size_t blen = req.content_length > 0 ? (size_t)req.content_length : 0;
	conn_route(c, &req, (const uint8_t *)p + head, blen);
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
	return c->pipe.queued >= PEND_MAX || c->pipe.waiting >= INFLIGHT_MAX ||
	       c->sending.len - c->sent + pipeline_bytes(&c->pipe) >= OUT_MAX;
}

/* After EOF: once buffered requests are parsed (input not paused), what is
 * left can never complete, so close after the last answer. */
static void eof_settle(struct conn *c)
{
	if ((c->flags & C_EOF) && !(c->flags & C_PAUSED))
		c->pipe.close = true;
}

/* No more requests will be parsed: close once every answer is sent. */
static bool conn_closing(const struct conn *c)
{
	return c->pipe.close || (c->flags & (C_LINGER | C_CLOSED));
}

static bool conn_accepts_input(const struct conn *c)
{
	return !conn_closing(c) && !(c->flags & C_PAUSED);
}

/* Handles complete requests in p[0..n); returns the bytes used. */
static size_t process_bytes(struct conn *c, const char *p, size_t n)
{
	size_t pos = 0;

	while (pos < n && conn_accepts_input(c)) {
		size_t used = handle_one(c, p + pos, n - pos);
		if (used == 0)
			break;
		pos += used;
		if (conn_congested(c))
			c->flags |= C_PAUSED;
	}
	return pos;
}

/* Handles what is buffered in conn->in. */
static void conn_process(struct conn *c)
{
	size_t used = process_bytes(c, c->in.data, c->in.len);

	buf_consume(&c->in, used);
	if (c->pipe.close || (c->flags & C_CLOSED))
		c->in.len = 0;
	buf_trim(&c->in);
}

static void stop_reading_if_flooded(struct conn *c)
{
	const struct config *cfg = c->sh->cfg;
	size_t limit = cfg->max_head + cfg->max_value + cfg->recv_buffer_size;

	if ((c->flags & C_PAUSED) && c->in.len > limit && (c->flags & C_RECV) &&
	    !(c->flags & (C_RECV_OFF | C_CANCELING))) {
		c->flags |= C_RECV_OFF;
		cancel_recv(c);
	}
}

void conn_on_recv(struct conn *c, struct io_uring_cqe *cqe)
{
	struct shard *sh = c->sh;
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
		if (conn_closing(c)) {
			/* closing: input is read only to be discarded */
		} else if (c->in.len == 0 && conn_accepts_input(c)) {
			size_t used = process_bytes(c, data, (size_t)res);
			if (used < (size_t)res && !conn_closing(c) &&
			    buf_append(&c->in, data + used, (size_t)res - used))
				conn_abort(c);
		} else {
			if (buf_append(&c->in, data, (size_t)res))
				conn_abort(c);
			else if (conn_accepts_input(c))
				conn_process(c);
		}
		shard_recycle_buffer(sh, bid);
		stop_reading_if_flooded(c);
		/* queue the send now rather than after every other completion */
		if (!(c->flags & C_CLOSED))
			send_ready(c);
	} else if (res == 0 || (res < 0 && res != -ENOBUFS && res != -ECANCELED)) {
		/* EOF or error: nothing more will come */
		c->flags |= C_EOF;
		more = false;
		if (c->flags & (C_CLOSED | C_LINGER))
			conn_abort(c);
		else if (res == 0 && (!pipeline_idle(&c->pipe) || (c->flags & C_SEND) ||
				      ((c->flags & C_PAUSED) && c->in.len)))
			eof_settle(c); /* half-close: answer what was asked */
		else
			conn_abort(c);
	}
	/* ended by ENOBUFS, a cancel or the kernel: re-armed if still wanted */
	if (!more)
		recv_update(c);
	if (c->flags & C_CLOSED || c->pipe.close)
		shard_dirty(sh, c);
}

void conn_on_cancel(struct conn *c)
{
	c->flags &= ~C_CANCELING;
	recv_update(c); /* resumed while the cancel was in flight */
	if (c->flags & C_CLOSED)
		shard_dirty(c->sh, c);
}

static void start_send(struct conn *c)
{
	struct io_uring_sqe *sqe = shard_sqe(c->sh);

	if (!sqe) {
		conn_abort(c);
		return;
	}
	c->send_ns = c->sh->now_ns;
	io_uring_prep_send(sqe, c->fd, c->sending.data + c->sent, c->sending.len - c->sent,
			   MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, shard_udata(c, OP_SEND));
	c->flags |= C_SEND;
}

/* Starts sending what is ready, unless a send is in flight already. */
static void send_ready(struct conn *c)
{
	if (!(c->flags & C_SEND) && c->pipe.out.len > 0) {
		struct buf t = c->sending;
		c->sending = c->pipe.out;
		c->pipe.out = t;
		c->pipe.out.len = 0;
		c->sent = 0;
		start_send(c);
		/* the answers in this send: their server-side latency ends here */
		pipeline_sent(&c->pipe, clock_mono_ns());
	}
}

/* Called once per loop iteration for each connection with new output. */
void conn_flush(struct conn *c)
{
	struct shard *sh = c->sh;

	/*
	 * C_DIRTY stays set until the end: an abort in here (a failed send,
	 * the FIN of a connection with no recv) must not put `c` in sh->dirty
	 * a second time, which the loop is walking and which has room for
	 * each connection once.
	 */
	if (c->pipe.broken)
		conn_abort(c); /* an answer was lost for memory: nothing after it may go */
	if (!(c->flags & C_CLOSED)) {
		send_ready(c);
		if (!(c->flags & (C_SEND | C_CLOSED)) && pipeline_idle(&c->pipe) &&
		    c->pipe.close && !(c->flags & C_LINGER)) {
			/* everything answered: send FIN, then drain input until EOF */
			c->flags |= C_LINGER;
			c->linger_until_ns = sh->now_ns + LINGER_NS;
			shutdown(c->fd, SHUT_WR);
			if (!(c->flags & C_RECV))
				conn_abort(c);
		}
	}
	c->flags &= ~C_DIRTY;
	if (c->flags & C_CLOSED)
		conn_maybe_free(c); /* the one place a connection is freed */
}

static void maybe_resume(struct conn *c)
{
	if (!(c->flags & C_PAUSED) || conn_congested(c) || c->sending.len)
		return;
	c->flags &= ~C_PAUSED;
	conn_process(c);
	if (!(c->flags & C_PAUSED)) {
		c->flags &= ~C_RECV_OFF;
		eof_settle(c);
	}
	recv_update(c);
	shard_dirty(c->sh, c);
}

void conn_on_send(struct conn *c, int res)
{
	struct shard *sh = c->sh;

	c->flags &= ~C_SEND;
	if (res < 0 || (c->flags & C_CLOSED)) {
		conn_abort(c);
		shard_dirty(sh, c);
		return;
	}
	c->last_active_ns = sh->now_ns;
	stats_add(&sh->stats->sent_bytes, (uint64_t)res);
	c->sent += (size_t)res;
	if (c->sent < c->sending.len) {
		start_send(c);
		return;
	}
	c->sending.len = 0;
	c->sent = 0;
	buf_trim(&c->sending); /* becomes `out` at the next send */
	maybe_resume(c);
	shard_dirty(sh, c);
}

void conn_complete(struct conn *c, struct slot *s)
{
	pipeline_complete(&c->pipe, s, clock_mono_ns());
	shard_dirty(c->sh, c);
	if (!(c->flags & C_CLOSED))
		maybe_resume(c);
}

/* Timeouts, checked a few times a second. */
void conn_sweep(struct shard *sh)
{
	const struct config *cfg = sh->cfg;
	uint64_t idle = (uint64_t)cfg->idle_timeout * 1000000000ull;
	uint64_t reqt = (uint64_t)cfg->request_timeout * 1000000000ull;

	for (uint32_t i = 0; i < sh->nconns; i++) {
		struct conn *c = sh->conns[i];

		if (c->flags & C_CLOSED)
			continue;
		if (c->flags & C_LINGER) {
			if (sh->now_ns > c->linger_until_ns)
				conn_abort(c);
		} else if ((c->flags & C_SEND) && sh->now_ns - c->send_ns > idle) {
			conn_abort(c); /* the client stopped reading */
		} else if (c->req_start_ns && sh->now_ns - c->req_start_ns > reqt &&
			   !c->pipe.close) {
			c->in.len = 0;
			protocol_error(c, 408);
		} else if (!c->req_start_ns && pipeline_idle(&c->pipe) &&
			   !(c->flags & C_SEND) && sh->now_ns - c->last_active_ns > idle) {
			conn_abort(c);
		}
	}
}

void conn_close_all(struct shard *sh)
{
	for (uint32_t i = 0; i < sh->nconns; i++)
		conn_abort(sh->conns[i]);
}
