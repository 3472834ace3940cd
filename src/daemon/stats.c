/*
 * stats.c - rendering the shards' counters and histograms for /stats (JSON)
 * and /metrics (Prometheus text 0.0.4).
 *
 * Both formats are built from the STATS_METRICS and STATS_HISTS tables, so
 * a name exists in both or in neither.  Every counter is read once into a
 * plain array first and the totals are summed from that array, so a
 * document's totals always equal the sum of the per-shard numbers it shows,
 * even while the shards keep counting.
 *
 * Prometheus gets one histogram per kind summed over all shards (a `kind`
 * label per STATS_HISTS entry, no shard label) to keep the number of series
 * independent of the shard count; JSON has per-shard percentiles for finding a hot
 * shard.  Its buckets are cumulative counts from hist_count_le(), so a
 * value is counted at its log-linear bucket's upper bound (<= 6.25% late).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ringcache/clock.h"
#include "ringcache/stats.h"

enum {
#define STATS_ENUM(name, type, help) M_##name,
	STATS_METRICS(STATS_ENUM)
#undef STATS_ENUM
	N_METRICS
};

enum {
#define STATS_HENUM(name, kind, help) H_##name,
	STATS_HISTS(STATS_HENUM)
#undef STATS_HENUM
	N_HISTS
};

/* The shards' table, and where each field sits in struct stats_shard. */
static const struct stats_field metrics[N_METRICS] = {
	STATS_METRICS(STATS_FIELD_DESC)
};

static const size_t metric_offset[N_METRICS] = {
#define STATS_OFFSET(name, type, help) offsetof(struct stats_shard, name),
	STATS_METRICS(STATS_OFFSET)
#undef STATS_OFFSET
};

static const struct hist_desc {
	const char *name;
	const char *kind;
	const char *help;
	size_t offset;
} hists[N_HISTS] = {
#define STATS_HDESC(name, kind, help) \
	{ #name, kind, help, offsetof(struct stats_shard, name) },
	STATS_HISTS(STATS_HDESC)
#undef STATS_HDESC
};

/* Prometheus bucket bounds: ns, and the same in seconds as printed. */
static const struct {
	uint64_t ns;
	const char *le;
} prom_buckets[] = {
	{ 100, "1e-07" },          { 250, "2.5e-07" },     { 500, "5e-07" },
	{ 1000, "1e-06" },         { 2500, "2.5e-06" },    { 5000, "5e-06" },
	{ 10000, "1e-05" },        { 25000, "2.5e-05" },   { 50000, "5e-05" },
	{ 100000, "0.0001" },      { 250000, "0.00025" },  { 500000, "0.0005" },
	{ 1000000, "0.001" },      { 10000000, "0.01" },   { 100000000, "0.1" },
	{ 1000000000, "1" },
};

#define N_PROM_BUCKETS (sizeof(prom_buckets) / sizeof(prom_buckets[0]))

/* Quantiles reported in JSON, with their keys. */
static const struct {
	const char *key;
	uint32_t ppm;
} quantiles[] = {
	{ "p50", HIST_P50 }, { "p90", HIST_P90 }, { "p99", HIST_P99 },
	{ "p99.9", HIST_P999 }, { "max", HIST_PMAX },
};

#define N_QUANTILES (sizeof(quantiles) / sizeof(quantiles[0]))

/* A histogram reduced to what JSON shows. */
struct hist_summary {
	uint64_t count;
	uint64_t q[N_QUANTILES];
};

/* Appending without checking every call: the first error sticks. */
struct out {
	struct buf *b;
	int err;
};

__attribute__((format(printf, 2, 3)))
static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;

	if (o->err)
		return;
	for (int tries = 0; tries < 2; tries++) {
		size_t room = o->b->cap - o->b->len;
		va_start(ap, fmt);
		int n = vsnprintf(room ? o->b->data + o->b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			o->err = -EINVAL;
			return;
		}
		if ((size_t)n < room) {
			o->b->len += (size_t)n;
			return;
		}
		if (buf_reserve(o->b, (size_t)n + 1) != 0) {
			o->err = -ENOMEM;
			return;
		}
	}
}

void stats_init(struct stats_shard *s, unsigned id)
{
	for (unsigned m = 0; m < N_METRICS; m++)
		stats_set((_Atomic uint64_t *)((char *)s + metric_offset[m]), 0);
	for (unsigned h = 0; h < N_HISTS; h++)
		hist_init((struct hist *)((char *)s + hists[h].offset));
	s->start_ns = clock_mono_ns();
	s->id = id;
}

