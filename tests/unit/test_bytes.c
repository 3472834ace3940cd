/*
 * test_bytes.c - bytes.h against memcmp() and memchr(): every length from 0
 * to 40 (each word-load path and the fallbacks on both sides), a difference
 * or the sought byte at every position and with every bit pattern that
 * could fool a word trick (0x00, 0x80, 0xff, neighbours of the byte), in
 * exact-size heap copies so that ASan sees any read outside [p, p + n).
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ringcache/bytes.h"

#define NMAX 40

static uint8_t *copy(const uint8_t *src, size_t n)
{
	uint8_t *p = malloc(n ? n : 1);

	if (n)
		memcpy(p, src, n);
	return p;
}

static const uint8_t tricky[] = { 0x00, 0x01, 0x24, 0x25, 0x26, 0x7f, 0x80, 0xa5, 0xfe, 0xff };

static void test_equal(void)
{
	uint8_t a[NMAX], b[NMAX];
	unsigned wrong = 0;

	for (size_t n = 0; n <= NMAX; n++) {
		for (size_t i = 0; i < n; i++)
			a[i] = (uint8_t)(i * 37 + n);
		uint8_t *x = copy(a, n), *y = copy(a, n);
		wrong += !bytes_equal(x, y, n);
		for (size_t at = 0; at < n; at++) {
			for (size_t t = 0; t < sizeof(tricky); t++) {
				memcpy(b, a, n);
				b[at] = tricky[t];
				uint8_t *z = copy(b, n);
				wrong += bytes_equal(x, z, n) != (memcmp(x, z, n) == 0);
				free(z);
			}
		}
		free(x);
		free(y);
	}
	CHECK_EQ(wrong, 0);
}

static void test_has(void)
{
	uint8_t a[NMAX];
	unsigned wrong = 0;

	for (size_t n = 0; n <= NMAX; n++) {
		for (size_t t = 0; t < sizeof(tricky); t++) {
			uint8_t c = tricky[t];
			/* none of c, then c at each position among tricky neighbours */
			for (size_t i = 0; i < n; i++)
				a[i] = tricky[(i + t + 1) % sizeof(tricky)] == c ? (uint8_t)(c ^ 1)
										 : tricky[(i + t + 1) % sizeof(tricky)];
			uint8_t *x = copy(a, n);
			wrong += bytes_has(x, n, c) != (n && memchr(x, c, n) != NULL);
			free(x);
			for (size_t at = 0; at < n; at++) {
				uint8_t saved = a[at];
				a[at] = c;
				x = copy(a, n);
				wrong += !bytes_has(x, n, c);
				free(x);
				a[at] = saved;
			}
		}
	}
	CHECK_EQ(wrong, 0);
	CHECK(!bytes_has("", 0, 0));
	CHECK(bytes_has("abc%", 4, '%'));
	CHECK(!bytes_has("user:1234:profile", 16, '%'));
}

int main(void)
{
	test_equal();
	test_has();
	return check_done("bytes");
}
