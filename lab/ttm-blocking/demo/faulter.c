/* Hammer page faults on one bochs (drm_vram_helper/TTM) dumb BO from several
 * threads so that ttm_bo_vm_reserve() sees a contended reservation. */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
struct create_dumb { uint32_t height, width, bpp, flags, handle, pitch; uint64_t size; };
struct map_dumb { uint32_t handle, pad; uint64_t offset; };
#define IOCTL_CREATE_DUMB _IOWR('d', 0xB2, struct create_dumb)
#define IOCTL_MAP_DUMB _IOWR('d', 0xB3, struct map_dumb)
static int fd; static uint64_t size, off; static double secs;
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static void *worker(void *arg) {
	long n = 0; double end = now() + secs, maxf = 0;
	while (now() < end) {
		volatile char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off);
		if (p == MAP_FAILED) { perror("mmap"); exit(1); }
		for (uint64_t i = 0; i < size; i += 4096) {
			double t = now(); p[i] = (char)n; t = now() - t; if (t > maxf) maxf = t;
		}
		munmap((void *)p, size); n++;
	}
	printf("thread %ld: %ld passes, max single-touch latency %.3f ms\n", (long)arg, n, maxf * 1e3);
	return NULL;
}
int main(int argc, char **argv) {
	int nthr = argc > 1 ? atoi(argv[1]) : 4; secs = argc > 2 ? atof(argv[2]) : 10;
	fd = open("/dev/dri/card0", O_RDWR); if (fd < 0) { perror("open"); return 1; }
	struct create_dumb c = { .height = 256, .width = 1024, .bpp = 32 };
	if (ioctl(fd, IOCTL_CREATE_DUMB, &c)) { perror("create_dumb"); return 1; }
	struct map_dumb m = { .handle = c.handle };
	if (ioctl(fd, IOCTL_MAP_DUMB, &m)) { perror("map_dumb"); return 1; }
	size = c.size; off = m.offset;
	printf("bo size %llu, %d threads, %.0f s\n", (unsigned long long)size, nthr, secs);
	pthread_t t[64];
	for (long i = 0; i < nthr; i++) pthread_create(&t[i], NULL, worker, (void *)i);
	for (int i = 0; i < nthr; i++) pthread_join(t[i], NULL);
	return 0;
}
