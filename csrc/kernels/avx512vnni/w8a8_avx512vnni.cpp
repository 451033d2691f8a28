// w8a8 GEMM (u8 x s8) microkernels on vpdpbusd (exact: u8*s8 products summed four at a time into
// int32, no intermediate saturation). A tile is MR rows x one 64-column panel (NV = 4 zmm
// accumulators per row); a panel with only 16, 32 or 48 live columns (a conv with 16 or 32
// output channels, a weight's last panel) runs NV = 1-3 vectors per row with more rows, so no
// vpdpbusd works on padding columns. Few rows get extra accumulator sets over alternating k
// groups so that enough independent vpdpbusd chains hide its latency (small-M / GEMV case).
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/avx512vnni/w8a8_epilogue_avx512.h"
#include "kernels/isa_kernels.h"

namespace lowbit {
namespace avx512vnni {
namespace {

// Accumulators of an MR x (16 NV) tile. Kept in a struct and touched only through
// always-inlined helpers: GCC then keeps every vector in a register (an array passed by
// reference would be spilled to the stack inside the k loop).
template <int MR, int NV>
struct TileAcc {
  __m512i v[MR][NV];
};

template <int MR, int NV>
LOWBIT_INLINE void zero(TileAcc<MR, NV>& acc) {
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) acc.v[r][j] = _mm512_setzero_si512();
}

// One k group (4 deep) of the tile: NV panel vectors against MR broadcast rows of A.
template <int MR, int NV>
LOWBIT_INLINE void step(TileAcc<MR, NV>& acc, const uint8_t* a, int64_t lda, const int8_t* bg) {
  __m512i b[NV];
#pragma GCC unroll 4
  for (int j = 0; j < NV; ++j) b[j] = _mm512_load_si512(bg + 64 * j);
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) {
    int32_t a4;
    std::memcpy(&a4, a + r * lda, sizeof(a4));
    const __m512i av = _mm512_set1_epi32(a4);
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) acc.v[r][j] = _mm512_dpbusd_epi32(acc.v[r][j], av, b[j]);
  }
}

template <int MR, int NV>
LOWBIT_INLINE void store_tile(const W8A8Problem& p, int64_t m0, int64_t panel,
                              const TileAcc<MR, NV>& acc) {
#pragma GCC unroll 4
  for (int j = 0; j < NV; ++j) {
    const int64_t n0 = panel * kPanelCols + j * 16;
    if (n0 >= p.N) continue;  // not break: the loop must unroll to keep acc in registers
    const w8a8_epilogue::Columns col = w8a8_epilogue::columns(p, n0);
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) w8a8_epilogue::store(p, m0 + r, n0, col, acc.v[r][j]);
  }
}

// MR rows x 16 NV columns; KU independent accumulator sets over consecutive k groups.
template <int MR, int KU, int NV = 4>
void tile(const W8A8Problem& p, int64_t m0, int64_t panel) {
  const int8_t* b = p.b_panels + panel * kPanelCols * p.KP;
  const uint8_t* a = p.a + m0 * p.lda;
  const int64_t lda = p.lda;
  const int64_t groups = p.KP / 4;
  TileAcc<MR, NV> acc[KU];
#pragma GCC unroll 4
  for (int u = 0; u < KU; ++u) zero(acc[u]);
  int64_t g = 0;
  for (; g + KU <= groups; g += KU)
#pragma GCC unroll 4
    for (int u = 0; u < KU; ++u) step(acc[u], a + (g + u) * 4, lda, b + (g + u) * kGroupBytes);
  for (; g < groups; ++g) step(acc[0], a + g * 4, lda, b + g * kGroupBytes);
#pragma GCC unroll 4
  for (int u = 1; u < KU; ++u)
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[0].v[r][j] = _mm512_add_epi32(acc[0].v[r][j], acc[u].v[r][j]);
  store_tile(p, m0, panel, acc[0]);
}

// A panel of 16 NV live columns (NV < 4): MR rows a step (as many accumulators as the full
// panel's 6 x 4, or 12 x 1), the last rows one at a time.
template <int MR, int NV>
void narrow_panel(const W8A8Problem& p, int64_t m_begin, int64_t m_end, int64_t panel) {
  int64_t m = m_begin;
  for (; m + MR <= m_end; m += MR) tile<MR, 1, NV>(p, m, panel);
  for (; m < m_end; ++m) tile<1, 4, NV>(p, m, panel);
}

}  // namespace

// Rows are walked inside each panel so a panel (KP x 64 bytes) stays in L2 while every row
// block of A streams past it.
void w8a8(const W8A8Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
          int64_t panel_end) {
  for (int64_t panel = panel_begin; panel < panel_end; ++panel) {
    const int64_t live = std::min<int64_t>(kPanelCols, p.N - panel * kPanelCols);
    if (live <= 16) {
      narrow_panel<12, 1>(p, m_begin, m_end, panel);
      continue;
    }
    if (live <= 32) {
      narrow_panel<12, 2>(p, m_begin, m_end, panel);
      continue;
    }
    if (live <= 48) {
      narrow_panel<8, 3>(p, m_begin, m_end, panel);
      continue;
    }
    int64_t m = m_begin;
    for (; m + 6 <= m_end; m += 6) tile<6, 1>(p, m, panel);
    switch (m_end - m) {
      case 1: tile<1, 4>(p, m, panel); break;
      case 2: tile<2, 2>(p, m, panel); break;
      case 3: tile<3, 1>(p, m, panel); break;
      case 4: tile<4, 1>(p, m, panel); break;
      case 5: tile<5, 1>(p, m, panel); break;
      default: break;
    }
  }
}

}  // namespace avx512vnni
}  // namespace lowbit
