/*
 * negotiate.c - small, forgiving parsers for the header fields a GET or PUT
 * is negotiated by.  They run on the hot path only when the client sends the
 * field, and an odd field must never cost the client its answer: a member
 * that does not parse is skipped, never turned into a 400.
 */
#include <string.h>

#include "cache/negotiate.h"

#define Q_UNSET (-1)
#define Q_MAX 1000

static inline bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

static const char *skip_ows(const char *p, const char *end)
{
	while (p < end && is_ows(*p))
		p++;
	return p;
}

static bool token_eq(const char *p, size_t n, const char *lit)
{
	size_t i;
	for (i = 0; i < n && lit[i]; i++) {
		char c = p[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c + 32);
		if (c != lit[i])
			return false;
	}
	return i == n && lit[i] == '\0';
}

/* qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ), in
 * thousandths; -1 if malformed. */
static int parse_qvalue(const char *p, const char *end)
{
	if (p == end || (*p != '0' && *p != '1'))
		return -1;
	int q = (*p - '0') * Q_MAX, scale = 100;
	p++;
	if (p == end)
		return q;
	if (*p != '.')
		return -1;
	p++;
	for (int i = 0; p < end; i++, p++) {
		if (i == 3 || *p < '0' || *p > '9')
			return -1;
		q += (*p - '0') * scale;
		scale /= 10;
	}
	return q > Q_MAX ? -1 : q;
}

/*
 * Parses the parameters after a coding, p at the first ';' or at the end of
 * the member.  Returns the q (default Q_MAX) or -1 for a malformed q.
 */
static int member_q(const char *p, const char *end)
{
	int q = Q_MAX;
	while (p < end) {
		if (*p != ';')
			return -1;
		p = skip_ows(p + 1, end);
		const char *name = p;
		while (p < end && *p != '=' && *p != ';' && !is_ows(*p))
			p++;
		size_t name_len = (size_t)(p - name);
		const char *val = p, *val_end = p;
		if (p < end && *p == '=') {
			val = ++p;
			while (p < end && *p != ';' && !is_ows(*p))
				p++;
			val_end = p;
		}
		p = skip_ows(p, end);
		if (token_eq(name, name_len, "q")) {
			q = parse_qvalue(val, val_end);
			if (q < 0)
				return -1;
		}
	}
	return q;
}

/* Which q slot a coding token names: 0..2 (a negotiate_coding), 3 for "*",
 * -1 for anything else.  Tokens are compared case-insensitively by OR-ing
 * 0x20 into each byte, which maps no other byte allowed in a token onto a
 * lowercase letter or '-'. */
#define SLOT_STAR 3

static inline uint32_t lower4(const char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v | 0x20202020u;
}

static int coding_slot(const char *t, size_t n)
{
	uint32_t gzip;
	memcpy(&gzip, "gzip", 4);
	switch (n) {
	case 1:
		return *t == '*' ? SLOT_STAR : -1;
	case 2:
		return (t[0] | 0x20) == 'b' && (t[1] | 0x20) == 'r' ? NEGOTIATE_BR : -1;
	case 4:
		return lower4(t) == gzip ? NEGOTIATE_GZIP : -1;
	case 6:
		return (t[0] | 0x20) == 'x' && t[1] == '-' && lower4(t + 2) == gzip ?
			       NEGOTIATE_GZIP : -1;
	case 8:
		return token_eq(t, n, "identity") ? NEGOTIATE_IDENTITY : -1;
	default:
		return -1;
	}
}

/* Bytes that end a coding token: ',' ';' SP HTAB. */
static const uint8_t token_end[256] = { [','] = 1, [';'] = 1, [' '] = 1, ['\t'] = 1 };

void negotiate_weigh(const char *s, size_t n, struct negotiate_weights *w)
{
	int q[4] = { Q_UNSET, Q_UNSET, Q_UNSET, Q_UNSET };
	const char *p = s, *end = s + n;

	while (p < end) {
		while (p < end && (is_ows(*p) || *p == ','))
			p++;
		const char *t = p;
		while (p < end && !token_end[(uint8_t)*p])
			p++;
		int slot = coding_slot(t, (size_t)(p - t));
		p = skip_ows(p, end);
		int mq = Q_MAX;
		if (p < end && *p != ',') {
			/* parameters, or junk that makes the member malformed */
			const char *m_end = memchr(p, ',', (size_t)(end - p));
			if (!m_end)
				m_end = end;
			const char *pe = m_end;
			while (pe > p && is_ows(pe[-1]))
				pe--;
			mq = member_q(p, pe);
			p = m_end;
		}
		if (slot >= 0 && mq >= 0 && q[slot] == Q_UNSET)
			q[slot] = mq;
	}

	int q_star = q[SLOT_STAR];
	for (int c = 0; c < 3; c++) {
		if (q[c] == Q_UNSET)
			q[c] = q_star != Q_UNSET ? q_star : (c == NEGOTIATE_IDENTITY ? 1 : 0);
		w->q[c] = (int16_t)q[c];
	}
}

