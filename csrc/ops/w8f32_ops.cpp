// Driver of the weight-only int8 linear (linear_weight_only) on the w8f32 GEMM: float32 activations
// against a packed int8 weight (no activation quantization), split over output panels, each element
// computed whole by one kernel call so results never depend on the split.
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "dispatch/kernel_table.h"
#include "ops/float_activation_driver.h"
#include "kernels/kernel_api.h"
#include "lowbit/lowbit.h"

namespace lowbit {

void linear_weight_only(const float* x, int64_t M, int64_t ldx, const PackedMatrix& b,
                        const float* col_scale, const float* bias, float* y, int64_t ldy) {
  if (M < 0) throw std::invalid_argument("negative dimension");
  const int64_t N = b.out_features(), K = b.in_features();
  require_finite_bias(bias, N);
  if (M == 0 || N == 0) return;
  const KernelTable& k = kernels();
  require_finite_rows(k, x, M, K, ldx);

  W8F32Problem p;
  p.M = M;
  p.N = N;
  p.K = K;
  p.KP = b.padded_depth();
  p.a = x;
  p.lda = ldx;
  p.b_panels = b.panels();
  p.col_zero = b.col_zero();
  p.b_symmetric = b.symmetric();
  p.col_scale = col_scale;
  p.bias = bias;
  p.y = y;
  p.ldy = ldy;
  const int64_t panels = b.padded_cols() / kPanelCols;
  split_panels_and_rows(M, N, K, panels, k.w8f32.mr, [&](int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
    k.w8f32.run(p, m0, m1, p0, p1);
  });
}

}  // namespace lowbit
