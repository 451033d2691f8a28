// w8a8 GEMM on baseline AArch64 NEON (no dot product extension). Exact: vmull_s8 multiplies
// signed bytes into int16 (|(A - 128) * B'| <= 16384) and vpadalq_s16 adds adjacent products into
// int32. A tile is MR rows x 16 columns of a 64-column panel.
#include <arm_neon.h>

#include <cmath>
#include <cstring>

#include "kernels/isa_kernels.h"
#include "kernels/neon/dot_neon.h"
#include "kernels/neon/w8a8_epilogue_neon.h"

namespace lowbit {
namespace neon {
namespace {

template <int MR>
void w8a8_tile(const W8A8Problem& p, int64_t m0, int64_t panel, int64_t col0) {
  const int8_t* b = p.b_panels + panel * kPanelCols * p.KP + col0 * 4;
  const uint8_t* a = p.a + m0 * p.lda;
  int32x4_t acc[MR][8];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < 8; ++j) acc[r][j] = vdupq_n_s32(0);
  for (int64_t g = 0; g < p.KP / 4; ++g) {
    const int8_t* bg = b + g * kGroupBytes;
    int8x16_t av[MR];
    for (int r = 0; r < MR; ++r) av[r] = broadcast4_u8_shifted(a + r * p.lda + g * 4);
    for (int j = 0; j < 4; ++j) {
      const int8x16_t bv = vld1q_s8(bg + 16 * j);
      for (int r = 0; r < MR; ++r) widening_dot(acc[r][2 * j], acc[r][2 * j + 1], bv, av[r]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < 4; ++j) {
      const int64_t n0 = panel * kPanelCols + col0 + 4 * j;
      if (n0 < p.N) store4_shifted(p, m0 + r, n0, vpaddq_s32(acc[r][2 * j], acc[r][2 * j + 1]));
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
    for (; m + 2 <= m_end; m += 2) w8a8_tile_columns<2>(p, m, panel);
    if (m < m_end) w8a8_tile_columns<1>(p, m, panel);
  }
}

}  // namespace neon
}  // namespace lowbit
