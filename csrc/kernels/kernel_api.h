// The contract between ISA-free drivers (csrc/ops), the packers (csrc/packed) and per-ISA kernels
// (csrc/kernels/<isa>). Plain data, function-pointer types, constants and macros only: this header
// is included by translation units compiled with different ISA flags, so it must hold no inline
// code that could be emitted with one ISA's instructions and then linked into another's callers.
#pragma once

#include <cstdint>

// Small kernel helpers (register tiles, loads, stores) are always inlined: GCC then keeps every
// vector in a register (a helper left out of line would pass its vectors through the stack).
#define LOWBIT_INLINE __attribute__((always_inline)) inline

namespace lowbit {

// The packed layouts, the same on every ISA path. Packed int8 B (PackedMatrix, W8A8Problem,
// W8F32Problem): panels of kPanelCols columns; inside a panel, k in groups of kGroupDepth (K
// padded to a multiple of it with zeros), one group being kGroupBytes bytes: [64 columns x 4 k].
constexpr int64_t kPanelCols = 64;
constexpr int64_t kGroupDepth = 4;
constexpr int64_t kGroupBytes = kPanelCols * kGroupDepth;
// Half a panel: the column block of the kernels whose registers cannot hold a whole panel's
// accumulators for several rows (AVX2 and NEON).
constexpr int64_t kHalfPanelCols = kPanelCols / 2;
// Packed 4-bit weights (PackedInt4Matrix, W4Problem): the same panels, each group's weights in
// octets of kW4OctetDepth k (group lengths padded to a multiple of it), one octet being
// kW4OctetBytes bytes: [64 columns x 8 k], two nibbles a byte (see W4Problem).
constexpr int64_t kW4OctetDepth = 8;
constexpr int64_t kW4OctetBytes = kPanelCols * kW4OctetDepth / 2;

// One w8a8 GEMM (u8 activations x s8 weights, int32 sums) in the shape the kernels understand:
//   A: M rows of uint8, KP bytes each (K padded to 4 with zeros), row stride lda.
//   B: packed int8 panels of 64 columns x KP (see PackedMatrix), NP = N padded to 64.
// The kernel forms acc = A @ B exactly (mod 2^32) and applies the epilogue
//   c = acc - col_zero[n] * row_sum[m] - row_zero[m] * col_corr[n]          (int32, wraps)
//   y = fma(float(c), row_scale[m] * col_scale[n], bias[n])                 (float output)
struct W8A8Problem {
  int64_t M = 0, N = 0, K = 0, KP = 0;
  const uint8_t* a = nullptr;
  int64_t lda = 0;
  const int32_t* row_sum = nullptr;   // M
  const int32_t* row_zero = nullptr;  // M
  const int8_t* b_panels = nullptr;
  const int32_t* col_zero = nullptr;  // NP
  const int32_t* col_corr = nullptr;  // NP
  bool b_symmetric = false;           // col_zero is all zero: skip that term

