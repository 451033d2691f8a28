// w4a8 GEMM on the ARMv8.2 dot product extension: sdot sums four int8 x int8 products into each
// int32 lane, exactly; 4-bit values (0..15) are already valid signed bytes. A tile is MR rows x
// 16 columns of a 64-column panel (see kernels/neon/w4_tile_neon.h).
#include <arm_neon.h>

#include "kernels/isa_kernels.h"
#include "kernels/neon/w4_tile_neon.h"

namespace lowbit {
namespace neondot {
namespace {

template <int MR>
void w4a8_tile(const W4Problem& p, int64_t m0, int64_t panel, int64_t c0) {
  const uint8x16_t low4 = vdupq_n_u8(0x0F);
  float facc[MR][16] = {};
  const int8_t* a = p.a_s8 + m0 * p.lda;
  for (int64_t g = 0; g < p.groups; ++g) {
    const W4Group b = w4_group(p, panel, g);
    const int8_t* ag = a + g * p.group_pad;
    int32x4_t acc[MR][4];
    for (int r = 0; r < MR; ++r)
      for (int q = 0; q < 4; ++q) acc[r][q] = vdupq_n_s32(0);
    for (int64_t o = 0; o < p.group_pad / 8; ++o) {
      const uint8_t* wo = b.weights + o * kW4OctetBytes + (c0 / 16) * 64;
      int8x16_t lo[4], hi[4];
      for (int q = 0; q < 4; ++q) {
        const uint8x16_t v = vld1q_u8(wo + 16 * q);
        lo[q] = vreinterpretq_s8_u8(vandq_u8(v, low4));
        hi[q] = vreinterpretq_s8_u8(vshrq_n_u8(v, 4));
      }
      for (int r = 0; r < MR; ++r) {
        const int8x16_t a_lo = broadcast4_s8(ag + r * p.lda + o * 8);
        const int8x16_t a_hi = broadcast4_s8(ag + r * p.lda + o * 8 + 4);
        for (int q = 0; q < 4; ++q) acc[r][q] = vdotq_s32(vdotq_s32(acc[r][q], lo[q], a_lo), hi[q], a_hi);
      }
    }
    w4a8_group_end(p, b, m0, g, c0, acc, facc);
  }
  w4a8_store(p, m0, panel * kPanelCols + c0, facc);
}

}  // namespace

void w4a8(const W4Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
          int64_t panel_end) {
  for (int64_t panel = panel_begin; panel < panel_end; ++panel)
    for (int64_t c0 = 0; c0 < kPanelCols && panel * kPanelCols + c0 < p.N; c0 += 16) {
      int64_t m = m_begin;
      for (; m + 4 <= m_end; m += 4) w4a8_tile<4>(p, m, panel, c0);
      switch (m_end - m) {
        case 1: w4a8_tile<1>(p, m, panel, c0); break;
        case 2: w4a8_tile<2>(p, m, panel, c0); break;
        case 3: w4a8_tile<3>(p, m, panel, c0); break;
        default: break;
      }
    }
}

}  // namespace neondot
}  // namespace lowbit
