// wf16f32 / wbf16f32 GEMMs (16-bit float weights, float32 activations) on AVX-512, over the 16-bit
// panels of kernel_api.h (W16F32Problem). Every output is one fma chain in k order, then + bias
// (csrc/kernels/scalar's order), whichever of the two forms below computes it:
// - direct (few rows: the weight stream from memory is the cost): MR <= 4 rows x one 64-column
//   panel, the weights widened in registers as they stream past (float16: vcvtph2ps of 32-byte
//   rows; bfloat16: one k pair of 16 columns per 64-byte load, even k by a shift, odd k by a
//   mask), prefetched far enough ahead to cover DRAM latency;
// - blocked (kMinBlockRows rows or more: the FMA ports are the cost, and a conversion in the
//   loop would take their slots): each block of kBlockDepth k of the panel is widened once into
//   an L1-resident float32 block (32 KB), and every 6-row tile runs a plain float32 FMA loop on
//   it. The running sums wait in y between blocks (exact: float32 stores and loads).
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/isa_kernels.h"
#include "kernels/kernel_scratch.h"

namespace lowbit {
namespace avx512vnni {
namespace {

constexpr int64_t kPrefetchBytes = 512;  // ahead of the direct tiles' weight stream
constexpr int kDirectRows = 4;
constexpr int kBlockRows = 6;              // 24 accumulators + 4 weights of the 32 zmm
constexpr int64_t kBlockDepth = 128;       // k per widened block (even: whole bf16 pairs)
constexpr int64_t kMinBlockRows = 8;

LOWBIT_INLINE __m512 bf16_even(__m512i v) { return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)); }
LOWBIT_INLINE __m512 bf16_odd(__m512i v) {
  return _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
}
LOWBIT_INLINE __m512 f16_row(const uint16_t* row16) {
  return _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(row16)));
}

LOWBIT_INLINE __mmask16 cols_mask(int64_t valid) {
  return valid >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << valid) - 1u);
}

template <int MR>
LOWBIT_INLINE void fma_rows(const __m512 w, int j, const float* a, int64_t lda, int64_t k,
                            __m512 (&s)[MR][4]) {
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) s[r][j] = _mm512_fmadd_ps(_mm512_set1_ps(a[r * lda + k]), w, s[r][j]);
}

// y = s (+ bias) for the valid columns of the panel; `partial`: s only (more k blocks follow).
template <int MR>
LOWBIT_INLINE void store_rows(const W16F32Problem& p, int64_t m0, int64_t panel, bool partial,
                              const __m512 (&s)[MR][4]) {
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    const int64_t n0 = panel * kPanelCols + 16 * j;
    if (n0 >= p.N) break;
    const __mmask16 mask = cols_mask(p.N - n0);
    const bool add = !partial && p.bias != nullptr;
    const __m512 bias = add ? _mm512_maskz_loadu_ps(mask, p.bias + n0) : _mm512_setzero_ps();
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r)
      _mm512_mask_storeu_ps(p.y + (m0 + r) * p.ldy + n0, mask,
                            add ? _mm512_add_ps(s[r][j], bias) : s[r][j]);
  }
}

template <bool kBf16, int MR>
void direct_tile(const W16F32Problem& p, int64_t m0, int64_t panel) {
  const uint16_t* b = p.b_panels + panel * kPanelCols * p.KP;
  const float* a = p.a + m0 * p.lda;
  __m512 s[MR][4];
#pragma GCC unroll 4
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) s[r][j] = _mm512_setzero_ps();
  if (kBf16) {
    const int64_t pairs = p.K / 2;
    for (int64_t q = 0; q < pairs; ++q) {
      const uint16_t* bq = b + q * kPanelCols * kBf16PairDepth;
      __m512i v[4];
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {
        _mm_prefetch(reinterpret_cast<const char*>(bq) + kPrefetchBytes + 64 * j, _MM_HINT_T0);
        v[j] = _mm512_load_si512(bq + 32 * j);
      }
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) fma_rows<MR>(bf16_even(v[j]), j, a, p.lda, 2 * q, s);
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) fma_rows<MR>(bf16_odd(v[j]), j, a, p.lda, 2 * q + 1, s);
    }
    if (p.K % 2) {
      const uint16_t* bq = b + pairs * kPanelCols * kBf16PairDepth;
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) fma_rows<MR>(bf16_even(_mm512_load_si512(bq + 32 * j)), j, a, p.lda, 2 * pairs, s);
    }
  } else {
    for (int64_t k = 0; k < p.K; ++k) {
      const uint16_t* bk = b + k * kPanelCols;
      _mm_prefetch(reinterpret_cast<const char*>(bk) + kPrefetchBytes, _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(bk) + kPrefetchBytes + 64, _MM_HINT_T0);
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) fma_rows<MR>(f16_row(bk + 16 * j), j, a, p.lda, k, s);
    }
  }
  store_rows<MR>(p, m0, panel, false, s);
}

