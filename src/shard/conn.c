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
 * abort shuts both sides and cancels what the kernel still holds on the
 * socket (recv, poll, send: conn_abort() says why both); the connection is
 * freed as soon as the kernel holds no operation on it.
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
#include <poll.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cmd.h"
#include "conn.h"
#include "fill.h"
#include "fwd.h"
#include "route.h"
#include "shard.h"
#include "ringcache/clock.h"
#include "ringcache/stats.h"

#define PEND_MAX 1024                  /* responses queued per connection before input waits */
#define INFLIGHT_MAX 64                /* requests out at other shards or Redis, per connection */
#define LINGER_NS (2ull * 1000000000)  /* how long a closing connection drains input */
#define CHUNK_SLACK (64u << 10)        /* chunked framing allowed beyond 2 x --max-value */
#define BUF_KEEP (256u << 10)          /* a drained buffer larger than this is freed */

/*
 * A drained buffer is freed when it is large (a large value's buffers are
 * not kept for the rest of the connection's life), and any drained buffer
 * while the shard is over its --conn-memory share: kept capacity counts
 * against the share, and nothing a paused connection does lowers it, so
 * connections paused with enough of it would wait for ever (the shard
 * idle, never back under 7/8 of its share).
 */
static void buf_trim(const struct conn *c, struct buf *b)
{
	if (b->len == 0 && b->cap && (b->cap > BUF_KEEP || shard_memory_tight(c->sh)))
		buf_deinit(b);
}

static const char continue_100[] = "HTTP/1.1 100 Continue\r\n\r\n";

static void conn_process(struct conn *c);
static void send_ready(struct conn *c);
static void resend_bounced(struct conn *c);

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
/*
 * Without a recv armed (input paused, or the client half-closed) a reset
 * would go unseen until a send failed, and the connection would hold its
 * memory meanwhile: a poll for POLLERR/POLLHUP watches for it.  It is
 * multishot because the kernel adds POLLRDHUP to every poll's mask: a
 * one-shot poll re-armed after the client's FIN completed at once, for
 * ever, and spun the shard while the half-closed connection's answers
 * drained.  It stays armed once made; an abort cancels it (cancel_all).
 */
static void arm_poll(struct conn *c)
{
	struct io_uring_sqe *sqe = shard_sqe(c->sh);

	if (!sqe) {
		conn_abort(c);
		return;
	}
	io_uring_prep_poll_multishot(sqe, c->fd, POLLERR | POLLHUP);
	io_uring_sqe_set_data64(sqe, shard_udata(c, OP_POLL));
	c->flags |= C_POLL;
}

static void recv_update(struct conn *c)
{
	if (!(c->flags & (C_RECV | C_CANCELING | C_RECV_OFF | C_EOF | C_CLOSED)))
		arm_recv(c);
	else if (!(c->flags & (C_RECV | C_POLL | C_CLOSED)))
		arm_poll(c);
}

void conn_on_poll(struct conn *c, int res, bool more)
{
	if (!more)
		c->flags &= ~C_POLL;
	if (res > 0 && (res & (POLLERR | POLLHUP)))
		conn_abort(c); /* reset (or, lingering, both sides closed) */
	else if (!more)
		recv_update(c);
	/* POLLRDHUP alone: the client half-closed; the poll stays for a reset */
	shard_dirty(c->sh, c);
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

void conn_create(struct shard *sh, int fd, uint8_t proto, bool tcp)
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
	if (tcp)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->sh = sh;
	c->fd = fd;
	c->flags = tcp ? C_TCP : 0;
	c->proto = proto;
	if (proto == PROTO_RESP && cmd_session_create(c)) {
		free(c);
		close(fd);
		return;
	}
	c->idx = sh->nconns;
	c->last_active_ns = sh->now_ns;
	pipeline_init(&c->pipe, sh->stats, fwd_release, fwd_orphan);
	c->sending.stats = c->pipe.out.stats = sh->stats;       /* send_pins, sends_zc */
	c->sending.store = c->pipe.out.store = sh->store;       /* store_unpin_own() */
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
	cmd_session_destroy(c);         /* after the pipeline: its parent is orphaned */
	fill_conn_free(c);
	buf_deinit(&c->in);
	buf_deinit(&c->body);
	outq_deinit(&c->sending);
	shard_memory_add(sh, -(ssize_t)c->mem);
	stats_dec(&sh->stats->connections);
	free(c);
}

