/*
 * test_stats.c - /stats JSON and /metrics Prometheus text: the JSON is
 * well-formed (a small recursive-descent validator) and carries the numbers
 * recorded; the Prometheus text is well-formed line by line, every sample
 * follows its family's TYPE line, and histogram buckets are cumulative and
 * end in +Inf equal to _count.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ringcache/stats.h"

/* ---- a minimal JSON validator ---- */

static const char *js_value(const char *p);

static const char *js_ws(const char *p)
{
	while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
		p++;
	return p;
}

static const char *js_string(const char *p)
{
	if (*p++ != '"')
		return NULL;
	while (*p && *p != '"') {
		if ((unsigned char)*p < 0x20)
			return NULL;
		if (*p == '\\' && !*++p)
			return NULL;
		p++;
	}
	return *p == '"' ? p + 1 : NULL;
}

static const char *js_number(const char *p)
{
	const char *s = p;
	if (*p == '-')
		p++;
	if (!isdigit((unsigned char)*p) || (*p == '0' && isdigit((unsigned char)p[1])))
		return NULL;
	while (isdigit((unsigned char)*p))
		p++;
	if (*p == '.') {
		if (!isdigit((unsigned char)*++p))
			return NULL;
		while (isdigit((unsigned char)*p))
			p++;
	}
	return p > s ? p : NULL;
}

static const char *js_members(const char *p, char close, bool keyed)
{
	p = js_ws(p);
	if (*p == close)
		return p + 1;
	for (;;) {
		if (keyed) {
			if (!(p = js_string(js_ws(p))))
				return NULL;
			p = js_ws(p);
			if (*p++ != ':')
				return NULL;
		}
		if (!(p = js_value(p)))
			return NULL;
		p = js_ws(p);
		if (*p == close)
			return p + 1;
		if (*p++ != ',')
			return NULL;
	}
}

static const char *js_value(const char *p)
{
	p = js_ws(p);
	switch (*p) {
	case '{': return js_members(p + 1, '}', true);
	case '[': return js_members(p + 1, ']', false);
	case '"': return js_string(p);
	case 't': return strncmp(p, "true", 4) ? NULL : p + 4;
	case 'f': return strncmp(p, "false", 5) ? NULL : p + 5;
	case 'n': return strncmp(p, "null", 4) ? NULL : p + 4;
	default: return js_number(p);
	}
}

static bool json_valid(const char *doc)
{
	const char *end = js_value(doc);
	return end && *js_ws(end) == '\0';
}

/* The number after the first "key": at or after `from`; -1 if absent. */
static long long json_num(const char *from, const char *key)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	const char *p = from ? strstr(from, pat) : NULL;
	return p ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

/* ---- Prometheus text checks ---- */

#define MAX_FAMILIES 64

struct prom_state {
	char typed[MAX_FAMILIES][96];
	char type[MAX_FAMILIES][16];
	unsigned n;
	unsigned bad;
	unsigned samples;
	bool quiet;
};

static int family_of(struct prom_state *st, const char *name)
{
	for (unsigned i = 0; i < st->n; i++) {
		size_t l = strlen(st->typed[i]);
		if (strncmp(name, st->typed[i], l))
			continue;
		if (name[l] == '\0')
			return (int)i;
		if (!strcmp(st->type[i], "histogram") &&
		    (!strcmp(name + l, "_bucket") || !strcmp(name + l, "_sum") ||
		     !strcmp(name + l, "_count")))
			return (int)i;
	}
	return -1;
}

