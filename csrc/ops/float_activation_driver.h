// The pieces the drivers of the float-activation GEMMs share (linear_weight_only: w8f32;
// linear_half: wf16f32 / wbf16f32): the NaN/Inf checks of the bias and activation rows, and the split of
// one call over output panels (and rows, when there are few panels) with row boundaries on the
// kernel's row step. Every element is computed whole by one kernel call, so results never
// depend on the split. ISA-free code (compiled with the drivers).
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <stdexcept>

#include "dispatch/kernel_table.h"
#include "runtime/thread_pool.h"

namespace lowbit {

// Throws std::invalid_argument when the bias (N values, or null) holds NaN or Inf.
inline void require_finite_bias(const float* bias, int64_t N) {
  if (bias != nullptr)
    for (int64_t n = 0; n < N; ++n)
      if (!std::isfinite(bias[n])) throw std::invalid_argument("bias holds NaN or Inf values");
}

// Throws std::invalid_argument when an x row holds NaN or Inf (a float kernel would only
// propagate them; every other linear refuses them too).
inline void require_finite_rows(const KernelTable& k, const float* x, int64_t M, int64_t K,
                                int64_t ldx) {
  std::atomic<bool> finite{true};
  parallel_rows(M, K, 262144.0, [&](int64_t m0, int64_t m1) {
    float lo, hi;
    for (int64_t m = m0; m < m1 && K > 0; ++m)
      if (!k.min_max(x + m * ldx, K, &lo, &hi)) finite.store(false, std::memory_order_relaxed);
  });
  if (!finite.load()) throw std::invalid_argument("input holds NaN or Inf values");
}

// run(m0, m1, panel0, panel1) over M rows x `panels` panels: one call on one thread for small
// problems; else panels first (each streams its weights once), rows too when there are few
// panels, row boundaries on multiples of `mr` (the last task takes the rest).
template <typename Run>
void split_panels_and_rows(int64_t M, int64_t N, int64_t K, int64_t panels, int64_t mr, Run run) {
  const int threads = get_num_threads();
  const double macs = static_cast<double>(M) * N * std::max<int64_t>(K, 1);
  if (threads == 1 || macs < 4e6) {
    run(0, M, 0, panels);
    return;
  }
  const int64_t want = 4LL * threads;
  const int64_t col_tasks = std::min(panels, want);
  const int64_t row_tasks = std::max<int64_t>(1, std::min<int64_t>(M / 8, want / col_tasks));
  parallel_for(col_tasks * row_tasks, [&](int64_t t) {
    const int64_t ct = t % col_tasks, rt = t / col_tasks;
    const int64_t p0 = panels * ct / col_tasks, p1 = panels * (ct + 1) / col_tasks;
    const int64_t m0 = std::min(M, M * rt / row_tasks / mr * mr);
    const int64_t m1 = rt + 1 == row_tasks ? M : std::min(M, M * (rt + 1) / row_tasks / mr * mr);
    if (p0 < p1 && m0 < m1) run(m0, m1, p0, p1);
  });
}

}  // namespace lowbit
