/*
 * read.c - a shard's own read connection to Redis: the protocol half
 * (coherence.h, "A shard's own read connection").  The shard's loop owns the
 * socket and moves the bytes through its io_uring (src/shard/l2read.c);
 * everything about what the bytes mean is here, made of the command
 * connection's parts: the RESP encoding, hiredis' reader with the reply
 * bounds, the FIFO of awaited replies (conn.c), the handshake, the backoff,
 * and the GET + PTTL decoding (msg.c).
 *
 * Why a connection per shard: an L1 miss answered through the coherence
 * thread costs two hand-offs between threads (shard -> coherence ->
 * shard), each a wake-up of a parked thread (~90 us on the development
 * VM), on top of the Redis round trip.  Here the owner shard sends GET +
 * PTTL itself, in the same io_uring_enter that sends its client answers.
 *
 * The rules the coherence thread's reads follow hold for these too:
 *
 *  - breaker: no read is sent while the gate says open (COH_SKIPPED at
 *    once), and breaker_failures consecutive failures here (deadlines,
 *    error replies) drop this connection and trip the thread's breaker
 *    through `trips` (a slow Redis is down for everyone);
 *  - no stale value after a lost subscription: a read completes with
 *    COH_F_NOCACHE when the gate (which carries the subscription epoch)
 *    changed while it was in flight.  The thread publishes the new epoch
 *    before it takes the store time of the loss (link.c), and the gate is
 *    loaded (seq_cst) after the shard took the store time it stamps items
 *    with, so an item a read stored without seeing the new epoch is older
 *    than the FLUSH's `older_than`, and is flushed;
 *  - ordering behind writes: a read here can overtake a write still on its
 *    way to Redis through the command connection.  The shard holds back
 *    reads of keys it has writes in flight for (l2.c); the writes whose
 *    fate the shard no longer follows (answered TIMEOUT or SKIPPED) are
 *    counted in `unsettled`, and while any are, every read goes through the
 *    coherence thread, which orders it behind them on its connection;
 *  - deadlines: each read has timeout_ms; past it the read completes
 *    COH_TIMEOUT and its late reply is read and dropped.
 *
 * The replies to a read are two in a row (GET's, then PTTL's), so the GET
 * reply waits in `held` until the PTTL reply completes the read.  The
 * PTTL's entry in the FIFO carries the message and the deadline; the GET's
 * carries neither.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "msg.h"
#include "state.h"
#include "ringcache/clock.h"

int coh_read_create(struct coh_read **out, struct coh *c, unsigned shard)
{
	struct coh_read *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->c = c;
	r->cs = &c->shards[shard];
	coh_conn_init(&r->cn, "shard read");
	r->cn.backoff_ms = c->backoff_min_ms;
	r->done_tail = &r->done;
	r->rng = (clock_mono_ns() ^ ((uint64_t)shard << 32)) | 1;
	*out = r;
	return 0;
}

/* The PTTL entry of each read in flight owns its message (conn.h's FIFO). */
static struct coh_msg *entry_msg(struct coh_pend *p)
{
	return p->kind == COH_P_PTTL ? p->p : NULL;
}

void coh_read_destroy(struct coh_read *r)
{
	if (!r)
		return;
	for (uint32_t i = 0; i < r->cn.q_len; i++)
		coh_msg_destroy(entry_msg(coh_conn_at(&r->cn, i)));
	while (r->done) {
		struct coh_msg *m = r->done;
		r->done = m->next;
		coh_msg_destroy(m);
	}
	if (r->held)
		freeReplyObject(r->held);
	coh_conn_deinit(&r->cn);
	free(r);
}

enum coh_read_state coh_read_state(const struct coh_read *r)
{
	return (enum coh_read_state)r->cn.state;
}

static void finish(struct coh_read *r, struct coh_msg *m, enum coh_status st)
{
	m->status = (uint8_t)st;
	switch (st) {
	case COH_TIMEOUT: COH_ADD(r->cs, timeouts, 1); break;
	case COH_ERROR: COH_ADD(r->cs, errors, 1); break;
	case COH_MISS:
	case COH_BAD_DATA: COH_ADD(r->cs, get_misses, 1); break;
	case COH_OK: COH_ADD(r->cs, get_hits, 1); break;
	default: break;
	}
	m->next = NULL;
	*r->done_tail = m;
	r->done_tail = &m->next;
}

struct coh_msg *coh_read_done(struct coh_read *r)
{
	struct coh_msg *m = r->done;

	if (m) {
		r->done = m->next;
		if (!r->done)
			r->done_tail = &r->done;
		m->next = NULL;
	}
	return m;
}

/*
 * One more failure in a row.  True when they reached breaker_failures: the
 * thread's breaker is tripped (the doorbell follows ring.h's protocol: the
 * count is stored seq_cst, then `parked` is read), and this connection must
 * go, its pipeline stuck behind late replies.
 */
