// Scalar w4f32 GEMM (float32 activations) over the packed 4-bit layout (kernels/kernel_api.h,
// W4Problem), in exactly the order of operations the SIMD kernels use, so every ISA gives the
// same bits.
#include <cmath>

#include "kernels/isa_kernels.h"
#include "kernels/w4_layout.h"

namespace lowbit {
namespace scalar {

void w4f32(const W4Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
           int64_t panel_end) {
  for (int64_t panel = panel_begin; panel < panel_end; ++panel)
    for (int64_t m = m_begin; m < m_end; ++m) {
      const float* a = p.a_f32 + m * p.lda;
      for (int64_t c = 0; c < kPanelCols; ++c) {
        const int64_t n = panel * kPanelCols + c;
        if (n >= p.N) break;
        float acc = 0.0f;
        for (int64_t g = 0; g < p.groups; ++g) {
          const W4Group b = w4_group(p, panel, g);
          const int32_t zero = b.zeros ? b.zeros[c] : 8;
          float s = 0.0f;
          for (int64_t k = 0; k < p.group_pad; ++k)
            s = std::fma(a[g * p.group_pad + k], static_cast<float>(w4_nibble(b.weights, k, c) - zero), s);
          acc = std::fma(s, b.scales[c], acc);
        }
        p.y[m * p.ldy + n] = p.bias ? acc + p.bias[n] : acc;
      }
    }
}

}  // namespace scalar
}  // namespace lowbit
