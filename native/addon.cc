// The migstream native addon: the N-API boundary over hbitmap.h and pages.h.
//
// src/native/ (exported through src/native.ts) is the only caller meant to exist. It checks
// every argument and throws a typed ArgumentError first; the checks here repeat them anyway,
// before any memory is touched, so a direct call with bad arguments throws (the same
// ArgumentError class, handed over by init()) and never reads or writes out of range. Nothing
// asserts or aborts.
//
// Memory: the addon allocates nothing but the codec libraries' contexts. HBitmap words and the
// compressor's payload ring live in ArrayBuffers the JS side allocated (so the garbage collector sees and
// frees them), outputs are typed arrays the caller passes in, and no pointer is kept past a
// call. The zstd contexts (codecs.h) are per-load state, freed with it.
//
// State: one Addon object per load (main thread and every worker_thread load their own),
// stored as the environment's instance data, which Node deletes when the environment is torn
// down (a worker exits); that finalizer is the cleanup hook that releases the references kept.
// `liveInstances()` counts them across the process so tests can see workers clean up.
#include <napi.h>

#include <atomic>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <uv.h>

#include "codecs.h"
#include "dedup.h"
#include "fd.h"
#include "gather.h"
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

// frameDecode's work (codecs.h frame_decode) on libuv's thread pool, as sharp queues its work:
// everything the pool thread needs is copied into this object on the main thread first, and
// only OnOK touches JS again. The stored and raw arrays are referenced until then, so their
// memory stays alive; the caller leaves them alone until the promise settles.
class FrameDecodeWork : public Napi::AsyncWorker {
 public:
  FrameDecodeWork(Napi::Env env, Napi::Promise::Deferred deferred, Napi::Uint8Array stored, Napi::Uint8Array raw,
                  int codec, migstream::FrameChecksum checksum, uint32_t stored_checksum, uint32_t raw_checksum)
      : Napi::AsyncWorker(env, "migstream.frameDecode"),
        deferred_(deferred),
        stored_ref_(Napi::Persistent(stored)),
        raw_ref_(Napi::Persistent(raw)),
        stored_(stored.Data()),
        stored_length_(stored.ByteLength()),
        raw_(raw.Data()),
        raw_length_(raw.ByteLength()),
        codec_(codec),
        checksum_(checksum),
        stored_checksum_(stored_checksum),
        raw_checksum_(raw_checksum) {}

  void Execute() override {
    check_ = migstream::frame_decode(codec_, checksum_, stored_, stored_length_, raw_, raw_length_, stored_checksum_, raw_checksum_);
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object out = Napi::Object::New(env);
    out.Set("status", Napi::Number::New(env, static_cast<double>(check_.status)));
    out.Set("actual", Napi::Number::New(env, check_.actual));
    out.Set("message", Napi::String::New(env, check_.message));
    deferred_.Resolve(out);
  }

  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::Reference<Napi::Uint8Array> stored_ref_;
  Napi::Reference<Napi::Uint8Array> raw_ref_;
  const uint8_t* stored_;
  size_t stored_length_;
  uint8_t* raw_;
  size_t raw_length_;
  int codec_;
  migstream::FrameChecksum checksum_;
  uint32_t stored_checksum_;
  uint32_t raw_checksum_;
  migstream::FrameCheck check_;
};

// writeRanges's write (gather.h write_all) on libuv's thread pool: the ranges were checked and
// turned into iovecs on the main thread; each buffer they point into is referenced until the
// promise settles, and the caller leaves the buffers alone until then.
class WriteRangesWork : public Napi::AsyncWorker {
 public:
  WriteRangesWork(Napi::Env env, Napi::Promise::Deferred deferred, int fd, std::vector<struct iovec> iov,
                  std::vector<Napi::Reference<Napi::Uint8Array>> buffers)
      : Napi::AsyncWorker(env, "migstream.writeRanges"),
        deferred_(deferred),
        fd_(fd),
        iov_(std::move(iov)),
        buffers_(std::move(buffers)) {}

  void Execute() override { error_ = migstream::write_all(fd_, iov_.data(), iov_.size(), &written_); }

