// w4a8 GEMM on baseline AArch64 NEON (no dot product extension): int8 activations x 4-bit
// weights. Exact: vmull_s8 multiplies 4-bit values by int8 activations into int16 (<= 1905) and
// vpadalq_s16 adds adjacent products into int32. A tile is MR rows x 16 columns of a 64-column
// panel (see w4_tile_neon.h).
#include <arm_neon.h>

#include "kernels/isa_kernels.h"
#include "kernels/neon/dot_neon.h"
#include "kernels/neon/w4_tile_neon.h"

namespace lowbit {
namespace neon {
namespace {

// 4-bit weights x int8 activations, MR rows x the 16 columns of block c0 / 16 of the panel.
template <int MR>
void w4a8_tile(const W4Problem& p, int64_t m0, int64_t panel, int64_t c0) {
  const uint8x16_t low4 = vdupq_n_u8(0x0F);
  float facc[MR][16] = {};
  const int8_t* a = p.a_s8 + m0 * p.lda;
  for (int64_t g = 0; g < p.groups; ++g) {
    const W4Group b = w4_group(p, panel, g);
    const int8_t* ag = a + g * p.group_pad;
    int32x4_t pairs[MR][8];
    for (int r = 0; r < MR; ++r)
      for (int j = 0; j < 8; ++j) pairs[r][j] = vdupq_n_s32(0);
    for (int64_t o = 0; o < p.group_pad / 8; ++o) {
      const uint8_t* wo = b.weights + o * kW4OctetBytes + (c0 / 16) * 64;
      for (int q = 0; q < 4; ++q) {
        const uint8x16_t v = vld1q_u8(wo + 16 * q);
        const int8x16_t lo = vreinterpretq_s8_u8(vandq_u8(v, low4));
        const int8x16_t hi = vreinterpretq_s8_u8(vshrq_n_u8(v, 4));
        for (int r = 0; r < MR; ++r) {
          widening_dot(pairs[r][2 * q], pairs[r][2 * q + 1], lo, broadcast4_s8(ag + r * p.lda + o * 8));
          widening_dot(pairs[r][2 * q], pairs[r][2 * q + 1], hi, broadcast4_s8(ag + r * p.lda + o * 8 + 4));
        }
      }
    }
    int32x4_t acc[MR][4];
    for (int r = 0; r < MR; ++r)
      for (int q = 0; q < 4; ++q) acc[r][q] = vpaddq_s32(pairs[r][2 * q], pairs[r][2 * q + 1]);
    w4a8_group_end(p, b, m0, g, c0, acc, facc);
  }
  w4a8_store(p, m0, panel * kPanelCols + c0, facc);
}

}  // namespace

void w4a8(const W4Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
          int64_t panel_end) {
  walk_w4<w4a8_tile<1>, w4a8_tile<2>>(p, m_begin, m_end, panel_begin, panel_end);
}

}  // namespace neon
}  // namespace lowbit
