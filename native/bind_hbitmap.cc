// The HBitmap family (src/native/hbitmap.ts): a bitmap is an ArrayBuffer of words the JS side
// owns plus its size in bits, passed on every call; hbitmap.h does the work on a view of it.
#include <cstdint>
#include <string>

#include "bind.h"
#include "hbitmap.h"

namespace migstream::binding {
namespace {

struct Bitmap {
  HBitmapLayout layout;
  uint64_t* words = nullptr;
};

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

Napi::Value Found(Napi::Env env, uint64_t position) {
  return Napi::Number::New(env, position == kNone ? -1.0 : static_cast<double>(position));
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
  if (!Count(info, 4, "hbCopy") || !ReadBitmap(info, 0, "hbCopy", &bitmap) || !ReadBitmap(info, 2, "hbCopy", &source)) {
    return Napi::Value();
  }
  if (bitmap.words == source.words) return Fail(info.Env(), "hbCopy: source and destination are the same storage");
  HBitmapView view(bitmap.layout, bitmap.words);
  return Napi::Number::New(info.Env(), static_cast<double>(view.copy_from(HBitmapView(source.layout, source.words))));
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

}  // namespace

void RegisterHBitmap(Napi::Object exports) {
  exports.DefineProperties({
      Method<HBitmapBytes>("hbitmapBytes"),
      Method<HbSet>("hbSet"),
      Method<HbReset>("hbReset"),
      Method<HbGet>("hbGet"),
      Method<HbCount>("hbCount"),
      Method<HbNextSet>("hbNextSet"),
      Method<HbNextZero>("hbNextZero"),
      Method<HbDirtyAreas>("hbDirtyAreas"),
      Method<HbMerge>("hbMerge"),
      Method<HbCopy>("hbCopy"),
      Method<HbExport>("hbExport"),
      Method<HbImport>("hbImport"),
  });
}

}  // namespace migstream::binding
