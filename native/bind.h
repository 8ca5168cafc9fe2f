// What the bind_*.cc files share: the argument readers that check a raw call again before any
// memory is touched (throwing the JS side's ArgumentError, never asserting), the per-load state
// they reach (held by addon.cc), and the Register… functions addon.cc calls at each load.
//
// src/native/ checks every argument first; these checks repeat them so that a direct call on
// the raw addon with bad arguments throws and never reads or writes out of range.
#ifndef MIGSTREAM_NATIVE_BIND_H_
#define MIGSTREAM_NATIVE_BIND_H_

#include <napi.h>

#include <cmath>
#include <cstdint>
#include <string>

namespace migstream {

class CodecContexts;

namespace binding {

// --- per-load state (addon.cc) -------------------------------------------------------------

// Throws the ArgumentError class init() registered for this load (a TypeError before init());
// returns an empty value for the caller to return.
Napi::Value Fail(Napi::Env env, const std::string& message);

// This load's zstd contexts (codecs.h): one per thread, freed when its environment goes.
CodecContexts& Codecs(Napi::Env env);

// --- the families, one file each, as src/native/*.ts wraps them -----------------------------

void RegisterHBitmap(Napi::Object exports);  // bind_hbitmap.cc: hbitmapBytes, hb*
void RegisterPages(Napi::Object exports);    // bind_pages.cc: isAllZero, findZeroPages, hashPages
void RegisterCodec(Napi::Object exports);    // bind_codec.cc: xxh32, xxh64Low32, codecVersions,
                                             // zstd* / lz4*, frameDecode
void RegisterRing(Napi::Object exports);     // bind_ring.cc: ringCopy, dedupStore
void RegisterFd(Napi::Object exports);       // bind_fd.cc: readerGone, widenPipe, writeRanges

// --- defining an export ---------------------------------------------------------------------

using Entry = Napi::Value (*)(const Napi::CallbackInfo& info);

template <Entry fn>
napi_value Call(napi_env env, napi_callback_info info) {
  Napi::CallbackInfo call(env, info);
  return fn(call);
}

// One exported function, defined as Napi::Addon's InstanceMethod defines one (a `method` for
// napi_define_properties, napi_default: read-only, not enumerable, no function name), so the
// exports object looks as it did when every entry point was a method of one class. The entry
// point is a template argument: nothing is allocated per function.
template <Entry fn>
Napi::PropertyDescriptor Method(const char* name) {
  napi_property_descriptor descriptor{};
  descriptor.utf8name = name;
  descriptor.method = Call<fn>;
  descriptor.attributes = napi_default;
  return Napi::PropertyDescriptor(descriptor);
}

// --- argument readers: each returns false after throwing ------------------------------------

struct Bytes {
  uint8_t* data = nullptr;
  size_t length = 0;
};

// Largest integer a JS number holds exactly.
constexpr double kMaxSafe = 9007199254740991.0;

// A number as JS would print it, for messages.
inline std::string number_text(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
  if (value == std::floor(value) && std::fabs(value) <= kMaxSafe) {
    return std::to_string(static_cast<int64_t>(value));
  }
  return std::to_string(value);
}

inline bool Count(const Napi::CallbackInfo& info, size_t expected, const char* fn) {
  if (info.Length() >= expected) return true;
  Fail(info.Env(),
       std::string(fn) + ": expected " + std::to_string(expected) + " arguments, got " + std::to_string(info.Length()));
  return false;
}

// An integer in [0, max].
inline bool Uint(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* what, uint64_t max,
                 uint64_t* out) {
  Napi::Value value = info[i];
  if (!value.IsNumber()) {
    Fail(info.Env(), std::string(fn) + ": " + what + " must be a number");
    return false;
  }
  const double number = value.As<Napi::Number>().DoubleValue();
  if (!(number >= 0 && number <= kMaxSafe && number == std::floor(number)) || static_cast<uint64_t>(number) > max) {
    Fail(info.Env(),
         std::string(fn) + ": " + what + " " + number_text(number) + " is not an integer in 0.." + std::to_string(max));
    return false;
  }
  *out = static_cast<uint64_t>(number);
  return true;
}

// A typed array of `type` at info[i]; `length` is its element count. Views of ArrayBuffers
// and SharedArrayBuffers alike, at any byte offset.
inline bool ReadTyped(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* what,
                      napi_typedarray_type type, const char* type_name, Bytes* out) {
  Napi::Value value = info[i];
  napi_typedarray_type actual;
  size_t length = 0;
  void* data = nullptr;
  if (!value.IsTypedArray() ||
      napi_get_typedarray_info(info.Env(), value, &actual, &length, &data, nullptr, nullptr) != napi_ok ||
      actual != type) {
    Fail(info.Env(), std::string(fn) + ": " + what + " must be a " + type_name);
    return false;
  }
  if (length != 0 && data == nullptr) {
    Fail(info.Env(), std::string(fn) + ": " + what + " has no memory (detached?)");
    return false;
  }
  out->data = static_cast<uint8_t*>(data);
  out->length = length;
  return true;
}

}  // namespace binding
}  // namespace migstream

#endif  // MIGSTREAM_NATIVE_BIND_H_
