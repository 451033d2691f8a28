// Helpers of the 4-bit weight GEMMs on AVX2 (w4a8_avx2.cpp, w4f32_avx2.cpp): a tile is MR rows
// x half a panel (32 columns, 4 ymm per row); zero points, lane masks, the stores and the tile
// walk. Internal linkage (anonymous namespace): each translation unit keeps its own copy,
// compiled with its own flags. Included only by AVX2 translation units.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "kernels/isa_kernels.h"
#include "kernels/w4_layout.h"

namespace lowbit {
namespace avx2 {
namespace {

constexpr int64_t kPrefetchBytes = 16 * kW4OctetBytes;

// Zero points of the 8 columns starting at column c of the panel.
LOWBIT_INLINE __m256i zero_points(const W4Group& b, int64_t c) {
  if (b.zeros == nullptr) return _mm256_set1_epi32(8);
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.zeros + c)));
}

LOWBIT_INLINE __m256i lane_mask(int64_t valid) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(valid < 8 ? valid : 8)), lanes);
}

// Writes the 8 lanes of y for columns n0.. of row m (only those below N).
LOWBIT_INLINE void store8(const W4Problem& p, int64_t m, int64_t n0, __m256 y) {
  const int64_t valid = p.N - n0;
  float* dst = p.y + m * p.ldy + n0;
  if (valid >= 8)
    _mm256_storeu_ps(dst, y);
  else if (valid > 0)
    _mm256_maskstore_ps(dst, lane_mask(valid), y);
}

LOWBIT_INLINE __m256 load_bias8(const W4Problem& p, int64_t n0) {
  const int64_t valid = p.N - n0;
  if (valid >= 8) return _mm256_loadu_ps(p.bias + n0);
  return valid > 0 ? _mm256_maskload_ps(p.bias + n0, lane_mask(valid)) : _mm256_setzero_ps();
}

// Rows are walked inside each half panel (Tile2: 2 rows, Tile1: a last single row).
template <void (*Tile1)(const W4Problem&, int64_t, int64_t, int64_t),
          void (*Tile2)(const W4Problem&, int64_t, int64_t, int64_t)>
void walk(const W4Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
          int64_t panel_end) {
  for (int64_t panel = panel_begin; panel < panel_end; ++panel)
    for (int64_t half = 0; half < 2; ++half) {
      if (panel * kPanelCols + half * kHalfPanelCols >= p.N) break;
      int64_t m = m_begin;
      for (; m + 2 <= m_end; m += 2) Tile2(p, m, panel, half);
      if (m < m_end) Tile1(p, m, panel, half);
    }
}

}  // namespace
}  // namespace avx2
}  // namespace lowbit
