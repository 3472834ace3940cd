/*
 * parse.c - the HTTP/1.1 request-head parser.
 *
 * The result must be a function of the bytes alone, whatever way they were
 * split across calls, so the parser works in two layers:
 *
 *   parse_head()   parses the whole head from its first byte in one pass and
 *                  either finds the empty line that ends it, or the first
 *                  line that decides the request's fate, or reports that
 *                  more input is needed.
 *   resume()       looks only at the bytes that arrived since the last call
 *                  (*scanned) for line ends and parses each field line once,
 *                  when it ends, so a head arriving a byte at a time costs
 *                  O(n); only at the end of the request line or of the head
 *                  does parse_head() run again.
 *
 * Every line is judged as soon as it ends, whatever follows: a client that
 * sent a faulty line may be waiting for the answer (an HTTP/0.9 client sends
 * its request line alone), and should not be left to the request timeout.
 * A line ends at its LF, or at a bare CR (a CR followed by anything else,
 * RFC 9112 2.2), which makes it faulty.  Precedence, from the bytes: a
 * leading bare CR (400); a method that is not a token followed by SP within
 * its first 16 bytes (400); a request line over the limit (414); a faulty
 * request line (400, or 505 for another version); the first faulty field
 * line that ends within max_head (400); no end of the head within max_head
 * (431); then, once the head is complete, more than max_headers fields (431)
 * and the checks across fields (400 framing, 501 coding, 417 expectation).
 * All but the last are decided as soon as the bytes prove them, the method
 * check on every call, cheaply, so that a TLS handshake or other binary junk
 * is turned away at once; the order still holds because a request line that
 * cannot fit in max_head is refused with 414 (see HTTP_LIMITS in http.h), and because
 * the method check looks at a fixed window.  The field count is left to the
 * end because resume() does not keep it; max_head bounds the wait.
 *
 * Speed: the common head is parsed where it lies, without a separate search
 * for line ends; values and paths, most of a head's bytes, are checked 8 at
 * a time; field names are dispatched on length and compared a word at a time;
 * the commonest shapes ("GET ", "PUT ", "HTTP/1.1\r\n", a CRLF) are matched
 * by one compare each before the general checks, which are their fallback.
 * perf/bench-http-parse.c counts the instructions per head.
 *
 * Host is not required: the cache serves one origin and a missing Host
 * carries no routing meaning here, so refusing it would only break minimal
 * clients.  Request-targets are strict: visible ASCII only, in origin-form
 * ('/' first) or absolute-form ("http://" or "https://", an authority that
 * is ignored, then the path: see absolute_form); asterisk-form and
 * authority-form belong to OPTIONS and CONNECT, which the cache does not
 * serve, and are refused.  One empty line before the request line is
 * skipped (RFC 9112 2.2).
 */
#include <string.h>

#include "ringcache/bytes.h"
#include "ringcache/http.h"
#include "ctab.h"

/*
 * What the fields said, for the checks across them after the last one: bits
 * of one word, so that a head with none of them (most) is told by one test.
 */
enum {
	F_CL_SEEN = 1 << 0,
	F_CL_DIFFER = 1 << 1,     /* two Content-Length values that differ */
	F_TE_SEEN = 1 << 2,
	F_TE_BAD = 1 << 3,        /* a coding other than a lone "chunked" */
	F_EXPECT_BAD = 1 << 4,
	F_EXPECT_100 = 1 << 5,
	F_CONN_CLOSE = 1 << 6,
	F_CONN_KEEP = 1 << 7,
};

static inline size_t min_sz(size_t a, size_t b)
{
	return a < b ? a : b;
}

/* The 8 (4, 2) bytes at p as a word, in memory order: compared with the load
 * of a literal, the result does not depend on the byte order. */
static inline uint64_t load64(const char *p)
{
	return bytes_load64((const uint8_t *)p);
}

static inline uint16_t load16(const char *p)
{
	return bytes_load16((const uint8_t *)p);
}

static inline uint32_t load32(const char *p)
{
	return bytes_load32((const uint8_t *)p);
}

/*
 * Compares a field name with a literal of lowercase letters and '-', for
 * bytes already known to be tchars: setting bit 5 folds a letter and maps
 * no other tchar onto a letter or '-', so one OR per word does the folding.
 * Names of 8 bytes or more are compared as two overlapping words.
 */
