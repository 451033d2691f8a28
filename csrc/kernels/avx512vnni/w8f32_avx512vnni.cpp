// w8f32 GEMM (weight-only int8) on AVX-512: float32 activations against the packed int8 panels. A
// tile is MR rows x one 64-column panel (4 zmm per row). Each 64-byte load holds 16 columns x 4 k;
// byte t of every lane becomes a float32 by a shift pair and a convert, once per tile, and is FMA'd
// into every row k by k in order (the order of csrc/kernels/scalar, so every ISA gives the same
// bits).
#include <immintrin.h>

#include "kernels/isa_kernels.h"

namespace lowbit {
namespace avx512vnni {
namespace {

constexpr int64_t kPrefetchBytes = 16 * kGroupBytes;  // far enough ahead to cover DRAM latency

// Byte t of each 32-bit lane, sign-extended, as float32.
template <int T>
LOWBIT_INLINE __m512 byte_as_float(__m512i v) {
  if (T < 3) v = _mm512_slli_epi32(v, 24 - 8 * T);
  return _mm512_cvtepi32_ps(_mm512_srai_epi32(v, 24));
}

template <int MR, int T>
LOWBIT_INLINE void fma_k(const __m512i (&v)[4], const __m512 (&zero)[4], bool symmetric,
                         const float* a, int64_t lda, int64_t k, __m512 (&s)[MR][4]) {
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    __m512 w = byte_as_float<T>(v[j]);
    if (!symmetric) w = _mm512_sub_ps(w, zero[j]);
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r) s[r][j] = _mm512_fmadd_ps(_mm512_set1_ps(a[r * lda + k]), w, s[r][j]);
  }
}

template <int MR>
void w8f32_tile(const W8F32Problem& p, int64_t m0, int64_t panel) {
  const int8_t* b = p.b_panels + panel * kPanelCols * p.KP;
  const float* a = p.a + m0 * p.lda;
  __m512 zero[4];
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j)
    zero[j] = _mm512_cvtepi32_ps(_mm512_loadu_si512(p.col_zero + panel * kPanelCols + 16 * j));
  __m512 s[MR][4];
#pragma GCC unroll 4
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) s[r][j] = _mm512_setzero_ps();
  const int64_t quads = p.K / 4;
  for (int64_t q = 0; q < quads; ++q) {
    const int8_t* bq = b + q * kGroupBytes;
    __m512i v[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      _mm_prefetch(reinterpret_cast<const char*>(bq + kPrefetchBytes + 64 * j), _MM_HINT_T0);
      v[j] = _mm512_load_si512(bq + 64 * j);
    }
    fma_k<MR, 0>(v, zero, p.b_symmetric, a, p.lda, 4 * q, s);
    fma_k<MR, 1>(v, zero, p.b_symmetric, a, p.lda, 4 * q + 1, s);
    fma_k<MR, 2>(v, zero, p.b_symmetric, a, p.lda, 4 * q + 2, s);
    fma_k<MR, 3>(v, zero, p.b_symmetric, a, p.lda, 4 * q + 3, s);
  }
  const int64_t tail = p.K - 4 * quads;  // 0..3 k of a last, zero-padded quad
  if (tail > 0) {
    const int8_t* bq = b + quads * kGroupBytes;
    __m512i v[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) v[j] = _mm512_load_si512(bq + 64 * j);
    fma_k<MR, 0>(v, zero, p.b_symmetric, a, p.lda, 4 * quads, s);
    if (tail > 1) fma_k<MR, 1>(v, zero, p.b_symmetric, a, p.lda, 4 * quads + 1, s);
    if (tail > 2) fma_k<MR, 2>(v, zero, p.b_symmetric, a, p.lda, 4 * quads + 2, s);
  }
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    const int64_t n0 = panel * kPanelCols + 16 * j;
    const int64_t valid = p.N - n0;
    if (valid <= 0) break;
    const __mmask16 mask = valid >= 16 ? static_cast<__mmask16>(0xffff)
                                       : static_cast<__mmask16>((1u << valid) - 1u);
    const __m512 scale = _mm512_maskz_loadu_ps(mask, p.col_scale + n0);
    const __m512 bias = p.bias ? _mm512_maskz_loadu_ps(mask, p.bias + n0) : _mm512_setzero_ps();
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r)
      _mm512_mask_storeu_ps(p.y + (m0 + r) * p.ldy + n0, mask, _mm512_fmadd_ps(s[r][j], scale, bias));
  }
}

using TileFn = void (*)(const W8F32Problem&, int64_t, int64_t);
constexpr TileFn kTiles[] = {w8f32_tile<1>, w8f32_tile<2>, w8f32_tile<3>, w8f32_tile<4>};
constexpr int kMaxRows = 4;

}  // namespace

// Rows are walked inside each panel, so the panel stays in L2 while the A rows stream past it.
void w8f32(const W8F32Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
           int64_t panel_end) {
  for (int64_t panel = panel_begin; panel < panel_end; ++panel) {
    int64_t m = m_begin;
    for (; m + kMaxRows <= m_end; m += kMaxRows) kTiles[kMaxRows - 1](p, m, panel);
    if (m < m_end) kTiles[m_end - m - 1](p, m, panel);
  }
}

}  // namespace avx512vnni
}  // namespace lowbit
