// HBitmap: a multi-level dirty bitmap in the style of QEMU's util/hbitmap.c.
//
// Design
// ------
// The bottom level (level 0) holds one bit per granule in 64-bit words. Each level above holds
// one bit per word of the level below: bit j of level k+1 is set if and only if word j of
// level k is non-zero. Levels are added until one holds a single word, so a bitmap of n bits
// has ceil(log64(n)) + 1 levels at most (7 for the largest, 2^41 bits).
//
//   level 2    [1.......]                  one word: which level-1 words are non-zero
//   level 1    [1.1.....][........] ...    one bit per level-0 word
//   level 0    [00100000][00000001] ...    one bit per granule
//
// QEMU numbers levels from the top and keeps a fixed count with a sentinel bit; here level 0
// is the bottom and the count follows the size, so a small bitmap is a single word.
//
// Complexity (n = size, m = granules in the range, w = 64)
//   set(range)              O(m/w + m/w^2 + ...)  = O(m/w): every word in the range is written
//   reset(range)            O(s log_w n), s = non-zero words in the range: zero words are never
//                           touched, so clearing a sparse 2^32-bit map costs nothing per empty word
//   next_set(from)          O(log_w n) worst case
//   for_each_dirty_area     O(1) amortised per non-zero word and per area: the iterator keeps
//                           one partly consumed word per level (hbitmap_iter_next)
//   next_zero(from, end)    O(distance/w): a linear word scan, as hbitmap_next_zero
//   count_range / merge     O(s log_w n) over the non-zero words only
//
// Memory
// ------
// HBitmapView never allocates: it works on a word array its caller owns (in migstream, a JS
// ArrayBuffer, so the memory is visible to and freed by the JS garbage collector). The array
// holds the levels back to back, level 0 first, so the bottom level is the array's first
// ceil(n/64) words. HBitmapLayout::compute gives the sizes; a caller hands over at least
// total_words words, zeroed, before the first operation.
//
// Invariants (kept by every operation, relied upon by the searches)
//   - bits at positions >= size in level 0 are zero;
//   - an upper-level bit is set exactly when the word it stands for is non-zero.
// Searches stay inside the layout even if the words were corrupted: a broken invariant gives
// wrong answers, never an access outside the array.
//
// Units: every position and count is in granules (bits of level 0). Granularity (bytes per
// granule) is the caller's business. Ranges are half-open [start, end); callers check that
// start <= end <= size before calling (bind_hbitmap.cc does, and src/native/ before it).
//
// Iteration: no state is kept between calls, so bits may be set or reset between calls; a
// search sees the words as they are when it runs. Within one for_each_dirty_area call the
// sink must not modify the map.
#ifndef MIGSTREAM_NATIVE_HBITMAP_H_
#define MIGSTREAM_NATIVE_HBITMAP_H_

#include <cstddef>
#include <cstdint>

#include "bits.h"

namespace migstream {

constexpr int kWordShift = 6;
constexpr uint64_t kWordBits = 64;
// QEMU's HBITMAP_LOG_MAX_SIZE on 64-bit hosts: 2^41 bits (an 8 PiB guest at 4 KiB pages).
constexpr uint64_t kMaxBits = uint64_t{1} << 41;
constexpr int kMaxLevels = 8;
// Returned by the searches when nothing is found.
constexpr uint64_t kNone = ~uint64_t{0};

struct HBitmapLayout {
  uint64_t bits = 0;
  int levels = 0;
  uint64_t words[kMaxLevels] = {};
  uint64_t offset[kMaxLevels] = {};
  uint64_t total_words = 0;

  // Fills the layout of a bitmap of `bits` granules; false when bits > kMaxBits.
  static bool compute(uint64_t bits, HBitmapLayout* out);
  // Bytes of the exported bottom level: ceil(bits / 8).
  uint64_t export_bytes() const { return (bits + 7) / 8; }
};

class HBitmapView {
 public:
  HBitmapView(const HBitmapLayout& layout, uint64_t* words) : layout_(layout), words_(words) {}

  const HBitmapLayout& layout() const { return layout_; }

