// Scalar w8a8 GEMM over the packed layout, with the same epilogue as the SIMD kernels.
// Integer math is done in uint32 so wrap-around is defined (results are exact modulo 2^32).
#include <cmath>

#include "kernels/isa_kernels.h"

namespace lowbit {
namespace scalar {

void w8a8(const W8A8Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
          int64_t panel_end) {
  const int64_t groups = p.KP / 4;
  for (int64_t panel = panel_begin; panel < panel_end; ++panel) {
    const int8_t* b = p.b_panels + panel * kPanelCols * p.KP;
    for (int64_t m = m_begin; m < m_end; ++m) {
      const uint8_t* a = p.a + m * p.lda;
      for (int64_t c = 0; c < kPanelCols; ++c) {
        const int64_t n = panel * kPanelCols + c;
        if (n >= p.N) break;
        uint32_t acc = 0;
        for (int64_t g = 0; g < groups; ++g)
          for (int64_t t = 0; t < 4; ++t)
            acc += static_cast<uint32_t>(static_cast<int32_t>(a[g * 4 + t]) *
                                         static_cast<int32_t>(b[g * kGroupBytes + c * 4 + t]));
        uint32_t v = acc - static_cast<uint32_t>(p.row_zero[m]) * static_cast<uint32_t>(p.col_corr[n]);
        if (!p.b_symmetric)
          v -= static_cast<uint32_t>(p.col_zero[n]) * static_cast<uint32_t>(p.row_sum[m]);
        const int32_t c32 = static_cast<int32_t>(v);
        if (p.c_i32) {
          p.c_i32[m * p.ldc + n] = c32;
        } else {
          const float s = p.row_scale[m] * p.col_scale[n];
          const float bias = p.bias ? p.bias[n] : 0.0f;
          p.y_f32[m * p.ldc + n] = std::fma(static_cast<float>(c32), s, bias);
        }
      }
    }
  }
}

}  // namespace scalar
}  // namespace lowbit
