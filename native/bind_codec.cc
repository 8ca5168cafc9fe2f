// Checksums and codecs (src/native/codec.ts): XXH32 and XXH64's low 32 bits (pages.h), zstd and
// lz4 into caller buffers and frameDecode, one container frame checked and decompressed on
// libuv's thread pool (codecs.h).
#include <cmath>
#include <cstdint>
#include <string>

#include "bind.h"
#include "codecs.h"
#include "pages.h"

namespace migstream::binding {
namespace {

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
    check_ = migstream::frame_decode(codec_, checksum_, stored_, stored_length_, raw_, raw_length_, stored_checksum_,
                                     raw_checksum_);
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
  if (!Count(info, 1, "xxh64Low32") ||
      !ReadTyped(info, 0, "xxh64Low32", "buffer", napi_uint8_array, "Uint8Array", &in)) {
    return Napi::Value();
  }
  return Napi::Number::New(info.Env(), static_cast<uint32_t>(migstream::xxh64(in.data, in.length, 0)));
}

// codecVersions(): { zstd, lz4 }: the library versions loaded (0: not available).
Napi::Value CodecVersions(const Napi::CallbackInfo& info) {
  const migstream::CodecVersions& versions = migstream::codec_versions();
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("zstd", Napi::Number::New(info.Env(), versions.zstd));
  out.Set("lz4", Napi::Number::New(info.Env(), versions.lz4));
  return out;
}

// Reads (src: Uint8Array, dst: Uint8Array) at info[at], info[at + 1]: distinct, non-overlapping
// memory, dst writable.
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

// The same at info[0], info[1].
bool SourceAndDestination(const Napi::CallbackInfo& info, const char* fn, Bytes* src, Bytes* dst) {
  return SourceAndDestinationAt(info, 0, fn, src, dst);
}

// A codec's answer: bytes written, -1 when the output did not fit, or a thrown Error (not an
// ArgumentError: the input is damaged or the library failed).
Napi::Value Result(Napi::Env env, const migstream::CodecResult& result) {
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
  return Result(info.Env(),
                Codecs(info.Env()).zstd_compress(src.data, src.length, dst.data, dst.length, static_cast<int>(level)));
}

// zstdDecompress(src, dst): the frame's bytes in dst; their length (throws when damaged or
// larger than dst).
Napi::Value ZstdDecompress(const Napi::CallbackInfo& info) {
  Bytes src, dst;
  if (!Count(info, 2, "zstdDecompress") || !SourceAndDestination(info, "zstdDecompress", &src, &dst) ||
      !Available(info, "zstdDecompress", migstream::codec_versions().zstd, "libzstd")) {
    return Napi::Value();
  }
  return Result(info.Env(), Codecs(info.Env()).zstd_decompress(src.data, src.length, dst.data, dst.length));
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

}  // namespace

void RegisterCodec(Napi::Object exports) {
  exports.DefineProperties({
      Method<Xxh32>("xxh32"),
      Method<Xxh64Low32>("xxh64Low32"),
      Method<CodecVersions>("codecVersions"),
      Method<ZstdCompress>("zstdCompress"),
      Method<ZstdDecompress>("zstdDecompress"),
      Method<Lz4Compress>("lz4Compress"),
      Method<Lz4Decompress>("lz4Decompress"),
      Method<FrameDecode>("frameDecode"),
  });
}

}  // namespace migstream::binding
