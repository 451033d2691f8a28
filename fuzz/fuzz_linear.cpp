// The fused linears: int8 `linear` and `linear_static` (int8 or uint8 weights, per-column zero
// points, bias or not)
// and 4-bit `linear_int4` in both modes (w4a8, weight_only) with random group sizes, including
// ones that are not a multiple of 8 and a short last group. Every available ISA must give the
// scalar path's float bits exactly, or every path must throw (NaN/Inf in x or bias).
#include <algorithm>

#include "fuzz_common.h"

namespace {

// x values: mostly modest, sometimes special (ties, huge, subnormal, NaN, Inf).
std::vector<float> activations(fuzz::Input& in, int64_t n, bool special) {
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = special && in.range(0, 7) == 0 ? in.special_float() : in.normal_float();
  return x;
}

std::vector<float> positive_scales(fuzz::Input& in, int64_t n) {
  std::vector<float> s(static_cast<size_t>(n));
  for (auto& v : s) v = in.range(0, 15) == 0 ? 1e-38f : 1e-4f + std::fabs(in.normal_float()) / 64.0f;
  return s;
}

void fuzz_int8(fuzz::Input& in) {
  const int64_t M = in.range(0, 12), K = in.range(0, 300), N = in.range(0, 140);
  const int64_t ldx = K + in.range(0, 3), ldy = N + in.range(0, 3);
  const bool uint8_weights = in.flag(), asymmetric = in.flag();
  std::vector<uint8_t> w(static_cast<size_t>(N * K));
  for (auto& v : w) v = in.take<uint8_t>();
  std::vector<int32_t> zero(static_cast<size_t>(N));
  for (auto& v : zero) v = asymmetric ? (uint8_weights ? in.take<uint8_t>() : in.take<int8_t>()) : (uint8_weights ? 128 : 0);
  const auto type = uint8_weights ? lowbit::ElemType::uint8 : lowbit::ElemType::int8;
  const auto packed = lowbit::PackedMatrix::pack(w.data(), type, K, N, 1, K, zero.data(), N);
  const std::vector<float> x = activations(in, M * ldx, in.flag());
  const std::vector<float> scale = positive_scales(in, N);
  std::vector<float> bias = activations(in, N, in.flag());
  const float* b = in.flag() ? bias.data() : nullptr;
  fuzz::same_on_every_isa<float>(static_cast<size_t>(M * ldy), -3.0f, [&](float* y) {
    lowbit::linear(x.data(), M, ldx, *packed, scale.data(), b, y, ldy);
  }, "linear differs from the scalar path");
  // The static-activation linear on the same weights: frozen scale (sometimes zero, negative or
  // not finite: every path must then throw) and zero point (sometimes out of its type's range).
  const auto act_type = in.flag() ? lowbit::QType::int8 : lowbit::QType::uint8;
  const float in_scale = in.range(0, 7) == 0 ? in.special_float() : 1e-3f + std::fabs(in.normal_float()) / 16.0f;
  const int32_t in_zero = in.range(-140, 270);
  fuzz::same_on_every_isa<float>(static_cast<size_t>(M * ldy), -3.0f, [&](float* y) {
    lowbit::linear_static(x.data(), M, ldx, *packed, in_scale, in_zero, act_type, scale.data(), b, y, ldy);
  }, "linear_static differs from the scalar path");
}

void fuzz_int4(fuzz::Input& in) {
  const int64_t M = in.range(0, 9), N = in.range(0, 140), K = 2 * in.range(0, 160);
  const int64_t group = K == 0 ? 2 * in.range(1, 8) : 2 * in.range(1, K / 2);  // any even size <= K
  const int64_t G = K == 0 ? 0 : (K + group - 1) / group;
  const int64_t ldx = K + in.range(0, 3), ldy = N + in.range(0, 3);
  std::vector<uint8_t> u(static_cast<size_t>(N * K)), zero(static_cast<size_t>(N * G));
  for (auto& v : u) v = in.take<uint8_t>() & 15;
  for (auto& v : zero) v = in.take<uint8_t>() & 15;
  const std::vector<float> scale = positive_scales(in, N * G);
  const bool symmetric = in.flag();
  const auto packed = lowbit::PackedInt4Matrix::pack(u.data(), N, K, group, scale.data(),
                                                     symmetric ? nullptr : zero.data());
  const std::vector<float> x = activations(in, M * ldx, in.flag());
  std::vector<float> bias = activations(in, N, in.flag());
  const float* b = in.flag() ? bias.data() : nullptr;
  for (auto mode : {lowbit::Int4Compute::w4a8, lowbit::Int4Compute::weight_only})
    fuzz::same_on_every_isa<float>(static_cast<size_t>(M * ldy), -3.0f, [&](float* y) {
      lowbit::linear_int4(x.data(), M, ldx, *packed, mode, b, y, ldy);
    }, mode == lowbit::Int4Compute::w4a8 ? "linear_int4 w4a8 differs from the scalar path"
                                         : "linear_int4 weight_only differs from the scalar path");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  if (in.flag())
    fuzz_int8(in);
  else
    fuzz_int4(in);
  return 0;
}
