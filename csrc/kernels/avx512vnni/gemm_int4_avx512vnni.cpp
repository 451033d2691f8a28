// 4-bit weight GEMMs on AVX-512. A tile is MR rows x one 64-column panel (4 zmm per row).
// w4a8: the unpacked nibbles (u8, 0..15) are vpdpbusd's unsigned operand against int8
// activations, so each group's int32 dot product is exact; it is scaled into a float32
// accumulator at the end of the group. weight_only: nibbles become float32 in registers and
// are FMA'd against float32 activations, k by k in order (the same order as csrc/ref).
// Float accumulators across groups live in an L1 tile so the registers hold the inner loop's.
#include <immintrin.h>

#include <cstring>

#include "kernels/avx512vnni/avx512vnni_kernels.h"
#include "kernels/int4_layout.h"

namespace lowbit {
namespace avx512vnni {
namespace {

constexpr int64_t kPanel = 64;
constexpr int64_t kOctetBytes = kPanel * 4;
constexpr int64_t kPrefetchBytes = 16 * kOctetBytes;  // far enough ahead to cover DRAM latency

#define LOWBIT_INLINE __attribute__((always_inline)) inline

LOWBIT_INLINE __m512i zero_points(const Int4Group& b, int j) {
  if (b.zeros == nullptr) return _mm512_set1_epi32(8);
  return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.zeros + 16 * j)));
}

LOWBIT_INLINE void prefetch_octet(const uint8_t* octet) {
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) _mm_prefetch(reinterpret_cast<const char*>(octet + kPrefetchBytes + 64 * j), _MM_HINT_T0);
}

LOWBIT_INLINE __mmask16 column_mask(const Int4GemmProblem& p, int64_t n0) {
  const int64_t valid = p.N - n0;
  return valid >= 16 ? static_cast<__mmask16>(0xffff)
                     : static_cast<__mmask16>((1u << (valid > 0 ? valid : 0)) - 1u);
}

template <int MR>
struct IntTile {
  __m512i v[MR][4];
};
template <int MR>
struct FloatTile {
  __m512 v[MR][4];
};
struct Quad {
  __m512i v[4];
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
void w4a8_tile(const Int4GemmProblem& p, int64_t m0, int64_t panel) {
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  alignas(64) float facc[MR][kPanel];
  std::memset(facc, 0, sizeof(facc));
  const int8_t* a = p.a_s8 + m0 * p.lda;
  const int64_t octets = p.group_pad / 8;
  for (int64_t g = 0; g < p.groups; ++g) {
    const Int4Group b = int4_group(p, panel, g);
    const int8_t* ag = a + g * p.group_pad;
    IntTile<MR> acc;
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) acc.v[r][j] = _mm512_setzero_si512();
    for (int64_t o = 0; o < octets; ++o) {
      const uint8_t* wo = b.weights + o * kOctetBytes;
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
    const int64_t n0 = panel * kPanel + 16 * j;
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

struct FloatQuad {
  __m512 v[4];
};

// Nibble to float32 through a 16-entry table (vpermps reads only the low 4 bits of each index
// lane, so a shifted weight lane needs no mask): u - 8 for symmetric weights, u otherwise, the
// zero point then subtracted in float (exact for these small integers, same bits as u - zero).
template <int MR>
void w4f32_tile(const Int4GemmProblem& p, int64_t m0, int64_t panel) {
  const __m512 table = p.symmetric
      ? _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7)
      : _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  alignas(64) float facc[MR][kPanel];
  std::memset(facc, 0, sizeof(facc));
  const float* a = p.a_f32 + m0 * p.lda;
  const int64_t octets = p.group_pad / 8;
  for (int64_t g = 0; g < p.groups; ++g) {
    const Int4Group b = int4_group(p, panel, g);
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
      const uint8_t* wo = b.weights + o * kOctetBytes;
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
    const int64_t n0 = panel * kPanel + 16 * j;
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

using TileFn = void (*)(const Int4GemmProblem&, int64_t, int64_t);

// Rows are walked inside each panel, so the panel stays in L2 while the A rows stream past it.
// tiles[r - 1] computes r rows; the last entry is the tile used for full row blocks.
template <int MR_MAX>
void walk(const TileFn (&tiles)[MR_MAX], const Int4GemmProblem& p, int64_t m_begin,
          int64_t m_end, int64_t panel_begin, int64_t panel_end) {
  for (int64_t panel = panel_begin; panel < panel_end; ++panel) {
    int64_t m = m_begin;
    for (; m + MR_MAX <= m_end; m += MR_MAX) tiles[MR_MAX - 1](p, m, panel);
    if (m < m_end) tiles[m_end - m - 1](p, m, panel);
  }
}

constexpr TileFn kW4a8Tiles[] = {w4a8_tile<1>, w4a8_tile<2>, w4a8_tile<3>,
                                 w4a8_tile<4>};
constexpr TileFn kW4f32Tiles[] = {w4f32_tile<1>, w4f32_tile<2>, w4f32_tile<3>, w4f32_tile<4>};

}  // namespace

void gemm_w4a8(const Int4GemmProblem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
               int64_t panel_end) {
  walk(kW4a8Tiles, p, m_begin, m_end, panel_begin, panel_end);
}

void gemm_w4f32(const Int4GemmProblem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
                int64_t panel_end) {
  walk(kW4f32Tiles, p, m_begin, m_end, panel_begin, panel_end);
}

}  // namespace avx512vnni
}  // namespace lowbit
