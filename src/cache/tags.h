/*
 * tags.h - the tags of a PUT (X-Cache-Tags) and the per-shard tag index:
 * tag -> the keys of this shard's store written with it (issue 9,
 * docs/stale-and-tags.md).
 *
 * The tags of an item are stored with it, in its blob's extension header
 * (repr.h); the index only says where to look.  It may hold more than the
 * truth (a key overwritten without the tag by a path that does not tell it,
 * evicted, expired): a purge checks each key's own tags before deleting it,
 * and tags_sweep() drops such entries a slice at a time.  It never holds
 * less: every tagged write is added, or refused (-ENOSPC: the bound).
 *
 *   tag table (chained)          entry table (chained, by tag and key)
 *   +-----+                      +-----+
 *   | ... |-> tag "user:42" ---->| ... |-> entry (tag, "k1") <-> entry (tag, "k7")
 *   +-----+   head, nkeys        +-----+     \____ the tag's list, for a purge ____/
 *
 * Memory: every allocation is counted (tags_memory()); an add that would
 * pass the bound given at creation is refused.  Nothing is allocated before
 * the first tagged write: untagged items cost the index nothing.
 *
 * Owner shard only, like the store.
 */
#ifndef RINGCACHE_CACHE_TAGS_H
#define RINGCACHE_CACHE_TAGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/repr.h"

/*
 * Parses an X-Cache-Tags value s[0..n): a comma-separated list; each member
 * stripped of spaces and tabs around it; empty members are skipped (RFC 9110
 * 5.6.1), a tag given twice counts once.  A tag is 1..REPR_TAG_MAX bytes of
 * visible ASCII (0x21-0x7E) other than ','.  Writes the encoded list (length
 * byte, bytes; repr.h) to out (REPR_TAGS_MAX * (1 + REPR_TAG_MAX) bytes of
 * room).  Returns the number of tags (0: none), or -EINVAL (a bad byte),
 * -E2BIG (more than REPR_TAGS_MAX), -ENAMETOOLONG (a tag over REPR_TAG_MAX).
 */
int tags_parse(const char *s, size_t n, uint8_t *out, uint32_t *out_len);

/* Whether tag[0..n) is one valid tag (the rule above). */
bool tags_valid(const uint8_t *tag, size_t n);

/* Whether the encoded list enc[0..len) (repr_ext.tags) holds tag. */
bool tags_has(const uint8_t *enc, uint32_t len, unsigned ntags, const uint8_t *tag, size_t n);

struct tags;

/* An index bounded to `memory` bytes.  0 or -ENOMEM. */
int tags_create(struct tags **out, size_t memory);
void tags_destroy(struct tags *t);      /* accepts NULL */

/* Bytes the index holds (allocations: tables, tags, entries). */
size_t tags_memory(const struct tags *t);
/* (tag, key) entries. */
uint64_t tags_entries(const struct tags *t);

/*
 * Whether adding `ntags` tags for a key of key_len bytes could pass the
 * bound (a cheap upper estimate, asked before a write is stored).
 */
bool tags_room(const struct tags *t, unsigned ntags, uint32_t key_len);

/*
 * Records that key (hash khash) carries tag.  0 (added, or already there),
 * -ENOSPC (the bound), -ENOMEM.
 */
int tags_add(struct tags *t, const uint8_t *tag, size_t tag_len, const uint8_t *key,
	     uint32_t key_len, uint64_t khash);

/* Forgets that key carries tag (nothing if it was not recorded). */
void tags_remove(struct tags *t, const uint8_t *tag, size_t tag_len, const uint8_t *key,
		 uint32_t key_len, uint64_t khash);

/* One key taken off a tag's list (tags_take()). */
struct tags_key {
	uint64_t hash;
	uint32_t len;
	uint8_t key[1024];      /* STORE_KEY_MAX */
};

/*
 * Takes one key recorded for tag off the index into *out: 1, or 0 when the
 * tag has none left (it is then forgotten).  A purge calls it a slice at a
 * time.
 */
int tags_take(struct tags *t, const uint8_t *tag, size_t tag_len, struct tags_key *out);

/* Keys recorded for tag (what a purge has left to look at). */
uint64_t tags_count(const struct tags *t, const uint8_t *tag, size_t tag_len);

/*
 * Looks at up to `max` entries, going round the index, and drops those for
 * which still(arg, ...) says the key no longer carries the tag (evicted,
 * expired, deleted or overwritten behind the index's back).  Returns the
 * number dropped.
 */
typedef bool (*tags_still_fn)(void *arg, const uint8_t *tag, size_t tag_len,
			      const uint8_t *key, uint32_t key_len, uint64_t khash);
uint32_t tags_sweep(struct tags *t, uint32_t max, tags_still_fn still, void *arg);

#endif
