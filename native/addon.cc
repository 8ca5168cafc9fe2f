// The migstream native addon: the N-API boundary over hbitmap.h and pages.h.
//
// src/native/ (exported through src/native.ts) is the only caller meant to exist. It checks
// every argument and throws a typed ArgumentError first; the checks here repeat them anyway,
// before any memory is touched, so a direct call with bad arguments throws (the same
// ArgumentError class, handed over by init()) and never reads or writes out of range. Nothing
// asserts or aborts.
//
// Memory: the addon allocates nothing. HBitmap words live in an ArrayBuffer the JS side
// allocated (so the garbage collector sees and frees it), outputs are typed arrays the caller
// passes in, and no pointer is kept past a call.
//
// State: one Addon object per load (main thread and every worker_thread load their own),
// stored as the environment's instance data, which Node deletes when the environment is torn
// down (a worker exits); that finalizer is the cleanup hook that releases the references kept.
// `liveInstances()` counts them across the process so tests can see workers clean up.
#include <napi.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <string>

#include "hbitmap.h"
#include "pages.h"

namespace {

using migstream::HBitmapLayout;
using migstream::HBitmapView;
using migstream::kNone;

std::atomic<int64_t> live_instances{0};

// Largest integer a JS number holds exactly.
constexpr double kMaxSafe = 9007199254740991.0;

std::string number_text(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
  if (value == std::floor(value) && std::fabs(value) <= kMaxSafe) {
    return std::to_string(static_cast<int64_t>(value));
  }
  return std::to_string(value);
}

class Addon : public Napi::Addon<Addon> {
 public:
  Addon(Napi::Env env, Napi::Object exports) {
    ++live_instances;
    DefineAddon(exports, {
                             InstanceMethod("init", &Addon::SetErrorClass),
                             InstanceMethod("liveInstances", &Addon::LiveInstances),
                             InstanceMethod("hbitmapBytes", &Addon::HBitmapBytes),
                             InstanceMethod("hbSet", &Addon::HbSet),
                             InstanceMethod("hbReset", &Addon::HbReset),
                             InstanceMethod("hbGet", &Addon::HbGet),
                             InstanceMethod("hbCount", &Addon::HbCount),
                             InstanceMethod("hbNextSet", &Addon::HbNextSet),
                             InstanceMethod("hbNextZero", &Addon::HbNextZero),
                             InstanceMethod("hbDirtyAreas", &Addon::HbDirtyAreas),
                             InstanceMethod("hbMerge", &Addon::HbMerge),
                             InstanceMethod("hbCopy", &Addon::HbCopy),
                             InstanceMethod("hbExport", &Addon::HbExport),
                             InstanceMethod("hbImport", &Addon::HbImport),
                             InstanceMethod("isAllZero", &Addon::IsAllZero),
                             InstanceMethod("findZeroPages", &Addon::FindZeroPages),
                             InstanceMethod("hashPages", &Addon::HashPages),
                         });
    (void)env;
  }

  ~Addon() { --live_instances; }

 private:
  struct Bitmap {
    HBitmapLayout layout;
    uint64_t* words = nullptr;
  };

  struct Bytes {
    uint8_t* data = nullptr;
    size_t length = 0;
  };

  // --- errors -------------------------------------------------------------------------------

  // Throws the registered ArgumentError (a TypeError before init()); returns an empty value for
  // the caller to return.
  Napi::Value Fail(Napi::Env env, const std::string& message) {
    if (!env.IsExceptionPending()) {
      if (!argument_error_.IsEmpty()) {
        Napi::Value error = argument_error_.New({Napi::String::New(env, message)});
        if (!env.IsExceptionPending()) Napi::Error(env, error).ThrowAsJavaScriptException();
      } else {
        Napi::TypeError::New(env, message).ThrowAsJavaScriptException();
      }
    }
    return Napi::Value();
  }

  // --- argument readers: each returns false after throwing ------------------------------------

  bool Count(const Napi::CallbackInfo& info, size_t expected, const char* fn) {
    if (info.Length() >= expected) return true;
    Fail(info.Env(), std::string(fn) + ": expected " + std::to_string(expected) + " arguments, got " +
                         std::to_string(info.Length()));
    return false;
  }

