// lowbit public C++ API, quantization primitives (ONNX semantics): range -> parameters,
// QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, row ranges and requantization.
#pragma once

#include <cstdint>

#include "lowbit/types.h"

namespace lowbit {

// lowbit's one rule from a quantization range to its parameters, per channel (n ranges; the
// NumPy layer's _range_to_params calls this). In float32, in this order:
//   symmetric:  scale = max(|lo|, |hi|) / S            zero = Z
//               (S = 127 for int8 and uint8, 7 for int4 and uint4, 32767 for int16 and
//               uint16; Z = 0 for the signed types, 128, 8, 32768 for uint8, uint4, uint16)
//   asymmetric: lo = min(lo, 0), hi = max(hi, 0), d = qmax - qmin
//               scale = (hi - lo) / d, or hi / d - lo / d where that overflows
//               zero = clamp(round_half_even(qmin - lo / (scale or 1 if 0)), qmin, qmax)
//   then a scale of 0 (an all-zero range) becomes 1.
void range_params(const float* lo, const float* hi, int64_t n, QType type, bool symmetric,
                  float* scale, int32_t* zero);

// A tensor seen as (outer, axis, inner) around the quantization axis.
struct AxisView {
  int64_t outer = 1;
  int64_t axis = 1;
  int64_t inner = 1;
};

// per_tensor: one scale. per_axis: scale[axis]. blocked: scale shaped (outer, ceil(axis/block), inner).
enum class ScaleMode : int { per_tensor = 0, per_axis = 1, blocked = 2 };

// q = saturate(round_half_even(x / scale) + zero_point). zero_point may be null (all zero).
// out holds qtype_bytes(qtype) bytes per value: int8 / uint8 storage, or int16 / uint16.
// Throws std::invalid_argument if x holds NaN or Inf (out is then unspecified).
void quantize_linear(const float* x, AxisView view, ScaleMode mode, int64_t block_size,
                     const float* scale, const int32_t* zero_point, QType qtype, void* out);

// x = (q - zero_point) * scale, in float32 (q: int8, uint8, int16, uint16 or int32).
void dequantize_linear(const void* q, ElemType qtype, AxisView view, ScaleMode mode,
                       int64_t block_size, const float* scale, const int32_t* zero_point,
                       float* out);

// Per row of a rows x cols float32 matrix: lo = min(0, row min), hi = max(0, row max), the
// range every per-channel quantizer starts from (one pass over the data). Throws
// std::invalid_argument if x holds NaN or Inf.
void row_ranges(const float* x, int64_t rows, int64_t cols, float* lo, float* hi);

// ONNX DynamicQuantizeLinear over n values (uint8, per tensor). Zero range gives scale 1, zp 0.
void dynamic_quantize_linear(const float* x, int64_t n, uint8_t* out, float* scale,
                             uint8_t* zero_point);

// y = saturate(round_half_even(double(acc) * double(multiplier)) + zero_point).
// multiplier: one value (per_tensor), one per column (per_axis over the last dim), or rows*cols.
enum class MultiplierMode : int { per_tensor = 0, per_column = 1, elementwise = 2 };
// qtype: an 8- or 4-bit type (std::invalid_argument for int16 / uint16).
void requantize(const int32_t* acc, int64_t rows, int64_t cols, const float* multiplier,
                MultiplierMode mode, int32_t zero_point, QType qtype, void* out);

}  // namespace lowbit
