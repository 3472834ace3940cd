/*
 * ops.c - what the coherence thread does with the shards' requests and with
 * Redis' answers: GETs coalesced per key, write-through SET/DEL each followed
 * by a PUBLISH of the invalidation, the replay queue of writes made while the
 * link was down, and the invalidations that arrive on the subscription.
 *
 * A GET costs two pipelined commands, GET and PTTL, so a promoted value keeps
 * the TTL it has left in Redis instead of living forever in L1.  Every later
 * GET for the same key joins the one in flight until it completes; a write or
 * an invalidation of that key detaches it (later GETs send a fresh read, and
 * its waiters are told not to cache what may predate the write).
 *
 * A SET of a tagged value also adds its key to <prefix>tag:<tag> for each
 * tag (SADD), whose expiry follows its longest-lived member.  A PURGE
 * empties such a set in batches of PURGE_BATCH keys, each one EVAL that
 * pops them and deletes those whose value still carries the tag (so a key
 * rewritten without it stays), then publishes "tag:<tag>" so every other
 * instance purges its L1 (docs/coherence.md).
 *
 * The replay queue keeps at most one write per key, the latest (by `seq`,
 * the order the thread first saw the writes), so replaying it in queue order
 * leaves Redis as the shards last wrote it.  A write that does not fit is
 * dropped and counted; if it was a SET, the owning shard is told to drop its
 * L1 copy, since Redis will never hold that value.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "link.h"
#include "msg.h"
#include "ops.h"
#include "registry.h"
#include "state.h"
#include "ringcache/hash.h"

static void reply(struct coh *c, struct coh_msg *m, enum coh_status st)
{
	m->status = (uint8_t)st;
	switch (st) {
	case COH_TIMEOUT: COH_ADD(c, timeouts, 1); break;
	case COH_ERROR: COH_ADD(c, errors, 1); break;
	case COH_SKIPPED: COH_ADD(c, skipped, 1); break;
	default: break;
	}
	coh_send(c, m);
}

static int coh_key_bulk(struct coh *c, struct coh_conn *cn, const char *key, size_t len)
{
	return coh_conn_bulk2(cn, c->prefix, c->prefix_len, key, len);
}

/* <prefix>lease:<key>: a fill lease's name (coh_key_reserved() keeps cache
 * keys out of it). */
static int coh_lease_bulk(struct coh *c, struct coh_conn *cn, const char *key, size_t len)
{
	return coh_conn_bulk3(cn, c->prefix, c->prefix_len, "lease:", 6, key, len);
}

/* The invalidation message of key: magic, our id, NUL, then the key. */
static size_t inval_head(struct coh *c, char *inval)
{
	memcpy(inval, COH_INVAL_MAGIC, COH_MAGIC_LEN);
	memcpy(inval + COH_MAGIC_LEN, c->id, c->id_len);
	inval[COH_MAGIC_LEN + c->id_len] = '\0';
	return COH_MAGIC_LEN + c->id_len + 1;
}

/*
 * --- fill leases (docs/cache-aside.md) ---
 *
 * Each is one EVAL, so reading the value and taking the lease (or checking
 * the lease and storing) is one step in Redis: a fill landing between an
 * instance's miss and its lease attempt cannot hand out a second lease.
 *
 * LEASE_GET   KEYS: data, lease   ARGV: token, px
 *   -> {1, value, pttl}  the value (decoded as a GET's)
 *   -> {2}               absent; the lease is the caller's now
 *   -> {3}               absent; someone else holds the lease
 *   -> {4, value, pttl}  the value, past its TTL and its stale-while-revalidate
 *                        window (only its stale-if-error window is left: a miss
 *                        to a GET that does not ask for stale); the lease is
 *                        the caller's now
 *   -> {5, value, pttl}  the same, someone else holds the lease
 * FILL        KEYS: data, lease   ARGV: token, blob, px (0: none), channel, message
 *   -> 1 stored, the lease dropped, the invalidation published; 0 not the lease
 * RELEASE     KEYS: lease         ARGV: token, channel, message
 *   -> 1 dropped and published; 0 not (or no longer) the lease
 */
static const char lease_get_lua[] =
	/* whether v, with t ms left, is an RCV2 frame with stale windows
	 * (docs/coherence.md: ext len u16, then bits, ttl, swr, sie as u32
	 * LE) left with its stale-if-error window alone: PX was TTL + S + E */
	"local function sie_only(v, t) "
	"  if t < 0 or string.sub(v, 1, 5) ~= '\\0RCV2' then return false end "
	"  local nl = string.find(v, '\\n', 6, true) "
	"  if not nl or #v < nl + 15 then return false end "
	"  local p = nl + 3 "
	"  if string.byte(v, nl + 1) + 256 * string.byte(v, nl + 2) < 13 or "
	"     string.byte(v, p) % 2 ~= 1 then return false end "
	"  local e = string.byte(v, p + 9) + 256 * string.byte(v, p + 10) + "
	"            65536 * string.byte(v, p + 11) + 16777216 * string.byte(v, p + 12) "
	"  return t <= e * 1000 "
	"end "
	"local v = redis.call('GET', KEYS[1]) "
	"if v then "
	"  local t = redis.call('PTTL', KEYS[1]) "
	"  if not sie_only(v, t) then return {1, v, t} end "
	"  if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {4, v, t} end "
	"  return {5, v, t} "
	"end "
	"if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end "
	"return {3}";
