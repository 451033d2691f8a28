// Cache-line aligned, growable scratch memory. Not copyable; contents are not preserved on grow.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <new>

namespace lowbit {

inline void* aligned_alloc_bytes(size_t bytes, size_t alignment = 64) {
  void* p = nullptr;
  if (posix_memalign(&p, alignment, bytes == 0 ? alignment : bytes) != 0) throw std::bad_alloc();
  return p;
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

}  // namespace lowbit