static bool name_ok(const char *s, size_t n)
{
	if (n == 0 || isdigit((unsigned char)s[0]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != ':')
			return false;
	return true;
}

/* Checks one sample line: name{k="v",...} value */
static void prom_sample(struct prom_state *st, const char *line)
{
	size_t n = strcspn(line, "{ ");
	char name[96];
	if (n >= sizeof(name) || !name_ok(line, n)) {
		st->bad++;
		return;
	}
	memcpy(name, line, n);
	name[n] = '\0';
	if (family_of(st, name) < 0 || strncmp(name, "ringcached_", 11)) {
		if (!st->quiet)
			fprintf(stderr, "no TYPE before sample %s\n", name);
		st->bad++;
	}
	const char *p = line + n;
	if (*p == '{') {
		p++;
		while (*p != '}') {
			size_t k = strcspn(p, "=");
			if (!name_ok(p, k) || p[k] != '=' || p[k + 1] != '"') {
				st->bad++;
				return;
			}
			p += k + 2;
			while (*p && *p != '"')
				p += *p == '\\' ? 2 : 1;
			if (*p++ != '"' || (*p != ',' && *p != '}')) {
				st->bad++;
				return;
			}
			if (*p == ',')
				p++;
		}
		p++;
	}
	char *end;
	if (*p++ != ' ' || (strtod(p, &end), end == p) || *end != '\0')
		st->bad++;
	st->samples++;
}

static void prom_check(struct prom_state *st, char *text, bool quiet)
{
	memset(st, 0, sizeof(*st));
	st->quiet = quiet;
	char *save, *line;
	bool helped = false;
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (!strncmp(line, "# HELP ", 7)) {
			helped = true;
			continue;
		}
		if (!strncmp(line, "# TYPE ", 7)) {
			char name[96], type[16];
			if (sscanf(line + 7, "%95s %15s", name, type) != 2 || !helped ||
			    family_of(st, name) >= 0 || st->n == MAX_FAMILIES ||
			    (strcmp(type, "counter") && strcmp(type, "gauge") &&
			     strcmp(type, "histogram"))) {
				st->bad++;
				continue;
			}
			if (!strcmp(type, "counter") != (strlen(name) > 6 &&
			    !strcmp(name + strlen(name) - 6, "_total")))
				st->bad++; /* counters, and only they, end in _total */
			strcpy(st->typed[st->n], name);
			strcpy(st->type[st->n++], type);
			helped = false;
			continue;
		}
		if (line[0] == '#') {
			st->bad++;
			continue;
		}
		prom_sample(st, line);
	}
}

/* The buckets of one kind: cumulative, ending in +Inf == _count. */
static void prom_check_hist(const char *text, const char *kind, uint64_t want_count,
			    uint64_t want_le_1us, const char *want_sum)
{
	char pat[128];
	uint64_t prev = 0, inf = UINT64_MAX, count = UINT64_MAX, le_1us = UINT64_MAX;
	double prev_le = -1;
	unsigned buckets = 0, bad = 0;

	snprintf(pat, sizeof(pat), "ringcached_request_duration_seconds_bucket{kind=\"%s\",le=\"", kind);
	for (const char *p = strstr(text, pat); p; p = strstr(p + 1, pat)) {
		const char *le = p + strlen(pat);
		uint64_t v = strtoull(strchr(le, ' ') + 1, NULL, 10);
		double lev = strncmp(le, "+Inf", 4) ? strtod(le, NULL) : 1e300;
		bad += lev <= prev_le || v < prev;
		if (!strncmp(le, "1e-06\"", 6))
			le_1us = v;
		if (!strncmp(le, "+Inf\"", 5))
			inf = v;
		else if (inf != UINT64_MAX)
			bad++; /* something after +Inf */
		prev = v;
		prev_le = lev;
		buckets++;
	}
	snprintf(pat, sizeof(pat), "ringcached_request_duration_seconds_count{kind=\"%s\"} ", kind);
	const char *c = strstr(text, pat);
	if (c)
		count = strtoull(c + strlen(pat), NULL, 10);
	CHECK_EQ(bad, 0);
	CHECK(buckets >= 10);
	CHECK_EQ(inf, count);
	CHECK_EQ(count, want_count);
	CHECK_EQ(le_1us, want_le_1us);
	snprintf(pat, sizeof(pat), "ringcached_request_duration_seconds_sum{kind=\"%s\"} %s\n",
		 kind, want_sum);
	CHECK(strstr(text, pat) != NULL);
}

/* ---- the tests ---- */

static struct stats_shard s0, s1;

