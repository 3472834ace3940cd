/*
 * listen.c - listening sockets, and the claim on an address (listen.h).
 */
#include <errno.h>
#include <grp.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "listen.h"

/* Resolves a for a passive socket; 0 or -EINVAL with the resolver's words. */
static int resolve(const struct config_addr *a, const char *flag, struct addrinfo **res,
		   char *err, size_t errlen)
{
	struct addrinfo hints;
	char port[8];
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%u", a->port);
	rc = getaddrinfo(a->host, port, &hints, res);
	if (rc) {
		snprintf(err, errlen, "%s %s: %s", flag, a->host, gai_strerror(rc));
		return -EINVAL;
	}
	return 0;
}

/* A name in the abstract namespace of this network namespace, bound for
 * the life of the process: the claim (listen.h).  what: "tcp/8080". */
static int claim(const char *what, const char *flag, const char *at, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	int fd, n;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	n = snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, "ringcached/%s", what);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		snprintf(err, errlen, "%s %s: claiming it: %s", flag, at, strerror(errno));
		return -errno;
	}
	if (bind(fd, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n)) == -1) {
		int e = errno;
		close(fd);
		if (e == EADDRINUSE)
			snprintf(err, errlen,
				 "%s %s: address already in use (another ringcached "
				 "is starting or running with it)", flag, at);
		else
			snprintf(err, errlen, "%s %s: claiming it: %s", flag, at, strerror(e));
		return -e;
	}
	return fd;
}

/*
 * TCP: the claim is named after the port, not the address, so that
 * 0.0.0.0:8080 and 127.0.0.1:8080 (which SO_REUSEPORT would also let share)
 * exclude each other; then a plain bind (no SO_REUSEPORT), which fails while
 * anyone listens on a.
 */
static int claim_tcp(const struct config_addr *a, const char *flag, char *err, size_t errlen)
{
	struct addrinfo *res = NULL;
	char what[32], at[160];
	int one = 1, fd, rc = 0;

	snprintf(what, sizeof(what), "tcp/%u", a->port);
	snprintf(at, sizeof(at), "port %u", a->port);
	int c = claim(what, flag, at, err, errlen);
	if (c < 0)
		return c;
	if (resolve(a, flag, &res, err, errlen)) {
		close(c);
		return -EINVAL;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, res->ai_addr, res->ai_addrlen) == -1 && errno == EADDRINUSE) {
			config_format_addr(a, at, sizeof(at));
			snprintf(err, errlen,
				 "%s %s: address already in use (another ringcached "
				 "or another server listens there)", flag, at);
			rc = -EADDRINUSE;
		}
		close(fd);
	}
	freeaddrinfo(res);
	if (rc) {
		close(c);
		return rc;
	}
	return c;
}

/* The claim of a Unix socket's path: named after a hash of it (a path may
 * be as long as the abstract name itself). */
static int claim_unix(const struct config_addr *a, const char *flag, char *err, size_t errlen)
{
	uint64_t h = 0xcbf29ce484222325ull;     /* FNV-1a */
	char what[40], at[160];

	for (const char *p = a->path; *p; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
	snprintf(what, sizeof(what), "unix/%016llx", (unsigned long long)h);
	config_format_addr(a, at, sizeof(at));
	return claim(what, flag, at, err, errlen);
}

/*
 * What is at the path already: nothing (0), a socket nobody listens on,
 * which is removed (0), or a reason to refuse (-errno, with a message).
 */
static int clear_path(const struct sockaddr_un *sa, const char *flag, const char *at, char *err,
		      size_t errlen)
{
	struct stat st;

	if (lstat(sa->sun_path, &st) == -1) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "%s %s: %s", flag, at, strerror(errno));
		return -errno;
	}
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "%s %s: the file exists and is not a socket (not removed)",
			 flag, at);
		return -EEXIST;
	}
	/* non-blocking: a live server with a full backlog answers EAGAIN */
	int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (probe == -1) {
		snprintf(err, errlen, "%s %s: %s", flag, at, strerror(errno));
		return -errno;
	}
	int rc = connect(probe, (const struct sockaddr *)sa, sizeof(*sa)) == 0 ? 0 : errno;
	close(probe);
	if (rc == ECONNREFUSED) {
		/* left by a daemon that died: nobody accepts on it */
		if (unlink(sa->sun_path) == -1 && errno != ENOENT) {
			snprintf(err, errlen, "%s %s: removing a stale socket: %s", flag, at,
				 strerror(errno));
			return -errno;
		}
		fprintf(stderr, "ringcached: %s %s: replaced a stale socket file\n", flag, at);
		return 0;
	}
	if (rc == 0 || rc == EAGAIN || rc == EINPROGRESS) {
		snprintf(err, errlen, "%s %s: address already in use (a server listens there)", flag,
			 at);
		return -EADDRINUSE;
	}
	snprintf(err, errlen, "%s %s: %s", flag, at, strerror(rc));
	return -rc;
}

/* The Unix socket of lp, made with `mode` and `gid` ((gid_t)-1: the
 * daemon's). */
