// quantize_linear / dequantize_linear / dynamic_quantize_linear with random layouts, scale modes,
// block sizes, every quantized type (8-, 4- and 16-bit), zero points and special floats (NaN,
// Inf, subnormal, ties): every available ISA must store the same bytes as the scalar path, or
// every path must throw invalid_argument.
#include <algorithm>

#include "fuzz_common.h"

namespace {

// Scale count of a layout, or -1 if the fuzzer picked a block size the API must reject.
int64_t scale_count(lowbit::AxisView v, lowbit::ScaleMode mode, int64_t block) {
  switch (mode) {
    case lowbit::ScaleMode::per_tensor: return 1;
    case lowbit::ScaleMode::per_axis: return v.axis;
    case lowbit::ScaleMode::blocked:
      if (block <= 0) return -1;
      return v.outer * (v.axis == 0 ? 0 : (v.axis - 1) / block + 1) * v.inner;
  }
  return -1;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  const lowbit::AxisView view{in.range(0, 3), in.range(0, 70), in.range(0, 3)};
  const auto mode = static_cast<lowbit::ScaleMode>(in.range(0, 2));
  int64_t block = in.range(1, 20);
  switch (in.range(0, 7)) {  // sometimes a block size at the edges of int64
    case 0: block = std::numeric_limits<int64_t>::max(); break;
    case 1: block = in.range(-2, 0); break;
    default: break;
  }
  const auto qtype = static_cast<lowbit::QType>(in.range(0, 5));
  const int64_t n = view.outer * view.axis * view.inner;
  const int64_t count = scale_count(view, mode, block);
  const bool with_zero = in.flag();

  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = in.special_float();
  std::vector<float> scale(static_cast<size_t>(std::max<int64_t>(count, 1)));
  std::vector<int32_t> zero(scale.size());
  const int32_t qmin = lowbit::qtype_min(qtype), qmax = lowbit::qtype_max(qtype);
  for (size_t i = 0; i < scale.size(); ++i) {
    scale[i] = in.flag() ? std::fabs(in.special_float()) : 0.001f + std::fabs(in.normal_float());
    zero[i] = static_cast<int32_t>(in.range(qmin, qmax));
  }
  const int32_t* zp = with_zero ? zero.data() : nullptr;

  const size_t bytes = static_cast<size_t>(lowbit::qtype_bytes(qtype));  // 2 for int16 / uint16
  const auto q = fuzz::same_on_every_isa<uint8_t>(x.size() * bytes, 0xAA, [&](uint8_t* out) {
    lowbit::quantize_linear(x.data(), view, mode, block, scale.data(), zp, qtype, out);
  }, "quantize_linear differs from the scalar path");
  const bool has_non_finite =
      std::any_of(x.begin(), x.end(), [](float v) { return !std::isfinite(v); });
  fuzz::require(q.threw == (has_non_finite || count < 0),
                "quantize_linear must throw exactly for NaN/Inf input or a bad block size");

  if (!q.threw) {  // dequantize what was stored (int4 values live in int8/uint8 storage)
    const bool is_signed = lowbit::qtype_min(qtype) < 0;
    const auto et = bytes == 2 ? (is_signed ? lowbit::ElemType::int16 : lowbit::ElemType::uint16)
                               : (is_signed ? lowbit::ElemType::int8 : lowbit::ElemType::uint8);
    fuzz::same_on_every_isa<float>(x.size(), -7.0f, [&](float* out) {
      lowbit::dequantize_linear(q.out.data(), et, view, mode, block, scale.data(), zp, out);
    }, "dequantize_linear differs from the scalar path");
  }
  fuzz::same_on_every_isa<uint8_t>(x.size() + 5, 0x55, [&](uint8_t* out) {
    float s = 0.0f;
    lowbit::dynamic_quantize_linear(x.data(), n, out, &s, out + x.size() + 4);
    std::memcpy(out + x.size(), &s, sizeof(s));
  }, "dynamic_quantize_linear differs from the scalar path");
  return 0;
}