/* The kernel holds no operation on c any more: free it. */
static void conn_maybe_free(struct conn *c)
{
	if ((c->flags & C_CLOSED) && !(c->flags & (C_RECV | C_SEND | C_CANCELING | C_POLL)) &&
	    !outq_zc_busy(&c->sending)) {
		fill_conn_gone(c);      /* the leases its client held end now */
		conn_destroy(c);
	}
}

void conn_account(struct conn *c)
{
	size_t m = sizeof(*c) + c->in.cap + c->body.cap + c->sending.bytes.cap + c->sending.held_bytes +
		   c->pipe.out.bytes.cap + c->pipe.queued_bytes - c->pipe.queued_refs +
		   c->pipe.reserved;

	if (m == c->mem)        /* most calls: a request in and out, no buffer changed */
		return;
	shard_memory_add(c->sh, (ssize_t)(m - c->mem));
	c->mem = m;
}

/*
 * Ends every operation the kernel holds on c: its recv, its poll and its
 * send.  One cancel at a time (C_CANCELING), since its completion names c;
 * keyed on the descriptor, which stays c's until c is freed, and c is not
 * freed while the cancel is out.
 */
static void cancel_all(struct conn *c)
{
	struct io_uring_sqe *sqe;

	if ((c->flags & C_CANCELING) || !(c->flags & (C_RECV | C_POLL | C_SEND)))
		return;
	if (!(sqe = shard_sqe(c->sh)))
		return; /* conn_sweep() tries again */
	io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
	io_uring_sqe_set_data64(sqe, shard_udata(c, OP_CANCEL));
	c->flags |= C_CANCELING | C_CANCEL_ALL;
}

/*
 * shutdown(SHUT_RDWR) ends an armed multishot recv and a send in flight
 * (close() would not), but not always: after a reset that came while the
 * recv was taking data, a multishot recv was seen (kernel 6.18) to post no
 * final completion, even after the shutdown, and the connection waited for
 * it until the process stopped.  So what is armed is also cancelled (once
 * the recv's own cancel completes, if one is out: conn_on_cancel()), and
 * conn_sweep() cancels again whatever is still armed a sweep later.
 */
