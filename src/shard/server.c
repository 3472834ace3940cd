/*
 * server.c - wiring: the shards, the rings between them, the listeners'
 * claim, the coherence thread; starting them together and stopping them.
 *
 * Startup is three barriers wide: every shard sets itself up in its own
 * pinned thread (ring, listener, arena: created where they will be used)
 * and waits; the main thread checks them all, logs one line per shard,
 * starts the coherence thread, and then lets them go on, or stops them all
 * if anything failed, so the daemon never half-starts.  With --snapshot
 * the shards then load it together (and check it against Redis) before
 * the third barrier, after which they serve and server_run() returns.  At
 * stop, after their loops end, they save it (server_stop()).
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "listen.h"
#include "server.h"
#include "shard.h"
#include "ringcache/auth.h"
#include "ringcache/coherence.h"
#include "ringcache/cpuset.h"
#include "ringcache/cache.h"
#include "ringcache/ring.h"
#include "ringcache/snapshot.h"
#include "ringcache/stats.h"
#include "ringcache/store.h"
#include "ringcache/zip.h"

static void io_uring_hint(char *err, size_t errlen, const char *what, int rc)
{
	char val[16] = "unknown";
	FILE *f = fopen("/proc/sys/kernel/io_uring_disabled", "r");

	if (f) {
		if (!fgets(val, sizeof(val), f))
			snprintf(val, sizeof(val), "unknown");
		val[strcspn(val, "\n")] = '\0';
		fclose(f);
	}
	if (!strcmp(val, "0"))
		snprintf(err, errlen,
			 "%s (%s): kernel.io_uring_disabled = 0, so a seccomp profile or the "
			 "container runtime refuses io_uring_setup; ringcached needs io_uring",
			 what, strerror(-rc));
	else
		snprintf(err, errlen,
			 "%s (%s): kernel.io_uring_disabled = %s; ringcached needs io_uring "
			 "(sysctl -w kernel.io_uring_disabled=0)", what, strerror(-rc), val);
}

static void wake_shard(void *arg, unsigned shard)
{
	struct server *srv = arg;

	shard_wake(srv->shards[shard]);
}

/* The coherence thread's CPU: --coherence-cpu, else the first CPU we may use
 * that no shard is pinned to (shard i is on cpus->cpu[i]), else unpinned. */
static int coherence_cpu(const struct server *srv, const struct cpuset *cpus)
{
	struct cpuset allowed;

	if (srv->cfg->coherence_cpu != UINT32_MAX)
		return (int)srv->cfg->coherence_cpu;
	if (cpuset_allowed(&allowed))
		return -1;
	for (unsigned i = 0; i < allowed.n; i++) {
		bool used = false;
		for (unsigned s = 0; s < srv->nshards && s < cpus->n; s++)
			used |= cpus->cpu[s] == allowed.cpu[i];
		if (!used)
			return allowed.cpu[i];
	}
	return -1;
}

/* The compression workers (zip.h): idle priority when they may share a
 * CPU with a shard. */
static int setup_zip(struct server *srv, const struct cpuset *cpus, char *err, size_t errlen)
{
	const struct config *cfg = srv->cfg;
	struct zip_config zc = {
		.threads = cfg->compress_threads,
		.shards = srv->nshards,
		.cpus = &cfg->compress_cpuset,
		.idle = zip_should_idle(&cfg->compress_cpuset, cpus, srv->nshards),
		.brotli_quality = (int)cfg->brotli_quality,
		.gzip_level = (int)cfg->gzip_level,
		.wake = wake_shard,
		.wake_arg = srv,
	};
	int rc = zip_create(&srv->zip, &zc);

	if (rc)
		snprintf(err, errlen, "--compress-threads %u --compress-cpuset: %s",
			 cfg->compress_threads, strerror(-rc));
	else
		fprintf(stderr, "ringcached: compression: %u thread%s, %s, %s\n",
			cfg->compress_threads, cfg->compress_threads == 1 ? "" : "s",
			zc.idle ? "SCHED_IDLE" : "normal priority",
			cfg->compress_cpuset.n ? "pinned to --compress-cpuset" : "unpinned");
	return rc;
}