static inline bool lower_eq(const char *p, const char *lit, size_t n)
{
	if (n >= 8) {
		const uint64_t m = 0x2020202020202020ull;
		uint64_t a, b, c, d;
		memcpy(&a, p, 8);
		memcpy(&b, lit, 8);
		memcpy(&c, p + n - 8, 8);
		memcpy(&d, lit + n - 8, 8);
		return (a | m) == b && (c | m) == d;
	}
	for (size_t i = 0; i < n; i++)
		if (((uint8_t)p[i] | 0x20) != (uint8_t)lit[i])
			return false;
	return true;
}

/* Same for arbitrary bytes (values): only letters fold. */
static inline bool value_eq(const char *p, size_t n, const char *lit, size_t litn)
{
	if (n != litn)
		return false;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = (uint8_t)p[i];
		if (c >= 'A' && c <= 'Z')
			c |= 0x20;
		if (c != (uint8_t)lit[i])
			return false;
	}
	return true;
}

/* one table test rather than two compares: values are trimmed at both ends */
static inline bool is_ows(char c)
{
	return http_ctab[(uint8_t)c] & C_OWS;
}

/*
 * Returns the first byte of [x, limit) that is not a field-value byte.
 * Values are most of a head's bytes, so they go 8 at a time: a word is
 * clean when no byte is below 0x20 or equal to 0x7f.  Each byte is judged
 * on its low 7 bits plus a constant, which never carries into the next
 * byte, so the flags are exact per byte and the lowest one is the first
 * offender on a little-endian load: bit 7 of b7 + 0x60 is clear below
 * 0x20, bit 7 of b7 + 1 set at 0x7f, and a byte with its own bit 7 set
 * (obs-text) is never flagged.  HTAB is the one byte below 0x20 that
 * belongs, so it is stepped over.
 */
static inline const char *scan_value(const char *x, const char *limit)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;

	while (limit - x >= 8) {
		uint64_t w = load64(x), w7 = w & (0x7f * ones);
		uint64_t bad = ~w & (~(w7 + 0x60 * ones) | (w7 + ones)) & highs;
		if (!bad) {
			x += 8;
			continue;
		}
		x += __builtin_ctzll(bad) >> 3;
		if (*x != '\t')
			return x;
		x++;
	}
#endif
	while (x < limit && (http_ctab[(uint8_t)*x] & C_VALUE))
		x++;
	return x;
}

/*
 * Where the line that starts at or before p ends, as far as a verdict on it
 * goes: at the first LF of [p, limit), or at the first CR followed by
 * anything but LF, whichever comes first.  Such a bare CR (RFC 9112 2.2)
 * makes the line faulty, and a client that ends its lines that way must be
 * answered then, not when a LF that it will never send arrives.  Returns
 * the LF or the bare CR, or NULL: a CR at limit - 1 waits for its follower.
 */
static const char *line_end(const char *p, const char *limit)
{
	/* the few bytes of one recv from a slow client: no library calls */
	if (limit - p < 16) {
		for (; p < limit; p++)
			if (*p == '\n' || (*p == '\r' && p + 1 < limit && p[1] != '\n'))
				return p;
		return NULL;
	}
	const char *lf = memchr(p, '\n', (size_t)(limit - p));
	const char *e = lf ? lf : limit;

	for (const char *cr = p; (cr = memchr(cr, '\r', (size_t)(e - cr))) != NULL; cr++)
		if (cr + 1 < limit && cr[1] != '\n')
			return cr;
	return lf;
}

/*
 * Length of the request line's content seen so far (CR before LF, or a
 * trailing CR that may become one, excluded), looking at no more than
 * l->line + 2 bytes: enough to tell whether it exceeds l->line.
 * *complete says whether its end (see line_end) was found.
 */
static size_t request_line_len(const char *buf, size_t len, size_t start,
			       const struct http_limits *l, bool *complete)
{
	const char *p = buf + start;
	const char *e = line_end(p, p + min_sz(len - start, l->line + 2));
	size_t content = e ? (size_t)(e - p) : min_sz(len - start, l->line + 2);

	*complete = e != NULL;
	if (content && p[content - 1] == '\r')
		content--;
	return content;
}

