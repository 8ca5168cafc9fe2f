// zstd and lz4 over caller-owned memory, from the system libraries loaded at run time; see
// codecs.h. The few declarations below are the libraries' stable public ABI (zstd.h since 1.4.0,
// lz4.h since 1.7), written out so the build needs no -dev package.
#include "codecs.h"

#include <mutex>

#include "bits.h"
#include "pages.h"

#if defined(_WIN32)
#define MIGSTREAM_NO_DLOPEN 1
#else
#include <dlfcn.h>
#endif

namespace migstream {

namespace {

// --- zstd.h -------------------------------------------------------------------------------
using ZstdCreateCCtx = void* (*)();
using ZstdFreeCCtx = size_t (*)(void*);
using ZstdCreateDCtx = void* (*)();
using ZstdFreeDCtx = size_t (*)(void*);
using ZstdCompressCCtx = size_t (*)(void* cctx, void* dst, size_t dst_capacity, const void* src, size_t src_size,
                                    int level);
using ZstdDecompressDCtx = size_t (*)(void* dctx, void* dst, size_t dst_capacity, const void* src, size_t src_size);
using ZstdDecompress = size_t (*)(void* dst, size_t dst_capacity, const void* src, size_t src_size);
using ZstdIsError = unsigned (*)(size_t);
using ZstdGetErrorCode = int (*)(size_t);
using ZstdGetErrorName = const char* (*)(size_t);
using ZstdVersionNumber = unsigned (*)();
// ZSTD_ErrorCode (zstd_errors.h): ZSTD_error_dstSize_tooSmall.
constexpr int kZstdDstSizeTooSmall = 70;

// --- lz4.h --------------------------------------------------------------------------------
using Lz4CompressDefault = int (*)(const char* src, char* dst, int src_size, int dst_capacity);
using Lz4DecompressSafe = int (*)(const char* src, char* dst, int compressed_size, int dst_capacity);
using Lz4VersionNumber = int (*)();

struct Libraries {
  CodecVersions versions;
  ZstdCreateCCtx zstd_create_cctx = nullptr;
  ZstdFreeCCtx zstd_free_cctx = nullptr;
  ZstdCreateDCtx zstd_create_dctx = nullptr;
  ZstdFreeDCtx zstd_free_dctx = nullptr;
  ZstdCompressCCtx zstd_compress_cctx = nullptr;
  ZstdDecompressDCtx zstd_decompress_dctx = nullptr;
  ZstdDecompress zstd_decompress = nullptr;
  ZstdIsError zstd_is_error = nullptr;
  ZstdGetErrorCode zstd_get_error_code = nullptr;
  ZstdGetErrorName zstd_get_error_name = nullptr;
  Lz4CompressDefault lz4_compress_default = nullptr;
  Lz4DecompressSafe lz4_decompress_safe = nullptr;
};

#ifndef MIGSTREAM_NO_DLOPEN
void* open_first(const char* const* names) {
  for (const char* const* name = names; *name != nullptr; ++name) {
    // RTLD_LOCAL: the symbols stay out of the global namespace (other addons may bring their
    // own zstd); the handle is never closed, like any library the process keeps using.
    void* handle = dlopen(*name, RTLD_NOW | RTLD_LOCAL);
    if (handle != nullptr) return handle;
  }
  return nullptr;
}

template <typename T>
bool find(void* handle, const char* name, T* out) {
  *out = reinterpret_cast<T>(dlsym(handle, name));
  return *out != nullptr;
}

void load_zstd(Libraries* libs) {
  static const char* const kNames[] = {"libzstd.so.1", "libzstd.1.dylib", "libzstd.dylib", nullptr};
  void* handle = open_first(kNames);
  if (handle == nullptr) return;
  ZstdVersionNumber version = nullptr;
  Libraries l;
  const bool all = find(handle, "ZSTD_versionNumber", &version) &&
                   find(handle, "ZSTD_createCCtx", &l.zstd_create_cctx) &&
                   find(handle, "ZSTD_freeCCtx", &l.zstd_free_cctx) &&
                   find(handle, "ZSTD_createDCtx", &l.zstd_create_dctx) &&
                   find(handle, "ZSTD_freeDCtx", &l.zstd_free_dctx) &&
                   find(handle, "ZSTD_compressCCtx", &l.zstd_compress_cctx) &&
                   find(handle, "ZSTD_decompressDCtx", &l.zstd_decompress_dctx) &&
                   find(handle, "ZSTD_decompress", &l.zstd_decompress) &&
                   find(handle, "ZSTD_isError", &l.zstd_is_error) &&
                   find(handle, "ZSTD_getErrorCode", &l.zstd_get_error_code) &&
                   find(handle, "ZSTD_getErrorName", &l.zstd_get_error_name);
  // 1.4.0: the first release whose error codes and context API are declared stable.
  if (!all || version() < 10400) return;
  l.versions.zstd = version();
  *libs = l;
}

void load_lz4(Libraries* libs) {
  static const char* const kNames[] = {"liblz4.so.1", "liblz4.1.dylib", "liblz4.dylib", nullptr};
  void* handle = open_first(kNames);
  if (handle == nullptr) return;
  Lz4VersionNumber version = nullptr;
  Lz4CompressDefault compress = nullptr;
  Lz4DecompressSafe decompress = nullptr;
  if (!find(handle, "LZ4_versionNumber", &version) || !find(handle, "LZ4_compress_default", &compress) ||
      !find(handle, "LZ4_decompress_safe", &decompress)) {
    return;
  }
  libs->lz4_compress_default = compress;
  libs->lz4_decompress_safe = decompress;
  libs->versions.lz4 = static_cast<unsigned>(version());
}
#endif

const Libraries& libraries() {
  static Libraries libs;
  static std::once_flag once;
  std::call_once(once, [] {
#ifndef MIGSTREAM_NO_DLOPEN
    load_zstd(&libs);
    load_lz4(&libs);
#endif
  });
  return libs;
}

CodecResult failed(std::string error) {
  CodecResult result;
  result.error = std::move(error);
  return result;
}

// A zstd decompression's return value as a result: the byte count, or the library's error.
CodecResult zstd_decompressed(const Libraries& libs, size_t n) {
  if (libs.zstd_is_error(n)) return failed(std::string("zstd: ") + libs.zstd_get_error_name(n));
  CodecResult result;
  result.bytes = n;
  return result;
}

}  // namespace

const CodecVersions& codec_versions() { return libraries().versions; }

CodecContexts::~CodecContexts() {
  const Libraries& libs = libraries();
  if (cctx_ != nullptr) libs.zstd_free_cctx(cctx_);
  if (dctx_ != nullptr) libs.zstd_free_dctx(dctx_);
}

CodecResult CodecContexts::zstd_compress(const uint8_t* src, size_t src_length, uint8_t* dst, size_t dst_capacity,
                                         int level) {
  const Libraries& libs = libraries();
  if (libs.versions.zstd == 0) return failed("libzstd is not available");
  if (cctx_ == nullptr) cctx_ = libs.zstd_create_cctx();
  if (cctx_ == nullptr) return failed("zstd: cannot create a compression context (out of memory)");
  const size_t n = libs.zstd_compress_cctx(cctx_, dst, dst_capacity, src, src_length, level);
  CodecResult result;
  if (libs.zstd_is_error(n)) {
    if (libs.zstd_get_error_code(n) == kZstdDstSizeTooSmall) {
      result.fits = false;
      return result;
    }
    return failed(std::string("zstd: ") + libs.zstd_get_error_name(n));
  }
  result.bytes = n;
  return result;
}

CodecResult CodecContexts::zstd_decompress(const uint8_t* src, size_t src_length, uint8_t* dst, size_t dst_capacity) {
  const Libraries& libs = libraries();
  if (libs.versions.zstd == 0) return failed("libzstd is not available");
  if (dctx_ == nullptr) dctx_ = libs.zstd_create_dctx();
  if (dctx_ == nullptr) return failed("zstd: cannot create a decompression context (out of memory)");
  return zstd_decompressed(libs, libs.zstd_decompress_dctx(dctx_, dst, dst_capacity, src, src_length));
}

CodecResult zstd_decompress_once(const uint8_t* src, size_t src_length, uint8_t* dst, size_t dst_capacity) {
  const Libraries& libs = libraries();
  if (libs.versions.zstd == 0) return failed("libzstd is not available");
  return zstd_decompressed(libs, libs.zstd_decompress(dst, dst_capacity, src, src_length));
}

CodecResult lz4_compress(const uint8_t* src, size_t src_length, uint8_t* dst, size_t dst_capacity) {
  const Libraries& libs = libraries();
  if (libs.versions.lz4 == 0) return failed("liblz4 is not available");
  if (src_length > kLz4MaxInput) return failed("lz4: input too large");
  const int capacity = static_cast<int>(dst_capacity > kLz4MaxInput ? kLz4MaxInput : dst_capacity);
  const int n = libs.lz4_compress_default(reinterpret_cast<const char*>(src), reinterpret_cast<char*>(dst),
                                          static_cast<int>(src_length), capacity);
  CodecResult result;
  // 0: the block does not fit in `capacity` (the only failure for a valid input size).
  if (n <= 0 && src_length > 0) {
    result.fits = false;
    return result;
  }
  result.bytes = static_cast<size_t>(n);
  return result;
}

CodecResult lz4_decompress(const uint8_t* src, size_t src_length, uint8_t* dst, size_t dst_capacity) {
  const Libraries& libs = libraries();
  if (libs.versions.lz4 == 0) return failed("liblz4 is not available");
  if (src_length > kLz4MaxInput || dst_capacity > kLz4MaxInput) return failed("lz4: block too large");
  const int n = libs.lz4_decompress_safe(reinterpret_cast<const char*>(src), reinterpret_cast<char*>(dst),
                                         static_cast<int>(src_length), static_cast<int>(dst_capacity));
  if (n < 0) return failed("lz4: malformed block (or larger than announced)");
  CodecResult result;
  result.bytes = static_cast<size_t>(n);
  return result;
}

uint32_t frame_checksum(FrameChecksum kind, const uint8_t* data, size_t length) {
  return kind == FrameChecksum::kXxh32 ? xxh32(data, length, 0) : static_cast<uint32_t>(xxh64(data, length, 0));
}

FrameCheck frame_decode(int codec, FrameChecksum checksum, const uint8_t* stored, size_t stored_length, uint8_t* raw,
                        size_t raw_length, uint32_t stored_checksum, uint32_t raw_checksum) {
  FrameCheck check;
  const uint32_t stored_actual = frame_checksum(checksum, stored, stored_length);
  if (stored_actual != stored_checksum) {
    check.status = FrameCheck::kStoredChecksum;
    check.actual = stored_actual;
    return check;
  }
  CodecResult result;
  if (codec == kCodecZstd) {
    result = zstd_decompress_once(stored, stored_length, raw, raw_length);
  } else if (codec == kCodecLz4) {
    const uint32_t announced = stored_length < 4 ? 0 : load32le(stored);
    if (stored_length < 4 || announced != raw_length) {
      check.status = FrameCheck::kCodec;
      check.message = stored_length < 4 ? "lz4 block announces nothing"
                                        : "lz4 block announces " + std::to_string(announced) + " bytes";
      return check;
    }
    result = lz4_decompress(stored + 4, stored_length - 4, raw, raw_length);
  } else {
    result = failed("codec " + std::to_string(codec) + " is not decompressed here");
  }
  if (!result.error.empty() || result.bytes != raw_length) {
    check.status = FrameCheck::kCodec;
    check.message = !result.error.empty() ? result.error : "decompressed to " + std::to_string(result.bytes) + " bytes";
    return check;
  }
  const uint32_t raw_actual = frame_checksum(checksum, raw, raw_length);
  if (raw_actual != raw_checksum) {
    check.status = FrameCheck::kRawChecksum;
    check.actual = raw_actual;
  }
  return check;
}

}  // namespace migstream
