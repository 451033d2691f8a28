// lowbit public C++ API, convolutions (ONNX ConvInteger / QLinearConv semantics, and the float
// layers on top): the geometry of a 1-D or 2-D convolution, the packed weight, and the calls.
// NCHW at the API (1-D: height 1); NHWC inside, converted once per call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "lowbit/gemm.h"
#include "lowbit/packed.h"
#include "lowbit/types.h"

namespace lowbit {

// A convolution's shape: input (batch, in_channels, height, width), weight (out_channels,
// in_channels / groups, kernel_h, kernel_w), explicit pads (ONNX auto_pad is resolved by the
// caller). Output (batch, out_channels, out_height(), out_width()).
struct ConvGeometry {
  int64_t batch = 0, in_channels = 0, height = 1, width = 0;
  int64_t out_channels = 0, groups = 1, kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1, dilation_h = 1, dilation_w = 1;
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  int64_t out_height() const {
    return (height + pad_top + pad_bottom - dilation_h * (kernel_h - 1) - 1) / stride_h + 1;
  }
  int64_t out_width() const {
    return (width + pad_left + pad_right - dilation_w * (kernel_w - 1) - 1) / stride_w + 1;
  }
};

// The weight of a quantized convolution, packed once. Two layouts, chosen by the shape:
//   depthwise (one input channel per group, groups > 1; a channel multiplier allowed): the
//     taps of every output channel as int16 w - zw in pairs (DwConvProblem), for the direct
//     per-ISA kernels;
//   otherwise one PackedMatrix per group, K = kernel_h * kernel_w * (in_channels / groups)
//     ordered (kh, kw, c) to match the NHWC im2col rows, N = out_channels / groups.
// The bytes are one 64-byte aligned block (storage()), so a copy held elsewhere (a torch
// tensor) can be viewed without copying, as PackedMatrix::view.
class PackedConvWeight {
 public:
  // w: (out_channels, group_channels, kernel_h, kernel_w) bytes of `type`, C-contiguous;
  // zero_point: 1 or out_channels values in the type's range.
  static std::shared_ptr<PackedConvWeight> pack(const void* w, ElemType type, int64_t out_channels,
                                                int64_t group_channels, int64_t groups,
                                                int64_t kernel_h, int64_t kernel_w,
                                                const int32_t* zero_point, int64_t zero_point_count);
  static size_t storage_bytes(ElemType type, int64_t out_channels, int64_t group_channels,
                              int64_t groups, int64_t kernel_h, int64_t kernel_w);
  static std::shared_ptr<PackedConvWeight> view(const void* data, size_t bytes, ElemType type,
                                                int64_t out_channels, int64_t group_channels,
                                                int64_t groups, int64_t kernel_h, int64_t kernel_w);
  ~PackedConvWeight();
  PackedConvWeight(const PackedConvWeight&) = delete;
  PackedConvWeight& operator=(const PackedConvWeight&) = delete;
  // The original bytes back, (out_channels, group_channels, kernel_h, kernel_w).
  void unpack(void* out) const;
  void zero_points(int32_t* out) const;   // out_channels values

  bool depthwise() const { return depthwise_; }
  ElemType source_type() const { return type_; }
  bool symmetric() const { return symmetric_; }   // every zero point 0 (int8) / 128 (uint8)
  int64_t out_channels() const { return M_; }
  int64_t group_channels() const { return Cg_; }
  int64_t groups() const { return groups_; }
  int64_t kernel_h() const { return kh_; }
  int64_t kernel_w() const { return kw_; }
  int64_t depth() const { return Cg_ * kh_ * kw_; }   // K of each group's GEMM
  size_t nbytes() const { return bytes_; }
  const void* storage() const { return storage_; }
  // GEMM layout: group g's packed matrix (K = depth(), N = out_channels / groups).
  const PackedMatrix& group(int64_t g) const { return *groups_packed_[static_cast<size_t>(g)]; }
  // Depthwise layout: the DwConvProblem weights (tap_pairs x padded_channels() x 2 int16).
  const int16_t* dw_weights() const { return dw_w_; }
  int64_t tap_pairs() const { return (kh_ * kw_ + 1) / 2; }
  int64_t padded_channels() const;

