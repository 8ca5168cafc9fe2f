// HBitmap operations; see hbitmap.h for the design, units and invariants.
#include "hbitmap.h"

#include <cstring>

#include "bits.h"

namespace migstream {

namespace {

constexpr uint64_t kAll = ~uint64_t{0};

// Bits [lo, hi] of a word (0 <= lo <= hi <= 63).
inline uint64_t mask_between(unsigned lo, unsigned hi) { return (kAll << lo) & (kAll >> (63 - hi)); }

}  // namespace

bool HBitmapLayout::compute(uint64_t bits, HBitmapLayout* out) {
  if (bits > kMaxBits) return false;
  *out = HBitmapLayout{};
  out->bits = bits;
  uint64_t words = bits == 0 ? 1 : (bits + kWordBits - 1) >> kWordShift;
  uint64_t offset = 0;
  int k = 0;
  for (;;) {
    out->words[k] = words;
    out->offset[k] = offset;
    offset += words;
    ++k;
    if (words == 1) break;
    words = (words + kWordBits - 1) >> kWordShift;
  }
  out->levels = k;
  out->total_words = offset;
  return true;
}

void HBitmapView::mark_nonzero(int k, uint64_t w) {
  for (int j = k + 1; j < layout_.levels; ++j) {
    uint64_t* parent = level(j) + (w >> kWordShift);
    const uint64_t old = *parent;
    *parent = old | (uint64_t{1} << (w & 63));
    if (old != 0) return;  // the levels above already mark this parent word
    w >>= kWordShift;
  }
}

void HBitmapView::mark_zero(int k, uint64_t w) {
  for (int j = k + 1; j < layout_.levels; ++j) {
    uint64_t* parent = level(j) + (w >> kWordShift);
    *parent &= ~(uint64_t{1} << (w & 63));
    if (*parent != 0) return;  // other words under this parent are still non-zero
    w >>= kWordShift;
  }
}

uint64_t HBitmapView::set_level(int k, uint64_t first, uint64_t last) {
  uint64_t* words = level(k);
  const uint64_t w0 = first >> kWordShift;
  const uint64_t w1 = last >> kWordShift;
  uint64_t added = 0;
  bool born = false;  // some word went from zero to non-zero: the level above changes
  for (uint64_t w = w0; w <= w1; ++w) {
    const uint64_t mask = mask_between(w == w0 ? first & 63 : 0, w == w1 ? last & 63 : 63);
    const uint64_t old = words[w];
    born |= old == 0;
    words[w] = old | mask;
    if (k == 0) added += popcount64(mask & ~old);
  }
  // hb_set_between: every word in [w0, w1] is now non-zero, so its parent bit must be set.
  if (born && k + 1 < layout_.levels) set_level(k + 1, w0, w1);
  return added;
}

uint64_t HBitmapView::set(uint64_t start, uint64_t end) {
  if (start >= end) return 0;
  return set_level(0, start, end - 1);
}

HBitmapView::WordIterator::WordIterator(const HBitmapView& view, uint64_t first) : view_(view), single_(false) {
  const HBitmapLayout& layout = view.layout_;
  for (int k = 0; k < kMaxLevels; ++k) cur_[k] = pos_[k] = 0;
  if (first >= layout.words[0]) return;  // nothing left: every cur_ is zero
  if (layout.levels == 1) {
    single_ = view.level(0)[0] != 0;  // first == 0 here
    return;
  }
  // Level 1 keeps the bit of word `first` itself; higher levels drop the bit of the word the
  // level below is working through (hbitmap_iter_init).
  uint64_t child = first;
  for (int k = 1; k < layout.levels; ++k) {
    const unsigned bit = child & 63;
    pos_[k] = child >> kWordShift;
    const uint64_t keep = k == 1 ? kAll << bit : (kAll << bit) << 1;
    cur_[k] = view.level(k)[pos_[k]] & keep;
    child = pos_[k];
  }
}

uint64_t HBitmapView::WordIterator::next() {
  const HBitmapLayout& layout = view_.layout_;
  if (layout.levels == 1) {
    const bool found = single_;
    single_ = false;
    return found ? 0 : kNone;
  }
  int k = 1;
  for (;;) {
    // Climb to the lowest level with bits left (hbitmap_iter_skip_words)…
    while (cur_[k] == 0) {
      if (++k == layout.levels) return kNone;
    }
    // …then descend along the lowest set bits.
    for (;;) {
      const uint64_t bits = cur_[k];
      const uint64_t child = (pos_[k] << kWordShift) | static_cast<uint64_t>(ctz64(bits));
      cur_[k] = bits & (bits - 1);
      if (k == 1) return child;
      --k;
      pos_[k] = child;
      // A set bit over a zero (or missing) word means corrupted storage: skip it.
      cur_[k] = child < layout.words[k] ? view_.level(k)[child] : 0;
      if (cur_[k] == 0) break;
    }
  }
}

uint64_t HBitmapView::reset(uint64_t start, uint64_t end) {
  if (start >= end) return 0;
  uint64_t* words = level(0);
  const uint64_t first = start >> kWordShift;
  const uint64_t last = (end - 1) >> kWordShift;
  uint64_t removed = 0;
  // Visit only the non-zero words: resetting (or clearing) a sparse map costs nothing per
  // empty word, and never writes to (so never commits) memory that holds no bits.
  WordIterator it(*this, first);
  for (uint64_t w = it.next(); w != kNone && w <= last; w = it.next()) {
    const uint64_t mask = mask_between(w == first ? start & 63 : 0, w == last ? (end - 1) & 63 : 63);
    const uint64_t old = words[w];
    const uint64_t cleared = old & mask;
    if (cleared == 0) continue;
    removed += popcount64(cleared);
    words[w] = old & ~mask;
    if (words[w] == 0) mark_zero(0, w);
  }
  return removed;
}

bool HBitmapView::get(uint64_t index) const { return ((level(0)[index >> kWordShift] >> (index & 63)) & 1) != 0; }

uint64_t HBitmapView::count(uint64_t start, uint64_t end) const {
  if (start >= end) return 0;
  const uint64_t* words = level(0);
  const uint64_t first = start >> kWordShift;
  const uint64_t last = (end - 1) >> kWordShift;
  uint64_t total = 0;
  WordIterator it(*this, first);
  for (uint64_t w = it.next(); w != kNone && w <= last; w = it.next()) {
    const uint64_t mask = mask_between(w == first ? start & 63 : 0, w == last ? (end - 1) & 63 : 63);
    total += popcount64(words[w] & mask);
  }
  return total;
}

uint64_t HBitmapView::next_set(uint64_t from, uint64_t end) const {
  if (from >= end) return kNone;
  // Climb while the current word has nothing at or after the position, then descend along the
  // lowest set bits (hbitmap_iter_skip_words). `pos` is a bit index within level k.
  int k = 0;
  uint64_t pos = from;
  for (;;) {
    const uint64_t w = pos >> kWordShift;
    if (w >= layout_.words[k]) return kNone;
    const uint64_t cur = level(k)[w] & (kAll << (pos & 63));
    if (cur != 0) {
      const uint64_t found = (w << kWordShift) | static_cast<uint64_t>(ctz64(cur));
      if (k == 0) return found < end ? found : kNone;
      --k;
      pos = found << kWordShift;  // first bit of word `found` of the level below
      continue;
    }
    if (k + 1 == layout_.levels) return kNone;
    ++k;
    pos = w + 1;  // the next word of level k-1 is bit w+1 of level k
    // Everything from here on lies at or past `end`: stop climbing.
    if (pos << (kWordShift * k) >= end) return kNone;
  }
}

uint64_t HBitmapView::next_zero(uint64_t from, uint64_t end) const {
  if (from >= end) return kNone;
  // A linear word scan, as hbitmap_next_zero: the upper levels only know about non-zero words.
  const uint64_t* words = level(0);
  uint64_t w = from >> kWordShift;
  const uint64_t last = (end - 1) >> kWordShift;
  uint64_t cur = ~words[w] & (kAll << (from & 63));
  while (cur == 0) {
    if (++w > last) return kNone;
    cur = ~words[w];
  }
  const uint64_t found = (w << kWordShift) | static_cast<uint64_t>(ctz64(cur));
  return found < end ? found : kNone;
}

uint64_t HBitmapView::merge(const HBitmapView& other) {
  uint64_t* words = level(0);
  const uint64_t* theirs = other.level(0);
  uint64_t added = 0;
  // Only the other map's non-zero words: merging a sparse map into a large one is cheap.
  WordIterator it(other, 0);
  for (uint64_t w = it.next(); w != kNone; w = it.next()) {
    const uint64_t old = words[w];
    const uint64_t now = old | theirs[w];
    if (now == old) continue;
    words[w] = now;
    added += popcount64(now & ~old);
    if (old == 0) mark_nonzero(0, w);
  }
  return added;
}

uint64_t HBitmapView::copy_from(const HBitmapView& source) {
  const uint64_t bits = layout_.bits < source.layout_.bits ? layout_.bits : source.layout_.bits;
  if (bits == 0) return 0;
  const uint64_t last = (bits - 1) >> kWordShift;
  const uint64_t tail = mask_between(0, static_cast<unsigned>((bits - 1) & 63));
  uint64_t* words = level(0);
  const uint64_t* theirs = source.level(0);
  uint64_t copied = 0;
  WordIterator it(source, 0);
  for (uint64_t w = it.next(); w != kNone && w <= last; w = it.next()) {
    const uint64_t value = w == last ? theirs[w] & tail : theirs[w];
    if (value == 0) continue;
    const uint64_t old = words[w];
    words[w] = old | value;
    copied += popcount64(value & ~old);
    if (old == 0) mark_nonzero(0, w);
  }
  return copied;
}

void HBitmapView::export_bytes(uint8_t* out) const {
  const uint64_t* words = level(0);
  const uint64_t bytes = layout_.export_bytes();
  const uint64_t whole = bytes / 8;
  if (kLittleEndian) {
    std::memcpy(out, words, whole * 8);
  } else {
    for (uint64_t w = 0; w < whole; ++w) store64le(out + w * 8, words[w]);
  }
  const uint64_t rest = bytes - whole * 8;
  if (rest != 0) {
    const uint64_t value = words[whole];
    for (uint64_t i = 0; i < rest; ++i) out[whole * 8 + i] = static_cast<uint8_t>(value >> (8 * i));
  }
}

uint64_t HBitmapView::import_bytes(const uint8_t* in) {
  reset(0, layout_.bits);
  const uint64_t bytes = layout_.export_bytes();
  const uint64_t whole = bytes / 8;
  uint64_t* words = level(0);
  uint64_t total = 0;
  // Bits past the end must stay clear (the caller has checked them; this keeps the invariant).
  const uint64_t last = layout_.words[0] - 1;
  const uint64_t tail = layout_.bits & 63 ? mask_between(0, static_cast<unsigned>((layout_.bits - 1) & 63)) : kAll;
  // Zero input words are skipped: the map was just cleared, and skipping keeps untouched
  // memory uncommitted for sparse imports.
  for (uint64_t w = 0; w < whole; ++w) {
    uint64_t value = load64le(in + w * 8);
    if (w == last) value &= tail;
    if (value == 0) continue;
    words[w] = value;
    total += popcount64(value);
    mark_nonzero(0, w);
  }
  const uint64_t rest = bytes - whole * 8;
  if (rest != 0) {
    uint64_t value = 0;
    for (uint64_t i = 0; i < rest; ++i) value |= uint64_t{in[whole * 8 + i]} << (8 * i);
    value &= tail;
    if (value != 0) {
      words[whole] = value;
      total += popcount64(value);
      mark_nonzero(0, whole);
    }
  }
  return total;
}

}  // namespace migstream
