// Scalar rules for dynamic (per-row / per-tensor) uint8 quantization parameters, shared by every
// ISA. Functions are static so each translation unit keeps its own copy (no ODR mixing of code
// compiled with different ISA flags).
#pragma once

#include <cmath>
#include <cstdint>

namespace lowbit {

// ONNX DynamicQuantizeLinear: the range always includes 0, scale = (max - min) / 255 in float32,
// zero_point = saturate(round_half_even(-min / scale)). Rules beyond ONNX: a range so large that
// max - min overflows float32 uses max/255 - min/255; a scale that computes to 0 (all-zero or
// underflowing range) becomes 1, so every value quantizes exactly to the zero point (0).
static inline void dynamic_u8_params(float min_value, float max_value, float* scale,
                                     int32_t* zero) {
  const float lo = min_value < 0.0f ? min_value : 0.0f;
  const float hi = max_value > 0.0f ? max_value : 0.0f;
  float s = (hi - lo) / 255.0f;
  if (!std::isfinite(s)) s = hi / 255.0f - lo / 255.0f;
  if (s == 0.0f) s = 1.0f;
  float z = -lo / s;
  z = z < 0.0f ? 0.0f : (z > 255.0f ? 255.0f : z);
  *scale = s;
  *zero = static_cast<int32_t>(std::nearbyint(z));
}

}  // namespace lowbit
