/*
 * main.c - ringcached: read the configuration, start the shards, tell the
 * service manager, then serve signals and the watchdog until told to stop.
 * The only place that prints, apart from the shards' startup lines.
 *
 * After startup the main thread does nothing but this loop:
 *
 *   sigtimedwait(SIGTERM, SIGINT, SIGHUP) until the next watchdog tick
 *     SIGHUP   -> logged and ignored: it has no meaning yet, and its
 *                 default action would kill the daemon with no drain
 *     SIGTERM  -> STOPPING=1, the shards stop (server_stop), exit 0
 *     tick     -> watchdog_tick(): WATCHDOG=1 if every shard turned
 *
 * Service manager messages (notify.h; all no-ops without $NOTIFY_SOCKET):
 * READY=1 once every shard has set up its listener (server_run returned:
 * with --redis the coherence thread is started, not waited for, so a Redis
 * that is down does not hold the start); STATUS= lines for what the daemon
 * is doing; STOPPING=1 at SIGTERM;
 * WATCHDOG=1 per tick while every shard's loop turns.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "ringcache_version.h"
#include "cache/compress.h"
#include "coherence/url.h"
#include "daemon/notify.h"
#include "ringcache/auth.h"
#include "ringcache/clock.h"
#include "ringcache/hash.h"
#include "shard/server.h"
#include "shard/shard.h"

/* A shard that has not turned for this many ticks in a row, although woken
 * at each, is reported as not turning (one missed tick already holds the
 * ping; a report needs a few, so one slow wake-up is not news). */
#define STALL_TICKS 3

struct daemon {
	struct config cfg;
	struct server *srv;
	struct notify notify;
	char status[160];               /* the STATUS= of a daemon that serves */

	/* watchdog: 0 tick_ns when the manager expects no pings */
	uint64_t tick_ns, next_tick;
	uint64_t *seen;                 /* each shard's turns at the last tick */
	unsigned *still;                /* ticks in a row it has not turned */
	char stuck[128];                /* the shards reported not turning; "" */
};

/*
 * Each connection is a descriptor: lift the soft limit on open files to the
 * hard one (systemd's LimitNOFILE= sets that), and say when it is below what
 * --max-conns allows, since accepts then fail with EMFILE (counted in
 * accept_errors; the listener retries a quarter second later).
 */
static void raise_nofile(const struct config *cfg, unsigned nshards)
{
	struct rlimit rl;
	unsigned long long want = (unsigned long long)cfg->max_conns * nshards + 64;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want)
		fprintf(stderr,
			"ringcached: open files limited to %llu, below --max-conns x shards "
			"(%llu): raise LimitNOFILE / ulimit -n\n",
			(unsigned long long)rl.rlim_cur, want);
}

/* One message to the service manager (a no-op without one). */
__attribute__((format(printf, 2, 3)))
static void notify(struct daemon *d, const char *fmt, ...)
{
	/* a manager that went away is not the daemon's problem: say it once */
	static bool said;
	char msg[NOTIFY_MSG_MAX + 1];
	va_list ap;

	if (!notify_active(&d->notify))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	int rc = notify_send(&d->notify, "%s", msg);
	if (rc && !said) {
		said = true;
		fprintf(stderr, "ringcached: $NOTIFY_SOCKET: %s (further failures not logged)\n",
			strerror(-rc));
	}
}

/* --- --check-config ------------------------------------------------------ */

/*
 * What a start would refuse with status 2 short of the machine itself: the
 * values (config_parse did those), the API keys file and the Redis URL.
 * Not checked: whether the port is free, the CPUs exist, hugepages are
 * reserved, Redis answers; the start checks those.
 */
static int check_config(const struct config *cfg)
{
	if (cfg->api_keys_file && *cfg->api_keys_file) {
		struct auth_info info;
		struct auth *keys = NULL;
		int rc = auth_create(&keys, cfg->api_keys_file, &info);
		if (rc) {
			if (info.line)
				fprintf(stderr, "ringcached: --api-keys-file %s: line %u is not a valid key\n",
					cfg->api_keys_file, info.line);
			else
				fprintf(stderr, "ringcached: --api-keys-file %s: %s\n", cfg->api_keys_file,
					rc == -EINVAL ? "no keys in the file" : strerror(-rc));
			return 2;
		}
		auth_destroy(keys);
	}
	if (cfg->redis && *cfg->redis) {
		struct coh_url url;
		int rc = coh_url_parse(cfg->redis, &url);
		explicit_bzero(&url, sizeof(url));
		if (rc) {
			fprintf(stderr, "ringcached: --redis: not a valid "
					"redis://[user:password@]HOST[:PORT][/DB] URL\n");
			return 2;
		}
	}
	config_print(stdout, cfg);
	return 0;
}

