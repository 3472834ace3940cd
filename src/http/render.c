/*
 * render.c - struct reply to HTTP/1.1 response bytes (http_render.h).
 *
 * This is on the path of every hit, so a response is written through a
 * cursor into room reserved once (nothing half-appended on -ENOMEM), and
 * fixed pieces are `struct seg`: text padded to SEG bytes and copied whole,
 * after which the cursor advances by the real length.  A copy of a
 * compile-time size is a few vector moves; a copy of a run-time length would
 * be a call into memcpy per piece.  The reservation includes SEG bytes of
 * slack for that over-copy.
 *
 * A hit, piece by piece:
 *
 *   HTTP/1.1 200 OK\r\nX-Cache: HIT\r\nContent-Length:     head_seg (status x cache)
 *   <n>\r\nContent-Type: <type>\r\nETag: "<etag>"\r\n
 *   Content-Encoding: br\r\n                              coding_seg
 *   Vary: Accept-Encoding\r\n
 *   Cache-Control: max-age=<n>\r\n
 *   \r\n | Connection: keep-alive\r\n\r\n | Connection: close\r\n\r\n
 *   <value bytes>
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "ringcache/decimal.h"
#include "ringcache/http_render.h"

#define SEG 64

struct seg {
	char s[SEG];
	uint32_t len;
};

#define SEG_INIT(str) { str, sizeof(str) - 1 }

static inline char *put_seg(char *p, const struct seg *s)
{
	memcpy(p, s->s, SEG);
	return p + s->len;
}

/* Shorter pieces in shorter copies: a text longer than its array does not
 * compile (-Werror). */
struct seg16 {
	char s[16];
	uint32_t len;
};

struct seg32 {
	char s[32];
	uint32_t len;
};

static inline char *put_seg16(char *p, const struct seg16 *s)
{
	memcpy(p, s->s, 16);
	return p + s->len;
}

static inline char *put_seg32(char *p, const struct seg32 *s)
{
	memcpy(p, s->s, 32);
	return p + s->len;
}

static inline char *put(char *p, const void *src, size_t n)
{
	memcpy(p, src, n);
	return p + n;
}

struct status_text {
	int status;
	const char *text;
};

static const struct status_text status_texts[] = {
	{ 100, "Continue" },
	{ 200, "OK" },
	{ 201, "Created" },
	{ 204, "No Content" },
	{ 304, "Not Modified" },
	{ 400, "Bad Request" },
	{ 401, "Unauthorized" },
	{ 403, "Forbidden" },
	{ 404, "Not Found" },
	{ 405, "Method Not Allowed" },
	{ 406, "Not Acceptable" },
	{ 408, "Request Timeout" },
	{ 409, "Conflict" },
	{ 411, "Length Required" },
	{ 413, "Content Too Large" },
	{ 414, "URI Too Long" },
	{ 415, "Unsupported Media Type" },
	{ 417, "Expectation Failed" },
	{ 429, "Too Many Requests" },
	{ 431, "Request Header Fields Too Large" },
	{ 500, "Internal Server Error" },
	{ 501, "Not Implemented" },
	{ 502, "Bad Gateway" },
	{ 503, "Service Unavailable" },
	{ 504, "Gateway Timeout" },
	{ 505, "HTTP Version Not Supported" },
	{ 507, "Insufficient Storage" },
};

const char *http_status_text(int status)
{
	for (size_t i = 0; i < sizeof(status_texts) / sizeof(status_texts[0]); i++)
		if (status_texts[i].status == status)
			return status_texts[i].text;
	return "Unknown";
}

const char *reply_l2_name(enum reply_l2 l2)
{
	switch (l2) {
	case REPLY_L2_NONE: return NULL;
	case REPLY_L2_OK: return "ok";
	case REPLY_L2_MISS: return "miss";
	case REPLY_L2_TIMEOUT: return "timeout";
	case REPLY_L2_SKIPPED: return "skipped";
	case REPLY_L2_BAD_DATA: return "bad-data";
	case REPLY_L2_UNAVAILABLE: return "unavailable";
	case REPLY_L2_ERROR: break;
	}
	return "error";
}

/* The status lines of a /cache/ answer, with their X-Cache line, up to the
 * Content-Length value.  [status][cache]; other statuses are spelled out. */
enum { HS_200, HS_304, HS_404, HS_N };

/* X-Cache values by enum reply_cache; an unknown one renders as none */
#define CACHE_N (REPLY_CACHE_STALE + 1)
static inline unsigned cache_idx(const struct reply *r)
{
	return r->cache < CACHE_N ? r->cache : REPLY_CACHE_NONE;
}

