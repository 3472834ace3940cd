/*
 * test_route.c - the route table, read by route_request() and
 * route_refuse_early(): the two agree on every refusal (issue 11: they had
 * drifted once), refuse in one order (path, method, key), and early refusals
 * close the connection.  Runs a real shard's routing on a real store and a
 * real socket, without io_uring: requests are parsed by the real parser and
 * answers read back from the connection's pipeline.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "ringcache/auth.h"
#include "ringcache/cache.h"
#include "ringcache/config.h"
#include "ringcache/stats.h"
#include "ringcache/store.h"
#include "shard/conn.h"
#include "shard/fwd.h"
#include "shard/route.h"
#include "shard/server.h"
#include "shard/shard.h"

#define KEY "test-key-0123456789"

static struct config cfg;
static struct server srv;
static struct stats_shard *stats;
static struct shard *sh;

static void setup(void)
{
	char err[256];
	char *argv[] = { "ringcached", NULL };
	char path[] = "/tmp/test_route_keys_XXXXXX";
	int fd = mkstemp(path);

	CHECK(fd >= 0);
	CHECK(write(fd, KEY "\n", sizeof(KEY)) == (ssize_t)sizeof(KEY));
	close(fd);
	CHECK_EQ(config_parse(&cfg, 1, argv, err, sizeof(err)), CONFIG_OK);
	struct auth *keys = NULL;
	CHECK_EQ(auth_create(&keys, path, NULL), 0);
	srv.auth = keys;
	unlink(path);

	stats = calloc(1, sizeof(*stats));
	stats_init(stats, 0);
	srv.cfg = &cfg;
	srv.nshards = 1;
	srv.stats = &stats;
	srv.limits = (struct http_limits)HTTP_LIMITS(8192, 32768, 100);
	sh = shard_create(&srv, 0, -1);
	CHECK(sh != NULL);
	srv.shards = &sh;

	struct store_config sc = { .memory = 8u << 20, .max_value = cache_blob_max(1 << 20),
				   .hugepages = STORE_HUGEPAGES_OFF, .numa_node = -1 };
	struct cache_config cc = { .compress_min = 256, .max_value = 1 << 20 };
	CHECK_EQ(store_create(&sh->store, &sc), 0);
	CHECK_EQ(cache_create(&sh->cache, sh->store, &cc), 0);
	cache_tick(sh->cache, 10);
}

/* A connection of the shard, on one end of a socketpair, never armed. */
static struct conn *conn_new(int *peer)
{
	int sv[2];
	struct conn *c = calloc(1, sizeof(*c));

	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	c->sh = sh;
	c->fd = sv[0];
	*peer = sv[1];
	pipeline_init(&c->pipe, sh->stats, fwd_release, fwd_orphan);
	c->idx = sh->nconns;
	sh->conns[sh->nconns++] = c;
	return c;
}

static void conn_end(struct conn *c, int peer)
{
	sh->ndirty = 0;
	c->flags &= ~C_DIRTY;
	conn_destroy(c);
	close(peer);
}

struct answer {
	int status;
	bool closes, allow, www_auth, x_cache;
};

static struct answer answer_of(const struct buf *out)
{
	struct answer a = { 0 };
	char head[1024];
	size_t n = out->len < sizeof(head) - 1 ? out->len : sizeof(head) - 1;

	memcpy(head, out->data, n);
	head[n] = '\0';
	if (sscanf(head, "HTTP/1.1 %d ", &a.status) != 1)
		a.status = -1;
	a.closes = strstr(head, "\r\nConnection: close\r\n") != NULL;
	a.allow = strstr(head, "\r\nAllow: ") != NULL;
	a.www_auth = strstr(head, "\r\nWWW-Authenticate: ") != NULL;
	a.x_cache = strstr(head, "\r\nX-Cache: ") != NULL;
	return a;
}

/* Parses `raw` and hands it to route_request (whole) or route_refuse_early
 * (head only: the body is still to come). */
static bool route(const char *raw, bool early, struct answer *a)
{
	struct http_request req;
	size_t scanned = 0;
	int peer;
	struct conn *c = conn_new(&peer);
	bool refused = true;

	CHECK(http_parse_request(raw, strlen(raw), &scanned, &srv.limits, &req) > 0);
	if (early)
		refused = route_refuse_early(c, &req);
	else
		route_request(c, &req, (const uint8_t *)"v", 1);
	*a = refused ? answer_of(&c->pipe.out.bytes) : (struct answer){ 0 };
	if (early && refused)
		CHECK(c->pipe.close);   /* the body that follows is not read */
	conn_end(c, peer);
	return refused;
}

static const char *const paths[] = { "/cache/k", "/health", "/stats", "/metrics", "/cluster",
				     "/dashboard", "/nope", "/cache", "/healthz" };