void stats_store_update(struct stats_shard *s, const struct store_stats *ss)
{
	stats_set(&s->items, ss->items);
	stats_set(&s->value_bytes, ss->value_bytes);
	stats_set(&s->arena_bytes, ss->arena_bytes);
	stats_set(&s->evictions, ss->evictions);
	stats_set(&s->expirations, ss->expirations);
	stats_set(&s->pins_refused, ss->pins_refused);
}

void stats_store_counts(struct stats_shard *s, const struct store_counts *sc)
{
	stats_set(&s->items, sc->items);
	stats_set(&s->value_bytes, sc->value_bytes);
	stats_set(&s->evictions, sc->evictions);
}

static uint64_t metric(const struct stats_shard *s, unsigned m)
{
	return stats_get((const _Atomic uint64_t *)((const char *)s + metric_offset[m]));
}

static const struct hist *hist_of(const struct stats_shard *s, unsigned h)
{
	return (const struct hist *)((const char *)s + hists[h].offset);
}

static void summarize(struct hist_summary *sum, const struct hist_snapshot *snap)
{
	sum->count = snap->count;
	for (unsigned q = 0; q < N_QUANTILES; q++)
		sum->q[q] = hist_percentile(snap, quantiles[q].ppm);
}

static uint64_t uptime_seconds(struct stats_shard *const *shards, unsigned n)
{
	uint64_t now = clock_mono_ns(), start = now;

	for (unsigned i = 0; i < n; i++)
		if (shards[i]->start_ns && shards[i]->start_ns < start)
			start = shards[i]->start_ns;
	return (now - start) / 1000000000u;
}

/* "name":value pairs of one table, each followed by a comma but the last. */
static void json_fields(struct out *o, const struct stats_field *f, unsigned n,
			const uint64_t *vals, bool trailing_comma)
{
	for (unsigned m = 0; m < n; m++)
		put(o, "\"%s\":%" PRIu64 "%s", f[m].name, vals[m],
		    m + 1 < n || trailing_comma ? "," : "");
}

static void json_object(struct out *o, const uint64_t *vals,
			const struct hist_summary *lat)
{
	json_fields(o, metrics, N_METRICS, vals, true);
	put(o, "\"latency_ns\":{");
	for (unsigned h = 0; h < N_HISTS; h++) {
		put(o, "%s\"%s\":{\"count\":%" PRIu64, h ? "," : "", hists[h].kind,
		    lat[h].count);
		for (unsigned q = 0; q < N_QUANTILES; q++)
			put(o, ",\"%s\":%" PRIu64, quantiles[q].key, lat[h].q[q]);
		put(o, "}");
	}
	put(o, "}");
}

int stats_format_json(struct stats_shard *const *shards, unsigned n,
		      const struct stats_table *extra, unsigned nextra, struct buf *out)
{
	struct out o = { out, 0 };
	uint64_t *vals = calloc((size_t)n + 1, N_METRICS * sizeof(*vals));
	struct hist_summary *lat = calloc((size_t)n + 1, N_HISTS * sizeof(*lat));
	struct hist_snapshot *snap = malloc((N_HISTS + 1) * sizeof(*snap));

	if (!vals || !lat || !snap) {
		o.err = -ENOMEM;
		goto done;
	}
	/* Row n holds the totals. */
	uint64_t *total = vals + (size_t)n * N_METRICS;
	struct hist_snapshot *one = &snap[N_HISTS];
	for (unsigned h = 0; h < N_HISTS; h++)
		hist_snapshot_init(&snap[h]);
	for (unsigned i = 0; i < n; i++) {
		for (unsigned m = 0; m < N_METRICS; m++) {
			vals[i * N_METRICS + m] = metric(shards[i], m);
			total[m] += vals[i * N_METRICS + m];
		}
		for (unsigned h = 0; h < N_HISTS; h++) {
			hist_snapshot_init(one);
			hist_merge(one, hist_of(shards[i], h));
			summarize(&lat[i * N_HISTS + h], one);
			hist_snapshot_add(&snap[h], one);
		}
	}
	for (unsigned h = 0; h < N_HISTS; h++)
		summarize(&lat[(size_t)n * N_HISTS + h], &snap[h]);

	put(&o, "{\"uptime_seconds\":%" PRIu64 ",\"shards\":%u,\"total\":{",
	    uptime_seconds(shards, n), n);
	json_object(&o, total, &lat[(size_t)n * N_HISTS]);
	put(&o, "},\"per_shard\":[");
	for (unsigned i = 0; i < n; i++) {
		put(&o, "%s{\"shard\":%u,", i ? "," : "", shards[i]->id);
		json_object(&o, &vals[i * N_METRICS], &lat[i * N_HISTS]);
		put(&o, "}");
	}
	put(&o, "]");
	for (unsigned t = 0; t < nextra; t++) {
		put(&o, ",\"%s\":{", extra[t].name);
		json_fields(&o, extra[t].fields, extra[t].n, extra[t].values, false);
		put(&o, "}");
	}
	put(&o, "}\n");
done:
	free(vals);
	free(lat);
	free(snap);
	return o.err;
}