/*
 * The verdict on an incomplete head: 414 if the request line already proves
 * too long, else 431 past max_head, else HTTP_AGAIN.  `s` is the previous
 * call's length: a request line that was acceptable then with more than
 * l->line + 1 bytes behind it was complete, so it needs no second look
 * (this keeps the look at the request line to at most two calls).
 */
static int head_incomplete(const char *buf, size_t len, size_t start, size_t s,
			   const struct http_limits *l)
{
	bool complete;

	if (len - start > l->line && (s < start || s - start < l->line + 2) &&
	    request_line_len(buf, len, start, l, &complete) > l->line)
		return -414;
	if (len > l->head)
		return -431;
	return HTTP_AGAIN;
}

/*
 * The early method check: within the first METHOD_WINDOW bytes of the
 * request line (never more than the line limit, so that it is decided before
 * 414 could be), the first byte that is not a tchar must be a SP, and not
 * the first byte.  Costs a few bytes per call.
 */
#define METHOD_WINDOW 16

static int method_early(const char *buf, size_t len, size_t start, const struct http_limits *l)
{
	size_t w = min_sz(METHOD_WINDOW, l->line);
	size_t e = min_sz(len, start + w);

	for (size_t i = start; i < e; i++)
		if (!(http_ctab[(uint8_t)buf[i]] & C_TCHAR))
			return i > start && buf[i] == ' ' ? 0 : -400;
	return 0;
}

static uint8_t method_of(const char *p, size_t n)
{
	switch (n) {
	case 3:
		if (p[0] == 'G' && p[1] == 'E' && p[2] == 'T')
			return HTTP_METHOD_GET;
		if (p[0] == 'P' && p[1] == 'U' && p[2] == 'T')
			return HTTP_METHOD_PUT;
		break;
	case 4:
		if (!memcmp(p, "HEAD", 4))
			return HTTP_METHOD_HEAD;
		if (!memcmp(p, "POST", 4))
			return HTTP_METHOD_POST;
		break;
	case 6:
		if (!memcmp(p, "DELETE", 6))
			return HTTP_METHOD_DELETE;
		break;
	}
	return HTTP_METHOD_OTHER;
}

/* Returns the first byte of [x, limit) that is not a tchar; four bytes a
 * round so that the bound is checked once per four. */
static inline const char *scan_token(const char *x, const char *limit)
{
	while (limit - x >= 4) {
		if (!(http_ctab[(uint8_t)x[0]] & C_TCHAR))
			return x;
		if (!(http_ctab[(uint8_t)x[1]] & C_TCHAR))
			return x + 1;
		if (!(http_ctab[(uint8_t)x[2]] & C_TCHAR))
			return x + 2;
		if (!(http_ctab[(uint8_t)x[3]] & C_TCHAR))
			return x + 3;
		x += 4;
	}
	while (x < limit && (http_ctab[(uint8_t)*x] & C_TCHAR))
		x++;
	return x;
}

/*
 * Returns the first byte of [x, limit) that cannot be in a path: outside
 * 0x21..0x7e, or '?'.  Eight at a time, exact per byte as in scan_value():
 * a byte with bit 7 set is flagged by it, and on the low 7 bits b7, bit 7
 * of b7 + 0x5f is clear below 0x21, of b7 + 1 set at 0x7f, and of
 * (b7 ^ '?') + 0x7f clear at '?'.
 */
static inline const char *scan_path(const char *x, const char *limit)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
	const uint64_t low7 = 0x7f * ones;

	while (limit - x >= 8) {
		uint64_t w = load64(x), w7 = w & low7;
		uint64_t bad = (w | (w7 + ones) |
				~((w7 + 0x5f * ones) & ((w7 ^ ('?' * ones)) + low7))) & highs;
		if (bad)
			return x + (__builtin_ctzll(bad) >> 3);
		x += 8;
	}
#endif
	while (x < limit && (http_ctab[(uint8_t)*x] & C_PATH))
		x++;
	return x;
}

/*
 * The path from ps and the query after it, looked at no further than w;
 * returns the first byte after them.
 */
static inline const char *path_and_query(const char *ps, const char *w, struct http_request *r)
{
	const char *q = scan_path(ps, w);

	r->path.p = ps;
	r->path.len = (uint32_t)(q - ps);
	if (q < w && *q == '?') {
		const char *qs = ++q;
		while (q < w && (http_ctab[(uint8_t)*q] & C_TARGET))
			q++;
		r->query.p = qs;
		r->query.len = (uint32_t)(q - qs);
	} else {
		r->query.p = q;
		r->query.len = 0;
	}
	return q;
}