static void fill(void)
{
	stats_init(&s0, 0);
	stats_init(&s1, 1);

	for (int i = 0; i < 5; i++)
		stats_inc(&s0.requests);
	stats_add(&s0.local_requests, 4);
	stats_inc(&s1.forwarded_requests);
	stats_add(&s1.requests, 7);
	stats_add(&s0.hits, 3);
	stats_add(&s1.hits, 4);
	stats_inc(&s0.misses);
	stats_add(&s0.received_bytes, 1000);
	stats_add(&s1.sent_bytes, 12345);
	stats_inc(&s0.connections_accepted);
	stats_inc(&s0.connections_accepted);
	stats_inc(&s0.connections);
	stats_inc(&s0.connections);
	stats_dec(&s0.connections);

	struct store_stats ss = { .items = 10, .value_bytes = 2000, .arena_bytes = 1 << 20,
				  .evictions = 2, .expirations = 3 };
	stats_store_update(&s0, &ss);
	ss.items = 5;
	ss.evictions = 0;
	stats_store_update(&s1, &ss);

	/* Local hits: 50 ns x3 and 200 ns x2 on shard 0, 3000 ns on shard 1;
	 * forwarded: 1500 ns once on shard 1. */
	for (int i = 0; i < 3; i++)
		hist_record(&s0.lat_local, 50);
	hist_record(&s0.lat_local, 200);
	hist_record(&s0.lat_local, 200);
	hist_record(&s1.lat_local, 3000);
	hist_record(&s1.lat_forwarded, 1500);
}

/* A table kept outside the shards (the coherence thread's), rendered by the
 * same code: JSON "l2":{...} after per_shard, Prometheus ringcached_l2_*. */
static const struct stats_field extra_fields[] = {
	{ "gets", STATS_COUNTER, "GET requests." },
	{ "backlog", STATS_GAUGE, "Messages waiting." },
};
static const uint64_t extra_values[] = { 17, 3 };
static const struct stats_table extra[] = {
	{ "l2", extra_fields, 2, extra_values },
};

static void test_json(void)
{
	struct stats_shard *shards[] = { &s0, &s1 };
	struct buf b = { 0 };

	CHECK_EQ(stats_format_json(shards, 2, extra, 1, &b), 0);
	CHECK_EQ(buf_append(&b, "", 1), 0);
	const char *doc = b.data;
	CHECK(json_valid(doc));

	const char *total = strstr(doc, "\"total\":{");
	const char *per = strstr(doc, "\"per_shard\":[");
	const char *sh1 = strstr(doc, "{\"shard\":1,");
	CHECK(total && per && sh1 && total < per && per < sh1);
	CHECK(json_num(doc, "uptime_seconds") >= 0);
	CHECK_EQ(json_num(doc, "shards"), 2);

	CHECK_EQ(json_num(total, "requests"), 12);
	CHECK_EQ(json_num(total, "hits"), 7);
	CHECK_EQ(json_num(total, "misses"), 1);
	CHECK_EQ(json_num(total, "items"), 15);
	CHECK_EQ(json_num(total, "value_bytes"), 4000);
	CHECK_EQ(json_num(total, "evictions"), 2);
	CHECK_EQ(json_num(total, "expirations"), 6);
	CHECK_EQ(json_num(total, "connections"), 1);
	CHECK_EQ(json_num(per, "requests"), 5);
	CHECK_EQ(json_num(per, "local_requests"), 4);
	CHECK_EQ(json_num(sh1, "requests"), 7);
	CHECK_EQ(json_num(sh1, "sent_bytes"), 12345);
	CHECK_EQ(json_num(sh1, "forwarded_requests"), 1);

	const char *l2 = strstr(doc, "\"l2\":{");
	CHECK(l2 != NULL && l2 > sh1);
	CHECK_EQ(json_num(l2, "gets"), 17);
	CHECK_EQ(json_num(l2, "backlog"), 3);
	CHECK(l2 && strcmp(l2, "\"l2\":{\"gets\":17,\"backlog\":3}}\n") == 0);

	/* Every table name is a key. */
	unsigned missing = 0;
#define HAS_KEY(name, type, help) missing += json_num(total, #name) < 0;
	STATS_METRICS(HAS_KEY)
#undef HAS_KEY
	CHECK_EQ(missing, 0);

	/* Latency: totals merge both shards. */
	const char *lat = strstr(total, "\"latency_ns\":{\"local\":{");
	CHECK(lat != NULL);
	CHECK_EQ(json_num(lat, "count"), 6);
	long long p50 = json_num(lat, "p50");        /* rank 3 of 6: 50 */
	CHECK(p50 >= 50 && p50 <= 50 + 50 / 16);
	long long p90 = json_num(lat, "p90");        /* rank 6: 3000 */
	CHECK(p90 >= 3000 && p90 <= 3000 + 3000 / 16);
	CHECK_EQ(json_num(lat, "max"), 3000);
	CHECK(strstr(lat, "\"p99.9\":") != NULL);
	const char *fwd = strstr(total, "\"forwarded\":{");
	CHECK_EQ(json_num(fwd, "count"), 1);
	CHECK_EQ(json_num(fwd, "max"), 1500);
	const char *lat0 = strstr(per, "\"local\":{");
	CHECK_EQ(json_num(lat0, "count"), 5);
	long long p99_0 = json_num(lat0, "p99");
	CHECK(p99_0 >= 200 && p99_0 <= 200 + 200 / 16);
	CHECK_EQ(json_num(strstr(per, "\"forwarded\":{"), "max"), 0);

	/* Appends, does not overwrite. */
	b.len = 0;
	CHECK_EQ(buf_append(&b, "x", 1), 0);
	CHECK_EQ(stats_format_json(shards, 0, NULL, 0, &b), 0);
	CHECK_EQ(buf_append(&b, "", 1), 0);
	CHECK(b.data[0] == 'x' && json_valid(b.data + 1));
	buf_deinit(&b);
}

