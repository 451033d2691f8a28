// Depthwise convolution, AVX-512 (contract: DwConvProblem in kernels/kernel_api.h): as the AVX2
// kernel (tap pairs interleaved, widened to int16 minus the zero point, vpmaddwd against the
// interleaved weights, exact), 16 channels per zmm, two blocks in flight; the channel tail is a
// masked store.
#include <immintrin.h>

#include <vector>

#include "kernels/dwconv_taps.h"
#include "kernels/isa_kernels.h"

namespace lowbit {
namespace avx512vnni {
namespace {

LOWBIT_INLINE __m512i pair_words(const uint8_t* a, const uint8_t* b, __m512i z16) {
  const __m128i x0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a));
  const __m128i x1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b));
  const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_unpacklo_epi8(x0, x1)),
                                               _mm_unpackhi_epi8(x0, x1), 1);
  return _mm512_sub_epi16(_mm512_cvtepu8_epi16(both), z16);
}

LOWBIT_INLINE void store_block(const DwConvProblem& p, int64_t row, int64_t c, __m512i acc,
                               __m512 row_scale) {
  const int64_t n = p.C - c < 16 ? p.C - c : 16;
  const __mmask16 mask = static_cast<__mmask16>(n == 16 ? 0xFFFF : (1u << n) - 1);
  if (p.c_i32) {
    _mm512_mask_storeu_epi32(p.c_i32 + row + c, mask, acc);
  } else {
    const __m512 s = _mm512_mul_ps(row_scale, _mm512_loadu_ps(p.col_scale + c));
    const __m512 b = p.bias ? _mm512_loadu_ps(p.bias + c) : _mm512_setzero_ps();
    _mm512_mask_storeu_ps(p.y_f32 + row + c, mask, _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), s, b));
  }
}

}  // namespace

void dwconv(const DwConvProblem& p, int64_t oh_begin, int64_t oh_end) {
  std::vector<const uint8_t*> taps(static_cast<size_t>(2 * p.tap_pairs));
  const __m512i z16 = _mm512_set1_epi16(static_cast<int16_t>(p.x_zero));
  const __m512 row_scale = _mm512_set1_ps(p.row_scale);
  for (int64_t oh = oh_begin; oh < oh_end; ++oh) {
    for (int64_t ow = 0; ow < p.OW; ++ow) {
      dw_tap_rows(p, oh, ow, taps.data());
      const int64_t row = (oh * p.OW + ow) * p.ldc;
      int64_t c = 0;
      for (; c + 32 <= p.CP; c += 32) {
        __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
        const int16_t* w = p.w + c * 2;
        for (int64_t t = 0; t < p.tap_pairs; ++t, w += p.CP * 2) {
          const uint8_t *a = taps[2 * t] + c, *b = taps[2 * t + 1] + c;
          acc0 = _mm512_add_epi32(acc0, _mm512_madd_epi16(pair_words(a, b, z16), _mm512_loadu_si512(w)));
          acc1 = _mm512_add_epi32(acc1, _mm512_madd_epi16(pair_words(a + 16, b + 16, z16), _mm512_loadu_si512(w + 32)));
        }
        store_block(p, row, c, acc0, row_scale);
        if (c + 16 < p.C) store_block(p, row, c + 16, acc1, row_scale);
      }
      for (; c < p.CP; c += 16) {
        __m512i acc = _mm512_setzero_si512();
        const int16_t* w = p.w + c * 2;
        for (int64_t t = 0; t < p.tap_pairs; ++t, w += p.CP * 2)
          acc = _mm512_add_epi32(acc, _mm512_madd_epi16(pair_words(taps[2 * t] + c, taps[2 * t + 1] + c, z16),
                                                        _mm512_loadu_si512(w)));
        store_block(p, row, c, acc, row_scale);
      }
    }
  }
}

}  // namespace avx512vnni
}  // namespace lowbit
