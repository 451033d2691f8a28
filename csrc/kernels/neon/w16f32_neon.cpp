// wf16f32 / wbf16f32 GEMMs (16-bit float weights, float32 activations) on NEON, over the 16-bit
// panels of kernel_api.h (W16F32Problem). A tile is MR <= 2 rows x half a panel (32 columns, 8 q
// registers per row); the weights are widened in registers as they stream past (float16: fcvtl
// of 8-value rows, exact; bfloat16: one k pair of 4 columns per 16-byte load, even k by a shift,
// odd k by a mask) and FMA'd (vfmaq, fused) into every row k by k in order, then + bias
// (csrc/kernels/scalar's order, the same bits).
#include <arm_neon.h>

#include "kernels/isa_kernels.h"

namespace lowbit {
namespace neon {
namespace {

constexpr int kMaxRows = 2;

template <int MR>
LOWBIT_INLINE void fma_rows(float32x4_t w, int j, const float* a, int64_t lda, int64_t k,
                            float32x4_t (&s)[MR][8]) {
  for (int r = 0; r < MR; ++r) s[r][j] = vfmaq_f32(s[r][j], vdupq_n_f32(a[r * lda + k]), w);
}

template <bool kBf16, int MR>
void tile(const W16F32Problem& p, int64_t m0, int64_t panel, int half) {
  const uint16_t* b = p.b_panels + panel * kPanelCols * p.KP;
  const float* a = p.a + m0 * p.lda;
  const int64_t c0 = half * kHalfPanelCols;
  float32x4_t s[MR][8];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < 8; ++j) s[r][j] = vdupq_n_f32(0.0f);
  if (kBf16) {
    const uint32x4_t odd_mask = vdupq_n_u32(0xffff0000u);
    const int64_t pairs = p.K / 2;
    for (int64_t q = 0; q < pairs; ++q) {
      const uint16_t* bq = b + q * kPanelCols * kBf16PairDepth + c0 * kBf16PairDepth;
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) {
        const uint32x4_t v = vld1q_u32(reinterpret_cast<const uint32_t*>(bq + 8 * j));
        fma_rows<MR>(vreinterpretq_f32_u32(vshlq_n_u32(v, 16)), j, a, p.lda, 2 * q, s);
        fma_rows<MR>(vreinterpretq_f32_u32(vandq_u32(v, odd_mask)), j, a, p.lda, 2 * q + 1, s);
      }
    }
    if (p.K % 2) {
      const uint16_t* bq = b + pairs * kPanelCols * kBf16PairDepth + c0 * kBf16PairDepth;
      for (int j = 0; j < 8; ++j) {
        const uint32x4_t v = vld1q_u32(reinterpret_cast<const uint32_t*>(bq + 8 * j));
        fma_rows<MR>(vreinterpretq_f32_u32(vshlq_n_u32(v, 16)), j, a, p.lda, 2 * pairs, s);
      }
    }
  } else {
    for (int64_t k = 0; k < p.K; ++k) {
      const uint16_t* bk = b + k * kPanelCols + c0;
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {
        const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(bk + 8 * j));
        fma_rows<MR>(vcvt_f32_f16(vget_low_f16(h)), 2 * j, a, p.lda, k, s);
        fma_rows<MR>(vcvt_high_f32_f16(h), 2 * j + 1, a, p.lda, k, s);
      }
    }
  }
  for (int j = 0; j < 8; ++j) {
    const int64_t n0 = panel * kPanelCols + c0 + 4 * j;
    const int64_t valid = p.N - n0;
    if (valid <= 0) break;
    const int cols = valid >= 4 ? 4 : static_cast<int>(valid);
    float bias[4] = {};
    if (p.bias)
      for (int c = 0; c < cols; ++c) bias[c] = p.bias[n0 + c];
    for (int r = 0; r < MR; ++r) {
      float out[4];
      vst1q_f32(out, p.bias ? vaddq_f32(s[r][j], vld1q_f32(bias)) : s[r][j]);
      float* y = p.y + (m0 + r) * p.ldy + n0;
      for (int c = 0; c < cols; ++c) y[c] = out[c];
    }
  }
}

template <bool kBf16>
void run(const W16F32Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
         int64_t panel_end) {
  using Tile = void (*)(const W16F32Problem&, int64_t, int64_t, int);
  constexpr Tile kTiles[] = {tile<kBf16, 1>, tile<kBf16, 2>};
  for (int64_t panel = panel_begin; panel < panel_end; ++panel)
    for (int half = 0; half < 2 && panel * kPanelCols + half * kHalfPanelCols < p.N; ++half) {
      int64_t m = m_begin;
      for (; m + kMaxRows <= m_end; m += kMaxRows) kTiles[kMaxRows - 1](p, m, panel, half);
      if (m < m_end) kTiles[m_end - m - 1](p, m, panel, half);
    }
}

}  // namespace

void wf16f32(const W16F32Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
             int64_t panel_end) {
  run<false>(p, m_begin, m_end, panel_begin, panel_end);
}
void wbf16f32(const W16F32Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
              int64_t panel_end) {
  run<true>(p, m_begin, m_end, panel_begin, panel_end);
}

}  // namespace neon
}  // namespace lowbit
