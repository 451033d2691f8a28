// Helpers of the 4-bit weight GEMMs of the NEON translation units (w4a8 on neon and neondot,
// w4f32 on neon): a tile is MR rows x 16 columns of a 64-column panel; the activation broadcast,
// zero points, the stores, the w4a8 group epilogue and the tile walk. Everything here has
// internal linkage (anonymous namespace), so each translation unit keeps its own copy compiled
// with its own flags: no ODR mixing across ISA flags.
#pragma once

#include <arm_neon.h>

#include <cstdint>

#include "kernels/kernel_api.h"
#include "kernels/w4_layout.h"

namespace lowbit {
namespace {

// The 4 bytes at a, repeated over the 16 lanes: the broadcast operand of a 4-deep dot.
inline int8x16_t broadcast4_s8(const int8_t* a) {
  uint32_t word;
  __builtin_memcpy(&word, a, sizeof(word));
  return vreinterpretq_s8_u32(vdupq_n_u32(word));
}

// Zero points of the 4 columns starting at panel column c, as int32 lanes.
inline int32x4_t w4_zero_points(const W4Group& b, int64_t c) {
  if (b.zeros == nullptr) return vdupq_n_s32(8);
  const uint32_t z[4] = {b.zeros[c], b.zeros[c + 1], b.zeros[c + 2], b.zeros[c + 3]};
  return vreinterpretq_s32_u32(vld1q_u32(z));
}

// Writes 4 float lanes of y for columns n0.. of row m (only those below N).
inline void store4_f32(const W4Problem& p, int64_t m, int64_t n0, float32x4_t y) {
  float lanes[4];
  vst1q_f32(lanes, y);
  const int64_t valid = p.N - n0 < 4 ? p.N - n0 : 4;
  for (int64_t t = 0; t < valid; ++t) p.y[m * p.ldy + n0 + t] = lanes[t];
}

inline float32x4_t load4_bias(const W4Problem& p, int64_t n0) {
  float lanes[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int64_t t = 0; t < 4 && n0 + t < p.N; ++t) lanes[t] = p.bias[n0 + t];
  return vld1q_f32(lanes);
}

// The end of a w4a8 tile: y = fma(acc, a_scale[m], bias), acc the float accumulators of
// MR rows x 16 columns starting at column n0.
template <int MR>
inline void w4a8_store(const W4Problem& p, int64_t m0, int64_t n0, const float (&facc)[MR][16]) {
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
inline void w4a8_group_end(const W4Problem& p, const W4Group& b, int64_t m0, int64_t g,
                           int64_t c0, const int32x4_t (&acc)[MR][4], float (&facc)[MR][16]) {
  for (int q = 0; q < 4; ++q) {
    const float32x4_t scale = vld1q_f32(b.scales + c0 + 4 * q);
    const int32x4_t zero = w4_zero_points(b, c0 + 4 * q);
    for (int r = 0; r < MR; ++r) {
      const int32x4_t d = vmlsq_n_s32(acc[r][q], zero, p.a_group_sum[(m0 + r) * p.groups + g]);
      float* f = &facc[r][4 * q];
      vst1q_f32(f, vfmaq_f32(vld1q_f32(f), vcvtq_f32_s32(d), scale));
    }
  }
}

// Rows are walked inside each 16-column block of a panel (Tile2: 2 rows, Tile1: a last row).
template <void (*Tile1)(const W4Problem&, int64_t, int64_t, int64_t),
          void (*Tile2)(const W4Problem&, int64_t, int64_t, int64_t)>
void walk_w4(const W4Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
             int64_t panel_end) {
  for (int64_t panel = panel_begin; panel < panel_end; ++panel)
    for (int64_t c0 = 0; c0 < kPanelCols && panel * kPanelCols + c0 < p.N; c0 += 16) {
      int64_t m = m_begin;
      for (; m + 2 <= m_end; m += 2) Tile2(p, m, panel, c0);
      if (m < m_end) Tile1(p, m, panel, c0);
    }
}

}  // namespace
}  // namespace lowbit
