/*
 * format.c - the byte formats the coherence module reads and writes in Redis.
 * They are the contract between instances (and with applications that read
 * or fill L2 themselves), so they are written down in docs/coherence.md and
 * kept here in one place.
 *
 * Stored value:      "\0RCV1" <content-type> "\n" <value bytes>
 *                or  "\0RCV2" <content-type> "\n" <ext len: u16 LE> <ext> <value bytes>
 *                    (ext: the blob's extension header, src/cache/repr.h:
 *                    stale windows, tags; issue 9)
 * Invalidation:      "\0RCI1" <instance id> "\0" <key bytes>
 *                or  <key bytes>            (a bare key, from anyone)
 *
 * Each magic starts with a NUL byte, which no text an application writes
 * starts with, so: a string that does not start with the magic is a plain
 * value (or a bare key) and is taken whole; one that does is ours and must
 * parse, or it is counted as bad data.  The one thing an application cannot
 * do is store a plain value (or publish a bare key) that itself begins with
 * the 5 magic bytes; it must then use the framed form.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "format.h"
#include "ringcache/buf.h"

/*
 * The rule L1 applies to a PUT's Content-Type (src/cache/exec.c): field
 * content per RFC 9110, so obs-text (0x80-0xFF) is allowed and only the
 * controls other than tab, and DEL, are not.  '\n', which ends the type in
 * the frame, is one of those, so it cannot occur inside.  Accepting less
 * than L1 would make a PUT that L1 stored silently skip Redis.
 */
bool coh_ctype_valid(const char *ctype, size_t n)
{
	if (n > COH_CTYPE_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)ctype[i];
		if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
			return false;
	}
	return true;
}

size_t coh_value_header(char *buf, const char *ctype, size_t ctype_len)
{
	memcpy(buf, COH_VALUE_MAGIC, COH_MAGIC_LEN);
	if (ctype_len)
		memcpy(buf + COH_MAGIC_LEN, ctype, ctype_len);
	buf[COH_MAGIC_LEN + ctype_len] = '\n';
	return COH_MAGIC_LEN + ctype_len + 1;
}

size_t coh_value_header2(char *buf, const char *ctype, size_t ctype_len, const char *ext,
			 size_t ext_len)
{
	size_t n = coh_value_header(buf, ctype, ctype_len);

	memcpy(buf, COH_VALUE_MAGIC2, COH_MAGIC_LEN);
	buf[n++] = (char)(ext_len & 0xff);
	buf[n++] = (char)(ext_len >> 8);
	memcpy(buf + n, ext, ext_len);
	return n + ext_len;
}

int coh_value_decode(const char *s, size_t n, size_t *ctype_off, size_t *ctype_len,
		     size_t *value_off)
{
	size_t ext_off, ext_len;

	return coh_value_decode_ext(s, n, ctype_off, ctype_len, &ext_off, &ext_len, value_off);
}

int coh_value_decode_ext(const char *s, size_t n, size_t *ctype_off, size_t *ctype_len,
			 size_t *ext_off, size_t *ext_len, size_t *value_off)
{
	bool v2 = n >= COH_MAGIC_LEN && memcmp(s, COH_VALUE_MAGIC2, COH_MAGIC_LEN) == 0;

	*ext_off = *ext_len = 0;
	if (!v2 && (n < COH_MAGIC_LEN || memcmp(s, COH_VALUE_MAGIC, COH_MAGIC_LEN) != 0)) {
		*ctype_off = *ctype_len = *value_off = 0;
		return 1;
	}
	size_t limit = n - COH_MAGIC_LEN;
	if (limit > COH_CTYPE_MAX + 1)
		limit = COH_CTYPE_MAX + 1;
	const char *nl = memchr(s + COH_MAGIC_LEN, '\n', limit);
	if (!nl)
		return -EINVAL;
	size_t len = (size_t)(nl - s) - COH_MAGIC_LEN;
	if (!coh_ctype_valid(s + COH_MAGIC_LEN, len))
		return -EINVAL;
	size_t off = COH_MAGIC_LEN + len + 1, elen = 0;
	if (v2) {
		if (n - off < 2)
			return -EINVAL;
		elen = (size_t)(unsigned char)s[off] | (size_t)(unsigned char)s[off + 1] << 8;
		off += 2;
		if (elen == 0 || elen > COH_EXT_MAX || n - off < elen)
			return -EINVAL;
		*ext_off = off;
		*ext_len = elen;
	}
	*ctype_off = COH_MAGIC_LEN;
	*ctype_len = len;
	*value_off = off + elen;
	return 0;
}

int coh_inval_decode(const char *s, size_t n, const char **id, size_t *id_len,
		     const char **key, size_t *key_len)
{
	if (n < COH_MAGIC_LEN || memcmp(s, COH_INVAL_MAGIC, COH_MAGIC_LEN) != 0) {
		if (n < 1 || n > COH_KEY_MAX)
			return -EINVAL;
		*id = NULL;
		*id_len = 0;
		*key = s;
		*key_len = n;
		return 0;
	}
	const char *p = s + COH_MAGIC_LEN;
	const char *nul = memchr(p, '\0', n - COH_MAGIC_LEN);
	if (!nul)
		return -EINVAL;
	size_t klen = n - (size_t)(nul + 1 - s);
	if (klen < 1 || klen > COH_KEY_MAX || (size_t)(nul - p) > COH_INSTANCE_ID_MAX)
		return -EINVAL;
	*id = p;
	*id_len = (size_t)(nul - p);
	*key = nul + 1;
	*key_len = klen;
	return 1;
}

