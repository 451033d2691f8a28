// w4f32 GEMM on AArch64 NEON (Int4Compute::weight_only): float32 activations x 4-bit weights.
// A tile is MR rows x 16 columns of a 64-column panel (see w4_tile_neon.h).
#include <arm_neon.h>

#include "kernels/isa_kernels.h"
#include "kernels/neon/w4_tile_neon.h"

namespace lowbit {
namespace neon {
namespace {

// Float32 activations x 4-bit weights dequantized in registers, k by k in order
// (csrc/kernels/scalar's order), MR rows x 16 columns.
template <int MR>
void w4f32_tile(const W4Problem& p, int64_t m0, int64_t panel, int64_t c0) {
  float facc[MR][16] = {};
  const float* a = p.a_f32 + m0 * p.lda;
  for (int64_t g = 0; g < p.groups; ++g) {
    const W4Group b = w4_group(p, panel, g);
    const float* ag = a + g * p.group_pad;
    float32x4_t s[MR][4];
    for (int r = 0; r < MR; ++r)
      for (int q = 0; q < 4; ++q) s[r][q] = vdupq_n_f32(0.0f);
    int32x4_t zero[4];
    for (int q = 0; q < 4; ++q) zero[q] = w4_zero_points(b, c0 + 4 * q);
    for (int64_t o = 0; o < p.group_pad / 8; ++o) {
      const uint8_t* wo = b.weights + o * kW4OctetBytes + (c0 / 16) * 64;
      for (int q = 0; q < 4; ++q) {
        const uint32x4_t v = vld1q_u32(reinterpret_cast<const uint32_t*>(wo + 16 * q));
        for (int kk = 0; kk < 8; ++kk) {  // k = 8o + kk: byte kk % 4, low nibble for kk < 4
          const int shift = 8 * (kk % 4) + 4 * (kk / 4);
          const uint32x4_t u = vandq_u32(vshlq_u32(v, vdupq_n_s32(-shift)), vdupq_n_u32(0x0F));
          const float32x4_t w = vcvtq_f32_s32(vsubq_s32(vreinterpretq_s32_u32(u), zero[q]));
          for (int r = 0; r < MR; ++r)
            s[r][q] = vfmaq_n_f32(s[r][q], w, ag[r * p.lda + o * 8 + kk]);
        }
      }
    }
    for (int q = 0; q < 4; ++q) {
      const float32x4_t scale = vld1q_f32(b.scales + c0 + 4 * q);
      for (int r = 0; r < MR; ++r) {
        float* f = &facc[r][4 * q];
        vst1q_f32(f, vfmaq_f32(vld1q_f32(f), s[r][q], scale));
      }
    }
  }
  for (int q = 0; q < 4; ++q) {
    const int64_t n0 = panel * kPanelCols + c0 + 4 * q;
    if (n0 >= p.N) break;
    for (int r = 0; r < MR; ++r) {
      float32x4_t y = vld1q_f32(&facc[r][4 * q]);
      if (p.bias) y = vaddq_f32(y, load4_bias(p, n0));
      store4_f32(p, m0 + r, n0, y);
    }
  }
}

}  // namespace

void w4f32(const W4Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
           int64_t panel_end) {
  walk_w4<w4f32_tile<1>, w4f32_tile<2>>(p, m_begin, m_end, panel_begin, panel_end);
}

}  // namespace neon
}  // namespace lowbit
