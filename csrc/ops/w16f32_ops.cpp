// Driver of the 16-bit float weight linears (linear_half: the wf16f32 and wbf16f32 GEMMs): float32
// activations against a packed float16 or bfloat16 weight, split over output panels (and rows
// when there are few panels), each element computed whole by one kernel call so results never
// depend on the split.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <stdexcept>

#include "dispatch/kernel_table.h"
#include "kernels/kernel_api.h"
#include "lowbit/lowbit.h"
#include "runtime/thread_pool.h"

namespace lowbit {

void linear_half(const float* x, int64_t M, int64_t ldx, const PackedHalfMatrix& w,
                 const float* bias, float* y, int64_t ldy) {
  if (M < 0) throw std::invalid_argument("negative dimension");
  const int64_t N = w.out_features(), K = w.in_features();
  if (bias != nullptr)
    for (int64_t n = 0; n < N; ++n)
      if (!std::isfinite(bias[n])) throw std::invalid_argument("bias holds NaN or Inf values");
  if (M == 0 || N == 0) return;
  const KernelTable& k = kernels();
  // NaN/Inf are refused as in every other linear (a float kernel would only propagate them).
  std::atomic<bool> finite{true};
  parallel_rows(M, K, 262144.0, [&](int64_t m0, int64_t m1) {
    float lo, hi;
    for (int64_t m = m0; m < m1 && K > 0; ++m)
      if (!k.min_max(x + m * ldx, K, &lo, &hi)) finite.store(false, std::memory_order_relaxed);
  });
  if (!finite.load()) throw std::invalid_argument("input holds NaN or Inf values");

  W16F32Problem p;
  p.M = M;
  p.N = N;
  p.K = K;
  p.KP = w.padded_depth();
  p.a = x;
  p.lda = ldx;
  p.b_panels = w.panels();
  p.bias = bias;
  p.y = y;
  p.ldy = ldy;
  const GemmEntry<W16F32Fn>& entry = w.type() == HalfType::bfloat16 ? k.wbf16f32 : k.wf16f32;
  const int threads = get_num_threads();
  const int64_t panels = w.panels_count();
  const double macs = static_cast<double>(M) * N * std::max<int64_t>(K, 1);
  if (threads == 1 || macs < 4e6) {
    entry.run(p, 0, M, 0, panels);
    return;
  }
  // Panels first (each streams its weights once); rows too when there are few panels.
  const int64_t want = 4LL * threads;
  const int64_t col_tasks = std::min(panels, want);
  const int64_t row_tasks = std::max<int64_t>(1, std::min<int64_t>(M / 8, want / col_tasks));
  const int64_t mr = entry.mr;
  parallel_for(col_tasks * row_tasks, [&](int64_t t) {
    const int64_t ct = t % col_tasks, rt = t / col_tasks;
    const int64_t p0 = panels * ct / col_tasks, p1 = panels * (ct + 1) / col_tasks;
    // Row boundaries on multiples of the kernel's row step (the last task takes the rest).
    const int64_t m0 = std::min(M, M * rt / row_tasks / mr * mr);
    const int64_t m1 = rt + 1 == row_tasks ? M : std::min(M, M * (rt + 1) / row_tasks / mr * mr);
    if (p0 < p1 && m0 < m1) entry.run(p, m0, m1, p0, p1);
  });
}

}  // namespace lowbit
