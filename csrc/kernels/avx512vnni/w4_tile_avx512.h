// Helpers of the 4-bit weight GEMMs on AVX-512 (w4a8_avx512vnni.cpp, w4f32_avx512vnni.cpp): a
// tile is MR rows x one 64-column panel (4 zmm per row); zero points, prefetch, column masks and
// the tile walk. Internal linkage (anonymous namespace): each translation unit keeps its own
// copy, compiled with its own flags. Included only by AVX-512 translation units.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "kernels/isa_kernels.h"
#include "kernels/w4_layout.h"

namespace lowbit {
namespace avx512vnni {
namespace {

constexpr int64_t kPrefetchBytes = 16 * kW4OctetBytes;  // far enough ahead to cover DRAM latency

LOWBIT_INLINE __m512i zero_points(const W4Group& b, int j) {
  if (b.zeros == nullptr) return _mm512_set1_epi32(8);
  return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.zeros + 16 * j)));
}

LOWBIT_INLINE void prefetch_octet(const uint8_t* octet) {
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) _mm_prefetch(reinterpret_cast<const char*>(octet + kPrefetchBytes + 64 * j), _MM_HINT_T0);
}

LOWBIT_INLINE __mmask16 column_mask(const W4Problem& p, int64_t n0) {
  const int64_t valid = p.N - n0;
  return valid >= 16 ? static_cast<__mmask16>(0xffff)
                     : static_cast<__mmask16>((1u << (valid > 0 ? valid : 0)) - 1u);
}

struct Quad {
  __m512i v[4];
};

using TileFn = void (*)(const W4Problem&, int64_t, int64_t);

// Rows are walked inside each panel, so the panel stays in L2 while the A rows stream past it.
// tiles[r - 1] computes r rows; the last entry is the tile used for full row blocks.
template <int MR_MAX>
void walk(const TileFn (&tiles)[MR_MAX], const W4Problem& p, int64_t m_begin,
          int64_t m_end, int64_t panel_begin, int64_t panel_end) {
  for (int64_t panel = panel_begin; panel < panel_end; ++panel) {
    int64_t m = m_begin;
    for (; m + MR_MAX <= m_end; m += MR_MAX) tiles[MR_MAX - 1](p, m, panel);
    if (m < m_end) tiles[m_end - m - 1](p, m, panel);
  }
}

}  // namespace
}  // namespace avx512vnni
}  // namespace lowbit
