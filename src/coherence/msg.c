/*
 * msg.c - the half of the module that runs on shard threads: messages
 * (create, destroy, copy, a GET's answer filled in from Redis' replies) and
 * the shard's end of its two rings (submit, flush, poll, the parking peek).
 * Each ring function is called only by the thread of the shard it names;
 * the coherence thread's end of the same rings is in coh.c.
 *
 * What a shard touches of struct coh here: its coh_shard's rings and
 * `polled` (its own line), `parked` and `efd` (the doorbell).  Nothing
 * else, so a shard never contends with the coherence thread but on the ring
 * indices and the parked flag, which is the point of the handshake.  (Its
 * read connection, read.c, adds the gate, `unsettled` and `trips`.)
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "format.h"
#include "msg.h"
#include "state.h"

/* --- messages --- */

struct coh_msg *coh_msg_create(enum coh_op op, unsigned shard, uint64_t hash,
			       const void *key, size_t key_len,
			       const void *ctype, size_t ctype_len, size_t value_len)
{
	bool keyless = op == COH_CLUSTER || op == COH_FLUSH;

	if (key_len > COH_KEY_MAX || (!keyless && key_len == 0) ||
	    !coh_ctype_valid(ctype, ctype_len))
		return NULL;
	size_t extra = key_len + 1 + ctype_len + 1;
	if (value_len > SIZE_MAX - sizeof(struct coh_msg) - extra)
		return NULL;
	struct coh_msg *m = malloc(sizeof(*m) + extra + value_len);
	if (!m)
		return NULL;
	memset(m, 0, sizeof(*m));
	m->op = (uint8_t)op;
	m->shard = shard;
	m->hash = hash;
	m->key = (char *)(m + 1);
	m->ctype = m->key + key_len + 1;
	m->value = m->ctype + ctype_len + 1;
	if (key_len)
		memcpy(m->key, key, key_len);
	m->key[key_len] = '\0';
	if (ctype_len)
		memcpy(m->ctype, ctype, ctype_len);
	m->ctype[ctype_len] = '\0';
	m->key_len = (uint32_t)key_len;
	m->ctype_len = (uint32_t)ctype_len;
	m->value_len = value_len;
	return m;
}

void coh_msg_destroy(struct coh_msg *m)
{
	if (!m)
		return;
	free(m->value_mem);
	free(m);
}

int coh_msg_split_ext(struct coh_msg *m, uint32_t ext_len)
{
	if (ext_len == 0 || ext_len > COH_EXT_MAX || ext_len > m->value_len)
		return -EINVAL;
	m->ext = m->value;
	m->ext_len = ext_len;
	m->value += ext_len;
	m->value_len -= ext_len;
	return 0;
}

struct coh_msg *coh_msg_copy(const struct coh_msg *m)
{
	struct coh_msg *n = coh_msg_create(m->op, m->shard, m->hash, m->key, m->key_len,
					   m->ctype, m->ctype_len, m->ext_len + m->value_len);
	if (!n)
		return NULL;
	if (m->ext_len)
		memcpy(n->value, m->ext, m->ext_len);
	if (m->value_len)
		memcpy(n->value + m->ext_len, m->value, m->value_len);
	if (m->ext_len)
		coh_msg_split_ext(n, m->ext_len);
	n->ttl = m->ttl;
	n->seq = m->seq;
	memcpy(n->lease, m->lease, sizeof(n->lease));
	n->lease_len = m->lease_len;
	n->lease_ttl_ms = m->lease_ttl_ms;
	n->tags_off = m->tags_off;
	n->ntags = m->ntags;
	return n;
}

/* --- a GET's answer --- */

static uint32_t ttl_seconds(long long pttl)
{
	if (pttl == -1)
		return 0;
	if (pttl <= 0)
		return 1;
	long long s = pttl / 1000 + (pttl % 1000 != 0);    /* + 999 could overflow */
	return s > UINT32_MAX ? UINT32_MAX : (uint32_t)s;
}

void coh_get_decode(const redisReply *v, const redisReply *pttl, struct coh_got *g)
{
	memset(g, 0, sizeof(*g));
	if (!v || v->type == REDIS_REPLY_NIL) {
		g->status = v ? COH_MISS : COH_ERROR;
	} else if (v->type == REDIS_REPLY_ERROR) {
		g->status = !strncmp(v->str, "WRONGTYPE", 9) ? COH_BAD_DATA : COH_ERROR;
	} else if (v->type != REDIS_REPLY_STRING) {
		g->status = COH_BAD_DATA;
	} else {
		int d = coh_value_decode_ext(v->str, v->len, &g->ctype_off, &g->ctype_len,
					     &g->ext_off, &g->ext_len, &g->value_off);
		if (d < 0) {
			g->status = COH_BAD_DATA;
		} else if (pttl->type != REDIS_REPLY_INTEGER) {
			g->status = COH_ERROR;
		} else if (pttl->integer == -2) {
			g->status = COH_MISS;    /* expired or deleted between GET and PTTL */
		} else {
			g->status = COH_OK;
			g->ttl = ttl_seconds(pttl->integer);
			g->raw = d == 1;
		}
	}
}

int coh_msg_take_value(struct coh_msg *m, redisReply *v, const struct coh_got *g,
		       uint16_t flags, bool copy)
{
	char *mem = v->str;

	if (copy) {
		mem = malloc(v->len + 1);
		if (!mem)
			return -ENOMEM;
		memcpy(mem, v->str, v->len);
		mem[v->len] = '\0';
	} else {
		v->str = NULL;    /* hiredis allocated it with malloc(): ours now */
	}
	m->value_mem = mem;
	m->value = mem + g->value_off;
	m->value_len = v->len - g->value_off;
	if (g->ctype_len)
		m->ctype = mem + g->ctype_off;
	m->ctype_len = (uint32_t)g->ctype_len;
	m->ext = g->ext_len ? mem + g->ext_off : NULL;
	m->ext_len = (uint32_t)g->ext_len;
	m->ttl = g->ttl;
	m->flags = flags;
	return 0;
}

/* --- the shard's end of its rings --- */

bool coh_submit(struct coh *c, unsigned shard, struct coh_msg *m)
{
	return ring_push(c->shards[shard].in, m);
}

void coh_flush(struct coh *c, unsigned shard)
{
	static const uint64_t one = 1;

	/* ring_flush() stores the tail seq_cst; the load of `parked` below is
	 * ordered after it (ring.h's parking protocol). */
	if (ring_flush(c->shards[shard].in) &&
	    atomic_load_explicit(&c->parked, memory_order_seq_cst)) {
		ssize_t n = write(c->efd, &one, sizeof(one));
		(void)n;    /* EAGAIN only if the counter is saturated: already awake */
	}
}

struct coh_msg *coh_poll(struct coh *c, unsigned shard)
{
	struct coh_shard *sh = &c->shards[shard];
	struct coh_msg *m = ring_pop(sh->out);

	if (!m || ++sh->polled >= 32) {
		ring_release(sh->out);
		sh->polled = 0;
	}
	return m;
}

bool coh_pending(struct coh *c, unsigned shard)
{
	return ring_peek_sc(c->shards[shard].out);
}
