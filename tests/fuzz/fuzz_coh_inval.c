/*
 * fuzz_coh_inval.c - libFuzzer target for invalidation messages read from
 * the subscription: coh_inval_decode().
 *
 * Properties (abort on failure): the id and key lie inside the input; the
 * key is 1..COH_KEY_MAX bytes and the id at most COH_INSTANCE_ID_MAX; a
 * framed message (1) is magic + id + NUL + key, byte for byte, and a bare
 * key (0) is the whole input, which does not start with the magic.
 * tests/fuzz/replay.c runs corpus/coh-inval through it in the normal build.
 */
#include <errno.h>

#include "coherence/format.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_copy(data, size);
	const char *id = NULL, *key = NULL;
	size_t idl = 7, kl = 7;
	bool magic = size >= COH_MAGIC_LEN && !memcmp(s, COH_INVAL_MAGIC, COH_MAGIC_LEN);
	int rc = coh_inval_decode(s, size, &id, &idl, &key, &kl);

	FUZZ_ASSERT(rc == 0 || rc == 1 || rc == -EINVAL);
	if (rc == 0) {
		FUZZ_ASSERT(!magic && id == NULL && idl == 0);
		FUZZ_ASSERT(key == s && kl == size && kl >= 1 && kl <= COH_KEY_MAX);
	} else if (rc == 1) {
		FUZZ_ASSERT(magic && id == s + COH_MAGIC_LEN && idl <= COH_INSTANCE_ID_MAX);
		FUZZ_ASSERT(!memchr(id, '\0', idl) && id[idl] == '\0');
		FUZZ_ASSERT(key == id + idl + 1 && kl >= 1 && kl <= COH_KEY_MAX);
		FUZZ_ASSERT(key + kl == s + size);
	} else if (!magic) {
		FUZZ_ASSERT(size == 0 || size > COH_KEY_MAX);
	}
	free(s);
	return 0;
}
