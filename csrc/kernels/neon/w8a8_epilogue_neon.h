// The w8a8 epilogue of the NEON translation units (neon and neondot), with the broadcast of the
// shifted A rows it pairs with. Everything here has internal linkage (anonymous namespace), so
// each translation unit keeps its own copy compiled with its own flags: no ODR mixing across ISA
// flags.
#pragma once

#include <arm_neon.h>

#include <cmath>
#include <cstdint>

#include "kernels/kernel_api.h"

namespace lowbit {
namespace {

// The NEON int8 GEMMs multiply signed A' = A - 128 (A ^ 0x80) by B', so their raw sum is
// acc' = acc - 128 * colsum(B'), where colsum(B') = col_corr + K * col_zero (PackedMatrix). The
// full epilogue c = acc - col_zero * row_sum - row_zero * col_corr then becomes
//   c = acc' + (128 - row_zero) * col_corr + col_zero * (128 * K - row_sum)      (mod 2^32)
// and is written for the 4 columns n0..n0+3 of row m (only those below N).
inline void store4_shifted(const W8A8Problem& p, int64_t m, int64_t n0, int32x4_t acc_shifted) {
  const uint32x4_t corr = vld1q_u32(reinterpret_cast<const uint32_t*>(p.col_corr + n0));
  uint32x4_t c = vmlaq_n_u32(vreinterpretq_u32_s32(acc_shifted), corr,
                             128u - static_cast<uint32_t>(p.row_zero[m]));
  if (!p.b_symmetric) {
    const uint32x4_t zero = vld1q_u32(reinterpret_cast<const uint32_t*>(p.col_zero + n0));
    c = vmlaq_n_u32(c, zero, 128u * static_cast<uint32_t>(p.K) - static_cast<uint32_t>(p.row_sum[m]));
  }
  int32_t lanes[4];
  vst1q_s32(lanes, vreinterpretq_s32_u32(c));
  const int64_t valid = p.N - n0 < 4 ? p.N - n0 : 4;
  if (p.c_i32) {
    for (int64_t t = 0; t < valid; ++t) p.c_i32[m * p.ldc + n0 + t] = lanes[t];
    return;
  }
  for (int64_t t = 0; t < valid; ++t) {
    const int64_t n = n0 + t;
    const float s = p.row_scale[m] * p.col_scale[n];
    p.y_f32[m * p.ldc + n] = std::fma(static_cast<float>(lanes[t]), s, p.bias ? p.bias[n] : 0.0f);
  }
}

// The 4 bytes of uint8 A at a, shifted to signed (A - 128) and repeated over the 16 lanes: the
// broadcast operand of a 4-deep dot.
inline int8x16_t broadcast4_u8_shifted(const uint8_t* a) {
  uint32_t word;
  __builtin_memcpy(&word, a, sizeof(word));
  return vreinterpretq_s8_u32(veorq_u32(vdupq_n_u32(word), vdupq_n_u32(0x80808080u)));
}

}  // namespace
}  // namespace lowbit
