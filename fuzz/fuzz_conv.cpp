// conv_integer with random geometry (kernel 1-5, strides 1-3, dilation 1-2, every pad side
// 0-3, groups 1 / 2 / depthwise / depthwise with a multiplier, odd channel counts, batch 0-2,
// sometimes a kernel larger than the padded input), operand types and zero points, against an
// int64 reference reduced modulo 2^32, on every available ISA; a geometry the checks refuse
// must throw std::invalid_argument on every path.
#include <algorithm>

#include "fuzz_common.h"
#include "lowbit/conv.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  lowbit::ConvGeometry g;
  const int64_t kind = in.range(0, 3);   // 0 dense, 1 two groups, 2 depthwise, 3 depthwise x2
  const int64_t cg = kind >= 2 ? 1 : in.range(1, 9);
  g.groups = kind == 0 ? 1 : kind == 1 ? 2 : in.range(2, 20);
  g.in_channels = cg * g.groups;
  g.out_channels = g.groups * (kind == 2 ? 1 : kind == 3 ? 2 : in.range(1, 7));
  g.batch = in.range(0, 2);
  g.kernel_h = in.range(1, 5);
  g.kernel_w = in.range(1, 5);
  g.stride_h = in.range(1, 3);
  g.stride_w = in.range(1, 3);
  g.dilation_h = in.range(1, 2);
  g.dilation_w = in.range(1, 2);
  g.pad_top = in.range(0, 3);
  g.pad_left = in.range(0, 3);
  g.pad_bottom = in.range(0, 3);
  g.pad_right = in.range(0, 3);
  g.height = in.range(1, 12);
  g.width = in.range(1, 12);
  const bool x_signed = in.flag(), w_signed = in.flag();
  const lowbit::ElemType xt = x_signed ? lowbit::ElemType::int8 : lowbit::ElemType::uint8;
  const lowbit::ElemType wt = w_signed ? lowbit::ElemType::int8 : lowbit::ElemType::uint8;
  auto value = [](uint8_t b, bool s) { return s ? static_cast<int32_t>(static_cast<int8_t>(b)) : static_cast<int32_t>(b); };
  const int32_t xz = value(in.take<uint8_t>(), x_signed);
  std::vector<int32_t> wz(static_cast<size_t>(in.flag() ? g.out_channels : 1));
  for (auto& z : wz) z = value(in.take<uint8_t>(), w_signed);
  const bool extreme = in.flag();
  std::vector<uint8_t> x(static_cast<size_t>(g.batch * g.in_channels * g.height * g.width));
  std::vector<uint8_t> w(static_cast<size_t>(g.out_channels * cg * g.kernel_h * g.kernel_w));
  for (auto& v : x) v = extreme ? (x_signed ? 0x80 : 0xFF) : in.take<uint8_t>();
  for (auto& v : w) v = extreme ? (w_signed ? 0x7F : 0x00) : in.take<uint8_t>();
  auto packed = lowbit::PackedConvWeight::pack(w.data(), wt, g.out_channels, cg, g.groups, g.kernel_h,
                                               g.kernel_w, wz.data(), static_cast<int64_t>(wz.size()));
  const bool fits = g.height + g.pad_top + g.pad_bottom >= g.dilation_h * (g.kernel_h - 1) + 1 &&
                    g.width + g.pad_left + g.pad_right >= g.dilation_w * (g.kernel_w - 1) + 1;
  const int64_t OH = fits ? g.out_height() : 0, OW = fits ? g.out_width() : 0;
  std::vector<int32_t> expected(static_cast<size_t>(g.batch * g.out_channels * OH * OW), -1);
  const int64_t mg = g.out_channels / g.groups;
  for (int64_t n = 0; n < g.batch; ++n)
    for (int64_t m = 0; m < g.out_channels; ++m)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          int64_t acc = 0;
          const int64_t zwm = wz[wz.size() == 1 ? 0 : static_cast<size_t>(m)];
          for (int64_t c = 0; c < cg; ++c)
            for (int64_t i = 0; i < g.kernel_h; ++i)
              for (int64_t j = 0; j < g.kernel_w; ++j) {
                const int64_t ih = oh * g.stride_h - g.pad_top + i * g.dilation_h;
                const int64_t iw = ow * g.stride_w - g.pad_left + j * g.dilation_w;
                const int64_t ic = (m / mg) * cg + c;
                const int64_t xv = ih >= 0 && ih < g.height && iw >= 0 && iw < g.width
                                       ? value(x[static_cast<size_t>(((n * g.in_channels + ic) * g.height + ih) * g.width + iw)], x_signed)
                                       : xz;
                const int64_t wv = value(w[static_cast<size_t>(((m * cg + c) * g.kernel_h + i) * g.kernel_w + j)], w_signed);
                acc += (xv - xz) * (wv - zwm);
              }
          expected[static_cast<size_t>(((n * g.out_channels + m) * OH + oh) * OW + ow)] =
              static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(acc)));
        }
  for (lowbit::Isa isa : lowbit::available_isas()) {
    lowbit::set_active_isa(isa);
    const auto got = fuzz::run<int32_t>(expected.size(), -1, [&](int32_t* y) {
      lowbit::conv_integer(x.data(), xt, xz, *packed, g, y);
    });
    fuzz::require(got.threw == !fits, "conv_integer must throw exactly for a kernel larger than the padded input");
    if (!got.threw) fuzz::require(fuzz::same_bytes(got.out, expected), "conv_integer != int64 reference");
  }
  return 0;
}
