/*
 * fuzz_coh_reply.c - libFuzzer target for every handler of a Redis reply:
 * the bytes after the first are RESP, parsed by the command (or
 * subscription) connection's reader with its bounds (conn.c), and each
 * reply goes to the handler of the command it answers, as the link does:
 * GET + PTTL (ops.c), SET/DEL + PUBLISH, the heartbeat, HKEYS -> EXISTS ->
 * HDEL of the reaper and HGETALL of COH_CLUSTER (registry.c), and
 * "message" pushes on the subscription.  The module is created as the
 * daemon creates it but not started: the test plays its thread.
 *
 * The first byte picks what is in flight when the replies arrive (low 3
 * bits), whether the fill-lease EVALs follow it (0x40: LEASE_GET, a SET
 * with a lease, LEASE_RELEASE of key "k") and whether its deadline passes
 * first (0x80).  Properties checked
 * on everything the module hands back (abort on failure):
 *  - a GET answered OK carries a content type coh_ctype_valid() accepts and
 *    a value inside its own memory; statuses are the documented ones;
 *  - a COH_LEASE_GET answered OK is checked as a GET; answered MISS, or OK
 *    with a value left with its stale-if-error window alone, it says at
 *    most one of "leased" and "held by another";
 *  - a COH_CLUSTER answer is one valid JSON object starting with our id;
 *  - an INVALIDATE names a key of 1..COH_KEY_MAX bytes, with its hash, on
 *    the shard the hash picks;
 *  - every command written to Redis is well-formed RESP, and every HDEL of
 *    the reaper names, byte for byte, a field whose heartbeat EXISTS was
 *    asked (ids are length-counted: a NUL cannot cut them), at most 1024
 *    EXISTS per HKEYS reply.
 * tests/fuzz/replay.c runs corpus/coh-reply through it in the normal build.
 */
#include <hiredis/hiredis.h>

#include "coherence/conn.h"
#include "coherence/format.h"
#include "coherence/ops.h"
#include "coherence/registry.h"
#include "coherence/state.h"
#include "fuzz.h"
#include "ringcache/hash.h"

#define NSHARDS 2
#define SELF "fuzz-self"

static struct coh_msg *request(enum coh_op op, const char *key, const char *ctype,
			       const char *value)
{
	size_t kl = key ? strlen(key) : 0, cl = ctype ? strlen(ctype) : 0;
	size_t vl = value ? strlen(value) : 0;
	uint64_t h = key ? hash_key(key, kl) : 0;
	struct coh_msg *m = coh_msg_create(op, key ? hash_shard(h, NSHARDS) : 0, h, key, kl,
					   ctype, cl, vl);
	FUZZ_ASSERT(m != NULL);
	if (vl)
		memcpy(m->value, value, vl);
	m->ttl = 60;
	return m;
}

/* What a shard would see: every message on the out rings and backlogs. */
static void check_replies(struct coh *c)
{
	for (unsigned s = 0; s < NSHARDS; s++) {
		struct coh_shard *sh = &c->shards[s];
		struct coh_msg *m;
		ring_flush(sh->out);
		for (;;) {
			if ((m = ring_pop(sh->out))) {
				ring_release(sh->out);
			} else if ((m = sh->backlog)) {
				sh->backlog = m->next;
			} else {
				break;
			}
			FUZZ_ASSERT(m->status <= COH_BAD_DATA);
			switch (m->op) {
			case COH_LEASE_GET:
				FUZZ_ASSERT((m->flags & (COH_F_LEASED | COH_F_LEASE_HELD)) !=
					    (COH_F_LEASED | COH_F_LEASE_HELD));
				FUZZ_ASSERT(!(m->flags & (COH_F_LEASED | COH_F_LEASE_HELD)) ||
					    m->status == COH_MISS || m->status == COH_OK);
				/* its value is checked as a GET's */
				__attribute__((fallthrough));
			case COH_GET:
				if (m->status != COH_OK)
					break;
				FUZZ_ASSERT(m->value_mem && m->value >= (char *)m->value_mem);
				FUZZ_ASSERT(coh_ctype_valid(m->ctype, m->ctype_len));
				FUZZ_ASSERT(m->ctype_len == 0 || m->ctype >= (char *)m->value_mem);
				break;
			case COH_CLUSTER:
				if (m->status != COH_OK)
					break;
				FUZZ_ASSERT(coh_json_object_valid(m->value, m->value_len));
				FUZZ_ASSERT(m->value_len > 16 &&
					    !memcmp(m->value, "{\"self\":\"" SELF "\"", 9 + sizeof(SELF)));
				break;
			case COH_INVALIDATE:
				FUZZ_ASSERT(m->key_len >= 1 && m->key_len <= COH_KEY_MAX);
				FUZZ_ASSERT(m->hash == hash_key(m->key, m->key_len));
				FUZZ_ASSERT(m->shard == s && hash_shard(m->hash, NSHARDS) == s);
				break;
			case COH_SET:
			case COH_DEL:
			case COH_FLUSH:
			case COH_LEASE_RELEASE:
				break;
			default:
				FUZZ_ASSERT(!"unknown op");
			}
			coh_msg_destroy(m);
		}
		sh->backlog_tail = NULL;
		sh->backlog_len = 0;
	}
	c->backlog_total = 0;
}

