/*
 * repr.c - packs a value and its variants into one store blob and splits it
 * again (layout in repr.h).  Packing runs once per write: it hashes the
 * value for its ETag, little else; unpacking a blob without a header is
 * inline in repr.h and this file only handles the blobs that carry one.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "ringcache/hash.h"
#include "cache/repr.h"

struct repr_type {
	const char *name;
	uint32_t len;
};

static const struct repr_type types[] = {
#define REPR_TYPE_ENTRY(s) { s, sizeof(s) - 1 },
	REPR_TYPES(REPR_TYPE_ENTRY)
#undef REPR_TYPE_ENTRY
};

_Static_assert(sizeof(types) / sizeof(types[0]) == REPR_F_TYPE + 1,
	       "REPR_TYPES must fill the type bits of flags exactly");
_Static_assert((REPR_F_TYPE | REPR_F_HDR) <= UINT8_MAX,
	       "the store keeps 8 bits of flags");

/* Distinct seeds per coding: equal bytes in two codings still get two tags. */
#define ETAG_SEED 0x6574616772657072ull
static const uint64_t coding_seed[REPR_NCODINGS] = {
	0, 0x9fb21c651e98df25ull, 0xc2b2ae3d27d4eb4full,
};

/* The ETag seed of each known type's name, hashed once per process rather
 * than on every write of a value of that type. */
static uint64_t type_seeds[sizeof(types) / sizeof(types[0])];
static pthread_once_t type_seeds_once = PTHREAD_ONCE_INIT;

