// The compressor's payload ring and dedup window; see dedup.h.
#include "dedup.h"

#include <cstring>

#include "pages.h"

namespace migstream {

uint64_t dedup_store(const DedupWindow& window, uint64_t stored, uint64_t write, const uint8_t* page,
                     uint32_t* checksum) {
  const uint64_t hash = xxh64(page, window.page_size, 0);
  DedupEntry* const bucket = window.table + (hash & (window.buckets - 1)) * kDedupWays;
  // Pages numbered below `oldest` have left the window; bytes before `intact` were overwritten.
  const uint64_t oldest = stored > window.window_pages ? stored - window.window_pages : 0;
  const uint64_t intact = write > window.ring_bytes ? write - window.ring_bytes : 0;
  for (size_t i = 0; i < kDedupWays; ++i) {
    const DedupEntry& entry = bucket[i];
    if (entry.number == 0 || entry.hash != hash) continue;
    const uint64_t number = entry.number - 1;
    if (number < oldest || number >= stored) continue;
    const uint64_t position = static_cast<uint64_t>(window.positions[number % window.window_pages]);
    if (position < intact) continue;
    if (std::memcmp(window.ring + position % window.ring_bytes, page, window.page_size) == 0) {
      *checksum = static_cast<uint32_t>(hash);
      return stored - number;
    }
  }
  // Not found: the page becomes stored page `stored`. Its entry replaces one with the same hash
  // (now stale), else an empty one, else the oldest of the bucket.
  size_t victim = 0;
  for (size_t i = 0; i < kDedupWays; ++i) {
    if (bucket[i].hash == hash || bucket[i].number == 0) {
      victim = i;
      break;
    }
    if (bucket[i].number < bucket[victim].number) victim = i;
  }
  bucket[victim].hash = hash;
  bucket[victim].number = stored + 1;
  window.positions[stored % window.window_pages] = static_cast<double>(write);
  std::memcpy(window.ring + write % window.ring_bytes, page, window.page_size);
  return 0;
}

}  // namespace migstream
