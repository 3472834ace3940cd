/*
 * l2read.c - a shard's own read connection to Redis on the shard's io_uring
 * (l2read.h).  What to send and what the replies mean is struct coh_read's
 * (src/coherence/read.c); this file moves the bytes:
 *
 *   DOWN ── coh_read_open (socket) ── CONNECT SQE ──▶ connected: multishot
 *     ▲                                              recv armed, handshake sent
 *     │                                                       │
 *     └── every operation ended, close(fd) ◀── drop(): shutdown(), cancel the
 *                                              connect; reads in flight ERROR
 *
 * No system call per read: a read is appended to the connection's output
 * and goes out with the send SQE queued at the end of the loop's iteration
 * (l2read_flush), in the same io_uring_enter as the shard's answers; replies
 * arrive through the multishot recv, in the shard's provided buffers.  The
 * only calls of our own are per connection: socket(), setsockopt(),
 * shutdown() and close().
 *
 * Deadlines without busy-waiting: while reads are in flight one timeout SQE
 * is armed for the nearest deadline (absolute, CLOCK_MONOTONIC), so a
 * parked shard wakes for it; read deadlines are in send order, so one timer
 * is enough and a read added later never needs an earlier one.  The
 * handshake's deadline (connect_timeout_ms) and the reconnect backoff are
 * looked at once per loop iteration (l2read_tick), which a parked shard
 * runs at least every 250 ms.
 *
 * Each SQE's user_data points at one of the struct l2read_op below (tag
 * OP_L2), which says what it was.  The socket is closed only once no SQE
 * refers to it, so a new socket reusing the number cannot get a stale
 * completion.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "l2.h"
#include "l2read.h"
#include "shard.h"
#include "ringcache/buf.h"
#include "ringcache/clock.h"
#include "ringcache/coherence.h"

enum l2read_kind {
	RD_CONNECT = 1,
	RD_RECV = 2,
	RD_SEND = 4,
	RD_TIMER = 8,
	RD_CANCEL = 16,
};

/* What an SQE's user_data points at (8-aligned, so the tag fits below). */
struct l2read_op {
	alignas(8) uint8_t kind;        /* enum l2read_kind */
	struct l2read *rd;
};

struct l2read {
	struct shard *sh;
	struct coh_read *cr;
	int fd;                         /* -1: none */
	bool closing;                   /* dropped; fd closed once `inflight` is 0 */
	bool recv_armed;
	unsigned inflight;              /* enum l2read_kind bits: SQEs on fd in flight */
	struct buf sending;             /* the send in flight */
	size_t sent;
	bool timer_armed;
	struct __kernel_timespec ts;    /* the armed timer's deadline (read at submit) */
	struct l2read_op op_connect, op_recv, op_send, op_timer, op_cancel;
};

struct l2read *l2read_create(struct shard *sh)
{
	struct l2read *rd = calloc(1, sizeof(*rd));

	if (!rd)
		return NULL;
	if (coh_read_create(&rd->cr, sh->srv->coh, sh->id)) {
		free(rd);
		return NULL;
	}
	rd->sh = sh;
	rd->fd = -1;
	struct l2read_op *ops[] = { &rd->op_connect, &rd->op_recv, &rd->op_send, &rd->op_timer,
				    &rd->op_cancel };
	const uint8_t kinds[] = { RD_CONNECT, RD_RECV, RD_SEND, RD_TIMER, RD_CANCEL };
	for (size_t i = 0; i < sizeof(kinds); i++) {
		ops[i]->kind = kinds[i];
		ops[i]->rd = rd;
	}
	return rd;
}

void l2read_destroy(struct l2read *rd)
{
	if (!rd)
		return;
	if (rd->fd != -1) {
		shutdown(rd->fd, SHUT_RDWR);    /* ends what the kernel still holds */
		close(rd->fd);
	}
	coh_read_destroy(rd->cr);   /* its messages' cookies are l2.c's, freed there */
	buf_deinit(&rd->sending);
	free(rd);
}

