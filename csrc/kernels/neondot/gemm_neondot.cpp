// Integer and w4a8 GEMMs on the ARMv8.2 dot product extension: sdot sums four int8 x int8
// products into each int32 lane, exactly. A' = A - 128 makes uint8 activations signed (the
// epilogue adds 128 * colsum(B') back); 4-bit values (0..15) are already valid signed bytes.
// A tile is MR rows x 16 columns of a 64-column panel.
#include <arm_neon.h>

#include "kernels/neon/neon_epilogue.h"
#include "kernels/neon/neon_kernels.h"

namespace lowbit {
namespace neondot {
namespace {

constexpr int64_t kPanel = 64;
constexpr int64_t kGroupBytes = kPanel * 4;

template <int MR>
void int8_tile(const GemmProblem& p, int64_t m0, int64_t panel, int64_t col0) {
  const int8_t* b = p.b_panels + panel * kPanel * p.KP + col0 * 4;
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
      const int64_t n0 = panel * kPanel + col0 + 4 * j;
      if (n0 < p.N) store4_shifted(p, m0 + r, n0, acc[r][j]);
    }
}

template <int MR>
void int8_tile_columns(const GemmProblem& p, int64_t m0, int64_t panel) {
  for (int64_t col0 = 0; col0 < kPanel && panel * kPanel + col0 < p.N; col0 += 16)
    int8_tile<MR>(p, m0, panel, col0);
}

template <int MR>
void w4a8_tile(const Int4GemmProblem& p, int64_t m0, int64_t panel, int64_t c0) {
  const uint8x16_t low4 = vdupq_n_u8(0x0F);
  float facc[MR][16] = {};
  const int8_t* a = p.a_s8 + m0 * p.lda;
  for (int64_t g = 0; g < p.groups; ++g) {
    const Int4Group b = int4_group(p, panel, g);
    const int8_t* ag = a + g * p.group_pad;
    int32x4_t acc[MR][4];
    for (int r = 0; r < MR; ++r)
      for (int q = 0; q < 4; ++q) acc[r][q] = vdupq_n_s32(0);
    for (int64_t o = 0; o < p.group_pad / 8; ++o) {
      const uint8_t* wo = b.weights + o * kGroupBytes + (c0 / 16) * 64;
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
  w4a8_store(p, m0, panel * kPanel + c0, facc);
}

}  // namespace

void gemm(const GemmProblem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
          int64_t panel_end) {
  for (int64_t panel = panel_begin; panel < panel_end; ++panel) {
    int64_t m = m_begin;
    for (; m + 4 <= m_end; m += 4) int8_tile_columns<4>(p, m, panel);
    switch (m_end - m) {
      case 1: int8_tile_columns<1>(p, m, panel); break;
      case 2: int8_tile_columns<2>(p, m, panel); break;
      case 3: int8_tile_columns<3>(p, m, panel); break;
      default: break;
    }
  }
}

void gemm_w4a8(const Int4GemmProblem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
               int64_t panel_end) {
  for (int64_t panel = panel_begin; panel < panel_end; ++panel)
    for (int64_t c0 = 0; c0 < kPanel && panel * kPanel + c0 < p.N; c0 += 16) {
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