static bool bulk_is(const redisReply *r, const char *s)
{
	return r->type == REDIS_REPLY_STRING && r->len == strlen(s) && !memcmp(r->str, s, r->len);
}

/* Parses what the module wrote to Redis; checks the reaper's HDELs. */
static void check_commands(const struct buf *out, unsigned hkeys_replies)
{
	static const char hb[] = "ringcache:instance:";
	const size_t hbl = sizeof(hb) - 1;
	redisReader *rd = redisReaderCreate();
	const redisReply **exists = NULL;
	size_t nexists = 0, cap = 0;
	redisReply **all = NULL;
	size_t nall = 0, allcap = 0;
	void *rp;

	FUZZ_ASSERT(rd && redisReaderFeed(rd, out->data, out->len) == REDIS_OK);
	for (;;) {
		FUZZ_ASSERT(redisReaderGetReply(rd, &rp) == REDIS_OK);
		if (!rp)
			break;
		redisReply *r = rp;
		FUZZ_ASSERT(r->type == REDIS_REPLY_ARRAY && r->elements >= 1);
		for (size_t i = 0; i < r->elements; i++)
			FUZZ_ASSERT(r->element[i]->type == REDIS_REPLY_STRING);
		if (nall == allcap) {
			allcap = allcap ? 2 * allcap : 64;
			all = realloc(all, allcap * sizeof(*all));
			FUZZ_ASSERT(all != NULL);
		}
		all[nall++] = r;
		if (bulk_is(r->element[0], "EXISTS")) {
			FUZZ_ASSERT(r->elements == 2 && r->element[1]->len >= hbl &&
				    !memcmp(r->element[1]->str, hb, hbl));
			if (nexists == cap) {
				cap = cap ? 2 * cap : 64;
				exists = realloc(exists, cap * sizeof(*exists));
				FUZZ_ASSERT(exists != NULL);
			}
			exists[nexists++] = r->element[1];
		}
	}
	FUZZ_ASSERT(rd->len == rd->pos);    /* nothing left half-written */
	FUZZ_ASSERT(nexists <= 1024u * hkeys_replies);
	for (size_t k = 0; k < nall; k++) {
		const redisReply *r = all[k];
		if (!bulk_is(r->element[0], "HDEL") || !bulk_is(r->element[1], "ringcache:instances"))
			continue;
		FUZZ_ASSERT(r->elements == 3);
		const redisReply *f = r->element[2];
		bool asked = false;
		for (size_t i = 0; i < nexists && !asked; i++)
			asked = exists[i]->len == hbl + f->len &&
				!memcmp(exists[i]->str + hbl, f->str, f->len);
		FUZZ_ASSERT(asked);
	}
	for (size_t k = 0; k < nall; k++)
		freeReplyObject(all[k]);
	free(all);
	free(exists);
	redisReaderFree(rd);
}