/*
 * The absolute-form of the request-target at t (RFC 9112 3.2.2), which a
 * server must accept: "http://" or "https://" in any case, an authority,
 * then the path and query as in origin-form.  The authority is ignored, as
 * RFC 9112 3.2.2 lets an origin server do (and so is Host): the cache
 * serves one origin.  It must still be well-formed: a host that is not
 * empty (RFC 9110 4.2.1) and no userinfo, which RFC 9110 4.2.4 says to
 * treat as an error.  An empty path means "/" (RFC 9110 4.2.3), the '/'
 * before the authority.  Returns the first byte after the target, or NULL
 * for a target in no form we accept (or one not complete before w).  Out
 * of line: origin-form, the common case, never comes here.
 */
static __attribute__((noinline)) const char *absolute_form(const char *t, const char *w,
							     struct http_request *r)
{
	const char *a;

	if (t < w && *t == '/')
		return NULL;
	if (w - t > 7 && value_eq(t, 7, "http://", 7))
		a = t + 7;
	else if (w - t > 8 && value_eq(t, 8, "https://", 8))
		a = t + 8;
	else
		return NULL;
	const char *e = a;
	while (e < w && (http_ctab[(uint8_t)*e] & C_AUTH))
		e++;
	if (e == a || *a == ':' || e == w || (*e != '/' && *e != '?' && *e != ' '))
		return NULL;
	const char *q = path_and_query(e, w, r);
	if (r->path.len == 0) {
		r->path.p = a - 1;
		r->path.len = 1;
	}
	return q;
}

/*
 * The request line at p, looked at no further than w, which is at most
 * max + 2 bytes on: max is the longest content allowed, so a line that ends
 * in CRLF before w fits, and one that ends in a lone LF may be a byte over.
 * Returns 0 with *next past its LF, -505 for a well-formed line of another
 * version, or -400 for anything else, including a line that does not end
 * before w or is longer than max: the caller tells those apart (incomplete,
 * 414, 400) on its slow path.
 */
static int parse_request_line(const char *p, const char *w, size_t max, struct http_request *r,
			      const char **next)
{
	const char *q;
	uint32_t m4 = 0;

	/* GET and PUT, the methods of most requests, with their SP in one
	 * 4-byte compare; other methods take the scan and the name switch */
	if (w - p >= 4)
		memcpy(&m4, p, 4);
	if (m4 == load32("GET ")) {
		q = p + 3;
		r->method = HTTP_METHOD_GET;
	} else if (m4 == load32("PUT ")) {
		q = p + 3;
		r->method = HTTP_METHOD_PUT;
	} else {
		q = scan_token(p, w);
		if (q == p || q == w || *q != ' ')
			return -400;
		r->method = method_of(p, (size_t)(q - p));
	}
	r->method_name.p = p;
	r->method_name.len = (uint32_t)(q - p);

	const char *t = ++q;
	q = path_and_query(t, w, r);
	if (q == t || *t != '/') {
		q = absolute_form(t, w, r);
		if (!q)
			return -400;
	}
	if (q == w || *q != ' ')
		return -400;
	r->target.p = t;
	r->target.len = (uint32_t)(q - t);

	q++;
	/* nearly every request says "HTTP/1.1\r\n": one 8-byte compare for
	 * it; any other version or line end takes the general check below */
	if (w - q >= 10 && load64(q) == load64("HTTP/1.1") &&
	    load16(q + 8) == load16("\r\n")) {
		*next = q + 10;
		r->minor = 1;
		return 0;
	}
	if (w - q < 9 || memcmp(q, "HTTP/", 5) != 0 || q[5] < '0' || q[5] > '9' ||
	    q[6] != '.' || q[7] < '0' || q[7] > '9')
		return -400;
	if (q[8] == '\n' && (size_t)(q + 8 - p) <= max)
		*next = q + 9;
	else if (q[8] == '\r' && w - q >= 10 && q[9] == '\n')
		*next = q + 10;
	else
		return -400;
	if (q[5] != '1' || q[7] > '1')
		return -505;
	r->minor = (uint8_t)(q[7] - '0');
	return 0;
}