void conn_abort(struct conn *c)
{
	if (c->flags & C_CLOSED)
		return;
	c->flags |= C_CLOSED;
	shutdown(c->fd, SHUT_RDWR);
	cancel_all(c);
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

void conn_wait(struct conn *c, struct slot *s, const struct pipeline_req *q, size_t room)
{
	pipeline_wait(&c->pipe, s, q, room);
}

/* A request that cannot be answered in kind: answer with its status and end
 * the connection (the stream may be out of sync).  `status` comes from the
 * parser (anything outside 400..599 is answered 500). */
static void protocol_error(struct conn *c, int status)
{
	if (c->proto == PROTO_RESP) {
		/* only a timeout comes here for RESP (the parser's errors are
		 * answered by cmd.c) */
		cmd_protocol_error(c, status == 408 ? "Protocol error: the command was not "
						      "completed within --request-timeout"
						    : "Protocol error");
		return;
	}
	struct pipeline_req q = { .to = { .proto = PROTO_HTTP,
					  .http = { .minor = 1, .keep_alive = false,
						    .date = c->sh->date } } };
	struct reply r;

	reply_status(&r, status >= 400 && status <= 599 ? status : 500, NULL);
	conn_answer(c, &r, &q);
}

static void request_done(struct conn *c)
{
	c->state = RS_IDLE;
	c->scanned = 0;
	c->chunk_used = 0;
	c->chunked = false;
	c->continue_sent = false;
	c->body.len = 0;
	buf_trim(c, &c->body);
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

	if (c->proto == PROTO_RESP)
		return cmd_handle(c, p, n);
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
			c->chunked = true;
			c->head_len = head;
			c->chunk_dropped = 0;
		}
		rc = http_chunked_feed(&c->chunk, p + head + c->chunk_used,
				       n - head - c->chunk_used, &used, &c->body, cfg->max_value);
		c->chunk_used += used;
		if (rc < 0) {
			protocol_error(c, -rc);
			return n;
		}
		if (c->chunk_dropped + c->chunk_used > 2 * cfg->max_value + CHUNK_SLACK) {
			/* framing is bounded too: a body of 1-byte chunks with long
			 * extensions would be decoded for ever */
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

/* The head of c's answers came back for more room: nothing more is parsed
 * until it has been made (what queues behind it cannot leave before it). */
static bool head_needs_room(const struct conn *c)
{
	struct slot *s = c->pipe.head;

	return s && s->state == SLOT_WAITING && fwd_of_slot(s)->needs_room;
}

/*
 * Whether input must wait.  An answer still out at another shard has no
 * size yet, so their number is bounded too: a client that pipelines GETs of
 * large values and reads nothing makes this connection hold at most OUT_MAX
 * plus INFLIGHT_MAX answers, not PEND_MAX of them.
 */
bool conn_congested(const struct conn *c)
{
	/* most calls: no slot, so no queue or in-flight bound, no bounced head */
	if (!c->pipe.head)
		return conn_unsent(c) >= CONN_OUT_MAX || shard_memory_tight(c->sh) ||
		       (c->resp && cmd_busy(c));
	return c->pipe.queued >= PEND_MAX || c->pipe.waiting >= INFLIGHT_MAX ||
	       conn_unsent(c) >= CONN_OUT_MAX || shard_memory_tight(c->sh) ||
	       head_needs_room(c) || (c->resp && cmd_busy(c));
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

/*
 * A chunked body being received: the encoded bytes already decoded into
 * c->body are dropped from c->in, which keeps only the head and what is not
 * decoded yet, so the input of one request is bounded by --max-head +
 * --max-value (+ one receive buffer), chunked or not.
 */
static void compact_chunked(struct conn *c)
{
	size_t from = c->in_off + c->head_len, n = c->chunk_used;

	if (c->state != RS_BODY || !c->chunked || !n || c->in.len < from + n)
		return;
	memmove(c->in.data + from, c->in.data + from + n, c->in.len - from - n);
	c->in.len -= n;
	c->chunk_dropped += n;
	c->chunk_used = 0;
}

/* Drops the handled bytes from the front of c->in. */
static void in_compact(struct conn *c)
{
	buf_consume(&c->in, c->in_off);
	c->in_off = 0;
}

static void in_clear(struct conn *c)
{
	c->in.len = 0;
	c->in_off = 0;
}

/*
 * Handles what is buffered in conn->in.  Handled bytes are dropped from its
 * front only once they are all of it or at least half of it, so every byte
 * moves at most once on average: a paused connection handles its buffered
 * pipeline a few requests per turn, and moving the rest of a megabyte each
 * time made that quadratic.
 */
static void conn_process(struct conn *c)
{
	c->in_off += process_bytes(c, c->in.data + c->in_off, c->in.len - c->in_off);
	if (c->pipe.close || (c->flags & C_CLOSED) || c->in_off == c->in.len)
		in_clear(c);
	else if (c->in_off * 2 >= c->in.len)
		in_compact(c);
	compact_chunked(c);
	buf_trim(c, &c->in);
}

/* Appends received bytes behind what is not handled yet. */
static int in_append(struct conn *c, const char *data, size_t n)
{
	if (c->in_off)
		in_compact(c);  /* at most what one request left, or a pause's backlog once */
	return buf_append(&c->in, data, n);
}

/*
 * A paused connection stops reading at once: what it has buffered is at
 * most the request in progress plus what the kernel had already delivered,
 * and the socket's buffers fill until the client stops (back-pressure).
 * A recv still delivering after its cancel completed (the cancel found it
 * running: -EALREADY) is cancelled again at its next completion, so C_RECV
 * rather than C_RECV_OFF decides.
 */
static void stop_reading_if_paused(struct conn *c)
{
	if ((c->flags & C_PAUSED) && (c->flags & C_RECV) && !(c->flags & C_CANCELING)) {
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

		/* the server-side latency of what this completes starts at
		 * sh->now_ns: when this turn of the loop found its completions
		 * (one clock read per turn, not per completion: shard.h) */
		c->last_active_ns = sh->now_ns;
		stats_add(&sh->stats->received_bytes, (uint64_t)res);
		if (conn_closing(c)) {
			/* closing: input is read only to be discarded */
		} else if (c->in.len == 0 && conn_accepts_input(c)) {
			size_t used = process_bytes(c, data, (size_t)res);
			if (used < (size_t)res && !conn_closing(c)) {
				if (in_append(c, data + used, (size_t)res - used))
					conn_abort(c);
				else
					compact_chunked(c);
			}
		} else {
			if (in_append(c, data, (size_t)res))
				conn_abort(c);
			else if (conn_accepts_input(c))
				conn_process(c);
		}
		shard_recycle_buffer(sh, bid);
		stop_reading_if_paused(c);
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
				      ((c->flags & C_PAUSED) && c->in.len > c->in_off)))
			eof_settle(c); /* half-close: answer what was asked */
		else
			conn_abort(c);
	}
	/* ended by ENOBUFS, a cancel or the kernel: re-armed if still wanted */
	if (!more)
		recv_update(c);
	if (c->flags & C_CLOSED || c->pipe.close)
		shard_dirty(sh, c);
	conn_account(c);
}

/*
 * An abort while the recv's cancel (back-pressure) was in flight could not
 * send its own (one at a time): it goes now, or the poll for a reset (and a
 * send) would stay armed until a sweep, and at a stop, which sweeps no more,
 * the connection held the shard's teardown to its bound.  Only after a
 * recv's cancel: an abort's that left something armed (the kernel's lost
 * final completion, conn_abort()) is retried by the sweep, not at once for
 * ever.
 */
void conn_on_cancel(struct conn *c)
{
	bool all = c->flags & C_CANCEL_ALL;

	c->flags &= ~(C_CANCELING | C_CANCEL_ALL);
	recv_update(c); /* resumed while the cancel was in flight */
	if (c->flags & C_CLOSED) {
		if (!all)
			cancel_all(c);
		shard_dirty(c->sh, c);
	}
}

static void start_send(struct conn *c)
{
	struct io_uring_sqe *sqe = shard_sqe(c->sh);

	if (!sqe) {
		conn_abort(c);
		return;
	}
	c->send_ns = c->sh->now_ns;
	if (c->sending.nrefs == 0) {
		io_uring_prep_send(sqe, c->fd, c->sending.bytes.data + c->sent,
				   c->sending.bytes.len - c->sent, MSG_NOSIGNAL);
		io_uring_sqe_set_data64(sqe, shard_udata(c, OP_SEND));
	} else {
		/* heads from the buffer, values from their stores: one sendmsg
		 * (what does not fit CONN_IOV goes in the next one), zero-copy
		 * from --send-zc-min on */
		memset(&c->msg, 0, sizeof(c->msg));
		c->msg.msg_iov = c->iov;
		c->msg.msg_iovlen = outq_iov(&c->sending, c->sent, c->iov, CONN_IOV);
		struct outq_zc *z = outq_prep_sendmsg(&c->sending, c, sqe, c->fd, &c->msg,
						      c->flags & C_TCP);
		io_uring_sqe_set_data64(sqe, z ? shard_udata(z, OP_SEND_ZC) : shard_udata(c, OP_SEND));
	}
	c->flags |= C_SEND;
}

/* Starts sending what is ready, unless a send is in flight already. */
static void send_ready(struct conn *c)
{
	if (!(c->flags & C_SEND) && outq_len(&c->pipe.out) > 0) {
		outq_swap(&c->sending, &c->pipe.out);
		c->sent = 0;
		start_send(c);
		/* the answers in this send: their server-side latency ends at
		 * this turn's flush (conn_flush), which reads no clock itself */
		pipeline_sent(&c->pipe);
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
	/* the sends of this turn, here or when their requests came in
	 * (conn_on_recv), go to the kernel at the next io_uring_enter:
	 * exchange() read the clock for them just before the flush */
	pipeline_timed(&c->pipe, sh->now_ns);
	c->flags &= ~C_DIRTY;
	if (c->flags & C_CLOSED)
		conn_maybe_free(c); /* the one place a connection is freed */
	else
		conn_account(c);
}

void conn_maybe_resume(struct conn *c)
{
	if (!(c->flags & C_PAUSED) || conn_congested(c) || outq_len(&c->sending) - c->sent)
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
	if (c->sent < outq_len(&c->sending)) {
		outq_release_sent(&c->sending, c->sent);
		start_send(c);
		return;
	}
	outq_clear(&c->sending); /* the values sent from stores are let go */
	c->sent = 0;
	buf_trim(c, &c->sending.bytes); /* becomes `out` at the next send */
	resend_bounced(c);
	conn_maybe_resume(c);
	shard_dirty(sh, c);
	/* now, not at the flush: a resumed connection may have grown, and the
	 * next completion of this turn must see it (--conn-memory) */
	conn_account(c);
}

/*
 * A connection whose queue was sent zero-copy lives until the kernel's last
 * notification (conn_maybe_free): the hold's owner is still here.
 */
void conn_on_send_zc(struct outq_zc *z, struct io_uring_cqe *cqe)
{
	int res;
	struct conn *c = outq_zc_complete(z, cqe, &res);

	if (res != OUTQ_ZC_NOTIF)
		conn_on_send(c, res);
	else
		shard_dirty(c->sh, c);  /* memory let go; a closed one may be freed */
}

/*
 * The head of c's answers came back unanswered (its answer was larger than
 * its room): it is sent again with room for it once the connection's other
 * unsent answers leave that much under CONN_OUT_MAX, or have all gone (one
 * answer of up to --max-value may then pass CONN_OUT_MAX: B in conn.h).
 */
static void resend_bounced(struct conn *c)
{
	struct slot *s = c->pipe.head;

	if (!s || s->state != SLOT_WAITING || (c->flags & C_CLOSED))
		return;
	struct fwd *f = fwd_of_slot(s);
	if (!f->needs_room)
		return; /* still out, or answered: the owner's fields are not ours to read */
	/* only what is ahead of it can drain: what queued behind waits for it */
	size_t ahead = outq_len(&c->sending) - c->sent + outq_len(&c->pipe.out);
	if (ahead && (ahead + f->needed > CONN_OUT_MAX || shard_memory_tight(c->sh)))
		return; /* conn_on_send calls again as output drains */
	if (fwd_conflicts(f)) {
		/* a later write to the key was sent meanwhile: the read cannot be
		 * made again as it was (RFC 9112 9.3.2: not in parallel with an
		 * unsafe request), so it is refused, to be retried */
		reply_status(&f->r, 503, "answer too large to hold behind later requests\n");
		f->r.headers = "Retry-After: 1\r\n";
		f->needs_room = false;
		if (f->to.proto == PROTO_HTTP)
			f->to.http.date = c->sh->date;
		pipeline_render(&f->slot, &f->r, &f->to);
		pipeline_complete(&c->pipe, s, clock_mono_ns());
		shard_dirty(c->sh, c);
		return;
	}
	pipeline_reserve(&c->pipe, s, f->needed);
	fwd_resend(c->sh, f, f->needed);
}

void conn_bounced(struct conn *c, struct slot *s)
{
	(void)s;
	resend_bounced(c);
	conn_account(c);
}

void conn_complete(struct conn *c, struct slot *s)
{
	pipeline_complete(&c->pipe, s, clock_mono_ns());
	shard_dirty(c->sh, c);
	if (!(c->flags & C_CLOSED)) {
		resend_bounced(c);
		conn_maybe_resume(c);
	}
	conn_account(c);
}

/*
 * Frees c's drained buffers (the shard is over its share: buf_trim): input
 * all handled, no chunked body being decoded, nothing to send and no send
 * in flight (the kernel reads `sending` until its completion).
 */
static void shed_idle_buffers(struct conn *c)
{
	if (c->in_off == c->in.len)
		in_clear(c);
	buf_trim(c, &c->in);
	buf_trim(c, &c->body);
	if (!(c->flags & C_SEND) && outq_len(&c->sending) == 0)
		buf_trim(c, &c->sending.bytes);
	if (outq_len(&c->pipe.out) == 0)
		buf_trim(c, &c->pipe.out.bytes);
	conn_account(c);
}

/*
 * A connection with a request under way (req_start_ns) keeps reading until
 * that request is whole and handles it, then pauses (conn_congested() after
 * it): paused halfway, its input could only be freed by the rest of it, and
 * connections paused halfway with enough input between them would hold the
 * shard over 7/8 of its share until --request-timeout answered them 408.
 * README "Memory per connection" counts the rest of that request as what may
 * land past the share.
 */
void conn_pause_all(struct shard *sh)
{
	for (uint32_t i = 0; i < sh->nconns; i++) {
		struct conn *c = sh->conns[i];
		if (c->flags & C_CLOSED)
			continue;
		if (!c->req_start_ns) {
			c->flags |= C_PAUSED;
			stop_reading_if_paused(c);
		}
		shed_idle_buffers(c);
	}
}

void conn_resume_paused(struct shard *sh)
{
	for (uint32_t i = 0; i < sh->nconns; i++) {
		struct conn *c = sh->conns[i];
		if ((c->flags & C_PAUSED) && !(c->flags & C_CLOSED)) {
			conn_maybe_resume(c);
			conn_account(c);
		}
	}
}

/* Timeouts, checked a few times a second. */
void conn_sweep(struct shard *sh)
{
	const struct config *cfg = sh->cfg;
	uint64_t idle = (uint64_t)cfg->idle_timeout * 1000000000ull;
	uint64_t reqt = (uint64_t)cfg->request_timeout * 1000000000ull;

	for (uint32_t i = 0; i < sh->nconns; i++) {
		struct conn *c = sh->conns[i];

		if (c->flags & C_CLOSED) {
			cancel_all(c); /* still armed: see conn_abort() */
			/* ended, but its last zero-copy send is still in the
			 * socket: a peer that reads nothing would keep those
			 * pages (and the pins) until TCP gives up; one still
			 * reading gets what the socket holds */
			if (outq_zc_busy(&c->sending) &&
			    outq_stalled(&c->sending, c->fd, sh->now_ns, idle))
				outq_zc_drop(c->fd);
			continue;
		}
		if (c->flags & C_LINGER) {
			if (sh->now_ns > c->linger_until_ns)
				conn_abort(c);
		} else if ((c->flags & C_SEND) && sh->now_ns - c->send_ns > idle &&
			   outq_stalled(&c->sending, c->fd, sh->now_ns, idle)) {
			conn_abort(c); /* the client stopped reading */
		} else if (c->req_start_ns && sh->now_ns - c->req_start_ns > reqt &&
			   !c->pipe.close) {
			in_clear(c);
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