static bool is_message(const redisReply *r)
{
	return r->type == REDIS_REPLY_ARRAY && r->elements >= 3 &&
	       r->element[0]->type == REDIS_REPLY_STRING && r->element[0]->len == 7 &&
	       !strncasecmp(r->element[0]->str, "message", 7);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct coh_config cfg = { .redis_url = "redis://127.0.0.1:1", .instance_id = SELF,
				  .nshards = NSHARDS, .cpu = -1, .ring_size = 4 };
	struct coh *c;
	unsigned hkeys = 0;

	if (size < 1)
		return 0;
	FUZZ_ASSERT(coh_create(&c, &cfg, NULL, NULL) == 0);
	/* the link as it is once both connections are ready */
	c->now = 1000000;
	c->cmd.state = c->sub.state = COH_CONN_READY;
	c->link_up = true;
	c->cmd.reply_max = c->sub.reply_max = 1 << 20;
	c->cmd.elements_max = c->sub.elements_max = 4096;

	uint8_t mode = data[0];
	bool sub = (mode & 7) == 5;
	switch (mode & 7) {
	case 0:
		coh_request(c, request(COH_GET, "k", NULL, NULL));
		break;
	case 1:
		coh_request(c, request(COH_SET, "k", "text/plain", "value"));
		break;
	case 2:
		coh_request(c, request(COH_DEL, "k", NULL, NULL));
		break;
	case 3:
		coh_request(c, request(COH_CLUSTER, NULL, NULL, NULL));
		break;
	case 4:
		coh_registry_beat(c);
		hkeys = 1;
		break;
	case 5:
		break;    /* subscription messages */
	case 6:
		/* two GETs coalesced, overtaken by a write, and a third read */
		coh_request(c, request(COH_GET, "k", NULL, NULL));
		coh_request(c, request(COH_GET, "k", NULL, NULL));
		coh_request(c, request(COH_SET, "k", NULL, "v"));
		coh_request(c, request(COH_GET, "k", NULL, NULL));
		break;
	default:
		coh_registry_beat(c);
		coh_request(c, request(COH_CLUSTER, NULL, NULL, NULL));
		coh_request(c, request(COH_GET, "other", NULL, NULL));
		hkeys = 1;
		break;
	}
	if (mode & 0x40) {
		static const enum coh_op lease_ops[] = { COH_LEASE_GET, COH_SET,
							 COH_LEASE_RELEASE };
		for (unsigned i = 0; i < 3; i++) {
			struct coh_msg *m = request(lease_ops[i], "k", i == 1 ? "text/plain" : NULL,
						    i == 1 ? "v" : NULL);
			memcpy(m->lease, "0123456789abcdef0123456789abcdef", 32);
			m->lease_len = 32;
			m->lease_ttl_ms = 2000;
			coh_request(c, m);
		}
	}
	if (mode & 0x80) {
		/* every deadline passes before the replies arrive */
		for (uint32_t i = 0; i < c->cmd.q_len; i++) {
			struct coh_pend *p = coh_conn_at(&c->cmd, i);
			if (p->deadline && !(p->flags & COH_PF_EXPIRED)) {
				p->flags |= COH_PF_EXPIRED;
				coh_pend_expire(c, p);
			}
		}
	}
	check_replies(c);

	struct coh_conn *cn = sub ? &c->sub : &c->cmd;
	char *resp = fuzz_copy(data + 1, size - 1);
	redisReply *r;
	FUZZ_ASSERT(coh_conn_feed(cn, resp, size - 1) == 0);
	free(resp);
	while (coh_conn_reply(cn, &r) == 1) {
		if (sub) {
			if (is_message(r))
				coh_sub_message(c, r);
			freeReplyObject(r);
			continue;
		}
		struct coh_pend *p = coh_conn_front(cn);
		if (!p) {
			freeReplyObject(r);
			break;
		}
		struct coh_pend e = *p;
		coh_conn_pop(cn);
		coh_cmd_reply(c, &e, r);
		check_replies(c);
	}
	check_replies(c);
	check_commands(&c->cmd.out, hkeys);
	coh_destroy(c);    /* abandons what is still in flight */
	return 0;
}