struct coh_read *l2read_conn(struct l2read *rd)
{
	return rd->cr;
}

static struct io_uring_sqe *sqe_for(struct l2read *rd, struct l2read_op *op)
{
	struct io_uring_sqe *sqe = shard_sqe(rd->sh);

	if (sqe)
		io_uring_sqe_set_data64(sqe, shard_udata(op, OP_L2));
	return sqe;
}

/* Hands every read the protocol completed back to l2.c. */
static void deliver(struct l2read *rd)
{
	struct coh_msg *m;

	while ((m = coh_read_done(rd->cr)))
		l2_read_done(rd->sh, m);
}

static void close_if_idle(struct l2read *rd)
{
	if (!rd->closing || (rd->inflight & (RD_CONNECT | RD_RECV | RD_SEND | RD_CANCEL)))
		return;
	close(rd->fd);
	rd->fd = -1;
	rd->closing = false;
	rd->recv_armed = false;
	rd->sending.len = 0;
	rd->sent = 0;
}

/* The connection is done for: its reads complete COH_ERROR now, the socket
 * goes once the kernel holds nothing of it, and coh_read_open() retries
 * after the backoff. */
static void drop(struct l2read *rd)
{
	struct io_uring_sqe *sqe;

	if (rd->fd == -1 || rd->closing)
		return;
	rd->closing = true;
	coh_read_lost(rd->cr, rd->sh->now_ns);
	/* ends the multishot recv and a send in flight (close() would not) */
	shutdown(rd->fd, SHUT_RDWR);
	if ((rd->inflight & RD_CONNECT) && (sqe = sqe_for(rd, &rd->op_cancel))) {
		io_uring_prep_cancel64(sqe, shard_udata(&rd->op_connect, OP_L2), 0);
		rd->inflight |= RD_CANCEL;
	}
	close_if_idle(rd);
	deliver(rd);
}

