// Scalar wf16f32 / wbf16f32 GEMMs (16-bit float weights, float32 activations) over the packed
// 16-bit panels (kernels/kernel_api.h, W16F32Problem), in exactly the order of operations the
// SIMD kernels use, so every ISA gives the same bits: the oracle of their tests.
#include <cmath>

#include "kernels/half_float.h"
#include "kernels/isa_kernels.h"

namespace lowbit {
namespace scalar {
namespace {

template <bool kBf16>
void w16f32(const W16F32Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
            int64_t panel_end) {
  for (int64_t panel = panel_begin; panel < panel_end; ++panel) {
    const uint16_t* b = p.b_panels + panel * kPanelCols * p.KP;
    for (int64_t m = m_begin; m < m_end; ++m) {
      const float* a = p.a + m * p.lda;
      for (int64_t c = 0; c < kPanelCols; ++c) {
        const int64_t n = panel * kPanelCols + c;
        if (n >= p.N) break;
        float s = 0.0f;
        for (int64_t k = 0; k < p.K; ++k) {
          const uint16_t h = b[half_panel_index(kBf16, k, c)];
          s = std::fma(a[k], kBf16 ? bfloat16_to_float(h) : float16_to_float(h), s);
        }
        p.y[m * p.ldy + n] = p.bias ? s + p.bias[n] : s;
      }
    }
  }
}

}  // namespace

void wf16f32(const W16F32Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
             int64_t panel_end) {
  w16f32<false>(p, m_begin, m_end, panel_begin, panel_end);
}
void wbf16f32(const W16F32Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
              int64_t panel_end) {
  w16f32<true>(p, m_begin, m_end, panel_begin, panel_end);
}

}  // namespace scalar
}  // namespace lowbit