static const char fill_lua[] =
	"if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end "
	"if ARGV[3] == '0' then redis.call('SET', KEYS[1], ARGV[2]) "
	"else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end "
	"redis.call('DEL', KEYS[2]) "
	"redis.call('PUBLISH', ARGV[4], ARGV[5]) "
	"return 1";
static const char release_lua[] =
	"if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end "
	"redis.call('DEL', KEYS[1]) "
	"redis.call('PUBLISH', ARGV[2], ARGV[3]) "
	"return 1";

static int eval_head(struct coh_conn *cn, const char *lua, size_t lua_len, unsigned nargs,
		     unsigned nkeys)
{
	int rc = coh_conn_array(cn, 3 + nkeys + nargs);
	rc |= coh_conn_bulk(cn, "EVAL", 4);
	rc |= coh_conn_bulk(cn, lua, lua_len);
	rc |= coh_conn_bulk_u64(cn, nkeys);
	return rc;
}

static void lease_request(struct coh *c, struct coh_msg *m)
{
	struct coh_conn *cn = &c->cmd;
	char inval[COH_MAGIC_LEN + COH_INSTANCE_ID_MAX + 1];
	int rc;

	if (!c->link_up) {
		reply(c, m, COH_SKIPPED);
		return;
	}
	if (coh_conn_reserve(cn, 1)) {
		reply(c, m, COH_ERROR);
		return;
	}
	if (m->op == COH_LEASE_GET) {
		/* a read of the key in flight may predate what this finds */
		rc = eval_head(cn, lease_get_lua, sizeof(lease_get_lua) - 1, 2, 2);
		rc |= coh_key_bulk(c, cn, m->key, m->key_len);
		rc |= coh_lease_bulk(c, cn, m->key, m->key_len);
		rc |= coh_conn_bulk(cn, m->lease, m->lease_len);
		rc |= coh_conn_bulk_u64(cn, m->lease_ttl_ms ? m->lease_ttl_ms : 1);
		COH_ADD(c, gets, 1);
		COH_ADD(c, redis_gets, 1);
	} else {
		size_t in = inval_head(c, inval);
		rc = eval_head(cn, release_lua, sizeof(release_lua) - 1, 3, 1);
		rc |= coh_lease_bulk(c, cn, m->key, m->key_len);
		rc |= coh_conn_bulk(cn, m->lease, m->lease_len);
		rc |= coh_conn_bulk(cn, c->channel, strlen(c->channel));
		rc |= coh_conn_bulk2(cn, inval, in, m->key, m->key_len);
	}
	if (rc) {
		c->trip = true;    /* a half-written command: the connection must go */
		reply(c, m, COH_ERROR);
		return;
	}
	coh_conn_push(cn, COH_P_LEASE, 0, c->now + c->timeout_ns, m);
}

/*
 * The EVAL's reply, hostile like every reply: anything but the shapes above
 * is COH_BAD_DATA (an error reply COH_ERROR), and the value inside {1, ...}
 * goes through the same decoding as a GET's.
 */
static void lease_reply(struct coh *c, struct coh_pend *p, redisReply *r)
{
	struct coh_msg *m = p->p;
	struct coh_got got;

	if (p->flags & COH_PF_EXPIRED)
		return;         /* answered TIMEOUT already */
	if (r->type == REDIS_REPLY_ERROR) {
		coh_fail(c);
		reply(c, m, COH_ERROR);
		return;
	}
	coh_succeed(c);
	if (m->op == COH_LEASE_RELEASE) {
		if (r->type != REDIS_REPLY_INTEGER)
			COH_ADD(c, bad_data, 1);
		reply(c, m, r->type == REDIS_REPLY_INTEGER ? COH_OK : COH_BAD_DATA);
		return;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
	    r->element[0]->type != REDIS_REPLY_INTEGER) {
		COH_ADD(c, bad_data, 1);
		reply(c, m, COH_BAD_DATA);
		return;
	}
	long long kind = r->element[0]->integer;
	if ((kind == 2 || kind == 3) && r->elements == 1) {
		m->flags |= kind == 2 ? COH_F_LEASED : COH_F_LEASE_HELD;
		COH_ADD(c, get_misses, 1);
		reply(c, m, COH_MISS);
		return;
	}
	if ((kind != 1 && kind != 4 && kind != 5) || r->elements != 3) {
		COH_ADD(c, bad_data, 1);
		reply(c, m, COH_BAD_DATA);
		return;
	}
	coh_get_decode(r->element[1], r->element[2], &got);
	if (got.status == COH_BAD_DATA)
		COH_ADD(c, bad_data, 1);
	if (got.status != COH_OK) {
		reply(c, m, got.status);
		return;
	}
	if (got.raw)
		COH_ADD(c, raw_values, 1);
	/* NOCACHE: the invalidation feed broke since the request was made, so a
	 * missed invalidation may have left this value behind (as for a GET) */
	if (coh_msg_take_value(m, r->element[1], &got,
			       m->seq != c->sub_epoch ? COH_F_NOCACHE : 0, false)) {
		reply(c, m, COH_ERROR);
		return;
	}
	if (kind != 1)
		m->flags |= kind == 4 ? COH_F_LEASED : COH_F_LEASE_HELD;
	COH_ADD(c, get_hits, 1);
	reply(c, m, COH_OK);
}

/* --- GET --- */

static void get_detach(struct coh *c, struct coh_get *g)
{
	if (g->in_table) {
		coh_kt_remove(&c->gets, &g->node);
		g->in_table = false;
	}
}

