/*
 * link.c - the coherence thread's link to Redis: two connections, "cmd"
 * carrying every command, pipelined, and "sub" subscribed to
 * <prefix>invalidate; their connect and handshake, reconnect with backoff,
 * the breaker, the deadlines of commands in flight, the subscription's
 * health PING, and what a subscription loss costs.  The breaker is closed
 * (link_up) only while both connections are ready:
 *
 *            both READY                      failures >= breaker_failures,
 *   DOWN ─────────────────▶ UP  ───────────▶ a socket error or EOF, a
 *    ▲  (FLUSH first if the  │               subscription PING unanswered
 *    │   subscription was    │               for a heartbeat period
 *    │   lost, then replay)  ▼
 *    └──────────────────── DOWN: GET/CLUSTER -> SKIPPED, SET/DEL -> SKIPPED
 *                                and queued; reconnect with backoff
 *
 * Each connection goes DOWN -> CONNECTING -> HANDSHAKE -> READY (conn.h);
 * any failure takes it back to DOWN with a retry time.
 *
 * Why a subscription loss costs a FLUSH: pub/sub delivers nothing that was
 * published while we were not subscribed, so any L1 entry stored before the
 * loss was seen may have missed its invalidation.  While the link is down no
 * GET is sent (nothing new enters L1 from Redis) and writes are replayed
 * after the FLUSH, so entries stored after the loss are safe to keep.
 *
 * The shards' read connections (read.c) follow this state through the gate
 * published here (breaker state and subscription epoch), use the address
 * the command connection reached, and trip the breaker through their
 * `trips` counts, which the timers look at like failures of our own.
 *
 * Replies are matched to their commands here (FIFO per connection); what a
 * reply means to a request is ops.c's and registry.c's business.
 */
#include <poll.h>
#include <string.h>
#include <time.h>

#include "link.h"
#include "ops.h"
#include "registry.h"
#include "state.h"
#include "ringcache/clock.h"

#define SHUTDOWN_MIN_NS (20 * COH_MS)

static void schedule_retry(struct coh *c, struct coh_conn *cn, bool was_ready)
{
	if (!was_ready)
		COH_ADD(c, connect_failures, 1);
	coh_conn_backoff(cn, c->now, was_ready, &c->rng, c->backoff_min_ms, c->backoff_max_ms);
}

static void send_flush(struct coh *c)
{
	for (unsigned s = 0; s < c->nshards; s++) {
		struct coh_msg *m = coh_msg_create(COH_FLUSH, s, 0, NULL, 0, NULL, 0, 0);
		if (!m)
			continue;    /* no memory: that shard keeps entries it cannot prove */
		m->older_than = c->lost_at;
		coh_send(c, m);
	}
	COH_ADD(c, flushes, 1);
}

static void link_check(struct coh *c)
{
	bool up = c->cmd.state == COH_CONN_READY && c->sub.state == COH_CONN_READY &&
		  !atomic_load_explicit(&c->stop, memory_order_relaxed);

	if (up == c->link_up)
		return;
	c->link_up = up;
	COH_SET(c, breaker_open, up ? 0 : 1);
	coh_gate_publish(c);
	if (!up) {
		COH_ADD(c, breaker_opens, 1);
		return;
	}
	c->failures = 0;
	c->trip = false;
	if (c->sub_lost) {
		send_flush(c);
		c->sub_lost = false;
	}
	c->ever_up = true;
	coh_replay_start(c);
}

void coh_gate_publish(struct coh *c)
{
	/*
	 * Open too while the subscription is not READY, though link_up may
	 * still say up: coh_sub_lost() publishes its new epoch before
	 * link_check() takes the link down.  Published closed in between, the
	 * new epoch let a shard send a read during the outage (read.c), and
	 * that read, still in flight when the link came back up, found the
	 * same gate value at its reply (epoch unchanged, closed again: ABA)
	 * and was cached, though an invalidation may have been missed.
	 */
	bool open = !c->link_up || c->sub.state != COH_CONN_READY;
	uint64_t g = c->sub_epoch << 1 | (open ? COH_GATE_OPEN : 0);

	atomic_store_explicit(&c->gate, g, memory_order_seq_cst);
}

