// matmul_integer with random M, K, N, operand types, zero points (per tensor / per row / per
// column, sometimes out of range) and row strides, against an int64 reference reduced modulo
// 2^32, on every available ISA.
#include <algorithm>

#include "fuzz_common.h"

namespace {

struct Operand {
  lowbit::ElemType type;
  int32_t lo, hi;
};

Operand pick_type(fuzz::Input& in) {
  return in.flag() ? Operand{lowbit::ElemType::int8, -128, 127} : Operand{lowbit::ElemType::uint8, 0, 255};
}

int32_t value(const std::vector<uint8_t>& bytes, int64_t i, const Operand& t) {
  return t.type == lowbit::ElemType::int8 ? static_cast<int8_t>(bytes[i]) : bytes[i];
}

// Zero points: none, one, or one per row/column; occasionally one outside the type's range.
std::vector<int32_t> zero_points(fuzz::Input& in, int64_t per, const Operand& t, bool* in_range) {
  const int64_t count = std::vector<int64_t>{0, 1, per}[in.range(0, 2)];
  std::vector<int32_t> z(static_cast<size_t>(count));
  for (auto& v : z) v = static_cast<int32_t>(in.range(t.lo, t.hi));
  if (!z.empty() && in.range(0, 15) == 0) z[in.range(0, count - 1)] = in.flag() ? t.hi + 1 : t.lo - 1;
  *in_range = std::all_of(z.begin(), z.end(), [&](int32_t v) { return v >= t.lo && v <= t.hi; });
  return z;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  const int64_t M = in.range(0, 20), K = in.range(0, 300), N = in.range(0, 140);
  const int64_t lda = K + in.range(0, 5), ldc = N + in.range(0, 3);
  const Operand ta = pick_type(in), tb = pick_type(in);
  const bool extreme = in.flag();  // all values at the ends of the range (wrap and saturation)
  std::vector<uint8_t> a(static_cast<size_t>(M * lda)), b(static_cast<size_t>(K * N));
  for (auto& v : a) v = extreme ? static_cast<uint8_t>(ta.hi) : in.take<uint8_t>();
  for (auto& v : b) v = extreme ? static_cast<uint8_t>(tb.lo) : in.take<uint8_t>();
  bool za_ok = true, zb_ok = true;
  const std::vector<int32_t> za = zero_points(in, M, ta, &za_ok);
  const std::vector<int32_t> zb = zero_points(in, N, tb, &zb_ok);

  std::shared_ptr<lowbit::PackedMatrix> packed;
  try {
    packed = lowbit::PackedMatrix::pack(b.data(), tb.type, K, N, N, 1, zb.data(),
                                        static_cast<int64_t>(zb.size()));
  } catch (const std::invalid_argument&) {
    fuzz::require(!zb_ok, "pack rejected valid zero points");
    return 0;
  }
  fuzz::require(zb_ok, "pack accepted an out-of-range zero point");

  std::vector<int32_t> expected(static_cast<size_t>(M * ldc), -1);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      const int64_t zam = za.empty() ? 0 : za[za.size() == 1 ? 0 : m];
      const int64_t zbn = zb.empty() ? 0 : zb[zb.size() == 1 ? 0 : n];
      int64_t acc = 0;
      for (int64_t k = 0; k < K; ++k)
        acc += (value(a, m * lda + k, ta) - zam) * (value(b, k * N + n, tb) - zbn);
      expected[m * ldc + n] = static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(acc)));
    }
  for (lowbit::Isa isa : lowbit::available_isas()) {
    lowbit::set_active_isa(isa);
    const auto got = fuzz::run<int32_t>(expected.size(), -1, [&](int32_t* c) {
      lowbit::matmul_integer(a.data(), ta.type, M, K, lda, za.data(),
                             static_cast<int64_t>(za.size()), *packed, c, ldc);
    });
    fuzz::require(got.threw == !za_ok, "matmul_integer must throw exactly for a bad a_zero_point");
    if (!got.threw) fuzz::require(fuzz::same_bytes(got.out, expected), "matmul_integer != int64 reference");
  }
  return 0;
}
