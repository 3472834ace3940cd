/*
 * coh.c - the coherence thread: lifecycle, the rings to and from the shards,
 * the loop that sleeps in one ppoll() on an eventfd and both Redis sockets,
 * and the state of the link to Redis (connect, handshake, backoff, breaker,
 * subscription loss).
 *
 * The link has two connections: "cmd" carries every command, pipelined;
 * "sub" is subscribed to <prefix>invalidate.  The breaker is closed (link_up)
 * only while both are ready:
 *
 *            both READY                      failures >= breaker_failures,
 *   DOWN ─────────────────▶ UP  ───────────▶ a socket error or EOF, a
 *    ▲  (FLUSH first if the  │               subscription PING unanswered
 *    │   subscription was    │               for a heartbeat period
 *    │   lost, then replay)  ▼
 *    └──────────────────── DOWN: GET/CLUSTER -> SKIPPED, SET/DEL -> SKIPPED
 *                                and queued; reconnect with backoff
 *
 * Why a subscription loss costs a FLUSH: pub/sub delivers nothing that was
 * published while we were not subscribed, so any L1 entry stored before the
 * loss was seen may have missed its invalidation.  While the link is down no
 * GET is sent (nothing new enters L1 from Redis) and writes are replayed
 * after the FLUSH, so entries stored after the loss are safe to keep.
 */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#include "coh_int.h"
#include "ringcache/clock.h"
#include "ringcache/hash.h"

#define DRAIN_PER_SHARD 512
#define BACKLOG_RETRY_NS (1 * COH_MS)
#define MAX_SLEEP_NS (1000 * COH_MS)
#define SHUTDOWN_MIN_NS (20 * COH_MS)

/* --- messages --- */

struct coh_msg *coh_msg_create(enum coh_op op, unsigned shard, uint64_t hash,
			       const void *key, size_t key_len,
			       const void *ctype, size_t ctype_len, size_t value_len)
{
	bool keyless = op == COH_CLUSTER || op == COH_FLUSH;

	if (key_len > COH_KEY_MAX || (!keyless && key_len == 0) ||
	    !coh_ctype_valid(ctype, ctype_len))
		return NULL;
	size_t extra = key_len + 1 + ctype_len + 1;
	if (value_len > SIZE_MAX - sizeof(struct coh_msg) - extra)
		return NULL;
	struct coh_msg *m = malloc(sizeof(*m) + extra + value_len);
	if (!m)
		return NULL;
	memset(m, 0, sizeof(*m));
	m->op = (uint8_t)op;
	m->shard = shard;
	m->hash = hash;
	m->key = (char *)(m + 1);
	m->ctype = m->key + key_len + 1;
	m->value = m->ctype + ctype_len + 1;
	if (key_len)
		memcpy(m->key, key, key_len);
	m->key[key_len] = '\0';
	if (ctype_len)
		memcpy(m->ctype, ctype, ctype_len);
	m->ctype[ctype_len] = '\0';
	m->key_len = (uint32_t)key_len;
	m->ctype_len = (uint32_t)ctype_len;
	m->value_len = value_len;
	return m;
}

void coh_msg_destroy(struct coh_msg *m)
{
	if (!m)
		return;
	free(m->value_mem);
	free(m);
}

struct coh_msg *coh_msg_copy(const struct coh_msg *m)
{
	struct coh_msg *n = coh_msg_create(m->op, m->shard, m->hash, m->key, m->key_len,
					   m->ctype, m->ctype_len, m->value_len);
	if (!n)
		return NULL;
	if (m->value_len)
		memcpy(n->value, m->value, m->value_len);
	n->ttl = m->ttl;
	n->seq = m->seq;
	return n;
}

/* --- shard side --- */

bool coh_submit(struct coh *c, unsigned shard, struct coh_msg *m)
{
	return ring_push(c->shards[shard].in, m);
}

void coh_flush(struct coh *c, unsigned shard)
{
	static const uint64_t one = 1;

	/* ring_flush() stores the tail seq_cst; the load of `parked` below is
	 * ordered after it (ring.h's parking protocol). */
	if (ring_flush(c->shards[shard].in) &&
	    atomic_load_explicit(&c->parked, memory_order_seq_cst)) {
		ssize_t n = write(c->efd, &one, sizeof(one));
		(void)n;    /* EAGAIN only if the counter is saturated: already awake */
	}
}

