/*
 * bench-send-paths.c - what a large answer costs the sender, by how its
 * bytes reach the socket (issue 8, docs/benchmarks.md "Sending large values
 * by page reference").
 *
 * One TCP connection on loopback, a reader thread draining it, and the
 * sender pushing the same SIZE-byte value COUNT times by each of:
 *
 *   write       write() from anonymous memory: the kernel copies the value
 *               into the socket (what ringcached's copying sends do);
 *   shmem       sendfile() from a memfd (shmem, small pages): the socket
 *               takes page references, no copy;
 *   shmem-thp   the same memfd region advised MADV_HUGEPAGE: huge pages only
 *               when /sys/kernel/mm/transparent_hugepage/shmem_enabled is
 *               `advise`, `within_size` or `always` (reported);
 *   hugetlb     sendfile() from a MFD_HUGETLB memfd (needs vm.nr_hugepages);
 *   vmsplice    vmsplice() of anonymous memory into a pipe, then splice() to
 *               the socket: page references to ordinary memory, no file;
 *   vmsplice-huge  the same from MAP_HUGETLB memory, what the store's arenas
 *               are (needs vm.nr_hugepages);
 *   file        sendfile() from a regular file in $TMPDIR (default /var/tmp),
 *               written first, so its bytes are in the page cache: what nginx
 *               sends a static file from (ext4 and xfs cache files in large
 *               folios since Linux 6.16).
 *
 * The vmsplice modes answer whether the store's own pages could be handed
 * to the socket without moving values into a file first.  They would need
 * the pages kept unchanged until the receiver has read them (vmsplice
 * without SPLICE_F_GIFT shares them); here nothing writes them.
 *
 * The figure is the sending thread's CPU time (CLOCK_THREAD_CPUTIME_ID) per
 * MiB, the median of ROUNDS rounds that run the modes in turn, so the
 * machine's drift hits them alike.  On loopback the receiver's copy is the
 * reader thread's, not the sender's: the figures compare what a server pays.
 * A benchmark, not a test: it passes no verdict.
 *
 * With NONBLOCK=1 in the environment the socket is non-blocking and the
 * sender waits in poll() when it is full, as an event-loop server does
 * (nginx; ringcached's io_uring sends wait likewise): blocking calls sleep
 * inside the kernel's send path instead, which may cost differently.
 *
 * SEND_CPU and READ_CPU pin the sending and the reading thread (as
 * perf/bench-large.sh pins the server and wrk); unset, the scheduler places
 * them.
 *
 * usage: bench-send-paths [SIZE_KIB [COUNT [ROUNDS]]]   (1024 2000 5)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum mode {
	M_WRITE, M_SHMEM, M_SHMEM_THP, M_HUGETLB, M_VMSPLICE, M_VMSPLICE_HUGE, M_FILE, M_COUNT
};
static const char *const mode_name[M_COUNT] = { "write",    "shmem",         "shmem-thp", "hugetlb",
						"vmsplice", "vmsplice-huge", "file" };

#define MAX_ROUNDS 64
#define HUGE_2M (2ul << 20)

struct source {
	int fd;                 /* memfd; -1 for anonymous memory */
	uint8_t *p;
	size_t map_len;
	int pipe[2];            /* vmsplice modes: the pipe; else -1 */
	const char *error;      /* why this mode cannot run; NULL: it can */
};

/* kB of shmem this process maps with huge pages (PMDs) now. */
static long shmem_pmd_kb(void)
{
	char line[256];
	long kb = 0;
	FILE *f = fopen("/proc/self/smaps_rollup", "r");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "ShmemPmdMapped: %ld kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

static double thread_cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Pins the calling thread to the CPU the environment variable names, if set. */
static void pin_from_env(const char *var)
{
	const char *v = getenv(var);
	cpu_set_t set;

	if (!v || !*v)
		return;
	CPU_ZERO(&set);
	CPU_SET((int)strtol(v, NULL, 10), &set);
	if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set))
		fprintf(stderr, "bench-send-paths: %s=%s: cannot pin\n", var, v);
}

static void *drain(void *arg)
{
	int fd = *(int *)arg;

	pin_from_env("READ_CPU");
	size_t cap = 1u << 20;
	char *b = malloc(cap);

	while (b && read(fd, b, cap) > 0)
		;
	free(b);
	return NULL;
}

