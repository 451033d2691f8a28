// Drivers of the w8a8 GEMM (matmul_integer, matmul_integer_unpacked, linear, linear_static):
// prepare the A side (uint8 rows padded to 4, row sums, effective zero points), split the output
// over threads and call the active ISA's kernel. Every output element is computed whole (full K) by
// one kernel call, so results never depend on the split.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "dispatch/kernel_table.h"
#include "kernels/kernel_api.h"
#include "lowbit/lowbit.h"
#include "packed/pack_panels.h"
#include "runtime/aligned_buffer.h"
#include "runtime/thread_pool.h"

namespace lowbit {
namespace {

// Below this much work a second thread costs more to wake than it saves.
constexpr double kMinParallelMacs = 6e6;

void run_w8a8(const W8A8Problem& p) {
  const KernelTable& k = kernels();
  const int64_t panels = round_up(p.N, kPanelCols) / kPanelCols;
  if (p.M == 0 || panels == 0) return;
  const int threads = get_num_threads();
  const double macs = static_cast<double>(p.M) * p.N * std::max<int64_t>(p.K, 1);
  if (threads == 1 || macs < kMinParallelMacs) {
    k.w8a8.run(p, 0, p.M, 0, panels);
    return;
  }
  // Row tasks are whole multiples of the kernel's row step, and at least 4 steps (24 rows for
  // a 6-row kernel) so each still reuses its panel across several row blocks.
  const int64_t mr = k.w8a8.mr, row_block = std::max<int64_t>(4 * mr, 24);
  // Enough tasks for load balance on a noisy machine, but each still streams a whole panel.
  const int64_t want = 4LL * threads;
  int64_t col_tasks = std::min(panels, want);
  int64_t row_tasks = 1;
  if (col_tasks < want && p.M > row_block)
    row_tasks = std::min((p.M + row_block - 1) / row_block, (want + col_tasks - 1) / col_tasks);
  const int64_t rows_per_task = round_up((p.M + row_tasks - 1) / row_tasks, mr);
  row_tasks = (p.M + rows_per_task - 1) / rows_per_task;
  parallel_for(col_tasks * row_tasks, [&](int64_t t) {
    const int64_t ct = t % col_tasks, rt = t / col_tasks;
    const int64_t p0 = panels * ct / col_tasks, p1 = panels * (ct + 1) / col_tasks;
    const int64_t m0 = rt * rows_per_task, m1 = std::min(p.M, m0 + rows_per_task);
    if (p0 < p1 && m0 < m1) k.w8a8.run(p, m0, m1, p0, p1);
  });
}

// Per-thread scratch so concurrent callers never share buffers.
struct Scratch {
  ScratchBuffer a_rows, row_data;
};
Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

}  // namespace

namespace {

// The A side of an integer GEMM: rows as the kernels take them (uint8, K padded to KP with
// zeros; int8 A stored as A + 128, i.e. A ^ 0x80), their sums when B has zero points, and the
// effective zero points. uint8 A with K == KP is used in place.
struct ARows {
  const uint8_t* a;
  int64_t lda;
  const int32_t* row_sum;
  const int32_t* row_zero;
};

void check_a_operand(ElemType a_type, int64_t M, int64_t K, const int32_t* a_zero_point,
                     int64_t a_zero_point_count) {
  if (M < 0 || K < 0) throw std::invalid_argument("negative dimension");
  if (a_type == ElemType::int32) throw std::invalid_argument("A must be int8 or uint8");
  if (a_zero_point_count != 0 && a_zero_point_count != 1 && a_zero_point_count != M)
    throw std::invalid_argument("a_zero_point must have 1 or M (=" + std::to_string(M) +
                                ") entries, got " + std::to_string(a_zero_point_count));
  const int32_t lo = a_type == ElemType::uint8 ? 0 : -128, hi = a_type == ElemType::uint8 ? 255 : 127;
  for (int64_t i = 0; i < a_zero_point_count; ++i)
    if (a_zero_point[i] < lo || a_zero_point[i] > hi)
      throw std::invalid_argument("a_zero_point " + std::to_string(a_zero_point[i]) +
                                  " is outside the range of A's type");
}

ARows prepare_a(const void* a, ElemType a_type, int64_t M, int64_t K, int64_t KP, int64_t lda,
                const int32_t* a_zero_point, int64_t a_zero_point_count, bool need_row_sums) {
  const int32_t shift = a_type == ElemType::int8 ? 128 : 0;  // int8 A is stored as A + 128
  Scratch& s = scratch();
  auto* row_data = static_cast<int32_t*>(s.row_data.reserve(static_cast<size_t>(2 * M) * sizeof(int32_t)));
  int32_t* row_sum = row_data;
  int32_t* row_zero = row_data + M;
  const auto* a8 = static_cast<const uint8_t*>(a);
  const bool in_place = a_type == ElemType::uint8 && KP == K;
  uint8_t* rows = in_place ? nullptr : static_cast<uint8_t*>(s.a_rows.reserve(static_cast<size_t>(M * KP)));
  const KernelTable& k = kernels();
  auto prepare_rows = [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      const uint8_t* src = a8 + m * lda;
      const uint8_t* row = src;
      if (!in_place) {
        uint8_t* dst = rows + m * KP;
        for (int64_t i = 0; i < K; ++i) dst[i] = static_cast<uint8_t>(src[i] ^ static_cast<uint8_t>(shift));
        std::memset(dst + K, 0, static_cast<size_t>(KP - K));
        row = dst;
      }
      // Row sums only enter the epilogue through B's zero points (col_zero * row_sum).
      row_sum[m] = need_row_sums ? static_cast<int32_t>(static_cast<uint32_t>(k.sum_bytes(row, K))) : 0;
      const int32_t zp = a_zero_point_count == 0 ? 0 : a_zero_point[a_zero_point_count == 1 ? 0 : m];
      row_zero[m] = zp + shift;
    }
  };
  parallel_rows(M, K, 262144.0, prepare_rows);
  return {in_place ? a8 : rows, in_place ? lda : KP, row_sum, row_zero};
}

W8A8Problem int32_problem(const ARows& a, int64_t M, int64_t K, int64_t KP, int32_t* c, int64_t ldc) {
  W8A8Problem p;
  p.M = M;
  p.K = K;
  p.KP = KP;
  p.a = a.a;
  p.lda = a.lda;
  p.row_sum = a.row_sum;
  p.row_zero = a.row_zero;
  p.c_i32 = c;
  p.ldc = ldc;
  return p;
}

}  // namespace