struct coh_msg *coh_poll(struct coh *c, unsigned shard)
{
	struct coh_shard *sh = &c->shards[shard];
	struct coh_msg *m = ring_pop(sh->out);

	if (!m || ++sh->polled >= 32) {
		ring_release(sh->out);
		sh->polled = 0;
	}
	return m;
}

bool coh_pending(struct coh *c, unsigned shard)
{
	return ring_peek_sc(c->shards[shard].out);
}

void coh_stats(const struct coh *c, struct coh_stats *out)
{
#define COH_STATS_LOAD(name, kind, help) \
	out->name = atomic_load_explicit(&c->st.name, memory_order_relaxed);
	COH_STATS(COH_STATS_LOAD)
#undef COH_STATS_LOAD
}

const char *coh_instance_id(const struct coh *c)
{
	return c->id;
}

/* --- thread side: replies to shards --- */

void coh_send(struct coh *c, struct coh_msg *m)
{
	if (m->shard >= c->nshards) {
		coh_msg_destroy(m);
		return;
	}
	struct coh_shard *sh = &c->shards[m->shard];
	m->next = NULL;
	if (sh->backlog || !ring_push(sh->out, m)) {
		if (sh->backlog)
			sh->backlog_tail->next = m;
		else
			sh->backlog = m;
		sh->backlog_tail = m;
		sh->backlog_len++;
		c->backlog_total++;
	}
	sh->dirty = true;
}

/* Moves backlogs into the rings, publishes, and rings the doorbells. */
static void publish(struct coh *c)
{
	for (unsigned s = 0; s < c->nshards; s++) {
		struct coh_shard *sh = &c->shards[s];
		while (sh->backlog && ring_push(sh->out, sh->backlog)) {
			sh->backlog = sh->backlog->next;
			sh->backlog_len--;
			c->backlog_total--;
			sh->dirty = true;
		}
		if (!sh->dirty)
			continue;
		sh->dirty = false;
		if (ring_flush(sh->out) && c->wake)
			c->wake(c->wake_arg, s);
	}
	COH_SET(c, backlog, c->backlog_total);
}

static bool drain(struct coh *c)
{
	bool any = false;

	for (unsigned s = 0; s < c->nshards; s++) {
		struct ring *r = c->shards[s].in;
		struct coh_msg *m;
		unsigned n = 0;
		while (n < DRAIN_PER_SHARD && (m = ring_pop(r))) {
			n++;
			coh_request(c, m);
		}
		if (n) {
			ring_release(r);
			any = true;
		}
	}
	return any;
}

/* --- the link --- */

static uint32_t jitter(struct coh *c, uint32_t ms)
{
	c->rng ^= c->rng << 13;
	c->rng ^= c->rng >> 7;
	c->rng ^= c->rng << 17;
	/* 75% .. 125% so a fleet does not reconnect in lockstep */
	return ms - ms / 4 + (uint32_t)(c->rng % (ms / 2 + 1));
}