static int connected_pair(int *tx, int *rx)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t n = sizeof(sa);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	if (l < 0 || bind(l, (struct sockaddr *)&sa, n) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&sa, &n))
		return -1;
	*tx = socket(AF_INET, SOCK_STREAM, 0);
	if (*tx < 0 || connect(*tx, (struct sockaddr *)&sa, n))
		return -1;
	*rx = accept(l, NULL, NULL);
	close(l);
	return *rx < 0 ? -1 : 0;
}

static void source_open(struct source *s, enum mode m, size_t size)
{
	memset(s, 0, sizeof(*s));
	s->fd = s->pipe[0] = s->pipe[1] = -1;
	bool huge = m == M_HUGETLB || m == M_SHMEM_THP || m == M_VMSPLICE_HUGE;
	/* whole 2 MiB pages: a huge page must fit in the region */
	s->map_len = huge ? (size + HUGE_2M - 1) / HUGE_2M * HUGE_2M : size;
	if (m == M_VMSPLICE || m == M_VMSPLICE_HUGE) {
		/* a pipe as large as the value (or pipe-max-size): fewer round trips */
		if (pipe2(s->pipe, O_CLOEXEC)) {
			s->error = strerror(errno);
			return;
		}
		fcntl(s->pipe[1], F_SETPIPE_SZ, (int)(size < (1u << 20) ? size : 1u << 20));
	}
	if (m == M_FILE) {
		const char *dir = getenv("TMPDIR");
		char path[512];
		snprintf(path, sizeof(path), "%s/bench-send-paths.XXXXXX", dir && *dir ? dir : "/var/tmp");
		s->fd = mkstemp(path);
		if (s->fd < 0) {
			s->error = strerror(errno);
			return;
		}
		unlink(path);
		s->p = malloc(size);
		if (!s->p) {
			s->error = strerror(ENOMEM);
			return;
		}
		memset(s->p, 'v', size);
		for (size_t done = 0; done < size;) {
			ssize_t w = write(s->fd, s->p + done, size - done);
			if (w <= 0) {
				s->error = strerror(errno);
				return;
			}
			done += (size_t)w;
		}
		return;         /* s->p stays for source_close() to free */
	}
	if (m == M_WRITE || m == M_VMSPLICE || m == M_VMSPLICE_HUGE) {
		s->p = mmap(NULL, s->map_len, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | (m == M_VMSPLICE_HUGE ? MAP_HUGETLB : 0),
			    -1, 0);
	} else {
		s->fd = memfd_create("bench-send-paths", m == M_HUGETLB ? MFD_HUGETLB : 0);
		if (s->fd < 0 || ftruncate(s->fd, (off_t)s->map_len)) {
			s->error = strerror(errno);
			return;
		}
		s->p = mmap(NULL, s->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
	}
	if (s->p == MAP_FAILED) {
		s->p = NULL;
		s->error = strerror(errno);
		return;
	}
	if (m == M_SHMEM_THP)
		madvise(s->p, s->map_len, MADV_HUGEPAGE);
	memset(s->p, 'v', size);
}

static void source_close(struct source *s, enum mode m)
{
	if (s->p && m == M_FILE)
		free(s->p);
	else if (s->p)
		munmap(s->p, s->map_len);
	if (s->fd >= 0)
		close(s->fd);
	for (int i = 0; i < 2; i++)
		if (s->pipe[i] >= 0)
			close(s->pipe[i]);
}

/* NONBLOCK=1: the socket is full; waits until it takes more.  0 or -1. */
static int wait_writable(int tx)
{
	struct pollfd pfd = { .fd = tx, .events = POLLOUT };

	return poll(&pfd, 1, -1) < 0 ? -1 : 0;
}

/* Part of the value into the pipe by reference, then all of the pipe into
 * the socket; the bytes moved, or -1. */
static ssize_t vmsplice_some(int tx, const struct source *s, const uint8_t *p, size_t len)
{
	struct iovec iov = { .iov_base = (void *)p, .iov_len = len };
	ssize_t in = vmsplice(s->pipe[1], &iov, 1, 0);

	if (in <= 0)
		return -1;
	for (ssize_t left = in; left;) {
		ssize_t out = splice(s->pipe[0], NULL, tx, NULL, (size_t)left, SPLICE_F_MORE);
		if (out < 0 && errno == EAGAIN) {
			if (wait_writable(tx))
				return -1;
			continue;
		}
		if (out <= 0)
			return -1;
		left -= out;
	}
	return in;
}

/* Sends the value `count` times; the sender's CPU seconds, or -1 (errno). */
static double send_all(int tx, const struct source *s, size_t size, unsigned count)
{
	double t0 = thread_cpu_s();

	for (unsigned i = 0; i < count; i++) {
		off_t off = 0;
		for (size_t left = size; left;) {
			const uint8_t *p = s->p + (size - left);
			ssize_t r = s->pipe[0] >= 0 ? vmsplice_some(tx, s, p, left)
				    : s->fd < 0    ? write(tx, p, left)
						   : sendfile(tx, s->fd, &off, left);
			if (r < 0 && errno == EAGAIN) {
				if (wait_writable(tx))
					return -1;
				continue;
			}
			if (r <= 0)
				return -1;
			left -= (size_t)r;
		}
	}
	return thread_cpu_s() - t0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void print_thp_setting(void)
{
	char buf[128] = "";
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "r");

	if (f) {
		if (!fgets(buf, sizeof(buf), f))
			buf[0] = 0;
		fclose(f);
	}
	buf[strcspn(buf, "\n")] = 0;
	printf("shmem_enabled: %s\n", buf[0] ? buf : "(unreadable)");
}

int main(int argc, char **argv)
{
	size_t size = (argc > 1 ? strtoul(argv[1], NULL, 10) : 1024) << 10;
	unsigned count = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 2000;
	unsigned rounds = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 10) : 5;
	double us[M_COUNT][MAX_ROUNDS];
	const char *error[M_COUNT] = { 0 };
	long thp_kb = 0;
	int tx, rx;
	pthread_t reader;

	if (!size || !count || !rounds || rounds > MAX_ROUNDS) {
		fprintf(stderr, "usage: bench-send-paths [SIZE_KIB [COUNT [ROUNDS<=%d]]]\n",
			MAX_ROUNDS);
		return 2;
	}
	if (connected_pair(&tx, &rx) || pthread_create(&reader, NULL, drain, &rx)) {
		perror("bench-send-paths: loopback connection");
		return 1;
	}
	pin_from_env("SEND_CPU");
	const char *nb = getenv("NONBLOCK");
	bool nonblock = nb && *nb == '1';
	if (nonblock)
		fcntl(tx, F_SETFL, fcntl(tx, F_GETFL) | O_NONBLOCK);
	printf("sends: %s\n", nonblock ? "non-blocking, poll() when full" : "blocking");
	print_thp_setting();
	for (unsigned r = 0; r < rounds; r++)
		for (int m = 0; m < M_COUNT; m++) {
			struct source s;
			source_open(&s, (enum mode)m, size);
			if (m == M_SHMEM_THP && !s.error)
				thp_kb = shmem_pmd_kb();
			double t = s.error ? -1 : send_all(tx, &s, size, count);
			if (t < 0 && !s.error)
				s.error = strerror(errno);
			if (s.error)
				error[m] = s.error;  /* static strings from strerror's table */
			us[m][r] = t < 0 ? 0 : t * 1e6 / ((double)count * (double)size / (1 << 20));
			source_close(&s, (enum mode)m);
		}
	double median[M_COUNT];
	for (int m = 0; m < M_COUNT; m++) {
		double sorted[MAX_ROUNDS];
		memcpy(sorted, us[m], rounds * sizeof(double));
		qsort(sorted, rounds, sizeof(double), cmp_double);
		median[m] = sorted[rounds / 2];
	}
	printf("%zu KiB x %u, %u rounds: sender CPU per MiB sent, median (rounds)\n",
	       size >> 10, count, rounds);
	for (int m = 0; m < M_COUNT; m++) {
		if (error[m]) {
			printf("  %-10s  not measured: %s\n", mode_name[m], error[m]);
			continue;
		}
		printf("  %-10s  %7.1f us", mode_name[m], median[m]);
		if (m == M_SHMEM_THP)
			printf("  huge pages: %s", thp_kb ? "yes" : "no");
		if (!error[M_WRITE] && median[M_WRITE] > 0)
			printf("  %.2fx write's", median[m] / median[M_WRITE]);
		printf("  (");
		for (unsigned r = 0; r < rounds; r++)
			printf("%s%.0f", r ? " " : "", us[m][r]);
		printf(")\n");
	}
	shutdown(tx, SHUT_WR);
	pthread_join(reader, NULL);
	return 0;
}