static const struct seg head_seg[HS_N][CACHE_N] = {
	[HS_200] = {
		SEG_INIT("HTTP/1.1 200 OK\r\nContent-Length: "),
		SEG_INIT("HTTP/1.1 200 OK\r\nX-Cache: HIT\r\nContent-Length: "),
		SEG_INIT("HTTP/1.1 200 OK\r\nX-Cache: HIT-L2\r\nContent-Length: "),
		SEG_INIT("HTTP/1.1 200 OK\r\nX-Cache: MISS\r\nContent-Length: "),
		SEG_INIT("HTTP/1.1 200 OK\r\nX-Cache: HIT-FILL\r\nContent-Length: "),
		SEG_INIT("HTTP/1.1 200 OK\r\nX-Cache: STALE\r\nContent-Length: "),
	},
	[HS_304] = {
		SEG_INIT("HTTP/1.1 304 Not Modified\r\nContent-Length: "),
		SEG_INIT("HTTP/1.1 304 Not Modified\r\nX-Cache: HIT\r\nContent-Length: "),
		SEG_INIT("HTTP/1.1 304 Not Modified\r\nX-Cache: HIT-L2\r\nContent-Length: "),
		SEG_INIT("HTTP/1.1 304 Not Modified\r\nX-Cache: MISS\r\nContent-Length: "),
		SEG_INIT("HTTP/1.1 304 Not Modified\r\nX-Cache: HIT-FILL\r\nContent-Length: "),
		SEG_INIT("HTTP/1.1 304 Not Modified\r\nX-Cache: STALE\r\nContent-Length: "),
	},
	[HS_404] = {
		SEG_INIT("HTTP/1.1 404 Not Found\r\nContent-Length: "),
		SEG_INIT("HTTP/1.1 404 Not Found\r\nX-Cache: HIT\r\nContent-Length: "),
		SEG_INIT("HTTP/1.1 404 Not Found\r\nX-Cache: HIT-L2\r\nContent-Length: "),
		SEG_INIT("HTTP/1.1 404 Not Found\r\nX-Cache: MISS\r\nContent-Length: "),
		SEG_INIT("HTTP/1.1 404 Not Found\r\nX-Cache: HIT-FILL\r\nContent-Length: "),
		SEG_INIT("HTTP/1.1 404 Not Found\r\nX-Cache: STALE\r\nContent-Length: "),
	},
};

static const struct seg cache_seg[CACHE_N] = {
	SEG_INIT(""),
	SEG_INIT("X-Cache: HIT\r\n"),
	SEG_INIT("X-Cache: HIT-L2\r\n"),
	SEG_INIT("X-Cache: MISS\r\n"),
	SEG_INIT("X-Cache: HIT-FILL\r\n"),
	SEG_INIT("X-Cache: STALE\r\n"),
};

static const struct seg coding_vary_seg[3][2] = {
	{ SEG_INIT(""), SEG_INIT("Vary: Accept-Encoding\r\n") },
	{ SEG_INIT("Content-Encoding: br\r\n"),
	  SEG_INIT("Content-Encoding: br\r\nVary: Accept-Encoding\r\n") },
	{ SEG_INIT("Content-Encoding: gzip\r\n"),
	  SEG_INIT("Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n") },
};

/* The end of the header block, by conn_tail(). */
static const struct seg32 conn_seg[3] = {
	SEG_INIT("\r\n"),
	SEG_INIT("Connection: keep-alive\r\n\r\n"),
	SEG_INIT("Connection: close\r\n\r\n"),
};

static const struct seg length_seg = SEG_INIT("Content-Length: ");
static const struct seg16 type_seg = SEG_INIT("\r\nContent-Type: ");
static const struct seg16 type_seg_bare = SEG_INIT("Content-Type: ");
static const struct seg etag_seg = SEG_INIT("ETag: ");
static const struct seg16 etag_crlf_seg = SEG_INIT("\r\nETag: ");
static const struct seg32 max_age_seg = SEG_INIT("Cache-Control: max-age=");
static const struct seg age_seg = SEG_INIT("Age: ");
static const struct seg l2_seg = SEG_INIT("X-L2: ");
static const struct seg lease_seg = SEG_INIT("X-Cache-Lease: ");
static const struct seg text_type = SEG_INIT("text/plain; charset=utf-8");

/* "Date: ...\r\n", copied in one piece of DATE_COPY bytes from its 64-byte
 * line (http_date_line). */