static int parse_content_length(const char *v, size_t n, struct http_request *r,
				unsigned *f)
{
	int64_t x = 0;

	if (n == 0 || n > 18)
		return -400;
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -400;
		x = x * 10 + (v[i] - '0');
	}
	if ((*f & F_CL_SEEN) && x != r->content_length)
		*f |= F_CL_DIFFER;
	*f |= F_CL_SEEN;
	r->content_length = x;
	return 0;
}

static void parse_connection(const char *v, size_t n, unsigned *f)
{
	const char *e = v + n;

	while (v < e) {
		const char *c = memchr(v, ',', (size_t)(e - v));
		const char *te = c ? c : e, *ts = v;
		while (ts < te && is_ows(*ts))
			ts++;
		while (te > ts && is_ows(te[-1]))
			te--;
		size_t tn = (size_t)(te - ts);
		if (value_eq(ts, tn, "close", 5))
			*f |= F_CONN_CLOSE;
		else if (value_eq(ts, tn, "keep-alive", 10))
			*f |= F_CONN_KEEP;
		if (!c)
			break;
		v = c + 1;
	}
}

static inline void keep_first(struct http_str *s, const char *v, size_t n)
{
	if (!s->p) {
		s->p = v;
		s->len = (uint32_t)n;
	}
}

/*
 * One field line starting at p, scanned once: the name up to ':', then the
 * value up to the first byte that is not a value byte, which must start the
 * line end.  Dispatches on the name's length and first letter so that a
 * field we ignore costs one switch.  Returns 1 with *next past the line's
 * LF, HTTP_AGAIN if the line does not end before `limit`, or -status.
 * Forced inline: with resume() as a second caller the compiler would make
 * it a call, which costs a tenth of a short head's parse.
 */
static inline __attribute__((always_inline)) int
parse_field(const char *p, const char *limit, struct http_request *r, unsigned *f,
	    const char **next)
{
	const char *q = scan_token(p, limit);

	if (q == limit)
		return HTTP_AGAIN;
	/* an empty name covers obs-fold; anything but ':' after it covers
	 * whitespace before the colon */
	if (q == p || *q != ':')
		return -400;
	size_t nlen = (size_t)(q - p);

	const char *v = q + 1;
	while (v < limit && is_ows(*v))
		v++;
	const char *x = scan_value(v, limit);
	/* CRLF, the common line end, in one compare */
	if (limit - x >= 2 && load16(x) == load16("\r\n")) {
		*next = x + 2;
	} else if (x == limit) {
		return HTTP_AGAIN;
	} else if (*x == '\n') {
		*next = x + 1;
	} else if (*x == '\r') {
		if (x + 1 == limit)
			return HTTP_AGAIN;
		if (x[1] != '\n')
			return -400;
		*next = x + 2;
	} else {
		return -400;
	}
	const char *ve = x;
	while (ve > v && is_ows(ve[-1]))
		ve--;
	size_t vn = (size_t)(ve - v);

	switch (nlen) {
	case 6:
		if (lower_eq(p, "expect", 6)) {
			if (value_eq(v, vn, "100-continue", 12))
				*f |= F_EXPECT_100;
			else
				*f |= F_EXPECT_BAD;
		}
		break;
	case 9:
		if (lower_eq(p, "x-api-key", 9))
			keep_first(&r->x_api_key, v, vn);
		break;
	case 10:
		if (lower_eq(p, "connection", 10))
			parse_connection(v, vn, f);
		break;
	case 12:
		if (lower_eq(p, "content-type", 12)) {
			keep_first(&r->content_type, v, vn);
		} else if (lower_eq(p, "x-cache-fill", 12)) {
			keep_first(&r->x_cache_fill, v, vn);
		} else if (lower_eq(p, "x-cache-tags", 12)) {
			/* a second field would be a list split in two: one is
			 * asked for (docs/stale-and-tags.md), not guessed */
			if (r->x_cache_tags.p)
				r->tags_repeated = true;
			keep_first(&r->x_cache_tags, v, vn);
		}
		break;
	case 13:
		switch (p[0] | 0x20) {
		case 'a':
			if (lower_eq(p, "authorization", 13))
				keep_first(&r->authorization, v, vn);
			break;
		case 'c':
			if (lower_eq(p, "cache-control", 13))
				keep_first(&r->cache_control, v, vn);
			break;
		case 'i':
			if (lower_eq(p, "if-none-match", 13))
				keep_first(&r->if_none_match, v, vn);
			break;
		case 'x':
			if (lower_eq(p, "x-cache-lease", 13))
				keep_first(&r->x_cache_lease, v, vn);
			break;
		}
		break;
	case 14:
		if (lower_eq(p, "content-length", 14) && parse_content_length(v, vn, r, f))
			return -400;
		break;
	case 15:
		if (lower_eq(p, "accept-encoding", 15))
			keep_first(&r->accept_encoding, v, vn);
		break;
	case 17:
		if (lower_eq(p, "transfer-encoding", 17)) {
			if (vn == 0)
				return -400;
			/* a second field makes the list "chunked, ...", never
			 * the lone "chunked" we accept */
			if ((*f & F_TE_SEEN) || !value_eq(v, vn, "chunked", 7))
				*f |= F_TE_BAD;
			*f |= F_TE_SEEN;
		}
		break;
	}
	return 1;
}

