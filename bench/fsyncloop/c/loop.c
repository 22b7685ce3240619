/* The write+fdatasync loop of bench/fsyncloop in C, for bench/fsync-loops.sh.
 * Usage: loop DIR [SYNCS]. Output: one line, "c p50_us=X p99_us=Y". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int cmp(const void *a, const void *b) {
	long x = *(const long *)a, y = *(const long *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv) {
	if (argc < 2) {
		fprintf(stderr, "usage: loop DIR [SYNCS]\n");
		return 2;
	}
	int n = argc > 2 ? atoi(argv[2]) : 10029;
	char path[4096], buf[2300];
	memset(buf, 0, sizeof buf);
	snprintf(path, sizeof path, "%s/loop.tmp", argv[1]);
	int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0600);
	if (fd < 0 || fallocate(fd, 0, 0, (off_t)n * sizeof buf) != 0 || fdatasync(fd) != 0) {
		perror(path);
		return 1;
	}
	long *d = malloc(n * sizeof *d);
	for (int i = 0; i < n; i++) {
		struct timespec a, b;
		if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf) {
			perror("write");
			return 1;
		}
		clock_gettime(CLOCK_MONOTONIC, &a);
		fdatasync(fd);
		clock_gettime(CLOCK_MONOTONIC, &b);
		d[i] = (b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec);
	}
	close(fd);
	unlink(path);
	qsort(d, n, sizeof *d, cmp);
	printf("c p50_us=%.1f p99_us=%.1f\n", d[(int)ceil(0.50 * n) - 1] / 1e3, d[(int)ceil(0.99 * n) - 1] / 1e3);
	return 0;
}
