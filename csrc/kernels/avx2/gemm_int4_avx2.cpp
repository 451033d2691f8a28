// 4-bit weight GEMMs on AVX2. A tile is MR rows x half a panel (32 columns, 4 ymm per row).
// w4a8 uses vpmaddubsw, which is exact here: the unsigned operand is a nibble (<= 15), so a
// pair sum is at most 2 * 15 * 127 = 3810 and the low and high nibble sums added in int16 at most
// 7620, far from int16 saturation; vpmaddwd by ones then widens to int32. weight_only
// dequantizes nibbles to float32 in registers, k by k in order (the same order as csrc/ref).
#include <immintrin.h>

#include <cstring>

#include "kernels/avx2/avx2_kernels.h"
#include "kernels/int4_layout.h"

namespace lowbit {
namespace avx2 {
namespace {

constexpr int64_t kPanel = 64;
constexpr int64_t kHalf = 32;
constexpr int64_t kOctetBytes = kPanel * 4;
constexpr int64_t kPrefetchBytes = 16 * kOctetBytes;

#define LOWBIT_INLINE __attribute__((always_inline)) inline

// Zero points of the 8 columns starting at column c of the panel.
LOWBIT_INLINE __m256i zero_points(const Int4Group& b, int64_t c) {
  if (b.zeros == nullptr) return _mm256_set1_epi32(8);
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.zeros + c)));
}

LOWBIT_INLINE __m256i lane_mask(int64_t valid) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(valid < 8 ? valid : 8)), lanes);
}

// Writes the 8 lanes of y for columns n0.. of row m (only those below N).
LOWBIT_INLINE void store8(const Int4GemmProblem& p, int64_t m, int64_t n0, __m256 y) {
  const int64_t valid = p.N - n0;
  float* dst = p.y + m * p.ldy + n0;
  if (valid >= 8)
    _mm256_storeu_ps(dst, y);
  else if (valid > 0)
    _mm256_maskstore_ps(dst, lane_mask(valid), y);
}

LOWBIT_INLINE __m256 load_bias8(const Int4GemmProblem& p, int64_t n0) {
  const int64_t valid = p.N - n0;
  if (valid >= 8) return _mm256_loadu_ps(p.bias + n0);
  return valid > 0 ? _mm256_maskload_ps(p.bias + n0, lane_mask(valid)) : _mm256_setzero_ps();
}

template <int MR>
struct IntTile {
  __m256i v[MR][4];
};

template <int MR>
void w4a8_tile(const Int4GemmProblem& p, int64_t m0, int64_t panel, int64_t half) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1);
  alignas(32) float facc[MR][kHalf];
  std::memset(facc, 0, sizeof(facc));
  const int8_t* a = p.a_s8 + m0 * p.lda;
  const int64_t octets = p.group_pad / 8;
  for (int64_t g = 0; g < p.groups; ++g) {
    const Int4Group b = int4_group(p, panel, g);
    const int8_t* ag = a + g * p.group_pad;
    IntTile<MR> acc;
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) acc.v[r][q] = _mm256_setzero_si256();
    for (int64_t o = 0; o < octets; ++o) {
      const uint8_t* wo = b.weights + o * kOctetBytes + half * 128;
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
      const int64_t c = half * kHalf + 8 * q;
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
    const int64_t n0 = panel * kPanel + half * kHalf + 8 * q;
    if (n0 >= p.N) break;
    const __m256 bias = p.bias ? load_bias8(p, n0) : _mm256_setzero_ps();
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r)
      store8(p, m0 + r, n0,
             _mm256_fmadd_ps(_mm256_load_ps(&facc[r][8 * q]), _mm256_set1_ps(p.a_scale[m0 + r]), bias));
  }
}

template <int MR>
void w4f32_tile(const Int4GemmProblem& p, int64_t m0, int64_t panel, int64_t half) {
  const __m256i low4 = _mm256_set1_epi32(0x0F);
  alignas(32) float facc[MR][kHalf];
  std::memset(facc, 0, sizeof(facc));
  const float* a = p.a_f32 + m0 * p.lda;
  const int64_t octets = p.group_pad / 8;
  for (int64_t g = 0; g < p.groups; ++g) {
    const Int4Group b = int4_group(p, panel, g);
    const float* ag = a + g * p.group_pad;
    __m256 s[MR][4];
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) s[r][q] = _mm256_setzero_ps();
    for (int64_t o = 0; o < octets; ++o) {
      const uint8_t* wo = b.weights + o * kOctetBytes + half * 128;
      _mm_prefetch(reinterpret_cast<const char*>(wo + kPrefetchBytes), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(wo + kPrefetchBytes + 64), _MM_HINT_T0);
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) {
        const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(wo + 32 * q));
        const __m256i zero = zero_points(b, half * kHalf + 8 * q);
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
      const __m256 scale = _mm256_load_ps(b.scales + half * kHalf + 8 * q);
#pragma GCC unroll 4
      for (int r = 0; r < MR; ++r) {
        float* f = &facc[r][8 * q];
        _mm256_store_ps(f, _mm256_fmadd_ps(s[r][q], scale, _mm256_load_ps(f)));
      }
    }
  }
#pragma GCC unroll 4
  for (int q = 0; q < 4; ++q) {
    const int64_t n0 = panel * kPanel + half * kHalf + 8 * q;
    if (n0 >= p.N) break;
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r) {
      __m256 y = _mm256_load_ps(&facc[r][8 * q]);
      if (p.bias) y = _mm256_add_ps(y, load_bias8(p, n0));
      store8(p, m0 + r, n0, y);
    }
  }
}

template <void (*Tile1)(const Int4GemmProblem&, int64_t, int64_t, int64_t),
          void (*Tile2)(const Int4GemmProblem&, int64_t, int64_t, int64_t)>
void walk(const Int4GemmProblem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
          int64_t panel_end) {
  for (int64_t panel = panel_begin; panel < panel_end; ++panel)
    for (int64_t half = 0; half < 2; ++half) {
      if (panel * kPanel + half * kHalf >= p.N) break;
      int64_t m = m_begin;
      for (; m + 2 <= m_end; m += 2) Tile2(p, m, panel, half);
      if (m < m_end) Tile1(p, m, panel, half);
    }
}

}  // namespace

void gemm_w4a8(const Int4GemmProblem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
               int64_t panel_end) {
  walk<w4a8_tile<1>, w4a8_tile<2>>(p, m_begin, m_end, panel_begin, panel_end);
}

void gemm_w4f32(const Int4GemmProblem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
                int64_t panel_end) {
  walk<w4f32_tile<1>, w4f32_tile<2>>(p, m_begin, m_end, panel_begin, panel_end);
}

}  // namespace avx2
}  // namespace lowbit
