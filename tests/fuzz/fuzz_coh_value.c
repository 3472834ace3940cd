/*
 * fuzz_coh_value.c - libFuzzer target for the stored-value format read from
 * Redis: coh_value_decode_ext() (RCV1 and RCV2 frames) and coh_ctype_valid().
 *
 * Properties (abort on failure):
 *  - an RCV2 frame's extension lies inside the input, right after the two
 *    length bytes, is 1..COH_EXT_MAX bytes, and the value follows it;
 *    coh_value_header2() rebuilds the input's head; an RCV1 has none;
 *  - a framed value's content type and value lie inside the input, the type
 *    is at most COH_CTYPE_MAX bytes that coh_ctype_valid() accepts, the '\n'
 *    ends it, and coh_value_header() of that type rebuilds the input's head;
 *  - a plain value (1) is exactly an input that does not start with the
 *    magic, and a corrupt one (-EINVAL) starts with it;
 *  - coh_ctype_valid() of the whole input agrees with L1's rule.
 * tests/fuzz/replay.c runs the saved corpus (corpus/coh-value) through this
 * same function in the normal build.
 */
#include <errno.h>

#include "coherence/format.h"
#include "fuzz.h"

/* L1's Content-Type rule (src/cache/exec.c put_type), written out again
 * here on purpose: the property is that the two codes agree. */
static bool l1_ctype_ok(const unsigned char *s, size_t n)
{
	if (n > 255)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((s[i] < 0x20 && s[i] != '\t') || s[i] == 0x7f)
			return false;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_copy(data, size);
	size_t co = 7, cl = 7, vo = 7, eo = 7, el = 7;
	bool v1 = size >= COH_MAGIC_LEN && !memcmp(s, COH_VALUE_MAGIC, COH_MAGIC_LEN);
	bool v2 = size >= COH_MAGIC_LEN && !memcmp(s, COH_VALUE_MAGIC2, COH_MAGIC_LEN);
	bool magic = v1 || v2;
	int rc = coh_value_decode_ext(s, size, &co, &cl, &eo, &el, &vo);
	size_t co1, cl1, vo1;
	int rc1 = coh_value_decode(s, size, &co1, &cl1, &vo1);

	/* the decoder without the extension agrees on everything else */
	FUZZ_ASSERT(rc1 == rc && (rc != 0 || (co1 == co && cl1 == cl && vo1 == vo)));

	FUZZ_ASSERT(rc == 0 || rc == 1 || rc == -EINVAL);
	if (rc == 1) {
		FUZZ_ASSERT(!magic && co == 0 && cl == 0 && vo == 0 && eo == 0 && el == 0);
	} else if (rc == -EINVAL) {
		FUZZ_ASSERT(magic);
	} else {
		static char hdr[COH_VALUE_HEADER2_MAX];
		FUZZ_ASSERT(magic && co == COH_MAGIC_LEN && cl <= COH_CTYPE_MAX);
		FUZZ_ASSERT(s[co + cl] == '\n');
		FUZZ_ASSERT(coh_ctype_valid(s + co, cl));
		FUZZ_ASSERT(!memchr(s + co, '\n', cl));
		size_t hn;
		if (v2) {
			FUZZ_ASSERT(eo == co + cl + 3 && el >= 1 && el <= COH_EXT_MAX);
			FUZZ_ASSERT(el == ((size_t)(unsigned char)s[eo - 2] |
					   (size_t)(unsigned char)s[eo - 1] << 8));
			FUZZ_ASSERT(vo == eo + el && vo <= size);
			hn = coh_value_header2(hdr, s + co, cl, s + eo, el);
		} else {
			FUZZ_ASSERT(eo == 0 && el == 0 && vo == co + cl + 1 && vo <= size);
			hn = coh_value_header(hdr, s + co, cl);
		}
		FUZZ_ASSERT(hn == vo && !memcmp(hdr, s, hn));
	}
	FUZZ_ASSERT(coh_ctype_valid(s, size) == l1_ctype_ok((const unsigned char *)s, size));
	free(s);
	return 0;
}