  // Output: exactly one of c_i32 / y_f32 is set.
  int32_t* c_i32 = nullptr;
  float* y_f32 = nullptr;
  int64_t ldc = 0;
  const float* row_scale = nullptr;   // M      (float output)
  const float* col_scale = nullptr;   // NP     (float output)
  const float* bias = nullptr;        // N or null
};

// One 4-bit weight GEMM, w4a8 or w4f32 (see PackedInt4Matrix). The packed weight is `panels`
// panels of 64 columns, `panel_stride` bytes each; a panel is `groups` blocks of `group_stride`
// bytes:
//   weights: group_pad / 8 octets of 256 bytes. Octet o, column c (block j = c / 16, lane
//            l = c % 16) is the 4 bytes at o * 256 + j * 64 + l * 4; byte t holds k = 8o + t in
//            its low nibble and k = 8o + 4 + t in its high nibble.
//   scales:  64 float32, one per column                      (at group_pad * 32)
//   zeros:   64 uint8, one per column, only if !symmetric    (at group_pad * 32 + 256)
// A rows hold `groups` runs of group_pad values (zero padded past each group's length):
// int8 (w4a8) or float32 (w4f32, Int4Compute::weight_only). Per output element, in this exact
// order:
//   w4a8:        acc = 0; for g: acc = fma(float(dot_g - zero * a_group_sum[m, g]), scale, acc)
//                y = fma(acc, a_scale[m], bias[n] or 0)
//   w4f32:       acc = 0; for g: { s = 0; for k in group order: s = fma(a[k], float(u - zero), s);
//                                  acc = fma(s, scale, acc) }
//                y = acc + bias[n] (or acc)
struct W4Problem {
  int64_t M = 0, N = 0;
  int64_t groups = 0, group_pad = 0;
  int64_t group_stride = 0, panel_stride = 0;
  const uint8_t* w = nullptr;
  bool symmetric = true;
  const int8_t* a_s8 = nullptr;        // w4a8
  const int32_t* a_group_sum = nullptr;  // w4a8: M x groups
  const float* a_scale = nullptr;      // w4a8: M
  const float* a_f32 = nullptr;        // w4f32
  int64_t lda = 0;                     // elements between A rows
  const float* bias = nullptr;         // N or null
  float* y = nullptr;
  int64_t ldy = 0;
};

// One w8f32 GEMM: float32 activations against int8 weights (weight-only int8), on W8A8Problem's
// packed panels:
//   A: M rows of K float32, row stride lda (no padding: the kernels stop at K).
//   B: panels of KP/4 groups of [64 columns x 4 k] bytes b', with column zero points col_zero
//      (NP entries; b' - col_zero is the user's w - z, exact in float32 since |.| <= 255).
// Per output element, in this exact order:
//   s = 0; for k = 0 .. K-1: s = fma(a[k], float(b'[k, n] - col_zero[n]), s)
//   y = fma(s, col_scale[n], bias[n] or 0)
struct W8F32Problem {
  int64_t M = 0, N = 0, K = 0, KP = 0;
  const float* a = nullptr;
  int64_t lda = 0;
  const int8_t* b_panels = nullptr;
  const int32_t* col_zero = nullptr;  // NP
  bool b_symmetric = false;           // col_zero is all zero
  const float* col_scale = nullptr;   // N
  const float* bias = nullptr;        // N or null
  float* y = nullptr;
  int64_t ldy = 0;
};

// One 16-bit float weight GEMM: float32 activations against float16 (wf16f32) or bfloat16
// (wbf16f32) weights, widened to float32 exactly in registers (PackedHalfMatrix):
//   A: M rows of K float32, row stride lda (no padding: the kernels stop at K).
//   B: panels of 64 columns x KP k, 64 * KP 16-bit values each (zero past K), in the layout of
//      the weight type (one rule, kernels/half_float.h half_panel_index):
//        float16:  row-major k rows of 64 columns, KP = K: value (k, c) at k * 64 + c, so one
//                  row of 16 columns is one 32-byte load for a vcvtph2ps;
//        bfloat16: k pairs, KP = K rounded up to kBf16PairDepth: value (k, c) at
//                  (k / 2) * 128 + c * 2 + k % 2, the dword order vdpbf16ps / tdpbf16ps take,
//                  and widened by a shift (even k) or a mask (odd k).
// Per output element, in this exact order:
//   s = 0; for k = 0 .. K-1: s = fma(a[k], float(w[k, n]), s)
//   y = s + bias[n] (or s)
// A kernel may keep the running s in y between blocks of k (its y rows hold partial sums until
// the call returns): float32 stores and loads are exact, so the order above is unchanged.
constexpr int64_t kBf16PairDepth = 2;
struct W16F32Problem {
  int64_t M = 0, N = 0, K = 0, KP = 0;
  const float* a = nullptr;
  int64_t lda = 0;
  const uint16_t* b_panels = nullptr;
  const float* bias = nullptr;        // N or null
  float* y = nullptr;
  int64_t ldy = 0;
};

// One depthwise convolution (each output channel reads one input channel; a channel multiplier
// is expanded into the input beforehand), one image, in the layout every ISA path shares:
//   x: H x W pixels of NHWC uint8, x_stride bytes apart (x_stride >= CP, CP = C rounded up to
//      kDwChannelBlock; bytes past C hold anything finite: their weights are 0).
//   zero_row: x_stride bytes, every one x_zero: the pixel a tap outside the image reads, so a
//      padded tap contributes (x_zero - x_zero) * w = 0 (ONNX pads with the zero point).
//   w: the taps in pairs, int16 w - zw (exact: |.| <= 255): pair t, channel c at
//      (t * CP + c) * 2 holds (tap 2t, tap 2t + 1), taps row-major over (kh, kw); an odd last
//      tap is paired with 0. `tap_pairs` = ceil(kh * kw / 2).
// Per output pixel (oh, ow) and channel c < C, exactly (mod 2^32):
//   acc = sum over taps (x[ih, iw, c] - x_zero) * (w[tap, c] - zw[c]),
//   ih = oh * stride_h - pad_top + i * dil_h, iw = ow * stride_w - pad_left + j * dil_w,
// written as int32 (c_i32) or, with the w8a8 epilogue's float order,
//   y = fma(float(acc), row_scale * col_scale[c], bias[c] or 0)               (y_f32)
// at row (oh * OW + ow) * ldc + c. A kernel call covers output rows [oh_begin, oh_end).
constexpr int64_t kDwChannelBlock = 16;
struct DwConvProblem {
  const uint8_t* x = nullptr;
  int64_t H = 0, W = 0, x_stride = 0;
  const uint8_t* zero_row = nullptr;
  int32_t x_zero = 0;
  int64_t C = 0, CP = 0;
  int64_t kh = 1, kw = 1, stride_h = 1, stride_w = 1, dil_h = 1, dil_w = 1;
  int64_t pad_top = 0, pad_left = 0, OH = 0, OW = 0;
  const int16_t* w = nullptr;
  int64_t tap_pairs = 0;
  int32_t* c_i32 = nullptr;           // exactly one of c_i32 / y_f32 is set
  float* y_f32 = nullptr;
  int64_t ldc = 0;
  float row_scale = 1.0f;             // float output
  const float* col_scale = nullptr;   // CP (padded, so kernels load whole blocks)
  const float* bias = nullptr;        // CP or null
};

// Which elements share a quantization parameter inside one contiguous run.
struct QuantRun {
  const float* scale = nullptr;      // one value, or one per element when per_element
  const int32_t* zero = nullptr;     // may be null (zero); same indexing as scale
  bool per_element = false;
};

using QuantizeRunFn = bool (*)(const float* x, int64_t n, QuantRun params, int32_t qmin,
                               int32_t qmax, uint8_t* out);  // false if x holds NaN/Inf
// The same quantization with 16-bit stores (int16 / uint16 output: the low 16 bits of each
// clamped int32 value), bit for bit quantize_run's values otherwise.
using QuantizeRun16Fn = bool (*)(const float* x, int64_t n, QuantRun params, int32_t qmin,
                                 int32_t qmax, uint16_t* out);  // false if x holds NaN/Inf
using DequantizeRunFn = void (*)(const void* q, int elem_type, int64_t n, QuantRun params,
                                 float* out);                // elem_type: lowbit::ElemType
using MinMaxFn = bool (*)(const float* x, int64_t n, float* min, float* max);  // false on NaN/Inf
using QuantizeRowU8Fn = bool (*)(const float* x, int64_t k, int64_t kp, uint8_t* out,
                                 float* scale, int32_t* zero, int32_t* row_sum);
using RequantizeRunFn = void (*)(const int32_t* acc, int64_t n, const float* multiplier,
                                 bool per_element, int32_t zero, int32_t qmin, int32_t qmax,
                                 uint8_t* out);
using SumBytesFn = uint64_t (*)(const uint8_t* data, int64_t n);  // streams n bytes once
// Packs the 4-row k groups [g_begin, g_end) of one whole 64-column panel of row-major B (b: row
// 0 at the panel's first column, row stride ldb; rows at or past K read as zero) into `panel`
// (the PackedMatrix layout, stored bytes = B ^ flip) and adds each column's sum of stored
// (signed) bytes to col_sums[0..63].
using PackBGroupsFn = void (*)(const uint8_t* b, int64_t ldb, int64_t K, int64_t g_begin,
                               int64_t g_end, uint8_t flip, int8_t* panel, int32_t* col_sums);
// The same from B's transpose (a weight: w holds the panel's 64 columns as rows of row stride
// ldw), for k groups [g_begin, g_end) that lie wholly inside K.
using PackBtGroupsFn = void (*)(const uint8_t* w, int64_t ldw, int64_t g_begin, int64_t g_end,
                                uint8_t flip, int8_t* panel, int32_t* col_sums);
using W8A8Fn = void (*)(const W8A8Problem& p, int64_t m_begin, int64_t m_end,
                        int64_t panel_begin, int64_t panel_end);
// The w8a8 GEMM on a plain, row-major B (b: row 0 at column 0, row stride ldb; stored bytes
// b ^ flip, rows past p.K read as zero), rows [m_begin, m_end) x columns [n_begin, n_end) of
// p's int32 output, through the w8a8 epilogue with p.col_zero (N entries) and column sums the
// kernel forms itself (p.b_panels and p.col_corr are not used). Worth it for a few rows only:
// its entry says up to how many (max_rows) the driver should call it instead of packing.
using W8A8PlainBFn = void (*)(const W8A8Problem& p, const uint8_t* b, int64_t ldb, uint8_t flip,
                              int64_t m_begin, int64_t m_end, int64_t n_begin, int64_t n_end);
using W4Fn = void (*)(const W4Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
                      int64_t panel_end);
using W8F32Fn = void (*)(const W8F32Problem& p, int64_t m_begin, int64_t m_end,
                         int64_t panel_begin, int64_t panel_end);
using W16F32Fn = void (*)(const W16F32Problem& p, int64_t m_begin, int64_t m_end,
                          int64_t panel_begin, int64_t panel_end);
using DwConvFn = void (*)(const DwConvProblem& p, int64_t oh_begin, int64_t oh_end);
// dst[c * ld_dst + r] = src[r * ld_src + c] for r < rows, c < cols (the NCHW <-> NHWC layout
// changes of the convolutions; bits moved, never changed).
using Transpose8Fn = void (*)(const uint8_t* src, int64_t ld_src, int64_t rows, int64_t cols, uint8_t* dst,
                              int64_t ld_dst);
using Transpose32Fn = void (*)(const uint32_t* src, int64_t ld_src, int64_t rows, int64_t cols,
                               uint32_t* dst, int64_t ld_dst);

// A GEMM entry: the kernel and its row step. A kernel computes MR rows at a time (a register
// or tile block) and handles any remainder itself; drivers that split rows over threads give
// each task a multiple of `mr` rows, asking the entry instead of assuming a step.
template <typename Fn>
struct GemmEntry {
  Fn run = nullptr;
  int mr = 1;
};

// A plain-B GEMM entry: the kernel and the most rows of A it is meant for (null: the path
// packs B instead).
struct PlainBEntry {
  W8A8PlainBFn run = nullptr;
  int64_t max_rows = 0;
};

// Every kernel one ISA path runs. Built from the path rows of dispatch/kernel_table.cpp: a path
// starts from the table of the path it derives from and overrides entries by name.
struct KernelTable {
  QuantizeRunFn quantize_run = nullptr;
  QuantizeRun16Fn quantize_run_16 = nullptr;  // int16 / uint16 output
  DequantizeRunFn dequantize_run = nullptr;
  MinMaxFn min_max = nullptr;
  QuantizeRowU8Fn quantize_row_u8 = nullptr;
  RequantizeRunFn requantize_run = nullptr;
  SumBytesFn sum_bytes = nullptr;
  PackBGroupsFn pack_b_groups = nullptr;
  PackBtGroupsFn pack_bt_groups = nullptr;
  GemmEntry<W8A8Fn> w8a8;            // w8a8: u8 x s8, int32 sums
  PlainBEntry w8a8_plain_b;          // w8a8 on a plain row-major B, small M
  GemmEntry<W4Fn> w4a8;
  GemmEntry<W4Fn> w4f32;
  GemmEntry<W8F32Fn> w8f32;
  GemmEntry<W16F32Fn> wf16f32;       // float16 weights x float32 activations
  GemmEntry<W16F32Fn> wbf16f32;      // bfloat16 weights x float32 activations
  DwConvFn dwconv = nullptr;         // depthwise convolution (conv_ops.cpp)
  Transpose8Fn transpose8 = nullptr;    // byte block transpose (conv_ops.cpp: NCHW -> NHWC)
  Transpose32Fn transpose32 = nullptr;  // 32-bit block transpose (conv_ops.cpp: NHWC -> NCHW)
};

}  // namespace lowbit
