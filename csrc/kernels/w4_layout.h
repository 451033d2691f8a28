// Addressing of the packed 4-bit weight layout (see W4Problem in kernel_api.h), shared by every
// ISA's 4-bit kernels and the packer (PackedInt4Matrix). Plain integer code in an anonymous
// namespace: each translation unit keeps its own copy, compiled with its own flags (no ODR mixing
// across ISA flags).
#pragma once

#include <cstdint>

#include "kernels/kernel_api.h"

namespace lowbit {
namespace {

// One group's block inside a panel: weights (octets), then scales, then zero points.
struct W4Group {
  const uint8_t* weights;
  const float* scales;   // 64, one per panel column
  const uint8_t* zeros;  // 64, or null when symmetric (every zero point is 8)
};

inline W4Group w4_group(const W4Problem& p, int64_t panel, int64_t g) {
  const uint8_t* block = p.w + panel * p.panel_stride + g * p.group_stride;
  const int64_t weight_bytes = p.group_pad * kPanelCols / 2;
  return {block, reinterpret_cast<const float*>(block + weight_bytes),
          p.symmetric ? nullptr : block + weight_bytes + kPanelCols * 4};  // after 64 float32
}

// Byte offset, inside a group's weights, of the byte holding position k (< group_pad) of panel
// column c: octet k / 8, 16-column block c / 16 (64 bytes of the octet), lane c % 16 (4 bytes),
// byte k % 4. Positions k % 8 >= 4 are its high nibble.
inline int64_t w4_weight_byte(int64_t k, int64_t c) {
  return (k / kW4OctetDepth) * kW4OctetBytes + (c / 16) * 64 + (c % 16) * 4 + (k % 4);
}
inline bool w4_high_nibble(int64_t k) { return (k % kW4OctetDepth) >= 4; }

// The 4-bit value of column c at position k (< group_pad) of a group's weights.
inline int32_t w4_nibble(const uint8_t* weights, int64_t k, int64_t c) {
  const uint8_t byte = weights[w4_weight_byte(k, c)];
  return w4_high_nibble(k) ? byte >> 4 : byte & 0x0F;
}

}  // namespace
}  // namespace lowbit