void coh_fail(struct coh *c)
{
	if (++c->failures >= c->breaker_failures)
		c->trip = true;
}

void coh_succeed(struct coh *c)
{
	c->failures = 0;
}

void coh_cmd_lost(struct coh *c)
{
	bool was_ready = c->cmd.state == COH_CONN_READY;

	coh_pend_abandon_all(c);
	coh_conn_close(&c->cmd);
	c->trip = false;
	c->failures = 0;
	schedule_retry(c, &c->cmd, was_ready);
	link_check(c);
}

void coh_sub_lost(struct coh *c)
{
	bool was_ready = c->sub.state == COH_CONN_READY;

	coh_conn_close(&c->sub);
	if (was_ready) {
		/*
		 * The new epoch is published before the store clock is read for
		 * lost_at: a shard read that completes without seeing it was
		 * stored in L1 at a store time no later than this reading, so
		 * the FLUSH (items stored before lost_at) covers it (read.c).
		 */
		c->sub_epoch++;
		coh_gate_publish(c);
		/*
		 * A full fence between that store and the clock read below.
		 * The seq_cst store alone is an STLR on ARM64, which lets later
		 * plain loads (the vDSO's read of the coarse clock) be satisfied
		 * before the store is visible to the shards: a shard could then
		 * read the next second on its store clock and still load the
		 * old gate, storing at a time not covered by lost_at.  (x86's
		 * seq_cst store is an XCHG, a full barrier already.  On the
		 * shard's side its clock read is ordered before its gate load
		 * by the seq_cst store of `turns` between them, shard.c.)
		 */
		atomic_thread_fence(memory_order_seq_cst);
		if (!c->sub_lost) {
			c->sub_lost = true;
			c->lost_at = clock_store_now() + 1;
		}
		c->ping_out = false;
		COH_SET(c, subscribed, 0);
	}
	schedule_retry(c, &c->sub, was_ready);
	link_check(c);
}

static void lost(struct coh *c, struct coh_conn *cn)
{
	if (cn == &c->cmd)
		coh_cmd_lost(c);
	else
		coh_sub_lost(c);
}

static void conn_try(struct coh *c, struct coh_conn *cn)
{
	bool sub = cn == &c->sub;
	int rc = coh_conn_open(cn, &c->url);

	if (rc) {
		schedule_retry(c, cn, false);
		return;
	}
	cn->deadline = c->now + c->connect_timeout_ns;
	if (coh_conn_hello(cn, &c->url, !sub, sub ? c->channel : NULL)) {
		coh_conn_close(cn);
		schedule_retry(c, cn, false);
	}
}

static bool is_message(const redisReply *r)
{
	return r->type == REDIS_REPLY_ARRAY && r->elements >= 3 &&
	       coh_reply_is(r->element[0], "message");
}

/* Whether a message's channel is the one we subscribed to (names are
 * case-sensitive in Redis). */
static bool our_channel(const struct coh *c, const redisReply *ch)
{
	size_t n = strlen(c->channel);

	return ch->type == REDIS_REPLY_STRING && ch->len == n && !memcmp(ch->str, c->channel, n);
}

/* The command connection is ready: the shards' read connections may use the
 * address it reached (they resolve no names of their own). */
static void publish_address(struct coh *c)
{
	pthread_mutex_lock(&c->addr_lock);
	memcpy(&c->addr, &c->cmd.addr, sizeof(c->addr));
	c->addr_len = c->cmd.addr_len;
	pthread_mutex_unlock(&c->addr_lock);
}

/* Returns false if the connection was dropped. */
static bool handshake_reply(struct coh *c, struct coh_conn *cn, const struct coh_pend *e,
			    redisReply *r)
{
	bool sub = cn == &c->sub;
	bool ok = coh_conn_hello_ok(e->kind, r, sub);

	freeReplyObject(r);
	if (!ok) {
		lost(c, cn);
		return false;
	}
	if (e->kind != COH_P_READY)
		return true;
	cn->state = COH_CONN_READY;
	cn->backoff_ms = c->backoff_min_ms;
	COH_ADD(c, connects, 1);
	if (sub) {
		c->ping_due = c->now + c->heartbeat_ns;
		c->ping_out = false;
		COH_SET(c, subscribed, 1);
	} else {
		c->failures = 0;
		c->heartbeat_due = c->now;
		publish_address(c);
	}
	link_check(c);
	return true;
}