static void schedule_retry(struct coh *c, struct coh_conn *cn, bool was_ready)
{
	if (was_ready) {
		cn->backoff_ms = c->backoff_min_ms;
	} else {
		COH_ADD(c, connect_failures, 1);
	}
	cn->retry_at = c->now + (uint64_t)jitter(c, cn->backoff_ms) * COH_MS;
	if (!was_ready) {
		uint64_t next = (uint64_t)cn->backoff_ms * 2;
		cn->backoff_ms = next > c->backoff_max_ms ? c->backoff_max_ms : (uint32_t)next;
	}
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
	struct coh_pend *p;

	/* Detach the queue first: abandoning may send replies, never commands. */
	while ((p = coh_conn_front(&c->cmd))) {
		struct coh_pend e = *p;
		coh_conn_pop(&c->cmd);
		coh_pend_abandon(c, &e);
	}
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
		if (!c->sub_lost) {
			c->sub_lost = true;
			c->lost_at = clock_store_now() + 1;
		}
		c->sub_epoch++;
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
	if (c->url.auth) {
		bool user = c->url.user[0] != '\0';
		rc |= coh_conn_array(cn, user ? 3 : 2);
		rc |= coh_conn_bulk(cn, "AUTH", 4);
		if (user)
			rc |= coh_conn_bulk(cn, c->url.user, strlen(c->url.user));
		rc |= coh_conn_bulk(cn, c->url.password, strlen(c->url.password));
		rc |= coh_conn_push(cn, COH_P_HANDSHAKE, 0, 0, NULL);
	}
	if (!sub && c->url.db) {
		rc |= coh_conn_array(cn, 2);
		rc |= coh_conn_bulk(cn, "SELECT", 6);
		rc |= coh_conn_bulk_u64(cn, c->url.db);
		rc |= coh_conn_push(cn, COH_P_HANDSHAKE, 0, 0, NULL);
	}
	if (sub) {
		rc |= coh_conn_array(cn, 2);
		rc |= coh_conn_bulk(cn, "SUBSCRIBE", 9);
		rc |= coh_conn_bulk(cn, c->channel, strlen(c->channel));
	} else {
		rc |= coh_conn_array(cn, 1);
		rc |= coh_conn_bulk(cn, "PING", 4);
	}
	rc |= coh_conn_push(cn, COH_P_READY, 0, 0, NULL);
	if (rc) {
		coh_conn_close(cn);
		schedule_retry(c, cn, false);
	}
}

static bool is_str(const redisReply *r, const char *s)
{
	size_t n = strlen(s);
	return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) &&
	       r->len == n && !strncasecmp(r->str, s, n);
}

static bool is_push(const redisReply *r, const char *kind, size_t min)
{
	return r->type == REDIS_REPLY_ARRAY && r->elements >= min && is_str(r->element[0], kind);
}

