// w8a8 GEMM for a few rows of A straight from a plain, row-major B (matmul_integer's operand as
// the user passed it): no packed copy is written. B is read once, as it lies in memory, and each
// k group (4 rows of B x 64 columns) is interleaved in registers into vpdpbusd's 4-byte words
// (the same unpacks as pack_b_groups, without its final lane transpose), then multiplied into
// every row of A. Column sums come from the same words (vpdpbusd against ones), so the
// zero-point terms need no second pass.
//
// Layout of the sums while they accumulate (L1 scratch, per column block and row): the four
// vectors u[q] of a 64-column group hold, in 128-bit lane L, the columns 16L + 4q + 0..3; the
// lane transpose to natural order is done once, on the finished sums (a permutation commutes
// with the additions). The finished sums go through the shared w8a8 epilogue, so the bits equal
// the packed path's.
//
// Walk: column blocks of kBlockCols; in a block, k groups kUnroll at a time. For each 64-column
// group the kUnroll x 4 interleaved vectors stay in registers while each row's four sum vectors
// are loaded, added to kUnroll times and stored: sum traffic is once per kUnroll groups.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/avx512vnni/w8a8_epilogue_avx512.h"
#include "kernels/isa_kernels.h"
#include "kernels/kernel_scratch.h"

namespace lowbit {
namespace avx512vnni {
namespace {

// Columns per pass over K. Whole rows of B are the fastest walk (a 2-vCPU AMX Xeon, K = N = 4096,
// 1 thread: M = 1 0.92 ms with 4096-column passes, 1.20 ms with 1024, 1.45 ms with 512): the
// reads are then one sequential run per row. Sums of (rows + 1) x 16384 int32 stay in L2.
constexpr int64_t kBlockCols = 16384;  // sums of (rows + 1) x 512 int32: 34 KB at 16 rows (L1)
constexpr int kUnroll = 4;           // k groups per load/store of the sums
constexpr int64_t kPrefetchRows = 16;  // rows of B ahead of the walk

// Group g of 64 columns: 4 rows of B (rows past K read as zero; columns past the mask as zero),
// as stored bytes (b ^ flip), interleaved into u[0..3] (see the file comment).
LOWBIT_INLINE void load_group(const uint8_t* row0, int64_t ldb, int rows,
                              __mmask64 cols, __m512i flip, __m512i u[4]) {
  __m512i r[4];
  for (int i = 0; i < 4; ++i) {
    if (i < rows) {
      const __m512i v = _mm512_xor_si512(_mm512_maskz_loadu_epi8(cols, row0 + i * ldb), flip);
      r[i] = cols == ~__mmask64{0} ? v : _mm512_maskz_mov_epi8(cols, v);
    } else {
      r[i] = _mm512_setzero_si512();
    }
  }
  const __m512i t0 = _mm512_unpacklo_epi8(r[0], r[1]), t1 = _mm512_unpackhi_epi8(r[0], r[1]);
  const __m512i t2 = _mm512_unpacklo_epi8(r[2], r[3]), t3 = _mm512_unpackhi_epi8(r[2], r[3]);
  u[0] = _mm512_unpacklo_epi16(t0, t2);
  u[1] = _mm512_unpackhi_epi16(t0, t2);
  u[2] = _mm512_unpacklo_epi16(t1, t3);
  u[3] = _mm512_unpackhi_epi16(t1, t3);
}

// The four sum vectors of a 64-column group, permuted as u[q] is, into natural column order.
LOWBIT_INLINE void to_columns(const __m512i u[4], __m512i out[4]) {
  const __m512i v0 = _mm512_shuffle_i64x2(u[0], u[1], 0x44), v1 = _mm512_shuffle_i64x2(u[2], u[3], 0x44);
  const __m512i v2 = _mm512_shuffle_i64x2(u[0], u[1], 0xee), v3 = _mm512_shuffle_i64x2(u[2], u[3], 0xee);
  out[0] = _mm512_shuffle_i64x2(v0, v1, 0x88);
  out[1] = _mm512_shuffle_i64x2(v0, v1, 0xdd);
  out[2] = _mm512_shuffle_i64x2(v2, v3, 0x88);
  out[3] = _mm512_shuffle_i64x2(v2, v3, 0xdd);
}

inline int64_t round_up64(int64_t n) { return (n + 63) / 64 * 64; }

inline __mmask64 col_mask(int64_t cols) {
  return cols >= 64 ? ~__mmask64{0} : (__mmask64{1} << cols) - 1;
}

// 4 bytes of A at k = 4g (row padded to KP with zeros), broadcast to every word.
inline __m512i a_word(const uint8_t* row, int64_t g) {
  int32_t w;
  std::memcpy(&w, row + 4 * g, 4);
  return _mm512_set1_epi32(w);
}

// Sums of rows [m0, m1) x columns [n0, n0 + cols) over all of K, into s (row r's 64-column
// group j at s + (r * groups64 + j) * 64; row m1 - m0 holds the column sums), permuted.
template <int U>
LOWBIT_INLINE void step(const W8A8Problem& p, const uint8_t* b, int64_t ldb,
                        int64_t rows_b, int64_t g, int64_t n0, int64_t cols,
                        int64_t m0, int64_t m1, __m512i flip, __m512i* s) {
  const int64_t groups64 = (cols + 63) / 64, R = m1 - m0;
  const __m512i ones = _mm512_set1_epi8(1);
  for (int64_t j = 0; j < groups64; ++j) {
    const __mmask64 mask = col_mask(cols - 64 * j);
    const uint8_t* base = b + 4 * g * ldb + n0 + 64 * j;
    __m512i u[U][4];
    for (int t = 0; t < U; ++t) {
      const int64_t k = 4 * (g + t);
      const int rows = static_cast<int>(std::min<int64_t>(4, rows_b - k));
      load_group(base + 4 * t * ldb, ldb, rows, mask, flip, u[t]);
      if (k + kPrefetchRows < rows_b)
        for (int i = 0; i < 4; ++i) _mm_prefetch(reinterpret_cast<const char*>(base + (4 * t + i + kPrefetchRows) * ldb), _MM_HINT_T0);
    }
    __m512i* cs = s + (R * groups64 + j) * 4;
    for (int q = 0; q < 4; ++q) {
      __m512i v = _mm512_load_si512(cs + q);
      for (int t = 0; t < U; ++t) v = _mm512_dpbusd_epi32(v, ones, u[t][q]);
      _mm512_store_si512(cs + q, v);
    }
    for (int64_t r = 0; r < R; ++r) {
      const uint8_t* arow = p.a + (m0 + r) * p.lda;
      __m512i aw[U];
      for (int t = 0; t < U; ++t) aw[t] = a_word(arow, g + t);
      __m512i* acc = s + (r * groups64 + j) * 4;
      for (int q = 0; q < 4; ++q) {
        __m512i v = _mm512_load_si512(acc + q);
        for (int t = 0; t < U; ++t) v = _mm512_dpbusd_epi32(v, aw[t], u[t][q]);
        _mm512_store_si512(acc + q, v);
      }
    }
  }
}

}  // namespace

void w8a8_plain_b(const W8A8Problem& p, const uint8_t* b, int64_t ldb, uint8_t flip, int64_t m_begin,
                  int64_t m_end, int64_t n_begin, int64_t n_end) {
  const int64_t R = m_end - m_begin;
  if (R <= 0 || n_end <= n_begin) return;
  const __m512i flipv = _mm512_set1_epi8(static_cast<char>(flip));
  const int64_t groups = p.KP / 4;
  // (R + 1) rows of sums for one column block, reused from call to call.
  const int64_t block = std::min(kBlockCols, round_up64(n_end - n_begin));
  auto* scratch = static_cast<__m512i*>(kernel_scratch::reserve(
      kernel_scratch::plain_b_sums, static_cast<size_t>((R + 1) * (block / 16)) * 64));
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kBlockCols) {
    const int64_t cols = std::min(kBlockCols, n_end - n0);
    const int64_t groups64 = (cols + 63) / 64;
    std::memset(static_cast<void*>(scratch), 0, static_cast<size_t>((R + 1) * groups64 * 4) * 64);
    int64_t g = 0;
    for (; g + kUnroll <= groups; g += kUnroll)
      step<kUnroll>(p, b, ldb, p.K, g, n0, cols, m_begin, m_end, flipv, scratch);
    for (; g < groups; ++g) step<1>(p, b, ldb, p.K, g, n0, cols, m_begin, m_end, flipv, scratch);
    // Finished sums: natural column order, the zero-point terms, the shared epilogue.
    for (int64_t j = 0; j < groups64; ++j) {
      __m512i sums[4];
      to_columns(scratch + (R * groups64 + j) * 4, sums);
      w8a8_epilogue::Columns col[4];
      int quarters = 0;
      for (; quarters < 4 && n0 + 64 * j + 16 * quarters < n_end; ++quarters) {
        const int64_t c0 = n0 + 64 * j + 16 * quarters;
        w8a8_epilogue::Columns& c = col[quarters];
        c.mask = n_end - c0 >= 16 ? static_cast<__mmask16>(0xffff)
                                  : static_cast<__mmask16>((1u << (n_end - c0)) - 1u);
        c.col_zero = _mm512_maskz_loadu_epi32(c.mask, p.col_zero + c0);
        // col_corr = column sum - K * col_zero (mod 2^32), as PackedMatrix stores it.
        c.corr = _mm512_sub_epi32(
            sums[quarters], _mm512_mullo_epi32(_mm512_set1_epi32(static_cast<int32_t>(p.K)), c.col_zero));
        c.col_scale = _mm512_setzero_ps();
        c.bias = _mm512_setzero_ps();
      }
      for (int64_t r = 0; r < R; ++r) {
        __m512i acc[4];
        to_columns(scratch + (r * groups64 + j) * 4, acc);
        for (int q = 0; q < quarters; ++q)
          w8a8_epilogue::store(p, m_begin + r, n0 + 64 * j + 16 * q, col[q], acc[q]);
      }
    }
  }
}

}  // namespace avx512vnni
}  // namespace lowbit
