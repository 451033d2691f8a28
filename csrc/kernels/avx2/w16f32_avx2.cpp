// wf16f32 / wbf16f32 GEMMs (16-bit float weights, float32 activations) on AVX2 + F16C, over the
// 16-bit panels of kernel_api.h (W16F32Problem). A tile is MR <= 3 rows x half a panel (32
// columns, 4 ymm per row: 12 accumulators of the 16 registers); the weights are widened in
// registers as they stream past (float16: vcvtph2ps of 16-byte rows; bfloat16: one k pair of
// 8 columns per 32-byte load, even k by a shift, odd k by a mask) and FMA'd into every row k by
// k in order, then + bias (csrc/kernels/scalar's order). No blocked form here (AVX-512's widens a
// block once for many rows): on AVX2 CPUs these kernels serve the small batches weight-only
// formats are for.
#include <immintrin.h>

#include "kernels/isa_kernels.h"

namespace lowbit {
namespace avx2 {
namespace {

constexpr int64_t kPrefetchBytes = 4096;
constexpr int kMaxRows = 3;

LOWBIT_INLINE __m256 bf16_even(__m256i v) { return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)); }
LOWBIT_INLINE __m256 bf16_odd(__m256i v) {
  return _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
}

template <int MR>
LOWBIT_INLINE void fma_rows(const __m256 w, int j, const float* a, int64_t lda, int64_t k,
                            __m256 (&s)[MR][4]) {
#pragma GCC unroll 3
  for (int r = 0; r < MR; ++r) s[r][j] = _mm256_fmadd_ps(_mm256_broadcast_ss(a + r * lda + k), w, s[r][j]);
}

template <bool kBf16, int MR>
void tile(const W16F32Problem& p, int64_t m0, int64_t panel, int half) {
  const uint16_t* b = p.b_panels + panel * kPanelCols * p.KP;
  const float* a = p.a + m0 * p.lda;
  const int64_t c0 = half * kHalfPanelCols;
  __m256 s[MR][4];
#pragma GCC unroll 3
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) s[r][j] = _mm256_setzero_ps();
  if (kBf16) {
    const int64_t pairs = p.K / 2;
    for (int64_t q = 0; q < pairs; ++q) {
      const uint16_t* bq = b + q * kPanelCols * kBf16PairDepth + c0 * kBf16PairDepth;
      _mm_prefetch(reinterpret_cast<const char*>(bq) + kPrefetchBytes, _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(bq) + kPrefetchBytes + 64, _MM_HINT_T0);
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {
        const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(bq + 16 * j));
        fma_rows<MR>(bf16_even(v), j, a, p.lda, 2 * q, s);
        fma_rows<MR>(bf16_odd(v), j, a, p.lda, 2 * q + 1, s);
      }
    }
    if (p.K % 2) {
      const uint16_t* bq = b + pairs * kPanelCols * kBf16PairDepth + c0 * kBf16PairDepth;
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j)
        fma_rows<MR>(bf16_even(_mm256_load_si256(reinterpret_cast<const __m256i*>(bq + 16 * j))), j,
                     a, p.lda, 2 * pairs, s);
    }
  } else {
    for (int64_t k = 0; k < p.K; ++k) {
      const uint16_t* bk = b + k * kPanelCols + c0;
      _mm_prefetch(reinterpret_cast<const char*>(bk) + kPrefetchBytes, _MM_HINT_T0);
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j)
        fma_rows<MR>(_mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(bk + 8 * j))), j,
                     a, p.lda, k, s);
    }
  }
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    const int64_t n0 = panel * kPanelCols + c0 + 8 * j;
    const int64_t valid = p.N - n0;
    if (valid <= 0) break;
    const int cols = valid >= 8 ? 8 : static_cast<int>(valid);
    alignas(32) float bias[8] = {};
    if (p.bias)
      for (int c = 0; c < cols; ++c) bias[c] = p.bias[n0 + c];
    const __m256 vb = _mm256_load_ps(bias);
#pragma GCC unroll 3
    for (int r = 0; r < MR; ++r) {
      float* y = p.y + (m0 + r) * p.ldy + n0;
      const __m256 out = p.bias ? _mm256_add_ps(s[r][j], vb) : s[r][j];
      if (cols == 8) {
        _mm256_storeu_ps(y, out);
      } else {
        alignas(32) float tmp[8];
        _mm256_store_ps(tmp, out);
        for (int c = 0; c < cols; ++c) y[c] = tmp[c];
      }
    }
  }
}

template <bool kBf16>
void run(const W16F32Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
         int64_t panel_end) {
  using Tile = void (*)(const W16F32Problem&, int64_t, int64_t, int);
  constexpr Tile kTiles[] = {tile<kBf16, 1>, tile<kBf16, 2>, tile<kBf16, 3>};
  // Rows are walked inside each half panel so its weights stay in L1/L2 while A streams past.
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

}  // namespace avx2
}  // namespace lowbit
