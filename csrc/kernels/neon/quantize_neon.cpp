// NEON elementwise kernels, bit-identical to csrc/kernels/scalar: the same float32 division (vdivq
// is IEEE correctly rounded), round half to even (vrndnq), requantization in float64. Tails use the
// reference's scalar formulas.
#include <arm_neon.h>

#include <cfloat>
#include <cmath>
#include <cstring>

#include "kernels/isa_kernels.h"
#include "kernels/qparams.h"
#include "lowbit/types.h"

namespace lowbit {
namespace neon {
namespace {

inline bool all_finite4(float32x4_t v) {
  const uint32x4_t ok = vcleq_f32(vabsq_f32(v), vdupq_n_f32(FLT_MAX));  // false for NaN too
  return vminvq_u32(ok) != 0;
}

inline int32_t quantize_scalar(float x, float scale, int32_t zero, float lo, float hi) {
  float v = std::nearbyint(x / scale) + static_cast<float>(zero);
  v = v >= lo ? (v > hi ? hi : v) : lo;  // NaN -> lo: a NaN must never reach the int cast
  return static_cast<int32_t>(v);
}

// 4 quantized values (int32 lanes, already clamped) of x[i..i+3].
inline int32x4_t quantize4(const float* x, int64_t i, const QuantRun& p, float32x4_t lo,
                           float32x4_t hi, bool* finite) {
  const float32x4_t v = vld1q_f32(x + i);
  if (!all_finite4(v)) *finite = false;
  float32x4_t s, z;
  if (p.per_element) {
    s = vld1q_f32(p.scale + i);
    z = p.zero ? vcvtq_f32_s32(vld1q_s32(p.zero + i)) : vdupq_n_f32(0.0f);
  } else {
    s = vdupq_n_f32(p.scale[0]);
    z = vdupq_n_f32(p.zero ? static_cast<float>(p.zero[0]) : 0.0f);
  }
  float32x4_t q = vaddq_f32(vrndnq_f32(vdivq_f32(v, s)), z);
  q = vminq_f32(vmaxq_f32(q, lo), hi);
  return vcvtq_s32_f32(q);  // exact: q holds an integer in the type's range
}

inline void store_low_bytes4(uint8_t* out, int32x4_t q) {
  const uint8x8_t bytes = vmovn_u16(vcombine_u16(vmovn_u32(vreinterpretq_u32_s32(q)), vdup_n_u16(0)));
  uint32_t word = vget_lane_u32(vreinterpret_u32_u8(bytes), 0);
  std::memcpy(out, &word, sizeof(word));
}

template <typename T>
void dequantize_typed(const T* q, int64_t n, const QuantRun& p, float* out) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    int32_t v[4];
    for (int t = 0; t < 4; ++t) v[t] = static_cast<int32_t>(q[i + t]);
    int32x4_t vi = vld1q_s32(v);
    float32x4_t s;
    if (p.per_element) {
      if (p.zero) vi = vsubq_s32(vi, vld1q_s32(p.zero + i));
      s = vld1q_f32(p.scale + i);
    } else {
      if (p.zero) vi = vsubq_s32(vi, vdupq_n_s32(p.zero[0]));
      s = vdupq_n_f32(p.scale[0]);
    }
    vst1q_f32(out + i, vmulq_f32(vcvtq_f32_s32(vi), s));
  }
  for (; i < n; ++i) {
    const int64_t j = p.per_element ? i : 0;
    const int32_t zero = p.zero ? p.zero[j] : 0;
    out[i] = static_cast<float>(static_cast<int32_t>(q[i]) - zero) * p.scale[j];
  }
}

}  // namespace

bool quantize_run(const float* x, int64_t n, QuantRun p, int32_t qmin, int32_t qmax,
                  uint8_t* out) {
  const float lo_s = static_cast<float>(qmin), hi_s = static_cast<float>(qmax);
  const float32x4_t lo = vdupq_n_f32(lo_s), hi = vdupq_n_f32(hi_s);
  bool finite = true;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) store_low_bytes4(out + i, quantize4(x, i, p, lo, hi, &finite));
  for (; i < n; ++i) {
    const int64_t j = p.per_element ? i : 0;
    finite &= std::isfinite(x[i]);
    out[i] = static_cast<uint8_t>(
        quantize_scalar(x[i], p.scale[j], p.zero ? p.zero[j] : 0, lo_s, hi_s));
  }
  return finite;
}