/* Answers every waiter with a status that carries no value. */
static void get_answer(struct coh *c, struct coh_get *g, enum coh_status st)
{
	struct coh_msg *m = g->waiters, *next;

	get_detach(c, g);
	g->waiters = NULL;
	g->tail = &g->waiters;
	g->answered = true;
	for (; m; m = next) {
		next = m->next;
		reply(c, m, st);
	}
}

/* A write or invalidation of this key: a read in flight may predate it. */
static void supersede(struct coh *c, uint64_t hash, const char *key, size_t len)
{
	struct coh_kt_node *n = coh_kt_find(&c->gets, hash, key, (uint32_t)len);

	if (n) {
		struct coh_get *g = coh_container_of(n, struct coh_get, node);
		g->nocache = true;
		get_detach(c, g);
	}
}

static void get_request(struct coh *c, struct coh_msg *m)
{
	struct coh_conn *cn = &c->cmd;
	struct coh_kt_node *n;
	struct coh_get *g;

	COH_ADD(c, gets, 1);
	if (!c->link_up) {
		reply(c, m, COH_SKIPPED);
		return;
	}
	n = coh_kt_find(&c->gets, m->hash, m->key, m->key_len);
	if (n) {
		g = coh_container_of(n, struct coh_get, node);
		*g->tail = m;
		g->tail = &m->next;
		COH_ADD(c, coalesced, 1);
		return;
	}
	g = calloc(1, sizeof(*g));
	if (!g || coh_conn_reserve(cn, 2)) {
		free(g);
		reply(c, m, COH_ERROR);
		return;
	}
	int rc = coh_conn_array(cn, 2);
	rc |= coh_conn_bulk(cn, "GET", 3);
	rc |= coh_key_bulk(c, cn, m->key, m->key_len);
	rc |= coh_conn_array(cn, 2);
	rc |= coh_conn_bulk(cn, "PTTL", 4);
	rc |= coh_key_bulk(c, cn, m->key, m->key_len);
	if (rc) {
		free(g);
		c->trip = true;    /* a half-written command: the connection must go */
		reply(c, m, COH_ERROR);
		return;
	}
	g->node.hash = m->hash;
	g->node.key = m->key;
	g->node.key_len = m->key_len;
	g->waiters = m;
	g->tail = &m->next;
	g->epoch = c->sub_epoch;
	g->in_table = true;
	coh_kt_insert(&c->gets, &g->node);
	coh_conn_push(cn, COH_P_GET, 0, c->now + c->timeout_ns, g);
	coh_conn_push(cn, COH_P_PTTL, 0, 0, g);
	COH_ADD(c, redis_gets, 1);
}

static void get_complete(struct coh *c, struct coh_get *g, const redisReply *pttl)
{
	redisReply *v = g->value;
	struct coh_got got;

	if (g->answered)
		goto done;
	get_detach(c, g);
	coh_get_decode(v, pttl, &got);
	enum coh_status st = got.status;
	if (st == COH_ERROR) {
		coh_fail(c);
	} else {
		coh_succeed(c);
	}
	if (st == COH_BAD_DATA)
		COH_ADD(c, bad_data, 1);
	if (st != COH_OK) {
		if (st == COH_MISS || st == COH_BAD_DATA)
			for (struct coh_msg *m = g->waiters; m; m = m->next)
				COH_ADD(c, get_misses, 1);
		get_answer(c, g, st);
		goto done;
	}
	if (got.raw)
		COH_ADD(c, raw_values, 1);

	uint16_t flags = g->nocache || g->epoch != c->sub_epoch ? COH_F_NOCACHE : 0;
	struct coh_msg *first = g->waiters, *m, *next;
	g->waiters = NULL;
	g->answered = true;
	/* Copies for the others first: once sent, a message is its shard's. */
	for (m = first->next; m; m = next) {
		next = m->next;
		if (coh_msg_take_value(m, v, &got, flags, true)) {
			reply(c, m, COH_ERROR);
			continue;
		}
		COH_ADD(c, get_hits, 1);
		reply(c, m, COH_OK);
	}
	coh_msg_take_value(first, v, &got, flags, false);
	COH_ADD(c, get_hits, 1);
	reply(c, first, COH_OK);
done:
	if (g->value)
		freeReplyObject(g->value);
	free(g);
}

/* --- SET / DEL --- */

/*
 * Writes the thread keeps on a shard's behalf (copies answered TIMEOUT or
 * SKIPPED: a late reply awaited, or queued for replay) are "unsettled":
 * Redis may not hold them yet, so a read on the shard's own connection
 * could overtake them.  Their number per shard is published for read.c;
 * it rises before the shard is answered (the ring then orders the two) and
 * falls when Redis acknowledged the write or it was dropped.
 */
static void unsettled_add(struct coh *c, const struct coh_msg *m, int n)
{
	if (m->shard < c->nshards)
		atomic_fetch_add_explicit(&c->shards[m->shard].unsettled, (uint32_t)n,
					  memory_order_release);
}

static struct coh_msg *keep_copy(struct coh *c, const struct coh_msg *m)
{
	struct coh_msg *copy = coh_msg_copy(m);

	if (copy)
		unsettled_add(c, copy, 1);
	return copy;
}

static void drop_kept(struct coh *c, struct coh_msg *m)
{
	if (!m)
		return;    /* keep_copy() found no memory */
	unsettled_add(c, m, -1);
	coh_msg_destroy(m);
}