static void arm_recv(struct l2read *rd)
{
	struct io_uring_sqe *sqe = sqe_for(rd, &rd->op_recv);

	if (!sqe) {
		drop(rd);
		return;
	}
	io_uring_prep_recv_multishot(sqe, rd->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = 0;
	rd->inflight |= RD_RECV;
	rd->recv_armed = true;
}

static void start_send(struct l2read *rd)
{
	struct io_uring_sqe *sqe = sqe_for(rd, &rd->op_send);

	if (!sqe) {
		drop(rd);
		return;
	}
	io_uring_prep_send(sqe, rd->fd, rd->sending.data + rd->sent, rd->sending.len - rd->sent,
			   MSG_NOSIGNAL);
	rd->inflight |= RD_SEND;
}

/* One timer for the nearest read deadline, armed only while the connection
 * is ready (handshakes are timed by l2read_tick). */
static void arm_timer(struct l2read *rd)
{
	uint64_t at;
	struct io_uring_sqe *sqe;

	if (rd->timer_armed || coh_read_state(rd->cr) != COH_READ_READY ||
	    !(at = coh_read_next_wake(rd->cr)) || !(sqe = sqe_for(rd, &rd->op_timer)))
		return;
	rd->ts.tv_sec = (long long)(at / 1000000000u);
	rd->ts.tv_nsec = (long long)(at % 1000000000u);
	io_uring_prep_timeout(sqe, &rd->ts, 0, IORING_TIMEOUT_ABS);
	rd->timer_armed = true;
}

bool l2read_waiting(const struct l2read *rd, uint64_t now)
{
	uint64_t since = coh_read_waiting_since(rd->cr);

	return since && now < since + L2READ_SPIN_NS;
}

void l2read_flush(struct l2read *rd)
{
	if (rd->fd == -1 || rd->closing || (rd->inflight & RD_SEND))
		return;
	if (coh_read_output(rd->cr, &rd->sending)) {
		rd->sent = 0;
		start_send(rd);
	}
	arm_timer(rd);
}

void l2read_tick(struct l2read *rd)
{
	struct shard *sh = rd->sh;

	if (sh->stopping) {
		drop(rd);
		return;
	}
	if (rd->fd != -1) {
		if (!rd->closing && coh_read_timers(rd->cr, sh->now_ns) < 0)
			drop(rd);
		deliver(rd);
		return;
	}
	const void *addr;
	uint32_t len;
	int fd;
	if (coh_read_open(rd->cr, sh->now_ns, &fd, &addr, &len))
		return;
	struct io_uring_sqe *sqe = sqe_for(rd, &rd->op_connect);
	rd->fd = fd;
	if (!sqe) {
		rd->closing = true;
		coh_read_lost(rd->cr, sh->now_ns);
		close_if_idle(rd);
		return;
	}
	io_uring_prep_connect(sqe, fd, (const struct sockaddr *)addr, len);
	rd->inflight |= RD_CONNECT;
}

static void on_recv(struct l2read *rd, const struct io_uring_cqe *cqe)
{
	struct shard *sh = rd->sh;
	int res = cqe->res;

	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		rd->inflight &= ~(unsigned)RD_RECV;
		rd->recv_armed = false;
	}
	if (res > 0 && (cqe->flags & IORING_CQE_F_BUFFER)) {
		unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		int rc = 0;
		sh->now_ns = clock_mono_ns();
		if (!rd->closing)
			rc = coh_read_input(rd->cr, sh->bufs + (size_t)bid * sh->buf_size,
					    (size_t)res, sh->now_ns);
		shard_recycle_buffer(sh, bid);
		if (rc < 0)
			drop(rd);
		deliver(rd);
	} else if (res == 0 || (res < 0 && res != -ENOBUFS && res != -ECANCELED)) {
		drop(rd);       /* EOF or error */
	}
	/* ended by ENOBUFS (the data waits in the socket): armed again */
	if (!rd->recv_armed && !rd->closing && rd->fd != -1)
		arm_recv(rd);
	close_if_idle(rd);
}

static void on_send(struct l2read *rd, int res)
{
	rd->inflight &= ~(unsigned)RD_SEND;
	if (rd->closing) {
		close_if_idle(rd);
		return;
	}
	if (res < 0) {
		drop(rd);
		return;
	}
	rd->sent += (size_t)res;
	if (rd->sent < rd->sending.len) {
		start_send(rd);
		return;
	}
	rd->sending.len = 0;
	rd->sent = 0;
	l2read_flush(rd);       /* what was queued while this one was out */
}

void l2read_on_cqe(void *p, const struct io_uring_cqe *cqe)
{
	struct l2read_op *op = p;
	struct l2read *rd = op->rd;

	switch ((enum l2read_kind)op->kind) {
	case RD_CONNECT:
		rd->inflight &= ~(unsigned)RD_CONNECT;
		if (rd->closing) {
			close_if_idle(rd);
		} else if (coh_read_connected(rd->cr, cqe->res, rd->sh->now_ns) < 0) {
			drop(rd);
		} else {
			arm_recv(rd);
			l2read_flush(rd);
		}
		break;
	case RD_RECV:
		on_recv(rd, cqe);
		break;
	case RD_SEND:
		on_send(rd, cqe->res);
		break;
	case RD_TIMER:
		rd->timer_armed = false;
		rd->sh->now_ns = clock_mono_ns();
		if (rd->fd != -1 && !rd->closing &&
		    coh_read_timers(rd->cr, rd->sh->now_ns) < 0)
			drop(rd);
		deliver(rd);
		arm_timer(rd);
		break;
	case RD_CANCEL:
		rd->inflight &= ~(unsigned)RD_CANCEL;
		close_if_idle(rd);
		break;
	}
}
