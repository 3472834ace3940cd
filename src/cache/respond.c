/*
 * respond.c - responses without a representation: the shard's own statuses
 * (400, 405, 413, ...) and the executor's errors.  Rare enough to be written
 * field by field; the hit path in exec.c does not come through here.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "ringcache/cache.h"
#include "cache/respond.h"

const struct resp_seg resp_conn_tail[3] = {
	RESP_SEG_INIT("\r\n"),
	RESP_SEG_INIT("Connection: keep-alive\r\n\r\n"),
	RESP_SEG_INIT("Connection: close\r\n\r\n"),
};

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

const char *cache_status_text(int status)
{
	for (size_t i = 0; i < sizeof(status_texts) / sizeof(status_texts[0]); i++)
		if (status_texts[i].status == status)
			return status_texts[i].text;
	return "Unknown";
}

static const char text_type[] = "Content-Type: text/plain; charset=utf-8\r\n";

int cache_respond_status(struct buf *out, int status, uint8_t minor, bool keep_alive,
			 const char *extra_headers, const char *body)
{
	const char *reason = cache_status_text(status);
	bool informational = status < 200;
	bool no_length = informational || status == 204 || status == 304;
	size_t body_len = body && !no_length ? strlen(body) : 0;
	size_t extra_len = extra_headers ? strlen(extra_headers) : 0;
	size_t reason_len = strlen(reason);

	if (status < 100 || status > 999)
		return -EINVAL;
	size_t need = 32 + reason_len + 32 + sizeof(text_type) + extra_len + RESP_SEG + body_len;
	if (out->cap - out->len < need && buf_reserve(out, need) != 0)
		return -ENOMEM;

	char *p = out->data + out->len;
	p = resp_put(p, "HTTP/1.1 ", 9);
	p = resp_put_u32(p, (uint32_t)status);
	*p++ = ' ';
	p = resp_put(p, reason, reason_len);
	p = resp_put(p, "\r\n", 2);
	if (!no_length) {
		p = resp_put(p, "Content-Length: ", 16);
		p = resp_put_u32(p, (uint32_t)body_len);
		p = resp_put(p, "\r\n", 2);
	}
	/* text/plain unless the caller names its own type */
	if (body_len && !(extra_len && strstr(extra_headers, "Content-Type:")))
		p = resp_put(p, text_type, sizeof(text_type) - 1);
	if (extra_len)
		p = resp_put(p, extra_headers, extra_len);
	if (informational)
		p = resp_put(p, "\r\n", 2);
	else
		p = resp_put_seg(p, &resp_conn_tail[resp_conn(keep_alive, minor)]);
	if (body_len)
		p = resp_put(p, body, body_len);
	out->len = (size_t)(p - out->data);
	return 0;
}
