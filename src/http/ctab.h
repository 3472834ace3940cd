/*
 * ctab.h - the byte classes of HTTP/1.1 syntax, one table for the head
 * parser and the chunked decoder's trailer section: tokens (RFC 9110
 * 5.6.2), field values (5.5), request-targets (RFC 9112 3.2), URI
 * authorities (RFC 3986 3.2) and whitespace.  Static so that every lookup
 * is a plain load from this object file's copy: 256 bytes each in two.
 */
#ifndef RINGCACHE_HTTP_CTAB_H
#define RINGCACHE_HTTP_CTAB_H

#include <stdint.h>

enum {
	C_TCHAR = 1,  /* token: method and field names */
	C_TARGET = 2, /* request-target: visible ASCII */
	C_VALUE = 4,  /* field value: VCHAR, obs-text, SP, HTAB */
	C_PATH = 8,   /* request-target before '?' */
	C_AUTH = 16,  /* URI authority without userinfo (RFC 3986 3.2) */
	C_OWS = 32,   /* optional whitespace: SP, HTAB (RFC 9110 5.6.3) */
};

#define T_ (C_TCHAR | C_TARGET | C_VALUE | C_PATH)
#define V_ (C_TARGET | C_VALUE | C_PATH)
#define TA (T_ | C_AUTH)
#define VA (V_ | C_AUTH)

static const uint8_t http_ctab[256] = {
	['\t'] = C_VALUE | C_OWS, [' '] = C_VALUE | C_OWS,
	['!'] = TA, ['"'] = V_, ['#'] = T_, ['$'] = TA, ['%'] = TA, ['&'] = TA,
	['\''] = TA, ['('] = VA, [')'] = VA, ['*'] = TA, ['+'] = TA, [','] = VA,
	['-'] = TA, ['.'] = TA, ['/'] = V_,
	['0' ... '9'] = TA,
	[':'] = VA, [';'] = VA, ['<'] = V_, ['='] = VA, ['>'] = V_, ['?'] = C_TARGET | C_VALUE,
	['@'] = V_,
	['A' ... 'Z'] = TA,
	['['] = VA, ['\\'] = V_, [']'] = VA, ['^'] = T_, ['_'] = TA, ['`'] = T_,
	['a' ... 'z'] = TA,
	['{'] = V_, ['|'] = T_, ['}'] = V_, ['~'] = TA,
	[0x80 ... 0xff] = C_VALUE,
};

#undef T_
#undef V_
#undef TA
#undef VA

#endif