static void type_seeds_init(void)
{
	for (unsigned i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		type_seeds[i] = hash_bytes(types[i].name, types[i].len, ETAG_SEED);
}

int repr_type_index(const char *ct, size_t len)
{
	for (unsigned i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (types[i].len == len && memcmp(types[i].name, ct, len) == 0)
			return (int)i;
	return -1;
}

const char *repr_type_name(unsigned i, uint32_t *len)
{
	if (i >= sizeof(types) / sizeof(types[0]))
		i = 0;
	*len = types[i].len;
	return types[i].name;
}

static uint32_t etag_of(const void *p, size_t n, unsigned coding, uint64_t type_seed)
{
	uint64_t h = hash_bytes(p, n, ETAG_SEED ^ coding_seed[coding] ^ type_seed);
	return (uint32_t)(h ^ (h >> 32));
}

static uint8_t *put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
	return p + 4;
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

void repr_build(struct repr_blob *b, const void *value, uint32_t len,
		const char *ct, size_t ct_len, const void *br, uint32_t br_len,
		const void *gz, uint32_t gz_len, uint32_t stamp)
{
	uint32_t type_name_len;
	const char *type_name;
	int type = 0;

	if (ct_len) {
		type = repr_type_index(ct, ct_len);
		if (ct_len > REPR_TYPE_MAX)
			ct_len = REPR_TYPE_MAX;
	}
	if (type >= 0) {
		type_name = repr_type_name((unsigned)type, &type_name_len);
		b->flags = (uint8_t)type;
	} else {
		type_name = ct;
		type_name_len = (uint32_t)ct_len;
		b->flags = REPR_F_CT;
	}
	uint64_t type_seed;
	if (type >= 0) {
		pthread_once(&type_seeds_once, type_seeds_init);
		type_seed = type_seeds[type];
	} else {
		type_seed = hash_bytes(type_name, type_name_len, ETAG_SEED);
	}
	b->etag = etag_of(value, len, REPR_IDENTITY, type_seed);

	uint8_t *h = b->hdr;
	if (br || gz)
		h = put_le32(h, stamp);
	if (br) {
		b->flags |= REPR_F_BR;
		h = put_le32(h, br_len);
		h = put_le32(h, etag_of(br, br_len, REPR_BR, type_seed));
	}
	if (gz) {
		b->flags |= REPR_F_GZIP;
		h = put_le32(h, gz_len);
		h = put_le32(h, etag_of(gz, gz_len, REPR_GZIP, type_seed));
	}
	if (type < 0) {
		*h++ = (uint8_t)ct_len;
		memcpy(h, ct, ct_len);
		h += ct_len;
	}

	int n = 0;
	if (h != b->hdr)
		b->iov[n++] = (struct iovec){ b->hdr, (size_t)(h - b->hdr) };
	b->iov[n++] = (struct iovec){ (void *)(value ? value : ""), len };
	if (br)
		b->iov[n++] = (struct iovec){ (void *)br, br_len };
	if (gz)
		b->iov[n++] = (struct iovec){ (void *)gz, gz_len };
	b->iovcnt = n;
}

uint32_t repr_ext_encode(uint8_t *out, const struct repr_ext *e)
{
	uint8_t *p = out;

	if (!e->bits)
		return 0;
	*p++ = e->bits;
	if (e->bits & REPR_EXT_WINDOWS) {
		p = put_le32(p, e->ttl);
		p = put_le32(p, e->swr);
		p = put_le32(p, e->sie);
	}
	if (e->bits & REPR_EXT_TAGS) {
		*p++ = e->ntags;
		memcpy(p, e->tags, e->tags_len);
		p += e->tags_len;
	}
	return (uint32_t)(p - out);
}

void repr_blob_ext(struct repr_blob *b, const uint8_t *ext, uint32_t len)
{
	if (!len)
		return;
	memmove(&b->iov[1], &b->iov[0], (size_t)b->iovcnt * sizeof(b->iov[0]));
	b->iov[0] = (struct iovec){ (void *)ext, len };
	b->iovcnt++;
	b->flags |= REPR_F_EXT;
}

int repr_ext_decode(const uint8_t *blob, uint32_t len, struct repr_ext *e)
{
	const uint8_t *p = blob, *end = blob + len;

	memset(e, 0, sizeof(*e));
	if (p == end)
		return -EINVAL;
	e->bits = *p++;
	if (!e->bits || (e->bits & ~(REPR_EXT_WINDOWS | REPR_EXT_TAGS)))
		return -EINVAL;
	if (e->bits & REPR_EXT_WINDOWS) {
		if (end - p < 12)
			return -EINVAL;
		e->ttl = get_le32(p);
		e->swr = get_le32(p + 4);
		e->sie = get_le32(p + 8);
		p += 12;
	}
	if (e->bits & REPR_EXT_TAGS) {
		if (p == end)
			return -EINVAL;
		e->ntags = *p++;
		if (e->ntags == 0 || e->ntags > REPR_TAGS_MAX)
			return -EINVAL;
		e->tags = p;
		for (unsigned i = 0; i < e->ntags; i++) {
			if (p == end || *p == 0 || *p > REPR_TAG_MAX || end - p - 1 < *p)
				return -EINVAL;
			p += 1 + *p;
		}
		e->tags_len = (uint32_t)(p - e->tags);
	}
	e->len = (uint32_t)(p - blob);
	return 0;
}

int repr_unpack_hdr(const uint8_t *blob, uint32_t len, uint8_t flags,
		    uint32_t etag, struct repr_view *v)
{
	const uint8_t *p = blob, *end = blob + len;
	uint64_t tail = 0;

	if (flags & ~(REPR_F_HDR | REPR_F_TYPE))
		return -EINVAL;
	v->ext.bits = 0;
	if (flags & REPR_F_EXT) {
		if (repr_ext_decode(blob, len, &v->ext) != 0)
			return -EINVAL;
		p += v->ext.len;
	}
	v->avail = 1u << REPR_IDENTITY;
	if (flags & (REPR_F_BR | REPR_F_GZIP)) {
		if (end - p < 4)
			return -EINVAL;
		v->stamp = get_le32(p);
		p += 4;
	}
	for (unsigned c = REPR_BR; c <= REPR_GZIP; c++) {
		unsigned bit = c == REPR_BR ? REPR_F_BR : REPR_F_GZIP;
		if (!(flags & bit))
			continue;
		if (end - p < 8)
			return -EINVAL;
		v->part[c].len = get_le32(p);
		v->part[c].etag = get_le32(p + 4);
		v->avail |= 1u << c;
		tail += v->part[c].len;
		p += 8;
	}
	if (flags & REPR_F_CT) {
		if (p == end || (size_t)(end - p - 1) < *p)
			return -EINVAL;
		v->type = -1;
		v->type_len = *p;
		v->type_str = (const char *)p + 1;
		p += 1 + *p;
	} else {
		v->type = flags & REPR_F_TYPE;
	}
	if ((uint64_t)(end - p) < tail)
		return -EINVAL;

	v->part[REPR_IDENTITY].p = p;
	v->part[REPR_IDENTITY].len = (uint32_t)((uint64_t)(end - p) - tail);
	v->part[REPR_IDENTITY].etag = etag;
	p += v->part[REPR_IDENTITY].len;
	for (unsigned c = REPR_BR; c <= REPR_GZIP; c++) {
		if (v->avail & (1u << c)) {
			v->part[c].p = p;
			p += v->part[c].len;
		}
	}
	return 0;
}