/*
 * One EVAL per tag adds m's key to the tag's set and keeps the set alive as
 * long as its longest-lived member: a set made now takes the member's TTL,
 * a set with a shorter one is extended, a set without one (a member that
 * never expires) keeps none, and a member without TTL makes it persist.
 * (PEXPIRE NX would give a persistent set the next member's TTL: the set
 * would go first and a purge would miss the member that never expires.)
 * Replies are ignored: a set is a hint for a purge, which checks each value
 * itself.
 *
 * Members whose keys are gone (expired, deleted) are removed lazily: each
 * add looks at TAG_SET_SAMPLE random members and drops those whose key no
 * longer exists.  Without it a tag written on ever new keys keeps its set
 * alive (each add extends it) and every dead member in it: Redis memory
 * without bound.  With it, dead members stay about as many as live ones
 * (an add removes 2 x dead / all of them on average, and adds one).
 *
 * KEYS: the set   ARGV: the cache key (unprefixed), its TTL in ms (0: none),
 * the key prefix
 */
#define TAG_SET_SAMPLE "2"
static const char tag_set_lua[] =
	"local t = redis.call('PTTL', KEYS[1]) "
	"for _, k in ipairs(redis.call('SRANDMEMBER', KEYS[1], " TAG_SET_SAMPLE ")) do "
	"  if redis.call('EXISTS', ARGV[3] .. k) == 0 then redis.call('SREM', KEYS[1], k) end "
	"end "
	"redis.call('SADD', KEYS[1], ARGV[1]) "
	"if ARGV[2] == '0' then redis.call('PERSIST', KEYS[1]) "
	"elseif t == -2 or (t >= 0 and t < tonumber(ARGV[2])) then "
	"redis.call('PEXPIRE', KEYS[1], ARGV[2]) end "
	"return 0";

static int send_tag_sets(struct coh *c, struct coh_conn *cn, const struct coh_msg *m,
			 unsigned *pushes)
{
	const uint8_t *p = (const uint8_t *)m->ext + m->tags_off;
	const uint8_t *end = (const uint8_t *)m->ext + m->ext_len;
	size_t tl = sizeof(COH_TAG_PREFIX) - 1;
	int rc = 0;

	*pushes = 0;
	if (!m->ntags || m->tags_off > m->ext_len)
		return 0;
	for (unsigned i = 0; i < m->ntags; i++) {
		if (p >= end || *p == 0 || *p > COH_TAG_MAX || (size_t)(end - p - 1) < *p)
			break;
		const void *tag = p + 1;
		size_t n = *p;
		p += 1 + n;
		rc |= eval_head(cn, tag_set_lua, sizeof(tag_set_lua) - 1, 3, 1);
		rc |= coh_conn_bulk3(cn, c->prefix, c->prefix_len, COH_TAG_PREFIX, tl, tag, n);
		rc |= coh_conn_bulk(cn, m->key, m->key_len);
		rc |= coh_conn_bulk_u64(cn, (uint64_t)m->ttl * 1000);
		rc |= coh_conn_bulk(cn, c->prefix, c->prefix_len);
		*pushes += 1;
	}
	return rc;
}

static int send_write(struct coh *c, struct coh_msg *m, uint8_t flags)
{
	struct coh_conn *cn = &c->cmd;
	char hdr[COH_VALUE_HEADER2_MAX];
	char inval[COH_MAGIC_LEN + COH_INSTANCE_ID_MAX + 1];
	unsigned tag_pushes = 0;
	int rc;

	if (coh_conn_reserve(cn, 3 + (m->op == COH_SET ? m->ntags : 0)))
		return -ENOMEM;
	bool fill = m->op == COH_SET && m->lease_len;
	size_t in = inval_head(c, inval);
	size_t hn = 0;

	if (m->op == COH_SET)
		hn = m->ext_len ? coh_value_header2(hdr, m->ctype, m->ctype_len, m->ext, m->ext_len)
				: coh_value_header(hdr, m->ctype, m->ctype_len);
	if (fill) {
		/* a fill with its lease: stored only if still the lease (above);
		 * one EVAL, the PUBLISH inside it */
		char px[24];
		int pn = snprintf(px, sizeof(px), "%llu", (unsigned long long)m->ttl * 1000);
		rc = eval_head(cn, fill_lua, sizeof(fill_lua) - 1, 5, 2);
		rc |= coh_key_bulk(c, cn, m->key, m->key_len);
		rc |= coh_lease_bulk(c, cn, m->key, m->key_len);
		rc |= coh_conn_bulk(cn, m->lease, m->lease_len);
		rc |= coh_conn_bulk2(cn, hdr, hn, m->value, m->value_len);
		rc |= coh_conn_bulk(cn, px, (size_t)pn);
		rc |= coh_conn_bulk(cn, c->channel, strlen(c->channel));
		rc |= coh_conn_bulk2(cn, inval, in, m->key, m->key_len);
		/* a refused fill may leave the key in a tag's set: purges check
		 * the value's own tags before deleting (purge_lua) */
		rc |= send_tag_sets(c, cn, m, &tag_pushes);
	} else if (m->op == COH_SET) {
		rc = coh_conn_array(cn, m->ttl ? 5 : 3);
		rc |= coh_conn_bulk(cn, "SET", 3);
		rc |= coh_key_bulk(c, cn, m->key, m->key_len);
		rc |= coh_conn_bulk2(cn, hdr, hn, m->value, m->value_len);
		if (m->ttl) {
			rc |= coh_conn_bulk(cn, "PX", 2);
			rc |= coh_conn_bulk_u64(cn, (uint64_t)m->ttl * 1000);
		}
		rc |= send_tag_sets(c, cn, m, &tag_pushes);
	} else {
		rc = coh_conn_array(cn, 2);
		rc |= coh_conn_bulk(cn, "DEL", 3);
		rc |= coh_key_bulk(c, cn, m->key, m->key_len);
	}
	if (!fill) {
		/* A write without the lease ends the key's fill lease too: the
		 * holder's later fill would overwrite this newer value (a stale set) */
		rc |= coh_conn_array(cn, 2);
		rc |= coh_conn_bulk(cn, "DEL", 3);
		rc |= coh_lease_bulk(c, cn, m->key, m->key_len);
		rc |= coh_conn_array(cn, 3);
		rc |= coh_conn_bulk(cn, "PUBLISH", 7);
		rc |= coh_conn_bulk(cn, c->channel, strlen(c->channel));
		rc |= coh_conn_bulk2(cn, inval, in, m->key, m->key_len);
	}
	if (rc) {
		c->trip = true;
		return -ENOMEM;
	}
	/* Redis runs a connection's commands in order: the PUBLISH follows the write. */
	coh_conn_push(cn, COH_P_WRITE, flags, c->now + c->timeout_ns, m);
	for (unsigned i = 0; i < tag_pushes; i++)
		coh_conn_push(cn, COH_P_IGNORE, 0, 0, NULL);
	if (!fill) {
		coh_conn_push(cn, COH_P_IGNORE, 0, 0, NULL);
		coh_conn_push(cn, COH_P_IGNORE, 0, 0, NULL);
	}
	COH_ADD(c, invalidations_sent, 1);
	return 0;
}