static int unix_socket(struct listen_point *lp, mode_t mode, gid_t gid, char *err,
		       size_t errlen)
{
	struct sockaddr_un sa;
	struct stat st;
	char at[160];
	int fd, rc;

	config_format_addr(lp->at, at, sizeof(at));
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, lp->at->path, strlen(lp->at->path) + 1); /* fits: config.c */
	if ((rc = clear_path(&sa, lp->flag, at, err, errlen)))
		return rc;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		snprintf(err, errlen, "%s %s: %s", lp->flag, at, strerror(errno));
		return -errno;
	}
	/* made with no access for anyone but us, until chown and chmod below
	 * (the umask is the process's: this runs before any other thread) */
	mode_t old = umask(0177);
	rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1 ? -errno : 0;
	umask(old);
	if (rc) {
		snprintf(err, errlen, "%s %s: %s%s", lp->flag, at, strerror(-rc),
			 rc == -ENOENT ? " (its directory does not exist)" : "");
		close(fd);
		return rc;
	}
	if (stat(sa.sun_path, &st) == 0) {
		lp->dev = st.st_dev;
		lp->ino = st.st_ino;
	}
	lp->fd = fd;     /* from here listen_close() removes the file */
	if (gid != (gid_t)-1 && chown(sa.sun_path, (uid_t)-1, gid) == -1) {
		rc = errno;
		snprintf(err, errlen, "--listen-group: giving %s to group %u: %s%s", at,
			 (unsigned)gid, strerror(rc),
			 rc == EPERM ? " (the daemon must be a member of the group)" : "");
		return -rc;
	}
	if (chmod(sa.sun_path, mode) == -1 || listen(fd, 4096) == -1) {
		rc = errno;
		snprintf(err, errlen, "%s %s: %s", lp->flag, at, strerror(rc));
		return -rc;
	}
	return 0;
}

/* --listen-group: a group name or number; (gid_t)-1 when empty. */
static int group_of(const char *name, gid_t *gid, char *err, size_t errlen)
{
	char *end;

	*gid = (gid_t)-1;
	if (!name || !*name)
		return 0;
	errno = 0;
	unsigned long v = strtoul(name, &end, 10);
	if (*name >= '0' && *name <= '9' && !*end && !errno && v < (gid_t)-1) {
		*gid = (gid_t)v;
		return 0;
	}
	struct group gr, *found = NULL;
	char buf[4096];
	int rc = getgrnam_r(name, &gr, buf, sizeof(buf), &found);
	if (rc || !found) {
		snprintf(err, errlen, "--listen-group %s: %s", name,
			 rc ? strerror(rc) : "no such group");
		return -EINVAL;
	}
	*gid = found->gr_gid;
	return 0;
}

int listen_open(struct listen_set *ls, const struct config *cfg, uint8_t http, uint8_t resp,
		char *err, size_t errlen)
{
	const struct config_listen *lists[2] = { &cfg->listen, &cfg->resp_listen };
	gid_t gid;
	int rc = group_of(cfg->listen_group, &gid, err, errlen);

	memset(ls, 0, sizeof(*ls));
	if (rc)
		return rc;
	for (unsigned l = 0; l < 2; l++)
		for (unsigned i = 0; i < lists[l]->n; i++) {
			struct listen_point *lp = &ls->p[ls->n];
			lp->at = &lists[l]->at[i];
			lp->flag = l ? "--resp-listen" : "--listen";
			lp->proto = l ? resp : http;
			lp->fd = -1;
			lp->claim = lp->at->path[0] ? claim_unix(lp->at, lp->flag, err, errlen)
						    : claim_tcp(lp->at, lp->flag, err, errlen);
			if (lp->claim < 0) {
				rc = lp->claim;
				goto fail;
			}
			ls->n++;
			if (lp->at->path[0] &&
			    (rc = unix_socket(lp, (mode_t)cfg->listen_mode, gid, err, errlen)))
				goto fail;
		}
	return 0;
fail:
	listen_close(ls);
	return rc;
}

void listen_close(struct listen_set *ls)
{
	for (unsigned i = 0; i < ls->n; i++) {
		struct listen_point *lp = &ls->p[i];
		struct stat st;

		if (lp->fd >= 0) {
			/* only the file this process made: another may be there now */
			if (stat(lp->at->path, &st) == 0 && st.st_dev == lp->dev &&
			    st.st_ino == lp->ino)
				unlink(lp->at->path);
			close(lp->fd);
		}
		if (lp->claim >= 0)
			close(lp->claim);
	}
	ls->n = 0;
}

int listen_socket(const struct config_addr *a, const char *flag, char *err, size_t errlen)
{
	struct addrinfo *res = NULL;
	int one = 1, fd, rc;

	if (resolve(a, flag, &res, err, errlen))
		return -EINVAL;
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) == -1 || listen(fd, 4096) == -1) {
		rc = -errno;
		if (fd != -1)
			close(fd);
		freeaddrinfo(res);
		snprintf(err, errlen, "%s %s:%u: %s", flag, a->host, a->port, strerror(-rc));
		return rc;
	}
	freeaddrinfo(res);
	return fd;
}
