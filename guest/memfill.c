/*
 * Guest workload for the migstream test bench; guest/init execs it as PID 1.
 *
 *   memfill MODE FILL_MIB [WSS_MIB RATE_MIBS]
 *
 * Fills FILL_MIB MiB (0 = a quarter of RAM, at most 64 MiB) with a page-by-page mix of
 * random bytes, repeated text, explicitly zeroed pages, repeated patterns and sparse pages,
 * so migration streams carry both PAGE and ZERO records and compressors see varied data.
 * Then prints "migstream-heartbeat N" on stdout once a second, forever.
 *
 * MODE "dirty" also rewrites an 8 MiB region continuously, changing 16 bytes per 4 KiB page
 * per round, so every pass re-sends those pages and XBZRLE produces small deltas.
 *
 * MODE "busy" is the load for convergence tests and benchmarks: it dirties a WSS_MIB MiB
 * working set page after page, RATE_MIBS MiB/s of page writes (0: as fast as the vCPU goes;
 * time the vCPU did not run is not made up, so a throttle lowers the rate),
 * and prints "migstream-work N" every 100 ms, N being the pages written in that tenth of a
 * second, so a host can see when and how much a throttle slowed the guest.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096u
#define MIB (1024u * 1024u)
#define DIRTY_BYTES (8u * MIB)
/* Short enough that every dirty-bitmap sync finds the whole region dirty again, even when
 * XBZRLE makes a pass take only milliseconds. */
#define DIRTY_ROUND_NS 20000000L

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_random(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static const char text[] =
    "migstream test guest: the quick brown fox jumps over the lazy dog; "
    "QEMU live migration moves RAM pages, then device state. ";

static void fill_page(uint8_t *page, size_t index) {
  switch ((index * 2654435761u >> 7) % 8) {
    case 0:
    case 1:
      for (size_t i = 0; i < PAGE; i += 8) {
        uint64_t v = next_random();
        memcpy(page + i, &v, 8);
      }
      break;
    case 2:
    case 3: {
      int n = snprintf((char *)page, PAGE, "page %zu: ", index);
      for (size_t i = (size_t)n; i < PAGE; i++) page[i] = (uint8_t)text[(i - (size_t)n) % (sizeof text - 1)];
      break;
    }
    case 4:
    case 5:
      /* Touch first so the guest really owns a zeroed physical page. */
      memset(page, 0xa5, PAGE);
      memset(page, 0, PAGE);
      break;
    case 6: {
      uint64_t pattern = 0x0101010101010101ull * (index & 0xff) ^ 0xdeadbeef00000000ull;
      for (size_t i = 0; i < PAGE; i += 8) memcpy(page + i, &pattern, 8);
      break;
    }
    default:
      memset(page, 0, PAGE);
      for (size_t i = 0; i < 8; i++) page[(next_random() % PAGE)] = (uint8_t)next_random() | 1;
      break;
  }
}

static uint8_t *alloc_bytes(size_t bytes) {
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    perror("memfill: mmap");
    exit(1);
  }
  return p;
}

static size_t default_fill_bytes(void) {
  struct sysinfo info;
  if (sysinfo(&info) != 0) return 32u * MIB;
  size_t quarter = (size_t)info.totalram * info.mem_unit / 4;
  size_t cap = 64u * MIB;
  return (quarter < cap ? quarter : cap) & ~(size_t)(PAGE - 1);
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void dirty_round(uint8_t *region, uint64_t round) {
  for (size_t p = 0; p < DIRTY_BYTES / PAGE; p++) {
    size_t offset = (size_t)((round * 64 + p * 16) % PAGE);
    uint64_t stamp[2] = {round, p ^ next_random()};
    memcpy(region + p * PAGE + offset, stamp, 16);
  }
}

/* One page write: 16 bytes at a moving offset, so XBZRLE still sees a small delta. */
static void touch_page(uint8_t *page, uint64_t count) {
  uint64_t stamp[2] = {count, next_random()};
  memcpy(page + (count * 16) % PAGE, stamp, 16);
}

/* Pages written between two checks of the clock: small enough for 100 ms reports at any rate. */
#define BUSY_BATCH 64u

static void busy_loop(size_t wss_bytes, double rate_mibs) {
  uint8_t *region = alloc_bytes(wss_bytes);
  size_t pages = wss_bytes / PAGE;
  for (size_t i = 0; i < pages; i++) fill_page(region + i * PAGE, i + 11);
  printf("migstream-busy: %zu MiB working set, %.0f MiB/s\n", wss_bytes / MIB, rate_mibs);
  double pages_per_second = rate_mibs * MIB / PAGE;
  double start = now_seconds(), next_report = start + 0.1, next_beat = start;
  uint64_t total = 0, reported = 0, beat = 0, paced_from = 0;
  double paced_since = start;
  size_t at = 0;
  for (;;) {
    for (unsigned i = 0; i < BUSY_BATCH; i++) {
      touch_page(region + at * PAGE, total++);
      if (++at == pages) at = 0;
    }
    double now = now_seconds();
    if (now >= next_report) {
      printf("migstream-work %llu\n", (unsigned long long)(total - reported));
      reported = total;
      next_report += 0.1;
      if (next_report < now) next_report = now + 0.1;
    }
    if (now >= next_beat) {
      printf("migstream-heartbeat %llu\n", (unsigned long long)beat++);
      next_beat = now + 1.0;
    }
    if (pages_per_second > 0) {
      double due = paced_since + (double)(total - paced_from) / pages_per_second;
      /* Work missed while the vCPU did not run is lost, not made up: a throttled guest does
       * less, as a throttled database serves fewer requests. */
      if (now > due + 0.02) {
        paced_since = now;
        paced_from = total;
      } else if (due > now) {
        double wait = due - now;
        struct timespec pause = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
        nanosleep(&pause, NULL);
      }
    }
  }
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "idle";
  size_t fill_mib = argc > 2 ? strtoul(argv[2], NULL, 10) : 0;
  size_t wss_mib = argc > 3 ? strtoul(argv[3], NULL, 10) : 64;
  double rate_mibs = argc > 4 ? strtod(argv[4], NULL) : 0;
  size_t fill_bytes = fill_mib ? fill_mib * MIB : default_fill_bytes();
  int dirty = strcmp(mode, "dirty") == 0;
  setvbuf(stdout, NULL, _IOLBF, 0);

  uint8_t *mem = alloc_bytes(fill_bytes);
  for (size_t i = 0; i < fill_bytes / PAGE; i++) fill_page(mem + i * PAGE, i);
  printf("migstream-memfill done: %zu MiB, mode %s\n", fill_bytes / MIB, mode);
  if (strcmp(mode, "busy") == 0) busy_loop((wss_mib ? wss_mib : 1) * MIB, rate_mibs);

  uint8_t *region = NULL;
  if (dirty) {
    region = alloc_bytes(DIRTY_BYTES);
    for (size_t i = 0; i < DIRTY_BYTES / PAGE; i++) fill_page(region + i * PAGE, i + 7);
  }

  uint64_t beat = 0, round = 0;
  double next_beat = now_seconds();
  for (;;) {
    double now = now_seconds();
    if (now >= next_beat) {
      printf("migstream-heartbeat %llu\n", (unsigned long long)beat++);
      next_beat = now + 1.0;
    }
    if (dirty) {
      dirty_round(region, round++);
      struct timespec pause = {0, DIRTY_ROUND_NS};
      nanosleep(&pause, NULL);
    } else {
      sleep(1);
    }
  }
}
