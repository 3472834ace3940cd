/*
 * registry.c - the instance registry in Redis, and GET /cluster.
 *
 *   HASH <prefix>instances            field <id> = {"id":..,"address":..,
 *                                                   "version":..,"started":<unix s>}
 *   STRING <prefix>instance:<id>      the same JSON, PX heartbeat_ttl_ms
 *
 * Every heartbeat period the coherence thread refreshes its heartbeat key
 * (first) and re-asserts its hash field (second, so nobody sees the field
 * without the key), then reaps: HKEYS, one EXISTS per other instance, HDEL of
 * every field whose heartbeat key is gone.  An instance that was reaped while
 * it was merely paused puts itself back at its next heartbeat.  A clean
 * shutdown deletes both.  COH_CLUSTER answers from the hash (dead entries
 * linger at most heartbeat_ttl_ms plus one period).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "format.h"
#include "link.h"
#include "registry.h"
#include "state.h"
#include "ringcache_version.h"

/*
 * The registry's names after <prefix>.  Written once: the keys built here
 * and coh_key_reserved() (which refuses the cache keys whose Redis names
 * these are) both read them.
 */
static const char REG_HASH[] = "instances";
#define REG_HASH_LEN (sizeof(REG_HASH) - 1)
static const char HB_NAME[] = "instance:";
#define HB_NAME_LEN (sizeof(HB_NAME) - 1)

/*
 * Heartbeat keys checked per heartbeat.  The registry is anyone's to write:
 * one EXISTS per field would let a hash of a million junk fields make the
 * thread queue a million commands every period.  Above this many fields the
 * checks rotate through the hash, so every field is still looked at.
 */
#define REAP_PER_BEAT 1024

bool coh_key_reserved(const struct coh *c, const void *key, size_t len)
{
	if (!c || !len)
		return false;
	/* "lease:": the fill leases' names, <prefix>lease:<key> (ops.c); and
	 * the tag sets' names (issue 9): <prefix>tag:<tag>.  Most keys fail at
	 * their first byte, the first of none of these names. */
	static const char lease[] = "lease:";
	char k0 = *(const char *)key;
	if (k0 != REG_HASH[0] && k0 != HB_NAME[0] && k0 != lease[0] && k0 != COH_TAG_PREFIX[0])
		return false;
	size_t tl = sizeof(COH_TAG_PREFIX) - 1;
	return (len == REG_HASH_LEN && memcmp(key, REG_HASH, REG_HASH_LEN) == 0) ||
	       (len >= HB_NAME_LEN && memcmp(key, HB_NAME, HB_NAME_LEN) == 0) ||
	       (len >= sizeof(lease) - 1 && memcmp(key, lease, sizeof(lease) - 1) == 0) ||
	       (len >= tl && memcmp(key, COH_TAG_PREFIX, tl) == 0);
}

