/*
 * server.h - the daemon: its shards, the rings between them, and what they
 * share (configuration, API keys, counters, the coherence thread).
 *
 * A server is N shards (shard.h).  Everything that crosses threads goes
 * through a struct ring:
 *
 *         rings[from * n + to]: shard `from` produces, shard `to` consumes
 *
 *   shard 0 --ring[0*n+1]--> shard 1      requests for keys shard 1 owns,
 *   shard 0 <--ring[1*n+0]-- shard 1      and the replies to shard 1's ones
 *
 * server.c only wires: it claims the addresses, creates the shards and their
 * rings, starts the threads together, and stops and frees them.
 */
#ifndef RINGCACHE_SERVER_H
#define RINGCACHE_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "ringcache/config.h"
#include "ringcache/http.h"
#include "ringcache/resp.h"
#include "listen.h"

struct auth;
struct coh;
struct ring;
struct shard;
struct snap;
struct stats_shard;
struct zip;

struct server {
	const struct config *cfg;
	unsigned nshards;
	struct shard **shards;
	struct ring **rings;            /* nshards * nshards, [from * n + to] */
	struct stats_shard **stats;     /* one per shard, for /stats and /metrics */
	/*
	 * The API keys; NULL: none configured (and then none can be loaded:
	 * SIGHUP reloads only a --api-keys-file the daemon started with).
	 * Swapped by the main thread on SIGHUP while shards read it per
	 * request: every access is seq_cst (the reader's load, the writer's
	 * exchange) and the old set is freed only after every shard's `turns`
	 * moved past the swap; src/main.c reload_keys() says why.
	 */
	_Atomic(struct auth *) auth;
	struct coh *coh;                /* NULL: L1 only (no --redis) */
	struct listen_set listeners;    /* claims and shared Unix sockets (listen.h) */
	struct snap *snap;              /* NULL: no --snapshot */
	bool serving;                   /* server_run() succeeded: a stop saves the snapshot */
	size_t conn_memory;             /* --conn-memory, or what "auto" came to */
	char advertise[128];            /* HOST:PORT (or unix:PATH) in the registry */
	struct zip *zip;                /* compression workers; NULL: --compress-threads 0 */
	_Atomic bool stop;
	_Atomic unsigned closing;       /* shards still ending their work (shard.c teardown) */
	pthread_barrier_t ready;
	struct http_limits limits;
	struct resp_limits resp_limits; /* a RESP command: --max-value, + --max-head in all */
	_Atomic uint64_t next_client_id;        /* RESP's CLIENT ID, process-wide */
};

/*
 * Checks the configuration against the machine, claims the port, creates
 * the shards (not started), the rings, the API keys and the coherence
 * module.  0, or -EINVAL (a bad flag value: exit status 2) / -errno with a
 * message in err.
 */
int server_create(struct server **out, const struct config *cfg, char *err, size_t errlen);

/* Starts every shard, and once all have set up, the coherence thread;
 * then the shards load the --snapshot (and check it against Redis), and
 * it returns once they are about to serve.  0 or -errno with a message in
 * err (then call server_stop). */
int server_run(struct server *srv, char *err, size_t errlen);

/* Asks every shard to stop and waits for them; with --snapshot, after a
 * successful server_run(), the shards save their stores on the way out. */
void server_stop(struct server *srv);

/* Frees everything, including what was still in flight.  Accepts NULL. */
void server_destroy(struct server *srv);

/* The ring `from` produces into and `to` consumes. */
static inline struct ring *server_ring(const struct server *srv, unsigned from, unsigned to)
{
	return srv->rings[from * srv->nshards + to];
}

#endif
