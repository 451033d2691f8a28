// The tile walk of the weight-only int8 kernels that work on half panels (32 columns: AVX2 and
// NEON, whose register files cannot hold a whole panel's accumulators for several rows). Rows
// are walked inside each half panel so its weights stay in L1/L2 while the A rows stream past.
// Plain code in an anonymous namespace: each ISA's translation unit keeps its own copy.
#pragma once

#include <cstdint>

#include "kernels/kernel_api.h"

namespace lowbit {
namespace {

using W8F32HalfTile = void (*)(const W8F32Problem&, int64_t m0, int64_t panel, int half);

// tiles[r - 1] computes r rows; the last entry is the tile of full row blocks.
template <int kMaxRows>
inline void walk_half_panels(const W8F32HalfTile (&tiles)[kMaxRows], const W8F32Problem& p,
                             int64_t m_begin, int64_t m_end, int64_t panel_begin, int64_t panel_end) {
  for (int64_t panel = panel_begin; panel < panel_end; ++panel)
    for (int half = 0; half < 2 && panel * kPanelCols + half * kHalfPanelCols < p.N; ++half) {
      int64_t m = m_begin;
      for (; m + kMaxRows <= m_end; m += kMaxRows) tiles[kMaxRows - 1](p, m, panel, half);
      if (m < m_end) tiles[m_end - m - 1](p, m, panel, half);
    }
}

}  // namespace
}  // namespace lowbit