static void prom_histogram(struct out *o, const struct hist_desc *d,
			   const struct hist_snapshot *s)
{
	for (unsigned b = 0; b < N_PROM_BUCKETS; b++)
		put(o, "ringcached_request_duration_seconds_bucket{kind=\"%s\",le=\"%s\"} %" PRIu64 "\n",
		    d->kind, prom_buckets[b].le, hist_count_le(s, prom_buckets[b].ns));
	put(o, "ringcached_request_duration_seconds_bucket{kind=\"%s\",le=\"+Inf\"} %" PRIu64 "\n",
	    d->kind, s->count);
	put(o, "ringcached_request_duration_seconds_sum{kind=\"%s\"} %" PRIu64 ".%09" PRIu64 "\n",
	    d->kind, s->sum / 1000000000u, s->sum % 1000000000u);
	put(o, "ringcached_request_duration_seconds_count{kind=\"%s\"} %" PRIu64 "\n",
	    d->kind, s->count);
}

/* HELP and TYPE of one metric family: ringcached_<prefix><name>[_total]. */
static const char *prom_family(struct out *o, const char *prefix, const struct stats_field *f)
{
	const char *suffix = f->kind == STATS_COUNTER ? "_total" : "";

	put(o, "# HELP ringcached_%s%s%s %s\n", prefix, f->name, suffix, f->help);
	put(o, "# TYPE ringcached_%s%s%s %s\n", prefix, f->name, suffix,
	    f->kind == STATS_COUNTER ? "counter" : "gauge");
	return suffix;
}

int stats_format_prometheus(struct stats_shard *const *shards, unsigned n,
			    const struct stats_table *extra, unsigned nextra,
			    struct buf *out)
{
	struct out o = { out, 0 };
	struct hist_snapshot *snap = malloc(sizeof(*snap));

	if (!snap)
		return -ENOMEM;
	for (unsigned m = 0; m < N_METRICS; m++) {
		const char *suffix = prom_family(&o, "", &metrics[m]);
		for (unsigned i = 0; i < n; i++)
			put(&o, "ringcached_%s%s{shard=\"%u\"} %" PRIu64 "\n",
			    metrics[m].name, suffix, shards[i]->id, metric(shards[i], m));
	}
	for (unsigned t = 0; t < nextra; t++) {
		char prefix[64];
		snprintf(prefix, sizeof(prefix), "%s_", extra[t].name);
		for (unsigned m = 0; m < extra[t].n; m++) {
			const char *suffix = prom_family(&o, prefix, &extra[t].fields[m]);
			put(&o, "ringcached_%s%s%s %" PRIu64 "\n", prefix, extra[t].fields[m].name,
			    suffix, extra[t].values[m]);
		}
	}
	put(&o, "# HELP ringcached_uptime_seconds Seconds since the first shard started.\n"
		"# TYPE ringcached_uptime_seconds gauge\n"
		"ringcached_uptime_seconds %" PRIu64 "\n", uptime_seconds(shards, n));

	put(&o, "# HELP ringcached_request_duration_seconds Server-side time from the "
		"completion that delivered a request's last byte to the submission of "
		"its response, for cache hits; kind: ");
	for (unsigned h = 0; h < N_HISTS; h++)
		put(&o, "%s%s = %s", h ? ", " : "", hists[h].kind, hists[h].help);
	put(&o, ".\n# TYPE ringcached_request_duration_seconds histogram\n");
	for (unsigned h = 0; h < N_HISTS; h++) {
		hist_snapshot_init(snap);
		for (unsigned i = 0; i < n; i++)
			hist_merge(snap, hist_of(shards[i], h));
		prom_histogram(&o, &hists[h], snap);
	}
	free(snap);
	return o.err;
}
