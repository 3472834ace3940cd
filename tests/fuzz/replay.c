/*
 * replay.c - runs LLVMFuzzerTestOneInput on every file of the directories
 * (or the files) named on the command line, so that a saved corpus runs in
 * the normal build and under the sanitizers without libFuzzer.  Fails when
 * it finds no input at all, which would mean a wrong path, not a pass.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Runs one file; the input gets a buffer of exactly its size so that a read
 * past its end is caught. */
static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		return -1;
	}
	struct stat st;
	if (fstat(fileno(f), &st) == -1 || !S_ISREG(st.st_mode)) {
		fclose(f);
		return 0;
	}
	size_t n = (size_t)st.st_size;
	uint8_t *data = malloc(n ? n : 1);
	if (!data || fread(data, 1, n, f) != n) {
		fprintf(stderr, "%s: read failed\n", path);
		free(data);
		fclose(f);
		return -1;
	}
	fclose(f);
	LLVMFuzzerTestOneInput(data, n);
	free(data);
	return 1;
}

int main(int argc, char **argv)
{
	unsigned ran = 0, failed = 0;

	for (int i = 1; i < argc; i++) {
		DIR *d = opendir(argv[i]);
		if (!d) {
			int rc = run_file(argv[i]);
			ran += rc > 0;
			failed += rc < 0;
			continue;
		}
		struct dirent *e;
		while ((e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			char path[4096];
			snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
			int rc = run_file(path);
			ran += rc > 0;
			failed += rc < 0;
		}
		closedir(d);
	}
	printf("replayed %u inputs, %u unreadable\n", ran, failed);
	return ran == 0 || failed ? 1 : 0;
}
