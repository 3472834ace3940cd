/*
 * coh.c - the coherence thread: lifecycle (create, start, destroy), the
 * thread's end of the rings to and from the shards (drain the in rings,
 * publish the out rings, a backlog per shard when one is full), and the
 * loop that sleeps in one ppoll() on an eventfd and both Redis sockets.
 *
 *   loop: drain in rings -> coh_request (ops.c)
 *         link timers, write commands (link.c)
 *         publish out rings, ring doorbells
 *         spin spin_us after activity, then park: ppoll(eventfd, cmd, sub)
 *         socket events -> replies (link.c -> ops.c, registry.c)
 *
 * The shard threads' half of the rings is in msg.c; the state of the link
 * to Redis (connect, handshake, breaker, reconnect) in link.c.
 */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#include "link.h"
#include "ops.h"
#include "registry.h"
#include "state.h"
#include "ringcache/clock.h"
#include "ringcache/hash.h"

#define DRAIN_PER_SHARD 512
#define BACKLOG_RETRY_NS (1 * COH_MS)
#define MAX_SLEEP_NS (1000 * COH_MS)

void coh_stats(const struct coh *c, struct coh_stats *out)
{
	/* the shards' blocks hold only what their read connections count; the
	 * thread alone sets the gauges, so a sum is right for every field */
#define COH_STATS_LOAD(name, kind, help) \
	out->name = atomic_load_explicit(&c->st.name, memory_order_relaxed);
	COH_STATS(COH_STATS_LOAD)
#undef COH_STATS_LOAD
	for (unsigned s = 0; s < c->nshards; s++) {
#define COH_STATS_ADD(name, kind, help) \
		out->name += atomic_load_explicit(&c->shards[s].st.name, memory_order_relaxed);
		COH_STATS(COH_STATS_ADD)
#undef COH_STATS_ADD
	}
}

const char *coh_instance_id(const struct coh *c)
{
	return c->id;
}

/* --- the thread's end of the rings --- */

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
		c->backlog_unsol += coh_unsolicited(m);
	}
	sh->dirty = true;
}

/* Moves backlogs into the rings, publishes, and rings the doorbells. */
static void publish(struct coh *c)
{
	for (unsigned s = 0; s < c->nshards; s++) {
		struct coh_shard *sh = &c->shards[s];
		while (sh->backlog && ring_push(sh->out, sh->backlog)) {
			c->backlog_unsol -= coh_unsolicited(sh->backlog);
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

static bool inputs_pending(struct coh *c)
{
	for (unsigned s = 0; s < c->nshards; s++)
		if (ring_peek_sc(c->shards[s].in))
			return true;
	return coh_link_tripped(c);
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
		coh_link_timers(c);
		coh_link_write(c);
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
			uint64_t t = coh_link_next_wake(c, c->now + MAX_SLEEP_NS);
			if (c->backlog_total && c->now + BACKLOG_RETRY_NS < t)
				t = c->now + BACKLOG_RETRY_NS;
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
				coh_link_events(c, cn, pfd[i].revents);
		}
		last_busy = c->now;
	}
	c->now = clock_mono_ns();
	coh_link_shutdown(c);
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
	/* aligned, or the RING_LINE lines of struct coh would not be lines */
	c = aligned_alloc(RING_LINE, sizeof(*c));
	if (!c)
		return -ENOMEM;
	memset(c, 0, sizeof(*c));
	pthread_mutex_init(&c->addr_lock, NULL);
	atomic_init(&c->gate, COH_GATE_OPEN);
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
	if (!c->prefix || !c->channel)
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
	coh_pend_abandon_all(c);
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
	pthread_mutex_destroy(&c->addr_lock);
	free(c);
}
