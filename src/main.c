/*
 * main.c - ringcached: parse flags, start the shards, wait for a signal,
 * stop.  The only place that prints, apart from the shards' startup line.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ringcache_version.h"
#include "shard/shard.h"

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

	/* Every thread inherits this mask; only main takes the signals. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	rc = server_create(&srv, &cfg, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "ringcached: %s\n", err);
		return rc == -EINVAL ? 2 : 1;
	}
	rc = server_run(srv, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "ringcached: %s\n", err);
		server_stop(srv);
		server_destroy(srv);
		return 1;
	}
	fprintf(stderr, "ringcached %s: listening on %s:%u with %u shards\n", RINGCACHE_VERSION,
		cfg.listen.host, cfg.listen.port, srv->nshards);

	while (sigwait(&sigs, &sig) == 0 && sig != SIGINT && sig != SIGTERM)
		;
	fprintf(stderr, "ringcached: signal %d, stopping\n", sig);
	server_stop(srv);
	server_destroy(srv);
	return 0;
}
