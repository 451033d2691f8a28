// AVX2 + FMA elementwise kernels, bit-identical to csrc/kernels/scalar (same float32 division,
// round half to even, requantization in double). Tails use the same scalar math as the reference.
// 8- and 16-bit quantization share quantize8 and differ only in the store.
#include <immintrin.h>

#include <cfloat>
#include <cmath>
#include <cstring>

#include "kernels/isa_kernels.h"
#include "kernels/qparams.h"
#include "lowbit/types.h"

namespace lowbit {
namespace avx2 {
namespace {

constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

inline bool all_finite8(__m256 v) {
  const __m256 abs = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
  return _mm256_movemask_ps(_mm256_cmp_ps(abs, _mm256_set1_ps(FLT_MAX), _CMP_LE_OQ)) == 0xff;
}

// Low byte of each int32 lane, packed into the low 8 bytes.
inline __m128i low_bytes(__m256i v) {
  const __m256i pick = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                        0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
  const __m256i bytes = _mm256_shuffle_epi8(v, pick);
  return _mm256_castsi256_si128(
      _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 1, 1, 1, 1, 1)));
}

// Low 16 bits of each int32 lane (int16 and uint16 values alike), packed into 128 bits.
inline __m128i low_halves(__m256i v) {
  const __m256i pick = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1,
                                        0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1);
  return _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_shuffle_epi8(v, pick), 0x08));
}

inline int32_t quantize_scalar(float x, float scale, int32_t zero, float lo, float hi) {
  float v = std::nearbyint(x / scale) + static_cast<float>(zero);
  v = v >= lo ? (v > hi ? hi : v) : lo;  // NaN -> lo: a NaN must never reach the int cast
  return static_cast<int32_t>(v);
}

// Quantizes 8 floats at i; returns int32 lanes.
inline __m256i quantize8(const float* x, int64_t i, const QuantRun& p, __m256 lo, __m256 hi,
                         bool* finite) {
  const __m256 v = _mm256_loadu_ps(x + i);
  if (!all_finite8(v)) *finite = false;
  __m256 s, z;
  if (p.per_element) {
    s = _mm256_loadu_ps(p.scale + i);
    z = p.zero ? _mm256_cvtepi32_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p.zero + i)))
               : _mm256_setzero_ps();
  } else {
    s = _mm256_set1_ps(p.scale[0]);
    z = _mm256_set1_ps(p.zero ? static_cast<float>(p.zero[0]) : 0.0f);
  }
  __m256 q = _mm256_add_ps(_mm256_round_ps(_mm256_div_ps(v, s), kRound), z);
  q = _mm256_min_ps(_mm256_max_ps(q, lo), hi);
  return _mm256_cvtps_epi32(q);
}

}  // namespace

bool quantize_run(const float* x, int64_t n, QuantRun p, int32_t qmin, int32_t qmax,
                  uint8_t* out) {
  const float flo = static_cast<float>(qmin), fhi = static_cast<float>(qmax);
  const __m256 lo = _mm256_set1_ps(flo), hi = _mm256_set1_ps(fhi);
  bool finite = true;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storel_epi64(reinterpret_cast<__m128i*>(out + i), low_bytes(quantize8(x, i, p, lo, hi, &finite)));
  for (; i < n; ++i) {
    const int64_t j = p.per_element ? i : 0;
    finite &= std::isfinite(x[i]);
    out[i] = static_cast<uint8_t>(
        quantize_scalar(x[i], p.scale[j], p.zero ? p.zero[j] : 0, flo, fhi));
  }
  return finite;
}

bool quantize_run_16(const float* x, int64_t n, QuantRun p, int32_t qmin, int32_t qmax,
                     uint16_t* out) {
  const float flo = static_cast<float>(qmin), fhi = static_cast<float>(qmax);
  const __m256 lo = _mm256_set1_ps(flo), hi = _mm256_set1_ps(fhi);
  bool finite = true;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                     low_halves(quantize8(x, i, p, lo, hi, &finite)));
  for (; i < n; ++i) {
    const int64_t j = p.per_element ? i : 0;
    finite &= std::isfinite(x[i]);
    out[i] = static_cast<uint16_t>(
        quantize_scalar(x[i], p.scale[j], p.zero ? p.zero[j] : 0, flo, fhi));
  }
  return finite;
}

namespace {

inline __m256i load8_as_i32(const int8_t* q) {
  return _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q)));
}
inline __m256i load8_as_i32(const uint8_t* q) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q)));
}
inline __m256i load8_as_i32(const int16_t* q) {
  return _mm256_cvtepi16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)));
}
inline __m256i load8_as_i32(const uint16_t* q) {
  return _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)));
}
inline __m256i load8_as_i32(const int32_t* q) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
}

