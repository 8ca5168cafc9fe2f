// Page scans over caller-owned memory: zero-page detection, per-page hashing, XXH32.
//
// Nothing here allocates, keeps a pointer past the call, or needs any alignment: pages may
// start at any address (a view into a decoded stream chunk is rarely 8-byte aligned).
#ifndef MIGSTREAM_NATIVE_PAGES_H_
#define MIGSTREAM_NATIVE_PAGES_H_

#include <cstddef>
#include <cstdint>

namespace migstream {

// Whether all `length` bytes at `data` are zero (QEMU's buffer_is_zero). Rejects a non-zero
// page after its first and last 16 bytes in the common case; otherwise ORs 256-byte blocks,
// which the compiler turns into vector loads, and stops at the first non-zero block.
bool all_zero(const uint8_t* data, size_t length);

// out[i] = 1 when page i of `pages` pages of `page_size` bytes is all zero, else 0.
// Returns the number of zero pages.
uint64_t find_zero_pages(const uint8_t* data, size_t page_size, size_t pages, uint8_t* out);

// XXH64 (xxHash's 64-bit hash, Yann Collet's published algorithm) of `length` bytes with
// `seed`: the value `xxhsum -H1` prints, so a page hash can be checked with standard tools.
uint64_t xxh64(const uint8_t* data, size_t length, uint64_t seed);

// out[i] = xxh64(page i, seed 0).
void hash_pages(const uint8_t* data, size_t page_size, size_t pages, uint64_t* out);

// XXH32 (xxHash's 32-bit hash) of `length` bytes with `seed`: what `xxhsum -H32` prints. The
// checksum of container version 1's frames and of every frame header (docs/container.md).
uint32_t xxh32(const uint8_t* data, size_t length, uint32_t seed);

}  // namespace migstream

#endif  // MIGSTREAM_NATIVE_PAGES_H_
