// Driver of the 16-bit float weight linears (linear_half: the wf16f32 and wbf16f32 GEMMs): float32
// activations against a packed float16 or bfloat16 weight, split over output panels (and rows
// when there are few panels), each element computed whole by one kernel call so results never
// depend on the split.
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "dispatch/kernel_table.h"
#include "ops/float_activation_driver.h"
#include "kernels/kernel_api.h"
#include "lowbit/lowbit.h"

namespace lowbit {

void linear_half(const float* x, int64_t M, int64_t ldx, const PackedHalfMatrix& w,
                 const float* bias, float* y, int64_t ldy) {
  if (M < 0) throw std::invalid_argument("negative dimension");
  const int64_t N = w.out_features(), K = w.in_features();
  require_finite_bias(bias, N);
  if (M == 0 || N == 0) return;
  const KernelTable& k = kernels();
  require_finite_rows(k, x, M, K, ldx);

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
  split_panels_and_rows(M, N, K, w.panels_count(), entry.mr,
                        [&](int64_t m0, int64_t m1, int64_t p0, int64_t p1) { entry.run(p, m0, m1, p0, p1); });
}

}  // namespace lowbit