/* Checks across fields, once all are seen; fills the derived flags. */
static int finish_fields(struct http_request *r, unsigned f)
{
	/* most heads: nothing to check across fields, the version decides */
	if (!(f & ~F_CL_SEEN)) {
		r->chunked = false;
		r->expect_continue = false;
		r->keep_alive = r->minor == 1;
		return 0;
	}
	/* two lengths, both framings, or chunked in HTTP/1.0 (RFC 9112 6.1)
	 * are smuggling shapes: refuse before looking at the coding itself */
	if ((f & F_CL_DIFFER) || ((f & F_TE_SEEN) && ((f & F_CL_SEEN) || r->minor == 0)))
		return -400;
	if (f & F_TE_BAD)
		return -501;
	if (f & F_EXPECT_BAD)
		return -417;
	r->chunked = f & F_TE_SEEN;
	/* RFC 9110 10.1.1: ignore 100-continue from an HTTP/1.0 client */
	r->expect_continue = (f & F_EXPECT_100) && r->minor == 1;
	if (f & F_CONN_CLOSE)
		r->keep_alive = false;
	else if (f & F_CONN_KEEP)
		r->keep_alive = true;
	else
		r->keep_alive = r->minor == 1;
	return 0;
}

/*
 * The slow path of parse_head(), for a request line that parse_request_line()
 * refused with `err`: it is refused, incomplete or too long, and those are
 * told apart in precedence order; a complete, short line failing the early
 * method check failed there too.  A complete line is judged at once,
 * whatever follows it: an HTTP/0.9 client sends nothing after its request
 * line.  Out of line: inlined, it made the common path spill registers
 * (9 instructions a head).
 */
static __attribute__((noinline)) int request_line_refused(const char *buf, size_t len,
							   size_t start,
							   const struct http_limits *l, int err)
{
	bool complete;
	size_t rl = request_line_len(buf, len, start, l, &complete);
	int early = method_early(buf, len, start, l);

	if (early)
		return early;
	if (rl > l->line)
		return -414;
	if (!complete)
		return head_incomplete(buf, len, start, 0, l);
	/* err is set: a complete line over the limit was caught as 414 */
	return err;
}

/*
 * Parses buf[0..len) from its first byte; the request line starts at
 * `start` (after a skipped empty line).  Returns the head length, HTTP_AGAIN
 * or -status; fills *r only in part on failure.
 */
static int parse_head(const char *buf, size_t len, size_t start, const struct http_limits *l,
		      struct http_request *r)
{
	const char *p = buf + start, *line = NULL;

	/* parse_request_line() sets the request line's fields, finish_fields()
	 * the flags: only what the fields may leave alone starts at zero */
	r->content_length = -1;
	r->accept_encoding = r->if_none_match = r->content_type = (struct http_str){ 0 };
	r->cache_control = r->x_api_key = r->authorization = (struct http_str){ 0 };
	r->x_cache_fill = r->x_cache_lease = (struct http_str){ 0 };
	r->x_cache_tags = (struct http_str){ 0 };
	r->tags_repeated = false;
	const char *w = p + min_sz(len - start, l->line + 2);
	int err = parse_request_line(p, w, l->line, r, &line);
	if (err)
		return request_line_refused(buf, len, start, l, err);

