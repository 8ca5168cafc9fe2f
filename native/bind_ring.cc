// The compressor's payload ring (src/native/ring.ts): ringCopy copies bytes in, dedupStore
// hashes, looks up, compares and stores one page (dedup.h).
#include <cstdint>
#include <cstring>
#include <string>

#include "bind.h"
#include "dedup.h"

namespace migstream::binding {
namespace {

// Whether two byte ranges share memory (an empty one shares none).
bool Overlap(const uint8_t* a, size_t a_length, const uint8_t* b, size_t b_length) {
  const uintptr_t x = reinterpret_cast<uintptr_t>(a);
  const uintptr_t y = reinterpret_cast<uintptr_t>(b);
  return a_length != 0 && b_length != 0 && x < y + b_length && y < x + a_length;
}

// ringCopy(ring: Uint8Array, at, src: Uint8Array): copies src to ring[at..] (a plain memcpy,
// also into shared memory, where TypedArray#set may go byte by byte).
Napi::Value RingCopy(const Napi::CallbackInfo& info) {
  Bytes ring, src;
  uint64_t at;
  if (!Count(info, 3, "ringCopy") || !ReadTyped(info, 0, "ringCopy", "ring", napi_uint8_array, "Uint8Array", &ring) ||
      !Uint(info, 1, "ringCopy", "at", ring.length, &at) ||
      !ReadTyped(info, 2, "ringCopy", "source", napi_uint8_array, "Uint8Array", &src)) {
    return Napi::Value();
  }
  if (src.length > ring.length - at) {
    return Fail(info.Env(), "ringCopy: " + std::to_string(src.length) + " bytes at " + std::to_string(at) +
                                " exceed the ring of " + std::to_string(ring.length));
  }
  if (Overlap(ring.data + at, src.length, src.data, src.length))
    return Fail(info.Env(), "ringCopy: source lies in the destination");
  if (src.length != 0) std::memcpy(ring.data + at, src.data, src.length);
  return info.Env().Undefined();
}

// dedupStore(ring: Uint8Array, table: Uint8Array, positions: Float64Array, pageSize, stored,
// write, page: Uint8Array, checksum: Uint32Array): the distance back to an equal stored page
// (checksum[0] = the low 32 bits of its XXH64), or 0 after copying the page into the ring at logical position
// `write` and recording it as stored page `stored` (dedup.h). The window is positions.length
// pages.
Napi::Value DedupStore(const Napi::CallbackInfo& info) {
  const char* fn = "dedupStore";
  Bytes ring, table, positions, page, checksum;
  uint64_t page_size, stored, write;
  if (!Count(info, 8, fn) || !ReadTyped(info, 0, fn, "ring", napi_uint8_array, "Uint8Array", &ring) ||
      !ReadTyped(info, 1, fn, "table", napi_uint8_array, "Uint8Array", &table) ||
      !ReadTyped(info, 2, fn, "positions", napi_float64_array, "Float64Array", &positions) ||
      !Uint(info, 3, fn, "pageSize", uint64_t{1} << 20, &page_size) ||
      !Uint(info, 4, fn, "stored", static_cast<uint64_t>(kMaxSafe), &stored) ||
      !Uint(info, 5, fn, "write", static_cast<uint64_t>(kMaxSafe), &write) ||
      !ReadTyped(info, 6, fn, "page", napi_uint8_array, "Uint8Array", &page) ||
      !ReadTyped(info, 7, fn, "checksum", napi_uint32_array, "Uint32Array", &checksum)) {
    return Napi::Value();
  }
  const size_t window_pages = positions.length;
  if (window_pages == 0 || page_size == 0)
    return Fail(info.Env(), "dedupStore: positions and pageSize must not be empty");
  if (page.length != page_size) {
    return Fail(info.Env(),
                "dedupStore: page of " + std::to_string(page.length) + " bytes, expected " + std::to_string(page_size));
  }
  if (checksum.length < 1) return Fail(info.Env(), "dedupStore: checksum needs one element");
  if (ring.length < page_size || write % ring.length + page_size > ring.length) {
    return Fail(info.Env(), "dedupStore: a page at " + std::to_string(write) +
                                " does not fit before the end of the ring of " + std::to_string(ring.length) +
                                " bytes");
  }
  const size_t bucket_bytes = sizeof(migstream::DedupEntry) * migstream::kDedupWays;
  const size_t buckets = table.length / bucket_bytes;
  if (buckets == 0 || (buckets & (buckets - 1)) != 0 || table.length % bucket_bytes != 0) {
    return Fail(info.Env(),
                "dedupStore: table must hold a power of two of " + std::to_string(bucket_bytes) + "-byte buckets");
  }
  if (reinterpret_cast<uintptr_t>(table.data) % alignof(migstream::DedupEntry) != 0 ||
      reinterpret_cast<uintptr_t>(positions.data) % alignof(double) != 0) {
    return Fail(info.Env(), "dedupStore: table or positions is not 8-byte aligned");
  }
  if (Overlap(page.data, page.length, ring.data, ring.length) ||
      Overlap(table.data, table.length, ring.data, ring.length) ||
      Overlap(positions.data, positions.length * 8, ring.data, ring.length) ||
      Overlap(table.data, table.length, positions.data, positions.length * 8)) {
    return Fail(info.Env(), "dedupStore: ring, table, positions and page must not overlap");
  }
  const migstream::DedupWindow window{ring.data,
                                      ring.length,
                                      reinterpret_cast<double*>(positions.data),
                                      window_pages,
                                      static_cast<size_t>(page_size),
                                      reinterpret_cast<migstream::DedupEntry*>(table.data),
                                      buckets};
  uint32_t sum = 0;
  const uint64_t distance = migstream::dedup_store(window, stored, write, page.data, &sum);
  if (distance > 0) reinterpret_cast<uint32_t*>(checksum.data)[0] = sum;
  return Napi::Number::New(info.Env(), static_cast<double>(distance));
}

}  // namespace

void RegisterRing(Napi::Object exports) {
  exports.DefineProperties({
      Method<RingCopy>("ringCopy"),
      Method<DedupStore>("dedupStore"),
  });
}

}  // namespace migstream::binding
