# The native addon (native/README.md): node-gyp builds it during `npm install` from these
# sources and node-addon-api's headers alone, with Node's own headers (npm's nodedir), so the
# build needs no download and no library beyond the C++ toolchain.
{
  "targets": [
    {
      "target_name": "migstream_native",
      "sources": [
        "native/addon.cc", "native/bind_codec.cc", "native/bind_fd.cc", "native/bind_hbitmap.cc",
        "native/bind_pages.cc", "native/bind_ring.cc", "native/codecs.cc", "native/dedup.cc",
        "native/fd.cc", "native/gather.cc", "native/hbitmap.cc", "native/pages.cc"
      ],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api"],
      # NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS: a worker terminated while it loads the addon
      # (a decompress that found a damaged frame ends its pool) cannot throw into its dying
      # environment; without the define node-addon-api aborts the whole process there
      # ("FATAL ERROR: Error::ThrowAsJavaScriptException napi_throw", SIGABRT, 4 runs in 400).
      "defines": ["NAPI_VERSION=8", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
      "cflags": ["-Wall", "-Wextra"],
      "cflags_cc": ["-std=c++17", "-O3", "-fvisibility=hidden"],
      "conditions": [["OS=='linux'", { "libraries": ["-ldl"] }]],
      "xcode_settings": {
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "GCC_OPTIMIZATION_LEVEL": "3",
        "GCC_SYMBOLS_PRIVATE_EXTERN": "YES"
      },
      "msvs_settings": {
        "VCCLCompilerTool": { "AdditionalOptions": ["/std:c++17", "/O2"] }
      }
    }
  ]
}
