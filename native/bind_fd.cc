// Descriptors (src/native/fd.ts): readerGone polls one with a zero timeout, widenPipe asks for a
// larger pipe buffer (fcntl F_SETPIPE_SZ), limitUnsent caps a TCP socket's unsent bytes
// (setsockopt TCP_NOTSENT_LOWAT; all three fd.h), and writeRanges writes gathered byte
// ranges to one on libuv's thread pool (gather.h): the only call in the addon that writes data.
#include <climits>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <uv.h>

#include "bind.h"
#include "fd.h"
#include "gather.h"

namespace migstream::binding {
namespace {

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
    if (!value.IsTypedArray() ||
        napi_get_typedarray_info(info.Env(), value, &type, &length, &data, nullptr, nullptr) != napi_ok ||
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
      return Fail(info.Env(), "writeRanges: range " + std::to_string(r) + " (buffer " + number_text(index) +
                                  ", offset " + number_text(offset) + ", length " + number_text(length) +
                                  ") lies outside its buffer");
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

// limitUnsent(fd, bytes): the limit in force afterwards, or -errno when the socket would not take it (fd.h).
Napi::Value LimitUnsent(const Napi::CallbackInfo& info) {
  uint64_t fd;
  uint64_t bytes;
  if (!Count(info, 2, "limitUnsent") || !Uint(info, 0, "limitUnsent", "fd", INT_MAX, &fd) ||
      !Uint(info, 1, "limitUnsent", "bytes", INT_MAX, &bytes)) {
    return Napi::Value();
  }
  return Napi::Number::New(info.Env(), migstream::limit_unsent(static_cast<int>(fd), static_cast<int>(bytes)));
}

}  // namespace

void RegisterFd(Napi::Object exports) {
  exports.DefineProperties({
      Method<ReaderGone>("readerGone"),
      Method<WidenPipe>("widenPipe"),
      Method<LimitUnsent>("limitUnsent"),
      Method<WriteRanges>("writeRanges"),
  });
}

}  // namespace migstream::binding
