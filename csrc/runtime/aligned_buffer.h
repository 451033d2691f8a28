// Cache-line aligned, growable scratch memory. Not copyable; contents are not preserved on grow.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <new>
#include <stdexcept>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace lowbit {

inline void* aligned_alloc_bytes(size_t bytes, size_t alignment = 64) {
  void* p = nullptr;
  if (posix_memalign(&p, alignment, bytes == 0 ? alignment : bytes) != 0) throw std::bad_alloc();
  return p;
}

// Memory for a packed weight: large ones on transparent huge pages where the kernel offers them
// (madvise mode), so a GEMV streaming tens of MB from DRAM is not cut into 4 KB pages, where
// the hardware prefetchers stop and every page costs a TLB miss. Freed with std::free.
inline void* alloc_weight_bytes(size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr size_t kHugePage = size_t{2} << 20;
  if (bytes >= 2 * kHugePage) {
    void* p = aligned_alloc_bytes(bytes, kHugePage);
    madvise(p, bytes, MADV_HUGEPAGE);  // advice only: failure leaves ordinary pages
    return p;
  }
#endif
  return aligned_alloc_bytes(bytes);
}

class ScratchBuffer {
 public:
  ScratchBuffer() = default;
  ~ScratchBuffer() { std::free(data_); }
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;

  void* reserve(size_t bytes) {
    if (bytes > capacity_) {
      std::free(data_);
      data_ = nullptr;
      capacity_ = 0;
      data_ = aligned_alloc_bytes(bytes);
      capacity_ = bytes;
    }
    return data_;
  }

 private:
  void* data_ = nullptr;
  size_t capacity_ = 0;
};

// Rounds n up to a multiple of m (m > 0).
constexpr long long round_up(long long n, long long m) { return (n + m - 1) / m * m; }

// ceil(n / m) for n >= 0, m > 0, without the overflow of (n + m - 1) / m near INT64_MAX.
constexpr long long ceil_div(long long n, long long m) { return n == 0 ? 0 : (n - 1) / m + 1; }

// Size arithmetic for packed data. A caller can describe a matrix with zero strides (a broadcast
// source of one byte), so dimensions are not bounded by any real buffer: a size that does not
// fit in 64 bits must be an error, not a wrapped, short allocation that is then overrun.
inline long long checked_size_mul(long long a, long long b) {
  long long r = 0;
  if (__builtin_mul_overflow(a, b, &r))
    throw std::invalid_argument("matrix too large: its packed size does not fit in 64 bits");
  return r;
}
inline long long checked_size_add(long long a, long long b) {
  long long r = 0;
  if (__builtin_add_overflow(a, b, &r))
    throw std::invalid_argument("matrix too large: its packed size does not fit in 64 bits");
  return r;
}
inline long long checked_round_up(long long n, long long m) { return checked_size_mul(ceil_div(n, m), m); }

}  // namespace lowbit
