// w4f32 GEMM on AVX-512 (Int4Compute::weight_only): float32 activations x 4-bit weights, MR rows x
// one 64-column panel a tile (see w4_tile_avx512.h). Nibbles become float32 in registers and are
// FMA'd against float32 activations, k by k in order (the same order as csrc/kernels/scalar). Float
// accumulators across groups live in an L1 tile so the registers hold the inner loop's.
#include <immintrin.h>

#include <cstring>

#include "kernels/avx512vnni/w4_tile_avx512.h"
#include "kernels/isa_kernels.h"

namespace lowbit {
namespace avx512vnni {
namespace {

template <int MR>
struct FloatTile {
  __m512 v[MR][4];
};

struct FloatQuad {
  __m512 v[4];
};

// Nibble to float32 through a 16-entry table (vpermps reads only the low 4 bits of each index
// lane, so a shifted weight lane needs no mask): u - 8 for symmetric weights, u otherwise, the
// zero point then subtracted in float (exact for these small integers, same bits as u - zero).
template <int MR>
void w4f32_tile(const W4Problem& p, int64_t m0, int64_t panel) {
  const __m512 table = p.symmetric
      ? _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7)
      : _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  alignas(64) float facc[MR][kPanelCols];
  std::memset(facc, 0, sizeof(facc));
  const float* a = p.a_f32 + m0 * p.lda;
  const int64_t octets = p.group_pad / 8;
  for (int64_t g = 0; g < p.groups; ++g) {
    const W4Group b = w4_group(p, panel, g);
    const float* ag = a + g * p.group_pad;
    FloatQuad zero;
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) zero.v[j] = _mm512_cvtepi32_ps(zero_points(b, j));
    FloatTile<MR> s;
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) s.v[r][j] = _mm512_setzero_ps();
    for (int64_t o = 0; o < octets; ++o) {
      const uint8_t* wo = b.weights + o * kW4OctetBytes;
      prefetch_octet(wo);
      Quad v;
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) v.v[j] = _mm512_load_si512(wo + 64 * j);
#pragma GCC unroll 8
      for (int kk = 0; kk < 8; ++kk) {  // k = 8o + kk: byte kk % 4, low nibble for kk < 4
        const int shift = 8 * (kk % 4) + 4 * (kk / 4);
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) {
          __m512 w = _mm512_permutexvar_ps(_mm512_srli_epi32(v.v[j], shift), table);
          if (!p.symmetric) w = _mm512_sub_ps(w, zero.v[j]);
#pragma GCC unroll 8
          for (int r = 0; r < MR; ++r)
            s.v[r][j] = _mm512_fmadd_ps(_mm512_set1_ps(ag[r * p.lda + o * 8 + kk]), w, s.v[r][j]);
        }
      }
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      const __m512 scale = _mm512_load_ps(b.scales + 16 * j);
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        float* f = &facc[r][16 * j];
        _mm512_store_ps(f, _mm512_fmadd_ps(s.v[r][j], scale, _mm512_load_ps(f)));
      }
    }
  }
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    const int64_t n0 = panel * kPanelCols + 16 * j;
    const __mmask16 mask = column_mask(p, n0);
    if (mask == 0) continue;
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const int64_t m = m0 + r;
      __m512 y = _mm512_load_ps(&facc[r][16 * j]);
      if (p.bias) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(mask, p.bias + n0));
      _mm512_mask_storeu_ps(p.y + m * p.ldy + n0, mask, y);
    }
  }
}

constexpr TileFn kW4f32Tiles[] = {w4f32_tile<1>, w4f32_tile<2>, w4f32_tile<3>, w4f32_tile<4>};

}  // namespace

void w4f32(const W4Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
           int64_t panel_end) {
  walk(kW4f32Tiles, p, m_begin, m_end, panel_begin, panel_end);
}

}  // namespace avx512vnni
}  // namespace lowbit