static void replay_add(struct coh *c, struct coh_msg *m)
{
	struct coh_kt_node *n = coh_kt_find(&c->replay_tab, m->hash, m->key, m->key_len);
	struct coh_replay *r;

	if (n) {
		r = coh_container_of(n, struct coh_replay, node);
		if (r->m->seq > m->seq) {
			drop_kept(c, m);    /* a newer write of the key is queued */
			return;
		}
		drop_kept(c, r->m);
		r->m = m;
		r->node.key = m->key;
		COH_ADD(c, replay_queued, 1);
		return;
	}
	if (c->replay_len >= c->replay_max || !(r = malloc(sizeof(*r)))) {
		COH_ADD(c, replay_overflow, 1);
		if (m->op == COH_SET) {
			struct coh_msg *inv = coh_msg_create(COH_INVALIDATE,
							     hash_shard(m->hash, c->nshards), m->hash,
							     m->key, m->key_len, NULL, 0, 0);
			if (inv)
				coh_send(c, inv);
		}
		drop_kept(c, m);
		return;
	}
	r->m = m;
	r->next = NULL;
	r->node.hash = m->hash;
	r->node.key = m->key;
	r->node.key_len = m->key_len;
	coh_kt_insert(&c->replay_tab, &r->node);
	*c->replay_tail = r;
	c->replay_tail = &r->next;
	c->replay_len++;
	COH_ADD(c, replay_queued, 1);
	COH_SET(c, replay_pending, c->replay_len);
}

/*
 * Replayed writes in flight at once.  The whole queue (up to replay_max,
 * 10,000) sent in one burst made its last writes, and every command queued
 * behind them, wait for the burst longer than --redis-timeout on a slow
 * host: they timed out, the breaker opened, the link came up again and
 * replayed the whole queue again, and so on (CI saw a million timeouts in
 * 15 s and the queue never drained).  A window keeps each write's wait to
 * the window's worth of Redis work.
 */
#define REPLAY_WINDOW 256

/* Sends queued writes while the window has room. */
static void replay_more(struct coh *c)
{
	while (c->replay && c->link_up && !c->trip && c->replay_inflight < REPLAY_WINDOW) {
		struct coh_replay *r = c->replay;
		struct coh_msg *m = r->m;

		c->replay = r->next;
		if (!c->replay)
			c->replay_tail = &c->replay;
		c->replay_len--;
		if (m)
			coh_kt_remove(&c->replay_tab, &r->node);
		free(r);
		if (!m)
			continue;       /* superseded by a newer write, sent already */
		if (send_write(c, m, COH_PF_REPLAY)) {
			replay_add(c, m);    /* no room to send: kept, tried again */
			break;
		}
		c->replay_inflight++;
		COH_ADD(c, replayed, 1);
	}
	COH_SET(c, replay_pending, c->replay_len);
}

void coh_replay_start(struct coh *c)
{
	c->replay_inflight = 0;     /* the link was down: nothing is in flight */
	replay_more(c);
}

/*
 * A write of a key sent while an older write of it still waits in the
 * replay queue: the queued one must not reach Redis after it.
 */
static void replay_supersede(struct coh *c, const struct coh_msg *m)
{
	if (!c->replay)
		return;         /* nothing queued: the common case, no lookup */
	struct coh_kt_node *n = coh_kt_find(&c->replay_tab, m->hash, m->key, m->key_len);

	if (!n)
		return;
	struct coh_replay *r = coh_container_of(n, struct coh_replay, node);
	coh_kt_remove(&c->replay_tab, n);
	drop_kept(c, r->m);
	r->m = NULL;                /* left in the queue; replay_more() skips it */
}

void coh_replay_drop_all(struct coh *c)
{
	struct coh_replay *r = c->replay, *next;

	for (; r; r = next) {
		next = r->next;
		if (r->m)
			drop_kept(c, r->m);
		free(r);
	}
	c->replay = NULL;
	c->replay_tail = &c->replay;
	c->replay_len = 0;
}

