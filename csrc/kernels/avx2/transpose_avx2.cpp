// Block transposes, AVX2 (contract: Transpose8Fn / Transpose32Fn in kernels/kernel_api.h): bytes
// in 16 x 16 tiles (four rounds of SSE unpacks), 32-bit words in 8 x 8 tiles (unpack, shuffle,
// 128-bit lane permute); the ragged edges go through the scalar loop. A transpose moves bits
// only, so every path gives the same bytes.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels/isa_kernels.h"

namespace lowbit {
namespace avx2 {

namespace {
template <typename T>
void edge(const T* src, int64_t ld_src, int64_t r0, int64_t r1, int64_t c0, int64_t c1, T* dst, int64_t ld_dst) {
  for (int64_t c = c0; c < c1; ++c)
    for (int64_t r = r0; r < r1; ++r) dst[c * ld_dst + r] = src[r * ld_src + c];
}

inline void tile8x16(const uint8_t* src, int64_t ld_src, uint8_t* dst, int64_t ld_dst) {
  __m128i v[16];
  for (int i = 0; i < 16; ++i) v[i] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i * ld_src));
  __m128i a[16], b[16];
  for (int i = 0; i < 8; ++i) {  // bytes
    a[2 * i] = _mm_unpacklo_epi8(v[2 * i], v[2 * i + 1]);
    a[2 * i + 1] = _mm_unpackhi_epi8(v[2 * i], v[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {  // 16-bit pairs
    for (int j = 0; j < 2; ++j) {
      b[4 * i + 2 * j] = _mm_unpacklo_epi16(a[4 * i + j], a[4 * i + j + 2]);
      b[4 * i + 2 * j + 1] = _mm_unpackhi_epi16(a[4 * i + j], a[4 * i + j + 2]);
    }
  }
  // b[4i + k] holds rows 4i..4i+3, columns 4k..4k+3 (k = 0: cols 0-3, 1: 4-7, 2: 8-11, 3: 12-15)
  // after reordering: b[4i+0] = cols 0-3, b[4i+1] = cols 4-7, b[4i+2] = cols 8-11, b[4i+3] = 12-15
  for (int i = 0; i < 2; ++i) {  // 32-bit quads
    for (int k = 0; k < 4; ++k) {
      a[8 * i + 2 * k] = _mm_unpacklo_epi32(b[8 * i + k], b[8 * i + 4 + k]);
      a[8 * i + 2 * k + 1] = _mm_unpackhi_epi32(b[8 * i + k], b[8 * i + 4 + k]);
    }
  }
  // a[8i + 2k + h]: rows 8i..8i+7, columns 4k + 2h, 4k + 2h + 1
  for (int k = 0; k < 8; ++k) {  // 64-bit halves
    const __m128i lo = _mm_unpacklo_epi64(a[k], a[8 + k]);
    const __m128i hi = _mm_unpackhi_epi64(a[k], a[8 + k]);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (2 * k) * ld_dst), lo);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (2 * k + 1) * ld_dst), hi);
  }
}

inline void tile32x8(const uint32_t* src, int64_t ld_src, uint32_t* dst, int64_t ld_dst) {
  __m256 r[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(reinterpret_cast<const float*>(src + i * ld_src));
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  const __m256 o[8] = {_mm256_permute2f128_ps(s0, s4, 0x20), _mm256_permute2f128_ps(s1, s5, 0x20),
                       _mm256_permute2f128_ps(s2, s6, 0x20), _mm256_permute2f128_ps(s3, s7, 0x20),
                       _mm256_permute2f128_ps(s0, s4, 0x31), _mm256_permute2f128_ps(s1, s5, 0x31),
                       _mm256_permute2f128_ps(s2, s6, 0x31), _mm256_permute2f128_ps(s3, s7, 0x31)};
  for (int i = 0; i < 8; ++i) _mm256_storeu_ps(reinterpret_cast<float*>(dst + i * ld_dst), o[i]);
}
}  // namespace

void transpose8(const uint8_t* src, int64_t ld_src, int64_t rows, int64_t cols, uint8_t* dst, int64_t ld_dst) {
  const int64_t rf = rows / 16 * 16, cf = cols / 16 * 16;
  for (int64_t r0 = 0; r0 < rf; r0 += 16)
    for (int64_t c0 = 0; c0 < cf; c0 += 16) tile8x16(src + r0 * ld_src + c0, ld_src, dst + c0 * ld_dst + r0, ld_dst);
  edge(src, ld_src, 0, rf, cf, cols, dst, ld_dst);
  edge(src, ld_src, rf, rows, 0, cols, dst, ld_dst);
}

void transpose32(const uint32_t* src, int64_t ld_src, int64_t rows, int64_t cols, uint32_t* dst,
                 int64_t ld_dst) {
  const int64_t rf = rows / 8 * 8, cf = cols / 8 * 8;
  // Blocks of 64 source rows, and in a block all of a destination row's 64 words before the
  // next 8 rows: each destination line is written whole while it is in L1. (Rows outside,
  // columns inside wrote every line in 32-byte halves far apart in time: conv's NHWC -> NCHW
  // output, 64 pixels x 144 channels, took 5x the time of a copy.)
  for (int64_t rb = 0; rb < rf; rb += 64) {
    const int64_t re = std::min(rf, rb + 64);
    for (int64_t c0 = 0; c0 < cf; c0 += 8)
      for (int64_t r0 = rb; r0 < re; r0 += 8)
        tile32x8(src + r0 * ld_src + c0, ld_src, dst + c0 * ld_dst + r0, ld_dst);
  }
  edge(src, ld_src, 0, rf, cf, cols, dst, ld_dst);
  edge(src, ld_src, rf, rows, 0, cols, dst, ld_dst);
}

}  // namespace avx2
}  // namespace lowbit
