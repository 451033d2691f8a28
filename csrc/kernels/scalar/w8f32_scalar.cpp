// Scalar w8f32 GEMM (weight-only int8) over the packed int8 panels (kernels/kernel_api.h, W8F32Problem),
// in exactly the order of operations the SIMD kernels use, so every ISA gives the same bits.
#include <cmath>

#include "kernels/isa_kernels.h"

namespace lowbit {
namespace scalar {

void w8f32(const W8F32Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
           int64_t panel_end) {
  for (int64_t panel = panel_begin; panel < panel_end; ++panel) {
    const int8_t* b = p.b_panels + panel * kPanelCols * p.KP;
    for (int64_t m = m_begin; m < m_end; ++m) {
      const float* a = p.a + m * p.lda;
      for (int64_t c = 0; c < kPanelCols; ++c) {
        const int64_t n = panel * kPanelCols + c;
        if (n >= p.N) break;
        const int32_t zero = p.col_zero[n];
        float s = 0.0f;
        for (int64_t k = 0; k < p.K; ++k)
          s = std::fma(a[k], static_cast<float>(b[(k / 4) * kGroupBytes + c * 4 + k % 4] - zero), s);
        p.y[m * p.ldy + n] = std::fma(s, p.col_scale[n], p.bias ? p.bias[n] : 0.0f);
      }
    }
  }
}

}  // namespace scalar
}  // namespace lowbit