/* --- the watchdog -------------------------------------------------------- */

static int watchdog_setup(struct daemon *d)
{
	unsigned n = d->srv->nshards;

	if (!d->notify.watchdog_usec)
		return 0;
	d->seen = calloc(n, sizeof(*d->seen));
	d->still = calloc(n, sizeof(*d->still));
	if (!d->seen || !d->still)
		return -ENOMEM;
	/* four ticks per WATCHDOG_USEC: a ping at every tick when all is well,
	 * so three can be missed before the manager acts */
	d->tick_ns = d->notify.watchdog_usec * 1000 / 4;
	if (d->tick_ns < 1000000)
		d->tick_ns = 1000000;
	for (unsigned i = 0; i < n; i++)
		d->seen[i] = atomic_load_explicit(&d->srv->shards[i]->turns, memory_order_acquire);
	d->next_tick = clock_mono_ns() + d->tick_ns;
	fprintf(stderr, "ringcached: watchdog: WATCHDOG_USEC %" PRIu64 ", a check every %" PRIu64
			" ms\n", d->notify.watchdog_usec, d->tick_ns / 1000000);
	return 0;
}

/*
 * A shard is wedged when one iteration of its loop does not end: then its
 * `turns` stays put.  A healthy shard may also sit still for a while: an
 * idle one parks in io_uring_enter for up to a quarter second.  So every
 * tick ends by ringing every shard's doorbell (a no-op unless it is parked):
 * a healthy shard then turns within microseconds, long before the next
 * tick, whatever WATCHDOG_USEC is, and one that has not turned by then did
 * not end the iteration it was in.  WATCHDOG=1 is sent only when every
 * shard turned since the last tick.
 */
static void watchdog_tick(struct daemon *d)
{
	struct server *srv = d->srv;
	char stuck[sizeof(d->stuck)] = "";
	size_t o = 0;
	bool all = true;

	for (unsigned i = 0; i < srv->nshards; i++) {
		uint64_t t = atomic_load_explicit(&srv->shards[i]->turns, memory_order_acquire);
		if (t != d->seen[i]) {
			d->seen[i] = t;
			d->still[i] = 0;
			continue;
		}
		all = false;
		if (++d->still[i] >= STALL_TICKS && o < sizeof(stuck) - 8)
			o += (size_t)snprintf(stuck + o, sizeof(stuck) - o, "%s%u", o ? "," : "", i);
	}
	if (all)
		notify(d, "WATCHDOG=1");
	for (unsigned i = 0; i < srv->nshards; i++)
		shard_wake(srv->shards[i]);

	if (strcmp(stuck, d->stuck) != 0) {
		char ms[24];
		snprintf(ms, sizeof(ms), "%" PRIu64, d->tick_ns * STALL_TICKS / 1000000);
		if (*stuck) {
			fprintf(stderr, "ringcached: watchdog: shard %s not turning for %s ms or more; "
					"watchdog pings held\n", stuck, ms);
			notify(d, "STATUS=shard %s not turning for %s ms or more; watchdog pings held",
			       stuck, ms);
		} else {
			fprintf(stderr, "ringcached: watchdog: every shard turns again\n");
			notify(d, "STATUS=%s", d->status);
		}
		snprintf(d->stuck, sizeof(d->stuck), "%s", stuck);
	}
}

/* --- the main thread ----------------------------------------------------- */

/* How long sigtimedwait may sleep: to the next tick; NULL: until a signal. */
static struct timespec *wait_time(const struct daemon *d, struct timespec *ts)
{
	uint64_t now = clock_mono_ns(), wait = UINT64_MAX;

	if (d->tick_ns)
		wait = d->next_tick > now ? d->next_tick - now : 0;
	if (wait == UINT64_MAX)
		return NULL;
	ts->tv_sec = (time_t)(wait / 1000000000u);
	ts->tv_nsec = (long)(wait % 1000000000u);
	return ts;
}

