// The 4-deep int8 dot product of baseline AArch64 NEON (no dot product extension), shared by
// w8a8_neon.cpp and w4a8_neon.cpp. Exact: vmull_s8 multiplies signed bytes into int16 and
// vpadalq_s16 adds adjacent products into int32. Internal linkage (anonymous namespace).
#pragma once

#include <arm_neon.h>

namespace lowbit {
namespace {

// acc[0] += pairs of (columns 0, 1) products, acc[1] += pairs of (columns 2, 3): 16 bytes of b
// (4 columns x 4 k) against the broadcast 4 activations a (signed).
inline void widening_dot(int32x4_t& acc_lo, int32x4_t& acc_hi, int8x16_t b, int8x16_t a) {
  acc_lo = vpadalq_s16(acc_lo, vmull_s8(vget_low_s8(b), vget_low_s8(a)));
  acc_hi = vpadalq_s16(acc_hi, vmull_high_s8(b, a));
}

}  // namespace
}  // namespace lowbit