// k rows [k0, k0 + kc) of a panel, widened to float32: block[(k - k0) * 64 + c].
template <bool kBf16>
void widen_block(const uint16_t* b, int64_t k0, int64_t kc, float* block) {
  if (kBf16) {
    for (int64_t k = 0; k < kc; k += 2) {
      const uint16_t* bq = b + (k0 + k) / 2 * kPanelCols * kBf16PairDepth;
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {
        const __m512i v = _mm512_load_si512(bq + 32 * j);
        _mm512_store_ps(block + k * kPanelCols + 16 * j, bf16_even(v));
        if (k + 1 < kc) _mm512_store_ps(block + (k + 1) * kPanelCols + 16 * j, bf16_odd(v));
      }
    }
  } else {
    for (int64_t k = 0; k < kc; ++k)
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j)
        _mm512_store_ps(block + k * kPanelCols + 16 * j, f16_row(b + (k0 + k) * kPanelCols + 16 * j));
  }
}

// The lines [first, first + count) of the weight stream a tile asks L2 for while it computes
// (the next block's, so its widening does not wait on DRAM: the hardware prefetchers stop
// following the stream during the long compute phases between widenings).
struct StreamPrefetch {
  const char* base = nullptr;
  int64_t count = 0;
};

// The A rows [m_first, m_end) of a blocked call: row m at a + (m - m_first) * lda.
struct RowsA {
  const float* a = nullptr;
  int64_t lda = 0, m_first = 0, m_end = 0;
};

template <int MR>
void block_tile(const W16F32Problem& p, const RowsA& rows, int64_t m0, int64_t panel,
                const float* block, int64_t k0, int64_t kc, StreamPrefetch pf) {
  const int64_t lda = rows.lda;
  const float* a = rows.a + (m0 - rows.m_first) * lda + k0;
  __m512 s[MR][4];
  if (k0 == 0) {
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) s[r][j] = _mm512_setzero_ps();
  } else {
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      const int64_t n0 = panel * kPanelCols + 16 * j;
      const __mmask16 mask = n0 < p.N ? cols_mask(p.N - n0) : 0;
#pragma GCC unroll 6
      for (int r = 0; r < MR; ++r) s[r][j] = _mm512_maskz_loadu_ps(mask, p.y + (m0 + r) * p.ldy + n0);
    }
  }
  // The next tile's A rows come from L2 (or further) as separate strided streams the hardware
  // prefetchers follow poorly: one line of each is asked for every 16 k.
  const float* next = a + MR * lda;
  const int next_rows = static_cast<int>(std::min<int64_t>(MR, rows.m_end - m0 - MR));
  for (int64_t k = 0; k < kc; ++k) {
    if (k < pf.count) _mm_prefetch(pf.base + 64 * k, _MM_HINT_T1);
    if (k % 16 == 0)
      for (int r = 0; r < next_rows; ++r)
        _mm_prefetch(reinterpret_cast<const char*>(next + r * lda + k), _MM_HINT_T0);
    const float* bk = block + k * kPanelCols;
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) fma_rows<MR>(_mm512_load_ps(bk + 16 * j), j, a, lda, k, s);
  }
  store_rows<MR>(p, m0, panel, k0 + kc < p.K, s);
}

