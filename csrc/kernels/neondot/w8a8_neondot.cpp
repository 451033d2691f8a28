// w8a8 GEMM on the ARMv8.2 dot product extension: sdot sums four int8 x int8 products into each
// int32 lane, exactly. A' = A - 128 makes uint8 activations signed (the epilogue adds
// 128 * colsum(B') back). A tile is MR rows x 16 columns of a 64-column panel.
#include <arm_neon.h>

#include "kernels/isa_kernels.h"
#include "kernels/neon/w8a8_epilogue_neon.h"

namespace lowbit {
namespace neondot {
namespace {

template <int MR>
void w8a8_tile(const W8A8Problem& p, int64_t m0, int64_t panel, int64_t col0) {
  const int8_t* b = p.b_panels + panel * kPanelCols * p.KP + col0 * 4;
  const uint8_t* a = p.a + m0 * p.lda;
  int32x4_t acc[MR][4];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < 4; ++j) acc[r][j] = vdupq_n_s32(0);
  for (int64_t g = 0; g < p.KP / 4; ++g) {
    const int8_t* bg = b + g * kGroupBytes;
    int8x16_t bv[4];
    for (int j = 0; j < 4; ++j) bv[j] = vld1q_s8(bg + 16 * j);
    for (int r = 0; r < MR; ++r) {
      const int8x16_t av = broadcast4_u8_shifted(a + r * p.lda + g * 4);
      for (int j = 0; j < 4; ++j) acc[r][j] = vdotq_s32(acc[r][j], bv[j], av);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < 4; ++j) {
      const int64_t n0 = panel * kPanelCols + col0 + 4 * j;
      if (n0 < p.N) store4_shifted(p, m0 + r, n0, acc[r][j]);
    }
}

template <int MR>
void w8a8_tile_columns(const W8A8Problem& p, int64_t m0, int64_t panel) {
  for (int64_t col0 = 0; col0 < kPanelCols && panel * kPanelCols + col0 < p.N; col0 += 16)
    w8a8_tile<MR>(p, m0, panel, col0);
}

}  // namespace

void w8a8(const W8A8Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
          int64_t panel_end) {
  for (int64_t panel = panel_begin; panel < panel_end; ++panel) {
    int64_t m = m_begin;
    for (; m + 4 <= m_end; m += 4) w8a8_tile_columns<4>(p, m, panel);
    switch (m_end - m) {
      case 1: w8a8_tile_columns<1>(p, m, panel); break;
      case 2: w8a8_tile_columns<2>(p, m, panel); break;
      case 3: w8a8_tile_columns<3>(p, m, panel); break;
      default: break;
    }
  }
}

}  // namespace neondot
}  // namespace lowbit
