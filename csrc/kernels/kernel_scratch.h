// Per-thread scratch memory of the kernels (declaration only; no SIMD code).
#pragma once

#include <cstddef>

namespace lowbit {
namespace kernel_scratch {

// One slot per concurrent use inside a kernel call; a kernel only uses its own slots.
enum Slot : int {
  amx_a = 0,         // the tile-order copy of A (w8a8_amx, w4a8_amx)
  amx_b = 1,         // a panel of unpacked weights (w4a8_amx)
  plain_b_sums = 2,  // the running sums of the plain-B kernels
  half_b = 3,        // a block of 16-bit float weights widened to float32 (w16f32 kernels)
  half_a = 4,        // the A rows of a blocked w16f32 call at a conflict-free stride
  kSlots = 5,
};

// This thread's scratch for `slot`, at least `bytes`, 64-byte aligned; valid until the next call
// for the same slot from the same thread. Throws std::bad_alloc.
void* reserve(Slot slot, size_t bytes);

}  // namespace kernel_scratch
}  // namespace lowbit