static void test_prometheus(void)
{
	struct stats_shard *shards[] = { &s0, &s1 };
	struct buf b = { 0 };
	struct prom_state st;

	CHECK_EQ(stats_format_prometheus(shards, 2, extra, 1, &b), 0);
	CHECK_EQ(buf_append(&b, "", 1), 0);
	char *copy = strdup(b.data);
	const char *text = b.data;

	CHECK(strstr(text, "# TYPE ringcached_requests_total counter\n") != NULL);
	CHECK(strstr(text, "ringcached_requests_total{shard=\"0\"} 5\n") != NULL);
	CHECK(strstr(text, "ringcached_requests_total{shard=\"1\"} 7\n") != NULL);
	CHECK(strstr(text, "# TYPE ringcached_items gauge\n") != NULL);
	CHECK(strstr(text, "ringcached_items{shard=\"0\"} 10\n") != NULL);
	CHECK(strstr(text, "ringcached_value_bytes{shard=\"1\"} 2000\n") != NULL);
	CHECK(strstr(text, "ringcached_evictions_total{shard=\"0\"} 2\n") != NULL);
	CHECK(strstr(text, "# TYPE ringcached_request_duration_seconds histogram\n") != NULL);
	CHECK(strstr(text, "# TYPE ringcached_l2_gets_total counter\nringcached_l2_gets_total 17\n"));
	CHECK(strstr(text, "# TYPE ringcached_l2_backlog gauge\nringcached_l2_backlog 3\n"));

	unsigned missing = 0;
	char pat[128];
#define HAS_NAME(name, type, help)                                                 \
	snprintf(pat, sizeof(pat), "\nringcached_" #name "%s{shard=\"1\"} ",        \
		 !strcmp(#type, "COUNTER") ? "_total" : "");                       \
	missing += strstr(text, pat) == NULL;
	STATS_METRICS(HAS_NAME)
#undef HAS_NAME
	CHECK_EQ(missing, 0);

	prom_check(&st, copy, false);
	CHECK_EQ(st.bad, 0);
	CHECK(st.samples > 40);
	/* 50,50,50,200,200 <= 1us; 3000 is not.  Sum 3550 ns. */
	prom_check_hist(text, "local", 6, 5, "0.000003550");
	prom_check_hist(text, "forwarded", 1, 0, "0.000001500");
	free(copy);
	buf_deinit(&b);

	/* The checker itself catches a sample without TYPE and bad buckets. */
	char broken[] = "# HELP ringcached_x_total x\n# TYPE ringcached_x_total counter\n"
			"ringcached_x_total 1\nringcached_y 2\nringcached_x_total{a=\"1} 3\n";
	prom_check(&st, broken, true);
	CHECK_EQ(st.bad, 2);
}

int main(void)
{
	CHECK(json_valid("{\"a\":[1,2,{\"b\":\"c\"}],\"d\":0.5}"));
	CHECK(!json_valid("{\"a\":1,}"));
	CHECK(!json_valid("{\"a\":1"));
	CHECK(!json_valid("{\"a\" 1}"));
	fill();
	test_json();
	test_prometheus();
	return check_done("test_stats");
}
