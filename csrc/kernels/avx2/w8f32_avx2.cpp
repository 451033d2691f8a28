// w8f32 GEMM (weight-only int8) on AVX2: float32 activations against the packed int8 panels. A tile
// is MR rows x half a panel (32 columns, 4 ymm per row), so 3 rows of accumulators fit the 16
// registers. Each 32-byte load holds 8 columns x 4 k; byte t of every lane becomes a float32 by a
// shift pair and a convert, and is FMA'd into every row k by k in order (csrc/kernels/scalar's
// order).
#include <immintrin.h>

#include "kernels/isa_kernels.h"
#include "kernels/w8f32_walk.h"

namespace lowbit {
namespace avx2 {
namespace {

constexpr int64_t kPrefetchBytes = 16 * kGroupBytes;

template <int MR>
LOWBIT_INLINE void fma_k(const int8_t* bq, int t, const float* zero, bool symmetric,
                         const float* a, int64_t lda, int64_t k, __m256 (&s)[MR][4]) {
  const __m128i left = _mm_cvtsi32_si128(24 - 8 * t);
  const __m128i right = _mm_cvtsi32_si128(24);
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(bq + 32 * j));
    __m256 w = _mm256_cvtepi32_ps(_mm256_sra_epi32(_mm256_sll_epi32(v, left), right));
    if (!symmetric) w = _mm256_sub_ps(w, _mm256_loadu_ps(zero + 8 * j));
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r)
      s[r][j] = _mm256_fmadd_ps(_mm256_broadcast_ss(a + r * lda + k), w, s[r][j]);
  }
}

template <int MR>
void w8f32_tile(const W8F32Problem& p, int64_t m0, int64_t panel, int half) {
  const int8_t* b = p.b_panels + panel * kPanelCols * p.KP + half * kHalfPanelCols * 4;
  const float* a = p.a + m0 * p.lda;
  const int64_t c0 = panel * kPanelCols + half * kHalfPanelCols;
  alignas(32) float zero[kHalfPanelCols];
  for (int c = 0; c < kHalfPanelCols; ++c) zero[c] = static_cast<float>(p.col_zero[c0 + c]);
  __m256 s[MR][4];
#pragma GCC unroll 4
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) s[r][j] = _mm256_setzero_ps();
  const int64_t quads = p.K / 4;
  for (int64_t q = 0; q < quads; ++q) {
    const int8_t* bq = b + q * kGroupBytes;
    _mm_prefetch(reinterpret_cast<const char*>(bq + kPrefetchBytes), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(bq + kPrefetchBytes + 64), _MM_HINT_T0);
#pragma GCC unroll 4
    for (int t = 0; t < 4; ++t) fma_k<MR>(bq, t, zero, p.b_symmetric, a, p.lda, 4 * q + t, s);
  }
  const int64_t tail = p.K - 4 * quads;
  for (int t = 0; t < tail; ++t)
    fma_k<MR>(b + quads * kGroupBytes, t, zero, p.b_symmetric, a, p.lda, 4 * quads + t, s);
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    const int64_t n0 = c0 + 8 * j;
    const int64_t valid = p.N - n0;
    if (valid <= 0) break;
    alignas(32) float scale[8] = {}, bias[8] = {};
    const int cols = valid >= 8 ? 8 : static_cast<int>(valid);
    for (int c = 0; c < cols; ++c) {
      scale[c] = p.col_scale[n0 + c];
      bias[c] = p.bias ? p.bias[n0 + c] : 0.0f;
    }
    const __m256 vs = _mm256_load_ps(scale), vb = _mm256_load_ps(bias);
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r) {
      float* y = p.y + (m0 + r) * p.ldy + n0;
      const __m256 out = _mm256_fmadd_ps(s[r][j], vs, vb);
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

constexpr W8F32HalfTile kTiles[] = {w8f32_tile<1>, w8f32_tile<2>, w8f32_tile<3>};

}  // namespace

void w8f32(const W8F32Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
           int64_t panel_end) {
  walk_half_panels(kTiles, p, m_begin, m_end, panel_begin, panel_end);
}

}  // namespace avx2
}  // namespace lowbit
