// Scalar 4-bit weight GEMMs over the packed layout (kernels/kernel_api.h, Int4GemmProblem), in
// exactly the order of operations the SIMD kernels use, so every ISA gives the same bits.
#include <cmath>

#include "kernels/int4_layout.h"
#include "ref/ref_kernels.h"

namespace lowbit {
namespace ref {
namespace {

constexpr int64_t kPanel = kInt4PanelCols;

// The 4-bit value of column c at position k (< group_pad) of a group.
inline int32_t nibble(const uint8_t* weights, int64_t k, int64_t c) {
  const uint8_t byte = weights[(k / 8) * kPanel * 4 + (c / 16) * 64 + (c % 16) * 4 + (k % 4)];
  return (k % 8) >= 4 ? byte >> 4 : byte & 0x0F;
}

}  // namespace

void gemm_w4a8(const Int4GemmProblem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
               int64_t panel_end) {
  for (int64_t panel = panel_begin; panel < panel_end; ++panel)
    for (int64_t m = m_begin; m < m_end; ++m) {
      const int8_t* a = p.a_s8 + m * p.lda;
      for (int64_t c = 0; c < kPanel; ++c) {
        const int64_t n = panel * kPanel + c;
        if (n >= p.N) break;
        float acc = 0.0f;
        for (int64_t g = 0; g < p.groups; ++g) {
          const Int4Group b = int4_group(p, panel, g);
          int32_t dot = 0;
          for (int64_t k = 0; k < p.group_pad; ++k)
            dot += nibble(b.weights, k, c) * static_cast<int32_t>(a[g * p.group_pad + k]);
          const int32_t zero = b.zeros ? b.zeros[c] : 8;
          const int32_t d = dot - zero * p.a_group_sum[m * p.groups + g];
          acc = std::fma(static_cast<float>(d), b.scales[c], acc);
        }
        p.y[m * p.ldy + n] = std::fma(acc, p.a_scale[m], p.bias ? p.bias[n] : 0.0f);
      }
    }
}

void gemm_w4f32(const Int4GemmProblem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
                int64_t panel_end) {
  for (int64_t panel = panel_begin; panel < panel_end; ++panel)
    for (int64_t m = m_begin; m < m_end; ++m) {
      const float* a = p.a_f32 + m * p.lda;
      for (int64_t c = 0; c < kPanel; ++c) {
        const int64_t n = panel * kPanel + c;
        if (n >= p.N) break;
        float acc = 0.0f;
        for (int64_t g = 0; g < p.groups; ++g) {
          const Int4Group b = int4_group(p, panel, g);
          const int32_t zero = b.zeros ? b.zeros[c] : 8;
          float s = 0.0f;
          for (int64_t k = 0; k < p.group_pad; ++k)
            s = std::fma(a[g * p.group_pad + k], static_cast<float>(nibble(b.weights, k, c) - zero), s);
          acc = std::fma(s, b.scales[c], acc);
        }
        p.y[m * p.ldy + n] = p.bias ? acc + p.bias[n] : acc;
      }
    }
}

}  // namespace ref
}  // namespace lowbit
