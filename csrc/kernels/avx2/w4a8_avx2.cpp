// w4a8 GEMM on AVX2: int8 activations x 4-bit weights, MR rows x half a panel a tile (see
// w4_tile_avx2.h). vpmaddubsw is exact here: the unsigned operand is a nibble (<= 15), so a
// pair sum is at most 2 * 15 * 127 = 3810 and the low and high nibble sums added in int16 at most
// 7620, far from int16 saturation; vpmaddwd by ones then widens to int32.
#include <immintrin.h>

#include <cstring>

#include "kernels/avx2/w4_tile_avx2.h"
#include "kernels/isa_kernels.h"

namespace lowbit {
namespace avx2 {
namespace {

template <int MR>
struct IntTile {
  __m256i v[MR][4];
};

template <int MR>
void w4a8_tile(const W4Problem& p, int64_t m0, int64_t panel, int64_t half) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1);
  alignas(32) float facc[MR][kHalfPanelCols];
  std::memset(facc, 0, sizeof(facc));
  const int8_t* a = p.a_s8 + m0 * p.lda;
  const int64_t octets = p.group_pad / 8;
  for (int64_t g = 0; g < p.groups; ++g) {
    const W4Group b = w4_group(p, panel, g);
    const int8_t* ag = a + g * p.group_pad;
    IntTile<MR> acc;
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) acc.v[r][q] = _mm256_setzero_si256();
    for (int64_t o = 0; o < octets; ++o) {
      const uint8_t* wo = b.weights + o * kW4OctetBytes + half * 128;
      _mm_prefetch(reinterpret_cast<const char*>(wo + kPrefetchBytes), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(wo + kPrefetchBytes + 64), _MM_HINT_T0);
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) {
        const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(wo + 32 * q));
        const __m256i lo = _mm256_and_si256(v, low4);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
#pragma GCC unroll 4
        for (int r = 0; r < MR; ++r) {
          int32_t a_lo, a_hi;
          std::memcpy(&a_lo, ag + r * p.lda + o * 8, sizeof(a_lo));
          std::memcpy(&a_hi, ag + r * p.lda + o * 8 + 4, sizeof(a_hi));
          const __m256i pairs = _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_set1_epi32(a_lo)),
                                                 _mm256_maddubs_epi16(hi, _mm256_set1_epi32(a_hi)));
          acc.v[r][q] = _mm256_add_epi32(acc.v[r][q], _mm256_madd_epi16(pairs, ones));
        }
      }
    }
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {
      const int64_t c = half * kHalfPanelCols + 8 * q;
      const __m256 scale = _mm256_load_ps(b.scales + c);
      const __m256i zero = zero_points(b, c);
#pragma GCC unroll 4
      for (int r = 0; r < MR; ++r) {
        const __m256i sum = _mm256_set1_epi32(p.a_group_sum[(m0 + r) * p.groups + g]);
        const __m256i d = _mm256_sub_epi32(acc.v[r][q], _mm256_mullo_epi32(zero, sum));
        float* f = &facc[r][8 * q];
        _mm256_store_ps(f, _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), scale, _mm256_load_ps(f)));
      }
    }
  }
#pragma GCC unroll 4
  for (int q = 0; q < 4; ++q) {
    const int64_t n0 = panel * kPanelCols + half * kHalfPanelCols + 8 * q;
    if (n0 >= p.N) break;
    const __m256 bias = p.bias ? load_bias8(p, n0) : _mm256_setzero_ps();
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r)
      store8(p, m0 + r, n0,
             _mm256_fmadd_ps(_mm256_load_ps(&facc[r][8 * q]), _mm256_set1_ps(p.a_scale[m0 + r]), bias));
  }
}

}  // namespace

void w4a8(const W4Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
          int64_t panel_end) {
  walk<w4a8_tile<1>, w4a8_tile<2>>(p, m_begin, m_end, panel_begin, panel_end);
}

}  // namespace avx2
}  // namespace lowbit
