// u8 x s8 GEMM microkernels on vpdpbusd (exact: u8*s8 products summed four at a time into
// int32, no intermediate saturation). A tile is MR rows x one 64-column panel (4 zmm
// accumulators per row). Few rows get extra accumulator sets over alternating k groups so that
// enough independent vpdpbusd chains hide its latency (small-M / GEMV case).
#include <immintrin.h>

#include <cstring>

#include "kernels/avx512vnni/avx512vnni_kernels.h"

namespace lowbit {
namespace avx512vnni {
namespace {

constexpr int64_t kPanel = 64;
constexpr int64_t kGroupBytes = kPanel * 4;  // one k group of a panel

inline __m512i broadcast_a(const uint8_t* a) {
  int32_t v;
  std::memcpy(&v, a, sizeof(v));
  return _mm512_set1_epi32(v);
}

template <int MR>
inline void store_tile(const GemmProblem& p, int64_t m0, int64_t panel, __m512i (&acc)[MR][4]) {
  for (int j = 0; j < 4; ++j) {
    const int64_t n0 = panel * kPanel + j * 16;
    if (n0 >= p.N) break;
    const __mmask16 mask =
        p.N - n0 >= 16 ? static_cast<__mmask16>(0xffff)
                       : static_cast<__mmask16>((1u << (p.N - n0)) - 1u);
    const __m512i corr = _mm512_load_si512(p.col_corr + n0);
    const __m512i col_zero = _mm512_load_si512(p.col_zero + n0);
    __m512 col_scale = _mm512_setzero_ps(), bias = _mm512_setzero_ps();
    if (p.y_f32) {
      col_scale = _mm512_maskz_loadu_ps(mask, p.col_scale + n0);
      if (p.bias) bias = _mm512_maskz_loadu_ps(mask, p.bias + n0);
    }
    for (int r = 0; r < MR; ++r) {
      const int64_t m = m0 + r;
      __m512i c = _mm512_sub_epi32(acc[r][j],
                                   _mm512_mullo_epi32(_mm512_set1_epi32(p.row_zero[m]), corr));
      if (!p.b_symmetric)
        c = _mm512_sub_epi32(c, _mm512_mullo_epi32(col_zero, _mm512_set1_epi32(p.row_sum[m])));
      if (p.c_i32) {
        _mm512_mask_storeu_epi32(p.c_i32 + m * p.ldc + n0, mask, c);
      } else {
        const __m512 s = _mm512_mul_ps(_mm512_set1_ps(p.row_scale[m]), col_scale);
        _mm512_mask_storeu_ps(p.y_f32 + m * p.ldc + n0, mask,
                              _mm512_fmadd_ps(_mm512_cvtepi32_ps(c), s, bias));
      }
    }
  }
}

// MR rows x 64 columns; KU independent accumulator sets over consecutive k groups.
template <int MR, int KU>
void tile(const GemmProblem& p, int64_t m0, int64_t panel) {
  const int8_t* b = p.b_panels + panel * kPanel * p.KP;
  const uint8_t* a = p.a + m0 * p.lda;
  const int64_t lda = p.lda;
  const int64_t groups = p.KP / 4;
  __m512i acc[KU][MR][4];
#pragma GCC unroll 32
  for (int u = 0; u < KU; ++u)
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) acc[u][r][j] = _mm512_setzero_si512();

  int64_t g = 0;
  for (; g + KU <= groups; g += KU) {
#pragma GCC unroll 4
    for (int u = 0; u < KU; ++u) {
      const int8_t* bg = b + (g + u) * kGroupBytes;
      const __m512i b0 = _mm512_load_si512(bg);
      const __m512i b1 = _mm512_load_si512(bg + 64);
      const __m512i b2 = _mm512_load_si512(bg + 128);
      const __m512i b3 = _mm512_load_si512(bg + 192);
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        const __m512i av = broadcast_a(a + r * lda + (g + u) * 4);
        acc[u][r][0] = _mm512_dpbusd_epi32(acc[u][r][0], av, b0);
        acc[u][r][1] = _mm512_dpbusd_epi32(acc[u][r][1], av, b1);
        acc[u][r][2] = _mm512_dpbusd_epi32(acc[u][r][2], av, b2);
        acc[u][r][3] = _mm512_dpbusd_epi32(acc[u][r][3], av, b3);
      }
    }
  }
  for (; g < groups; ++g) {
    const int8_t* bg = b + g * kGroupBytes;
    const __m512i b0 = _mm512_load_si512(bg);
    const __m512i b1 = _mm512_load_si512(bg + 64);
    const __m512i b2 = _mm512_load_si512(bg + 128);
    const __m512i b3 = _mm512_load_si512(bg + 192);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512i av = broadcast_a(a + r * lda + g * 4);
      acc[0][r][0] = _mm512_dpbusd_epi32(acc[0][r][0], av, b0);
      acc[0][r][1] = _mm512_dpbusd_epi32(acc[0][r][1], av, b1);
      acc[0][r][2] = _mm512_dpbusd_epi32(acc[0][r][2], av, b2);
      acc[0][r][3] = _mm512_dpbusd_epi32(acc[0][r][3], av, b3);
    }
  }
#pragma GCC unroll 4
  for (int u = 1; u < KU; ++u)
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) acc[0][r][j] = _mm512_add_epi32(acc[0][r][j], acc[u][r][j]);
  store_tile<MR>(p, m0, panel, acc[0]);
}

}  // namespace

// Rows are walked inside each panel so a panel (KP x 64 bytes) stays in L2 while every row
// block of A streams past it.
void gemm(const GemmProblem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
          int64_t panel_end) {
  for (int64_t panel = panel_begin; panel < panel_end; ++panel) {
    int64_t m = m_begin;
    for (; m + 6 <= m_end; m += 6) tile<6, 1>(p, m, panel);
    switch (m_end - m) {
      case 1: tile<1, 4>(p, m, panel); break;
      case 2: tile<2, 2>(p, m, panel); break;
      case 3: tile<3, 2>(p, m, panel); break;
      case 4: tile<4, 1>(p, m, panel); break;
      case 5: tile<5, 1>(p, m, panel); break;
      default: break;
    }
  }
}

}  // namespace avx512vnni
}  // namespace lowbit