int negotiate_pick(const struct negotiate_weights *w, unsigned avail)
{
	/* ties: br, then gzip, then identity */
	int best = NEGOTIATE_NONE, best_q = 0;
	if ((avail & (1u << NEGOTIATE_BR)) && w->q[NEGOTIATE_BR] > best_q) {
		best = NEGOTIATE_BR;
		best_q = w->q[NEGOTIATE_BR];
	}
	if ((avail & (1u << NEGOTIATE_GZIP)) && w->q[NEGOTIATE_GZIP] > best_q) {
		best = NEGOTIATE_GZIP;
		best_q = w->q[NEGOTIATE_GZIP];
	}
	if (w->q[NEGOTIATE_IDENTITY] > best_q)
		best = NEGOTIATE_IDENTITY;
	return best;
}

int negotiate_encoding(const char *s, size_t n, unsigned avail)
{
	struct negotiate_weights w;

	/* Without parameters every listed coding has q=1 and identity can only
	 * be excluded by a q=0: nothing to parse when identity is all we have. */
	if (n == 0 || (avail == 1u << NEGOTIATE_IDENTITY && !memchr(s, ';', n)))
		return NEGOTIATE_IDENTITY;
	negotiate_weigh(s, n, &w);
	return negotiate_pick(&w, avail);
}

/* The opaque-tag of an entity-tag without its W/ prefix. */
static void strip_weak(const char **p, size_t *n)
{
	if (*n >= 2 && (*p)[0] == 'W' && (*p)[1] == '/') {
		*p += 2;
		*n -= 2;
	}
}

bool negotiate_etag_match(const char *s, size_t n, const char *etag, size_t elen)
{
	const char *p = s, *end = s + n;

	strip_weak(&etag, &elen);
	while (p < end) {
		p = skip_ows(p, end);
		if (p == end)
			break;
		if (*p == ',') {
			p++;
			continue;
		}
		if (*p == '*') {
			const char *q = skip_ows(p + 1, end);
			if (q == end || *q == ',')
				return true;
		}
		const char *tag = p;
		if (end - p >= 2 && p[0] == 'W' && p[1] == '/')
			p += 2;
		if (p < end && *p == '"') {
			const char *close = memchr(p + 1, '"', (size_t)(end - p - 1));
			if (close) {
				const char *q = skip_ows(close + 1, end);
				if (q == end || *q == ',') {
					const char *opaque = tag;
					size_t olen = (size_t)(close + 1 - tag);
					strip_weak(&opaque, &olen);
					if (olen == elen && memcmp(opaque, etag, elen) == 0)
						return true;
					p = q;
					continue;
				}
			}
		}
		/* Malformed member: resume after the next comma. */
		const char *comma = memchr(p, ',', (size_t)(end - p));
		p = comma ? comma + 1 : end;
	}
	return false;
}

int negotiate_cc_secs(const char *s, size_t n, const char *directive, uint32_t *secs)
{
	const char *p = s, *end = s + n;
	bool bare = false;

	while (p < end) {
		const char *m = skip_ows(p, end);
		const char *name = m;
		while (m < end && *m != '=' && *m != ',' && !is_ows(*m))
			m++;
		size_t name_len = (size_t)(m - name);
		m = skip_ows(m, end);
		const char *val = NULL, *val_end = NULL;
		bool unclosed = false;
		if (m < end && *m == '=') {
			m = skip_ows(m + 1, end);
			if (m < end && *m == '"') {
				val = m + 1;
				const char *close = memchr(val, '"', (size_t)(end - val));
				if (close) {
					val_end = close;
					m = close + 1;
				} else {
					unclosed = true;
					val_end = m = end;
				}
			} else {
				val = m;
				while (m < end && *m != ',' && !is_ows(*m))
					m++;
				val_end = m;
			}
		}
		const char *comma = memchr(m, ',', (size_t)(end - m));
		p = comma ? comma + 1 : end;

		if (!token_eq(name, name_len, directive))
			continue;
		if (!val) {
			bare = true;
			continue;
		}
		if (unclosed || val == val_end)
			return -1;
		uint64_t v = 0;
		const char *d;
		for (d = val; d < val_end && *d >= '0' && *d <= '9'; d++) {
			if (v < (1ull << 31))
				v = v * 10 + (uint64_t)(*d - '0');
		}
		if (d != val_end)
			return -1;
		*secs = v > (1ull << 31) ? 1u << 31 : (uint32_t)v;
		return 1;
	}
	return bare ? 2 : 0;
}

int negotiate_max_age(const char *s, size_t n, uint32_t *secs)
{
	return negotiate_cc_secs(s, n, "max-age", secs) == 1;
}