void matmul_integer(const void* a, ElemType a_type, int64_t M, int64_t K, int64_t lda,
                    const int32_t* a_zero_point, int64_t a_zero_point_count,
                    const PackedMatrix& b, int32_t* c, int64_t ldc) {
  check_a_operand(a_type, M, K, a_zero_point, a_zero_point_count);
  if (K != b.in_features())
    throw std::invalid_argument("inner dimensions differ: A has K=" + std::to_string(K) +
                                ", B has K=" + std::to_string(b.in_features()));
  if (M == 0 || b.out_features() == 0) return;
  const ARows rows = prepare_a(a, a_type, M, K, b.padded_depth(), lda, a_zero_point,
                               a_zero_point_count, !b.symmetric());
  W8A8Problem p = int32_problem(rows, M, K, b.padded_depth(), c, ldc);
  p.N = b.out_features();
  p.b_panels = b.panels();
  p.col_zero = b.col_zero();
  p.col_corr = b.col_corr();
  p.b_symmetric = b.symmetric();
  run_w8a8(p);
}

void matmul_integer_unpacked(const void* a, ElemType a_type, int64_t M, int64_t K, int64_t lda,
                             const int32_t* a_zero_point, int64_t a_zero_point_count,
                             const void* b, ElemType b_type, int64_t N, int64_t ldb,
                             const int32_t* b_zero_point, int64_t b_zero_point_count, int32_t* c,
                             int64_t ldc) {
  check_a_operand(a_type, M, K, a_zero_point, a_zero_point_count);
  check_b_operand(b_type, K, N, b_zero_point, b_zero_point_count);
  if (ldb < N) throw std::invalid_argument("B's row stride is below its width");
  if (M == 0 || N == 0) return;
  const int64_t KP = checked_round_up(K, kGroupDepth);
  const int32_t b_shift = b_type == ElemType::uint8 ? 128 : 0;
  bool b_symmetric = true;
  for (int64_t i = 0; i < b_zero_point_count; ++i) b_symmetric &= b_zero_point[i] == b_shift;
  if (b_zero_point_count == 0) b_symmetric = b_shift == 0;
  const ARows rows = prepare_a(a, a_type, M, K, KP, lda, a_zero_point, a_zero_point_count, !b_symmetric);
  const W8A8Problem base = int32_problem(rows, M, K, KP, c, ldc);
  const KernelTable& k = kernels();
  if (k.w8a8_plain_b.run != nullptr && M <= k.w8a8_plain_b.max_rows) {
    // A few rows: B is read in place, once, by the plain-B kernel (column tasks of whole 64s).
    thread_local ScratchBuffer zero_buffer;
    auto* col_zero = static_cast<int32_t*>(zero_buffer.reserve(static_cast<size_t>(N) * sizeof(int32_t)));
    for (int64_t n = 0; n < N; ++n)
      col_zero[n] = (b_zero_point_count == 0 ? 0 : b_zero_point[b_zero_point_count == 1 ? 0 : n]) - b_shift;
    W8A8Problem p = base;
    p.N = N;
    p.col_zero = col_zero;
    p.b_symmetric = b_symmetric;
    const auto* b8 = static_cast<const uint8_t*>(b);
    const uint8_t flip = b_type == ElemType::uint8 ? 0x80 : 0x00;
    const int64_t groups = (N + 63) / 64;
    const double macs = static_cast<double>(M) * N * std::max<int64_t>(K, 1);
    const int64_t tasks = get_num_threads() == 1 || macs < kMinParallelMacs
                              ? 1 : std::min<int64_t>(groups, get_num_threads());
    auto task = [&](int64_t t) {
      const int64_t n0 = groups * t / tasks * 64, n1 = std::min(N, groups * (t + 1) / tasks * 64);
      if (n0 < n1) k.w8a8_plain_b.run(p, b8, ldb, flip, 0, M, n0, n1);
    };
    if (tasks == 1)
      task(0);
    else
      parallel_for(tasks, task);
    return;
  }
  // Each task packs a chunk of panels of B (four: 256 columns, runs of 256 bytes per row of B;
  // sixteen above kUnpackedMaxRows rows, so the kernel's own per-call work on A is spread over
  // more columns) into its own scratch, reused from call to call (a fresh packed copy would
  // pay its page faults on every call), and runs the kernel over it: B is read once.
  const int64_t kChunkPanels = M <= kUnpackedMaxRows ? 4 : 16;
  const int64_t kChunkCols = kChunkPanels * kPanelCols;
  const int64_t chunks = (N + kChunkCols - 1) / kChunkCols;
  auto run_chunk = [&](int64_t chunk) {
    const int64_t n0 = chunk * kChunkCols, cols = std::min<int64_t>(kChunkCols, N - n0);
    const int64_t panels = (cols + kPanelCols - 1) / kPanelCols;
    thread_local ScratchBuffer buffer;
    auto* data = static_cast<uint8_t*>(buffer.reserve(static_cast<size_t>(kChunkCols * KP + 2 * kChunkCols * 4)));
    auto* b_panels = reinterpret_cast<int8_t*>(data);
    auto* col_zero = reinterpret_cast<int32_t*>(data + kChunkCols * KP);
    int32_t* col_corr = col_zero + kChunkCols;
    std::fill(col_zero, col_zero + 2 * kChunkCols, 0);
    // The chunk's columns as a B of their own: zero points from column n0 on.
    const int32_t* zp = b_zero_point_count > 1 ? b_zero_point + n0 : b_zero_point;
    pack_panels(static_cast<const uint8_t*>(b) + n0, b_type, K, cols, ldb, 1, zp,
                b_zero_point_count > 1 ? cols : b_zero_point_count, KP, 0, panels, b_panels, col_zero,
                col_corr, nullptr, false);
    W8A8Problem p = base;
    p.N = cols;
    p.b_panels = b_panels;
    p.col_zero = col_zero;
    p.col_corr = col_corr;
    p.b_symmetric = b_symmetric;
    p.c_i32 = c + n0;
    k.w8a8.run(p, 0, M, 0, panels);
  };
  const double macs = static_cast<double>(M) * N * std::max<int64_t>(K, 1);
  if (get_num_threads() == 1 || chunks == 1 || macs < kMinParallelMacs) {
    for (int64_t chunk = 0; chunk < chunks; ++chunk) run_chunk(chunk);
  } else {
    parallel_for(chunks, run_chunk);
  }
}