  // An integer in [0, max].
  bool Uint(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* what, uint64_t max,
            uint64_t* out) {
    Napi::Value value = info[i];
    if (!value.IsNumber()) {
      Fail(info.Env(), std::string(fn) + ": " + what + " must be a number");
      return false;
    }
    const double number = value.As<Napi::Number>().DoubleValue();
    if (!(number >= 0 && number <= kMaxSafe && number == std::floor(number)) ||
        static_cast<uint64_t>(number) > max) {
      Fail(info.Env(), std::string(fn) + ": " + what + " " + number_text(number) + " is not an integer in 0.." +
                           std::to_string(max));
      return false;
    }
    *out = static_cast<uint64_t>(number);
    return true;
  }

  // An ArrayBuffer at info[i] holding a bitmap of info[i + 1] bits.
  bool ReadBitmap(const Napi::CallbackInfo& info, size_t i, const char* fn, Bitmap* out) {
    uint64_t bits;
    if (!Uint(info, i + 1, fn, "size", migstream::kMaxBits, &bits)) return false;
    Napi::Value value = info[i];
    if (!value.IsArrayBuffer()) {
      Fail(info.Env(), std::string(fn) + ": bitmap storage must be an ArrayBuffer");
      return false;
    }
    Napi::ArrayBuffer buffer = value.As<Napi::ArrayBuffer>();
    HBitmapLayout::compute(bits, &out->layout);
    const size_t bytes = buffer.ByteLength();
    void* data = buffer.Data();
    if (data == nullptr || bytes / 8 < out->layout.total_words) {
      Fail(info.Env(), std::string(fn) + ": bitmap storage of " + std::to_string(bytes) + " bytes is too small for " +
                           std::to_string(bits) + " bits (" + std::to_string(out->layout.total_words * 8) +
                           " bytes needed)");
      return false;
    }
    if (reinterpret_cast<uintptr_t>(data) % alignof(uint64_t) != 0) {
      Fail(info.Env(), std::string(fn) + ": bitmap storage is not 8-byte aligned");
      return false;
    }
    out->words = static_cast<uint64_t*>(data);
    return true;
  }

  // A typed array of `type` at info[i]; `length` is its element count. Views of ArrayBuffers
  // and SharedArrayBuffers alike, at any byte offset.
  bool ReadTyped(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* what, napi_typedarray_type type,
                 const char* type_name, Bytes* out) {
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

  // [start, end) from info[i] (start) and info[i + 1] (count or end), inside the bitmap.
  bool Range(const Napi::CallbackInfo& info, size_t i, const char* fn, const Bitmap& bitmap, uint64_t* start,
             uint64_t* end) {
    const uint64_t bits = bitmap.layout.bits;
    uint64_t count;
    if (!Uint(info, i, fn, "start", bits, start) || !Uint(info, i + 1, fn, "count", bits, &count)) return false;
    if (count > bits - *start) {
      Fail(info.Env(), std::string(fn) + ": range " + std::to_string(*start) + " + " + std::to_string(count) +
                           " exceeds the bitmap size " + std::to_string(bits));
      return false;
    }
    *end = *start + count;
    return true;
  }

  static Napi::Value Found(Napi::Env env, uint64_t position) {
    return Napi::Number::New(env, position == kNone ? -1.0 : static_cast<double>(position));
  }

  // --- entry points -------------------------------------------------------------------------

  // init(ArgumentError): the error class to throw.
  Napi::Value SetErrorClass(const Napi::CallbackInfo& info) {
    if (info.Length() < 1 || !info[0].IsFunction()) {
      Napi::TypeError::New(info.Env(), "init: expected the ArgumentError class").ThrowAsJavaScriptException();
      return Napi::Value();
    }
    argument_error_ = Napi::Persistent(info[0].As<Napi::Function>());
    return info.Env().Undefined();
  }

  Napi::Value LiveInstances(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(live_instances.load()));
  }

  // hbitmapBytes(bits): bytes of storage a bitmap of `bits` granules needs.
  Napi::Value HBitmapBytes(const Napi::CallbackInfo& info) {
    uint64_t bits;
    if (!Count(info, 1, "hbitmapBytes") || !Uint(info, 0, "hbitmapBytes", "size", migstream::kMaxBits, &bits)) {
      return Napi::Value();
    }
    HBitmapLayout layout;
    HBitmapLayout::compute(bits, &layout);
    return Napi::Number::New(info.Env(), static_cast<double>(layout.total_words * 8));
  }

  // hbSet(buffer, bits, start, count): bits newly set.
  Napi::Value HbSet(const Napi::CallbackInfo& info) {
    Bitmap bitmap;
    uint64_t start, end;
    if (!Count(info, 4, "hbSet") || !ReadBitmap(info, 0, "hbSet", &bitmap) ||
        !Range(info, 2, "hbSet", bitmap, &start, &end)) {
      return Napi::Value();
    }
    HBitmapView view(bitmap.layout, bitmap.words);
    return Napi::Number::New(info.Env(), static_cast<double>(view.set(start, end)));
  }

