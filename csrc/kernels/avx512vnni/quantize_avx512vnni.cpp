// AVX-512 elementwise kernels: quantize (8- and 16-bit stores), dequantize, min/max, per-row
// dynamic quantization and requantization. Every result is bit-identical to csrc/kernels/scalar:
// same float32 division, the same round-half-to-even, requantization in double.
#include <immintrin.h>

#include <cfloat>
#include <cstring>

#include "kernels/isa_kernels.h"
#include "kernels/qparams.h"
#include "lowbit/types.h"

namespace lowbit {
namespace avx512vnni {
namespace {

constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

inline __mmask16 tail_mask(int64_t remaining) {
  return remaining >= 16 ? static_cast<__mmask16>(0xffff)
                         : static_cast<__mmask16>((1u << remaining) - 1u);
}

inline __mmask16 finite_lanes(__m512 v, __mmask16 m) {
  const __m512 abs = _mm512_abs_ps(v);
  return _mm512_mask_cmp_ps_mask(m, abs, _mm512_set1_ps(FLT_MAX), _CMP_LE_OQ);
}

// Quantizes 16 lanes (masked) and returns them as int32, also reporting finiteness.
inline __m512i quantize16(const float* x, int64_t i, __mmask16 m, const QuantRun& p, __m512 lo,
                          __m512 hi, bool* finite) {
  const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
  if (finite_lanes(v, m) != m) *finite = false;
  __m512 s, z;
  if (p.per_element) {
    s = _mm512_mask_loadu_ps(_mm512_set1_ps(1.0f), m, p.scale + i);
    z = p.zero ? _mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(m, p.zero + i)) : _mm512_setzero_ps();
  } else {
    s = _mm512_set1_ps(p.scale[0]);
    z = _mm512_set1_ps(p.zero ? static_cast<float>(p.zero[0]) : 0.0f);
  }
  __m512 q = _mm512_add_ps(_mm512_roundscale_ps(_mm512_div_ps(v, s), kRound), z);
  q = _mm512_min_ps(_mm512_max_ps(q, lo), hi);
  return _mm512_cvtps_epi32(q);
}

}  // namespace

bool quantize_run(const float* x, int64_t n, QuantRun p, int32_t qmin, int32_t qmax,
                  uint8_t* out) {
  const __m512 lo = _mm512_set1_ps(static_cast<float>(qmin));
  const __m512 hi = _mm512_set1_ps(static_cast<float>(qmax));
  bool finite = true;
  int64_t i = 0;
  // Whole vectors: 16-byte stores (a masked byte store per 16 values cost a quarter of the
  // time); the masked tail as before.
  for (; i + 16 <= n; i += 16)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                     _mm512_cvtepi32_epi8(quantize16(x, i, 0xffff, p, lo, hi, &finite)));
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_cvtepi32_storeu_epi8(out + i, m, quantize16(x, i, m, p, lo, hi, &finite));
  }
  return finite;
}

bool quantize_run_16(const float* x, int64_t n, QuantRun p, int32_t qmin, int32_t qmax,
                     uint16_t* out) {
  const __m512 lo = _mm512_set1_ps(static_cast<float>(qmin));
  const __m512 hi = _mm512_set1_ps(static_cast<float>(qmax));
  bool finite = true;
  int64_t i = 0;
  // vpmovdw keeps each lane's low 16 bits (the int16 or uint16 value: lanes are clamped).
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i),
                        _mm512_cvtepi32_epi16(quantize16(x, i, 0xffff, p, lo, hi, &finite)));
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_cvtepi32_storeu_epi16(out + i, m, quantize16(x, i, m, p, lo, hi, &finite));
  }
  return finite;
}

namespace {

template <typename T>
inline __m512i load_as_i32(const T* q, __mmask16 m);
template <>
inline __m512i load_as_i32(const int8_t* q, __mmask16 m) {
  return _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, q));
}
template <>
inline __m512i load_as_i32(const uint8_t* q, __mmask16 m) {
  return _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, q));
}
template <>
inline __m512i load_as_i32(const int16_t* q, __mmask16 m) {
  return _mm512_cvtepi16_epi32(_mm256_maskz_loadu_epi16(m, q));
}
template <>
inline __m512i load_as_i32(const uint16_t* q, __mmask16 m) {
  return _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, q));
}
template <>
inline __m512i load_as_i32(const int32_t* q, __mmask16 m) {
  return _mm512_maskz_loadu_epi32(m, q);
}

template <typename T>
void dequantize_typed(const T* q, int64_t n, const QuantRun& p, float* out) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    __m512i v = load_as_i32(q + i, m);
    __m512 s;
    if (p.per_element) {
      if (p.zero) v = _mm512_sub_epi32(v, _mm512_maskz_loadu_epi32(m, p.zero + i));
      s = _mm512_maskz_loadu_ps(m, p.scale + i);
    } else {
      if (p.zero) v = _mm512_sub_epi32(v, _mm512_set1_epi32(p.zero[0]));
      s = _mm512_set1_ps(p.scale[0]);
    }
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_cvtepi32_ps(v), s));
  }
}

}  // namespace

