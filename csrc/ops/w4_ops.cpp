// Driver of the 4-bit linear (linear_int4) on the w4a8 and w4f32 GEMMs: prepares the A rows (int8
// per-row quantization with group sums for w4a8, a zero-padded float copy for w4f32,
// Int4Compute::weight_only, when groups are not whole octets), splits the output columns over
// threads and calls the active ISA's kernel. Every output element is computed whole by one kernel
// call, so results never depend on the split.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "dispatch/kernel_table.h"
#include "lowbit/lowbit.h"
#include "runtime/aligned_buffer.h"
#include "runtime/thread_pool.h"

namespace lowbit {
namespace {

constexpr double kMinParallelMacs = 4e6;

struct Int4Scratch {
  ScratchBuffer rows, group_sums, scales;
};
Int4Scratch& scratch() {
  thread_local Int4Scratch s;
  return s;
}

// Symmetric int8 quantization of one row: scale = max|x| / 127 (1 for an all-zero row),
// q = clamp(round_half_even(x / scale), -127, 127), laid out in zero-padded groups, with the
// sum of each group's values. False if the row holds NaN or Inf.
bool quantize_row_s8_groups(const KernelTable& k, const float* x, int64_t K, int64_t group,
                            int64_t group_pad, int64_t groups, int8_t* out, int32_t* sums,
                            float* scale) {
  float lo = 0.0f, hi = 0.0f;
  if (K > 0 && !k.min_max(x, K, &lo, &hi)) return false;
  const float amax = std::max(-lo, hi);
  float s = amax / 127.0f;
  if (s == 0.0f) s = 1.0f;
  *scale = s;
  const QuantRun params{scale, nullptr, false};
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t k0 = g * group, len = std::min(group, K - k0);
    int8_t* dst = out + g * group_pad;
    k.quantize_run(x + k0, len, params, -127, 127, reinterpret_cast<uint8_t*>(dst));
    std::memset(dst + len, 0, static_cast<size_t>(group_pad - len));
    int32_t sum = 0;
    for (int64_t i = 0; i < len; ++i) sum += dst[i];
    sums[g] = sum;
  }
  return true;
}

}  // namespace

void linear_int4(const float* x, int64_t M, int64_t ldx, const PackedInt4Matrix& w,
                 Int4Compute mode, const float* bias, float* y, int64_t ldy) {
  if (M < 0) throw std::invalid_argument("negative dimension");
  if (mode != Int4Compute::w4a8 && mode != Int4Compute::weight_only)
    throw std::invalid_argument("unknown 4-bit compute mode");
  const int64_t N = w.out_features(), K = w.in_features(), G = w.groups(), gp = w.group_pad();
  const int64_t group = w.group_size();
  if (bias != nullptr)
    for (int64_t n = 0; n < N; ++n)
      if (!std::isfinite(bias[n])) throw std::invalid_argument("bias holds NaN or Inf values");
  if (M == 0 || N == 0) return;
  const KernelTable& k = kernels();
  Int4Scratch& s = scratch();
  const int64_t row_len = G * gp;

  W4Problem p;
  p.M = M;
  p.N = N;
  p.groups = G;
  p.group_pad = gp;
  p.group_stride = w.group_stride();
  p.panel_stride = w.panel_stride();
  p.w = w.data();
  p.symmetric = w.symmetric();
  p.bias = bias;
  p.y = y;
  p.ldy = ldy;

  std::atomic<bool> finite{true};
  if (mode == Int4Compute::w4a8) {
    auto* rows = static_cast<int8_t*>(s.rows.reserve(static_cast<size_t>(M * std::max<int64_t>(row_len, 1))));
    auto* sums = static_cast<int32_t*>(s.group_sums.reserve(static_cast<size_t>(M * std::max<int64_t>(G, 1)) * sizeof(int32_t)));
    auto* scales = static_cast<float*>(s.scales.reserve(static_cast<size_t>(M) * sizeof(float)));
    parallel_rows(M, K, 65536.0, [&](int64_t m0, int64_t m1) {
      for (int64_t m = m0; m < m1; ++m)
        if (!quantize_row_s8_groups(k, x + m * ldx, K, group, gp, G, rows + m * row_len,
                                    sums + m * G, scales + m))
          finite.store(false, std::memory_order_relaxed);
    });
    p.a_s8 = rows;
    p.a_group_sum = sums;
    p.a_scale = scales;
    p.lda = row_len;
  } else {
    const bool in_place = row_len == K;
    float* rows = in_place ? nullptr
                           : static_cast<float*>(s.rows.reserve(static_cast<size_t>(M * row_len) * sizeof(float)));
    parallel_rows(M, K, 65536.0, [&](int64_t m0, int64_t m1) {
      for (int64_t m = m0; m < m1; ++m) {
        const float* src = x + m * ldx;
        float lo, hi;
        if (K > 0 && !k.min_max(src, K, &lo, &hi)) finite.store(false, std::memory_order_relaxed);
        if (in_place) continue;
        float* dst = rows + m * row_len;
        for (int64_t g = 0; g < G; ++g) {
          const int64_t k0 = g * group, len = std::min(group, K - k0);
          std::memcpy(dst + g * gp, src + k0, static_cast<size_t>(len) * sizeof(float));
          std::memset(dst + g * gp + len, 0, static_cast<size_t>(gp - len) * sizeof(float));
        }
      }
    });
    p.a_f32 = in_place ? x : rows;
    p.lda = in_place ? ldx : row_len;
  }
  if (!finite.load())
    throw std::invalid_argument("input holds NaN or Inf values");

  const W4Fn kernel = mode == Int4Compute::w4a8 ? k.w4a8.run : k.w4f32.run;
  const int64_t panels = w.panels();
  const int threads = get_num_threads();
  const double macs = static_cast<double>(M) * N * std::max<int64_t>(K, 1);
  if (threads == 1 || panels == 1 || macs < kMinParallelMacs) {
    kernel(p, 0, M, 0, panels);
    return;
  }
  const int64_t tasks = std::min<int64_t>(panels, 4LL * threads);
  parallel_for(tasks, [&](int64_t t) {
    const int64_t p0 = panels * t / tasks, p1 = panels * (t + 1) / tasks;
    if (p0 < p1) kernel(p, 0, M, p0, p1);
  });
}

}  // namespace lowbit
