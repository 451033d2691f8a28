// Depthwise convolution, scalar: the reference the SIMD paths are tested against (contract:
// DwConvProblem in kernels/kernel_api.h).
#include <cmath>
#include <vector>

#include "kernels/dwconv_taps.h"
#include "kernels/isa_kernels.h"

namespace lowbit {
namespace scalar {

void dwconv(const DwConvProblem& p, int64_t oh_begin, int64_t oh_end) {
  std::vector<const uint8_t*> taps(static_cast<size_t>(2 * p.tap_pairs));
  for (int64_t oh = oh_begin; oh < oh_end; ++oh) {
    for (int64_t ow = 0; ow < p.OW; ++ow) {
      dw_tap_rows(p, oh, ow, taps.data());
      const int64_t row = (oh * p.OW + ow) * p.ldc;
      for (int64_t c = 0; c < p.C; ++c) {
        uint32_t acc = 0;  // wraps like the SIMD paths' int32 lanes
        for (int64_t t = 0; t < p.tap_pairs; ++t) {
          const int16_t* w = p.w + (t * p.CP + c) * 2;
          acc += static_cast<uint32_t>((taps[2 * t][c] - p.x_zero) * w[0]);
          acc += static_cast<uint32_t>((taps[2 * t + 1][c] - p.x_zero) * w[1]);
        }
        const int32_t a = static_cast<int32_t>(acc);
        if (p.c_i32) {
          p.c_i32[row + c] = a;
        } else {
          const float s = p.row_scale * p.col_scale[c];
          p.y_f32[row + c] = std::fma(static_cast<float>(a), s, p.bias ? p.bias[c] : 0.0f);
        }
      }
    }
  }
}

}  // namespace scalar
}  // namespace lowbit