static int setup_coherence(struct server *srv, const struct cpuset *cpus, char *err,
			   size_t errlen)
{
	const struct config *cfg = srv->cfg;
	struct coh_config cc;
	int rc;

	/* the first TCP address: what another host could reach (a Unix socket
	 * is the fallback when there is none) */
	const struct config_addr *at = &cfg->listen.at[0];
	for (unsigned i = cfg->listen.n; i-- > 0;)
		if (!cfg->listen.at[i].path[0])
			at = &cfg->listen.at[i];
	config_format_addr(at, srv->advertise, sizeof(srv->advertise));
	memset(&cc, 0, sizeof(cc));
	cc.redis_url = cfg->redis;
	cc.prefix = cfg->redis_prefix;
	cc.instance_id = cfg->instance_id;
	cc.advertise = srv->advertise;
	cc.cpu = coherence_cpu(srv, cpus);
	cc.nshards = srv->nshards;
	cc.ring_size = cfg->ring_size;
	cc.timeout_ms = cfg->redis_timeout;
	rc = coh_create(&srv->coh, &cc, wake_shard, srv);
	if (rc) {
		snprintf(err, errlen, "--redis %s: %s", cfg->redis,
			 rc == -EINVAL ? "not a valid redis://[user:password@]HOST[:PORT][/DB] URL"
				       : strerror(-rc));
		return rc;
	}
	return 0;
}

/* The host's memory: the smaller of RAM and the cgroup's memory.max. */
static uint64_t host_memory(void)
{
	uint64_t ram = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
	FILE *f = fopen("/sys/fs/cgroup/memory.max", "r");

	if (f) {
		unsigned long long max;
		if (fscanf(f, "%llu", &max) == 1 && max < ram)
			ram = max;
		fclose(f);
	}
	return ram;
}

/*
 * --conn-memory: given, or a quarter of the host's memory.  Each shard's
 * share must hold two connections at their bound (conn.h B), or one client
 * could stop every other on its shard.
 */
static int conn_memory_share(const struct config *cfg, unsigned n, size_t *out, char *err,
			     size_t errlen)
{
	uint64_t total = cfg->conn_memory != CONFIG_SIZE_AUTO ? cfg->conn_memory
							       : host_memory() / 4;
	/* conn.h's B; with --redis, F at least a /cluster answer's room */
	uint64_t f = cfg->max_head + cfg->max_value + CONN_ROOM + CONN_ANSWER_HEAD;
	if (cfg->redis && *cfg->redis && f < COH_CLUSTER_MAX + CONN_ANSWER_HEAD)
		f = COH_CLUSTER_MAX + CONN_ANSWER_HEAD;
	uint64_t bound = cfg->max_head + cfg->max_value + cfg->recv_buffer_size + CONN_OUT_MAX + f +
			 (cfg->max_value + CONN_ANSWER_HEAD);

	if (total / n < 2 * bound) {
		snprintf(err, errlen,
			 "--conn-memory: %llu MiB over %u shards is less than two connections' "
			 "worst case per shard (%llu MiB each; it follows --max-value and "
			 "--max-head): at least %llu MiB",
			 (unsigned long long)(total >> 20), n, (unsigned long long)(bound >> 20),
			 (unsigned long long)((2 * bound * n + (1u << 20) - 1) >> 20));
		return -EINVAL;
	}
	*out = (size_t)total;
	return 0;
}

