// w8a8 GEMM (u8 x s8) on AVX-VNNI (VEX-encoded 256-bit vpdpbusd, as on CPUs with AVX-VNNI but
// without AVX-512). Exact, like the AVX-512 kernel; 16 ymm registers allow MR rows x (8 * NV) columns
// with MR * NV <= 12 accumulators.
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "kernels/isa_kernels.h"

namespace lowbit {
namespace avxvnni {
namespace {

template <int MR, int NV>
struct TileAcc {
  __m256i v[MR][NV];
};

template <int MR, int NV>
LOWBIT_INLINE void step(TileAcc<MR, NV>& acc, const uint8_t* a, int64_t lda, const int8_t* bg) {
  __m256i b[NV];
#pragma GCC unroll 8
  for (int j = 0; j < NV; ++j) b[j] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bg + 32 * j));
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    int32_t a4;
    std::memcpy(&a4, a + r * lda, sizeof(a4));
    const __m256i av = _mm256_set1_epi32(a4);
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) acc.v[r][j] = _mm256_dpbusd_avx_epi32(acc.v[r][j], av, b[j]);
  }
}

// Finishes 8 columns starting at n0 for row m.
LOWBIT_INLINE void store8(const W8A8Problem& p, int64_t m, int64_t n0, __m256i acc) {
  __m256i c = _mm256_sub_epi32(
      acc, _mm256_mullo_epi32(_mm256_set1_epi32(p.row_zero[m]),
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

// MR rows x (8 * NV) columns starting at column col0 of the panel.
template <int MR, int NV>
void tile(const W8A8Problem& p, int64_t m0, int64_t panel, int64_t col0) {
  const int8_t* b = p.b_panels + panel * kPanelCols * p.KP + col0 * 4;
  const uint8_t* a = p.a + m0 * p.lda;
  const int64_t groups = p.KP / 4;
  TileAcc<MR, NV> acc;
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) acc.v[r][j] = _mm256_setzero_si256();
  for (int64_t g = 0; g < groups; ++g) step(acc, a + g * 4, p.lda, b + g * kGroupBytes);
  const int64_t n_base = panel * kPanelCols + col0;
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j)
      if (n_base + j * 8 < p.N) store8(p, m0 + r, n_base + j * 8, acc.v[r][j]);
}

template <int MR, int NV>
void tile_columns(const W8A8Problem& p, int64_t m0, int64_t panel) {
  for (int64_t col0 = 0; col0 < kPanelCols && panel * kPanelCols + col0 < p.N; col0 += 8 * NV)
    tile<MR, NV>(p, m0, panel, col0);
}

}  // namespace

void w8a8(const W8A8Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
          int64_t panel_end) {
  for (int64_t panel = panel_begin; panel < panel_end; ++panel) {
    int64_t m = m_begin;
    for (; m + 6 <= m_end; m += 6) tile_columns<6, 2>(p, m, panel);
    switch (m_end - m) {
      case 1: tile_columns<1, 8>(p, m, panel); break;
      case 2: tile_columns<2, 4>(p, m, panel); break;
      case 3: tile_columns<3, 2>(p, m, panel); break;
      case 4: tile_columns<4, 2>(p, m, panel); break;
      case 5: tile_columns<5, 2>(p, m, panel); break;
      default: break;
    }
  }
}

}  // namespace avxvnni
}  // namespace lowbit
