// Scalar elementwise kernels: the fallback path and the oracle the SIMD paths must match bit for
// bit. float32 math throughout, dividing by the scale, rounding half to even (default FP mode).
#include <cmath>
#include <cstring>

#include "kernels/isa_kernels.h"
#include "kernels/kernel_api.h"
#include "kernels/qparams.h"
#include "lowbit/types.h"

namespace lowbit {
namespace scalar {

// NaN clamps to lo: converting NaN to an integer is undefined behaviour, and the callers report
// NaN input as an error after the run, so the value stored for it does not matter.
static inline float clampf(float v, float lo, float hi) { return v >= lo ? (v > hi ? hi : v) : lo; }

// The zero point's addition is exact wherever the result is not saturated, for the 16-bit types
// too: an integer sum inside the type's range is a float32 integer; the sums that round (beyond
// 2^24 in magnitude) stay beyond the range and saturate as the exact sum would.
static inline int32_t quantize_one(float x, float scale, int32_t zero, float qmin, float qmax) {
  float v = std::nearbyint(x / scale) + static_cast<float>(zero);
  return static_cast<int32_t>(clampf(v, qmin, qmax));
}

// One loop for every storage width: T is uint8_t (8- and 4-bit types) or uint16_t (16-bit
// types), each value the low bits of the clamped int32.
template <typename T>
static bool quantize_typed(const float* x, int64_t n, const QuantRun& p, int32_t qmin,
                           int32_t qmax, T* out) {
  const float lo = static_cast<float>(qmin), hi = static_cast<float>(qmax);
  bool finite = true;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t j = p.per_element ? i : 0;
    finite &= std::isfinite(x[i]);
    out[i] = static_cast<T>(quantize_one(x[i], p.scale[j], p.zero ? p.zero[j] : 0, lo, hi));
  }
  return finite;
}

bool quantize_run(const float* x, int64_t n, QuantRun p, int32_t qmin, int32_t qmax,
                  uint8_t* out) {
  return quantize_typed(x, n, p, qmin, qmax, out);
}

bool quantize_run_16(const float* x, int64_t n, QuantRun p, int32_t qmin, int32_t qmax,
                     uint16_t* out) {
  return quantize_typed(x, n, p, qmin, qmax, out);
}

template <typename T>
static void dequantize_typed(const T* q, int64_t n, QuantRun p, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t j = p.per_element ? i : 0;
    const int32_t zero = p.zero ? p.zero[j] : 0;
    out[i] = static_cast<float>(static_cast<int32_t>(q[i]) - zero) * p.scale[j];
  }
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
  float lo = INFINITY, hi = -INFINITY;
  bool finite = true;
  for (int64_t i = 0; i < n; ++i) {
    finite &= std::isfinite(x[i]);
    lo = x[i] < lo ? x[i] : lo;
    hi = x[i] > hi ? x[i] : hi;
  }
  *mn = lo;
  *mx = hi;
  return finite;
}

bool quantize_row_u8(const float* x, int64_t k, int64_t kp, uint8_t* out, float* scale,
                     int32_t* zero, int32_t* row_sum) {
  float lo, hi;
  if (!min_max(x, k, &lo, &hi)) return false;
  dynamic_u8_params(lo, hi, scale, zero);
  QuantRun p{scale, zero, false};
  quantize_run(x, k, p, 0, 255, out);
  std::memset(out + k, 0, static_cast<size_t>(kp - k));
  int32_t sum = 0;
  for (int64_t i = 0; i < k; ++i) sum += out[i];
  *row_sum = sum;
  return true;
}

void requantize_run(const int32_t* acc, int64_t n, const float* multiplier, bool per_element,
                    int32_t zero, int32_t qmin, int32_t qmax, uint8_t* out) {
  for (int64_t i = 0; i < n; ++i) {
    const double m = multiplier[per_element ? i : 0];
    double v = std::nearbyint(static_cast<double>(acc[i]) * m) + zero;
    v = v >= qmin ? (v > qmax ? qmax : v) : qmin;  // NaN (a NaN multiplier) -> qmin, never cast
    out[i] = static_cast<uint8_t>(static_cast<int32_t>(v));
  }
}

uint64_t sum_bytes(const uint8_t* data, int64_t n) {
  uint64_t sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += data[i];
  return sum;
}

}  // namespace scalar
}  // namespace lowbit
