// PackedMatrix::pack and PackedInt4Matrix::pack fed arbitrary bytes and parameters: every call
// either throws std::invalid_argument or succeeds, and a successful pack unpacks to its input.
// Includes zero-strided (broadcast) sources whose packed size cannot be represented: those must
// be rejected before anything is allocated.
#include <algorithm>

#include "fuzz_common.h"

namespace {

constexpr int64_t kHuge[] = {int64_t{1} << 32, int64_t{1} << 40, int64_t{1} << 62,
                             std::numeric_limits<int64_t>::max()};

template <typename Fn>
bool throws_invalid(const Fn& fn) {
  try {
    fn();
  } catch (const std::invalid_argument&) {
    return true;
  }
  return false;
}

void fuzz_int8(fuzz::Input& in) {
  const int type_code = static_cast<int>(in.range(0, 3));  // 2 (int32) and 3 are not B types
  const auto type = static_cast<lowbit::ElemType>(type_code);
  if (in.range(0, 7) == 0) {  // a broadcast source far too large to pack
    const uint8_t one = 1;
    const int64_t K = kHuge[in.range(0, 3)], N = kHuge[in.range(0, 3)];
    fuzz::require(throws_invalid([&] { lowbit::PackedMatrix::pack(&one, type, K, N, 0, 0, nullptr, 0); }),
                  "an unrepresentable pack size must throw invalid_argument");
    fuzz::require(throws_invalid([&] { lowbit::PackedMatrix::pack(&one, type, 0, kHuge[2 + in.range(0, 1)], 0, 0, nullptr, 0); }),
                  "an unrepresentable column count must throw invalid_argument");
    return;
  }
  const int64_t K = in.range(-2, 200), N = in.range(-2, 200);
  const int64_t k = std::max<int64_t>(K, 0), n = std::max<int64_t>(N, 0);
  // Strides: row-major, column-major, broadcast, or reversed along k (a negative stride).
  int64_t stride_k = n, stride_n = 1, offset = 0;
  switch (in.range(0, 3)) {
    case 1: stride_k = 1; stride_n = k; break;
    case 2: stride_k = 0; stride_n = in.range(0, 1); break;
    case 3: stride_k = -n; offset = (k - 1) * n; break;
    default: break;
  }
  std::vector<uint8_t> b(static_cast<size_t>(std::max<int64_t>(k * n, 1)));
  for (auto& v : b) v = in.take<uint8_t>();
  const int64_t zcount = in.range(-2, n + 2);
  std::vector<int32_t> zero(static_cast<size_t>(std::max<int64_t>(zcount, 1)));
  for (auto& v : zero) v = in.flag() ? in.take<int32_t>() : static_cast<int32_t>(in.range(-128, 255));
  std::shared_ptr<lowbit::PackedMatrix> packed;
  try {
    packed = lowbit::PackedMatrix::pack(b.data() + std::max<int64_t>(offset, 0), type, K, N,
                                        stride_k, stride_n, zero.data(), zcount);
  } catch (const std::invalid_argument&) {
    return;
  }
  fuzz::require(K >= 0 && N >= 0 && type_code != 2, "pack accepted a bad shape or type");
  std::vector<uint8_t> back(static_cast<size_t>(k * n));
  packed->unpack(back.data(), n, 1);
  for (int64_t kk = 0; kk < k; ++kk)
    for (int64_t nn = 0; nn < n; ++nn)
      fuzz::require(back[kk * n + nn] == b[std::max<int64_t>(offset, 0) + kk * stride_k + nn * stride_n],
                    "PackedMatrix unpack differs from the packed source");
}

void fuzz_int4(fuzz::Input& in) {
  if (in.range(0, 7) == 0) {  // no in_features, more out_features than can be enumerated
    const float s = 1.0f;
    const auto p = lowbit::PackedInt4Matrix::pack(nullptr, kHuge[2 + in.range(0, 1)], 0, 2, &s, nullptr);
    fuzz::require(p->groups() == 0 && p->in_features() == 0, "an empty 4-bit weight has no groups");
    return;
  }
  const int64_t N = in.range(-1, 100), K = in.range(-1, 300);
  int64_t group = in.range(-2, 310);
  if (in.range(0, 7) == 0) group = kHuge[in.range(0, 3)];
  const int64_t n = std::max<int64_t>(N, 0), k = std::max<int64_t>(K, 0);
  const int64_t G = group > 0 && k > 0 ? (k - 1) / group + 1 : 0;
  std::vector<uint8_t> u(static_cast<size_t>(std::max<int64_t>(n * k, 1)));
  for (auto& v : u) v = in.flag() ? in.take<uint8_t>() : in.take<uint8_t>() & 15;
  std::vector<float> scale(static_cast<size_t>(std::max<int64_t>(n * G, 1)));
  for (auto& v : scale) v = in.flag() ? in.special_float() : 0.01f;
  std::vector<uint8_t> zero(scale.size());
  for (auto& v : zero) v = in.flag() ? in.take<uint8_t>() : in.take<uint8_t>() & 15;
  std::shared_ptr<lowbit::PackedInt4Matrix> packed;
  try {
    packed = lowbit::PackedInt4Matrix::pack(u.data(), N, K, group, scale.data(),
                                            in.flag() ? zero.data() : nullptr);
  } catch (const std::invalid_argument&) {
    return;
  }
  fuzz::require(N >= 0 && K >= 0 && K % 2 == 0 && group > 0 && group % 2 == 0,
                "4-bit pack accepted a bad shape or group size");
  std::vector<uint8_t> back(static_cast<size_t>(n * k));
  packed->unpack(back.data());
  fuzz::require(std::equal(back.begin(), back.end(), u.begin()), "PackedInt4Matrix unpack differs");
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
