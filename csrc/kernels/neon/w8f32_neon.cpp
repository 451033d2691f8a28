// w8f32 GEMM (weight-only int8) on NEON: float32 activations against the packed int8 panels. A tile
// is MR rows x half a panel (32 columns, 8 q registers per row). Each 16-byte load holds 4 columns
// x 4 k; byte t of every lane becomes a float32 by a shift pair and a convert, and is FMA'd (vfmaq,
// fused) into every row k by k in order (csrc/kernels/scalar's order, the same bits).
#include <arm_neon.h>

#include "kernels/isa_kernels.h"
#include "kernels/w8f32_walk.h"

namespace lowbit {
namespace neon {
namespace {

template <int T>
LOWBIT_INLINE float32x4_t byte_as_float(int32x4_t v) {
  if (T < 3) v = vshlq_n_s32(v, 24 - 8 * T);
  return vcvtq_f32_s32(vshrq_n_s32(v, 24));
}

template <int MR, int T>
LOWBIT_INLINE void fma_k(const int8_t* bq, const float32x4_t (&zero)[8], bool symmetric,
                         const float* a, int64_t lda, int64_t k, float32x4_t (&s)[MR][8]) {
  float32x4_t av[MR];
  for (int r = 0; r < MR; ++r) av[r] = vdupq_n_f32(a[r * lda + k]);
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j) {
    float32x4_t w = byte_as_float<T>(vld1q_s32(reinterpret_cast<const int32_t*>(bq + 16 * j)));
    if (!symmetric) w = vsubq_f32(w, zero[j]);
#pragma GCC unroll 2
    for (int r = 0; r < MR; ++r) s[r][j] = vfmaq_f32(s[r][j], av[r], w);
  }
}

template <int MR>
void w8f32_tile(const W8F32Problem& p, int64_t m0, int64_t panel, int half) {
  const int8_t* b = p.b_panels + panel * kPanelCols * p.KP + half * kHalfPanelCols * 4;
  const float* a = p.a + m0 * p.lda;
  const int64_t c0 = panel * kPanelCols + half * kHalfPanelCols;
  float32x4_t zero[8];
  for (int j = 0; j < 8; ++j) zero[j] = vcvtq_f32_s32(vld1q_s32(p.col_zero + c0 + 4 * j));
  float32x4_t s[MR][8];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < 8; ++j) s[r][j] = vdupq_n_f32(0.0f);
  const int64_t quads = p.K / 4;
  for (int64_t q = 0; q < quads; ++q) {
    const int8_t* bq = b + q * kGroupBytes;
    fma_k<MR, 0>(bq, zero, p.b_symmetric, a, p.lda, 4 * q, s);
    fma_k<MR, 1>(bq, zero, p.b_symmetric, a, p.lda, 4 * q + 1, s);
    fma_k<MR, 2>(bq, zero, p.b_symmetric, a, p.lda, 4 * q + 2, s);
    fma_k<MR, 3>(bq, zero, p.b_symmetric, a, p.lda, 4 * q + 3, s);
  }
  const int64_t tail = p.K - 4 * quads;
  if (tail > 0) {
    const int8_t* bq = b + quads * kGroupBytes;
    fma_k<MR, 0>(bq, zero, p.b_symmetric, a, p.lda, 4 * quads, s);
    if (tail > 1) fma_k<MR, 1>(bq, zero, p.b_symmetric, a, p.lda, 4 * quads + 1, s);
    if (tail > 2) fma_k<MR, 2>(bq, zero, p.b_symmetric, a, p.lda, 4 * quads + 2, s);
  }
  for (int j = 0; j < 8; ++j) {
    const int64_t n0 = c0 + 4 * j;
    const int64_t valid = p.N - n0;
    if (valid <= 0) break;
    const int cols = valid >= 4 ? 4 : static_cast<int>(valid);
    float scale[4] = {}, bias[4] = {};
    for (int c = 0; c < cols; ++c) {
      scale[c] = p.col_scale[n0 + c];
      bias[c] = p.bias ? p.bias[n0 + c] : 0.0f;
    }
    const float32x4_t vs = vld1q_f32(scale), vb = vld1q_f32(bias);
    for (int r = 0; r < MR; ++r) {
      float out[4];
      vst1q_f32(out, vfmaq_f32(vb, s[r][j], vs));
      float* y = p.y + (m0 + r) * p.ldy + n0;
      for (int c = 0; c < cols; ++c) y[c] = out[c];
    }
  }
}

constexpr W8F32HalfTile kTiles[] = {w8f32_tile<1>, w8f32_tile<2>};

}  // namespace

void w8f32(const W8F32Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
           int64_t panel_end) {
  walk_half_panels(kTiles, p, m_begin, m_end, panel_begin, panel_end);
}

}  // namespace neon
}  // namespace lowbit
