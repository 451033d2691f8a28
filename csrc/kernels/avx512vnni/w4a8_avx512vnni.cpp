// w4a8 GEMM on AVX-512: int8 activations x 4-bit weights, MR rows x one 64-column panel a tile
// (see w4_tile_avx512.h). The unpacked nibbles (u8, 0..15) are vpdpbusd's unsigned operand
// against int8 activations, so each group's int32 dot product is exact; it is scaled into a
// float32 accumulator at the end of the group. Float accumulators across groups live in an L1
// tile so the registers hold the inner loop's.
#include <immintrin.h>

#include <cstring>

#include "kernels/avx512vnni/w4_tile_avx512.h"
#include "kernels/isa_kernels.h"

namespace lowbit {
namespace avx512vnni {
namespace {

template <int MR>
struct IntTile {
  __m512i v[MR][4];
};

// acc[r][j] += 4-deep dot of the unpacked weights w[j] with the 4 int8 activations at a + r*lda.
template <int MR>
LOWBIT_INLINE void dot_quad(IntTile<MR>& acc, const Quad& w, const int8_t* a, int64_t lda) {
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    int32_t a4;
    std::memcpy(&a4, a + r * lda, sizeof(a4));
    const __m512i av = _mm512_set1_epi32(a4);
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) acc.v[r][j] = _mm512_dpbusd_epi32(acc.v[r][j], w.v[j], av);
  }
}

template <int MR>
void w4a8_tile(const W4Problem& p, int64_t m0, int64_t panel) {
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  alignas(64) float facc[MR][kPanelCols];
  std::memset(facc, 0, sizeof(facc));
  const int8_t* a = p.a_s8 + m0 * p.lda;
  const int64_t octets = p.group_pad / 8;
  for (int64_t g = 0; g < p.groups; ++g) {
    const W4Group b = w4_group(p, panel, g);
    const int8_t* ag = a + g * p.group_pad;
    IntTile<MR> acc;
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) acc.v[r][j] = _mm512_setzero_si512();
    for (int64_t o = 0; o < octets; ++o) {
      const uint8_t* wo = b.weights + o * kW4OctetBytes;
      prefetch_octet(wo);
      // Low nibbles (k = 8o..8o+3), then high ones: only 4 weight registers live at a time.
      Quad w;
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) w.v[j] = _mm512_and_si512(_mm512_load_si512(wo + 64 * j), low4);
      dot_quad(acc, w, ag + o * 8, p.lda);
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j)
        w.v[j] = _mm512_and_si512(_mm512_srli_epi16(_mm512_load_si512(wo + 64 * j), 4), low4);
      dot_quad(acc, w, ag + o * 8 + 4, p.lda);
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      const __m512 scale = _mm512_load_ps(b.scales + 16 * j);
      const __m512i zero = zero_points(b, j);
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        const int32_t sum = p.a_group_sum[(m0 + r) * p.groups + g];
        const __m512i corr = p.symmetric ? _mm512_set1_epi32(8 * sum)
                                         : _mm512_mullo_epi32(zero, _mm512_set1_epi32(sum));
        const __m512i d = _mm512_sub_epi32(acc.v[r][j], corr);
        float* f = &facc[r][16 * j];
        _mm512_store_ps(f, _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), scale, _mm512_load_ps(f)));
      }
    }
  }
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    const int64_t n0 = panel * kPanelCols + 16 * j;
    const __mmask16 mask = column_mask(p, n0);
    if (mask == 0) continue;
    const __m512 bias = p.bias ? _mm512_maskz_loadu_ps(mask, p.bias + n0) : _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const int64_t m = m0 + r;
      const __m512 y = _mm512_fmadd_ps(_mm512_load_ps(&facc[r][16 * j]),
                                       _mm512_set1_ps(p.a_scale[m]), bias);
      _mm512_mask_storeu_ps(p.y + m * p.ldy + n0, mask, y);
    }
  }
}

constexpr TileFn kW4a8Tiles[] = {w4a8_tile<1>, w4a8_tile<2>, w4a8_tile<3>,
                                 w4a8_tile<4>};

}  // namespace

void w4a8(const W4Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
          int64_t panel_end) {
  walk(kW4a8Tiles, p, m_begin, m_end, panel_begin, panel_end);
}

}  // namespace avx512vnni
}  // namespace lowbit
