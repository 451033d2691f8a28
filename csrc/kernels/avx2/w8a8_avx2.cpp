// w8a8 GEMM (u8 x s8) on AVX2 without VNNI, exact for every input: both operands are widened to
// int16 and multiplied with vpmaddwd (two products summed into int32; |sum| <= 2*255*128, no
// saturation). vpmaddubsw is never used: its int16 pair sums saturate at 255*127*2.
//
// The packed panel stores 4 k values per column; a 16-byte load sign-extends to 4 columns x
// (k0,k1),(k2,k3) int16 pairs, and the broadcast A bytes a0..a3 zero-extend to the matching
// (a0,a1),(a2,a3) pattern, so each int32 lane holds half of one column's k group. Adjacent lanes
// are summed in the epilogue.
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "kernels/isa_kernels.h"

namespace lowbit {
namespace avx2 {
namespace {

inline __m256i broadcast_a(const uint8_t* a) {
  int32_t v;
  std::memcpy(&v, a, sizeof(v));
  return _mm256_cvtepu8_epi16(_mm_set1_epi32(v));
}

// Finishes 8 columns starting at n0 for row m from two half-sum accumulators.
inline void store8(const W8A8Problem& p, int64_t m, int64_t n0, __m256i lo4, __m256i hi4) {
  const __m256i sums = _mm256_permute4x64_epi64(_mm256_hadd_epi32(lo4, hi4), 0xD8);
  __m256i c = _mm256_sub_epi32(
      sums, _mm256_mullo_epi32(_mm256_set1_epi32(p.row_zero[m]),
                               _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p.col_corr + n0))));
  if (!p.b_symmetric)
    c = _mm256_sub_epi32(
        c, _mm256_mullo_epi32(_mm256_set1_epi32(p.row_sum[m]),
                              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p.col_zero + n0))));
  const int64_t valid = p.N - n0;
  if (valid >= 8) {
    if (p.c_i32) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(p.c_i32 + m * p.ldc + n0), c);
    } else {
      const __m256 s = _mm256_mul_ps(_mm256_set1_ps(p.row_scale[m]), _mm256_loadu_ps(p.col_scale + n0));
      const __m256 bias = p.bias ? _mm256_loadu_ps(p.bias + n0) : _mm256_setzero_ps();
      _mm256_storeu_ps(p.y_f32 + m * p.ldc + n0, _mm256_fmadd_ps(_mm256_cvtepi32_ps(c), s, bias));
    }
    return;
  }
  int32_t lanes[8];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(lanes), c);
  for (int64_t t = 0; t < valid; ++t) {
    const int64_t n = n0 + t;
    if (p.c_i32) {
      p.c_i32[m * p.ldc + n] = lanes[t];
    } else {
      const float s = p.row_scale[m] * p.col_scale[n];
      p.y_f32[m * p.ldc + n] = std::fma(static_cast<float>(lanes[t]), s, p.bias ? p.bias[n] : 0.0f);
    }
  }
}

// MR rows x (4 * NV) columns starting at column col0 of the panel.
template <int MR, int NV>
void tile(const W8A8Problem& p, int64_t m0, int64_t panel, int64_t col0) {
  const int8_t* b = p.b_panels + panel * kPanelCols * p.KP + col0 * 4;
  const uint8_t* a = p.a + m0 * p.lda;
  const int64_t groups = p.KP / 4;
  __m256i acc[MR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) acc[r][j] = _mm256_setzero_si256();
  for (int64_t g = 0; g < groups; ++g) {
    const int8_t* bg = b + g * kGroupBytes;
    __m256i av[MR];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) av[r] = broadcast_a(a + r * p.lda + g * 4);
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) {
      const __m256i bv =
          _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(bg + j * 16)));
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) acc[r][j] = _mm256_add_epi32(acc[r][j], _mm256_madd_epi16(av[r], bv));
    }
  }
  const int64_t n_base = panel * kPanelCols + col0;
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < NV; j += 2)
      if (n_base + j * 4 < p.N) store8(p, m0 + r, n_base + j * 4, acc[r][j], acc[r][j + 1]);
}

template <int MR, int NV>
void tile_columns(const W8A8Problem& p, int64_t m0, int64_t panel) {
  for (int64_t col0 = 0; col0 < kPanelCols && panel * kPanelCols + col0 < p.N; col0 += 4 * NV)
    tile<MR, NV>(p, m0, panel, col0);
}

}  // namespace

void w8a8(const W8A8Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
          int64_t panel_end) {
  for (int64_t panel = panel_begin; panel < panel_end; ++panel) {
    int64_t m = m_begin;
    for (; m + 4 <= m_end; m += 4) tile_columns<4, 2>(p, m, panel);
    switch (m_end - m) {
      case 1: tile_columns<1, 8>(p, m, panel); break;
      case 2: tile_columns<2, 4>(p, m, panel); break;
      case 3: tile_columns<3, 2>(p, m, panel); break;
      default: break;
    }
  }
}

}  // namespace avx2
}  // namespace lowbit