/* Until SIGTERM or SIGINT; returns the signal. */
static int serve(struct daemon *d, const sigset_t *sigs)
{
	for (;;) {
		struct timespec ts, *t = wait_time(d, &ts);
		int sig = t ? sigtimedwait(sigs, NULL, t) : sigwaitinfo(sigs, NULL);

		if (sig == SIGTERM || sig == SIGINT)
			return sig;
		if (sig == SIGHUP)
			fprintf(stderr, "ringcached: SIGHUP ignored (nothing to reload)\n");
		if (d->tick_ns && clock_mono_ns() >= d->next_tick) {
			watchdog_tick(d);
			d->next_tick += d->tick_ns;
			if (d->next_tick <= clock_mono_ns())   /* fell behind: no burst */
				d->next_tick = clock_mono_ns() + d->tick_ns;
		}
	}
}

/* Names the shard threads "rc-shard-N" (top -H, /proc/PID/task/TID/comm). */
static void name_threads(struct server *srv)
{
	for (unsigned i = 0; i < srv->nshards; i++) {
		char name[24];   /* the kernel keeps 15 bytes: rc-shard-99999 */
		snprintf(name, sizeof(name), "rc-shard-%u", i % 100000);
		name[15] = '\0';
		pthread_setname_np(srv->shards[i]->thread, name);
	}
}

int main(int argc, char **argv)
{
	struct daemon d;
	char err[512] = "";
	sigset_t sigs;
	int rc, sig;

	memset(&d, 0, sizeof(d));
	rc = config_parse(&d.cfg, argc, argv, err, sizeof(err));
	if (rc == CONFIG_HELP) {
		config_usage(stdout);
		return 0;
	}
	if (rc == CONFIG_VERSION) {
		printf("ringcached %s\n", RINGCACHE_VERSION);
		return 0;
	}
	if (rc < 0) {
		fprintf(stderr, "ringcached: %s\n", err);
		return 2;
	}
	if (rc == CONFIG_CHECK) {
		rc = check_config(&d.cfg);
		config_deinit(&d.cfg);
		return rc;
	}

	rc = notify_setup(&d.notify, getenv);
	if (rc)
		fprintf(stderr, "ringcached: $NOTIFY_SOCKET / $WATCHDOG_USEC: %s; not notifying the "
				"service manager\n", strerror(-rc));

	/* before any thread: every shard and the coherence thread read it */
	if (d.cfg.hash_seed.fixed) {
		hash_key_seed = d.cfg.hash_seed.value;
	} else if ((rc = hash_key_seed_random()) != 0) {
		fprintf(stderr, "ringcached: --hash-seed random: getrandom: %s\n", strerror(-rc));
		config_deinit(&d.cfg);
		return 1;
	}
	compress_tune_malloc();
	/* Every thread inherits this mask; only main takes the signals. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	rc = server_create(&d.srv, &d.cfg, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "ringcached: %s\n", err);
		notify(&d, "STATUS=failed to start: %s", err);
		config_deinit(&d.cfg);
		return rc == -EINVAL ? 2 : 1;
	}
	raise_nofile(&d.cfg, d.srv->nshards);
	rc = server_run(d.srv, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "ringcached: %s\n", err);
		notify(&d, "STATUS=failed to start: %s", err);
		server_stop(d.srv);
		server_destroy(d.srv);
		config_deinit(&d.cfg);
		return 1;
	}
	name_threads(d.srv);
	fprintf(stderr, "ringcached %s: listening on %s:%u with %u shards\n", RINGCACHE_VERSION,
		d.cfg.listen.host, d.cfg.listen.port, d.srv->nshards);
	snprintf(d.status, sizeof(d.status), "serving on %s:%u with %u shards", d.cfg.listen.host,
		 d.cfg.listen.port, d.srv->nshards);
	if (watchdog_setup(&d)) {
		fprintf(stderr, "ringcached: watchdog: out of memory\n");
		rc = 1;
		goto stop;
	}
	/* every shard has its listener: connections are accepted from now on */
	notify(&d, "READY=1\nSTATUS=%s", d.status);

	sig = serve(&d, &sigs);
	fprintf(stderr, "ringcached: signal %d, stopping\n", sig);
	notify(&d, "STOPPING=1\nSTATUS=stopping: closing connections, finishing Redis writes");
	rc = 0;
stop:
	server_stop(d.srv);
	server_destroy(d.srv);
	notify_teardown(&d.notify);
	free(d.seen);
	free(d.still);
	config_deinit(&d.cfg);
	return rc;
}
