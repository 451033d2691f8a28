// Packing of row-major B (K x N bytes, matmul_integer's operand) into the 64-column panel
// layout in AVX-512: one k group is 4 rows of 64 bytes, transposed in registers into 64 words
// of 4 bytes (column c's k0..k3), the per-column sums taken on the way with vpdpbusd against
// ones (each word's 4 signed bytes summed into its int32 lane).
#include <immintrin.h>

#include "kernels/isa_kernels.h"

namespace lowbit {
namespace avx512vnni {

void pack_b_groups(const uint8_t* b, int64_t ldb, int64_t K, int64_t g_begin, int64_t g_end,
                   uint8_t flip, int8_t* panel, int32_t* col_sums) {
  const __m512i flipv = _mm512_set1_epi8(static_cast<char>(flip));
  const __m512i ones = _mm512_set1_epi8(1);
  __m512i sum[4];
  for (int j = 0; j < 4; ++j) sum[j] = _mm512_loadu_si512(col_sums + 16 * j);
  for (int64_t g = g_begin; g < g_end; ++g) {
    __m512i r[4];
    for (int i = 0; i < 4; ++i) {
      const int64_t k = 4 * g + i;
      r[i] = k < K ? _mm512_xor_si512(_mm512_loadu_si512(b + k * ldb), flipv) : _mm512_setzero_si512();
      if (k + 16 < K) _mm_prefetch(reinterpret_cast<const char*>(b + (k + 16) * ldb), _MM_HINT_T0);
    }
    // Per 128-bit lane L (columns 16L .. 16L + 15): bytes of rows 0/1 and 2/3 interleaved, then
    // pairs interleaved: u0 holds columns 16L + 0..3 as (k0 k1 k2 k3) words, u1 16L + 4..7, ...
    const __m512i t0 = _mm512_unpacklo_epi8(r[0], r[1]), t1 = _mm512_unpackhi_epi8(r[0], r[1]);
    const __m512i t2 = _mm512_unpacklo_epi8(r[2], r[3]), t3 = _mm512_unpackhi_epi8(r[2], r[3]);
    const __m512i u0 = _mm512_unpacklo_epi16(t0, t2), u1 = _mm512_unpackhi_epi16(t0, t2);
    const __m512i u2 = _mm512_unpacklo_epi16(t1, t3), u3 = _mm512_unpackhi_epi16(t1, t3);
    // Output j (columns 16j .. 16j + 15) is lane j of u0, u1, u2, u3: a 4 x 4 lane transpose.
    const __m512i v0 = _mm512_shuffle_i64x2(u0, u1, 0x44), v1 = _mm512_shuffle_i64x2(u2, u3, 0x44);
    const __m512i v2 = _mm512_shuffle_i64x2(u0, u1, 0xee), v3 = _mm512_shuffle_i64x2(u2, u3, 0xee);
    __m512i out[4];
    out[0] = _mm512_shuffle_i64x2(v0, v1, 0x88);
    out[1] = _mm512_shuffle_i64x2(v0, v1, 0xdd);
    out[2] = _mm512_shuffle_i64x2(v2, v3, 0x88);
    out[3] = _mm512_shuffle_i64x2(v2, v3, 0xdd);
    int8_t* dst = panel + g * kGroupBytes;
    for (int j = 0; j < 4; ++j) {
      _mm512_storeu_si512(dst + 64 * j, out[j]);
      sum[j] = _mm512_dpbusd_epi32(sum[j], ones, out[j]);
    }
  }
  for (int j = 0; j < 4; ++j) _mm512_storeu_si512(col_sums + 16 * j, sum[j]);
}

}  // namespace avx512vnni
}  // namespace lowbit

namespace lowbit {
namespace avx512vnni {
namespace {

// out[e] = column e of the 16 x 16 matrix of 32-bit words r (r[i] = row i).
LOWBIT_INLINE void transpose16x16(const __m512i (&r)[16], __m512i (&out)[16]) {
  __m512i t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  // Per 128-bit lane L: u[4i + q] holds element 4L + q of rows 4i .. 4i + 3.
  for (int i = 0; i < 4; ++i) {
    u[4 * i + 0] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int q = 0; q < 4; ++q) {  // lanes of u[q], u[4 + q], u[8 + q], u[12 + q], transposed
    const __m512i a0 = _mm512_shuffle_i64x2(u[q], u[4 + q], 0x44);
    const __m512i a1 = _mm512_shuffle_i64x2(u[8 + q], u[12 + q], 0x44);
    const __m512i a2 = _mm512_shuffle_i64x2(u[q], u[4 + q], 0xee);
    const __m512i a3 = _mm512_shuffle_i64x2(u[8 + q], u[12 + q], 0xee);
    out[q] = _mm512_shuffle_i64x2(a0, a1, 0x88);
    out[4 + q] = _mm512_shuffle_i64x2(a0, a1, 0xdd);
    out[8 + q] = _mm512_shuffle_i64x2(a2, a3, 0x88);
    out[12 + q] = _mm512_shuffle_i64x2(a2, a3, 0xdd);
  }
}

}  // namespace

void pack_bt_groups(const uint8_t* w, int64_t ldw, int64_t g_begin, int64_t g_end, uint8_t flip,
                    int8_t* panel, int32_t* col_sums) {
  const __m512i flipv = _mm512_set1_epi8(static_cast<char>(flip));
  const __m512i ones = _mm512_set1_epi8(1);
  for (int j = 0; j < 4; ++j) {  // columns 16j .. 16j + 15 are rows of w
    __m512i sum = _mm512_loadu_si512(col_sums + 16 * j);
    for (int64_t g0 = g_begin; g0 < g_end; g0 += 16) {
      const int64_t n = g_end - g0 < 16 ? g_end - g0 : 16;
      const __mmask16 mask = static_cast<__mmask16>(n == 16 ? 0xffff : (1u << n) - 1u);
      __m512i r[16], out[16];
      for (int i = 0; i < 16; ++i)
        r[i] = _mm512_xor_si512(_mm512_maskz_loadu_epi32(mask, w + (16 * j + i) * ldw + 4 * g0), flipv);
      transpose16x16(r, out);
      for (int64_t e = 0; e < n; ++e) {
        _mm512_storeu_si512(panel + (g0 + e) * kGroupBytes + 64 * j, out[e]);
        sum = _mm512_dpbusd_epi32(sum, ones, out[e]);
      }
    }
    _mm512_storeu_si512(col_sums + 16 * j, sum);
  }
}

}  // namespace avx512vnni
}  // namespace lowbit
