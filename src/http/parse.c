/*
 * parse.c - the HTTP/1.1 request-head parser.
 *
 * The result must be a function of the complete head alone, whatever way the
 * bytes were split across calls, so the parser works in two layers:
 *
 *   parse_head()   parses the whole head from its first byte in one pass and
 *                  either finds the empty line that ends it or reports that
 *                  more input is needed.  An error in a line is remembered,
 *                  not returned, until the end of the head is seen: whether
 *                  the head fits max_head must be known first, because a
 *                  prefix of the same bytes could not have known about the
 *                  error any earlier.
 *   find_end()     resumes the search for that empty line at *scanned, so
 *                  a head arriving a byte at a time is looked at once; only
 *                  when the end is there does parse_head() run again.
 *
 * Precedence, from the complete head: a leading bare CR (400), a method that
 * is not a token followed by SP within its first bytes (400), then a
 * request line over the limit (414), then a head over max_head (431), then
 * the first faulty line in order (400, 414 never, 431 for too many fields,
 * 505), then checks across fields (400 framing, 501 coding, 417 expect).
 * 414 and 431 are also known before the head ends, as soon as the bytes
 * prove them, and the same precedence holds then because a request line
 * that cannot fit in max_head is itself refused with 414 (see head_limits).
 * The method check looks at a fixed window so that it can run on every call:
 * it turns away TLS handshakes and other binary junk at once instead of
 * leaving them to the idle timeout.
 *
 * Host is not required: the cache serves one origin and a missing Host
 * carries no routing meaning here, so refusing it would only break minimal
 * clients.  Request-targets are strict: visible ASCII only, starting with
 * '/'.  One empty line before the request line is skipped (RFC 9112 2.2).
 */
#include <string.h>

#include "ringcache/http.h"

enum {
	C_TCHAR = 1,  /* token: method and field names */
	C_TARGET = 2, /* request-target: visible ASCII */
	C_VALUE = 4,  /* field value: VCHAR, obs-text, SP, HTAB */
};

#define T_ (C_TCHAR | C_TARGET | C_VALUE)
#define V_ (C_TARGET | C_VALUE)

static const uint8_t ctab[256] = {
	['\t'] = C_VALUE, [' '] = C_VALUE,
	['!'] = T_, ['"'] = V_, ['#'] = T_, ['$'] = T_, ['%'] = T_, ['&'] = T_,
	['\''] = T_, ['('] = V_, [')'] = V_, ['*'] = T_, ['+'] = T_, [','] = V_,
	['-'] = T_, ['.'] = T_, ['/'] = V_,
	['0' ... '9'] = T_,
	[':'] = V_, [';'] = V_, ['<'] = V_, ['='] = V_, ['>'] = V_, ['?'] = V_,
	['@'] = V_,
	['A' ... 'Z'] = T_,
	['['] = V_, ['\\'] = V_, [']'] = V_, ['^'] = T_, ['_'] = T_, ['`'] = T_,
	['a' ... 'z'] = T_,
	['{'] = V_, ['|'] = T_, ['}'] = V_, ['~'] = T_,
	[0x80 ... 0xff] = C_VALUE,
};

struct limits {
	size_t line;    /* effective max request line */
	size_t head;
	size_t fields;
};

/* Errors detected while parsing fields and decided after the last one. */
struct fields {
	bool cl_seen;
	bool te_seen;
	bool te_bad;      /* a coding other than a lone "chunked" */
	bool expect_bad;
	bool conn_close;
	bool conn_keep;
	bool expect_100;
};

/*
 * A request line longer than max_head - 3 cannot belong to a head that fits
 * (up to 2 bytes of leading empty line, then at least one LF), so it is
 * refused as 414: that keeps 414 ahead of 431 on every prefix.
 */
static void head_limits(const struct http_limits *lim, struct limits *l)
{
	l->head = lim->max_head < INT32_MAX ? lim->max_head : INT32_MAX;
	l->line = l->head > 3 ? l->head - 3 : 0;
	if (lim->max_request_line < l->line)
		l->line = lim->max_request_line;
	l->fields = lim->max_headers;
}

static inline size_t min_sz(size_t a, size_t b)
{
	return a < b ? a : b;
}

/* ASCII case-insensitive compare against a lowercase literal, for bytes
 * already known to be tchars (for which |0x20 only folds letters). */
