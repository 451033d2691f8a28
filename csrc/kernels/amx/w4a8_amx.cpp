// w4a8 GEMM on the AMX tile unit: int8 activations x 4-bit weights, one tile product chain per
// group, the per-group float epilogue in AVX-512. Built twice like w8a8_amx.cpp (path amx and
// the software-model path amx_emu).
//
// Each panel's nibbles are unpacked once per call into int8 (w - zero), in the B-tile layout of
// the int8 panels (a k group of 4 is a 256-byte row: 64 columns x 4 k), so tdpbssd gives
// dot_g - zero * a_group_sum exactly: the integer the contract scales (kernel_api.h), with the
// zero point folded in before the product instead of subtracted after it. Per output element,
// in the contract's order:
//   acc = 0; for g: acc = fma(float(dot_g - zero * a_group_sum[m, g]), scale, acc)
//   y = fma(acc, a_scale[m], bias[n] or 0)
// Tiles: C0..C3 16 x 16 int32 (rows 0-15 / 16-31 x columns 0-15 / 16-31 of a half panel),
// A4, A5 16 rows x kw activation bytes, B6, B7 kw/4 k groups x 16 columns (kw: the largest of
// 64, 32, 16, 8 that divides the padded group length). A is copied into tile order first (see
// w8a8_amx.cpp); the last row block is padded with zero rows. While the tile unit computes group
// g, the AVX-512 units scale group g - 1 into the float accumulators (software pipelining over
// a double-buffered block of sums), so the per-group epilogue hides behind the tile products.
#include <algorithm>

#include "kernels/amx/amx_tiles.h"
#include "kernels/isa_kernels.h"
#include "kernels/kernel_scratch.h"
#include "kernels/w4_layout.h"

