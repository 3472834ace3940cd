/*
 * main.c - ringcached: read the configuration, start the shards, tell the
 * service manager, then serve signals and the watchdog until told to stop.
 * The only place that prints, apart from the shards' startup lines.
 *
 * After startup the main thread does nothing but this loop:
 *
 *   sigtimedwait(SIGTERM, SIGINT, SIGHUP) until the next watchdog tick
 *     SIGHUP   -> reload_keys(): the new API key set is published, the old
 *                 one retired until no shard can still be reading it
 *     SIGTERM  -> STOPPING=1, the shards stop (server_stop), exit 0
 *     tick     -> watchdog_tick(): WATCHDOG=1 if every shard turned
 *   and, while a retired key set waits, retire_poll() every millisecond.
 *
 * Service manager messages (notify.h; all no-ops without $NOTIFY_SOCKET):
 * READY=1 once every shard has set up its listener (server_run returned:
 * with --redis the coherence thread is started, not waited for, so a Redis
 * that is down does not hold the start); STATUS= lines for what the daemon
 * is doing; RELOADING=1 ... READY=1 around a SIGHUP; STOPPING=1 at SIGTERM;
 * WATCHDOG=1 per tick while every shard's loop turns.
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
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
/* How often a retired key set is checked for being free to go, and how
 * many checks a SIGHUP waits for the last one's (a second). */
#define RETIRE_POLL_NS 1000000ull
#define RETIRE_WAIT_POLLS 1000

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

	/* the key set swapped out by the last SIGHUP, until no shard reads it */
	struct auth *retired;
	uint64_t *retired_turns;        /* each shard's turns right after the swap */
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
			char why[128];
			fprintf(stderr, "ringcached: --api-keys-file %s: %s\n", cfg->api_keys_file,
				auth_strerror(rc, &info, why, sizeof(why)));
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
	 * so three can be missed before the manager acts (a day at most, so
	 * no sum of times can overflow) */
	uint64_t usec = d->notify.watchdog_usec;
	if (usec > 86400ull * 1000000)
		usec = 86400ull * 1000000;
	d->tick_ns = usec * 1000 / 4;
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

/* --- SIGHUP: the API keys ------------------------------------------------ */

/*
 * Frees the retired key set once every shard has turned since the swap.
 * While one waits, the shards are woken so that parked ones turn now.
 */
static void retire_poll(struct daemon *d)
{
	struct server *srv = d->srv;

	if (!d->retired)
		return;
	for (unsigned i = 0; i < srv->nshards; i++) {
		if (atomic_load_explicit(&srv->shards[i]->turns, memory_order_acquire) ==
		    d->retired_turns[i]) {
			shard_wake(srv->shards[i]);
			return;
		}
	}
	auth_destroy(d->retired);
	d->retired = NULL;
}

/*
 * SIGHUP: loads --api-keys-file again; a file that does not load leaves the
 * keys in force as they are, and says why.  Nothing else is reopened or
 * reread (the --config file included): the other settings need a restart.
 * A daemon started without --api-keys-file has no file to reload, and does
 * not gain keys: it was started open, and turning auth on needs a restart.
 *
 * The swap and its grace period.  Shards read srv->auth for each request
 * (route.c authorized()) and use what they read within that one iteration
 * of their loop; at the end of every iteration they store turns + 1.  Here:
 *
 *     old = exchange(&srv->auth, fresh)       shard, iteration k:
 *     t0  = load(&sh->turns)                    a = load(&srv->auth) ... use a
 *     ... until load(&sh->turns) != t0          store(&sh->turns, k)
 *     auth_destroy(old)
 *
 * The exchange-then-load here and the store-then-load between iterations
 * there form the store-buffering pattern: with acquire/release alone, this
 * thread could read a t0 that misses the shard's latest store while the
 * shard's next load still sees the old set, and iterations after t0 + 1
 * could use it.  With all four accesses seq_cst (the exchange, the loads of
 * t0 and of srv->auth, the store of turns) that outcome is forbidden: an
 * iteration that read the old set read it before the exchange in the single
 * total order, after the store that ended the iteration before it, so t0
 * already counts that one and the iteration itself ends at t0 + 1 at the
 * latest.  Its store (seq_cst, so a release) orders its reads of the set
 * before our load that sees it move (acquire): then no shard holds the old
 * set and it is wiped and freed.  The cost on the shards: one seq_cst store
 * per iteration (STLR on ARM64, as a release store; XCHG on x86) and one
 * seq_cst load per authorized request (LDAR).
 */