static void cmd_replies(struct coh *c)
{
	redisReply *r;
	int rc = 0;

	while (c->cmd.fd != -1 && (rc = coh_conn_reply(&c->cmd, &r)) > 0) {
		struct coh_pend *p = coh_conn_front(&c->cmd);
		if (!p) {
			freeReplyObject(r);
			coh_cmd_lost(c);
			return;
		}
		struct coh_pend e = *p;
		coh_conn_pop(&c->cmd);
		if (e.kind == COH_P_HANDSHAKE || e.kind == COH_P_READY) {
			if (!handshake_reply(c, &c->cmd, &e, r))
				return;
		} else {
			coh_cmd_reply(c, &e, r);
		}
	}
	if (c->cmd.fd != -1 && rc < 0)
		coh_cmd_lost(c);
}

static void sub_replies(struct coh *c)
{
	redisReply *r;
	int rc = 0;

	while (c->sub.fd != -1 && (rc = coh_conn_reply(&c->sub, &r)) > 0) {
		if (is_message(r)) {
			bool flood = c->backlog_unsol >= COH_BACKLOG_UNSOL_MAX;
			if (!flood && c->sub.state == COH_CONN_READY) {
				if (our_channel(c, r->element[1]))
					coh_sub_message(c, r);
				else    /* not subscribed to: nothing we may act on */
					COH_ADD(c, invalidations_bad, 1);
			}
			freeReplyObject(r);
			if (flood) {
				/* faster than the shards take them (state.h) */
				COH_ADD(c, sub_overflows, 1);
				coh_sub_lost(c);
				return;
			}
			continue;
		}
		struct coh_pend *p = coh_conn_front(&c->sub);
		if (!p) {
			freeReplyObject(r);
			coh_sub_lost(c);
			return;
		}
		struct coh_pend e = *p;
		coh_conn_pop(&c->sub);
		if (e.kind == COH_P_HANDSHAKE || e.kind == COH_P_READY) {
			if (!handshake_reply(c, &c->sub, &e, r))
				return;
			continue;
		}
		if (e.kind == COH_P_PING)
			c->ping_out = false;
		freeReplyObject(r);
	}
	if (c->sub.fd != -1 && rc < 0)
		coh_sub_lost(c);
}

static void sub_ping(struct coh *c)
{
	if (c->ping_out) {
		coh_sub_lost(c);    /* a whole period without an answer */
		return;
	}
	int rc = coh_conn_array(&c->sub, 1);
	rc |= coh_conn_bulk(&c->sub, "PING", 4);
	rc |= coh_conn_push(&c->sub, COH_P_PING, 0, 0, NULL);
	if (rc) {
		coh_sub_lost(c);
		return;
	}
	c->ping_out = true;
	c->ping_due = c->now + c->heartbeat_ns;
}

/* Deadlines in the cmd queue are in submission order, so the scan stops at
 * the first one still in the future. */
static void expire(struct coh *c)
{
	struct coh_conn *cn = &c->cmd;

	while (cn->q_checked < cn->q_len) {
		struct coh_pend *p = coh_conn_at(cn, cn->q_checked);
		if (p->deadline) {
			if (p->deadline > c->now)
				break;
			if (!(p->flags & COH_PF_EXPIRED)) {
				p->flags |= COH_PF_EXPIRED;
				coh_pend_expire(c, p);
			}
		}
		cn->q_checked++;
	}
}

/* A shard's read connection gave up on timeouts: a slow Redis is treated
 * as down, as when the command connection's own reads time out. */
static void shard_trips(struct coh *c)
{
	for (unsigned s = 0; s < c->nshards; s++) {
		struct coh_shard *sh = &c->shards[s];
		uint64_t t = atomic_load_explicit(&sh->trips, memory_order_acquire);
		if (t == sh->trips_seen)
			continue;
		sh->trips_seen = t;
		COH_ADD(c, shard_trips, 1);
		if (c->link_up)
			c->trip = true;
	}
}

bool coh_link_tripped(struct coh *c)
{
	for (unsigned s = 0; s < c->nshards; s++)
		if (atomic_load_explicit(&c->shards[s].trips, memory_order_seq_cst) !=
		    c->shards[s].trips_seen)
			return true;
	return false;
}