namespace lowbit {
namespace LOWBIT_AMX_NS {
namespace {

// Below this many rows the avx512vnni kernels win: they stream the weights once at memory
// speed, the tile unit computes 16 rows a block. Measured on a 2-vCPU Xeon with AMX, 1 thread,
// K = N = 4096, group 32: M = 8 avx512vnni 318 GOPS, tiles 198; M = 16: 329 / 363.
constexpr int64_t kMinRows = 16;

int64_t step_bytes(int64_t group_pad) {
  for (int64_t w : {64, 32, 16})
    if (group_pad % w == 0) return w;
  return 8;  // group_pad is always a multiple of 8
}

TileConfig config_for(int64_t kw) {
  TileConfig cfg;
  cfg.palette_id = 1;
  for (int t = 0; t < 4; ++t) {  // C
    cfg.rows[t] = kTileRows;
    cfg.colsb[t] = 64;
  }
  for (int t = 4; t < 6; ++t) {  // A
    cfg.rows[t] = kTileRows;
    cfg.colsb[t] = static_cast<uint16_t>(kw);
  }
  for (int t = 6; t < 8; ++t) {  // B
    cfg.rows[t] = static_cast<uint8_t>(kw / 4);
    cfg.colsb[t] = 64;
  }
  return cfg;
}

// Activations of the call's rows in tile order: tile (block, g, s) is 16 rows x kw bytes,
// contiguous, for k = g * group_pad + s * kw ...; rows past m_end are zero.
struct TileA {
  const int8_t* data;
  int64_t per_block, tile_bytes, steps;
  const int8_t* tile(int64_t block, int64_t g, int64_t s) const {
    return data + block * per_block + (g * steps + s) * tile_bytes;
  }
};

TileA copy_a(const W4Problem& p, int64_t m_begin, int64_t m_end, int64_t blocks, int64_t kw) {
  TileA t;
  t.steps = p.group_pad / kw;
  t.tile_bytes = kTileRows * kw;
  t.per_block = p.groups * t.steps * t.tile_bytes;
  auto* dst = static_cast<int8_t*>(kernel_scratch::reserve(kernel_scratch::amx_a, static_cast<size_t>(blocks * t.per_block)));
  t.data = dst;
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t r = 0; r < kTileRows; ++r) {
      const int64_t m = m_begin + b * kTileRows + r;
      int8_t* row = dst + b * t.per_block + r * kw;
      const int8_t* src = m < m_end ? p.a_s8 + m * p.lda : nullptr;
      for (int64_t g = 0; g < p.groups; ++g)
        for (int64_t s = 0; s < t.steps; ++s) {
          int8_t* out = row + (g * t.steps + s) * t.tile_bytes;
          if (src != nullptr)
            std::memcpy(out, src + g * p.group_pad + s * kw, static_cast<size_t>(kw));
          else
            std::memset(out, 0, static_cast<size_t>(kw));
        }
    }
  return t;
}

// Nibbles of one panel as int8 w - zero, group after group: group g's k group q (4 k) is the
// 256-byte row (g * group_pad / 4 + q) of dst.
void unpack_panel(const W4Problem& p, int64_t panel, int8_t* dst) {
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const int64_t octets = p.group_pad / 8;
  for (int64_t g = 0; g < p.groups; ++g) {
    const W4Group b = w4_group(p, panel, g);
    __m512i zero[4];
    for (int j = 0; j < 4; ++j)  // column c's zero point in each of its 4 bytes
      zero[j] = b.zeros == nullptr
                    ? _mm512_set1_epi8(8)
                    : _mm512_mullo_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128(
                                             reinterpret_cast<const __m128i*>(b.zeros + 16 * j))),
                                         _mm512_set1_epi32(0x01010101));
    int8_t* out = dst + g * p.group_pad / 4 * kGroupBytes;
    for (int64_t o = 0; o < octets; ++o) {
      const uint8_t* w = b.weights + o * kW4OctetBytes;
      for (int j = 0; j < 4; ++j) {
        const __m512i x = _mm512_load_si512(w + 64 * j);
        const __m512i lo = _mm512_sub_epi8(_mm512_and_si512(x, low4), zero[j]);
        const __m512i hi = _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(x, 4), low4), zero[j]);
        _mm512_store_si512(out + (2 * o) * kGroupBytes + 64 * j, lo);
        _mm512_store_si512(out + (2 * o + 1) * kGroupBytes + 64 * j, hi);
      }
    }
  }
}

// acc[r][n] = fma(float(c[r][n]), scale[n], acc[r][n]) for the 32 columns of one half.
template <int RB>
void scale_half(const int32_t* c, const float* scales, int64_t half, float* acc) {
  for (int64_t jj = 0; jj < 2; ++jj) {
    const int64_t n = half * 32 + jj * 16;
    const __m512 scale = _mm512_load_ps(scales + n);
    for (int64_t r = 0; r < RB * kTileRows; ++r) {
      float* f = acc + r * kPanelCols + n;
      _mm512_store_ps(f, _mm512_fmadd_ps(
                             _mm512_cvtepi32_ps(_mm512_load_si512(c + r * kPanelCols + n)), scale,
                             _mm512_load_ps(f)));
    }
  }
}

