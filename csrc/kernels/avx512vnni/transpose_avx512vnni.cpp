// 32-bit block transpose, AVX-512 (contract: Transpose32Fn in kernels/kernel_api.h): 16 x 16
// tiles (unpack, shuffle, two 128-bit lane shuffles), so each of a tile's loads and stores is a
// whole 64-byte line; ragged edges through the AVX2 kernel (which takes 8 x 8 tiles, then
// scalar). Bits moved only: every path gives the same words.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels/isa_kernels.h"

namespace lowbit {
namespace avx512vnni {

namespace {
constexpr double kStreamBytes = 1024.0 * 1024.0;

template <bool kStream>
inline void store_line(uint32_t* dst, __m512i v) {
  if constexpr (kStream) _mm512_stream_si512(reinterpret_cast<__m512i*>(dst), v);
  else _mm512_storeu_si512(dst, v);
}

template <bool kStream>
inline void tile16x16(const uint32_t* src, int64_t ld_src, uint32_t* dst, int64_t ld_dst) {
  __m512i r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_si512(src + i * ld_src);
  for (int i = 0; i < 8; ++i) {   // pairs of rows: 32-bit interleave
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {   // quads of rows: 64-bit interleave
    r[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  // r[4i + j], lane L (128 bits) holds rows 4i..4i+3 of column 4L + j.
  for (int j = 0; j < 4; ++j) {   // 128-bit lanes: rows 0-7 and 8-15 for each column group
    t[j] = _mm512_shuffle_i32x4(r[j], r[4 + j], 0x88);        // lanes 0, 2 of each: cols j, 8+j
    t[4 + j] = _mm512_shuffle_i32x4(r[j], r[4 + j], 0xDD);    // lanes 1, 3: cols 4+j, 12+j
    t[8 + j] = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0x88);
    t[12 + j] = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0xDD);
  }
  for (int j = 0; j < 4; ++j) {
    // t[j]: lanes (rows 0-3 col j, rows 4-7 col j, rows 0-3 col 8+j, rows 4-7 col 8+j)
    const __m512i c0 = _mm512_shuffle_i32x4(t[j], t[8 + j], 0x88);       // column j
    const __m512i c8 = _mm512_shuffle_i32x4(t[j], t[8 + j], 0xDD);       // column 8 + j
    const __m512i c4 = _mm512_shuffle_i32x4(t[4 + j], t[12 + j], 0x88);  // column 4 + j
    const __m512i c12 = _mm512_shuffle_i32x4(t[4 + j], t[12 + j], 0xDD); // column 12 + j
    store_line<kStream>(dst + j * ld_dst, c0);
    store_line<kStream>(dst + (4 + j) * ld_dst, c4);
    store_line<kStream>(dst + (8 + j) * ld_dst, c8);
    store_line<kStream>(dst + (12 + j) * ld_dst, c12);
  }
}
}  // namespace

void transpose32(const uint32_t* src, int64_t ld_src, int64_t rows, int64_t cols, uint32_t* dst,
                 int64_t ld_dst) {
  const int64_t rf = rows / 16 * 16, cf = cols / 16 * 16;
  // Blocks of 64 source rows, and in a block a destination row's 64 words before the next 16
  // rows (see avx2::transpose32).
  // A destination of kStreamBytes and more (a conv's NCHW output image) is written with
  // non-temporal stores where its lines are whole and aligned: it is not read again soon, and
  // an ordinary store first reads each line it misses (half the memory traffic).
  const bool stream = reinterpret_cast<uintptr_t>(dst) % 64 == 0 && ld_dst % 16 == 0 &&
                      static_cast<double>(cols) * static_cast<double>(ld_dst) * 4.0 >= kStreamBytes;
  for (int64_t rb = 0; rb < rf; rb += 64) {
    const int64_t re = std::min(rf, rb + 64);
    for (int64_t c0 = 0; c0 < cf; c0 += 16)
      for (int64_t r0 = rb; r0 < re; r0 += 16) {
        if (stream) tile16x16<true>(src + r0 * ld_src + c0, ld_src, dst + c0 * ld_dst + r0, ld_dst);
        else tile16x16<false>(src + r0 * ld_src + c0, ld_src, dst + c0 * ld_dst + r0, ld_dst);
      }
  }
  if (stream) _mm_sfence();   // ordered before whatever the caller stores next
  if (cf < cols) avx2::transpose32(src + cf, ld_src, rf, cols - cf, dst + cf * ld_dst, ld_dst);
  if (rf < rows) avx2::transpose32(src + rf * ld_src, ld_src, rows - rf, cols, dst + rf, ld_dst);
}

}  // namespace avx512vnni
}  // namespace lowbit
