// Depthwise convolution, AVX2 (contract: DwConvProblem in kernels/kernel_api.h). Per output
// pixel, 16 channels at a time: the bytes of a tap pair are interleaved (unpack), widened to
// int16 minus the zero point and multiplied with the pair's interleaved int16 weights by
// vpmaddwd, which sums the two taps into each channel's int32 lane: exact, since
// |x - z| * |w - zw| <= 255 * 255 and a pair at most twice that.
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "kernels/dwconv_taps.h"
#include "kernels/isa_kernels.h"

namespace lowbit {
namespace avx2 {

void dwconv(const DwConvProblem& p, int64_t oh_begin, int64_t oh_end) {
  std::vector<const uint8_t*> taps(static_cast<size_t>(2 * p.tap_pairs));
  const __m256i z16 = _mm256_set1_epi16(static_cast<int16_t>(p.x_zero));
  const __m256 row_scale = _mm256_set1_ps(p.row_scale);
  for (int64_t oh = oh_begin; oh < oh_end; ++oh) {
    for (int64_t ow = 0; ow < p.OW; ++ow) {
      dw_tap_rows(p, oh, ow, taps.data());
      const int64_t row = (oh * p.OW + ow) * p.ldc;
      for (int64_t c = 0; c < p.CP; c += 16) {
        __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
        const int16_t* w = p.w + c * 2;
        for (int64_t t = 0; t < p.tap_pairs; ++t, w += p.CP * 2) {
          const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(taps[2 * t] + c));
          const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(taps[2 * t + 1] + c));
          const __m256i lo = _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm_unpacklo_epi8(a, b)), z16);
          const __m256i hi = _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm_unpackhi_epi8(a, b)), z16);
          acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(lo, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w))));
          acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(hi, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 16))));
        }
        const int64_t n = p.C - c < 16 ? p.C - c : 16;
        alignas(32) int32_t ibuf[16];
        alignas(32) float fbuf[16];
        void* dst = p.c_i32 ? static_cast<void*>(p.c_i32 + row + c) : static_cast<void*>(p.y_f32 + row + c);
        void* src;
        if (p.c_i32) {
          if (n == 16) {
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(p.c_i32 + row + c), acc0);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(p.c_i32 + row + c + 8), acc1);
            continue;
          }
          _mm256_store_si256(reinterpret_cast<__m256i*>(ibuf), acc0);
          _mm256_store_si256(reinterpret_cast<__m256i*>(ibuf + 8), acc1);
          src = ibuf;
        } else {
          const __m256 s0 = _mm256_mul_ps(row_scale, _mm256_loadu_ps(p.col_scale + c));
          const __m256 s1 = _mm256_mul_ps(row_scale, _mm256_loadu_ps(p.col_scale + c + 8));
          const __m256 b0 = p.bias ? _mm256_loadu_ps(p.bias + c) : _mm256_setzero_ps();
          const __m256 b1 = p.bias ? _mm256_loadu_ps(p.bias + c + 8) : _mm256_setzero_ps();
          const __m256 y0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc0), s0, b0);
          const __m256 y1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc1), s1, b1);
          if (n == 16) {
            _mm256_storeu_ps(p.y_f32 + row + c, y0);
            _mm256_storeu_ps(p.y_f32 + row + c + 8, y1);
            continue;
          }
          _mm256_store_ps(fbuf, y0);
          _mm256_store_ps(fbuf + 8, y1);
          src = fbuf;
        }
        std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      }
    }
  }
}

}  // namespace avx2
}  // namespace lowbit