#define DATE_COPY 48
_Static_assert(DATE_COPY >= HTTP_DATE_LEN && DATE_COPY <= HTTP_DATE_LINE, "Date copy size");
static inline char *put_date(char *p, const struct http_answer_to *to)
{
	if (!to->date)
		return p;
	memcpy(p, to->date, DATE_COPY);
	return p + HTTP_DATE_LEN;   /* an IMF-fixdate has one length */
}

static char *put2(char *p, unsigned v)
{
	*p++ = (char)('0' + v / 10 % 10);
	*p++ = (char)('0' + v % 10);
	return p;
}

void http_date_line(char buf[HTTP_DATE_LINE], int64_t t)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t tt = (time_t)t;
	struct tm tm;
	char *p = buf;

	memset(buf, 0, HTTP_DATE_LINE);
	if (!gmtime_r(&tt, &tm) || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0)
		tm = (struct tm){ .tm_mday = 1, .tm_year = 70, .tm_wday = 4 };  /* 4 digits only */
	unsigned year = (unsigned)(tm.tm_year + 1900);
	p = put(p, "Date: ", 6);
	p = put(p, days[tm.tm_wday % 7], 3);
	p = put(p, ", ", 2);
	p = put2(p, (unsigned)tm.tm_mday);
	*p++ = ' ';
	p = put(p, months[tm.tm_mon % 12], 3);
	*p++ = ' ';
	p = put2(p, year / 100);
	p = put2(p, year % 100);
	*p++ = ' ';
	p = put2(p, (unsigned)tm.tm_hour);
	*p++ = ':';
	p = put2(p, (unsigned)tm.tm_min);
	*p++ = ':';
	p = put2(p, (unsigned)tm.tm_sec);
	put(p, " GMT\r\n", 6);
}

static inline unsigned conn_tail(const struct reply *r, const struct http_answer_to *to)
{
	if (http_render_closes(r, to))
		return 2;
	return to->minor == 0;
}

/* Every header but the variable ones, the over-copy slack included. */
#define HEAD_ROOM 640

/*
 * A hit: 200 or 304 with a representation, its type copied whole, and none
 * of the rarer headers.  The same bytes the general path below writes, in
 * fewer steps: this is most of what a busy cache renders.
 */
static inline bool is_plain_hit(const struct reply *r)
{
	return (r->status == 200 || r->status == 304) && r->type_padded && r->type_len <= SEG &&
	       r->etag_len && !r->headers && !r->l2 && !r->lease_len && !r->has_age && r->coding <= REPLY_GZIP;
}

/* inlined into both entry points: a frame less on the path of most answers */
static inline __attribute__((always_inline)) int
render_hit(struct buf *out, const struct reply *r, const struct http_answer_to *to,
	   struct http_body *split)
{
	bool nm = r->status == 304;
	size_t body = nm || to->head ? 0 : r->body_len;
	size_t room = split ? 0 : body;

	if (body > SIZE_MAX / 4)
		return -ENOMEM;
	if (out->cap - out->len < HEAD_ROOM + room && buf_reserve(out, HEAD_ROOM + room) != 0)
		return -ENOMEM;
	char *p = out->data + out->len;
	p = put_seg(p, &head_seg[nm ? HS_304 : HS_200][cache_idx(r)]);
	p = decimal_put_u64(p, r->body_len);
	if (!nm) {
		p = put_seg16(p, &type_seg);
		memcpy(p, r->type, SEG);
		p += r->type_len;
	}
	p = put_seg16(p, &etag_crlf_seg);
	memcpy(p, r->etag, REPLY_ETAG_MAX);
	p += r->etag_len;
	p = put(p, "\r\n", 2);
	unsigned coding = nm ? 0 : r->coding;
	if (coding | r->vary)
		p = put_seg(p, &coding_vary_seg[coding][r->vary]);
	if (r->has_max_age) {
		p = put_seg32(p, &max_age_seg);
		p = decimal_put_u64(p, r->max_age);
		p = put(p, "\r\n", 2);
	}
	p = put_date(p, to);
	p = put_seg32(p, &conn_seg[conn_tail(r, to)]);
	if (split) {
		split->p = body ? r->body : NULL;
		split->len = body;
	} else if (body) {
		p = put(p, r->body, body);
	}
	out->len = (size_t)(p - out->data);
	return 0;
}

/* Any reply but a plain hit (render_hit). */
static int render_any(struct buf *out, const struct reply *r, const struct http_answer_to *to,
		      struct http_body *split)
{
	unsigned st = r->status;
	bool informational = st < 200;
	bool length = !informational && st != 204;
	bool body = length && st != 304 && !to->head && r->body_len;
	const char *type = r->type;
	size_t type_len = r->type_len;
	bool padded = r->type_padded;
	size_t hdr_len = r->headers ? strlen(r->headers) : 0;
	const char *reason = NULL;
	size_t reason_len = 0;
	int hs = st == 200 ? HS_200 : st == 304 ? HS_304 : st == 404 ? HS_404 : -1;

