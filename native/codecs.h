// The frame codecs over caller-owned memory: zstd and lz4 block compression and decompression
// straight into buffers the caller reuses, on the calling thread.
//
// Why here: the npm codec bindings (@mongodb-js/zstd, lz4-napi) return a fresh buffer per call
// (a fresh 4 MiB output page-faults on every 4 KiB it fills) and run zstd on libuv's pool. The
// container's frames are independent, so a plain synchronous call into a reused buffer is all a
// worker (or the restoring main thread) needs.
//
// Where the codecs come from: the system's own libzstd.so.1 and liblz4.so.1, loaded at run time
// with dlopen (Debian's dpkg and apt depend on both, and they are the libraries the `zstd` and
// `lz4` command-line tools use). Nothing is needed to build the addon; without a library,
// available() says so and src/codecs/registry.ts keeps to the npm bindings. The formats are the
// standard ones either way: one zstd frame; an LZ4 block (the caller adds lz4-napi's u32 length).
//
// State: a zstd compression and a decompression context, created on first use and freed with
// the object (one per addon load, i.e. per thread). No pointer to caller memory is kept.
#ifndef MIGSTREAM_NATIVE_CODECS_H_
#define MIGSTREAM_NATIVE_CODECS_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace migstream {

// Library versions found (ZSTD_versionNumber, LZ4_versionNumber), 0 when not loadable. Loaded
// once per process, thread-safe.
struct CodecVersions {
  unsigned zstd = 0;
  unsigned lz4 = 0;
};
const CodecVersions& codec_versions();

// Result of a codec call: `bytes` written, or `fits` false (compression: the output would not
// fit in the destination), or a non-empty `error` (decompression: damaged input; or the library
// failed).
struct CodecResult {
  size_t bytes = 0;
  bool fits = true;
  std::string error;
};

class CodecContexts {
 public:
  CodecContexts() = default;
  ~CodecContexts();
  CodecContexts(const CodecContexts&) = delete;
  CodecContexts& operator=(const CodecContexts&) = delete;

  // One zstd frame of `src` at `level` into `dst` (its capacity: `dst_capacity`).
  CodecResult zstd_compress(const uint8_t* src, size_t src_length, uint8_t* dst, size_t dst_capacity, int level);
  // The zstd frame(s) in `src` into `dst`; fails when they decompress to more than its capacity.
  CodecResult zstd_decompress(const uint8_t* src, size_t src_length, uint8_t* dst, size_t dst_capacity);

 private:
  void* cctx_ = nullptr;
  void* dctx_ = nullptr;
};

// The zstd frame(s) in `src` into `dst` without a context of the caller's (ZSTD_decompress
// makes its own): safe on any thread.
CodecResult zstd_decompress_once(const uint8_t* src, size_t src_length, uint8_t* dst, size_t dst_capacity);

// An LZ4 block of `src` into `dst` (lengths below 2^31 - 2^25: LZ4_MAX_INPUT_SIZE).
CodecResult lz4_compress(const uint8_t* src, size_t src_length, uint8_t* dst, size_t dst_capacity);
// The LZ4 block in `src` into `dst`; fails on a malformed block or one larger than `dst`.
CodecResult lz4_decompress(const uint8_t* src, size_t src_length, uint8_t* dst, size_t dst_capacity);

// LZ4_MAX_INPUT_SIZE.
constexpr size_t kLz4MaxInput = 0x7E000000;

// Codec ids of the container (docs/container.md, frame header byte 1).
constexpr int kCodecLz4 = 1;
constexpr int kCodecZstd = 2;

// What checking and decompressing one container frame found (frame_decode).
struct FrameCheck {
  enum Status { kOk = 0, kStoredChecksum = 1, kCodec = 2, kRawChecksum = 3 };
  Status status = kOk;
  // The checksum computed, for the checksum failures.
  uint32_t actual = 0;
  // The codec's complaint, for kCodec.
  std::string message;
};

// The checksum of a frame's bytes, numbered as the container versions that use it
// (docs/container.md, "Checksums"): version 1 XXH32, version 2 the low 32 bits of XXH64.
enum class FrameChecksum { kXxh32 = 1, kXxh64Low32 = 2 };

uint32_t frame_checksum(FrameChecksum kind, const uint8_t* data, size_t length);

// One frame of the container, as a reader checks it (src/decompress/unpack-frame.ts unpack): the
// checksum of the stored bytes against `stored_checksum`, decompression into exactly
// `raw_length` bytes (lz4: lz4-napi's framing, a u32 little-endian raw length before the
// block), the checksum of the raw bytes against `raw_checksum`. Stateless: runs on any thread
// (the addon runs it on libuv's pool). Codecs zstd and lz4 only; the caller checks the library
// is there.
FrameCheck frame_decode(int codec, FrameChecksum checksum, const uint8_t* stored, size_t stored_length, uint8_t* raw,
                        size_t raw_length, uint32_t stored_checksum, uint32_t raw_checksum);

}  // namespace migstream

#endif  // MIGSTREAM_NATIVE_CODECS_H_