  // hbReset(buffer, bits, start, count): bits newly cleared.
  Napi::Value HbReset(const Napi::CallbackInfo& info) {
    Bitmap bitmap;
    uint64_t start, end;
    if (!Count(info, 4, "hbReset") || !ReadBitmap(info, 0, "hbReset", &bitmap) ||
        !Range(info, 2, "hbReset", bitmap, &start, &end)) {
      return Napi::Value();
    }
    HBitmapView view(bitmap.layout, bitmap.words);
    return Napi::Number::New(info.Env(), static_cast<double>(view.reset(start, end)));
  }

  // hbGet(buffer, bits, index).
  Napi::Value HbGet(const Napi::CallbackInfo& info) {
    Bitmap bitmap;
    uint64_t index;
    if (!Count(info, 3, "hbGet") || !ReadBitmap(info, 0, "hbGet", &bitmap)) return Napi::Value();
    if (bitmap.layout.bits == 0) return Fail(info.Env(), "hbGet: index out of range of an empty bitmap");
    if (!Uint(info, 2, "hbGet", "index", bitmap.layout.bits - 1, &index)) return Napi::Value();
    HBitmapView view(bitmap.layout, bitmap.words);
    return Napi::Boolean::New(info.Env(), view.get(index));
  }

  // hbCount(buffer, bits, start, count): set bits in the range.
  Napi::Value HbCount(const Napi::CallbackInfo& info) {
    Bitmap bitmap;
    uint64_t start, end;
    if (!Count(info, 4, "hbCount") || !ReadBitmap(info, 0, "hbCount", &bitmap) ||
        !Range(info, 2, "hbCount", bitmap, &start, &end)) {
      return Napi::Value();
    }
    HBitmapView view(bitmap.layout, bitmap.words);
    return Napi::Number::New(info.Env(), static_cast<double>(view.count(start, end)));
  }

  // hbNextSet(buffer, bits, from, count): first set bit in [from, from + count), or -1.
  Napi::Value HbNextSet(const Napi::CallbackInfo& info) {
    Bitmap bitmap;
    uint64_t start, end;
    if (!Count(info, 4, "hbNextSet") || !ReadBitmap(info, 0, "hbNextSet", &bitmap) ||
        !Range(info, 2, "hbNextSet", bitmap, &start, &end)) {
      return Napi::Value();
    }
    HBitmapView view(bitmap.layout, bitmap.words);
    return Found(info.Env(), view.next_set(start, end));
  }

  // hbNextZero(buffer, bits, from, count): first clear bit in [from, from + count), or -1.
  Napi::Value HbNextZero(const Napi::CallbackInfo& info) {
    Bitmap bitmap;
    uint64_t start, end;
    if (!Count(info, 4, "hbNextZero") || !ReadBitmap(info, 0, "hbNextZero", &bitmap) ||
        !Range(info, 2, "hbNextZero", bitmap, &start, &end)) {
      return Napi::Value();
    }
    HBitmapView view(bitmap.layout, bitmap.words);
    return Found(info.Env(), view.next_zero(start, end));
  }

  // hbDirtyAreas(buffer, bits, from, count, maxLength, out: Float64Array): fills `out` with
  // (start, length) pairs of the dirty areas in [from, from + count), each at most maxLength
  // long, until `out` is full; returns the number of pairs.
  Napi::Value HbDirtyAreas(const Napi::CallbackInfo& info) {
    Bitmap bitmap;
    uint64_t start, end, max_length;
    Bytes out;
    if (!Count(info, 6, "hbDirtyAreas") || !ReadBitmap(info, 0, "hbDirtyAreas", &bitmap) ||
        !Range(info, 2, "hbDirtyAreas", bitmap, &start, &end) ||
        !Uint(info, 4, "hbDirtyAreas", "maxLength", static_cast<uint64_t>(kMaxSafe), &max_length) ||
        !ReadTyped(info, 5, "hbDirtyAreas", "out", napi_float64_array, "Float64Array", &out)) {
      return Napi::Value();
    }
    if (max_length == 0) return Fail(info.Env(), "hbDirtyAreas: maxLength must be at least 1");
    double* pairs = reinterpret_cast<double*>(out.data);
    const size_t capacity = out.length / 2;
    size_t n = 0;
    if (capacity != 0) {
      HBitmapView(bitmap.layout, bitmap.words).for_each_dirty_area(start, end, max_length, [&](uint64_t s, uint64_t l) {
        pairs[2 * n] = static_cast<double>(s);
        pairs[2 * n + 1] = static_cast<double>(l);
        return ++n < capacity;
      });
    }
    return Napi::Number::New(info.Env(), static_cast<double>(n));
  }

