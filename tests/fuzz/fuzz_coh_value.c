/*
 * fuzz_coh_value.c - libFuzzer target for the stored-value format read from
 * Redis: coh_value_decode() and coh_ctype_valid().
 *
 * Properties (abort on failure):
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
	size_t co = 7, cl = 7, vo = 7;
	bool magic = size >= COH_MAGIC_LEN && !memcmp(s, COH_VALUE_MAGIC, COH_MAGIC_LEN);
	int rc = coh_value_decode(s, size, &co, &cl, &vo);

	FUZZ_ASSERT(rc == 0 || rc == 1 || rc == -EINVAL);
	if (rc == 1) {
		FUZZ_ASSERT(!magic && co == 0 && cl == 0 && vo == 0);
	} else if (rc == -EINVAL) {
		FUZZ_ASSERT(magic);
	} else {
		char hdr[COH_MAGIC_LEN + COH_CTYPE_MAX + 1];
		FUZZ_ASSERT(magic && co == COH_MAGIC_LEN && cl <= COH_CTYPE_MAX);
		FUZZ_ASSERT(vo == co + cl + 1 && vo <= size && s[vo - 1] == '\n');
		FUZZ_ASSERT(coh_ctype_valid(s + co, cl));
		FUZZ_ASSERT(!memchr(s + co, '\n', cl));
		size_t hn = coh_value_header(hdr, s + co, cl);
		FUZZ_ASSERT(hn == vo && !memcmp(hdr, s, hn));
	}
	FUZZ_ASSERT(coh_ctype_valid(s, size) == l1_ctype_ok((const unsigned char *)s, size));
	free(s);
	return 0;
}