template <typename T>
void dequantize_typed(const T* q, int64_t n, const QuantRun& p, float* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256i v = load8_as_i32(q + i);
    __m256 s;
    if (p.per_element) {
      if (p.zero)
        v = _mm256_sub_epi32(v, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p.zero + i)));
      s = _mm256_loadu_ps(p.scale + i);
    } else {
      if (p.zero) v = _mm256_sub_epi32(v, _mm256_set1_epi32(p.zero[0]));
      s = _mm256_set1_ps(p.scale[0]);
    }
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_cvtepi32_ps(v), s));
  }
  for (; i < n; ++i) {
    const int64_t j = p.per_element ? i : 0;
    const int32_t zero = p.zero ? p.zero[j] : 0;
    out[i] = static_cast<float>(static_cast<int32_t>(q[i]) - zero) * p.scale[j];
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

namespace {

inline float hmin(__m256 v) {
  __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_min_ps(m, _mm_movehl_ps(m, m));
  m = _mm_min_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}
inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}

}  // namespace

bool min_max(const float* x, int64_t n, float* mn, float* mx) {
  __m256 lo = _mm256_set1_ps(INFINITY), hi = _mm256_set1_ps(-INFINITY);
  bool finite = true;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    finite &= all_finite8(v);
    lo = _mm256_min_ps(lo, v);
    hi = _mm256_max_ps(hi, v);
  }
  float l = hmin(lo), h = hmax(hi);
  for (; i < n; ++i) {
    finite &= std::isfinite(x[i]);
    l = x[i] < l ? x[i] : l;
    h = x[i] > h ? x[i] : h;
  }
  *mn = l;
  *mx = h;
  return finite;
}

bool quantize_row_u8(const float* x, int64_t k, int64_t kp, uint8_t* out, float* scale,
                     int32_t* zero, int32_t* row_sum) {
  float lo_value, hi_value;
  if (!min_max(x, k, &lo_value, &hi_value)) return false;
  dynamic_u8_params(lo_value, hi_value, scale, zero);
  const QuantRun p{scale, zero, false};
  const __m256 lo = _mm256_setzero_ps(), hi = _mm256_set1_ps(255.0f);
  __m256i sum = _mm256_setzero_si256();
  bool finite = true;
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    const __m256i q = quantize8(x, i, p, lo, hi, &finite);
    sum = _mm256_add_epi32(sum, q);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(out + i), low_bytes(q));
  }
  int32_t lanes[8];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(lanes), sum);
  int32_t total = 0;
  for (int32_t v : lanes) total += v;
  for (; i < k; ++i) {
    out[i] = static_cast<uint8_t>(quantize_scalar(x[i], *scale, *zero, 0.0f, 255.0f));
    total += out[i];
  }
  if (kp > k) std::memset(out + k, 0, static_cast<size_t>(kp - k));
  *row_sum = total;
  return true;
}

void requantize_run(const int32_t* acc, int64_t n, const float* multiplier, bool per_element,
                    int32_t zero, int32_t qmin, int32_t qmax, uint8_t* out) {
  const __m256d lo = _mm256_set1_pd(qmin), hi = _mm256_set1_pd(qmax), z = _mm256_set1_pd(zero);
  const __m256d m_scalar = _mm256_set1_pd(multiplier[0]);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const __m256d a = _mm256_cvtepi32_pd(_mm_loadu_si128(reinterpret_cast<const __m128i*>(acc + i)));
    const __m256d mult = per_element ? _mm256_cvtps_pd(_mm_loadu_ps(multiplier + i)) : m_scalar;
    __m256d v = _mm256_add_pd(_mm256_round_pd(_mm256_mul_pd(a, mult), kRound), z);
    v = _mm256_min_pd(_mm256_max_pd(v, lo), hi);
    const __m128i q = _mm_shuffle_epi8(_mm256_cvtpd_epi32(v), _mm_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1,
                                                                         -1, -1, -1, -1, -1, -1, -1, -1));
    const int32_t packed = _mm_cvtsi128_si32(q);
    std::memcpy(out + i, &packed, 4);
  }
  for (; i < n; ++i) {
    const double m = multiplier[per_element ? i : 0];
    double v = std::nearbyint(static_cast<double>(acc[i]) * m) + zero;
    v = v >= qmin ? (v > qmax ? qmax : v) : qmin;  // NaN -> qmin, as in the scalar kernel
    out[i] = static_cast<uint8_t>(static_cast<int32_t>(v));
  }
}

uint64_t sum_bytes(const uint8_t* data, int64_t n) {
  __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
  const __m256i zero = _mm256_setzero_si256();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    acc0 = _mm256_add_epi64(acc0, _mm256_sad_epu8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(data + i)), zero));
    acc1 = _mm256_add_epi64(acc1, _mm256_sad_epu8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(data + i + 32)), zero));
  }
  uint64_t lanes[4];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(lanes), _mm256_add_epi64(acc0, acc1));
  uint64_t sum = lanes[0] + lanes[1] + lanes[2] + lanes[3];
  for (; i < n; ++i) sum += data[i];
  return sum;
}

}  // namespace avx2
}  // namespace lowbit
