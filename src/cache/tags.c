/*
 * tags.c - X-Cache-Tags parsing and the per-shard tag index (tags.h).
 *
 * Two chained hash tables, both grown by doubling when their load passes
 * one per bucket: tags by name, and entries by (tag, key hash).  Each tag
 * also links its entries in a list, so a purge walks them without scanning
 * the entry table, and a removal is O(1) once found.  Every allocation is
 * counted against the bound; an add refused for it leaves the index as it
 * was.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ringcache/hash.h"
#include "ringcache/store.h"
#include "cache/tags.h"

_Static_assert(sizeof(((struct tags_key *)0)->key) == STORE_KEY_MAX,
	       "a tags_key holds any store key");

#define TAG_SEED 0x7461677374616773ull
#define BUCKETS_MIN 64u

struct tag;

struct entry {
	struct entry *bnext;            /* entry table chain */
	struct entry *tprev, *tnext;    /* the tag's list */
	struct tag *tag;
	uint64_t khash;
	uint16_t klen;
	uint8_t key[];
};

struct tag {
	struct tag *bnext;              /* tag table chain */
	struct entry *head;
	uint64_t hash;
	uint64_t nkeys;
	uint8_t len;
	uint8_t name[];
};

struct table {
	void **b;
	uint32_t nb;                    /* power of two; 0 before the first insert */
	uint64_t n;
};

struct tags {
	size_t bound, used;
	struct table tags, entries;
	uint32_t sweep_at;              /* next entry bucket tags_sweep() looks at */
};

/* --- parsing ------------------------------------------------------------------ */

static bool tag_byte(unsigned char ch)
{
	return ch >= 0x21 && ch <= 0x7e && ch != ',';
}

bool tags_valid(const uint8_t *tag, size_t n)
{
	if (n == 0 || n > REPR_TAG_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!tag_byte(tag[i]))
			return false;
	return true;
}

bool tags_has(const uint8_t *enc, uint32_t len, unsigned ntags, const uint8_t *tag, size_t n)
{
	const uint8_t *p = enc, *end = enc + len;

	for (unsigned i = 0; i < ntags && p < end; i++) {
		if (*p == n && (size_t)(end - p - 1) >= n && memcmp(p + 1, tag, n) == 0)
			return true;
		p += 1 + *p;
	}
	return false;
}

int tags_parse(const char *s, size_t n, uint8_t *out, uint32_t *out_len)
{
	const char *p = s, *end = s + n;
	uint32_t len = 0;
	int count = 0;

	while (p < end) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		const char *me = comma ? comma : end;
		while (p < me && (*p == ' ' || *p == '\t'))
			p++;
		const char *te = me;
		while (te > p && (te[-1] == ' ' || te[-1] == '\t'))
			te--;
		size_t tl = (size_t)(te - p);
		if (tl) {
			for (size_t i = 0; i < tl; i++)
				if (!tag_byte((unsigned char)p[i]))
					return -EINVAL;
			if (tl > REPR_TAG_MAX)
				return -ENAMETOOLONG;
			if (!tags_has(out, len, (unsigned)count, (const uint8_t *)p, tl)) {
				if (count == (int)REPR_TAGS_MAX)
					return -E2BIG;
				out[len] = (uint8_t)tl;
				memcpy(out + len + 1, p, tl);
				len += 1 + (uint32_t)tl;
				count++;
			}
		}
		p = comma ? comma + 1 : end;
	}
	*out_len = len;
	return count;
}

/* --- the index ------------------------------------------------------------------ */

/* What malloc takes for n bytes, as glibc rounds a chunk (its size word
 * added, 16-byte multiples, 32 at least): the bound counts memory held, not
 * bytes asked for. */
static size_t held(size_t n)
{
	size_t c = (n + 8 + 15) & ~(size_t)15;
	return c < 32 ? 32 : c;
}

static size_t entry_size(uint32_t key_len)
{
	return held(sizeof(struct entry) + key_len);
}

static size_t tag_size(size_t len)
{
	return held(sizeof(struct tag) + len);
}

int tags_create(struct tags **out, size_t memory)
{
	struct tags *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->bound = memory;
	t->used = held(sizeof(*t));
	*out = t;
	return 0;
}