	const char *end = buf + len, *limit = buf + min_sz(len, l->head);
	unsigned f = 0;
	size_t nfields = 0;

	for (;;) {
		if (line >= end)
			return len > l->head ? -431 : HTTP_AGAIN;
		/* a field line starts with a tchar, above '\r': one test for it */
		if ((uint8_t)*line <= '\r') {
			if (end - line >= 2 && load16(line) == load16("\r\n")) {
				line += 2;
				break;
			}
			if (*line == '\n') {
				line += 1;
				break;
			}
			if (*line == '\r' && line + 1 >= end)
				return len > l->head ? -431 : HTTP_AGAIN;
		}
		nfields++;
		const char *next;
		int rc = parse_field(line, limit, r, &f, &next);
		if (rc > 0) {
			line = next;
			continue;
		}
		/* a faulty line is refused once it ends, as resume() sees it,
		 * and that must be within max_head */
		if (rc == HTTP_AGAIN || !line_end(line, limit))
			return len > l->head ? -431 : HTTP_AGAIN;
		return rc;
	}

	size_t head_len = (size_t)(line - buf);
	if (head_len > l->head || nfields > l->max_headers)
		return -431;
	err = finish_fields(r, f);
	if (err)
		return err;
	r->head_len = (uint32_t)head_len;
	return (int)head_len;
}

/* resume() found the end of the request line or of the head: parse again */
#define REPARSE 1

/*
 * The second and later looks at a head that was incomplete after its first
 * s bytes.  Only the bytes since are searched for line ends, and each line
 * is parsed once, when it ends, from its start found by looking back over
 * that line alone; so a head arriving a byte at a time costs O(n), not
 * O(n^2).  A faulty field line is refused then; the end of the request line
 * (which decides it) or of the head needs the whole head: REPARSE.
 * Otherwise returns what head_incomplete() says.
 */
static int resume(const char *buf, size_t len, size_t start, size_t s, const struct http_limits *l)
{
	const char *first = buf + start, *limit = buf + min_sz(len, l->head);
	const char *p, *e;

	/* a window seen whole by an earlier call passed then */
	if (s - start < METHOD_WINDOW) {
		int rc = method_early(buf, len, start, l);
		if (rc)
			return rc;
	}
	if (s >= len)
		return head_incomplete(buf, len, start, s, l);
	/* a CR last time may have its follower now */
	p = buf + s - (buf[s - 1] == '\r');
	while (p < limit && (e = line_end(p, limit)) != NULL) {
		const char *ls = memrchr(first, '\n', (size_t)(e - first));
		ls = ls ? ls + 1 : first;
		if (ls == first)
			return REPARSE;
		if (*e == '\n' && (e == ls || (e == ls + 1 && *ls == '\r')))
			return REPARSE;
		/* a field line: the parse_head() to come will record it, so
		 * only its verdict is kept now; what depends on other fields
		 * is decided after the last one (finish_fields) */
		struct http_request r = { .content_length = -1 };
		unsigned f = 0;
		const char *next;
		int rc = parse_field(ls, limit, &r, &f, &next);
		if (rc < 0)
			return rc;
		p = e + 1;
	}
	return head_incomplete(buf, len, start, s, l);
}

int http_parse_request(const char *buf, size_t len, size_t *scanned,
		       const struct http_limits *lim, struct http_request *req)
{
	const struct http_limits *l = lim;
	size_t start = 0, s = *scanned;
	int rc;

	if (len == 0)
		return HTTP_AGAIN;
	/* a method starts with a tchar, above '\r': one test for most heads */
	if ((uint8_t)buf[0] <= '\r') {
		if (buf[0] == '\n') {
			start = 1;
		} else if (buf[0] == '\r') {
			if (len < 2) {
				*scanned = len;
				return HTTP_AGAIN;
			}
			if (buf[1] != '\n')
				return -400;
			start = 2;
		}
	}

	if (s > start) {
		rc = resume(buf, len, start, s, l);
		if (rc != REPARSE) {
			if (rc == HTTP_AGAIN)
				*scanned = len;
			return rc;
		}
	}

	rc = parse_head(buf, len, start, l, req);     /* in place: no copy out */
	if (rc == HTTP_AGAIN)
		*scanned = len;
	return rc;
}
