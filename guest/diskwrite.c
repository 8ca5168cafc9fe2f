/*
 * Disk workload of the migstream test guest; guest/init starts it beside memfill when the
 * kernel command line holds disk=BLOCK_BYTES[,BLOCK_BYTES…]:RATE_MIBS[:SEED].
 *
 *   diskwrite DEVICE BLOCK_BYTES[,BLOCK_BYTES…] RATE_MIBS [SEED]
 *
 * Writes blocks of BLOCK_BYTES random bytes (multiples of 512: 4096, 8192, 65536…; with a list,
 * each write takes one of them at random, so one run mixes the sizes a database does) at random
 * offsets of DEVICE aligned to the block's own size, RATE_MIBS MiB/s (0: as fast as it goes;
 * time the vCPU did not run is not made up, as in memfill's busy mode). O_DIRECT, so every
 * write is a request QEMU's block layer sees (and marks in its dirty bitmaps) when pwrite
 * returns, not a page of the guest's cache.
 *
 * Prints "migstream-disk-ready SIZE BLOCKS RATE" once, then "migstream-disk N" every 100 ms,
 * N being the bytes written so far (completed pwrites), so a host can tell how much the guest
 * wrote between two moments.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define MIB (1024.0 * 1024.0)
#define MAX_SIZES 8

static uint64_t rng;

static uint64_t next_random(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: diskwrite DEVICE BLOCK_BYTES[,BLOCK_BYTES…] RATE_MIBS [SEED]\n");
    return 2;
  }
  const char *device = argv[1];
  size_t sizes[MAX_SIZES], nsizes = 0, block = 0;
  for (const char *p = argv[2]; *p != '\0' && nsizes < MAX_SIZES;) {
    char *end;
    size_t size = strtoul(p, &end, 10);
    if (end == p || size == 0 || size % 512 != 0 || (*end != ',' && *end != '\0')) {
      fprintf(stderr, "diskwrite: block sizes \"%s\" are not multiples of 512 separated by commas\n", argv[2]);
      return 2;
    }
    sizes[nsizes++] = size;
    if (size > block) block = size;
    p = *end == ',' ? end + 1 : end;
  }
  if (nsizes == 0) {
    fprintf(stderr, "diskwrite: no block size\n");
    return 2;
  }
  double rate_mibs = strtod(argv[3], NULL);
  rng = argc > 4 ? strtoull(argv[4], NULL, 10) : 0;
  if (rng == 0) rng = 0x2545f4914f6cdd1dull;
  setvbuf(stdout, NULL, _IOLBF, 0);

  int fd = -1;
  /* The device node appears when virtio_blk has probed the disk: wait for it a little. */
  for (int tries = 0; tries < 100 && fd < 0; tries++) {
    fd = open(device, O_RDWR | O_DIRECT);
    if (fd < 0) usleep(100000);
  }
  if (fd < 0) {
    perror("diskwrite: open");
    return 1;
  }
  uint64_t size = 0;
  if (ioctl(fd, BLKGETSIZE64, &size) != 0 || size < block) {
    fprintf(stderr, "diskwrite: %s has %llu bytes, fewer than one block\n", device, (unsigned long long)size);
    return 1;
  }
  uint8_t *buffer;
  if (posix_memalign((void **)&buffer, 4096, block) != 0) {
    fprintf(stderr, "diskwrite: cannot allocate %zu bytes\n", block);
    return 1;
  }
  printf("migstream-disk-ready %llu %s %.3f\n", (unsigned long long)size, argv[2], rate_mibs);

  /* Paced in bytes: with mixed sizes, a write counts its own size against the rate. */
  double bytes_per_second = rate_mibs * MIB;
  double start = now_seconds(), next_report = start;
  double paced_since = start;
  uint64_t written = 0, paced_from = 0;
  for (;;) {
    /* One size draws nothing: a seed gives the same writes it gave before lists. */
    size_t this_block = nsizes == 1 ? sizes[0] : sizes[next_random() % nsizes];
    for (size_t i = 0; i < this_block; i += 8) {
      uint64_t v = next_random();
      memcpy(buffer + i, &v, 8);
    }
    off_t offset = (off_t)((next_random() % (size / this_block)) * this_block);
    ssize_t done = pwrite(fd, buffer, this_block, offset);
    if (done != (ssize_t)this_block) {
      perror("diskwrite: pwrite");
      return 1;
    }
    written += this_block;
    double now = now_seconds();
    if (now >= next_report) {
      printf("migstream-disk %llu\n", (unsigned long long)written);
      next_report += 0.1;
      if (next_report < now) next_report = now + 0.1;
    }
    if (bytes_per_second > 0) {
      double due = paced_since + (double)(written - paced_from) / bytes_per_second;
      if (now > due + 0.05) {
        paced_since = now;
        paced_from = written;
      } else if (due > now) {
        double wait = due - now;
        struct timespec pause = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
        nanosleep(&pause, NULL);
      }
    }
  }
}
