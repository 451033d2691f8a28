// Scalar w4a8 GEMM (int8 activations) over the packed 4-bit layout (kernels/kernel_api.h,
// W4Problem), in exactly the order of operations the SIMD kernels use, so every ISA gives the
// same bits.
#include <cmath>

#include "kernels/isa_kernels.h"
#include "kernels/w4_layout.h"

namespace lowbit {
namespace scalar {

void w4a8(const W4Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
          int64_t panel_end) {
  for (int64_t panel = panel_begin; panel < panel_end; ++panel)
    for (int64_t m = m_begin; m < m_end; ++m) {
      const int8_t* a = p.a_s8 + m * p.lda;
      for (int64_t c = 0; c < kPanelCols; ++c) {
        const int64_t n = panel * kPanelCols + c;
        if (n >= p.N) break;
        float acc = 0.0f;
        for (int64_t g = 0; g < p.groups; ++g) {
          const W4Group b = w4_group(p, panel, g);
          int32_t dot = 0;
          for (int64_t k = 0; k < p.group_pad; ++k)
            dot += w4_nibble(b.weights, k, c) * static_cast<int32_t>(a[g * p.group_pad + k]);
          const int32_t zero = b.zeros ? b.zeros[c] : 8;
          const int32_t d = dot - zero * p.a_group_sum[m * p.groups + g];
          acc = std::fma(static_cast<float>(d), b.scales[c], acc);
        }
        p.y[m * p.ldy + n] = std::fma(acc, p.a_scale[m], p.bias ? p.bias[n] : 0.0f);
      }
    }
}

}  // namespace scalar
}  // namespace lowbit
