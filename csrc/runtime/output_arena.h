// Reused memory for the outputs lowbit hands to another library (lowbit.torch's tensors).
//
// Why: a model's large activations (a BERT FFN output at batch 32 is 4 MB) come from malloc,
// which serves them with fresh mmap pages once the heap is fragmented; the kernel then takes a
// page fault for every 4 KB the GEMM writes. Measured on all-MiniLM-L6-v2 at batch 32 (AMX
// Xeon, 1 thread): the 384 -> 1536 linear took 2.2 ms in the model against 0.64 ms alone, and
// the whole forward 52 ms against 34 ms with malloc's mmap threshold raised. ONNX Runtime and
// OpenVINO keep arenas for the same reason. Blocks are cached by size (rounded up to 4 KB)
// when their owner frees them, up to a byte limit, and handed out again for the same size.
#pragma once

#include <cstddef>
#include <map>
#include <mutex>

namespace lowbit {

class OutputArena {
 public:
  static OutputArena& instance();
  // At least `bytes` bytes, 64-byte aligned (4 KB when from the system). Throws bad_alloc.
  void* take(size_t bytes);
  // Gives back a block from take(bytes): cached while the cache holds under limit() bytes,
  // else freed.
  void give(void* block, size_t bytes);
  // Bytes of free blocks kept (default 256 MB); 0 frees every cached block and caches no more.
  void set_limit(size_t bytes);
  size_t limit() const;
  size_t cached_bytes() const;
  static size_t rounded(size_t bytes) { return (bytes + 4095) / 4096 * 4096; }

 private:
  mutable std::mutex mu_;
  std::multimap<size_t, void*> free_;   // rounded size -> block
  size_t cached_ = 0;
  size_t limit_ = size_t{256} << 20;
};

}  // namespace lowbit
