// The w8a8 epilogue in AVX-512, one copy for every kernel that ends in zmm int32 sums (the
// vpdpbusd tiles and the AMX tiles after tilestored), so all of them give the same bits:
//   c = acc - row_zero[m] * col_corr[n] - (asymmetric B only) col_zero[n] * row_sum[m]   (int32)
//   y = fma(float(c), row_scale[m] * col_scale[n], bias[n] or 0)                        (float)
// Included only by translation units compiled with AVX-512 flags; every helper is static.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "kernels/kernel_api.h"

namespace lowbit {
namespace w8a8_epilogue {

// The per-column terms of 16 columns from n0 (masked past N), loaded once per tile column.
struct Columns {
  __mmask16 mask;
  __m512i corr, col_zero;
  __m512 col_scale, bias;
};

static LOWBIT_INLINE Columns columns(const W8A8Problem& p, int64_t n0) {
  Columns c;
  c.mask = p.N - n0 >= 16 ? static_cast<__mmask16>(0xffff)
                          : static_cast<__mmask16>((1u << (p.N - n0)) - 1u);
  c.corr = _mm512_load_si512(p.col_corr + n0);
  c.col_zero = _mm512_load_si512(p.col_zero + n0);
  c.col_scale = _mm512_setzero_ps();
  c.bias = _mm512_setzero_ps();
  if (p.y_f32) {
    c.col_scale = _mm512_maskz_loadu_ps(c.mask, p.col_scale + n0);
    if (p.bias) c.bias = _mm512_maskz_loadu_ps(c.mask, p.bias + n0);
  }
  return c;
}

// Row m, columns n0 .. n0 + 15 of the output from their int32 sums. stream: a full, aligned
// vector goes to memory with a non-temporal store (no read for ownership of an output line that
// is too large to stay in cache anyway); the caller then ends with _mm_sfence().
template <bool stream = false>
static LOWBIT_INLINE void store(const W8A8Problem& p, int64_t m, int64_t n0,
                                const Columns& col, __m512i acc) {
  __m512i c = _mm512_sub_epi32(acc, _mm512_mullo_epi32(_mm512_set1_epi32(p.row_zero[m]), col.corr));
  if (!p.b_symmetric)
    c = _mm512_sub_epi32(c, _mm512_mullo_epi32(col.col_zero, _mm512_set1_epi32(p.row_sum[m])));
  if (p.c_i32) {
    int32_t* out = p.c_i32 + m * p.ldc + n0;
    if (stream && col.mask == 0xffff && (reinterpret_cast<uintptr_t>(out) & 63) == 0)
      _mm512_stream_si512(reinterpret_cast<__m512i*>(out), c);
    else
      _mm512_mask_storeu_epi32(out, col.mask, c);
  } else {
    const __m512 s = _mm512_mul_ps(_mm512_set1_ps(p.row_scale[m]), col.col_scale);
    const __m512 y = _mm512_fmadd_ps(_mm512_cvtepi32_ps(c), s, col.bias);
    float* out = p.y_f32 + m * p.ldc + n0;
    if (stream && col.mask == 0xffff && (reinterpret_cast<uintptr_t>(out) & 63) == 0)
      _mm512_stream_ps(out, y);
    else
      _mm512_mask_storeu_ps(out, col.mask, y);
  }
}

}  // namespace w8a8_epilogue
}  // namespace lowbit