static void write_request(struct coh *c, struct coh_msg *m)
{
	if (m->op == COH_SET)
		COH_ADD(c, sets, 1);
	else
		COH_ADD(c, dels, 1);
	m->seq = ++c->write_seq;
	supersede(c, m->hash, m->key, m->key_len);
	if (!c->link_up) {
		struct coh_msg *copy = keep_copy(c, m);
		reply(c, m, COH_SKIPPED);
		if (copy)
			replay_add(c, copy);
		else
			COH_ADD(c, replay_overflow, 1);
		return;
	}
	if (send_write(c, m, COH_PF_SHARD))
		reply(c, m, COH_ERROR);
	else
		replay_supersede(c, m);
}

static void write_answered(struct coh *c, const struct coh_pend *e, const redisReply *r)
{
	struct coh_msg *m = e->p;
	bool ok = r->type != REDIS_REPLY_ERROR;

	if (e->flags & COH_PF_EXPIRED) {
		drop_kept(c, m);    /* late, but answered: nothing to replay */
		return;
	}
	if (ok)
		coh_succeed(c);
	else
		coh_fail(c);
	if (ok && m->op == COH_DEL && r->type == REDIS_REPLY_INTEGER && r->integer > 0)
		m->flags |= COH_F_EXISTED;
	if (ok && m->op == COH_SET && m->lease_len &&
	    (r->type != REDIS_REPLY_INTEGER || r->integer != 1))
		m->flags |= COH_F_LEASE_LOST;   /* 0: not the lease; else bad data: not stored */
	if (e->flags & COH_PF_SHARD) {
		reply(c, m, ok ? COH_OK : COH_ERROR);
	} else {
		if (!ok)
			COH_ADD(c, errors, 1);
		drop_kept(c, m);
	}
}

static void write_reply(struct coh *c, const struct coh_pend *e, const redisReply *r)
{
	write_answered(c, e, r);
	if ((e->flags & COH_PF_REPLAY) && c->replay_inflight) {
		c->replay_inflight--;
		replay_more(c);     /* the window has room for the next */
	}
}

/* --- tag purges --- */

/* Keys popped from a tag's set per EVAL: bounds the time Redis spends in
 * one script (a GET and maybe a DEL per key). */
#define PURGE_BATCH 500
/* A purge ends after this many full batches (10M members) even if Redis
 * keeps answering full ones: a hostile or broken Redis cannot keep a
 * DELETE /tags/ from being answered (it is answered X-L2: error then). */
#define PURGE_BATCHES_MAX 20000u

/*
 * KEYS[1] the set; ARGV: the key prefix, the batch size, the tag.  Pops up to
 * a batch of members and deletes each <prefix><member> whose value is an
 * RCV2 frame whose extension header lists the tag (its layout:
 * docs/coherence.md, src/cache/repr.h) and is well formed as L1 checks it
 * (1..8 tags of 1..128 bytes ending the header): nothing is deleted on a
 * guess.  A key deleted loses its fill lease too, as a DEL's write does
 * (send_write): a holder's fill of the purged key is refused.  Returns
 * {popped, deleted}.
 */
static const char purge_script[] =
	"local popped = redis.call('SPOP', KEYS[1], ARGV[2])\n"
	"local tag, deleted = ARGV[3], 0\n"
	"local function tagged(v)\n"
	"  if type(v) ~= 'string' or string.sub(v, 1, 5) ~= '\\0RCV2' then return false end\n"
	"  local nl = string.find(v, '\\n', 6, true)\n"
	"  if not nl or #v < nl + 3 then return false end\n"
	"  local p = nl + 3\n"
	"  local stop = p + string.byte(v, nl + 1) + 256 * string.byte(v, nl + 2)\n"
	"  local bits = string.byte(v, p)\n"
	"  if bits > 3 or stop > #v + 1 then return false end\n"
	"  p = p + 1\n"
	"  if bits % 2 == 1 then p = p + 12 end\n"
	"  if math.floor(bits / 2) % 2 ~= 1 or p >= stop or p > #v then return false end\n"
	"  local n = string.byte(v, p)\n"
	"  if n < 1 or n > 8 then return false end\n"
	"  p = p + 1\n"
	"  local found = false\n"
	"  for i = 1, n do\n"
	"    local l = string.byte(v, p)\n"
	"    if not l or l < 1 or l > 128 or p + l >= stop then return false end\n"
	"    if string.sub(v, p + 1, p + l) == tag then found = true end\n"
	"    p = p + 1 + l\n"
	"  end\n"
	"  return found and p == stop\n"
	"end\n"
	"for _, k in ipairs(popped) do\n"
	"  local name = ARGV[1] .. k\n"
	"  local ok, v = pcall(redis.call, 'GET', name)\n"
	"  if ok and tagged(v) then\n"
	"    redis.call('DEL', name, ARGV[1] .. 'lease:' .. k)\n"
	"    deleted = deleted + 1\n"
	"  end\n"
	"end\n"
	"return {#popped, deleted}\n";