void dequantize_run(const void* q, int elem_type, int64_t n, QuantRun p, float* out) {
  switch (static_cast<ElemType>(elem_type)) {
    case ElemType::int8: return dequantize_typed(static_cast<const int8_t*>(q), n, p, out);
    case ElemType::uint8: return dequantize_typed(static_cast<const uint8_t*>(q), n, p, out);
    case ElemType::int32: return dequantize_typed(static_cast<const int32_t*>(q), n, p, out);
    case ElemType::int16: return dequantize_typed(static_cast<const int16_t*>(q), n, p, out);
    case ElemType::uint16: return dequantize_typed(static_cast<const uint16_t*>(q), n, p, out);
  }
}

bool min_max(const float* x, int64_t n, float* mn, float* mx) {
  __m512 lo = _mm512_set1_ps(INFINITY), hi = _mm512_set1_ps(-INFINITY);
  __mmask16 all_finite = 0xffff;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    all_finite &= finite_lanes(v, 0xffff);
    lo = _mm512_min_ps(lo, v);
    hi = _mm512_max_ps(hi, v);
  }
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    if (finite_lanes(v, m) != m) all_finite = 0;
    lo = _mm512_mask_min_ps(lo, m, lo, v);
    hi = _mm512_mask_max_ps(hi, m, hi, v);
  }
  *mn = _mm512_reduce_min_ps(lo);
  *mx = _mm512_reduce_max_ps(hi);
  return all_finite == 0xffff;
}

bool quantize_row_u8(const float* x, int64_t k, int64_t kp, uint8_t* out, float* scale,
                     int32_t* zero, int32_t* row_sum) {
  float lo_value, hi_value;
  if (!min_max(x, k, &lo_value, &hi_value)) return false;
  dynamic_u8_params(lo_value, hi_value, scale, zero);
  const QuantRun p{scale, zero, false};
  const __m512 lo = _mm512_setzero_ps(), hi = _mm512_set1_ps(255.0f);
  __m512i sum = _mm512_setzero_si512();
  bool finite = true;
  for (int64_t i = 0; i < k; i += 16) {
    const __mmask16 m = tail_mask(k - i);
    const __m512i q = _mm512_maskz_mov_epi32(m, quantize16(x, i, m, p, lo, hi, &finite));
    sum = _mm512_add_epi32(sum, q);
    _mm512_mask_cvtepi32_storeu_epi8(out + i, m, q);
  }
  if (kp > k) std::memset(out + k, 0, static_cast<size_t>(kp - k));
  *row_sum = _mm512_reduce_add_epi32(sum);
  return true;
}

void requantize_run(const int32_t* acc, int64_t n, const float* multiplier, bool per_element,
                    int32_t zero, int32_t qmin, int32_t qmax, uint8_t* out) {
  const __m512d lo = _mm512_set1_pd(qmin), hi = _mm512_set1_pd(qmax);
  const __m512d z = _mm512_set1_pd(zero);
  const __m512d m_scalar = _mm512_set1_pd(multiplier[0]);
  // 16 values a step, unmasked, one 16-byte store (a masked byte store per 8 values was half
  // the time); the same double arithmetic per lane as the tail below.
  auto eight = [&](const int32_t* a_ptr, const float* m_ptr) {
    const __m512d a = _mm512_cvtepi32_pd(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a_ptr)));
    const __m512d mult = per_element ? _mm512_cvtps_pd(_mm256_loadu_ps(m_ptr)) : m_scalar;
    __m512d v = _mm512_add_pd(_mm512_roundscale_pd(_mm512_mul_pd(a, mult), kRound), z);
    return _mm512_cvtpd_epi32(_mm512_min_pd(_mm512_max_pd(v, lo), hi));
  };
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const float* m_ptr = per_element ? multiplier + i : multiplier;
    const __m256i q0 = eight(acc + i, m_ptr), q1 = eight(acc + i + 8, per_element ? m_ptr + 8 : m_ptr);
    const __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(q0), q1, 1);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm512_cvtepi32_epi8(q));
  }
  for (; i < n; i += 8) {
    const __mmask8 m = static_cast<__mmask8>(n - i >= 8 ? 0xff : (1u << (n - i)) - 1u);
    const __m512d a = _mm512_cvtepi32_pd(_mm256_maskz_loadu_epi32(m, acc + i));
    const __m512d mult =
        per_element ? _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, multiplier + i)) : m_scalar;
    __m512d v = _mm512_add_pd(_mm512_roundscale_pd(_mm512_mul_pd(a, mult), kRound), z);
    v = _mm512_min_pd(_mm512_max_pd(v, lo), hi);
    _mm256_mask_cvtepi32_storeu_epi8(out + i, m, _mm512_cvtpd_epi32(v));
  }
}

uint64_t sum_bytes(const uint8_t* data, int64_t n) {
  __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
  const __m512i zero = _mm512_setzero_si512();
  int64_t i = 0;
  for (; i + 128 <= n; i += 128) {
    acc0 = _mm512_add_epi64(acc0, _mm512_sad_epu8(_mm512_loadu_si512(data + i), zero));
    acc1 = _mm512_add_epi64(acc1, _mm512_sad_epu8(_mm512_loadu_si512(data + i + 64), zero));
  }
  uint64_t sum = static_cast<uint64_t>(_mm512_reduce_add_epi64(_mm512_add_epi64(acc0, acc1)));
  for (; i < n; ++i) sum += data[i];
  return sum;
}

}  // namespace avx512vnni
}  // namespace lowbit
