// The migstream native addon: the per-load state, and the load that registers every family of
// entry points (bind_*.cc, one per wrapper in src/native/; shared checks in bind.h).
//
// src/native/ (exported through src/native.ts) is the only caller meant to exist. It checks
// every argument and throws a typed ArgumentError first; the bind_*.cc files repeat the checks
// anyway, before any memory is touched, so a direct call with bad arguments throws (the same
// ArgumentError class, handed over by init()) and never reads or writes out of range. Nothing
// asserts or aborts.
//
// Memory: the addon allocates nothing but the codec libraries' contexts. HBitmap words and the
// compressor's payload ring live in ArrayBuffers the JS side allocated (so the garbage collector
// sees and frees them), outputs are typed arrays the caller passes in, and no pointer is kept
// past a synchronous call (the two asynchronous ones reference their arrays until they settle).
// The zstd contexts (codecs.h) are per-load state, freed with it.
//
// State: one Addon object per load (main thread and every worker_thread load their own),
// stored as the environment's instance data, which Node deletes when the environment is torn
// down (a worker exits); that finalizer is the cleanup hook that releases the references kept.
// `liveInstances()` counts them across the process so tests can see workers clean up.
#include <napi.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "bind.h"
#include "codecs.h"

namespace {

std::atomic<int64_t> live_instances{0};

class Addon : public Napi::Addon<Addon> {
 public:
  Addon(Napi::Env, Napi::Object exports) {
    ++live_instances;
    DefineAddon(exports, {
                             InstanceMethod("init", &Addon::SetErrorClass),
                             InstanceMethod("liveInstances", &Addon::LiveInstances),
                         });
    // In this order, so the exports object lists its functions as it always has.
    migstream::binding::RegisterHBitmap(exports);
    migstream::binding::RegisterPages(exports);
    migstream::binding::RegisterCodec(exports);
    migstream::binding::RegisterRing(exports);
    migstream::binding::RegisterFd(exports);
  }

  ~Addon() { --live_instances; }

  const Napi::FunctionReference& argument_error() const { return argument_error_; }
  migstream::CodecContexts& codecs() { return codecs_; }

 private:
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

  Napi::FunctionReference argument_error_;
  migstream::CodecContexts codecs_;
};

}  // namespace

namespace migstream::binding {

Napi::Value Fail(Napi::Env env, const std::string& message) {
  if (!env.IsExceptionPending()) {
    const Napi::FunctionReference& argument_error = env.GetInstanceData<Addon>()->argument_error();
    if (!argument_error.IsEmpty()) {
      Napi::Value error = argument_error.New({Napi::String::New(env, message)});
      if (!env.IsExceptionPending()) Napi::Error(env, error).ThrowAsJavaScriptException();
    } else {
      Napi::TypeError::New(env, message).ThrowAsJavaScriptException();
    }
  }
  return Napi::Value();
}

CodecContexts& Codecs(Napi::Env env) { return env.GetInstanceData<Addon>()->codecs(); }

}  // namespace migstream::binding

NODE_API_ADDON(Addon)