static void free_table_chains(struct table *tb, bool entries)
{
	for (uint32_t i = 0; i < tb->nb; i++) {
		void *p = tb->b[i];
		while (p) {
			void *next = entries ? (void *)((struct entry *)p)->bnext
					     : (void *)((struct tag *)p)->bnext;
			free(p);
			p = next;
		}
	}
	free(tb->b);
}

void tags_destroy(struct tags *t)
{
	if (!t)
		return;
	free_table_chains(&t->entries, true);
	free_table_chains(&t->tags, false);
	free(t);
}

size_t tags_memory(const struct tags *t)
{
	return t ? t->used : 0;
}

uint64_t tags_entries(const struct tags *t)
{
	return t ? t->entries.n : 0;
}

bool tags_room(const struct tags *t, unsigned ntags, uint32_t key_len)
{
	/* each add may create its tag and double both tables */
	size_t need = ntags * (entry_size(key_len) + tag_size(REPR_TAG_MAX));
	size_t grow = (size_t)(t->tags.nb + t->entries.nb) * 2 * sizeof(void *) +
		      2 * BUCKETS_MIN * sizeof(void *);
	return t->used + need + grow <= t->bound;
}

/* Makes room for one more node in tb (doubling it), if the bound allows.
 * 0, -ENOSPC or -ENOMEM.  rehash(node) gives a node's hash; next(node) its
 * chain link. */
static int table_grow(struct tags *t, struct table *tb, bool entries)
{
	if (tb->n < tb->nb)
		return 0;
	uint32_t nb = tb->nb ? tb->nb * 2 : BUCKETS_MIN;
	size_t bytes = held((size_t)nb * sizeof(void *));
	size_t old = tb->nb ? held((size_t)tb->nb * sizeof(void *)) : 0;
	if (t->used + bytes > t->bound + old)
		return tb->nb ? 0 : -ENOSPC;    /* a full table only gets longer chains */
	void **b = calloc(nb, sizeof(void *));
	if (!b)
		return tb->nb ? 0 : -ENOMEM;
	for (uint32_t i = 0; i < tb->nb; i++) {
		void *p = tb->b[i];
		while (p) {
			void *next;
			uint64_t h;
			if (entries) {
				struct entry *e = p;
				next = e->bnext;
				h = e->khash ^ e->tag->hash;
				e->bnext = b[h & (nb - 1)];
			} else {
				struct tag *g = p;
				next = g->bnext;
				h = g->hash;
				g->bnext = b[h & (nb - 1)];
			}
			b[h & (nb - 1)] = p;
			p = next;
		}
	}
	t->used += bytes;
	t->used -= old;
	free(tb->b);
	tb->b = b;
	tb->nb = nb;
	t->sweep_at = 0;
	return 0;
}

static struct tag *tag_find(const struct tags *t, const uint8_t *name, size_t len, uint64_t h)
{
	if (!t->tags.nb)
		return NULL;
	for (struct tag *g = t->tags.b[h & (t->tags.nb - 1)]; g; g = g->bnext)
		if (g->hash == h && g->len == len && memcmp(g->name, name, len) == 0)
			return g;
	return NULL;
}

static struct entry **entry_slot(const struct tags *t, const struct tag *g, const uint8_t *key,
				 uint32_t klen, uint64_t khash)
{
	struct entry **pp = (struct entry **)&t->entries.b[(khash ^ g->hash) & (t->entries.nb - 1)];

	for (; *pp; pp = &(*pp)->bnext) {
		struct entry *e = *pp;
		if (e->tag == g && e->khash == khash && e->klen == klen &&
		    memcmp(e->key, key, klen) == 0)
			return pp;
	}
	return pp;
}

static void tag_forget(struct tags *t, struct tag *g)
{
	struct tag **pp = (struct tag **)&t->tags.b[g->hash & (t->tags.nb - 1)];

	while (*pp != g)
		pp = &(*pp)->bnext;
	*pp = g->bnext;
	t->tags.n--;
	t->used -= tag_size(g->len);
	free(g);
}

/* Unlinks entry *pp (in the entry table) from both structures and frees it;
 * forgets its tag when that was its last key. */
static void entry_drop(struct tags *t, struct entry **pp)
{
	struct entry *e = *pp;
	struct tag *g = e->tag;

	*pp = e->bnext;
	if (e->tprev)
		e->tprev->tnext = e->tnext;
	else
		g->head = e->tnext;
	if (e->tnext)
		e->tnext->tprev = e->tprev;
	t->entries.n--;
	t->used -= entry_size(e->klen);
	free(e);
	if (--g->nkeys == 0)
		tag_forget(t, g);
}