/* Returns false if the connection was dropped. */
static bool handshake_reply(struct coh *c, struct coh_conn *cn, const struct coh_pend *e,
			    redisReply *r)
{
	bool sub = cn == &c->sub;
	bool ok;

	if (e->kind == COH_P_HANDSHAKE)
		ok = r->type != REDIS_REPLY_ERROR;
	else if (sub)
		ok = is_push(r, "subscribe", 3);
	else
		ok = is_str(r, "PONG");
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
		if (is_push(r, "message", 3)) {
			if (c->sub.state == COH_CONN_READY)
				coh_sub_message(c, r);
			freeReplyObject(r);
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

static void timers(struct coh *c)
{
	bool stopping = atomic_load_explicit(&c->stop, memory_order_relaxed);
	struct coh_conn *conns[2] = { &c->cmd, &c->sub };

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

static uint64_t next_wake(struct coh *c)
{
	uint64_t t = c->now + MAX_SLEEP_NS;
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
	if (c->backlog_total)
		EARLIER(c->now + BACKLOG_RETRY_NS);
#undef EARLIER
	return t;
}

static void write_all(struct coh *c)
{
	if (coh_conn_write(&c->cmd))
		coh_cmd_lost(c);
	if (coh_conn_write(&c->sub))
		coh_sub_lost(c);
}

static void on_events(struct coh *c, struct coh_conn *cn, short rev)
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

static bool inputs_pending(struct coh *c)
{
	for (unsigned s = 0; s < c->nshards; s++)
		if (ring_peek_sc(c->shards[s].in))
			return true;
	return false;
}

static void shutdown_link(struct coh *c)
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
			on_events(c, &c->cmd, pfd.revents);
		c->now = clock_mono_ns();
	}
}

static void *thread_main(void *arg)
{
	struct coh *c = arg;
	uint64_t last_busy = 0;

	pthread_setname_np(pthread_self(), "ringcache-coh");
	c->now = clock_mono_ns();
	c->cmd.retry_at = c->sub.retry_at = c->now;
	while (!atomic_load_explicit(&c->stop, memory_order_acquire)) {
		c->now = clock_mono_ns();
		bool busy = drain(c);
		timers(c);
		write_all(c);
		publish(c);
		if (busy)
			last_busy = c->now;

		struct pollfd pfd[3];
		struct coh_conn *conns[2] = { &c->cmd, &c->sub };
		nfds_t n = 1;
		pfd[0] = (struct pollfd){ c->efd, POLLIN, 0 };
		for (int i = 0; i < 2; i++) {
			if (conns[i]->fd == -1)
				continue;
			pfd[n].fd = conns[i]->fd;
			pfd[n].events = (short)(POLLIN | (coh_conn_wants_write(conns[i]) ? POLLOUT : 0));
			pfd[n].revents = 0;
			n++;
		}

		uint64_t sleep_ns = 0;
		bool parked = false;
		if (c->now - last_busy >= c->spin_ns) {
			uint64_t t = next_wake(c);
			sleep_ns = t > c->now ? t - c->now : 0;
		}
		if (sleep_ns) {
			/* ring.h's protocol: flag first (seq_cst), then peek the rings */
			atomic_store_explicit(&c->parked, 1, memory_order_seq_cst);
			parked = true;
			if (inputs_pending(c) || atomic_load_explicit(&c->stop, memory_order_seq_cst))
				sleep_ns = 0;
		}
		struct timespec ts = { (time_t)(sleep_ns / 1000000000ull),
				       (long)(sleep_ns % 1000000000ull) };
		int ready = ppoll(pfd, n, &ts, NULL);
		if (parked)
			atomic_store_explicit(&c->parked, 0, memory_order_relaxed);
		if (ready <= 0)
			continue;
		c->now = clock_mono_ns();
		if (pfd[0].revents & POLLIN) {
			uint64_t v;
			ssize_t r = read(c->efd, &v, sizeof(v));
			(void)r;
		}
		for (nfds_t i = 1; i < n; i++) {
			struct coh_conn *cn = pfd[i].fd == c->cmd.fd ? &c->cmd : &c->sub;
			if (pfd[i].revents && cn->fd == pfd[i].fd)
				on_events(c, cn, pfd[i].revents);
		}
		last_busy = c->now;
	}
	c->now = clock_mono_ns();
	shutdown_link(c);
	return NULL;
}

/* --- lifecycle --- */

static char *concat(const char *a, size_t an, const char *b)
{
	size_t bn = strlen(b);
	char *s = malloc(an + bn + 1);
	if (!s)
		return NULL;
	memcpy(s, a, an);
	memcpy(s + an, b, bn + 1);
	return s;
}

#define DEF(v, d) ((v) ? (v) : (d))

int coh_create(struct coh **out, const struct coh_config *cfg,
	       void (*wake)(void *arg, unsigned shard), void *arg)
{
	struct coh *c;
	uint32_t ring_size = DEF(cfg->ring_size, 128);
	const char *prefix = cfg->prefix ? cfg->prefix : "ringcache:";
	int rc;

	if (cfg->nshards < 1 || cfg->nshards > 1024 || ring_size < 2 ||
	    (ring_size & (ring_size - 1)) || cfg->cpu < -1)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->efd = -1;
	coh_conn_init(&c->cmd, "command");
	coh_conn_init(&c->sub, "subscription");
	if (coh_url_parse(cfg->redis_url, &c->url)) {
		rc = -EINVAL;
		goto fail;
	}
	c->nshards = cfg->nshards;
	c->cpu = cfg->cpu;
	c->timeout_ns = (uint64_t)DEF(cfg->timeout_ms, 50) * COH_MS;
	c->connect_timeout_ns = (uint64_t)DEF(cfg->connect_timeout_ms, 500) * COH_MS;
	c->replay_max = DEF(cfg->replay_max, 10000);
	c->breaker_failures = DEF(cfg->breaker_failures, 5);
	c->backoff_min_ms = DEF(cfg->backoff_min_ms, 50);
	c->backoff_max_ms = DEF(cfg->backoff_max_ms, 2000);
	c->heartbeat_ns = (uint64_t)DEF(cfg->heartbeat_ms, 1000) * COH_MS;
	c->heartbeat_ttl_ms = DEF(cfg->heartbeat_ttl_ms, 5000);
	c->spin_ns = (uint64_t)DEF(cfg->spin_us, 50) * 1000;
	if (c->backoff_max_ms < c->backoff_min_ms ||
	    (uint64_t)c->heartbeat_ttl_ms * COH_MS <= c->heartbeat_ns) {
		rc = -EINVAL;
		goto fail;
	}
	c->cmd.backoff_ms = c->sub.backoff_ms = c->backoff_min_ms;
	c->wake = wake;
	c->wake_arg = arg;

	rc = -ENOMEM;
	c->prefix_len = strlen(prefix);
	c->prefix = concat(prefix, c->prefix_len, "");
	c->channel = concat(prefix, c->prefix_len, "invalidate");
	c->instances_key = concat(prefix, c->prefix_len, "instances");
	if (!c->prefix || !c->channel || !c->instances_key)
		goto fail;
	rc = coh_registry_init(c, cfg->instance_id, cfg->advertise, cfg->version);
	if (rc)
		goto fail;
	rc = -ENOMEM;
	if (coh_kt_init(&c->gets, 256) || coh_kt_init(&c->replay_tab, 256))
		goto fail;
	c->replay_tail = &c->replay;

	c->shards = aligned_alloc(RING_LINE, sizeof(*c->shards) * c->nshards);
	if (!c->shards)
		goto fail;
	memset(c->shards, 0, sizeof(*c->shards) * c->nshards);
	for (unsigned s = 0; s < c->nshards; s++) {
		c->shards[s].in = ring_create(ring_size);
		c->shards[s].out = ring_create(ring_size);
		if (!c->shards[s].in || !c->shards[s].out)
			goto fail;
	}
	c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->efd == -1) {
		rc = -errno;
		goto fail;
	}
	if (getrandom(&c->rng, sizeof(c->rng), GRND_NONBLOCK) != sizeof(c->rng) || !c->rng)
		c->rng = clock_mono_ns() | 1;
	COH_SET(c, breaker_open, 1);
	*out = c;
	return 0;
fail:
	coh_destroy(c);
	return rc;
}

