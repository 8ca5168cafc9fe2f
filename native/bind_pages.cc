// Zero-page scan and page hashing (src/native/pages.ts): pages.h over a Uint8Array of whole
// pages, one output element per page.
#include <cstdint>
#include <string>

#include "bind.h"
#include "pages.h"

namespace migstream::binding {
namespace {

// isAllZero(bytes: Uint8Array).
Napi::Value IsAllZero(const Napi::CallbackInfo& info) {
  Bytes in;
  if (!Count(info, 1, "isAllZero") || !ReadTyped(info, 0, "isAllZero", "buffer", napi_uint8_array, "Uint8Array", &in)) {
    return Napi::Value();
  }
  return Napi::Boolean::New(info.Env(), in.length == 0 || migstream::all_zero(in.data, in.length));
}

// Checks (data, pageSize) and an output of at least `pages` elements; sets *pages.
bool Pages(const Napi::CallbackInfo& info, const char* fn, const Bytes& data, const Bytes& out, uint64_t page_size,
           size_t* pages) {
  if (page_size == 0) {
    Fail(info.Env(), std::string(fn) + ": pageSize must be at least 1");
    return false;
  }
  if (data.length % page_size != 0) {
    Fail(info.Env(), std::string(fn) + ": buffer of " + std::to_string(data.length) +
                         " bytes is not a whole number of " + std::to_string(page_size) + "-byte pages");
    return false;
  }
  *pages = static_cast<size_t>(data.length / page_size);
  if (out.length < *pages) {
    Fail(info.Env(), std::string(fn) + ": out holds " + std::to_string(out.length) + " entries, " +
                         std::to_string(*pages) + " pages need one each");
    return false;
  }
  return true;
}

// findZeroPages(bytes, pageSize, out: Uint8Array): out[i] = 1 for zero pages; returns their
// number.
Napi::Value FindZeroPages(const Napi::CallbackInfo& info) {
  Bytes data, out;
  uint64_t page_size;
  size_t pages;
  if (!Count(info, 3, "findZeroPages") ||
      !ReadTyped(info, 0, "findZeroPages", "buffer", napi_uint8_array, "Uint8Array", &data) ||
      !Uint(info, 1, "findZeroPages", "pageSize", uint64_t{1} << 32, &page_size) ||
      !ReadTyped(info, 2, "findZeroPages", "out", napi_uint8_array, "Uint8Array", &out) ||
      !Pages(info, "findZeroPages", data, out, page_size, &pages)) {
    return Napi::Value();
  }
  const uint64_t zero = migstream::find_zero_pages(data.data, page_size, pages, out.data);
  return Napi::Number::New(info.Env(), static_cast<double>(zero));
}

// hashPages(bytes, pageSize, out: BigUint64Array): out[i] = XXH64 of page i.
Napi::Value HashPages(const Napi::CallbackInfo& info) {
  Bytes data, out;
  uint64_t page_size;
  size_t pages;
  if (!Count(info, 3, "hashPages") ||
      !ReadTyped(info, 0, "hashPages", "buffer", napi_uint8_array, "Uint8Array", &data) ||
      !Uint(info, 1, "hashPages", "pageSize", uint64_t{1} << 32, &page_size) ||
      !ReadTyped(info, 2, "hashPages", "out", napi_biguint64_array, "BigUint64Array", &out) ||
      !Pages(info, "hashPages", data, out, page_size, &pages)) {
    return Napi::Value();
  }
  if (reinterpret_cast<uintptr_t>(out.data) % alignof(uint64_t) != 0) {
    return Fail(info.Env(), "hashPages: out is not 8-byte aligned");
  }
  migstream::hash_pages(data.data, page_size, pages, reinterpret_cast<uint64_t*>(out.data));
  return info.Env().Undefined();
}

}  // namespace

void RegisterPages(Napi::Object exports) {
  exports.DefineProperties({
      Method<IsAllZero>("isAllZero"),
      Method<FindZeroPages>("findZeroPages"),
      Method<HashPages>("hashPages"),
  });
}

}  // namespace migstream::binding