int tags_add(struct tags *t, const uint8_t *tag, size_t tag_len, const uint8_t *key,
	     uint32_t key_len, uint64_t khash)
{
	uint64_t h = hash_bytes(tag, tag_len, TAG_SEED);
	struct tag *g = tag_find(t, tag, tag_len, h);
	int rc;

	if (g && t->entries.nb && *entry_slot(t, g, key, key_len, khash))
		return 0;       /* already recorded */
	if ((rc = table_grow(t, &t->entries, true)) != 0)
		return rc;
	bool new_tag = !g;
	if (new_tag) {
		if ((rc = table_grow(t, &t->tags, false)) != 0)
			return rc;
		if (t->used + tag_size(tag_len) + entry_size(key_len) > t->bound)
			return -ENOSPC;
		g = malloc(sizeof(struct tag) + tag_len);
		if (!g)
			return -ENOMEM;
		memset(g, 0, sizeof(*g));
		g->hash = h;
		g->len = (uint8_t)tag_len;
		memcpy(g->name, tag, tag_len);
	} else if (t->used + entry_size(key_len) > t->bound) {
		return -ENOSPC;
	}
	struct entry *e = malloc(sizeof(struct entry) + key_len);
	if (!e) {
		if (new_tag)
			free(g);
		return -ENOMEM;
	}
	if (new_tag) {
		struct tag **b = (struct tag **)&t->tags.b[h & (t->tags.nb - 1)];
		g->bnext = *b;
		*b = g;
		t->tags.n++;
		t->used += tag_size(tag_len);
	}
	e->tag = g;
	e->khash = khash;
	e->klen = (uint16_t)key_len;
	memcpy(e->key, key, key_len);
	e->tprev = NULL;
	e->tnext = g->head;
	if (g->head)
		g->head->tprev = e;
	g->head = e;
	g->nkeys++;
	struct entry **b = (struct entry **)&t->entries.b[(khash ^ h) & (t->entries.nb - 1)];
	e->bnext = *b;
	*b = e;
	t->entries.n++;
	t->used += entry_size(key_len);
	return 0;
}

void tags_remove(struct tags *t, const uint8_t *tag, size_t tag_len, const uint8_t *key,
		 uint32_t key_len, uint64_t khash)
{
	struct tag *g = tag_find(t, tag, tag_len, hash_bytes(tag, tag_len, TAG_SEED));

	if (!g)
		return;
	struct entry **pp = entry_slot(t, g, key, key_len, khash);
	if (*pp)
		entry_drop(t, pp);
}

int tags_take(struct tags *t, const uint8_t *tag, size_t tag_len, struct tags_key *out)
{
	struct tag *g = tag_find(t, tag, tag_len, hash_bytes(tag, tag_len, TAG_SEED));

	if (!g)
		return 0;
	struct entry *e = g->head;
	out->hash = e->khash;
	out->len = e->klen;
	memcpy(out->key, e->key, e->klen);
	entry_drop(t, entry_slot(t, g, e->key, e->klen, e->khash));
	return 1;
}

uint64_t tags_count(const struct tags *t, const uint8_t *tag, size_t tag_len)
{
	const struct tag *g = tag_find(t, tag, tag_len, hash_bytes(tag, tag_len, TAG_SEED));

	return g ? g->nkeys : 0;
}

uint32_t tags_sweep(struct tags *t, uint32_t max, tags_still_fn still, void *arg)
{
	uint32_t seen = 0, dropped = 0;

	if (!t->entries.n)
		return 0;
	for (uint32_t b = 0; b < t->entries.nb && seen < max; b++) {
		uint32_t i = t->sweep_at;
		t->sweep_at = (t->sweep_at + 1) & (t->entries.nb - 1);
		struct entry **pp = (struct entry **)&t->entries.b[i];
		while (*pp) {
			struct entry *e = *pp;
			seen++;
			if (still(arg, e->tag->name, e->tag->len, e->key, e->klen, e->khash)) {
				pp = &e->bnext;
			} else {
				entry_drop(t, pp);
				dropped++;
			}
		}
	}
	return dropped;
}
