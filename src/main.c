/*
 * main.c - ringcached: read the flags and the --config file (or only check
 * them: --check-config), start the shards, wait for a signal, stop.  The
 * only place that prints, apart from the shards' startup line.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "ringcache_version.h"
#include "cache/compress.h"
#include "coherence/url.h"
#include "ringcache/auth.h"
#include "ringcache/hash.h"
#include "shard/server.h"

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

int main(int argc, char **argv)
{
	struct config cfg;
	struct server *srv = NULL;
	char err[512] = "";
	sigset_t sigs;
	int rc, sig;

	rc = config_parse(&cfg, argc, argv, err, sizeof(err));
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
		rc = check_config(&cfg);
		config_deinit(&cfg);
		return rc;
	}

	/* before any thread: every shard and the coherence thread read it */
	if (cfg.hash_seed.fixed) {
		hash_key_seed = cfg.hash_seed.value;
	} else if ((rc = hash_key_seed_random()) != 0) {
		fprintf(stderr, "ringcached: --hash-seed random: getrandom: %s\n", strerror(-rc));
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

	rc = server_create(&srv, &cfg, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "ringcached: %s\n", err);
		return rc == -EINVAL ? 2 : 1;
	}
	raise_nofile(&cfg, srv->nshards);
	rc = server_run(srv, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "ringcached: %s\n", err);
		server_stop(srv);
		server_destroy(srv);
		return 1;
	}
	fprintf(stderr, "ringcached %s: listening on %s:%u with %u shards\n", RINGCACHE_VERSION,
		cfg.listen.host, cfg.listen.port, srv->nshards);

	/* SIGHUP's default action would kill the daemon with no drain and no
	 * registry goodbye: it has no meaning yet, so it is logged and ignored. */
	while (sigwait(&sigs, &sig) == 0 && sig != SIGINT && sig != SIGTERM)
		if (sig == SIGHUP)
			fprintf(stderr, "ringcached: SIGHUP ignored (nothing to reload)\n");
	fprintf(stderr, "ringcached: signal %d, stopping\n", sig);
	server_stop(srv);
	server_destroy(srv);
	config_deinit(&cfg);
	return 0;
}