int server_create(struct server **out, const struct config *cfg, char *err, size_t errlen)
{
	struct cpuset cpus;
	unsigned n;

	if (cfg->cpuset.n) {
		cpus = cfg->cpuset;
	} else if (cpuset_allowed(&cpus)) {
		snprintf(err, errlen, "cannot read the allowed CPU set");
		return -EINVAL;
	}
	n = cfg->shards ? cfg->shards : cpus.n;
	if (cfg->cpuset.n && cfg->shards && cfg->shards > cfg->cpuset.n) {
		snprintf(err, errlen, "--shards %u is more than the %u CPUs of --cpuset", cfg->shards,
			 cfg->cpuset.n);
		return -EINVAL;
	}
	if ((uint64_t)cfg->memory / n < (1u << 20)) {
		snprintf(err, errlen, "--memory: at least 1M per shard (%u shards)", n);
		return -EINVAL;
	}
	size_t conn_memory;
	int mrc = conn_memory_share(cfg, n, &conn_memory, err, errlen);
	if (mrc)
		return mrc;
	struct server *srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	int lrc = listen_open(&srv->listeners, cfg, PROTO_HTTP, PROTO_RESP, err, errlen);
	if (lrc) {
		free(srv);
		return lrc;
	}
	srv->conn_memory = conn_memory;
	srv->cfg = cfg;
	srv->nshards = n;
	srv->limits = (struct http_limits)HTTP_LIMITS(cfg->max_request_line, cfg->max_head, cfg->max_headers);
	/* a RESP command is bounded as an HTTP request is (conn.h B): one value,
	 * plus what a head may take for the rest */
	srv->resp_limits.max_bulk = cfg->max_value;
	srv->resp_limits.max_command = cfg->max_head + cfg->max_value;
	srv->shards = calloc(n, sizeof(*srv->shards));
	srv->stats = calloc(n, sizeof(*srv->stats));
	srv->rings = calloc((size_t)n * n, sizeof(*srv->rings));
	if (!srv->shards || !srv->stats || !srv->rings)
		goto nomem;
	for (unsigned i = 0; i < n; i++) {
		struct stats_shard *st = aligned_alloc(128, (sizeof(*st) + 127) & ~(size_t)127);
		if (!st)
			goto nomem;
		stats_init(st, i);
		srv->stats[i] = st;
	}
	for (unsigned i = 0; i < n * n; i++)
		if (i / n != i % n && !(srv->rings[i] = ring_create(cfg->ring_size)))
			goto nomem;
	if (cfg->api_keys_file && *cfg->api_keys_file) {
		struct auth_info info;
		struct auth *keys = NULL;
		int rc = auth_create(&keys, cfg->api_keys_file, &info);
		if (rc) {
			char why[128];
			snprintf(err, errlen, "--api-keys-file %s: %s", cfg->api_keys_file,
				 auth_strerror(rc, &info, why, sizeof(why)));
			server_destroy(srv);
			return -EINVAL; /* a bad flag value: exit status 2, as for the rest */
		}
		atomic_store_explicit(&srv->auth, keys, memory_order_relaxed); /* before the threads */
		if (info.other_readable)
			fprintf(stderr, "ringcached: warning: --api-keys-file %s is readable by others\n",
				cfg->api_keys_file);
	}
	if (cfg->redis && *cfg->redis) {
		int rc = setup_coherence(srv, &cpus, err, errlen);
		if (rc) {
			server_destroy(srv);
			return rc;
		}
	}
	if (cfg->snapshot && *cfg->snapshot) {
		char host[64] = "";
		gethostname(host, sizeof(host) - 1);
		struct snap_config sc = {
			.path = cfg->snapshot,
			.nshards = n,
			.max_blob = cache_blob_max(cfg->max_value),
			.host = srv->coh ? coh_instance_id(srv->coh) : host,
		};
		int rc = snap_create(&srv->snap, &sc);
		if (rc) {
			snprintf(err, errlen, "--snapshot %s: %s", cfg->snapshot, strerror(-rc));
			server_destroy(srv);
			return rc;
		}
	}
	if (cfg->compress_threads) {
		int rc = setup_zip(srv, &cpus, err, errlen);
		if (rc) {
			server_destroy(srv);
			return rc;
		}
	}
	/* after the coherence module: each shard sets up its side of it */
	for (unsigned i = 0; i < n; i++) {
		/* shards beyond the CPUs of the set are not pinned */
		srv->shards[i] = shard_create(srv, i, i < cpus.n ? cpus.cpu[i] : -1);
		if (!srv->shards[i])
			goto nomem;
	}
	*out = srv;
	return 0;
nomem:
	server_destroy(srv);
	snprintf(err, errlen, "out of memory setting up %u shards", n);
	return -ENOMEM;
}

static void log_shard(const struct shard *sh)
{
	struct store_stats ss;

	store_stats(sh->store, &ss);
	fprintf(stderr,
		"ringcached: shard %u: cpu %d, io_uring%s%s%s multishot-accept multishot-recv "
		"buf-ring(%u x %u), arena %s %llu MiB\n",
		sh->id, sh->cpu, sh->features.single_issuer ? " single-issuer" : "",
		sh->features.defer_taskrun ? " defer-taskrun" : "",
		sh->features.coop_taskrun ? " coop-taskrun" : "", sh->nbufs, sh->buf_size,
		store_backing_name(ss.backing), (unsigned long long)(ss.arena_bytes >> 20));
}

/* Main thread: one line of the snapshot's for the log (none if empty). */
static void log_snap(const char *msg)
{
	if (*msg)
		fprintf(stderr, "ringcached: %s\n", msg);
}