  // hbMerge(buffer, bits, otherBuffer, otherBits): ORs the other bitmap in; bits newly set.
  Napi::Value HbMerge(const Napi::CallbackInfo& info) {
    Bitmap bitmap, other;
    if (!Count(info, 4, "hbMerge") || !ReadBitmap(info, 0, "hbMerge", &bitmap) ||
        !ReadBitmap(info, 2, "hbMerge", &other)) {
      return Napi::Value();
    }
    if (bitmap.layout.bits != other.layout.bits) {
      return Fail(info.Env(), "hbMerge: sizes differ (" + std::to_string(bitmap.layout.bits) + " and " +
                                  std::to_string(other.layout.bits) + " bits)");
    }
    HBitmapView view(bitmap.layout, bitmap.words);
    return Napi::Number::New(info.Env(), static_cast<double>(view.merge(HBitmapView(other.layout, other.words))));
  }

  // hbCopy(buffer, bits, sourceBuffer, sourceBits): copies the source's bits into this empty
  // bitmap up to the smaller size (resize); returns the bits copied that are set.
  Napi::Value HbCopy(const Napi::CallbackInfo& info) {
    Bitmap bitmap, source;
    if (!Count(info, 4, "hbCopy") || !ReadBitmap(info, 0, "hbCopy", &bitmap) ||
        !ReadBitmap(info, 2, "hbCopy", &source)) {
      return Napi::Value();
    }
    if (bitmap.words == source.words) return Fail(info.Env(), "hbCopy: source and destination are the same storage");
    HBitmapView view(bitmap.layout, bitmap.words);
    return Napi::Number::New(info.Env(),
                             static_cast<double>(view.copy_from(HBitmapView(source.layout, source.words))));
  }

  // hbExport(buffer, bits, out: Uint8Array of ceil(bits / 8) bytes).
  Napi::Value HbExport(const Napi::CallbackInfo& info) {
    Bitmap bitmap;
    Bytes out;
    if (!Count(info, 3, "hbExport") || !ReadBitmap(info, 0, "hbExport", &bitmap) ||
        !ReadTyped(info, 2, "hbExport", "out", napi_uint8_array, "Uint8Array", &out)) {
      return Napi::Value();
    }
    if (out.length != bitmap.layout.export_bytes()) {
      return Fail(info.Env(), "hbExport: out holds " + std::to_string(out.length) + " bytes, expected " +
                                  std::to_string(bitmap.layout.export_bytes()));
    }
    HBitmapView(bitmap.layout, bitmap.words).export_bytes(out.data);
    return info.Env().Undefined();
  }

  // hbImport(buffer, bits, bytes: Uint8Array of ceil(bits / 8) bytes): replaces the content;
  // returns the number of set bits.
  Napi::Value HbImport(const Napi::CallbackInfo& info) {
    Bitmap bitmap;
    Bytes in;
    if (!Count(info, 3, "hbImport") || !ReadBitmap(info, 0, "hbImport", &bitmap) ||
        !ReadTyped(info, 2, "hbImport", "bytes", napi_uint8_array, "Uint8Array", &in)) {
      return Napi::Value();
    }
    const uint64_t bits = bitmap.layout.bits;
    if (in.length != bitmap.layout.export_bytes()) {
      return Fail(info.Env(), "hbImport: bytes holds " + std::to_string(in.length) + " bytes, expected " +
                                  std::to_string(bitmap.layout.export_bytes()));
    }
    if ((bits & 7) != 0 && (in.data[in.length - 1] >> (bits & 7)) != 0) {
      return Fail(info.Env(), "hbImport: bits at or past the size " + std::to_string(bits) + " are set");
    }
    HBitmapView view(bitmap.layout, bitmap.words);
    return Napi::Number::New(info.Env(), static_cast<double>(view.import_bytes(in.data)));
  }

  // isAllZero(bytes: Uint8Array).
  Napi::Value IsAllZero(const Napi::CallbackInfo& info) {
    Bytes in;
    if (!Count(info, 1, "isAllZero") ||
        !ReadTyped(info, 0, "isAllZero", "buffer", napi_uint8_array, "Uint8Array", &in)) {
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

  Napi::FunctionReference argument_error_;
};

}  // namespace

NODE_API_ADDON(Addon)