static void reload_keys(struct daemon *d)
{
	const struct config *cfg = &d->cfg;
	struct server *srv = d->srv;
	struct auth_info info;
	struct auth *fresh = NULL;

	notify(d, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64 "\nSTATUS=reloading --api-keys-file",
	       clock_mono_ns() / 1000);
	if (!cfg->api_keys_file || !*cfg->api_keys_file) {
		fprintf(stderr, "ringcached: SIGHUP: no --api-keys-file, nothing to reload (a daemon "
				"started without API keys cannot gain them without a restart)\n");
		goto done;
	}
	/* one retired set at a time: a SIGHUP right after another waits for it
	 * (a shard turns in microseconds once woken), but not for a wedged one */
	for (int i = 0; i < RETIRE_WAIT_POLLS && d->retired; i++) {
		retire_poll(d);
		if (d->retired)
			nanosleep(&(struct timespec){ .tv_nsec = RETIRE_POLL_NS }, NULL);
	}
	if (d->retired) {
		fprintf(stderr, "ringcached: SIGHUP: the key set replaced by the last SIGHUP is still "
				"in use by a shard that has not turned for a second; keys not "
				"reloaded\n");
		goto done;
	}
	int rc = auth_create(&fresh, cfg->api_keys_file, &info);
	if (rc) {
		char why[128];
		fprintf(stderr, "ringcached: SIGHUP: --api-keys-file %s: %s; the keys loaded before "
				"stay in force\n", cfg->api_keys_file,
			auth_strerror(rc, &info, why, sizeof(why)));
		goto done;
	}
	d->retired = atomic_exchange_explicit(&srv->auth, fresh, memory_order_seq_cst);
	for (unsigned i = 0; i < srv->nshards; i++)
		d->retired_turns[i] = atomic_load_explicit(&srv->shards[i]->turns, memory_order_seq_cst);
	fprintf(stderr, "ringcached: SIGHUP: reloaded --api-keys-file %s: %u keys\n",
		cfg->api_keys_file, info.keys);
	if (info.other_readable)
		fprintf(stderr, "ringcached: warning: --api-keys-file %s is readable by others\n",
			cfg->api_keys_file);
	retire_poll(d);
done:
	notify(d, "READY=1\nSTATUS=%s", d->status);
}

/* --- the main thread ----------------------------------------------------- */

/* How long sigtimedwait may sleep: to the next tick, or a poll of the
 * retired key set; NULL: until a signal. */
static struct timespec *wait_time(const struct daemon *d, struct timespec *ts)
{
	uint64_t now = clock_mono_ns(), wait = UINT64_MAX;

	if (d->tick_ns)
		wait = d->next_tick > now ? d->next_tick - now : 0;
	if (d->retired && wait > RETIRE_POLL_NS)
		wait = RETIRE_POLL_NS;
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
			reload_keys(d);
		if (d->tick_ns && clock_mono_ns() >= d->next_tick) {
			watchdog_tick(d);
			d->next_tick += d->tick_ns;
			if (d->next_tick <= clock_mono_ns())   /* fell behind: no burst */
				d->next_tick = clock_mono_ns() + d->tick_ns;
		}
		retire_poll(d);
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
	/*
	 * glibc's allocator is set up here, in this thread.  Under a sanitizer
	 * that replaces malloc (ASan) nothing else calls into it, and the first
	 * malloc_trim() of an idle shard (shard.c) set it up instead: two shards
	 * trimming first at once each took the main arena as their own, counted
	 * once, and glibc aborted at the second one's exit, at the stop
	 * ("malloc assertion failure in __malloc_arena_thread_freeres").
	 */
	malloc_trim(0);
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
	d.retired_turns = calloc(d.srv->nshards, sizeof(*d.retired_turns));
	rc = d.retired_turns ? server_run(d.srv, err, sizeof(err)) : -ENOMEM;
	if (rc) {
		if (!d.retired_turns)
			snprintf(err, sizeof(err), "out of memory");
		fprintf(stderr, "ringcached: %s\n", err);
		notify(&d, "STATUS=failed to start: %s", err);
		server_stop(d.srv);
		server_destroy(d.srv);
		free(d.retired_turns);
		config_deinit(&d.cfg);
		return 1;
	}
	name_threads(d.srv);
	char at[512];
	config_format(&d.cfg, "listen", at, sizeof(at));
	fprintf(stderr, "ringcached %s: listening on %s with %u shards\n", RINGCACHE_VERSION, at,
		d.srv->nshards);
	snprintf(d.status, sizeof(d.status), "serving on %.120s with %u shards", at, d.srv->nshards);
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
	auth_destroy(d.retired);        /* the shards are joined: nobody reads it */
	server_destroy(d.srv);
	notify_teardown(&d.notify);
	free(d.seen);
	free(d.still);
	free(d.retired_turns);
	config_deinit(&d.cfg);
	return rc;
}