template <bool kBf16>
void run(const W16F32Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
         int64_t panel_end) {
  using Direct = void (*)(const W16F32Problem&, int64_t, int64_t);
  constexpr Direct kDirect[] = {direct_tile<kBf16, 1>, direct_tile<kBf16, 2>, direct_tile<kBf16, 3>,
                                direct_tile<kBf16, 4>};
  using Block = void (*)(const W16F32Problem&, const RowsA&, int64_t, int64_t, const float*,
                         int64_t, int64_t, StreamPrefetch);
  constexpr Block kBlock[] = {block_tile<1>, block_tile<2>, block_tile<3>,
                              block_tile<4>, block_tile<5>, block_tile<6>};
  if (m_end - m_begin < kMinBlockRows || p.K == 0) {
    // Rows are walked inside each panel, so the panel stays in L2 while the A rows stream past.
    for (int64_t panel = panel_begin; panel < panel_end; ++panel) {
      int64_t m = m_begin;
      for (; m + kDirectRows <= m_end; m += kDirectRows) kDirect[kDirectRows - 1](p, m, panel);
      if (m < m_end) kDirect[m_end - m - 1](p, m, panel);
    }
    return;
  }
  auto* block = static_cast<float*>(
      kernel_scratch::reserve(kernel_scratch::half_b, kBlockDepth * kPanelCols * sizeof(float)));
  // A's rows are read once per panel. At a row stride of a multiple of 4 KB (K = 1024, 4096,
  // ...) a tile's rows share L1 sets with each other and with the widened block and evict
  // them; with several panels to amortise it, the rows are copied once at a stride one line
  // past a multiple of 64 bytes, which spreads them over the sets. Values are only moved.
  RowsA rows{p.a + m_begin * p.lda, p.lda, m_begin, m_end};
  if (panel_end - panel_begin >= 4) {
    const int64_t ld = (p.K + 15) / 16 * 16 + 16;
    auto* copy = static_cast<float*>(kernel_scratch::reserve(
        kernel_scratch::half_a, static_cast<size_t>((m_end - m_begin) * ld) * sizeof(float)));
    for (int64_t m = m_begin; m < m_end; ++m)
      std::memcpy(copy + (m - m_begin) * ld, p.a + m * p.lda, static_cast<size_t>(p.K) * sizeof(float));
    rows.a = copy;
    rows.lda = ld;
  }
  for (int64_t panel = panel_begin; panel < panel_end; ++panel) {
    const uint16_t* b = p.b_panels + panel * kPanelCols * p.KP;
    for (int64_t k0 = 0; k0 < p.K; k0 += kBlockDepth) {
      const int64_t kc = std::min(kBlockDepth, p.K - k0);
      widen_block<kBf16>(b, k0, kc, block);
      // The next block's bytes follow this one's in memory (the next panel's first block after
      // a panel's last), kc * 64 values: shared out over this block's tiles, a line per k.
      const char* next = reinterpret_cast<const char*>(b + (k0 + kc) * kPanelCols);
      const int64_t lines = kc * kPanelCols * 2 / 64;
      const int64_t tiles = (m_end - m_begin + kBlockRows - 1) / kBlockRows;
      const int64_t per_tile = std::min(kc, (lines + tiles - 1) / tiles);
      int64_t m = m_begin, t = 0;
      auto share = [&](int64_t tile) {
        const int64_t first = std::min(lines, tile * per_tile);
        return StreamPrefetch{next + 64 * first, std::min(per_tile, lines - first)};
      };
      for (; m + kBlockRows <= m_end; m += kBlockRows, ++t)
        kBlock[kBlockRows - 1](p, rows, m, panel, block, k0, kc, share(t));
      if (m < m_end) kBlock[m_end - m - 1](p, rows, m, panel, block, k0, kc, share(t));
    }
  }
}

}  // namespace

void wf16f32(const W16F32Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
             int64_t panel_end) {
  run<false>(p, m_begin, m_end, panel_begin, panel_end);
}
void wbf16f32(const W16F32Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
              int64_t panel_end) {
  run<true>(p, m_begin, m_end, panel_begin, panel_end);
}

}  // namespace avx512vnni
}  // namespace lowbit