template <int RB>
void row_block(const W4Problem& p, const TileA& a, int64_t blk, const int8_t* unpacked,
               int64_t panel, int64_t m0, int64_t rows, int64_t kw) {
  alignas(64) float acc[2 * kTileRows * kPanelCols];
  alignas(64) int32_t sums[2][2 * kTileRows * kPanelCols];
  std::memset(acc, 0, sizeof(acc));
  const bool two = panel * kPanelCols + 32 < p.N;
  const int64_t halves = two ? 2 : 1, G = p.groups;
  for (int64_t g = 0; g <= G; ++g) {
    for (int64_t half = 0; half < halves; ++half) {
      if (g < G) {  // the tile products of group g ...
        LOWBIT_TILE_ZERO(0);
        LOWBIT_TILE_ZERO(1);
        if (RB == 2) {
          LOWBIT_TILE_ZERO(2);
          LOWBIT_TILE_ZERO(3);
        }
        for (int64_t s = 0; s < a.steps; ++s) {
          const int8_t* bk = unpacked + (g * p.group_pad + s * kw) / 4 * kGroupBytes + half * 128;
          LOWBIT_TILE_LOAD(4, a.tile(blk, g, s), kw);
          LOWBIT_TILE_LOAD(6, bk, kGroupBytes);
          LOWBIT_TILE_DPBSSD(0, 4, 6);
          LOWBIT_TILE_LOAD(7, bk + 64, kGroupBytes);
          LOWBIT_TILE_DPBSSD(1, 4, 7);
          if (RB == 2) {
            LOWBIT_TILE_LOAD(5, a.tile(blk + 1, g, s), kw);
            LOWBIT_TILE_DPBSSD(2, 5, 6);
            LOWBIT_TILE_DPBSSD(3, 5, 7);
          }
        }
      }
      // ... while group g - 1's sums are scaled into the accumulators ...
      if (g > 0) scale_half<RB>(sums[(g - 1) & 1], w4_group(p, panel, g - 1).scales, half, acc);
      if (g < G) {  // ... and only then stored, once the products are done.
        int32_t* c = sums[g & 1] + half * 32;
        LOWBIT_TILE_STORE(0, c, kPanelCols * 4);
        LOWBIT_TILE_STORE(1, c + 16, kPanelCols * 4);
        if (RB == 2) {
          LOWBIT_TILE_STORE(2, c + kTileRows * kPanelCols, kPanelCols * 4);
          LOWBIT_TILE_STORE(3, c + kTileRows * kPanelCols + 16, kPanelCols * 4);
        }
      }
    }
  }
  for (int64_t j = 0; j < 4; ++j) {
    const int64_t n0 = panel * kPanelCols + 16 * j;
    if (n0 >= p.N) break;
    const __mmask16 mask = p.N - n0 >= 16 ? static_cast<__mmask16>(0xffff)
                                          : static_cast<__mmask16>((1u << (p.N - n0)) - 1u);
    const __m512 bias = p.bias ? _mm512_maskz_loadu_ps(mask, p.bias + n0) : _mm512_setzero_ps();
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t m = m0 + r;
      const __m512 y = _mm512_fmadd_ps(_mm512_load_ps(acc + r * kPanelCols + 16 * j),
                                       _mm512_set1_ps(p.a_scale[m]), bias);
      _mm512_mask_storeu_ps(p.y + m * p.ldy + n0, mask, y);
    }
  }
}

}  // namespace

void w4a8(const W4Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
          int64_t panel_end) {
  if (m_end - m_begin < kMinRows || p.groups == 0) {
    avx512vnni::w4a8(p, m_begin, m_end, panel_begin, panel_end);
    return;
  }
  const int64_t kw = step_bytes(p.group_pad);
  const int64_t blocks = (m_end - m_begin + kTileRows - 1) / kTileRows;
  const TileA a = copy_a(p, m_begin, m_end, blocks, kw);
  auto* unpacked = static_cast<int8_t*>(
      kernel_scratch::reserve(kernel_scratch::amx_b, static_cast<size_t>(p.groups * p.group_pad / 4 * kGroupBytes)));
  ensure_tile_config(config_for(kw));
  for (int64_t panel = panel_begin; panel < panel_end; ++panel) {
    unpack_panel(p, panel, unpacked);
    int64_t blk = 0;
    for (; blk + 2 <= blocks; blk += 2) {
      const int64_t m0 = m_begin + blk * kTileRows;
      row_block<2>(p, a, blk, unpacked, panel, m0, std::min<int64_t>(2 * kTileRows, m_end - m0), kw);
    }
    if (blk < blocks) {
      const int64_t m0 = m_begin + blk * kTileRows;
      row_block<1>(p, a, blk, unpacked, panel, m0, std::min<int64_t>(kTileRows, m_end - m0), kw);
    }
  }
}

}  // namespace LOWBIT_AMX_NS
}  // namespace lowbit
