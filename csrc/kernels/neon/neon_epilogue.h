// Epilogues shared by the NEON translation units (neon and neondot). Everything here has
// internal linkage (anonymous namespace), so each translation unit keeps its own copy compiled
// with its own flags: no ODR mixing across ISA flags.
#pragma once

#include <arm_neon.h>

#include <cmath>
#include <cstdint>

#include "kernels/int4_layout.h"
#include "kernels/kernel_api.h"

namespace lowbit {
namespace {

// The NEON int8 GEMMs multiply signed A' = A - 128 (A ^ 0x80) by B', so their raw sum is
// acc' = acc - 128 * colsum(B'), where colsum(B') = col_corr + K * col_zero (PackedMatrix). The
// full epilogue c = acc - col_zero * row_sum - row_zero * col_corr then becomes
//   c = acc' + (128 - row_zero) * col_corr + col_zero * (128 * K - row_sum)      (mod 2^32)
// and is written for the 4 columns n0..n0+3 of row m (only those below N).
inline void store4_shifted(const GemmProblem& p, int64_t m, int64_t n0, int32x4_t acc_shifted) {
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

// The 4 bytes at a, repeated over the 16 lanes: the broadcast operand of a 4-deep dot.
inline int8x16_t broadcast4_s8(const int8_t* a) {
  uint32_t word;
  __builtin_memcpy(&word, a, sizeof(word));
  return vreinterpretq_s8_u32(vdupq_n_u32(word));
}

// The same for uint8 A, shifted to signed (A - 128).
inline int8x16_t broadcast4_u8_shifted(const uint8_t* a) {
  uint32_t word;
  __builtin_memcpy(&word, a, sizeof(word));
  return vreinterpretq_s8_u32(veorq_u32(vdupq_n_u32(word), vdupq_n_u32(0x80808080u)));
}

// Zero points of the 4 columns starting at panel column c, as int32 lanes.
inline int32x4_t int4_zero_points(const Int4Group& b, int64_t c) {
  if (b.zeros == nullptr) return vdupq_n_s32(8);
  const uint32_t z[4] = {b.zeros[c], b.zeros[c + 1], b.zeros[c + 2], b.zeros[c + 3]};
  return vreinterpretq_s32_u32(vld1q_u32(z));
}

// Writes 4 float lanes of y for columns n0.. of row m (only those below N).
inline void store4_f32(const Int4GemmProblem& p, int64_t m, int64_t n0, float32x4_t y) {
  float lanes[4];
  vst1q_f32(lanes, y);
  const int64_t valid = p.N - n0 < 4 ? p.N - n0 : 4;
  for (int64_t t = 0; t < valid; ++t) p.y[m * p.ldy + n0 + t] = lanes[t];
}

inline float32x4_t load4_bias(const Int4GemmProblem& p, int64_t n0) {
  float lanes[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int64_t t = 0; t < 4 && n0 + t < p.N; ++t) lanes[t] = p.bias[n0 + t];
  return vld1q_f32(lanes);
}

// The end of a w4a8 tile: y = fma(acc, a_scale[m], bias), acc the float accumulators of
// MR rows x 16 columns starting at column n0.
template <int MR>
inline void w4a8_store(const Int4GemmProblem& p, int64_t m0, int64_t n0, const float (&facc)[MR][16]) {
  for (int q = 0; q < 4; ++q) {
    if (n0 + 4 * q >= p.N) break;
    const float32x4_t bias = p.bias ? load4_bias(p, n0 + 4 * q) : vdupq_n_f32(0.0f);
    for (int r = 0; r < MR; ++r)
      store4_f32(p, m0 + r, n0 + 4 * q,
                 vfmaq_n_f32(bias, vld1q_f32(&facc[r][4 * q]), p.a_scale[m0 + r]));
  }
}

// A group's integer dot products into the float accumulators:
// facc = fma(float(dot - zero * a_group_sum), scale, facc).
template <int MR>
inline void w4a8_group_end(const Int4GemmProblem& p, const Int4Group& b, int64_t m0, int64_t g,
                           int64_t c0, const int32x4_t (&acc)[MR][4], float (&facc)[MR][16]) {
  for (int q = 0; q < 4; ++q) {
    const float32x4_t scale = vld1q_f32(b.scales + c0 + 4 * q);
    const int32x4_t zero = int4_zero_points(b, c0 + 4 * q);
    for (int r = 0; r < MR; ++r) {
      const int32x4_t d = vmlsq_n_s32(acc[r][q], zero, p.a_group_sum[(m0 + r) * p.groups + g]);
      float* f = &facc[r][4 * q];
      vst1q_f32(f, vfmaq_f32(vld1q_f32(f), vcvtq_f32_s32(d), scale));
    }
  }
}

}  // namespace
}  // namespace lowbit
