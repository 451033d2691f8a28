// w4f32 GEMM on AVX2 (Int4Compute::weight_only): float32 activations x 4-bit weights, MR rows
// x half a panel a tile (see w4_tile_avx2.h). Nibbles are dequantized to float32 in registers
// and FMA'd k by k in order (the same order as csrc/kernels/scalar).
#include <immintrin.h>

#include <cstring>

#include "kernels/avx2/w4_tile_avx2.h"
#include "kernels/isa_kernels.h"

namespace lowbit {
namespace avx2 {
namespace {

template <int MR>
void w4f32_tile(const W4Problem& p, int64_t m0, int64_t panel, int64_t half) {
  const __m256i low4 = _mm256_set1_epi32(0x0F);
  alignas(32) float facc[MR][kHalfPanelCols];
  std::memset(facc, 0, sizeof(facc));
  const float* a = p.a_f32 + m0 * p.lda;
  const int64_t octets = p.group_pad / 8;
  for (int64_t g = 0; g < p.groups; ++g) {
    const W4Group b = w4_group(p, panel, g);
    const float* ag = a + g * p.group_pad;
    __m256 s[MR][4];
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) s[r][q] = _mm256_setzero_ps();
    for (int64_t o = 0; o < octets; ++o) {
      const uint8_t* wo = b.weights + o * kW4OctetBytes + half * 128;
      _mm_prefetch(reinterpret_cast<const char*>(wo + kPrefetchBytes), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(wo + kPrefetchBytes + 64), _MM_HINT_T0);
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) {
        const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(wo + 32 * q));
        const __m256i zero = zero_points(b, half * kHalfPanelCols + 8 * q);
#pragma GCC unroll 8
        for (int kk = 0; kk < 8; ++kk) {  // k = 8o + kk: byte kk % 4, low nibble for kk < 4
          const int shift = 8 * (kk % 4) + 4 * (kk / 4);
          const __m256i u = _mm256_and_si256(_mm256_srli_epi32(v, shift), low4);
          const __m256 w = _mm256_cvtepi32_ps(_mm256_sub_epi32(u, zero));
#pragma GCC unroll 4
          for (int r = 0; r < MR; ++r)
            s[r][q] = _mm256_fmadd_ps(_mm256_broadcast_ss(ag + r * p.lda + o * 8 + kk), w, s[r][q]);
        }
      }
    }
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {
      const __m256 scale = _mm256_load_ps(b.scales + half * kHalfPanelCols + 8 * q);
#pragma GCC unroll 4
      for (int r = 0; r < MR; ++r) {
        float* f = &facc[r][8 * q];
        _mm256_store_ps(f, _mm256_fmadd_ps(s[r][q], scale, _mm256_load_ps(f)));
      }
    }
  }
#pragma GCC unroll 4
  for (int q = 0; q < 4; ++q) {
    const int64_t n0 = panel * kPanelCols + half * kHalfPanelCols + 8 * q;
    if (n0 >= p.N) break;
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r) {
      __m256 y = _mm256_load_ps(&facc[r][8 * q]);
      if (p.bias) y = _mm256_add_ps(y, load_bias8(p, n0));
      store8(p, m0 + r, n0, y);
    }
  }
}

}  // namespace

void w4f32(const W4Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
           int64_t panel_end) {
  walk<w4f32_tile<1>, w4f32_tile<2>>(p, m_begin, m_end, panel_begin, panel_end);
}

}  // namespace avx2
}  // namespace lowbit
