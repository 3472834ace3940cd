/*
 * dashboard.h - the page GET /dashboard serves: a live view of GET /stats
 * in the browser (docs/operations.md, "Dashboard").
 *
 * The page is src/daemon/dashboard.html; src/daemon/dashboard.py turns it
 * into these arrays at build time, with a Content-Security-Policy derived
 * from the hashes of its inline style and script.  All of it is constant
 * data, read by any shard.
 */
#ifndef RINGCACHE_DASHBOARD_H
#define RINGCACHE_DASHBOARD_H

#include <stddef.h>

#define DASHBOARD_TYPE "text/html; charset=utf-8"

extern const unsigned char dashboard_html[];   /* the page, not NUL-terminated */
extern const size_t dashboard_html_len;
/* Cache-Control, Content-Security-Policy, X-Content-Type-Options and
 * Referrer-Policy: header lines each ending in CRLF, NUL-terminated (the
 * form of struct reply's `headers`). */
extern const char dashboard_headers[];

#endif