 private:
  PackedConvWeight() = default;
  static std::shared_ptr<PackedConvWeight> shape(ElemType type, int64_t out_channels,
                                                 int64_t group_channels, int64_t groups,
                                                 int64_t kernel_h, int64_t kernel_w);
  void place(uint8_t* base);   // the views / pointers into the storage
  bool owns_ = true;
  bool depthwise_ = false, symmetric_ = true;
  ElemType type_ = ElemType::int8;
  int64_t M_ = 0, Cg_ = 0, groups_ = 1, kh_ = 1, kw_ = 1;
  size_t bytes_ = 0;
  void* storage_ = nullptr;
  std::vector<std::shared_ptr<PackedMatrix>> groups_packed_;
  int16_t* dw_w_ = nullptr;
  int32_t* dw_zero_ = nullptr;
};

// Checks a geometry against a weight: positive sizes, channels divisible by groups, the
// weight's shape, non-negative pads, strides and dilations >= 1, a kernel that fits the padded
// input. Throws std::invalid_argument naming the argument.
void check_conv_geometry(const ConvGeometry& g, const PackedConvWeight& w);

// ONNX ConvInteger: y (int32, NCHW) = conv(x - x_zero, w - w_zero), exact modulo 2^32.
// x: int8 or uint8 NCHW; x_zero in x's range.
void conv_integer(const void* x, ElemType x_type, int32_t x_zero, const PackedConvWeight& w,
                  const ConvGeometry& g, int32_t* y);

// ONNX QLinearConv: acc = conv(x - x_zero, w - w_zero) + bias (int32, wraps), then
// y = saturate(round_half_even(double(acc) * double(multiplier[m])) + y_zero) as uint8 / int8,
// multiplier[m] = x_scale * w_scale[m] / y_scale formed in float32 by the caller
// (out_channels values). bias may be null.
void qlinear_conv(const void* x, ElemType x_type, int32_t x_zero, const PackedConvWeight& w,
                  const ConvGeometry& g, const int32_t* bias, const float* multiplier,
                  int32_t y_zero, QType y_type, void* y);

// How a float convolution quantizes its input: per image (dynamic: each image's range
// [min(0, x), max(0, x)] -> uint8 scale and zero point by range_params, the rule of
// DynamicQuantizeLinear), or with one frozen scale and zero point (static: uint8 or int8).
struct ConvActivation {
  bool dynamic = true;
  float scale = 1.0f;
  int32_t zero = 0;
  QType type = QType::uint8;
};

// The float layer: x (float32 NCHW) quantized per `act`, the exact integer convolution, then
// per output element y = fma(float(acc), x_scale * col_scale[m], bias[m] or 0) (the w8a8
// epilogue's order, the same bits on every path), then y = min(max(y, clamp_lo), clamp_hi)
// (ReLU: 0, +inf; ReLU6: 0, 6; none: -inf, +inf). Throws std::invalid_argument on NaN/Inf in x
// or bias and where the exact int32 sum cannot be guaranteed (depth beyond kLinearMaxDepth /
// kLinearMaxDepthAsymmetric).
void conv_float(const float* x, const ConvActivation& act, const PackedConvWeight& w,
                const ConvGeometry& g, const float* col_scale, const float* bias, float clamp_lo,
                float clamp_hi, float* y);

// The integer chain (two static layers in a row, the second the first's only reader): the
// activation passed between them is quantized once, by the first, with the second's scale and
// zero point, and stays NHWC. Its bytes are uint8 in every case (int8 activations are stored
// shifted by 128, with the zero point shifted too: the kernels' own domain), (batch, height,
// width, channels) row-major.
//
// The input of a float convolution: float32 NCHW `x`, quantized per `act` (conv_float), or,
// when x_nhwc is set, activations already quantized with (scale, zero) in the uint8 domain.
// float_nhwc: x is float32 NHWC (batch, height, width, channels) row-major instead (a
// channels_last tensor): the same values, so the same quantized bytes, with no transpose.
struct ConvSource {
  const float* x = nullptr;
  ConvActivation act;
  bool float_nhwc = false;
  const uint8_t* x_nhwc = nullptr;
  float scale = 1.0f;
  int32_t zero = 0;
};

// Its output: float32 NCHW `y`, or, when y_nhwc is set, the float result (after the clamp)
// quantized as a static layer quantizes its float input: q = saturate(round_half_even(y /
// scale) + zero) to [0, 255] by the quantize_run kernel, zero in the uint8 domain. These are
// the bytes the next layer would have made from the float output, so a chain gives the same
// bits as the two layers called one after the other on float tensors.
// float_nhwc: the float output y is NHWC (batch, out_height, out_width, out_channels), the
// rows the kernels write, so nothing is transposed.
struct ConvSink {
  float* y = nullptr;
  bool float_nhwc = false;
  uint8_t* y_nhwc = nullptr;
  float scale = 1.0f;
  int32_t zero = 0;
};

// conv_float from any source to any sink (the checks of conv_float, and of the sink's scale
// (finite, > 0) and zero (0..255)). Throws std::invalid_argument when a quantized output value
// would be NaN/Inf.
void conv_float_chain(const ConvSource& x, const PackedConvWeight& w, const ConvGeometry& g,
                      const float* col_scale, const float* bias, float clamp_lo, float clamp_hi,
                      const ConvSink& y);

}  // namespace lowbit