bool quantize_run_16(const float* x, int64_t n, QuantRun p, int32_t qmin, int32_t qmax,
                     uint16_t* out) {
  const float lo_s = static_cast<float>(qmin), hi_s = static_cast<float>(qmax);
  const float32x4_t lo = vdupq_n_f32(lo_s), hi = vdupq_n_f32(hi_s);
  bool finite = true;
  int64_t i = 0;
  // vmovn keeps each lane's low 16 bits (the int16 or uint16 value: lanes are clamped).
  for (; i + 4 <= n; i += 4)
    vst1_u16(out + i, vmovn_u32(vreinterpretq_u32_s32(quantize4(x, i, p, lo, hi, &finite))));
  for (; i < n; ++i) {
    const int64_t j = p.per_element ? i : 0;
    finite &= std::isfinite(x[i]);
    out[i] = static_cast<uint16_t>(
        quantize_scalar(x[i], p.scale[j], p.zero ? p.zero[j] : 0, lo_s, hi_s));
  }
  return finite;
}

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
  float32x4_t lo = vdupq_n_f32(INFINITY), hi = vdupq_n_f32(-INFINITY);
  bool finite = true;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const float32x4_t v = vld1q_f32(x + i);
    finite &= all_finite4(v);
    lo = vminq_f32(lo, v);
    hi = vmaxq_f32(hi, v);
  }
  float l = vminvq_f32(lo), h = vmaxvq_f32(hi);
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
  float lo, hi;
  if (!min_max(x, k, &lo, &hi)) return false;
  dynamic_u8_params(lo, hi, scale, zero);
  quantize_run(x, k, QuantRun{scale, zero, false}, 0, 255, out);
  std::memset(out + k, 0, static_cast<size_t>(kp - k));
  *row_sum = static_cast<int32_t>(sum_bytes(out, k));
  return true;
}

void requantize_run(const int32_t* acc, int64_t n, const float* multiplier, bool per_element,
                    int32_t zero, int32_t qmin, int32_t qmax, uint8_t* out) {
  const float64x2_t lo = vdupq_n_f64(qmin), hi = vdupq_n_f64(qmax), z = vdupq_n_f64(zero);
  int64_t i = 0;
  for (; i + 2 <= n; i += 2) {
    const float64x2_t a = vcvtq_f64_s64(vmovl_s32(vld1_s32(acc + i)));
    const float64x2_t m = per_element ? vcvt_f64_f32(vld1_f32(multiplier + i))
                                      : vdupq_n_f64(multiplier[0]);
    float64x2_t v = vaddq_f64(vrndnq_f64(vmulq_f64(a, m)), z);
    v = vminq_f64(vmaxq_f64(v, lo), hi);
    const int64x2_t q = vcvtq_s64_f64(v);
    out[i] = static_cast<uint8_t>(vgetq_lane_s64(q, 0));
    out[i + 1] = static_cast<uint8_t>(vgetq_lane_s64(q, 1));
  }
  for (; i < n; ++i) {
    const double m = multiplier[per_element ? i : 0];
    double v = std::nearbyint(static_cast<double>(acc[i]) * m) + zero;
    v = v >= qmin ? (v > qmax ? qmax : v) : qmin;  // NaN -> qmin, as in the scalar kernel
    out[i] = static_cast<uint8_t>(static_cast<int32_t>(v));
  }
}

uint64_t sum_bytes(const uint8_t* data, int64_t n) {
  uint64x2_t acc = vdupq_n_u64(0);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)  // widen pairwise: 16 bytes -> 8 u16 -> 4 u32 -> 2 u64
    acc = vpadalq_u32(acc, vpaddlq_u16(vpaddlq_u8(vld1q_u8(data + i))));
  uint64_t sum = vgetq_lane_u64(acc, 0) + vgetq_lane_u64(acc, 1);
  for (; i < n; ++i) sum += data[i];
  return sum;
}

}  // namespace neon
}  // namespace lowbit