  void OnOK() override {
    Napi::Env env = Env();
    if (error_ == 0) {
      deferred_.Resolve(Napi::Number::New(env, static_cast<double>(written_)));
      return;
    }
    // As Node's fs errors look: code "EPIPE", message "EPIPE: broken pipe, writev".
    const int uv_code = uv_translate_sys_error(error_);
    const std::string code = uv_err_name(uv_code);
    Napi::Error error = Napi::Error::New(env, code + ": " + uv_strerror(uv_code) + ", writev");
    error.Set("code", Napi::String::New(env, code));
    error.Set("errno", Napi::Number::New(env, uv_code));
    error.Set("syscall", Napi::String::New(env, "writev"));
    error.Set("written", Napi::Number::New(env, static_cast<double>(written_)));
    deferred_.Reject(error.Value());
  }

  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  int fd_;
  std::vector<struct iovec> iov_;
  std::vector<Napi::Reference<Napi::Uint8Array>> buffers_;
  int error_ = 0;
  size_t written_ = 0;
};

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
                             InstanceMethod("xxh32", &Addon::Xxh32),
                             InstanceMethod("xxh64Low32", &Addon::Xxh64Low32),
                             InstanceMethod("codecVersions", &Addon::CodecVersions),
                             InstanceMethod("zstdCompress", &Addon::ZstdCompress),
                             InstanceMethod("zstdDecompress", &Addon::ZstdDecompress),
                             InstanceMethod("lz4Compress", &Addon::Lz4Compress),
                             InstanceMethod("lz4Decompress", &Addon::Lz4Decompress),
                             InstanceMethod("frameDecode", &Addon::FrameDecode),
                             InstanceMethod("ringCopy", &Addon::RingCopy),
                             InstanceMethod("dedupStore", &Addon::DedupStore),
                             InstanceMethod("readerGone", &Addon::ReaderGone),
                             InstanceMethod("widenPipe", &Addon::WidenPipe),
                             InstanceMethod("writeRanges", &Addon::WriteRanges),
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

  // --- checksums and codecs ------------------------------------------------------------------

  // xxh32(bytes: Uint8Array, seed): XXH32 as an unsigned 32-bit number.
  Napi::Value Xxh32(const Napi::CallbackInfo& info) {
    Bytes in;
    uint64_t seed;
    if (!Count(info, 2, "xxh32") || !ReadTyped(info, 0, "xxh32", "buffer", napi_uint8_array, "Uint8Array", &in) ||
        !Uint(info, 1, "xxh32", "seed", 0xffffffffULL, &seed)) {
      return Napi::Value();
    }
    return Napi::Number::New(info.Env(), migstream::xxh32(in.data, in.length, static_cast<uint32_t>(seed)));
  }

  // xxh64Low32(bytes: Uint8Array): the low 32 bits of XXH64 (seed 0), the checksum of container
  // version 2.
  Napi::Value Xxh64Low32(const Napi::CallbackInfo& info) {
    Bytes in;
    if (!Count(info, 1, "xxh64Low32") || !ReadTyped(info, 0, "xxh64Low32", "buffer", napi_uint8_array, "Uint8Array", &in)) {
      return Napi::Value();
    }
    return Napi::Number::New(info.Env(), static_cast<uint32_t>(migstream::xxh64(in.data, in.length, 0)));
  }

  // writeRanges(fd, buffers: Uint8Array[], ranges: Float64Array, count): a Promise of the bytes
  // written, once all `count` ranges (buffer index, offset, length triples) went out in order
  // as gathered writes on libuv's thread pool (gather.h). Rejects like Node's fs errors (code
  // "EPIPE", …). Every range is checked against its buffer here, before anything is written.
  Napi::Value WriteRanges(const Napi::CallbackInfo& info) {
    const char* fn = "writeRanges";
    uint64_t fd, count;
    Bytes ranges;
    if (!Count(info, 4, fn) || !Uint(info, 0, fn, "fd", INT_MAX, &fd) ||
        !ReadTyped(info, 2, fn, "ranges", napi_float64_array, "Float64Array", &ranges) ||
        !Uint(info, 3, fn, "count", ranges.length / 3, &count)) {
      return Napi::Value();
    }
    if (!info[1].IsArray()) return Fail(info.Env(), "writeRanges: buffers must be an Array of Uint8Arrays");
    Napi::Array list = info[1].As<Napi::Array>();
    const uint32_t buffer_count = list.Length();
    std::vector<Bytes> views(buffer_count);
    std::vector<Napi::Reference<Napi::Uint8Array>> refs;
    refs.reserve(buffer_count);
    for (uint32_t i = 0; i < buffer_count; ++i) {
      Napi::Value value = list.Get(i);
      napi_typedarray_type type;
      size_t length = 0;
      void* data = nullptr;
      if (!value.IsTypedArray() || napi_get_typedarray_info(info.Env(), value, &type, &length, &data, nullptr, nullptr) != napi_ok ||
          type != napi_uint8_array || (length != 0 && data == nullptr)) {
        return Fail(info.Env(), "writeRanges: buffers[" + std::to_string(i) + "] must be a Uint8Array");
      }
      views[i] = Bytes{static_cast<uint8_t*>(data), length};
      refs.push_back(Napi::Persistent(value.As<Napi::Uint8Array>()));
    }
    const double* triples = reinterpret_cast<const double*>(ranges.data);
    std::vector<struct iovec> iov;
    iov.reserve(count);
    for (uint64_t r = 0; r < count; ++r) {
      const double index = triples[3 * r], offset = triples[3 * r + 1], length = triples[3 * r + 2];
      const bool integers = index == std::floor(index) && offset == std::floor(offset) && length == std::floor(length);
      if (!(integers && index >= 0 && index < buffer_count && offset >= 0 && length >= 0) ||
          offset + length > static_cast<double>(views[static_cast<size_t>(index)].length)) {
        return Fail(info.Env(), "writeRanges: range " + std::to_string(r) + " (buffer " + number_text(index) + ", offset " +
                                    number_text(offset) + ", length " + number_text(length) + ") lies outside its buffer");
      }
      if (length == 0) continue;
      const Bytes& view = views[static_cast<size_t>(index)];
      iov.push_back({view.data + static_cast<size_t>(offset), static_cast<size_t>(length)});
    }
    Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(info.Env());
    auto* work = new WriteRangesWork(info.Env(), deferred, static_cast<int>(fd), std::move(iov), std::move(refs));
    // Node deletes the work after OnOK / OnError.
    work->Queue();
    return deferred.Promise();
  }

  // readerGone(fd): whether fd is a pipe or socket nobody reads any more (fd.h).
  Napi::Value ReaderGone(const Napi::CallbackInfo& info) {
    uint64_t fd;
    if (!Count(info, 1, "readerGone") || !Uint(info, 0, "readerGone", "fd", INT_MAX, &fd)) return Napi::Value();
    return Napi::Boolean::New(info.Env(), migstream::reader_gone(static_cast<int>(fd)));
  }

  // widenPipe(fd, bytes): the pipe's capacity after asking for `bytes`, or -errno (fd.h).
  Napi::Value WidenPipe(const Napi::CallbackInfo& info) {
    uint64_t fd;
    uint64_t bytes;
    if (!Count(info, 2, "widenPipe") || !Uint(info, 0, "widenPipe", "fd", INT_MAX, &fd) ||
        !Uint(info, 1, "widenPipe", "bytes", INT_MAX, &bytes)) {
      return Napi::Value();
    }
    return Napi::Number::New(info.Env(), migstream::widen_pipe(static_cast<int>(fd), static_cast<int>(bytes)));
  }

  // codecVersions(): { zstd, lz4 }: the library versions loaded (0: not available).
  Napi::Value CodecVersions(const Napi::CallbackInfo& info) {
    const migstream::CodecVersions& versions = migstream::codec_versions();
    Napi::Object out = Napi::Object::New(info.Env());
    out.Set("zstd", Napi::Number::New(info.Env(), versions.zstd));
    out.Set("lz4", Napi::Number::New(info.Env(), versions.lz4));
    return out;
  }

  // Reads (src: Uint8Array, dst: Uint8Array) at info[0], info[1]: distinct, non-overlapping
  // memory, dst writable.
  bool SourceAndDestination(const Napi::CallbackInfo& info, const char* fn, Bytes* src, Bytes* dst) {
    return SourceAndDestinationAt(info, 0, fn, src, dst);
  }

  bool SourceAndDestinationAt(const Napi::CallbackInfo& info, size_t at, const char* fn, Bytes* src, Bytes* dst) {
    if (!ReadTyped(info, at, fn, "source", napi_uint8_array, "Uint8Array", src) ||
        !ReadTyped(info, at + 1, fn, "destination", napi_uint8_array, "Uint8Array", dst)) {
      return false;
    }
    const uintptr_t s = reinterpret_cast<uintptr_t>(src->data);
    const uintptr_t d = reinterpret_cast<uintptr_t>(dst->data);
    if (src->length != 0 && dst->length != 0 && s < d + dst->length && d < s + src->length) {
      Fail(info.Env(), std::string(fn) + ": source and destination overlap");
      return false;
    }
    return true;
  }

  // A codec's answer: bytes written, -1 when the output did not fit, or a thrown Error (not an
  // ArgumentError: the input is damaged or the library failed).
  static Napi::Value Result(Napi::Env env, const migstream::CodecResult& result) {
    if (!result.error.empty()) {
      Napi::Error::New(env, result.error).ThrowAsJavaScriptException();
      return Napi::Value();
    }
    return Napi::Number::New(env, result.fits ? static_cast<double>(result.bytes) : -1.0);
  }

  bool Available(const Napi::CallbackInfo& info, const char* fn, unsigned version, const char* library) {
    if (version != 0) return true;
    Fail(info.Env(), std::string(fn) + ": " + library + " is not available (see codecVersions())");
    return false;
  }

  // zstdCompress(src, dst, level): one zstd frame in dst; its length, or -1 when it does not fit.
  Napi::Value ZstdCompress(const Napi::CallbackInfo& info) {
    Bytes src, dst;
    if (!Count(info, 3, "zstdCompress") || !SourceAndDestination(info, "zstdCompress", &src, &dst)) return Napi::Value();
    Napi::Value value = info[2];
    const double level = value.IsNumber() ? value.As<Napi::Number>().DoubleValue() : std::nan("");
    // ZSTD_minCLevel() is -(1 << 17); ZSTD_maxCLevel() 22.
    if (!(level >= -131072 && level <= 22 && level == std::floor(level))) {
      return Fail(info.Env(), "zstdCompress: level must be an integer in -131072..22");
    }
    if (!Available(info, "zstdCompress", migstream::codec_versions().zstd, "libzstd")) return Napi::Value();
    return Result(info.Env(), codecs_.zstd_compress(src.data, src.length, dst.data, dst.length, static_cast<int>(level)));
  }

  // zstdDecompress(src, dst): the frame's bytes in dst; their length (throws when damaged or
  // larger than dst).
  Napi::Value ZstdDecompress(const Napi::CallbackInfo& info) {
    Bytes src, dst;
    if (!Count(info, 2, "zstdDecompress") || !SourceAndDestination(info, "zstdDecompress", &src, &dst) ||
        !Available(info, "zstdDecompress", migstream::codec_versions().zstd, "libzstd")) {
      return Napi::Value();
    }
    return Result(info.Env(), codecs_.zstd_decompress(src.data, src.length, dst.data, dst.length));
  }

  bool Lz4Sizes(const Napi::CallbackInfo& info, const char* fn, const Bytes& src, const Bytes& dst) {
    if (src.length <= migstream::kLz4MaxInput && dst.length <= migstream::kLz4MaxInput) return true;
    Fail(info.Env(), std::string(fn) + ": lz4 blocks hold at most " + std::to_string(migstream::kLz4MaxInput) + " bytes");
    return false;
  }

  // lz4Compress(src, dst): an LZ4 block in dst; its length, or -1 when it does not fit.
  Napi::Value Lz4Compress(const Napi::CallbackInfo& info) {
    Bytes src, dst;
    if (!Count(info, 2, "lz4Compress") || !SourceAndDestination(info, "lz4Compress", &src, &dst) ||
        !Lz4Sizes(info, "lz4Compress", src, dst) ||
        !Available(info, "lz4Compress", migstream::codec_versions().lz4, "liblz4")) {
      return Napi::Value();
    }
    return Result(info.Env(), migstream::lz4_compress(src.data, src.length, dst.data, dst.length));
  }

  // lz4Decompress(src, dst): the block's bytes in dst; their length (throws when malformed or
  // larger than dst).
  Napi::Value Lz4Decompress(const Napi::CallbackInfo& info) {
    Bytes src, dst;
    if (!Count(info, 2, "lz4Decompress") || !SourceAndDestination(info, "lz4Decompress", &src, &dst) ||
        !Lz4Sizes(info, "lz4Decompress", src, dst) ||
        !Available(info, "lz4Decompress", migstream::codec_versions().lz4, "liblz4")) {
      return Napi::Value();
    }
    return Result(info.Env(), migstream::lz4_decompress(src.data, src.length, dst.data, dst.length));
  }

  // frameDecode(codec, stored: Uint8Array, raw: Uint8Array, storedChecksum, rawChecksum,
  // checksum): a Promise of {status, actual, message} (codecs.h FrameCheck) for one container
  // frame, checked and decompressed into `raw` (exactly the raw length) on libuv's thread pool.
  // zstd and lz4; checksum 1 XXH32, 2 XXH64's low 32 bits (codecs.h FrameChecksum).
  Napi::Value FrameDecode(const Napi::CallbackInfo& info) {
    const char* fn = "frameDecode";
    uint64_t codec, stored_checksum, raw_checksum, checksum;
    Bytes stored, raw;
    if (!Count(info, 6, fn) || !Uint(info, 0, fn, "codec", 3, &codec) ||
        !SourceAndDestinationAt(info, 1, fn, &stored, &raw) ||
        !Uint(info, 3, fn, "storedChecksum", 0xffffffffULL, &stored_checksum) ||
        !Uint(info, 4, fn, "rawChecksum", 0xffffffffULL, &raw_checksum) || !Uint(info, 5, fn, "checksum", 2, &checksum)) {
      return Napi::Value();
    }
    if (checksum < 1) return Fail(info.Env(), "frameDecode: checksum must be 1 (XXH32) or 2 (XXH64, low 32 bits), got 0");
    const migstream::CodecVersions& versions = migstream::codec_versions();
    if (codec == migstream::kCodecZstd) {
      if (!Available(info, fn, versions.zstd, "libzstd")) return Napi::Value();
    } else if (codec == migstream::kCodecLz4) {
      if (!Available(info, fn, versions.lz4, "liblz4") || !Lz4Sizes(info, fn, stored, raw)) return Napi::Value();
    } else {
      return Fail(info.Env(), "frameDecode: codec must be 1 (lz4) or 2 (zstd), got " + std::to_string(codec));
    }
    Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(info.Env());
    auto* work = new FrameDecodeWork(info.Env(), deferred, info[1].As<Napi::Uint8Array>(), info[2].As<Napi::Uint8Array>(),
                                     static_cast<int>(codec), static_cast<migstream::FrameChecksum>(checksum),
                                     static_cast<uint32_t>(stored_checksum), static_cast<uint32_t>(raw_checksum));
    // Node deletes the work after OnOK / OnError.
    work->Queue();
    return deferred.Promise();
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
    if (Overlap(ring.data + at, src.length, src.data, src.length)) return Fail(info.Env(), "ringCopy: source lies in the destination");
    if (src.length != 0) std::memcpy(ring.data + at, src.data, src.length);
    return info.Env().Undefined();
  }

  static bool Overlap(const uint8_t* a, size_t a_length, const uint8_t* b, size_t b_length) {
    const uintptr_t x = reinterpret_cast<uintptr_t>(a);
    const uintptr_t y = reinterpret_cast<uintptr_t>(b);
    return a_length != 0 && b_length != 0 && x < y + b_length && y < x + a_length;
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
    if (window_pages == 0 || page_size == 0) return Fail(info.Env(), "dedupStore: positions and pageSize must not be empty");
    if (page.length != page_size) {
      return Fail(info.Env(), "dedupStore: page of " + std::to_string(page.length) + " bytes, expected " + std::to_string(page_size));
    }
    if (checksum.length < 1) return Fail(info.Env(), "dedupStore: checksum needs one element");
    if (ring.length < page_size || write % ring.length + page_size > ring.length) {
      return Fail(info.Env(), "dedupStore: a page at " + std::to_string(write) + " does not fit before the end of the ring of " +
                                  std::to_string(ring.length) + " bytes");
    }
    const size_t bucket_bytes = sizeof(migstream::DedupEntry) * migstream::kDedupWays;
    const size_t buckets = table.length / bucket_bytes;
    if (buckets == 0 || (buckets & (buckets - 1)) != 0 || table.length % bucket_bytes != 0) {
      return Fail(info.Env(), "dedupStore: table must hold a power of two of " + std::to_string(bucket_bytes) + "-byte buckets");
    }
    if (reinterpret_cast<uintptr_t>(table.data) % alignof(migstream::DedupEntry) != 0 ||
        reinterpret_cast<uintptr_t>(positions.data) % alignof(double) != 0) {
      return Fail(info.Env(), "dedupStore: table or positions is not 8-byte aligned");
    }
    if (Overlap(page.data, page.length, ring.data, ring.length) || Overlap(table.data, table.length, ring.data, ring.length) ||
        Overlap(positions.data, positions.length * 8, ring.data, ring.length) ||
        Overlap(table.data, table.length, positions.data, positions.length * 8)) {
      return Fail(info.Env(), "dedupStore: ring, table, positions and page must not overlap");
    }
    const migstream::DedupWindow window{ring.data, ring.length, reinterpret_cast<double*>(positions.data), window_pages,
                                        static_cast<size_t>(page_size), reinterpret_cast<migstream::DedupEntry*>(table.data),
                                        buckets};
    uint32_t sum = 0;
    const uint64_t distance = migstream::dedup_store(window, stored, write, page.data, &sum);
    if (distance > 0) reinterpret_cast<uint32_t*>(checksum.data)[0] = sum;
    return Napi::Number::New(info.Env(), static_cast<double>(distance));
  }

  Napi::FunctionReference argument_error_;
  migstream::CodecContexts codecs_;
};

}  // namespace

NODE_API_ADDON(Addon)
