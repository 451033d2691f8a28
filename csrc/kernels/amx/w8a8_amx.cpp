// w8a8 GEMM on the AMX tile unit: u8 activations x s8 weights, tdpbusd (exact int32 sums that
// wrap, no saturation), then the shared AVX-512 epilogue on the sums, so the bits equal every
// other path's. Built twice from this source: the real instructions (path `amx`) and the
// software tile model (test-only path `amx_emu`); see amx_tiles.h.
//
// Tiles (one configuration, all 16 rows x 64 bytes):
//   C0..C3  int32 sums: rows [0,16) / [16,32) of the row block x columns [0,16) / [16,32) of a
//           32-column half panel (C0 C1 / C2 C3)
//   A4, A5  16 rows of A x 64 k bytes each, straight from the A rows (row stride lda)
//   B6, B7  16 k groups x (16 columns x 4 k): the packed panel layout already is the B-tile
//           layout, one k group of a panel being 256 bytes = a tile row per 16 columns, so a
//           B tile is a plain load with row stride 256 bytes at column offset 0 or 64 bytes.
// A is first copied into tile order (one contiguous 1 KB run per tile; see TileA). K: whole
// 64-deep chunks, then, when KP is not a multiple of 64, one last chunk over the last 64 k of
// the panel whose A side has the k already summed set to zero, so every tile access stays
// inside A and B and no configuration changes. M: blocks of 32 and 16 rows, the last padded
// with zero rows in the copy; calls with fewer than kMinRows rows, or K below one chunk, run the
// avx512vnni kernel. K is walked in blocks of kChunkBlock chunks with both 32-column halves per
// block, the sums parked in L1 between them, so each A tile comes from L2 once per block.
#include <algorithm>

#include "kernels/amx/amx_tiles.h"
#include "kernels/avx512vnni/w8a8_epilogue_avx512.h"
#include "kernels/isa_kernels.h"
#include "kernels/kernel_scratch.h"