static bool id_valid(const char *s, size_t n)
{
	if (n < 1 || n > COH_INSTANCE_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return false;
	return true;
}

/* hostname-pid-random: readable in redis-cli, unique across restarts. */
static void id_generate(char *out, size_t cap)
{
	char host[65] = "host";
	uint32_t rnd = 0;

	if (gethostname(host, sizeof(host) - 1) == -1 || !host[0])
		strcpy(host, "host");
	host[sizeof(host) - 1] = '\0';
	for (char *p = host; *p; p++) {
		bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '.' || *p == '-' || *p == '_';
		if (!ok)
			*p = '_';
	}
	if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
		rnd = (uint32_t)time(NULL) ^ (uint32_t)getpid() * 2654435761u;
	snprintf(out, cap, "%s-%d-%08x", host, (int)getpid(), rnd);
}

int coh_registry_init(struct coh *c, const char *instance_id, const char *advertise,
		      const char *version)
{
	char num[24];
	int rc = 0;

	if (instance_id && *instance_id) {
		if (!id_valid(instance_id, strlen(instance_id)))
			return -EINVAL;
		strcpy(c->id, instance_id);
	} else {
		id_generate(c->id, sizeof(c->id));
	}
	c->id_len = strlen(c->id);
	c->instances_key = malloc(c->prefix_len + REG_HASH_LEN + 1);
	c->heartbeat_key = malloc(c->prefix_len + HB_NAME_LEN + c->id_len + 1);
	if (!c->instances_key || !c->heartbeat_key)
		return -ENOMEM;
	memcpy(c->instances_key, c->prefix, c->prefix_len);
	memcpy(c->instances_key + c->prefix_len, REG_HASH, REG_HASH_LEN + 1);
	memcpy(c->heartbeat_key, c->prefix, c->prefix_len);
	memcpy(c->heartbeat_key + c->prefix_len, HB_NAME, HB_NAME_LEN);
	memcpy(c->heartbeat_key + c->prefix_len + HB_NAME_LEN, c->id, c->id_len + 1);

	if (!advertise)
		advertise = "";
	if (!version)
		version = RINGCACHE_VERSION;
	snprintf(num, sizeof(num), "%lld", (long long)time(NULL));
	struct buf *b = &c->reg_json;
	rc |= buf_append(b, "{\"id\":", 6);
	rc |= coh_json_str(b, c->id, c->id_len);
	rc |= buf_append(b, ",\"address\":", 11);
	rc |= coh_json_str(b, advertise, strlen(advertise));
	rc |= buf_append(b, ",\"version\":", 11);
	rc |= coh_json_str(b, version, strlen(version));
	rc |= buf_append(b, ",\"started\":", 11);
	rc |= buf_append(b, num, strlen(num));
	rc |= buf_append(b, "}", 1);
	return rc ? -ENOMEM : 0;
}

void coh_registry_beat(struct coh *c)
{
	struct coh_conn *cn = &c->cmd;
	int rc = coh_conn_reserve(cn, 3);

	if (rc) {
		c->trip = true;
		return;
	}
	rc |= coh_conn_array(cn, 5);
	rc |= coh_conn_bulk(cn, "SET", 3);
	rc |= coh_conn_bulk(cn, c->heartbeat_key, strlen(c->heartbeat_key));
	rc |= coh_conn_bulk(cn, c->reg_json.data, c->reg_json.len);
	rc |= coh_conn_bulk(cn, "PX", 2);
	rc |= coh_conn_bulk_u64(cn, c->heartbeat_ttl_ms);
	rc |= coh_conn_array(cn, 4);
	rc |= coh_conn_bulk(cn, "HSET", 4);
	rc |= coh_conn_bulk(cn, c->instances_key, strlen(c->instances_key));
	rc |= coh_conn_bulk(cn, c->id, c->id_len);
	rc |= coh_conn_bulk(cn, c->reg_json.data, c->reg_json.len);
	rc |= coh_conn_array(cn, 2);
	rc |= coh_conn_bulk(cn, "HKEYS", 5);
	rc |= coh_conn_bulk(cn, c->instances_key, strlen(c->instances_key));
	if (rc) {
		c->trip = true;
		return;
	}
	coh_conn_push(cn, COH_P_HEARTBEAT, 0, c->now + c->timeout_ns, NULL);
	coh_conn_push(cn, COH_P_IGNORE, 0, 0, NULL);
	coh_conn_push(cn, COH_P_REAP_KEYS, 0, 0, NULL);
}

/*
 * An instance id read from the registry, kept while its EXISTS is in
 * flight.  Ids in Redis are whatever bytes someone wrote, NULs included, so
 * they are length-counted from HKEYS' reply to HDEL's argument.
 */
struct reap_id {
	size_t len;
	char id[];
};

static void reap_check(struct coh *c, const char *id, size_t n)
{
	struct coh_conn *cn = &c->cmd;
	struct reap_id *copy = malloc(sizeof(*copy) + n);

	if (!copy || coh_conn_reserve(cn, 1)) {
		free(copy);
		return;
	}
	copy->len = n;
	memcpy(copy->id, id, n);
	int rc = coh_conn_array(cn, 2);
	rc |= coh_conn_bulk(cn, "EXISTS", 6);
	rc |= coh_conn_bulk3(cn, c->prefix, c->prefix_len, HB_NAME, HB_NAME_LEN, id, n);
	if (rc) {
		free(copy);
		c->trip = true;
		return;
	}
	coh_conn_push(cn, COH_P_REAP_EXISTS, 0, 0, copy);
}

static void reap(struct coh *c, const struct reap_id *r)
{
	struct coh_conn *cn = &c->cmd;

	if (coh_conn_reserve(cn, 1))
		return;
	int rc = coh_conn_array(cn, 3);
	rc |= coh_conn_bulk(cn, "HDEL", 4);
	rc |= coh_conn_bulk(cn, c->instances_key, strlen(c->instances_key));
	rc |= coh_conn_bulk(cn, r->id, r->len);
	if (rc) {
		c->trip = true;
		return;
	}
	coh_conn_push(cn, COH_P_REAP_DEL, 0, 0, NULL);
}

void coh_registry_reply(struct coh *c, struct coh_pend *p, redisReply *r)
{
	switch (p->kind) {
	case COH_P_REAP_KEYS: {
		if (r->type != REDIS_REPLY_ARRAY || r->elements == 0)
			break;
		size_t n = r->elements, todo = n < REAP_PER_BEAT ? n : REAP_PER_BEAT;
		size_t start = n > REAP_PER_BEAT ? c->reap_next % n : 0;
		for (size_t k = 0; k < todo; k++) {
			const redisReply *f = r->element[(start + k) % n];
			if (f->type != REDIS_REPLY_STRING ||
			    (f->len == c->id_len && !memcmp(f->str, c->id, f->len)))
				continue;
			reap_check(c, f->str, f->len);
		}
		c->reap_next = start + todo;
		break;
	}
	case COH_P_REAP_EXISTS:
		if (r->type == REDIS_REPLY_INTEGER && r->integer == 0)
			reap(c, p->p);
		free(p->p);
		break;
	case COH_P_REAP_DEL:
		if (r->type == REDIS_REPLY_INTEGER && r->integer == 1)
			COH_ADD(c, instances_reaped, 1);
		break;
	default:
		break;
	}
}

void coh_registry_bye(struct coh *c)
{
	struct coh_conn *cn = &c->cmd;

	if (coh_conn_reserve(cn, 2))
		return;
	int rc = coh_conn_array(cn, 3);
	rc |= coh_conn_bulk(cn, "HDEL", 4);
	rc |= coh_conn_bulk(cn, c->instances_key, strlen(c->instances_key));
	rc |= coh_conn_bulk(cn, c->id, c->id_len);
	rc |= coh_conn_array(cn, 2);
	rc |= coh_conn_bulk(cn, "DEL", 3);
	rc |= coh_conn_bulk(cn, c->heartbeat_key, strlen(c->heartbeat_key));
	if (rc)
		return;
	coh_conn_push(cn, COH_P_BYE, 0, c->now + c->timeout_ns, NULL);
	coh_conn_push(cn, COH_P_BYE, 0, c->now + c->timeout_ns, NULL);
}

/* --- GET /cluster --- */

void coh_cluster_send(struct coh *c, struct coh_msg *m)
{
	struct coh_conn *cn = &c->cmd;

	if (coh_conn_reserve(cn, 1)) {
		m->status = COH_ERROR;
		COH_ADD(c, errors, 1);
		coh_send(c, m);
		return;
	}
	int rc = coh_conn_array(cn, 2);
	rc |= coh_conn_bulk(cn, "HGETALL", 7);
	rc |= coh_conn_bulk(cn, c->instances_key, strlen(c->instances_key));
	if (rc) {
		c->trip = true;
		m->status = COH_ERROR;
		COH_ADD(c, errors, 1);
		coh_send(c, m);
		return;
	}
	coh_conn_push(cn, COH_P_CLUSTER, COH_PF_SHARD, c->now + c->timeout_ns, m);
}

static int cmp_field(const void *a, const void *b)
{
	const redisReply *x = *(const redisReply *const *)a, *y = *(const redisReply *const *)b;
	size_t n = x->len < y->len ? x->len : y->len;
	int d = memcmp(x->str, y->str, n);
	return d ? d : (x->len > y->len) - (x->len < y->len);
}

/*
 * {"self":"<id>","instances":[<value>,...]} with the values as stored, in
 * id order; a value that is not a JSON object is left out and counted.  At
 * most COH_CLUSTER_MAX bytes: a value that would pass it is skipped (the
 * next, smaller ones may fit: one huge junk entry hides only itself) and
 * counted in "left_out", present only when not 0.
 */
void coh_cluster_reply(struct coh *c, struct coh_msg *m, redisReply *r)
{
	struct buf b = { 0 };
	const redisReply **pairs = NULL;
	size_t n = 0;
	int rc = 0;

	if (r->type != REDIS_REPLY_ARRAY) {
		/* WRONGTYPE: the hash's name holds another type, which any client
		 * of the Redis may write; bad data, as for a GET (msg.c), and no
		 * failure of Redis: /cluster must not open the breaker */
		if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "WRONGTYPE", 9) != 0) {
			coh_fail(c);
			m->status = COH_ERROR;
			COH_ADD(c, errors, 1);
		} else {
			coh_succeed(c);         /* Redis answered */
			m->status = COH_BAD_DATA;
			COH_ADD(c, bad_data, 1);
		}
		coh_send(c, m);
		return;
	}
	coh_succeed(c);
	if (r->elements && !(pairs = malloc(sizeof(*pairs) * r->elements)))
		rc = -ENOMEM;
	for (size_t i = 0; !rc && i + 1 < r->elements; i += 2) {
		const redisReply *f = r->element[i], *v = r->element[i + 1];
		if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
		    !coh_json_object_valid(v->str, v->len)) {
			COH_ADD(c, bad_data, 1);
			continue;
		}
		pairs[n++] = f;
		pairs[n++] = v;
	}
	if (!rc && n)    /* pairs is NULL for an empty hash, and qsort wants a pointer */
		qsort(pairs, n / 2, sizeof(*pairs) * 2, cmp_field);
	rc |= buf_append(&b, "{\"self\":", 8);
	rc |= coh_json_str(&b, c->id, c->id_len);
	rc |= buf_append(&b, ",\"instances\":[", 14);
	/* room kept for the end: "],\"left_out\":<20 digits>}" */
	size_t left_out = 0, listed = 0, limit = COH_CLUSTER_MAX - 40;
	for (size_t i = 0; !rc && i < n; i += 2) {
		size_t len = pairs[i + 1]->len;
		if (b.len + 1 + len > limit) {
			left_out++;
			continue;
		}
		if (listed++)
			rc |= buf_append(&b, ",", 1);
		rc |= buf_append(&b, pairs[i + 1]->str, len);
	}
	if (left_out) {
		char num[48];
		int k = snprintf(num, sizeof(num), "],\"left_out\":%zu}", left_out);
		rc |= buf_append(&b, num, (size_t)k);
	} else {
		rc |= buf_append(&b, "]}", 2);
	}
	free(pairs);
	if (rc) {
		buf_deinit(&b);
		m->status = COH_ERROR;
		COH_ADD(c, errors, 1);
	} else {
		m->value_mem = b.data;
		m->value = b.data;
		m->value_len = b.len;
		m->status = COH_OK;
	}
	coh_send(c, m);
}