static int send_purge_batch(struct coh *c, struct coh_msg *m)
{
	struct coh_conn *cn = &c->cmd;
	size_t tl = sizeof(COH_TAG_PREFIX) - 1;

	if (coh_conn_reserve(cn, 1))
		return -ENOMEM;
	int rc = coh_conn_array(cn, 7);
	rc |= coh_conn_bulk(cn, "EVAL", 4);
	rc |= coh_conn_bulk(cn, purge_script, sizeof(purge_script) - 1);
	rc |= coh_conn_bulk(cn, "1", 1);
	rc |= coh_conn_bulk3(cn, c->prefix, c->prefix_len, COH_TAG_PREFIX, tl, m->key, m->key_len);
	rc |= coh_conn_bulk(cn, c->prefix, c->prefix_len);
	rc |= coh_conn_bulk_u64(cn, PURGE_BATCH);
	rc |= coh_conn_bulk(cn, m->key, m->key_len);
	if (rc) {
		c->trip = true;
		return -ENOMEM;
	}
	coh_conn_push(cn, COH_P_PURGE, 0, c->now + c->timeout_ns, m);
	return 0;
}

/* The one message that purges the tag from every other instance's L1:
 * "tag:<tag>", framed with our id so we skip it. */
static int send_purge_publish(struct coh *c, const struct coh_msg *m)
{
	struct coh_conn *cn = &c->cmd;
	char inval[COH_MAGIC_LEN + COH_INSTANCE_ID_MAX + 1 + sizeof(COH_TAG_PREFIX)];
	size_t n = COH_MAGIC_LEN + c->id_len + 1;

	if (coh_conn_reserve(cn, 1))
		return -ENOMEM;
	memcpy(inval, COH_INVAL_MAGIC, COH_MAGIC_LEN);
	memcpy(inval + COH_MAGIC_LEN, c->id, c->id_len);
	inval[COH_MAGIC_LEN + c->id_len] = '\0';
	memcpy(inval + n, COH_TAG_PREFIX, sizeof(COH_TAG_PREFIX) - 1);
	n += sizeof(COH_TAG_PREFIX) - 1;
	int rc = coh_conn_array(cn, 3);
	rc |= coh_conn_bulk(cn, "PUBLISH", 7);
	rc |= coh_conn_bulk(cn, c->channel, strlen(c->channel));
	rc |= coh_conn_bulk2(cn, inval, n, m->key, m->key_len);
	if (rc) {
		c->trip = true;
		return -ENOMEM;
	}
	coh_conn_push(cn, COH_P_IGNORE, 0, 0, NULL);
	COH_ADD(c, invalidations_sent, 1);
	return 0;
}

static void purge_request(struct coh *c, struct coh_msg *m)
{
	COH_ADD(c, purges, 1);
	m->count = 0;
	m->batches = 0;
	if (!c->link_up || c->trip) {
		reply(c, m, COH_SKIPPED);
		return;
	}
	if (send_purge_batch(c, m))
		reply(c, m, COH_ERROR);
}

static void purge_reply(struct coh *c, struct coh_pend *e, const redisReply *r)
{
	struct coh_msg *m = e->p;

	if (!m)
		return;         /* answered already (timeout) */
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_INTEGER ||
	    r->element[1]->type != REDIS_REPLY_INTEGER || r->element[0]->integer < 0 ||
	    r->element[1]->integer < 0 || r->element[1]->integer > r->element[0]->integer) {
		coh_fail(c);
		reply(c, m, r->type == REDIS_REPLY_ARRAY ? COH_BAD_DATA : COH_ERROR);
		return;
	}
	coh_succeed(c);
	m->count += (uint64_t)r->element[1]->integer;
	COH_ADD(c, purged_keys, (uint64_t)r->element[1]->integer);
	if (r->element[0]->integer >= PURGE_BATCH) {
		if (++m->batches >= PURGE_BATCHES_MAX) {
			COH_ADD(c, bad_data, 1);
			reply(c, m, COH_ERROR);
			return;
		}
		if (send_purge_batch(c, m))
			reply(c, m, COH_ERROR);
		return;
	}
	reply(c, m, send_purge_publish(c, m) ? COH_ERROR : COH_OK);
}

/* --- dispatch --- */

void coh_request(struct coh *c, struct coh_msg *m)
{
	m->status = COH_OK;
	m->flags = 0;
	m->next = NULL;
	switch (m->op) {
	case COH_GET:
		get_request(c, m);
		break;
	case COH_SET:
	case COH_DEL:
		write_request(c, m);
		break;
	case COH_CLUSTER:
		if (c->cmd.state == COH_CONN_READY && !c->trip)
			coh_cluster_send(c, m);
		else
			reply(c, m, COH_SKIPPED);
		break;
	case COH_LEASE_GET:
		m->seq = c->sub_epoch;  /* the feed it relies on (lease_reply) */
		supersede(c, m->hash, m->key, m->key_len);
		lease_request(c, m);
		break;
	case COH_LEASE_RELEASE:
		lease_request(c, m);
		break;
	case COH_PURGE:
		purge_request(c, m);
		break;
	default:
		reply(c, m, COH_ERROR);
		break;
	}
}

void coh_cmd_reply(struct coh *c, struct coh_pend *p, redisReply *r)
{
	struct coh_get *g;

	switch (p->kind) {
	case COH_P_GET:
		g = p->p;
		if (!g->value) {
			g->value = r;
			return;
		}
		break;
	case COH_P_PTTL:
		get_complete(c, p->p, r);
		break;
	case COH_P_WRITE:
		write_reply(c, p, r);
		break;
	case COH_P_LEASE:
		lease_reply(c, p, r);
		break;
	case COH_P_HEARTBEAT:
		if (!(p->flags & COH_PF_EXPIRED)) {
			if (r->type == REDIS_REPLY_ERROR)
				coh_fail(c);
			else
				coh_succeed(c);
		}
		break;
	case COH_P_CLUSTER:
		if (p->p)
			coh_cluster_reply(c, p->p, r);
		break;
	case COH_P_PURGE:
		purge_reply(c, p, r);
		break;
	case COH_P_REAP_KEYS:
	case COH_P_REAP_EXISTS:
	case COH_P_REAP_DEL:
		coh_registry_reply(c, p, r);
		break;
	default:
		break;
	}
	freeReplyObject(r);
}