int coh_start(struct coh *c)
{
	pthread_attr_t attr;
	int rc;

	if (c->started)
		return -EALREADY;
	pthread_attr_init(&attr);
	if (c->cpu >= 0) {
		cpu_set_t set;
		if (c->cpu >= CPU_SETSIZE) {
			pthread_attr_destroy(&attr);
			return -EINVAL;
		}
		CPU_ZERO(&set);
		CPU_SET(c->cpu, &set);
		pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
	}
	rc = pthread_create(&c->thread, &attr, thread_main, c);
	pthread_attr_destroy(&attr);
	if (rc)
		return -rc;
	c->started = true;
	return 0;
}

static void destroy_list(struct coh_msg *m)
{
	while (m) {
		struct coh_msg *next = m->next;
		coh_msg_destroy(m);
		m = next;
	}
}

void coh_destroy(struct coh *c)
{
	static const uint64_t one = 1;

	if (!c)
		return;
	if (c->started) {
		atomic_store_explicit(&c->stop, true, memory_order_seq_cst);
		ssize_t n = write(c->efd, &one, sizeof(one));
		(void)n;
		pthread_join(c->thread, NULL);
	}
	atomic_store_explicit(&c->stop, true, memory_order_relaxed);
	/* Everything below runs with the thread gone and the shards stopped. */
	struct coh_pend *p;
	while ((p = coh_conn_front(&c->cmd))) {
		struct coh_pend e = *p;
		coh_conn_pop(&c->cmd);
		coh_pend_abandon(c, &e);
	}
	coh_conn_deinit(&c->cmd);
	coh_conn_deinit(&c->sub);
	coh_replay_drop_all(c);
	if (c->shards) {
		for (unsigned s = 0; s < c->nshards; s++) {
			struct coh_shard *sh = &c->shards[s];
			struct coh_msg *m;
			destroy_list(sh->backlog);
			if (sh->in) {
				ring_flush(sh->in);
				while ((m = ring_pop(sh->in)))
					coh_msg_destroy(m);
			}
			if (sh->out) {
				ring_flush(sh->out);
				while ((m = ring_pop(sh->out)))
					coh_msg_destroy(m);
			}
			ring_destroy(sh->in);
			ring_destroy(sh->out);
		}
		free(c->shards);
	}
	coh_kt_deinit(&c->gets);
	coh_kt_deinit(&c->replay_tab);
	if (c->efd != -1)
		close(c->efd);
	free(c->prefix);
	free(c->channel);
	free(c->instances_key);
	free(c->heartbeat_key);
	buf_deinit(&c->reg_json);
	free(c);
}
