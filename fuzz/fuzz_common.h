// Shared by the fuzz targets: a reader that turns the fuzzer's bytes into parameters (zeros once
// the input runs out, so every input is valid), float values biased toward the special cases a
// quantizer must survive, and the checks that abort on a mismatch so libFuzzer reports it.
#pragma once

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

#include "lowbit/lowbit.h"

namespace fuzz {

class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  template <typename T>
  T take() {
    T v{};
    const size_t n = pos_ + sizeof(T) <= size_ ? sizeof(T) : size_ - pos_;
    std::memcpy(&v, data_ + pos_, n);
    pos_ += n;
    return v;
  }
  bool flag() { return take<uint8_t>() & 1; }
  // Uniform-ish in [lo, hi].
  int64_t range(int64_t lo, int64_t hi) {
    const uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
    return lo + static_cast<int64_t>(take<uint32_t>() % span);
  }
  // Half the time one of the values that break quantizers, else arbitrary bits.
  float special_float() {
    static const float kSpecial[] = {
        0.0f, -0.0f, 1.0f, -1.0f, 0.5f, -0.5f, 1.5f, 2.5f, -2.5f, 127.5f, -128.5f, 255.5f,
        FLT_MAX, -FLT_MAX, FLT_MIN, -FLT_MIN, std::numeric_limits<float>::denorm_min(),
        -std::numeric_limits<float>::denorm_min(), 1e-40f, 3e38f, 1e-30f,
        std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
        std::numeric_limits<float>::quiet_NaN()};
    const uint8_t pick = take<uint8_t>();
    if (pick < 128) return kSpecial[pick % (sizeof(kSpecial) / sizeof(kSpecial[0]))];
    return take<float>();
  }
  // A finite, modest float (for data where the test is about layout rather than values).
  float normal_float() { return static_cast<float>(take<int16_t>()) / 256.0f; }
  bool exhausted() const { return pos_ >= size_; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "lowbit fuzz mismatch: %s\n", what);
  __builtin_trap();
}

inline void require(bool ok, const char* what) {
  if (!ok) fail(what);
}

template <typename T>
bool same_bytes(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

// The outcome of one call: its output bytes, or that it threw std::invalid_argument. Any other
// exception escapes to libFuzzer and is reported as a crash.
template <typename T>
struct Outcome {
  bool threw = false;
  std::vector<T> out;
  bool operator==(const Outcome& o) const { return threw == o.threw && (threw || same_bytes(out, o.out)); }
};

template <typename T, typename Fn>
Outcome<T> run(size_t n, T fill, const Fn& fn) {
  Outcome<T> r;
  r.out.assign(n, fill);
  try {
    fn(r.out.data());
  } catch (const std::invalid_argument&) {
    r.threw = true;
    r.out.clear();
  }
  return r;
}

// Runs fn on the scalar path and on every other available path; all must agree.
template <typename T, typename Fn>
Outcome<T> same_on_every_isa(size_t n, T fill, const Fn& fn, const char* what) {
  lowbit::set_active_isa(lowbit::Isa::scalar);
  const Outcome<T> ref = run(n, fill, fn);
  for (lowbit::Isa isa : lowbit::available_isas()) {
    if (isa == lowbit::Isa::scalar) continue;
    lowbit::set_active_isa(isa);
    if (!(run(n, fill, fn) == ref)) fail(what);
  }
  lowbit::set_active_isa(lowbit::Isa::scalar);
  return ref;
}

}  // namespace fuzz