int server_run(struct server *srv, char *err, size_t errlen)
{
	unsigned n = srv->nshards, started = 0;
	char msg[512] = "";
	int rc = 0;

	if (srv->snap) {
		snap_open(srv->snap, msg, sizeof(msg));
		log_snap(msg);
	}
	pthread_barrier_init(&srv->ready, NULL, n + 1);
	atomic_store(&srv->closing, n);
	for (; started < n; started++) {
		rc = pthread_create(&srv->shards[started]->thread, NULL, shard_main,
				    srv->shards[started]);
		if (rc) {
			snprintf(err, errlen, "starting shard %u: %s", started, strerror(rc));
			rc = -rc;
			break;
		}
	}
	if (started < n) {
		/* the started ones wait at the barrier for n + 1 parties: never released */
		fprintf(stderr, "ringcached: %s\n", err);
		_exit(1);
	}
	pthread_barrier_wait(&srv->ready);
	for (unsigned i = 0; i < n && !rc; i++) {
		struct shard *sh = srv->shards[i];
		if (!sh->error)
			continue;
		rc = sh->error;
		if (!strcmp(sh->error_msg, "io_uring is not available"))
			io_uring_hint(err, errlen, "io_uring is not available", rc);
		else
			snprintf(err, errlen, "shard %u: %s", i, sh->error_msg);
	}
	if (!rc)
		for (unsigned i = 0; i < n; i++)
			log_shard(srv->shards[i]);
	/* before the shards go on: they check the snapshot against Redis */
	if (!rc && srv->coh) {
		rc = coh_start(srv->coh);
		if (rc)
			snprintf(err, errlen, "starting the coherence thread: %s", strerror(-rc));
		else
			fprintf(stderr, "ringcached: coherence: instance %s, redis %s\n",
				coh_instance_id(srv->coh), srv->cfg->redis);
	}
	if (rc)
		atomic_store(&srv->stop, true);
	pthread_barrier_wait(&srv->ready);
	/* the shards load the snapshot (shard.c warm_start) */
	pthread_barrier_wait(&srv->ready);
	if (srv->snap) {
		snap_load_end(srv->snap, rc == 0, NULL, msg, sizeof(msg));
		log_snap(msg);
	}
	srv->serving = rc == 0;
	return rc;
}

void server_stop(struct server *srv)
{
	char msg[512] = "";
	bool save = srv->snap && srv->serving &&
		    snap_save_begin(srv->snap, msg, sizeof(msg)) == 0;

	log_snap(msg);
	/* seq_cst, so a release: a shard that reads it set (shard.c) sees
	 * what snap_save_begin() prepared */
	atomic_store(&srv->stop, true);
	for (unsigned i = 0; i < srv->nshards; i++) {
		uint64_t one = 1;
		if (srv->shards[i]->event_fd >= 0 &&
		    write(srv->shards[i]->event_fd, &one, sizeof(one)) == -1) {
			/* EAGAIN: a wake-up is pending already */
		}
	}
	for (unsigned i = 0; i < srv->nshards; i++)
		pthread_join(srv->shards[i]->thread, NULL);
	if (save) {
		snap_save_end(srv->snap, msg, sizeof(msg));
		log_snap(msg);
	}
}

void server_destroy(struct server *srv)
{
	if (!srv)
		return;
	unsigned n = srv->nshards;
	/* first the threads that may still ring the shards */
	coh_destroy(srv->coh);
	snap_destroy(srv->snap);
	zip_destroy(srv->zip);
	/* messages left in rings are fwds: their origin shard frees them (fwd.h) */
	for (unsigned i = 0; srv->rings && i < n * n; i++)
		ring_destroy(srv->rings[i]);
	/* every connection (and its sends' pins in any store) before any store */
	for (unsigned i = 0; srv->shards && i < n; i++)
		shard_drop_clients(srv->shards[i]);
	for (unsigned i = 0; srv->shards && i < n; i++)
		shard_destroy(srv->shards[i]);
	for (unsigned i = 0; srv->stats && i < n; i++)
		free(srv->stats[i]);
	auth_destroy(atomic_load_explicit(&srv->auth, memory_order_relaxed)); /* threads joined */
	listen_close(&srv->listeners);
	free(srv->rings);
	free(srv->shards);
	free(srv->stats);
	free(srv);
}
