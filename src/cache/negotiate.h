/*
 * negotiate.h - the request header fields that decide which representation
 * a GET gets and what a PUT means: Accept-Encoding (RFC 9110 12.5.3),
 * If-None-Match (13.1.2) and the max-age directive of Cache-Control
 * (RFC 9111 5.2).  Pure functions over the header value, no allocation.
 */
#ifndef RINGCACHE_CACHE_NEGOTIATE_H
#define RINGCACHE_CACHE_NEGOTIATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Same numbering as enum repr_coding: bit (1 << coding) in `avail`. */
enum negotiate_coding {
	NEGOTIATE_NONE = -1,    /* nothing acceptable: 406 */
	NEGOTIATE_IDENTITY = 0,
	NEGOTIATE_BR = 1,
	NEGOTIATE_GZIP = 2,
};

/*
 * Chooses the coding to send among `avail` (a mask of 1 << coding; identity
 * must be in it) for the Accept-Encoding value s[0..n); n == 0 (absent or
 * empty) means identity.  Rules:
 *  - each listed coding gets its q (default 1, "q=0" excludes it); "x-gzip"
 *    is gzip; the first entry for a coding counts, later ones are ignored;
 *    entries with a malformed q and unknown codings are ignored;
 *  - "*" gives its q to every coding not listed, identity included;
 *  - identity neither listed nor covered by "*" stays acceptable with the
 *    lowest positive q (0.001), so "gzip;q=0.5" still prefers gzip;
 *  - the highest q wins; ties prefer br, then gzip, then identity.
 * Returns the coding, or NEGOTIATE_NONE when every stored one is excluded.
 */
int negotiate_encoding(const char *s, size_t n, unsigned avail);

/*
 * The two halves of negotiate_encoding(), for a caller that remembers the
 * weights of a header value it has seen (clients repeat theirs on every
 * request): weigh() parses, pick() chooses among what is stored.
 */
struct negotiate_weights {
	int16_t q[3];           /* per coding, thousandths, after the rules above */
};

void negotiate_weigh(const char *s, size_t n, struct negotiate_weights *w);
int negotiate_pick(const struct negotiate_weights *w, unsigned avail);

/*
 * If-None-Match s[0..n) against the quoted entity-tag etag[0..elen) of the
 * selected representation, with the weak comparison RFC 9110 requires for
 * this field (a W/ prefix is ignored on either side).  "*" matches.  A
 * malformed member is skipped, the rest of the list still counts.
 */
bool negotiate_etag_match(const char *s, size_t n, const char *etag, size_t elen);

/*
 * Finds the max-age directive in a Cache-Control value s[0..n).  Returns 1
 * with *secs set (values above 2^31 are 2^31, as RFC 9111 1.2.2 says), or 0
 * when absent or malformed.  Quoted values ("60") are accepted.
 */
int negotiate_max_age(const char *s, size_t n, uint32_t *secs);

/*
 * The first valued occurrence of a delta-seconds directive (max-age,
 * stale-while-revalidate, stale-if-error, max-stale) in a Cache-Control
 * value s[0..n), matched case-insensitively.  Returns 1 with *secs (above
 * 2^31: 2^31), 2 when it is present only without a value ("max-stale"),
 * 0 when absent, -1 when its value is malformed (empty, not digits, "-5",
 * an unclosed quote).  Quoted values ("60") are accepted.
 */
int negotiate_cc_secs(const char *s, size_t n, const char *directive, uint32_t *secs);

#endif