void coh_link_timers(struct coh *c)
{
	bool stopping = atomic_load_explicit(&c->stop, memory_order_relaxed);
	struct coh_conn *conns[2] = { &c->cmd, &c->sub };

	shard_trips(c);

	for (int i = 0; i < 2; i++) {
		struct coh_conn *cn = conns[i];
		if (cn->state == COH_CONN_DOWN && c->now >= cn->retry_at && !stopping)
			conn_try(c, cn);
		else if ((cn->state == COH_CONN_CONNECTING || cn->state == COH_CONN_HANDSHAKE) &&
			 c->now >= cn->deadline)
			lost(c, cn);
	}
	if (c->cmd.state == COH_CONN_READY) {
		expire(c);
		if (c->trip) {
			coh_cmd_lost(c);
		} else if (c->now >= c->heartbeat_due) {
			coh_registry_beat(c);
			c->heartbeat_due = c->now + c->heartbeat_ns;
		}
	}
	if (c->sub.state == COH_CONN_READY && c->now >= c->ping_due)
		sub_ping(c);
}

uint64_t coh_link_next_wake(struct coh *c, uint64_t t)
{
	struct coh_conn *conns[2] = { &c->cmd, &c->sub };

#define EARLIER(x) do { if ((x) < t) t = (x); } while (0)
	for (int i = 0; i < 2; i++) {
		struct coh_conn *cn = conns[i];
		if (cn->state == COH_CONN_DOWN)
			EARLIER(cn->retry_at);
		else if (cn->state != COH_CONN_READY)
			EARLIER(cn->deadline);
	}
	if (c->cmd.state == COH_CONN_READY) {
		EARLIER(c->heartbeat_due);
		for (uint32_t i = c->cmd.q_checked; i < c->cmd.q_len; i++) {
			struct coh_pend *p = coh_conn_at(&c->cmd, i);
			if (p->deadline) {
				EARLIER(p->deadline);
				break;
			}
		}
	}
	if (c->sub.state == COH_CONN_READY)
		EARLIER(c->ping_due);
#undef EARLIER
	return t;
}

void coh_link_write(struct coh *c)
{
	if (coh_conn_write(&c->cmd))
		coh_cmd_lost(c);
	if (coh_conn_write(&c->sub))
		coh_sub_lost(c);
}

void coh_link_events(struct coh *c, struct coh_conn *cn, short rev)
{
	if (cn->state == COH_CONN_CONNECTING) {
		if (!(rev & (POLLOUT | POLLERR | POLLHUP)))
			return;
		if (coh_conn_connected(cn) || coh_conn_write(cn)) {
			lost(c, cn);
			return;
		}
	}
	if (rev & (POLLIN | POLLERR | POLLHUP)) {
		if (coh_conn_read(cn)) {
			/* parse what arrived before the error: replies before the EOF count */
			if (cn == &c->cmd)
				cmd_replies(c);
			else
				sub_replies(c);
			if (cn->fd != -1)
				lost(c, cn);
			return;
		}
	}
	if (cn == &c->cmd)
		cmd_replies(c);
	else
		sub_replies(c);
}

void coh_link_shutdown(struct coh *c)
{
	if (c->cmd.state != COH_CONN_READY)
		return;
	coh_registry_bye(c);
	uint64_t wait = c->timeout_ns > SHUTDOWN_MIN_NS ? c->timeout_ns : SHUTDOWN_MIN_NS;
	uint64_t deadline = c->now + wait;
	while (c->cmd.fd != -1 && c->cmd.q_len && c->now < deadline) {
		if (coh_conn_write(&c->cmd)) {
			coh_cmd_lost(c);
			break;
		}
		struct pollfd pfd = { c->cmd.fd, POLLIN, 0 };
		if (coh_conn_wants_write(&c->cmd))
			pfd.events |= POLLOUT;
		uint64_t left = deadline - c->now;
		struct timespec ts = { (time_t)(left / 1000000000ull), (long)(left % 1000000000ull) };
		if (ppoll(&pfd, 1, &ts, NULL) > 0)
			coh_link_events(c, &c->cmd, pfd.revents);
		c->now = clock_mono_ns();
	}
}
