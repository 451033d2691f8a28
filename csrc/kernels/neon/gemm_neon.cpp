// Integer and 4-bit GEMMs on baseline AArch64 NEON (no dot product extension). Exact:
// vmull_s8 multiplies signed bytes into int16 (|(A - 128) * B'| <= 16384, and 4-bit values
// times int8 activations <= 1905) and vpadalq_s16 adds adjacent products into int32.
// A tile is MR rows x 16 columns of a 64-column panel.
#include <arm_neon.h>

#include <cmath>
#include <cstring>

#include "kernels/neon/neon_epilogue.h"
#include "kernels/neon/neon_kernels.h"

namespace lowbit {
namespace neon {
namespace {

constexpr int64_t kPanel = 64;
constexpr int64_t kGroupBytes = kPanel * 4;

// acc[0] += pairs of (columns 0, 1) products, acc[1] += pairs of (columns 2, 3): 16 bytes of b
// (4 columns x 4 k) against the broadcast 4 activations a (signed).
inline void widening_dot(int32x4_t& acc_lo, int32x4_t& acc_hi, int8x16_t b, int8x16_t a) {
  acc_lo = vpadalq_s16(acc_lo, vmull_s8(vget_low_s8(b), vget_low_s8(a)));
  acc_hi = vpadalq_s16(acc_hi, vmull_high_s8(b, a));
}

template <int MR>
void int8_tile(const GemmProblem& p, int64_t m0, int64_t panel, int64_t col0) {
  const int8_t* b = p.b_panels + panel * kPanel * p.KP + col0 * 4;
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
      const int64_t n0 = panel * kPanel + col0 + 4 * j;
      if (n0 < p.N) store4_shifted(p, m0 + r, n0, vpaddq_s32(acc[r][2 * j], acc[r][2 * j + 1]));
    }
}

template <int MR>
void int8_tile_columns(const GemmProblem& p, int64_t m0, int64_t panel) {
  for (int64_t col0 = 0; col0 < kPanel && panel * kPanel + col0 < p.N; col0 += 16)
    int8_tile<MR>(p, m0, panel, col0);
}

// 4-bit weights x int8 activations, MR rows x the 16 columns of block c0 / 16 of the panel.
template <int MR>
void w4a8_tile(const Int4GemmProblem& p, int64_t m0, int64_t panel, int64_t c0) {
  const uint8x16_t low4 = vdupq_n_u8(0x0F);
  float facc[MR][16] = {};
  const int8_t* a = p.a_s8 + m0 * p.lda;
  for (int64_t g = 0; g < p.groups; ++g) {
    const Int4Group b = int4_group(p, panel, g);
    const int8_t* ag = a + g * p.group_pad;
    int32x4_t pairs[MR][8];
    for (int r = 0; r < MR; ++r)
      for (int j = 0; j < 8; ++j) pairs[r][j] = vdupq_n_s32(0);
    for (int64_t o = 0; o < p.group_pad / 8; ++o) {
      const uint8_t* wo = b.weights + o * kGroupBytes + (c0 / 16) * 64;
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
  w4a8_store(p, m0, panel * kPanel + c0, facc);
}

// Float32 activations x 4-bit weights dequantized in registers, k by k in order (csrc/ref's
// order), MR rows x 16 columns.
template <int MR>
void w4f32_tile(const Int4GemmProblem& p, int64_t m0, int64_t panel, int64_t c0) {
  float facc[MR][16] = {};
  const float* a = p.a_f32 + m0 * p.lda;
  for (int64_t g = 0; g < p.groups; ++g) {
    const Int4Group b = int4_group(p, panel, g);
    const float* ag = a + g * p.group_pad;
    float32x4_t s[MR][4];
    for (int r = 0; r < MR; ++r)
      for (int q = 0; q < 4; ++q) s[r][q] = vdupq_n_f32(0.0f);
    int32x4_t zero[4];
    for (int q = 0; q < 4; ++q) zero[q] = int4_zero_points(b, c0 + 4 * q);
    for (int64_t o = 0; o < p.group_pad / 8; ++o) {
      const uint8_t* wo = b.weights + o * kGroupBytes + (c0 / 16) * 64;
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
    const int64_t n0 = panel * kPanel + c0 + 4 * q;
    if (n0 >= p.N) break;
    for (int r = 0; r < MR; ++r) {
      float32x4_t y = vld1q_f32(&facc[r][4 * q]);
      if (p.bias) y = vaddq_f32(y, load4_bias(p, n0));
      store4_f32(p, m0 + r, n0, y);
    }
  }
}

template <void (*Tile1)(const Int4GemmProblem&, int64_t, int64_t, int64_t),
          void (*Tile2)(const Int4GemmProblem&, int64_t, int64_t, int64_t)>
void walk_int4(const Int4GemmProblem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
               int64_t panel_end) {
  for (int64_t panel = panel_begin; panel < panel_end; ++panel)
    for (int64_t c0 = 0; c0 < kPanel && panel * kPanel + c0 < p.N; c0 += 16) {
      int64_t m = m_begin;
      for (; m + 2 <= m_end; m += 2) Tile2(p, m, panel, c0);
      if (m < m_end) Tile1(p, m, panel, c0);
    }
}

}  // namespace

void gemm(const GemmProblem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
          int64_t panel_end) {
  for (int64_t panel = panel_begin; panel < panel_end; ++panel) {
    int64_t m = m_begin;
    for (; m + 2 <= m_end; m += 2) int8_tile_columns<2>(p, m, panel);
    if (m < m_end) int8_tile_columns<1>(p, m, panel);
  }
}

void gemm_w4a8(const Int4GemmProblem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
               int64_t panel_end) {
  walk_int4<w4a8_tile<1>, w4a8_tile<2>>(p, m_begin, m_end, panel_begin, panel_end);
}

void gemm_w4f32(const Int4GemmProblem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
                int64_t panel_end) {
  walk_int4<w4f32_tile<1>, w4f32_tile<2>>(p, m_begin, m_end, panel_begin, panel_end);
}

}  // namespace neon
}  // namespace lowbit