/*
 * Length of the well-formed UTF-8 sequence at s[0..n) (RFC 3629: no
 * overlong forms, no surrogates, nothing past U+10FFFF), or 0.  s[0] is
 * 0x80 or above.
 */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t len;

	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

/* Bytes that are not UTF-8 become U+FFFD, so the literal is valid JSON text
 * (RFC 8259 requires UTF-8) whatever it was given. */
int coh_json_str(struct buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";

	if (buf_append(b, "\"", 1))
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		char esc[6] = { '\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15] };
		size_t seq;
		int r;
		if (ch == '"' || ch == '\\') {
			r = buf_append(b, (char[]){ '\\', (char)ch }, 2);
		} else if (ch < 0x20 || ch == 0x7f) {
			r = buf_append(b, esc, sizeof(esc));
		} else if (ch < 0x80) {
			r = buf_append(b, &s[i], 1);
		} else if ((seq = utf8_seq((const unsigned char *)s + i, n - i))) {
			r = buf_append(b, &s[i], seq);
			i += seq - 1;
		} else {
			r = buf_append(b, "\\ufffd", 6);
		}
		if (r)
			return -ENOMEM;
	}
	return buf_append(b, "\"", 1) ? -ENOMEM : 0;
}

/* --- a JSON check, so a foreign registry entry cannot break /cluster --- */

struct jp {
	const char *p, *end;
	int depth;
};

static void ws(struct jp *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

static bool lit(struct jp *j, const char *w)
{
	size_t n = strlen(w);
	if ((size_t)(j->end - j->p) < n || memcmp(j->p, w, n))
		return false;
	j->p += n;
	return true;
}

static bool jstring(struct jp *j)
{
	if (j->p >= j->end || *j->p != '"')
		return false;
	for (j->p++; j->p < j->end; j->p++) {
		unsigned char ch = (unsigned char)*j->p;
		if (ch == '"') {
			j->p++;
			return true;
		}
		if (ch < 0x20)
			return false;
		if (ch >= 0x80) {
			size_t seq = utf8_seq((const unsigned char *)j->p, (size_t)(j->end - j->p));
			if (!seq)
				return false;
			j->p += seq - 1;
			continue;
		}
		if (ch == '\\') {
			if (++j->p >= j->end)
				return false;
			if (*j->p == 'u') {
				for (int i = 0; i < 4; i++)
					if (++j->p >= j->end || !strchr("0123456789abcdefABCDEF", *j->p) || !*j->p)
						return false;
			} else if (!strchr("\"\\/bfnrt", *j->p) || !*j->p) {
				return false;
			}
		}
	}
	return false;
}

static bool digits(struct jp *j)
{
	const char *s = j->p;
	while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
		j->p++;
	return j->p > s;
}

static bool jnumber(struct jp *j)
{
	if (j->p < j->end && *j->p == '-')
		j->p++;
	/* RFC 8259: no leading zeros ("01" is no number).  /cluster passes a
	 * value on as it is, so it must be JSON to every client's parser. */
	const char *first = j->p;
	if (!digits(j) || (*first == '0' && j->p - first > 1))
		return false;
	if (j->p < j->end && *j->p == '.') {
		j->p++;
		if (!digits(j))
			return false;
	}
	if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
		j->p++;
		if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
			j->p++;
		if (!digits(j))
			return false;
	}
	return true;
}

static bool jvalue(struct jp *j);

static bool jcontainer(struct jp *j, char close, bool object)
{
	if (++j->depth > 16)
		return false;
	j->p++;
	ws(j);
	if (j->p < j->end && *j->p == close) {
		j->p++;
		j->depth--;
		return true;
	}
	for (;;) {
		if (object) {
			if (!jstring(j))
				return false;
			ws(j);
			if (j->p >= j->end || *j->p != ':')
				return false;
			j->p++;
		}
		if (!jvalue(j))
			return false;
		ws(j);
		if (j->p < j->end && *j->p == ',') {
			j->p++;
			ws(j);
			continue;
		}
		if (j->p < j->end && *j->p == close) {
			j->p++;
			j->depth--;
			return true;
		}
		return false;
	}
}

static bool jvalue(struct jp *j)
{
	ws(j);
	if (j->p >= j->end)
		return false;
	switch (*j->p) {
	case '{': return jcontainer(j, '}', true);
	case '[': return jcontainer(j, ']', false);
	case '"': return jstring(j);
	case 't': return lit(j, "true");
	case 'f': return lit(j, "false");
	case 'n': return lit(j, "null");
	default: return jnumber(j);
	}
}

bool coh_json_object_valid(const char *s, size_t n)
{
	struct jp j = { s, s + n, 0 };

	ws(&j);
	if (j.p >= j.end || *j.p != '{' || !jvalue(&j))
		return false;
	ws(&j);
	return j.p == j.end;
}