void coh_pend_expire(struct coh *c, struct coh_pend *p)
{
	struct coh_msg *m;
	struct coh_get *g;

	switch (p->kind) {
	case COH_P_GET:
		g = p->p;
		if (!g->answered) {
			get_answer(c, g, COH_TIMEOUT);
			coh_fail(c);
		}
		break;
	case COH_P_WRITE:
		if (p->flags & COH_PF_SHARD) {
			/* The shard gets its answer now; a copy stays for the replay
			 * queue in case the link breaks before Redis answers. */
			m = p->p;
			p->p = keep_copy(c, m);
			p->flags &= (uint8_t)~COH_PF_SHARD;
			reply(c, m, COH_TIMEOUT);
		} else {
			COH_ADD(c, timeouts, 1);
		}
		coh_fail(c);
		break;
	case COH_P_CLUSTER:
	case COH_P_PURGE:
		if (p->p)
			reply(c, p->p, COH_TIMEOUT);
		p->p = NULL;
		coh_fail(c);
		break;
	case COH_P_LEASE:
		reply(c, p->p, COH_TIMEOUT);
		p->flags |= COH_PF_EXPIRED;
		coh_fail(c);
		break;
	case COH_P_HEARTBEAT:
		COH_ADD(c, timeouts, 1);
		coh_fail(c);
		break;
	default:
		break;
	}
}

void coh_pend_abandon(struct coh *c, struct coh_pend *p)
{
	struct coh_msg *m;
	struct coh_get *g;

	switch (p->kind) {
	case COH_P_GET:
		g = p->p;
		if (!g->answered)
			get_answer(c, g, COH_ERROR);
		break;
	case COH_P_PTTL:
		g = p->p;
		if (!g->answered)
			get_answer(c, g, COH_ERROR);
		if (g->value)
			freeReplyObject(g->value);
		free(g);
		break;
	case COH_P_WRITE:
		m = p->p;
		if (!m)
			break;
		if (p->flags & COH_PF_SHARD) {
			/* Not confirmed: SKIPPED means "queued for replay". */
			struct coh_msg *copy = keep_copy(c, m);
			reply(c, m, COH_SKIPPED);
			if (copy)
				replay_add(c, copy);
		} else {
			replay_add(c, m);
		}
		break;
	case COH_P_CLUSTER:
	case COH_P_PURGE:
		if (p->p)
			reply(c, p->p, COH_ERROR);
		break;
	case COH_P_LEASE:
		if (!(p->flags & COH_PF_EXPIRED))
			reply(c, p->p, COH_ERROR);
		break;
	case COH_P_REAP_EXISTS:
		free(p->p);
		break;
	default:
		break;
	}
}

void coh_pend_abandon_all(struct coh *c)
{
	struct coh_pend *p;

	/* Each entry leaves the queue first: abandoning may send replies to
	 * shards or queue writes for replay, never commands. */
	while ((p = coh_conn_front(&c->cmd))) {
		struct coh_pend e = *p;
		coh_conn_pop(&c->cmd);
		coh_pend_abandon(c, &e);
	}
}

/* --- invalidations received --- */

void coh_sub_message(struct coh *c, redisReply *r)
{
	const redisReply *pl = r->element[2];
	const char *id, *key;
	size_t id_len, key_len;

	if (pl->type != REDIS_REPLY_STRING ||
	    coh_inval_decode(pl->str, pl->len, &id, &id_len, &key, &key_len) < 0) {
		COH_ADD(c, invalidations_bad, 1);
		return;
	}
	bool own = id && id_len == c->id_len && !memcmp(id, c->id, id_len);
	size_t tl = sizeof(COH_TAG_PREFIX) - 1;
	if (key_len > tl && key_len - tl <= COH_TAG_MAX && !memcmp(key, COH_TAG_PREFIX, tl)) {
		/* "tag:<tag>": a purge, for every shard (no cache key is named so
		 * with --redis: coh_key_reserved()).  Our own too: its L1 part ran
		 * beside the Redis part, so a read here may have taken a value
		 * before Redis deleted it and stored it after; this message, sent
		 * once Redis is purged, makes each shard drop such reads and purge
		 * again (cheap: only what came back meanwhile is left). */
		for (unsigned s = 0; s < c->nshards; s++) {
			struct coh_msg *pm = coh_msg_create(COH_PURGE_TAG, s, 0, key + tl,
							    key_len - tl, NULL, 0, 0);
			if (!pm) {
				coh_sub_lost(c);
				return;
			}
			coh_send(c, pm);
		}
		if (own)
			COH_ADD(c, invalidations_own, 1);
		else
			COH_ADD(c, purges_received, 1);
		return;
	}
	if (own) {
		COH_ADD(c, invalidations_own, 1);
		return;
	}
	uint64_t h = hash_key(key, key_len);
	supersede(c, h, key, key_len);
	struct coh_msg *m = coh_msg_create(COH_INVALIDATE, hash_shard(h, c->nshards), h,
					   key, key_len, NULL, 0, 0);
	if (!m) {
		/* Cannot deliver it: treat the feed as lost, so a FLUSH follows. */
		coh_sub_lost(c);
		return;
	}
	COH_ADD(c, invalidations_received, 1);
	coh_send(c, m);
}
