/*
 * fuzz_coh_registry.c - libFuzzer target for the registry values' JSON:
 * coh_json_object_valid(), which decides whether a value read from the
 * registry hash may be passed on in the COH_CLUSTER listing, and
 * coh_json_str(), which writes our own registry value.  (The RESP replies
 * of HGETALL and HKEYS are fuzzed through their handlers in
 * fuzz_coh_reply.c.)
 *
 * The first byte picks the mode, the rest is the input.  Properties (abort
 * on failure):
 *  - a valid object starts with '{' after whitespace, stays valid as the
 *    value of a member of another object and with whitespace around it, and
 *    cut short by one byte it is no longer valid;
 *  - coh_json_str() of any bytes, as a member's name and value, makes a
 *    valid object, and leaves plain printable ASCII as it was.
 * tests/fuzz/replay.c runs corpus/coh-registry through it.
 */
#include "coherence/format.h"
#include "fuzz.h"
#include "ringcache/buf.h"

static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool valid(const struct buf *b)
{
	char *s = fuzz_copy(b->data, b->len);
	bool ok = coh_json_object_valid(s, b->len);
	free(s);
	return ok;
}

static void append(struct buf *b, const void *p, size_t n)
{
	FUZZ_ASSERT(buf_append(b, p, n) == 0);
}

/* Deepest nesting of brackets outside strings in valid JSON text. */
static int depth(const char *s, size_t n)
{
	int d = 0, max = 0;
	bool str = false;

	for (size_t i = 0; i < n; i++) {
		if (str) {
			if (s[i] == '\\')
				i++;
			else if (s[i] == '"')
				str = false;
		} else if (s[i] == '"') {
			str = true;
		} else if (s[i] == '{' || s[i] == '[') {
			if (++d > max)
				max = d;
		} else if (s[i] == '}' || s[i] == ']') {
			d--;
		}
	}
	return max;
}

static void check_object(const char *s, size_t n)
{
	struct buf b = { 0 };

	if (!coh_json_object_valid(s, n))
		return;
	size_t i = 0;
	while (i < n && is_ws(s[i]))
		i++;
	FUZZ_ASSERT(i < n && s[i] == '{');
	int d = depth(s, n);
	FUZZ_ASSERT(d >= 1 && d <= 16);
	append(&b, "{\"v\":", 5);
	append(&b, s, n);
	append(&b, "}", 1);
	FUZZ_ASSERT(valid(&b) == (d < 16));
	b.len = 0;
	append(&b, " \n", 2);
	append(&b, s, n);
	append(&b, "\t\r", 2);
	FUZZ_ASSERT(valid(&b));
	/* the last '}' (whitespace after it aside) is needed */
	size_t end = n;
	while (end && is_ws(s[end - 1]))
		end--;
	FUZZ_ASSERT(end && s[end - 1] == '}');
	FUZZ_ASSERT(!coh_json_object_valid(s, end - 1));
	buf_deinit(&b);
}

static void check_str(const char *s, size_t n)
{
	struct buf lit = { 0 }, b = { 0 };

	FUZZ_ASSERT(coh_json_str(&lit, s, n) == 0);
	append(&b, "{", 1);
	append(&b, lit.data, lit.len);
	append(&b, ":", 1);
	append(&b, lit.data, lit.len);
	append(&b, "}", 1);
	FUZZ_ASSERT(valid(&b));
	bool plain = true;
	for (size_t i = 0; i < n; i++)
		plain &= s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\';
	if (plain)
		FUZZ_ASSERT(lit.len == n + 2 && !memcmp(lit.data + 1, s, n));
	buf_deinit(&lit);
	buf_deinit(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	char *s = fuzz_copy(data + 1, size - 1);
	if (data[0] & 1)
		check_str(s, size - 1);
	else
		check_object(s, size - 1);
	free(s);
	return 0;
}
