// The compressor's payload ring and dedup window (docs/container.md, "Dedup"), over caller-owned
// memory. The payloads of PAYLOAD frames are written once, into a ring the workers compress them
// from; the last W stored pages in it are the dedup window, so a page equal to one of them is
// found with one call, one XXH64 and one memcmp, and a new page costs one copy.
//
//   ring       R bytes; payload byte at logical position q (monotonic) lives at q % R, and is
//              intact while q >= write - R (`write`: the logical end of what was written)
//   positions  W doubles: positions[n % W] = logical position of stored page n
//   table      buckets of 4 entries {XXH64 of the page, n + 1} (0: empty), bucket = hash &
//              (buckets - 1), buckets a power of two; a new entry replaces the same hash, an
//              empty entry or the oldest one of its bucket
//
// Stored pages are numbered 0, 1, 2, … in stream order (PAGE cuts only). A hit is a page number
// n with stored - n <= W, still intact in the ring, whose bytes equal the page: it is reported
// as the distance stored - n. Equal hashes are only candidates; the bytes decide.
#ifndef MIGSTREAM_NATIVE_DEDUP_H_
#define MIGSTREAM_NATIVE_DEDUP_H_

#include <cstddef>
#include <cstdint>

namespace migstream {

struct DedupEntry {
  uint64_t hash;
  // Stored page number + 1; 0: empty.
  uint64_t number;
};

constexpr size_t kDedupWays = 4;

struct DedupWindow {
  uint8_t* ring;
  size_t ring_bytes;
  double* positions;
  size_t window_pages;
  size_t page_size;
  DedupEntry* table;
  // Buckets of kDedupWays entries; a power of two.
  size_t buckets;
};

// Looks `page` (page_size bytes) up among the stored pages [stored - W, stored). Found: returns
// the distance (1..W) and sets *checksum to the low 32 bits of the page's XXH64 (the REF
// checksum of container version 2, free: the lookup computed the hash). Not found: copies the
// page into the ring at logical position `write` (which must not wrap: write % R + page_size
// <= R), records it as stored page number `stored` and returns 0; the caller advances `write`
// and `stored`.
uint64_t dedup_store(const DedupWindow& window, uint64_t stored, uint64_t write, const uint8_t* page,
                     uint32_t* checksum);

}  // namespace migstream

#endif  // MIGSTREAM_NATIVE_DEDUP_H_