namespace {

// linear() and linear_static() refuse what an exact int32 accumulator or the epilogue cannot take.
void check_linear_args(int64_t M, const PackedMatrix& b, const float* bias) {
  if (M < 0) throw std::invalid_argument("negative dimension");
  const int64_t K = b.in_features();
  const int64_t max_depth = b.symmetric() ? kLinearMaxDepth : kLinearMaxDepthAsymmetric;
  if (K > max_depth)
    throw std::invalid_argument("in_features=" + std::to_string(K) + " exceeds " +
                                std::to_string(max_depth) + ", the largest depth with an exact " +
                                "int32 accumulator for " +
                                (b.symmetric() ? "symmetric" : "asymmetric") + " weights");
  if (bias != nullptr)
    for (int64_t n = 0; n < b.out_features(); ++n)
      if (!std::isfinite(bias[n])) throw std::invalid_argument("bias holds NaN or Inf values");
}

// Quantizes the rows of x with quantize_row (m, source row, padded destination row) -> finite,
// in parallel when there is enough work, then runs the GEMM with the float epilogue.
template <typename QuantizeRow>
void quantize_rows_and_gemm(const float* x, int64_t M, int64_t ldx, const PackedMatrix& b,
                            const float* col_scale, const float* bias, float* y, int64_t ldy,
                            const QuantizeRow& quantize_row) {
  const int64_t K = b.in_features(), KP = b.padded_depth();
  Scratch& s = scratch();
  auto* rows = static_cast<uint8_t*>(s.a_rows.reserve(static_cast<size_t>(M * std::max<int64_t>(KP, 1))));
  auto* row_data = static_cast<int32_t*>(s.row_data.reserve(static_cast<size_t>(3 * M) * sizeof(int32_t)));
  int32_t* row_sum = row_data;
  int32_t* row_zero = row_data + M;
  auto* row_scale = reinterpret_cast<float*>(row_data + 2 * M);

  std::atomic<bool> finite{true};
  auto quantize_rows = [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m)
      if (!quantize_row(x + m * ldx, rows + m * KP, &row_scale[m], &row_zero[m], &row_sum[m]))
        finite.store(false, std::memory_order_relaxed);
  };
  parallel_rows(M, K, 65536.0, quantize_rows);
  if (!finite.load())
    throw std::invalid_argument("input holds NaN or Inf values; they cannot be quantized");

