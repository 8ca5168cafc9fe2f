// Zero-page scan, XXH64 page hashing and XXH32; see pages.h.
#include "pages.h"

#include "bits.h"

namespace migstream {

namespace {

// Unaligned native-order load: the zero test does not care about byte order.
inline uint64_t load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

constexpr size_t kBlock = 256;

}  // namespace

bool all_zero(const uint8_t* data, size_t length) {
  if (length < 32) {
    uint64_t acc = 0;
    size_t i = 0;
    for (; i + 8 <= length; i += 8) acc |= load64(data + i);
    for (; i < length; ++i) acc |= data[i];
    return acc == 0;
  }
  // Most non-zero pages show it in their first or last bytes.
  if ((load64(data) | load64(data + 8) | load64(data + length - 16) | load64(data + length - 8)) != 0) {
    return false;
  }
  const uint8_t* p = data;
  const uint8_t* const end = data + length;
  while (static_cast<size_t>(end - p) >= kBlock) {
    // A fixed-size OR reduction: vectorised (SSE2 on x86-64, NEON on arm64) at -O3.
    uint64_t acc = 0;
    for (size_t i = 0; i < kBlock; i += 8) acc |= load64(p + i);
    if (acc != 0) return false;
    p += kBlock;
  }
  uint64_t acc = 0;
  for (; static_cast<size_t>(end - p) >= 8; p += 8) acc |= load64(p);
  // The last length % 8 bytes lie within the last 16, checked above (length >= 32).
  return acc == 0;
}

uint64_t find_zero_pages(const uint8_t* data, size_t page_size, size_t pages, uint8_t* out) {
  uint64_t zero = 0;
  for (size_t i = 0; i < pages; ++i) {
    const bool is_zero = all_zero(data + i * page_size, page_size);
    out[i] = is_zero ? 1 : 0;
    zero += is_zero ? 1 : 0;
  }
  return zero;
}

namespace {

constexpr uint64_t kPrime1 = 0x9E3779B185EBCA87ULL;
constexpr uint64_t kPrime2 = 0xC2B2AE3D27D4EB4FULL;
constexpr uint64_t kPrime3 = 0x165667B19E3779F9ULL;
constexpr uint64_t kPrime4 = 0x85EBCA77C2B2AE63ULL;
constexpr uint64_t kPrime5 = 0x27D4EB2F165667C5ULL;

inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

inline uint64_t round(uint64_t acc, uint64_t input) {
  acc += input * kPrime2;
  acc = rotl(acc, 31);
  return acc * kPrime1;
}

inline uint64_t merge_round(uint64_t acc, uint64_t value) {
  acc ^= round(0, value);
  return acc * kPrime1 + kPrime4;
}

}  // namespace

uint64_t xxh64(const uint8_t* data, size_t length, uint64_t seed) {
  const uint8_t* p = data;
  const uint8_t* const end = data + length;
  uint64_t h;
  if (length >= 32) {
    // Four independent lanes over 32-byte stripes.
    uint64_t v1 = seed + kPrime1 + kPrime2;
    uint64_t v2 = seed + kPrime2;
    uint64_t v3 = seed;
    uint64_t v4 = seed - kPrime1;
    const uint8_t* const limit = end - 32;
    do {
      v1 = round(v1, load64le(p));
      v2 = round(v2, load64le(p + 8));
      v3 = round(v3, load64le(p + 16));
      v4 = round(v4, load64le(p + 24));
      p += 32;
    } while (p <= limit);
    h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18);
    h = merge_round(h, v1);
    h = merge_round(h, v2);
    h = merge_round(h, v3);
    h = merge_round(h, v4);
  } else {
    h = seed + kPrime5;
  }
  h += static_cast<uint64_t>(length);
  for (; end - p >= 8; p += 8) {
    h ^= round(0, load64le(p));
    h = rotl(h, 27) * kPrime1 + kPrime4;
  }
  if (end - p >= 4) {
    h ^= static_cast<uint64_t>(load32le(p)) * kPrime1;
    h = rotl(h, 23) * kPrime2 + kPrime3;
    p += 4;
  }
  for (; p < end; ++p) {
    h ^= static_cast<uint64_t>(*p) * kPrime5;
    h = rotl(h, 11) * kPrime1;
  }
  // Avalanche.
  h ^= h >> 33;
  h *= kPrime2;
  h ^= h >> 29;
  h *= kPrime3;
  h ^= h >> 32;
  return h;
}

void hash_pages(const uint8_t* data, size_t page_size, size_t pages, uint64_t* out) {
  for (size_t i = 0; i < pages; ++i) out[i] = xxh64(data + i * page_size, page_size, 0);
}

namespace {

constexpr uint32_t kPrime32_1 = 0x9E3779B1U;
constexpr uint32_t kPrime32_2 = 0x85EBCA77U;
constexpr uint32_t kPrime32_3 = 0xC2B2AE3DU;
constexpr uint32_t kPrime32_4 = 0x27D4EB2FU;
constexpr uint32_t kPrime32_5 = 0x165667B1U;

inline uint32_t rotl32(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }

inline uint32_t round32(uint32_t acc, uint32_t input) {
  acc += input * kPrime32_2;
  acc = rotl32(acc, 13);
  return acc * kPrime32_1;
}

}  // namespace

uint32_t xxh32(const uint8_t* data, size_t length, uint32_t seed) {
  const uint8_t* p = data;
  const uint8_t* const end = data + length;
  uint32_t h;
  if (length >= 16) {
    // Four independent lanes over 16-byte stripes.
    uint32_t v1 = seed + kPrime32_1 + kPrime32_2;
    uint32_t v2 = seed + kPrime32_2;
    uint32_t v3 = seed;
    uint32_t v4 = seed - kPrime32_1;
    const uint8_t* const limit = end - 16;
    do {
      v1 = round32(v1, load32le(p));
      v2 = round32(v2, load32le(p + 4));
      v3 = round32(v3, load32le(p + 8));
      v4 = round32(v4, load32le(p + 12));
      p += 16;
    } while (p <= limit);
    h = rotl32(v1, 1) + rotl32(v2, 7) + rotl32(v3, 12) + rotl32(v4, 18);
  } else {
    h = seed + kPrime32_5;
  }
  // The length modulo 2^32, as the specification adds it.
  h += static_cast<uint32_t>(length);
  for (; end - p >= 4; p += 4) {
    h += load32le(p) * kPrime32_3;
    h = rotl32(h, 17) * kPrime32_4;
  }
  for (; p < end; ++p) {
    h += static_cast<uint32_t>(*p) * kPrime32_5;
    h = rotl32(h, 11) * kPrime32_1;
  }
  // Avalanche.
  h ^= h >> 15;
  h *= kPrime32_2;
  h ^= h >> 13;
  h *= kPrime32_3;
  h ^= h >> 16;
  return h;
}

}  // namespace migstream