	if (!type && r->body_len && length && st != 304) {
		type = text_type.s;
		type_len = text_type.len;
		padded = true;
	}
	if (st == 304)
		type = NULL;
	if (hs < 0) {
		if (st < 100 || st > 999)
			return -EINVAL;
		reason = http_status_text((int)st);
		reason_len = strlen(reason);
	}
	if ((body && r->body_len > SIZE_MAX / 4) || type_len > SIZE_MAX / 4 ||
	    hdr_len > SIZE_MAX / 4)
		return -ENOMEM; /* no buffer holds it; and the sum below cannot wrap */
	size_t need = HEAD_ROOM + reason_len + type_len + hdr_len +
		      (r->lease_len ? SEG + r->lease_len + 2 : 0) +
		      (body && !split ? r->body_len : 0);
	if (out->cap - out->len < need && buf_reserve(out, need) != 0)
		return -ENOMEM;

	char *p = out->data + out->len;
	if (hs >= 0) {
		p = put_seg(p, &head_seg[hs][cache_idx(r)]);
	} else {
		p = put(p, "HTTP/1.1 ", 9);
		p = decimal_put_u64(p, st);
		*p++ = ' ';
		p = put(p, reason, reason_len);
		p = put(p, "\r\n", 2);
		p = put_seg(p, &cache_seg[cache_idx(r)]);
		if (length)
			p = put_seg(p, &length_seg);
	}
	if (length)
		p = decimal_put_u64(p, r->body_len);
	if (type) {
		/* a padded type is copied whole, like a seg: no call into memcpy */
		p = put_seg16(p, length ? &type_seg : &type_seg_bare);
		if (padded && type_len <= SEG) {
			memcpy(p, type, SEG);
			p += type_len;
		} else {
			p = put(p, type, type_len);
		}
		p = put(p, "\r\n", 2);
	} else if (length) {
		p = put(p, "\r\n", 2);
	}
	if (r->etag_len) {
		p = put_seg(p, &etag_seg);
		memcpy(p, r->etag, REPLY_ETAG_MAX);
		p += r->etag_len;
		p = put(p, "\r\n", 2);
	}
	/* Content-Encoding and Vary, in one piece */
	unsigned coding = st != 304 && r->coding <= REPLY_GZIP ? r->coding : 0;
	if (coding | r->vary)
		p = put_seg(p, &coding_vary_seg[coding][r->vary]);
	if (r->has_max_age) {
		p = put_seg32(p, &max_age_seg);
		p = decimal_put_u64(p, r->max_age);
		p = put(p, "\r\n", 2);
	}
	if (r->has_age) {
		p = put_seg(p, &age_seg);
		p = decimal_put_u64(p, r->age);
		p = put(p, "\r\n", 2);
	}
	if (hdr_len)
		p = put(p, r->headers, hdr_len);
	if (r->lease_len) {
		p = put_seg(p, &lease_seg);
		p = put(p, r->lease, r->lease_len);
		p = put(p, "\r\n", 2);
	}
	if (r->l2) {
		const char *name = reply_l2_name((enum reply_l2)r->l2);
		p = put_seg(p, &l2_seg);
		p = put(p, name, strlen(name));
		p = put(p, "\r\n", 2);
	}
	if (informational) {
		p = put(p, "\r\n", 2);
	} else {
		p = put_date(p, to);
		p = put_seg32(p, &conn_seg[conn_tail(r, to)]);
	}
	if (split) {
		split->p = body ? r->body : NULL;
		split->len = body ? r->body_len : 0;
	} else if (body) {
		p = put(p, r->body, r->body_len);
	}
	out->len = (size_t)(p - out->data);
	return 0;
}

/* The hit's own path is chosen first, so that it does not pay for the
 * general one's frame. */
static inline int render(struct buf *out, const struct reply *r, const struct http_answer_to *to,
			 struct http_body *split)
{
	if (is_plain_hit(r))
		return render_hit(out, r, to, split);
	return render_any(out, r, to, split);
}

int http_render(struct buf *out, const struct reply *r, const struct http_answer_to *to)
{
	return render(out, r, to, NULL);
}

int http_render_head(struct buf *out, const struct reply *r, const struct http_answer_to *to,
		     struct http_body *body)
{
	return render(out, r, to, body);
}
