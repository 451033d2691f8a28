// Per-thread scratch memory of the kernels. Defined here, in a translation unit compiled without
// ISA flags, so that no allocator code is ever emitted with AVX-512 or AMX instructions (an
// inline std:: function instantiated in a kernel file could be the copy the linker keeps).
#include <cstdlib>
#include <new>

#include "kernels/kernel_scratch.h"

namespace lowbit {
namespace kernel_scratch {
namespace {

struct Buffer {
  void* data = nullptr;
  size_t bytes = 0;
  ~Buffer() { std::free(data); }
};

}  // namespace

void* reserve(Slot slot, size_t bytes) {
  thread_local Buffer buffers[kSlots];
  Buffer& b = buffers[slot];
  if (bytes > b.bytes) {
    void* fresh = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (fresh == nullptr) throw std::bad_alloc();
    std::free(b.data);
    b.data = fresh;
    b.bytes = bytes;
  }
  return b.data;
}

}  // namespace kernel_scratch
}  // namespace lowbit