static inline bool lower_eq(const char *p, const char *lit, size_t n)
{
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

static inline bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/*
 * Length of the request line's content seen so far (CR before LF, or a
 * trailing CR that may become one, excluded), looking at no more than
 * l->line + 2 bytes: enough to tell whether it exceeds l->line.
 * *complete says whether its LF was found.
 */
static size_t request_line_len(const char *buf, size_t len, size_t start,
			       const struct limits *l, bool *complete)
{
	size_t n = min_sz(len - start, l->line + 2);
	const char *lf = memchr(buf + start, '\n', n);
	size_t content = lf ? (size_t)(lf - (buf + start)) : n;

	*complete = lf != NULL;
	if (content && buf[start + content - 1] == '\r')
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
			   const struct limits *l)
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

static int method_early(const char *buf, size_t len, size_t start, const struct limits *l)
{
	size_t w = min_sz(METHOD_WINDOW, l->line);
	size_t e = min_sz(len, start + w);

	for (size_t i = start; i < e; i++)
		if (!(ctab[(uint8_t)buf[i]] & C_TCHAR))
			return i > start && buf[i] == ' ' ? 0 : -400;
	return 0;
}

/*
 * Looks for the LF that ends an empty line among buf[from..limit), reading
 * back up to two bytes before `from`.  Returns the offset past it or 0.
 * It may also stop at an empty request line, which parse_head() refuses.
 */
static size_t find_end(const char *buf, size_t from, size_t limit)
{
	const char *p = buf + from, *e = buf + limit;

	while (p < e) {
		const char *lf = memchr(p, '\n', (size_t)(e - p));
		if (!lf)
			return 0;
		size_t i = (size_t)(lf - buf);
		if (i >= 1 && (buf[i - 1] == '\n' ||
			       (i >= 2 && buf[i - 1] == '\r' && buf[i - 2] == '\n')))
			return i + 1;
		p = lf + 1;
	}
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

/* Request line p[0..n), line end excluded. */
static int parse_request_line(const char *p, size_t n, struct http_request *r)
{
	const char *e = p + n, *q = p;

	while (q < e && (ctab[(uint8_t)*q] & C_TCHAR))
		q++;
	if (q == p || q == e || *q != ' ')
		return -400;
	r->method_name.p = p;
	r->method_name.len = (uint32_t)(q - p);
	r->method = method_of(p, (size_t)(q - p));

	const char *t = ++q;
	while (q < e && (ctab[(uint8_t)*q] & C_TARGET))
		q++;
	if (q == t || q == e || *q != ' ' || *t != '/')
		return -400;
	size_t tlen = (size_t)(q - t);
	r->target.p = t;
	r->target.len = (uint32_t)tlen;
	const char *qm = memchr(t, '?', tlen);
	if (qm) {
		r->path.p = t;
		r->path.len = (uint32_t)(qm - t);
		r->query.p = qm + 1;
		r->query.len = (uint32_t)(q - qm - 1);
	} else {
		r->path = r->target;
		r->query.p = q;
		r->query.len = 0;
	}

	q++;
	if (e - q != 8 || memcmp(q, "HTTP/", 5) != 0 || q[5] < '0' || q[5] > '9' ||
	    q[6] != '.' || q[7] < '0' || q[7] > '9')
		return -400;
	if (q[5] != '1' || q[7] > '1')
		return -505;
	r->minor = (uint8_t)(q[7] - '0');
	return 0;
}

static int parse_content_length(const char *v, size_t n, struct http_request *r,
				struct fields *f)
{
	int64_t x = 0;

	if (n == 0 || n > 18)
		return -400;
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -400;
		x = x * 10 + (v[i] - '0');
	}
	if (f->cl_seen && x != r->content_length)
		return -400;
	f->cl_seen = true;
	r->content_length = x;
	return 0;
}

static void parse_connection(const char *v, size_t n, struct fields *f)
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
			f->conn_close = true;
		else if (value_eq(ts, tn, "keep-alive", 10))
			f->conn_keep = true;
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
 * One field line p[0..n), line end excluded.  Dispatches on the name's length
 * and first letter so that a field we ignore costs one switch.
 */
static int parse_field(const char *p, size_t n, struct http_request *r, struct fields *f)
{
	const char *e = p + n, *q = p;

	while (q < e && (ctab[(uint8_t)*q] & C_TCHAR))
		q++;
	/* an empty name covers obs-fold; anything but ':' after it covers
	 * whitespace before the colon */
	if (q == p || q == e || *q != ':')
		return -400;
	size_t nlen = (size_t)(q - p);

	const char *v = q + 1, *ve = e;
	while (v < ve && is_ows(*v))
		v++;
	while (ve > v && is_ows(ve[-1]))
		ve--;
	for (const char *x = v; x < ve; x++)
		if (!(ctab[(uint8_t)*x] & C_VALUE))
			return -400;
	size_t vn = (size_t)(ve - v);

	switch (nlen) {
	case 6:
		if (lower_eq(p, "expect", 6)) {
			if (value_eq(v, vn, "100-continue", 12))
				f->expect_100 = true;
			else
				f->expect_bad = true;
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
		if (lower_eq(p, "content-type", 12))
			keep_first(&r->content_type, v, vn);
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
		}
		break;
	case 14:
		if (lower_eq(p, "content-length", 14))
			return parse_content_length(v, vn, r, f);
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
			if (f->te_seen || !value_eq(v, vn, "chunked", 7))
				f->te_bad = true;
			f->te_seen = true;
		}
		break;
	}
	return 0;
}