static bool failed(struct coh_read *r)
{
	static const uint64_t one = 1;

	if (++r->failures < r->c->breaker_failures)
		return false;
	r->failures = 0;
	atomic_fetch_add_explicit(&r->cs->trips, 1, memory_order_seq_cst);
	if (atomic_load_explicit(&r->c->parked, memory_order_seq_cst)) {
		ssize_t n = write(r->c->efd, &one, sizeof(one));
		(void)n;    /* EAGAIN only if the counter is saturated: already awake */
	}
	return true;
}

int coh_read_open(struct coh_read *r, uint64_t now, int *fd, const void **addr,
		  uint32_t *addr_len)
{
	struct coh *c = r->c;
	int one = 1, s;

	if (r->cn.state != COH_CONN_DOWN || now < r->cn.retry_at)
		return -EAGAIN;
	if (pthread_mutex_trylock(&c->addr_lock) != 0)
		return -EAGAIN;         /* the thread is writing it: next time */
	r->addr_len = c->addr_len;
	memcpy(&r->addr, &c->addr, sizeof(r->addr));
	pthread_mutex_unlock(&c->addr_lock);
	if (!r->addr_len) {
		/* the command connection never got through: nothing to try yet */
		r->cn.retry_at = now + (uint64_t)c->backoff_min_ms * COH_MS;
		return -EAGAIN;
	}
	s = socket(r->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s == -1) {
		int err = -errno;
		COH_ADD(r->cs, connect_failures, 1);
		coh_conn_backoff(&r->cn, now, false, &r->rng, c->backoff_min_ms, c->backoff_max_ms);
		return err;
	}
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	r->cn.out.len = 0;
	r->cn.out_off = 0;
	if (coh_conn_hello(&r->cn, &c->url, true, NULL)) {
		close(s);
		coh_conn_close(&r->cn);
		COH_ADD(r->cs, connect_failures, 1);
		coh_conn_backoff(&r->cn, now, false, &r->rng, c->backoff_min_ms, c->backoff_max_ms);
		return -ENOMEM;
	}
	r->cn.state = COH_CONN_CONNECTING;
	r->cn.deadline = now + c->connect_timeout_ns;
	*fd = s;
	*addr = &r->addr;
	*addr_len = r->addr_len;
	return 0;
}

int coh_read_connected(struct coh_read *r, int res, uint64_t now)
{
	(void)now;
	if (r->cn.state != COH_CONN_CONNECTING)
		return 0;
	if (res < 0)
		return res;
	r->cn.state = COH_CONN_HANDSHAKE;
	return 0;
}

size_t coh_read_output(struct coh_read *r, struct buf *out)
{
	struct buf t;

	if (r->cn.state == COH_CONN_DOWN || r->cn.state == COH_CONN_CONNECTING ||
	    r->cn.out.len == 0 || out->len != 0)
		return 0;
	t = r->cn.out;
	r->cn.out = *out;
	*out = t;
	return out->len;
}

void coh_read_lost(struct coh_read *r, uint64_t now)
{
	struct coh *c = r->c;
	bool was_ready = r->cn.state == COH_CONN_READY;
	struct coh_pend *p;

	if (r->cn.state == COH_CONN_DOWN)
		return;
	while ((p = coh_conn_front(&r->cn))) {
		struct coh_msg *m = entry_msg(p);
		coh_conn_pop(&r->cn);
		if (m)
			finish(r, m, COH_ERROR);
	}
	if (r->held)
		freeReplyObject(r->held);
	r->held = NULL;
	r->failures = 0;
	coh_conn_close(&r->cn);
	if (!was_ready)
		COH_ADD(r->cs, connect_failures, 1);
	COH_SET(r->cs, shard_conns, 0);
	coh_conn_backoff(&r->cn, now, was_ready, &r->rng, c->backoff_min_ms, c->backoff_max_ms);
}

/* The PTTL reply completes the read whose GET reply is held.  True when the
 * connection must go (breaker_failures failures in a row). */
static bool complete(struct coh_read *r, struct coh_msg *m, const redisReply *pttl)
{
	redisReply *v = r->held;
	struct coh_got got;
	bool gone = false;

	r->held = NULL;
	if (!m)
		goto done;              /* answered COH_TIMEOUT already: a late reply */
	coh_get_decode(v, pttl, &got);
	if (got.status == COH_ERROR) {
		gone = failed(r);
	} else {
		r->failures = 0;
	}
	if (got.status == COH_BAD_DATA)
		COH_ADD(r->cs, bad_data, 1);
	if (got.status == COH_OK) {
		/* seq_cst: see the file's comment on the subscription epoch */
		uint64_t gate = atomic_load_explicit(&r->c->gate, memory_order_seq_cst);
		uint16_t flags = gate != m->seq ? COH_F_NOCACHE : 0;
		if (got.raw)
			COH_ADD(r->cs, raw_values, 1);
		coh_msg_take_value(m, v, &got, flags, false);
	}
	finish(r, m, (enum coh_status)got.status);
done:
	if (v)
		freeReplyObject(v);
	return gone;
}