  // Sets [start, end); returns how many bits were clear before.
  uint64_t set(uint64_t start, uint64_t end);
  // Clears [start, end); returns how many bits were set before.
  uint64_t reset(uint64_t start, uint64_t end);
  bool get(uint64_t index) const;
  // Set bits in [start, end).
  uint64_t count(uint64_t start, uint64_t end) const;
  // First set bit in [from, end), or kNone.
  uint64_t next_set(uint64_t from, uint64_t end) const;
  // First clear bit in [from, end), or kNone.
  uint64_t next_zero(uint64_t from, uint64_t end) const;
  // Calls sink(start, length) for each run of set bits that starts in [from, end), in order,
  // each cut at `end` and into pieces of at most max_length (>= 1) bits, until sink returns
  // false (hbitmap_next_dirty_area called in a loop, with the iterator state kept).
  template <typename Sink>
  void for_each_dirty_area(uint64_t from, uint64_t end, uint64_t max_length, Sink&& sink) const;
  // ORs `other` (same size) into this bitmap; returns how many bits were newly set.
  uint64_t merge(const HBitmapView& other);
  // Copies the bits of `source` below min(both sizes) into this bitmap, which must be empty
  // (resize). Returns the number of bits copied that are set.
  uint64_t copy_from(const HBitmapView& source);

  // Visits the non-zero level-0 words in order, keeping one partly consumed word per upper
  // level (QEMU's HBitmapIter): advancing costs O(1) amortised.
  class WordIterator {
   public:
    // Starts at level-0 word `first` (included if non-zero).
    WordIterator(const HBitmapView& view, uint64_t first);
    // The next non-zero level-0 word index, or kNone.
    uint64_t next();

   private:
    const HBitmapView& view_;
    uint64_t cur_[kMaxLevels];  // bits of word pos_[k] of level k not visited yet (k >= 1)
    uint64_t pos_[kMaxLevels];
    bool single_;  // a one-level map: only word 0
  };

  // Bottom level as ceil(bits/8) bytes, bit i in byte i/8 at bit i%8 (QEMU's little-endian
  // serialization, without its padding to whole words).
  void export_bytes(uint8_t* out) const;
  // Replaces the content with `in` (export_bytes' format); returns the number of set bits.
  // The caller has checked that no bit at or past `bits` is set in the last byte.
  uint64_t import_bytes(const uint8_t* in);

 private:
  uint64_t* level(int k) { return words_ + layout_.offset[k]; }
  const uint64_t* level(int k) const { return words_ + layout_.offset[k]; }
  // Word `w` of level `k` became non-zero (resp. zero): update the levels above.
  void mark_nonzero(int k, uint64_t w);
  void mark_zero(int k, uint64_t w);
  // Sets bits [first, last] of level k (inclusive) and the levels above; returns bits newly set.
  uint64_t set_level(int k, uint64_t first, uint64_t last);

  HBitmapLayout layout_;
  uint64_t* words_;
};

template <typename Sink>
void HBitmapView::for_each_dirty_area(uint64_t from, uint64_t end, uint64_t max_length, Sink&& sink) const {
  if (from >= end || max_length == 0) return;
  constexpr uint64_t kAll = ~uint64_t{0};
  const uint64_t* words = level(0);
  // [start, stop) cut at `end` and into max_length pieces; false when the sink is done.
  auto emit = [&](uint64_t start, uint64_t stop) -> bool {
    if (stop > end) stop = end;
    while (stop - start > max_length) {
      if (!sink(start, max_length)) return false;
      start += max_length;
    }
    return sink(start, stop - start);
  };
  const uint64_t first = from >> kWordShift;
  WordIterator it(*this, first);
  uint64_t run = kNone;   // start of a run still open at the end of word `prev`
  uint64_t prev = kNone;  // the last word visited
  for (;;) {
    const uint64_t w = it.next();
    if (w == kNone || (w << kWordShift) >= end) {
      if (run != kNone) emit(run, (prev + 1) << kWordShift);
      return;
    }
    uint64_t word = words[w];
    if (w == first) word &= kAll << (from & 63);
    const uint64_t base = w << kWordShift;
    if (run != kNone) {
      if (w != prev + 1 || (word & 1) == 0) {
        // The open run ended with the previous word.
        if (!emit(run, (prev + 1) << kWordShift)) return;
        run = kNone;
      } else {
        const uint64_t holes = ~word;
        if (holes == 0) {  // the whole word continues the run
          prev = w;
          continue;
        }
        const int stop = ctz64(holes);
        if (!emit(run, base + static_cast<uint64_t>(stop))) return;
        run = kNone;
        word &= kAll << stop;
      }
    }
    while (word != 0) {
      const int start = ctz64(word);
      if (base + static_cast<uint64_t>(start) >= end) return;
      const uint64_t holes = ~word & (kAll << start);
      if (holes == 0) {  // runs to the end of the word, maybe further
        run = base + static_cast<uint64_t>(start);
        break;
      }
      const int stop = ctz64(holes);
      if (!emit(base + static_cast<uint64_t>(start), base + static_cast<uint64_t>(stop))) return;
      word &= kAll << stop;
    }
    prev = w;
  }
}

}  // namespace migstream

#endif  // MIGSTREAM_NATIVE_HBITMAP_H_
