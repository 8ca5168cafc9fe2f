// Small word helpers shared by the native sources: count trailing zeros, population count,
// little-endian loads and stores that are correct at any alignment.
#ifndef MIGSTREAM_NATIVE_BITS_H_
#define MIGSTREAM_NATIVE_BITS_H_

#include <cstdint>
#include <cstring>

namespace migstream {

// Trailing zero bits of a non-zero word.
inline int ctz64(uint64_t x) {
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_ctzll(x);
#else
  int n = 0;
  while ((x & 1) == 0) {
    x >>= 1;
    ++n;
  }
  return n;
#endif
}

// Set bits of a word. A plain SWAR sum: __builtin_popcountll becomes a libgcc call when the
// target does not promise the POPCNT instruction (x86-64 baseline), which is slower than this.
inline uint64_t popcount64(uint64_t x) {
  x = x - ((x >> 1) & 0x5555555555555555ULL);
  x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
  x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
  return (x * 0x0101010101010101ULL) >> 56;
}

constexpr bool kLittleEndian =
#if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    false;
#else
    true;
#endif

inline uint64_t bswap64(uint64_t x) {
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_bswap64(x);
#else
  uint64_t r = 0;
  for (int i = 0; i < 8; ++i) r = (r << 8) | ((x >> (8 * i)) & 0xff);
  return r;
#endif
}

// Loads through memcpy: any alignment, one unaligned move on x86 and arm64.
inline uint64_t load64le(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return kLittleEndian ? v : bswap64(v);
}

inline uint32_t load32le(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return kLittleEndian ? v : static_cast<uint32_t>(bswap64(v) >> 32);
}

inline void store64le(uint8_t* p, uint64_t v) {
  if (!kLittleEndian) v = bswap64(v);
  std::memcpy(p, &v, 8);
}

}  // namespace migstream

#endif  // MIGSTREAM_NATIVE_BITS_H_