static const char *const methods[] = { "GET", "HEAD", "PUT", "POST", "DELETE", "PATCH" };
static const char *const keys[] = { "", "X-API-Key: wrong\r\n", "X-API-Key: " KEY "\r\n" };

/* Every refusal route_request makes from the table, route_refuse_early makes
 * too, with the same status and headers; whatever it lets through,
 * route_request does not refuse. */
static void test_agree(void)
{
	unsigned cases = 0, refusals = 0;

	for (size_t p = 0; p < sizeof(paths) / sizeof(paths[0]); p++)
		for (size_t m = 0; m < sizeof(methods) / sizeof(methods[0]); m++)
			for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
				char raw[512];
				struct answer full, early;
				snprintf(raw, sizeof(raw),
					 "%s %s HTTP/1.1\r\nHost: x\r\n%sContent-Length: 1\r\n\r\n",
					 methods[m], paths[p], keys[k]);
				route(raw, false, &full);
				bool refused = route(raw, true, &early);
				cases++;
				if (refused) {
					refusals++;
					CHECK_EQ(early.status, full.status);
					CHECK(early.allow == full.allow);
					CHECK(early.www_auth == full.www_auth);
					CHECK(early.closes);
					CHECK(!full.x_cache);
				} else {
					CHECK(!full.allow && !full.www_auth);
				}
			}
	CHECK_EQ(cases, 9 * 6 * 3);
	CHECK(refusals > 0 && refusals < cases);
}

static int status_of(const char *raw, bool early)
{
	struct answer a;
	return route(raw, early, &a) ? a.status : 0;
}

/* The order: path, then method, then key. */
static void test_order(void)
{
	CHECK_EQ(status_of("PATCH /nope HTTP/1.1\r\n\r\n", true), 404);
	CHECK_EQ(status_of("PATCH /cache/k HTTP/1.1\r\n\r\n", true), 405);
	CHECK_EQ(status_of("PATCH /health HTTP/1.1\r\n\r\n", true), 405);
	CHECK_EQ(status_of("PUT /stats HTTP/1.1\r\n\r\n", true), 405);
	CHECK_EQ(status_of("GET /stats HTTP/1.1\r\n\r\n", true), 401);
	CHECK_EQ(status_of("PUT /cache/k HTTP/1.1\r\n\r\n", true), 401);
	CHECK_EQ(status_of("PUT /cache/k HTTP/1.1\r\nAuthorization: Bearer " KEY "\r\n\r\n", true),
		 0);
	CHECK_EQ(status_of("GET /health HTTP/1.1\r\n\r\n", true), 0);
	/* accepted by the table, answered by the handler */
	CHECK_EQ(status_of("GET /health HTTP/1.1\r\n\r\n", false), 200);
	CHECK_EQ(status_of("GET /cluster HTTP/1.1\r\nX-API-Key: " KEY "\r\n\r\n", false), 404);
	/* the dashboard page is open like /health; its /stats polls are not */
	CHECK_EQ(status_of("GET /dashboard HTTP/1.1\r\n\r\n", true), 0);
	CHECK_EQ(status_of("GET /dashboard HTTP/1.1\r\n\r\n", false), 200);
	CHECK_EQ(status_of("HEAD /dashboard HTTP/1.1\r\n\r\n", false), 200);
	CHECK_EQ(status_of("PUT /dashboard HTTP/1.1\r\n\r\n", true), 405);
}

/* A /cache/ request the table accepts reaches the store, locally. */
static void test_cache_path(void)
{
	struct answer a;
	uint64_t local = stats_get(&stats->local_requests), sets = stats_get(&stats->sets),
		 hits = stats_get(&stats->hits);

	route("PUT /cache/k HTTP/1.1\r\nX-API-Key: " KEY "\r\nContent-Length: 1\r\n\r\n", false,
	      &a);
	CHECK_EQ(a.status, 201);
	route("GET /cache/k HTTP/1.1\r\nX-API-Key: " KEY "\r\n\r\n", false, &a);
	CHECK_EQ(a.status, 200);
	CHECK(a.x_cache);
	route("GET /cache/%ZZ HTTP/1.1\r\nX-API-Key: " KEY "\r\n\r\n", false, &a);
	CHECK_EQ(a.status, 400);
	CHECK_EQ(stats_get(&stats->local_requests) - local, 2);
	CHECK_EQ(stats_get(&stats->sets) - sets, 1);
	CHECK_EQ(stats_get(&stats->hits) - hits, 1);
}

int main(void)
{
	setup();
	test_agree();
	test_order();
	test_cache_path();
	shard_destroy(sh);
	auth_destroy(srv.auth);
	free(stats);
	return check_done("route");
}