int coh_read_input(struct coh_read *r, const char *p, size_t n, uint64_t now)
{
	redisReply *rep;
	int rc;

	(void)now;
	if (r->cn.state == COH_CONN_DOWN || r->cn.state == COH_CONN_CONNECTING)
		return 0;               /* what a dropped connection still delivers */
	if (coh_conn_feed(&r->cn, p, n))
		return -ENOMEM;
	while ((rc = coh_conn_reply(&r->cn, &rep)) > 0) {
		struct coh_pend *front = coh_conn_front(&r->cn);
		if (!front) {
			freeReplyObject(rep);
			return -EPROTO;     /* a reply to nothing we sent */
		}
		struct coh_pend e = *front;
		coh_conn_pop(&r->cn);
		switch (e.kind) {
		case COH_P_HANDSHAKE:
		case COH_P_READY: {
			bool ok = coh_conn_hello_ok(e.kind, rep, false);
			freeReplyObject(rep);
			if (!ok)
				return -EACCES;
			if (e.kind == COH_P_READY) {
				r->cn.state = COH_CONN_READY;
				r->cn.backoff_ms = r->c->backoff_min_ms;
				r->failures = 0;
				COH_ADD(r->cs, connects, 1);
				COH_SET(r->cs, shard_conns, 1);
			}
			break;
		}
		case COH_P_GET:
			if (r->held)
				freeReplyObject(r->held);
			r->held = rep;
			break;
		case COH_P_PTTL: {
			bool gone = complete(r, e.p, rep);
			freeReplyObject(rep);
			if (gone)
				return -ETIMEDOUT;
			break;
		}
		default:
			freeReplyObject(rep);
			return -EPROTO;
		}
	}
	return rc < 0 ? rc : 0;
}

int coh_read_timers(struct coh_read *r, uint64_t now)
{
	struct coh_conn *cn = &r->cn;

	if (cn->state == COH_CONN_CONNECTING || cn->state == COH_CONN_HANDSHAKE)
		return now >= cn->deadline ? -ETIMEDOUT : 0;
	if (cn->state != COH_CONN_READY)
		return 0;
	/* deadlines are in submission order: stop at the first in the future */
	while (cn->q_checked < cn->q_len) {
		struct coh_pend *p = coh_conn_at(cn, cn->q_checked);
		if (p->deadline) {
			if (p->deadline > now)
				break;
			struct coh_msg *m = entry_msg(p);
			p->p = NULL;        /* its late reply completes nothing */
			if (m) {
				finish(r, m, COH_TIMEOUT);
				if (failed(r))
					return -ETIMEDOUT;
			}
		}
		cn->q_checked++;
	}
	return 0;
}

uint64_t coh_read_next_wake(const struct coh_read *r)
{
	const struct coh_conn *cn = &r->cn;

	if (cn->state == COH_CONN_CONNECTING || cn->state == COH_CONN_HANDSHAKE)
		return cn->deadline;
	if (cn->state != COH_CONN_READY)
		return 0;
	for (uint32_t i = cn->q_checked; i < cn->q_len; i++) {
		const struct coh_pend *p = &cn->q[(cn->q_head + i) & (cn->q_cap - 1)];
		if (p->deadline && p->p)
			return p->deadline;
	}
	return 0;
}

uint64_t coh_read_waiting_since(const struct coh_read *r)
{
	uint64_t due = r->cn.state == COH_CONN_READY ? coh_read_next_wake(r) : 0;

	return due ? due - r->c->timeout_ns : 0;
}

int coh_read_get(struct coh_read *r, struct coh_msg *m, uint64_t now)
{
	struct coh *c = r->c;
	struct coh_conn *cn = &r->cn;
	/* seq_cst: see the file's comment on the subscription epoch */
	uint64_t gate = atomic_load_explicit(&c->gate, memory_order_seq_cst);
	size_t mark = cn->out.len;

	if (gate & COH_GATE_OPEN) {
		COH_ADD(r->cs, gets, 1);
		COH_ADD(r->cs, skipped, 1);
		m->status = COH_SKIPPED;
		return -ECANCELED;
	}
	/* acquire: pairs with the release of each increase, made before the
	 * shard was answered the write it stands for */
	if (cn->state != COH_CONN_READY ||
	    atomic_load_explicit(&r->cs->unsettled, memory_order_acquire) != 0)
		return -EAGAIN;
	if (coh_conn_reserve(cn, 2))
		return -ENOMEM;
	int rc = coh_conn_array(cn, 2);
	rc |= coh_conn_bulk(cn, "GET", 3);
	rc |= coh_conn_bulk2(cn, c->prefix, c->prefix_len, m->key, m->key_len);
	rc |= coh_conn_array(cn, 2);
	rc |= coh_conn_bulk(cn, "PTTL", 4);
	rc |= coh_conn_bulk2(cn, c->prefix, c->prefix_len, m->key, m->key_len);
	if (rc) {
		cn->out.len = mark;     /* no half-written command */
		return -ENOMEM;
	}
	m->status = COH_OK;
	m->flags = 0;
	m->next = NULL;
	m->seq = gate;
	coh_conn_push(cn, COH_P_GET, 0, 0, NULL);
	coh_conn_push(cn, COH_P_PTTL, 0, now + c->timeout_ns, m);
	COH_ADD(r->cs, gets, 1);
	COH_ADD(r->cs, redis_gets, 1);
	COH_ADD(r->cs, shard_reads, 1);
	return 0;
}