namespace lowbit {
namespace LOWBIT_AMX_NS {
namespace {

constexpr int64_t kTileGroups = 16;       // k groups of 4 in one A/B tile (64 k)

// Below this many rows the avx512vnni small-M kernels are faster: both stream B at memory speed
// and the tile unit would compute 16 rows for each block. Measured on a 2-vCPU Xeon with AMX,
// 1 thread, K = N = 4096: M = 6 avx512vnni 0.57 ms, tiles 0.61 ms; M = 8: 0.76 / 0.61 ms.
constexpr int64_t kMinRows = 8;
// K below one chunk (KP < 64) runs avx512vnni too. Tried: one chunk of a second configuration
// (A tiles KP bytes wide, B tiles KP / 4 groups deep); conv_integer on the AMX Xeon, 1 thread,
// 1x1 24 -> 144 channels on 56 x 56 (K = 24): 214 us against 194 on the VNNI kernel, the first
// 3x3 layer (K = 27): 400 against 384. The epilogue and the A copy dominate at such depths.
constexpr int64_t kChunkBlock = 8;  // chunks of K per block (A 16 KB, B 32 KB, C 8 KB: L1)
constexpr double kStreamOutputBytes = 2.0 * 1024 * 1024;

const TileConfig& config() {
  static const TileConfig cfg = uniform_config(8, 16, 64);
  return cfg;
}

// The A rows of one kernel call, copied once into tile order: row block b (16 rows), chunk c is
// the 1 KB tile at (b * chunks + c) * 1024 (row stride 64). A tile then is one contiguous run:
// straight from A rows 4 KB apart, its 16 lines would share one L1 set and evict each other.
// When KP is not a multiple of 64 the last chunk is the last 64 k of each row with the k that
// earlier chunks already summed set to zero.
struct TileA {
  const uint8_t* data;
  int64_t chunks;  // per row block, the tail chunk included
  const uint8_t* tile(int64_t block, int64_t chunk) const { return data + (block * chunks + chunk) * 1024; }
};

TileA copy_a(const W8A8Problem& p, int64_t m_begin, int64_t m_end, int64_t blocks) {
  const int64_t groups = p.KP / 4, full = groups / kTileGroups;
  const bool tail = groups % kTileGroups != 0;
  TileA t;
  t.chunks = full + (tail ? 1 : 0);
  auto* dst = static_cast<uint8_t*>(kernel_scratch::reserve(kernel_scratch::amx_a, static_cast<size_t>(blocks * t.chunks * 1024)));
  t.data = dst;
  const int64_t k0 = (groups - kTileGroups) * 4;   // the tail chunk: the last 64 k of the row,
  const int64_t done = full * 64 - k0;             // of which the first `done` are summed already
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t r = 0; r < kTileRows; ++r) {
      const int64_t m = m_begin + b * kTileRows + r;
      uint8_t* row = dst + b * t.chunks * 1024 + r * 64;
      if (m >= m_end) {  // rows past the end of the last block are zero (their sums are dropped)
        for (int64_t c = 0; c < t.chunks; ++c) std::memset(row + c * 1024, 0, 64);
        continue;
      }
      const uint8_t* src = p.a + m * p.lda;
      for (int64_t c = 0; c < full; ++c) std::memcpy(row + c * 1024, src + c * 64, 64);
      if (tail) {
        uint8_t* last = row + full * 1024;
        std::memset(last, 0, static_cast<size_t>(done));
        std::memcpy(last + done, src + k0 + done, static_cast<size_t>(64 - done));
      }
    }
  return t;
}

// Prefetches the next panel into L2 a few lines per chunk, so its first row block does not wait
// on memory for every tile load (the hardware prefetchers only start once it is read).
struct PanelPrefetch {
  const char* next = nullptr;
  const char* end = nullptr;
  int64_t lines_per_chunk = 0;
  void step() {
    for (int64_t i = 0; i < lines_per_chunk && next < end; ++i, next += 64) _mm_prefetch(next, _MM_HINT_T1);
  }
};

// int32 sums of RB x 16 rows (row blocks blk, blk + 1) and the 32 columns [half * 32, + 32) of
// one panel over the chunks [ch0, ch1), added to (first: stored into) c (row stride 64 int32,
// the panel's full width).
template <int RB>
void half_panel(const W8A8Problem& p, const TileA& a, int64_t blk, const int8_t* panel,
                int64_t half, int64_t ch0, int64_t ch1, int32_t* c, PanelPrefetch& pf) {
  const int64_t groups = p.KP / 4;
  const int8_t* b = panel + half * 32 * 4;
  int32_t* ch = c + half * 32;
  if (ch0 == 0) {
    LOWBIT_TILE_ZERO(0);
    LOWBIT_TILE_ZERO(1);
    if (RB == 2) {
      LOWBIT_TILE_ZERO(2);
      LOWBIT_TILE_ZERO(3);
    }
  } else {
    LOWBIT_TILE_LOAD(0, ch, kPanelCols * 4);
    LOWBIT_TILE_LOAD(1, ch + 16, kPanelCols * 4);
    if (RB == 2) {
      LOWBIT_TILE_LOAD(2, ch + kTileRows * kPanelCols, kPanelCols * 4);
      LOWBIT_TILE_LOAD(3, ch + kTileRows * kPanelCols + 16, kPanelCols * 4);
    }
  }
  for (int64_t k = ch0; k < ch1; ++k) {
    // B rows of the chunk: the tail chunk starts 16 groups before the end of the panel.
    const int64_t g0 = std::min(k * kTileGroups, groups - kTileGroups);
    const int8_t* bk = b + g0 * kGroupBytes;
    pf.step();
    // Each load just before the first product that needs it, so a tile is reloaded as long
    // after its last use in the previous chunk as possible (tile registers are not renamed).
    LOWBIT_TILE_LOAD(4, a.tile(blk, k), 64);
    LOWBIT_TILE_LOAD(6, bk, kGroupBytes);
    LOWBIT_TILE_DPBUSD(0, 4, 6);
    LOWBIT_TILE_LOAD(7, bk + 64, kGroupBytes);
    LOWBIT_TILE_DPBUSD(1, 4, 7);
    if (RB == 2) {
      LOWBIT_TILE_LOAD(5, a.tile(blk + 1, k), 64);
      LOWBIT_TILE_DPBUSD(2, 5, 6);
      LOWBIT_TILE_DPBUSD(3, 5, 7);
    }
  }
  LOWBIT_TILE_STORE(0, ch, kPanelCols * 4);
  LOWBIT_TILE_STORE(1, ch + 16, kPanelCols * 4);
  if (RB == 2) {
    LOWBIT_TILE_STORE(2, ch + kTileRows * kPanelCols, kPanelCols * 4);
    LOWBIT_TILE_STORE(3, ch + kTileRows * kPanelCols + 16, kPanelCols * 4);
  }
}

// Rows of row blocks blk .. blk + RB - 1 (from m_begin, before m_end) of one panel: tile sums
// of both halves, then the epilogue.
template <int RB, bool stream>
void row_block(const W8A8Problem& p, const TileA& a, int64_t m_begin, int64_t m_end, int64_t blk,
               int64_t panel, PanelPrefetch& pf) {
  alignas(64) int32_t c[2 * kTileRows * kPanelCols];
  const int8_t* b = p.b_panels + panel * kPanelCols * p.KP;
  // K in blocks of kChunkBlock chunks, both halves per block: the A tiles of a block are read
  // from L2 once and again from L1 for the second half; the sums wait in c (L1) in between.
  const bool two = panel * kPanelCols + 32 < p.N;
  for (int64_t ch0 = 0; ch0 < a.chunks; ch0 += kChunkBlock) {
    const int64_t ch1 = std::min(a.chunks, ch0 + kChunkBlock);
    half_panel<RB>(p, a, blk, b, 0, ch0, ch1, c, pf);
    if (two) half_panel<RB>(p, a, blk, b, 1, ch0, ch1, c, pf);
  }
  const int64_t m0 = m_begin + blk * kTileRows;
  const int64_t rows = std::min<int64_t>(RB * kTileRows, m_end - m0);
  for (int64_t j = 0; j < 4; ++j) {
    const int64_t n0 = panel * kPanelCols + j * 16;
    if (n0 >= p.N) break;
    const w8a8_epilogue::Columns col = w8a8_epilogue::columns(p, n0);
    for (int64_t r = 0; r < rows; ++r)
      w8a8_epilogue::store<stream>(p, m0 + r, n0, col,
                                   _mm512_load_si512(c + r * kPanelCols + j * 16));
  }
}

}  // namespace

void w8a8(const W8A8Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
          int64_t panel_end) {
  if (m_end - m_begin < kMinRows || p.KP < 64) {
    avx512vnni::w8a8(p, m_begin, m_end, panel_begin, panel_end);
    return;
  }
  // Row blocks of 16; the last one is padded with zero rows in the tile copy of A.
  const int64_t blocks = (m_end - m_begin + kTileRows - 1) / kTileRows;
  const TileA a = copy_a(p, m_begin, m_end, blocks);
  ensure_tile_config(config());
  const int64_t panel_bytes = kPanelCols * p.KP;
  // An output larger than the L2 cache goes around the caches (it cannot stay there anyway).
  const bool stream = static_cast<double>(p.M) * p.N * 4 >= kStreamOutputBytes;
  const int64_t steps = ((blocks + 1) / 2) * 2 * a.chunks;  // chunk steps per panel
  // Rows are walked inside each panel, so the panel (K x 64 bytes) stays in L2 while every row
  // block streams past it.
  for (int64_t panel = panel_begin; panel < panel_end; ++panel) {
    PanelPrefetch pf;
    if (panel + 1 < panel_end) {
      pf.next = reinterpret_cast<const char*>(p.b_panels + (panel + 1) * panel_bytes);
      pf.end = pf.next + panel_bytes;
      pf.lines_per_chunk = (panel_bytes / 64 + steps - 1) / steps;
    }
    int64_t blk = 0;
    if (stream) {
      for (; blk + 2 <= blocks; blk += 2) row_block<2, true>(p, a, m_begin, m_end, blk, panel, pf);
      if (blk < blocks) row_block<1, true>(p, a, m_begin, m_end, blk, panel, pf);
    } else {
      for (; blk + 2 <= blocks; blk += 2) row_block<2, false>(p, a, m_begin, m_end, blk, panel, pf);
      if (blk < blocks) row_block<1, false>(p, a, m_begin, m_end, blk, panel, pf);
    }
  }
  if (stream) _mm_sfence();  // the non-temporal stores are visible before the caller signals
}

}  // namespace LOWBIT_AMX_NS
}  // namespace lowbit