  W8A8Problem p;
  p.M = M;
  p.N = b.out_features();
  p.K = K;
  p.KP = KP;
  p.a = rows;
  p.lda = KP;
  p.row_sum = row_sum;
  p.row_zero = row_zero;
  p.b_panels = b.panels();
  p.col_zero = b.col_zero();
  p.col_corr = b.col_corr();
  p.b_symmetric = b.symmetric();
  p.y_f32 = y;
  p.ldc = ldy;
  p.row_scale = row_scale;
  p.col_scale = col_scale;
  p.bias = bias;
  run_w8a8(p);
}

}  // namespace

void linear(const float* x, int64_t M, int64_t ldx, const PackedMatrix& b, const float* col_scale,
            const float* bias, float* y, int64_t ldy) {
  check_linear_args(M, b, bias);
  if (M == 0 || b.out_features() == 0) return;
  const KernelTable& k = kernels();
  const int64_t K = b.in_features(), KP = b.padded_depth();
  quantize_rows_and_gemm(x, M, ldx, b, col_scale, bias, y, ldy,
                         [&](const float* src, uint8_t* dst, float* scale, int32_t* zero, int32_t* sum) {
                           return k.quantize_row_u8(src, K, KP, dst, scale, zero, sum);
                         });
}

void linear_static(const float* x, int64_t M, int64_t ldx, const PackedMatrix& b, float in_scale,
                   int32_t in_zero, QType in_type, const float* col_scale, const float* bias,
                   float* y, int64_t ldy) {
  check_linear_args(M, b, bias);
  if (in_type != QType::uint8 && in_type != QType::int8)
    throw std::invalid_argument("static activations are uint8 or int8");
  if (!(std::isfinite(in_scale) && in_scale > 0.0f))
    throw std::invalid_argument("input scale must be finite and > 0");
  if (in_zero < qtype_min(in_type) || in_zero > qtype_max(in_type))
    throw std::invalid_argument("input zero point " + std::to_string(in_zero) +
                                " is outside the range of the activation type");
  if (M == 0 || b.out_features() == 0) return;
  const KernelTable& k = kernels();
  const int64_t K = b.in_features(), KP = b.padded_depth();
  // The GEMM takes uint8 rows: int8 activations are quantized straight into uint8 with zero
  // point + 128, which is saturate(round(x / s) + z) + 128 exactly, and acc is unchanged.
  const int32_t zero_u8 = in_zero + (in_type == QType::int8 ? 128 : 0);
  const QuantRun params{&in_scale, &zero_u8, false};
  quantize_rows_and_gemm(x, M, ldx, b, col_scale, bias, y, ldy,
                         [&](const float* src, uint8_t* dst, float* scale, int32_t* zero, int32_t* sum) {
                           if (!k.quantize_run(src, K, params, 0, 255, dst)) return false;
                           std::memset(dst + K, 0, static_cast<size_t>(KP - K));
                           *scale = in_scale;
                           *zero = zero_u8;
                           *sum = static_cast<int32_t>(static_cast<uint32_t>(k.sum_bytes(dst, KP)));
                           return true;
                         });
}

}  // namespace lowbit