/* Checks across fields, once all are seen; fills the derived flags. */
static int finish_fields(struct http_request *r, const struct fields *f)
{
	/* both framings, or chunked in HTTP/1.0 (RFC 9112 6.1), are a
	 * smuggling shape: refuse before looking at the coding itself */
	if (f->te_seen && (f->cl_seen || r->minor == 0))
		return -400;
	if (f->te_bad)
		return -501;
	if (f->expect_bad)
		return -417;
	r->chunked = f->te_seen;
	/* RFC 9110 10.1.1: ignore 100-continue from an HTTP/1.0 client */
	r->expect_continue = f->expect_100 && r->minor == 1;
	if (f->conn_close)
		r->keep_alive = false;
	else if (f->conn_keep)
		r->keep_alive = true;
	else
		r->keep_alive = r->minor == 1;
	return 0;
}

/*
 * Parses buf[0..len) from its first byte; the request line starts at
 * `start` (after a skipped empty line).  Returns the head length, HTTP_AGAIN
 * or -status; fills *r only in part on failure.
 */
static int parse_head(const char *buf, size_t len, size_t start, const struct limits *l,
		      struct http_request *r)
{
	bool complete;
	size_t rl = request_line_len(buf, len, start, l, &complete);

	if (rl > l->line)
		return -414;
	if (!complete)
		return head_incomplete(buf, len, start, 0, l);

	memset(r, 0, sizeof(*r));
	r->content_length = -1;
	int err = parse_request_line(buf + start, rl, r);

	const char *line = buf + start + rl;
	line += *line == '\r' ? 2 : 1;
	const char *end = buf + len, *limit = buf + min_sz(len, l->head);
	struct fields f = { 0 };
	size_t nfields = 0;

	for (;;) {
		if (line >= end)
			return len > l->head ? -431 : HTTP_AGAIN;
		if (*line == '\n') {
			line += 1;
			break;
		}
		if (*line == '\r') {
			if (line + 1 >= end)
				return len > l->head ? -431 : HTTP_AGAIN;
			if (line[1] == '\n') {
				line += 2;
				break;
			}
		}
		const char *lf = line < limit ? memchr(line, '\n', (size_t)(limit - line)) : NULL;
		if (!lf)
			return len > l->head ? -431 : HTTP_AGAIN;
		if (!err) {
			size_t n = (size_t)(lf - line);
			if (n && lf[-1] == '\r')
				n--;
			if (++nfields > l->fields)
				err = -431;
			else
				err = parse_field(line, n, r, &f);
		}
		line = lf + 1;
	}

	size_t head_len = (size_t)(line - buf);
	if (head_len > l->head)
		return -431;
	if (err)
		return err;
	err = finish_fields(r, &f);
	if (err)
		return err;
	r->head_len = (uint32_t)head_len;
	return (int)head_len;
}

int http_parse_request(const char *buf, size_t len, size_t *scanned,
		       const struct http_limits *lim, struct http_request *req)
{
	struct limits l;
	struct http_request r;
	size_t start = 0, s = *scanned;
	int rc;

	if (len == 0)
		return HTTP_AGAIN;
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
	head_limits(lim, &l);
	rc = method_early(buf, len, start, &l);
	if (rc)
		return rc;

	if (s > start) {
		size_t limit = min_sz(len, l.head);
		if (s >= limit || !find_end(buf, s, limit)) {
			rc = head_incomplete(buf, len, start, s, &l);
			if (rc == HTTP_AGAIN)
				*scanned = len;
			return rc;
		}
	}

	rc = parse_head(buf, len, start, &l, &r);
	if (rc == HTTP_AGAIN)
		*scanned = len;
	else if (rc > 0)
		*req = r;
	return rc;
}
