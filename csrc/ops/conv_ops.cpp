// Drivers of the convolutions (conv_integer, qlinear_conv, conv_float): the input converted once
// to NHWC uint8 (quantized first for float input), then either
//   im2col into the GEMM's A layout, a block of output pixels at a time (padding reads the
//   input zero point), and the w8a8 GEMM kernel per group (1 x 1, stride 1, unpadded, one
//   group: the NHWC rows are A as they are), or
//   the direct depthwise kernel (KernelTable::dwconv) per block of output rows,
// into NHWC int32 or float rows, then back to NCHW with the call's last step (clamp,
// requantization). Every output element is one full sum computed by one kernel call, so the
// results do not depend on the thread split or on the ISA path.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "dispatch/kernel_table.h"
#include "kernels/kernel_api.h"
#include "lowbit/conv.h"
#include "lowbit/quantize.h"
#include "runtime/aligned_buffer.h"
#include "runtime/thread_pool.h"

namespace lowbit {

void check_conv_geometry(const ConvGeometry& g, const PackedConvWeight& w) {
  auto need = [](bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument(what);
  };
  need(g.batch >= 0, "batch must be >= 0");
  need(g.in_channels > 0 && g.height > 0 && g.width > 0, "input channels and spatial sizes must be positive");
  need(g.groups > 0, "group must be positive");
  need(g.in_channels % g.groups == 0, "input channels (" + std::to_string(g.in_channels) +
                                          ") are not divisible by group=" + std::to_string(g.groups));
  need(g.out_channels % g.groups == 0, "output channels (" + std::to_string(g.out_channels) +
                                           ") are not divisible by group=" + std::to_string(g.groups));
  need(w.out_channels() == g.out_channels && w.groups() == g.groups &&
           w.group_channels() == g.in_channels / g.groups && w.kernel_h() == g.kernel_h &&
           w.kernel_w() == g.kernel_w,
       "the weight's shape (" + std::to_string(w.out_channels()) + ", " + std::to_string(w.group_channels()) +
           ", " + std::to_string(w.kernel_h()) + ", " + std::to_string(w.kernel_w()) + ", group=" +
           std::to_string(w.groups()) + ") does not match the convolution");
  need(g.stride_h >= 1 && g.stride_w >= 1, "strides must be >= 1");
  need(g.dilation_h >= 1 && g.dilation_w >= 1, "dilations must be >= 1");
  need(g.pad_top >= 0 && g.pad_left >= 0 && g.pad_bottom >= 0 && g.pad_right >= 0, "pads must be >= 0");
  need(g.height + g.pad_top + g.pad_bottom >= g.dilation_h * (g.kernel_h - 1) + 1 &&
           g.width + g.pad_left + g.pad_right >= g.dilation_w * (g.kernel_w - 1) + 1,
       "the kernel (with its dilation) is larger than the padded input");
}

namespace {

// Below this much work a second thread costs more to wake than it saves.
constexpr double kMinParallelMacs = 2e6;

// The input as NHWC uint8: every image's pixels, `stride` bytes apart, channel c of the input
// at c * mult + r for r < mult (a depthwise channel multiplier expanded, mult = 1 otherwise),
// bytes past in_channels * mult set to the zero point.
struct NhwcInput {
  const uint8_t* data = nullptr;
  int64_t stride = 0;
  std::vector<int32_t> zeros;     // per image, uint8 domain (dynamic: each image its own)
  std::vector<float> scale;       // per image (float output)
};

struct Scratch {
  ScratchBuffer nhwc, out, ab;
};
Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

// Transposes P pixels of C channel rows (`ld` bytes apart; xor flip) into NHWC rows, in
// blocks of 64 pixels (the block's C source rows stay in L1): the transpose kernel for one
// input channel per channel slot, a byte loop when a depthwise channel multiplier > 1 repeats
// each byte; bytes past C * mult (to the buffer's row stride) hold the zero point.
void chw_to_nhwc(const uint8_t* chw, int64_t ld, uint8_t flip, int64_t C, int64_t P, int64_t mult, int64_t stride,
                 uint8_t zero, uint8_t* dst) {
  const KernelTable& k = kernels();
  const int64_t used = C * mult;
  for (int64_t p0 = 0; p0 < P; p0 += 64) {
    const int64_t p1 = std::min(P, p0 + 64);
    if (mult == 1) {
      k.transpose8(chw + p0, ld, C, p1 - p0, dst + p0 * stride, stride);
      if (flip)
        for (int64_t p = p0; p < p1; ++p)
          for (int64_t c = 0; c < C; ++c) dst[p * stride + c] ^= flip;
    } else {
      for (int64_t p = p0; p < p1; ++p) {
        uint8_t* d = dst + p * stride;
        for (int64_t c = 0; c < C; ++c) {
          const uint8_t v = static_cast<uint8_t>(chw[c * ld + p] ^ flip);
          for (int64_t r = 0; r < mult; ++r) d[c * mult + r] = v;
        }
      }
    }
    if (stride > used)
      for (int64_t p = p0; p < p1; ++p) std::memset(dst + p * stride + used, zero, static_cast<size_t>(stride - used));
  }
}

// P NHWC rows of C bytes (src, C apart) -> rows of `stride` bytes: each byte repeated `mult`
// times (a depthwise channel multiplier), the bytes past C * mult the zero point.
void spread_rows(const uint8_t* src, int64_t P, int64_t C, int64_t mult, int64_t stride, uint8_t zero,
                 uint8_t* dst) {
  for (int64_t p = 0; p < P; ++p) {
    const uint8_t* s = src + p * C;
    uint8_t* d = dst + p * stride;
    if (mult == 1) {
      std::memcpy(d, s, static_cast<size_t>(C));
    } else {
      for (int64_t c = 0; c < C; ++c)
        for (int64_t r = 0; r < mult; ++r) d[c * mult + r] = s[c];
    }
    std::memset(d + C * mult, zero, static_cast<size_t>(stride - C * mult));
  }
}

// Pixels per block of the input conversion: its C quantized rows (C x block bytes) fit in
// about 32 KB, so they are still in L1 for the transpose; at least 64, a multiple of 64.
int64_t pixel_block(int64_t C) { return std::max<int64_t>(64, std::min<int64_t>(1024, 32768 / std::max<int64_t>(C, 1)) / 64 * 64); }

// fn(n, p0, p1) over every image's pixel blocks, in parallel once there is enough work (so a
// single image uses every thread too).
template <typename Fn>
void for_pixel_blocks(int64_t batch, int64_t HW, int64_t block, double bytes_per_pixel, const Fn& fn) {
  const int64_t blocks = (HW + block - 1) / block;
  auto task = [&](int64_t t) {
    const int64_t n = t / blocks, p0 = (t % blocks) * block;
    fn(n, p0, std::min(HW, p0 + block));
  };
  if (get_num_threads() == 1 || static_cast<double>(batch) * HW * bytes_per_pixel < 65536.0) run_serially(batch * blocks, task);
  else parallel_for(batch * blocks, task);
}

int64_t input_stride(const ConvGeometry& g, const PackedConvWeight& w) {
  if (w.depthwise()) return w.padded_channels();
  return g.in_channels;
}

NhwcInput integer_input(const void* x, ElemType x_type, int32_t x_zero, const ConvGeometry& g,
                        const PackedConvWeight& w) {
  if (x_type != ElemType::int8 && x_type != ElemType::uint8) throw std::invalid_argument("x must be int8 or uint8");
  const int32_t lo = x_type == ElemType::uint8 ? 0 : -128, hi = x_type == ElemType::uint8 ? 255 : 127;
  if (x_zero < lo || x_zero > hi)
    throw std::invalid_argument("x_zero_point " + std::to_string(x_zero) + " is outside the range of x's type");
  NhwcInput in;
  in.stride = input_stride(g, w);
  const int32_t zero = x_zero + (x_type == ElemType::int8 ? 128 : 0);
  in.zeros.assign(static_cast<size_t>(g.batch), zero);
  const uint8_t flip = x_type == ElemType::int8 ? 0x80 : 0x00;
  const int64_t HW = g.height * g.width, C = g.in_channels;
  const int64_t mult = w.depthwise() ? g.out_channels / g.in_channels : 1;
  auto* buf = static_cast<uint8_t*>(scratch().nhwc.reserve(static_cast<size_t>(std::max<int64_t>(1, g.batch * HW * in.stride))));
  const auto* src = static_cast<const uint8_t*>(x);
  for_pixel_blocks(g.batch, HW, pixel_block(C), static_cast<double>(C), [&](int64_t n, int64_t p0, int64_t p1) {
    chw_to_nhwc(src + n * C * HW + p0, HW, flip, C, p1 - p0, mult, in.stride, static_cast<uint8_t>(zero),
                buf + (n * HW + p0) * in.stride);
  });
  in.data = buf;
  return in;
}

NhwcInput float_input(const float* x, bool x_nhwc, const ConvActivation& act, const ConvGeometry& g,
                      const PackedConvWeight& w) {
  const KernelTable& k = kernels();
  NhwcInput in;
  in.stride = input_stride(g, w);
  const int64_t HW = g.height * g.width, C = g.in_channels, image = C * HW;
  const int64_t mult = w.depthwise() ? g.out_channels / g.in_channels : 1;
  in.scale.assign(static_cast<size_t>(g.batch), act.scale);
  in.zeros.assign(static_cast<size_t>(g.batch), 0);
  if (!act.dynamic) {
    if (!(std::isfinite(act.scale) && act.scale > 0.0f))
      throw std::invalid_argument("input scale must be finite and > 0");
    if (act.type != QType::uint8 && act.type != QType::int8)
      throw std::invalid_argument("static activations are uint8 or int8");
    if (act.zero < qtype_min(act.type) || act.zero > qtype_max(act.type))
      throw std::invalid_argument("input zero point " + std::to_string(act.zero) +
                                  " is outside the range of the activation type");
  }
  auto* buf = static_cast<uint8_t*>(scratch().nhwc.reserve(static_cast<size_t>(std::max<int64_t>(1, g.batch * HW * in.stride))));
  // Dynamic: each image's own range (an image's result does not depend on the rest of the
  // batch), from min_max over chunks of the image in parallel (min and max are exact in any
  // order). Then per block of pixels: each channel's run quantized into a small buffer
  // (elementwise: the same bytes as one pass over the image) and transposed while in L1.
  std::atomic<bool> finite{true};
  std::vector<int32_t>& zeros = in.zeros;
  for (int64_t n = 0; n < g.batch; ++n)
    zeros[static_cast<size_t>(n)] = act.zero + (act.type == QType::int8 ? 128 : 0);
  if (act.dynamic) {
    const int64_t chunk = 65536, chunks = (image + chunk - 1) / chunk;
    std::vector<float> lo(static_cast<size_t>(g.batch * chunks), 0.0f), hi(lo.size(), 0.0f);
    parallel_rows(g.batch * chunks, chunk, 131072.0, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t n = t / chunks, c0 = (t % chunks) * chunk, len = std::min(image, c0 + chunk) - c0;
        if (!k.min_max(x + n * image + c0, len, &lo[static_cast<size_t>(t)], &hi[static_cast<size_t>(t)]))
          finite.store(false);
      }
    });
    if (!finite.load()) throw std::invalid_argument("input holds NaN or Inf values; they cannot be quantized");
    for (int64_t n = 0; n < g.batch; ++n) {
      float mn = 0.0f, mx = 0.0f;   // the range always holds 0
      for (int64_t c = 0; c < chunks; ++c) {
        mn = std::min(mn, lo[static_cast<size_t>(n * chunks + c)]);
        mx = std::max(mx, hi[static_cast<size_t>(n * chunks + c)]);
      }
      range_params(&mn, &mx, 1, QType::uint8, false, &in.scale[static_cast<size_t>(n)], &zeros[static_cast<size_t>(n)]);
    }
  }
  const int64_t block = pixel_block(C);
  if (x_nhwc) {
    // NHWC float: a block's pixels are one run; quantized straight into the rows when they are
    // the rows (stride C, no channel multiplier), else into a small buffer and spread out.
    const bool direct = in.stride == C && mult == 1;
    for_pixel_blocks(g.batch, HW, block, 4.0 * static_cast<double>(C), [&](int64_t n, int64_t p0, int64_t p1) {
      const float scale = in.scale[static_cast<size_t>(n)];
      const int32_t zero = zeros[static_cast<size_t>(n)];
      const QuantRun params{&scale, &zero, false};
      const float* src = x + (n * HW + p0) * C;
      uint8_t* dst = buf + (n * HW + p0) * in.stride;
      if (direct) {
        if (!k.quantize_run(src, (p1 - p0) * C, params, 0, 255, dst)) finite.store(false);
        return;
      }
      thread_local ScratchBuffer q_buf;
      auto* q = static_cast<uint8_t*>(q_buf.reserve(static_cast<size_t>(C * block)));
      if (!k.quantize_run(src, (p1 - p0) * C, params, 0, 255, q)) finite.store(false);
      spread_rows(q, p1 - p0, C, mult, in.stride, static_cast<uint8_t>(zero), dst);
    });
  } else {
    for_pixel_blocks(g.batch, HW, block, 4.0 * static_cast<double>(C), [&](int64_t n, int64_t p0, int64_t p1) {
      thread_local ScratchBuffer chw_buf;
      auto* chw = static_cast<uint8_t*>(chw_buf.reserve(static_cast<size_t>(C * block)));
      const float scale = in.scale[static_cast<size_t>(n)];
      const int32_t zero = zeros[static_cast<size_t>(n)];
      const QuantRun params{&scale, &zero, false};
      for (int64_t c = 0; c < C; ++c)
        if (!k.quantize_run(x + n * image + c * HW + p0, p1 - p0, params, 0, 255, chw + c * block)) finite.store(false);
      chw_to_nhwc(chw, block, 0, C, p1 - p0, mult, in.stride, static_cast<uint8_t>(zero), buf + (n * HW + p0) * in.stride);
    });
  }
  if (!finite.load()) throw std::invalid_argument("input holds NaN or Inf values; they cannot be quantized");
  in.data = buf;
  return in;
}

// An input already quantized (an integer chain): NHWC uint8 rows of in_channels bytes. The
// GEMM path reads them in place; the depthwise kernels want rows of padded_channels() bytes
// (a channel multiplier expanded), so they get a copy.
NhwcInput chained_input(const ConvSource& src, const ConvGeometry& g, const PackedConvWeight& w) {
  if (!(std::isfinite(src.scale) && src.scale > 0.0f))
    throw std::invalid_argument("input scale must be finite and > 0");
  if (src.zero < 0 || src.zero > 255)
    throw std::invalid_argument("input zero point " + std::to_string(src.zero) + " is outside 0..255");
  NhwcInput in;
  in.stride = input_stride(g, w);
  in.scale.assign(static_cast<size_t>(g.batch), src.scale);
  in.zeros.assign(static_cast<size_t>(g.batch), src.zero);
  const int64_t C = g.in_channels, P = g.batch * g.height * g.width;
  if (in.stride == C) {
    in.data = src.x_nhwc;
    return in;
  }
  const int64_t mult = w.depthwise() ? g.out_channels / g.in_channels : 1;
  auto* buf = static_cast<uint8_t*>(scratch().nhwc.reserve(static_cast<size_t>(std::max<int64_t>(1, P * in.stride))));
  const uint8_t zero = static_cast<uint8_t>(src.zero);
  parallel_rows(P, in.stride, 262144.0, [&](int64_t p0, int64_t p1) {
    spread_rows(src.x_nhwc + p0 * C, p1 - p0, C, mult, in.stride, zero, buf + p0 * in.stride);
  });
  in.data = buf;
  return in;
}

struct ConvOutput {
  int32_t* c_i32 = nullptr;   // NHWC rows of out_channels
  float* y_f32 = nullptr;
  const float* col_scale = nullptr;   // out_channels (float output)
  const float* bias = nullptr;        // out_channels or null
  // The call's last step (transpose to NCHW, requantization, the next layer's quantization)
  // on a finished run of NHWC rows: image n, output pixels [r0, r1), every channel. run_conv
  // calls it on the thread that computed those rows, right after, while they are in L1/L2
  // (a separate pass over the whole NHWC buffer read it back from memory: conv outputs are
  // megabytes). Elementwise or a transpose: the bits do not depend on the split.
  std::function<void(int64_t n, int64_t r0, int64_t r1)> finish;
};

// Output pixels per task: about this many bytes of NHWC output rows, so a task's rows are
// still in L2 when `finish` reads them.
constexpr int64_t kOutBlockBytes = 96 * 1024;

// `finish` over every image in blocks of 64 pixels, in parallel (the grouped GEMM path, where
// a task computes one group's channels only).
void finish_all(const ConvOutput& out, int64_t batch, int64_t R, int64_t M) {
  const int64_t blocks = (R + 63) / 64;
  auto task = [&](int64_t t) {
    const int64_t n = t / blocks, r0 = (t % blocks) * 64;
    out.finish(n, r0, std::min(R, r0 + 64));
  };
  if (get_num_threads() == 1 || static_cast<double>(batch) * R * M < 262144.0) run_serially(batch * blocks, task);
  else parallel_for(batch * blocks, task);
}

// Runs the convolution on an NHWC input into NHWC rows (batch * OH * OW of out_channels).
void run_conv(const NhwcInput& in, const PackedConvWeight& w,
              const ConvGeometry& g, const ConvOutput& out) {
  const KernelTable& k = kernels();
  const int64_t OH = g.out_height(), OW = g.out_width(), R = OH * OW, M = g.out_channels;
  const int64_t HW = g.height * g.width;
  const std::vector<int32_t>& zeros = in.zeros;
  if (g.batch == 0 || R == 0) return;
  const int threads = get_num_threads();
  const double macs = static_cast<double>(g.batch) * R * M * w.depth();

  if (w.depthwise()) {
    const int64_t CP = w.padded_channels();
    // Scales and bias padded to CP, as the kernels load whole blocks.
    std::vector<float> col_scale(static_cast<size_t>(CP), 0.0f), bias(static_cast<size_t>(CP), 0.0f);
    if (out.col_scale) std::copy(out.col_scale, out.col_scale + M, col_scale.begin());
    if (out.bias) std::copy(out.bias, out.bias + M, bias.begin());
    std::vector<uint8_t> zero_rows(static_cast<size_t>(CP * g.batch));
    for (int64_t n = 0; n < g.batch; ++n)
      std::memset(zero_rows.data() + n * CP, zeros[static_cast<size_t>(n)], static_cast<size_t>(CP));
    // Blocks of output rows of about kOutBlockBytes (and at least 4 per thread when parallel).
    // Each block a multiple of q rows where that keeps a block's first pixel a multiple of 16
    // (aligned destination lines for the transpose).
    const int64_t by_size = (OH * OW * M * 4 + kOutBlockBytes - 1) / kOutBlockBytes;
    const int64_t wanted = std::min<int64_t>(
        OH, std::max<int64_t>(by_size, threads == 1 || macs < kMinParallelMacs ? 1 : 4LL * threads));
    const int64_t q = 16 / std::gcd<int64_t>(OW, 16);
    const int64_t block_rows = round_up((OH + wanted - 1) / wanted, q);
    const int64_t row_tasks = (OH + block_rows - 1) / block_rows;
    auto task = [&](int64_t t) {
      const int64_t n = t / row_tasks, rt = t % row_tasks;
      DwConvProblem p;
      p.x = in.data + n * HW * in.stride;
      p.H = g.height;
      p.W = g.width;
      p.x_stride = in.stride;
      p.zero_row = zero_rows.data() + n * CP;
      p.x_zero = zeros[static_cast<size_t>(n)];
      p.C = M;
      p.CP = CP;
      p.kh = g.kernel_h;
      p.kw = g.kernel_w;
      p.stride_h = g.stride_h;
      p.stride_w = g.stride_w;
      p.dil_h = g.dilation_h;
      p.dil_w = g.dilation_w;
      p.pad_top = g.pad_top;
      p.pad_left = g.pad_left;
      p.OH = OH;
      p.OW = OW;
      p.w = w.dw_weights();
      p.tap_pairs = w.tap_pairs();
      p.ldc = M;
      if (out.c_i32) {
        p.c_i32 = out.c_i32 + n * R * M;
      } else {
        p.y_f32 = out.y_f32 + n * R * M;
        p.row_scale = in.scale[static_cast<size_t>(n)];
        p.col_scale = col_scale.data();
        p.bias = out.bias ? bias.data() : nullptr;
      }
      const int64_t oh0 = rt * block_rows, oh1 = std::min(OH, oh0 + block_rows);
      k.dwconv(p, oh0, oh1);
      out.finish(n, oh0 * OW, oh1 * OW);
    };
    const int64_t tasks = g.batch * row_tasks;
    if (tasks == 1 || threads == 1 || macs < kMinParallelMacs) run_serially(tasks, task);
    else parallel_for(tasks, task);
    return;
  }

  const int64_t G = g.groups, Cg = g.in_channels / G, Mg = M / G, K = w.depth();
  const int64_t KP = round_up(K, kGroupDepth), NP = round_up(Mg, kPanelCols);
  const int64_t panels = NP / kPanelCols;
  const int64_t mr = k.w8a8.mr;
  // Pixels per task: an A block of about 128 KB (it stays in L2 while the group's panels pass),
  // a whole number of the kernel's row steps.
  // With one group, also at most about kOutBlockBytes of output (at least 64 pixels), so
  // `finish` reads the task's rows from L2; a multiple of 16 pixels too (the transposes' tile:
  // aligned destination lines).
  const int64_t step = std::lcm<int64_t>(mr, 16);
  int64_t target = std::max<int64_t>(1, 131072 / KP);
  if (G == 1) target = std::min(target, std::max<int64_t>(64, kOutBlockBytes / (4 * M)));
  const int64_t block = std::max<int64_t>(step, std::min<int64_t>(round_up(target, step), round_up(R, step)));
  const int64_t blocks = (R + block - 1) / block;
  const bool direct = g.kernel_h == 1 && g.kernel_w == 1 && g.stride_h == 1 && g.stride_w == 1 &&
                      g.pad_top == 0 && g.pad_left == 0 && g.pad_bottom == 0 && g.pad_right == 0 &&
                      G == 1 && KP == K && in.stride == K;
  // Per group: column scales and bias padded to NP (the kernels read whole panels).
  std::vector<float> col_scale(static_cast<size_t>(G * NP), 0.0f), bias(static_cast<size_t>(G * NP), 0.0f);
  for (int64_t gi = 0; gi < G; ++gi) {
    if (out.col_scale) std::copy(out.col_scale + gi * Mg, out.col_scale + (gi + 1) * Mg, col_scale.begin() + gi * NP);
    if (out.bias) std::copy(out.bias + gi * Mg, out.bias + (gi + 1) * Mg, bias.begin() + gi * NP);
  }
  // One group whose channels fill the NHWC rows, no dilation along W: a kernel row's taps are
  // tap_run contiguous input bytes.
  const bool contiguous_taps = G == 1 && g.dilation_w == 1 && Cg == in.stride;
  const int64_t tap_run = g.kernel_w * Cg;
  const uint8_t* in_end = in.data + g.batch * HW * in.stride;
  auto task = [&](int64_t t) {
    const int64_t b = t % blocks, gi = (t / blocks) % G, n = t / (blocks * G);
    const int64_t r0 = b * block, rows = std::min(R, r0 + block) - r0;
    const PackedMatrix& pm = w.group(gi);
    const int32_t zero = zeros[static_cast<size_t>(n)];
    thread_local ScratchBuffer a_buf, row_buf;
    auto* row_data = static_cast<int32_t*>(row_buf.reserve(static_cast<size_t>(3 * rows) * sizeof(int32_t)));
    int32_t* row_sum = row_data;
    int32_t* row_zero = row_data + rows;
    auto* row_scale = reinterpret_cast<float*>(row_data + 2 * rows);
    const uint8_t* image = in.data + n * HW * in.stride;
    const uint8_t* a;
    int64_t lda;
    if (direct) {
      a = image + r0 * in.stride;
      lda = in.stride;
    } else {
      // 16 bytes of slack: a kernel row is copied 16 bytes at a time below.
      auto* rows_a = static_cast<uint8_t*>(a_buf.reserve(static_cast<size_t>(rows * KP + 16)));
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t oh = (r0 + r) / OW, ow = (r0 + r) % OW;
        uint8_t* dst = rows_a + r * KP;
        const int64_t iw0 = ow * g.stride_w - g.pad_left;
        const bool w_inside = contiguous_taps && iw0 >= 0 && iw0 + g.kernel_w <= g.width;
        // Taps [j_lo, j_hi) of a kernel row fall inside the image (contiguous taps only).
        const int64_t j_lo = std::min<int64_t>(g.kernel_w, std::max<int64_t>(0, -iw0));
        const int64_t j_hi = std::max<int64_t>(j_lo, std::min<int64_t>(g.kernel_w, g.width - iw0));
        for (int64_t i = 0; i < g.kernel_h; ++i) {
          const int64_t ih = oh * g.stride_h - g.pad_top + i * g.dilation_h;
          if (w_inside && ih >= 0 && ih < g.height) {
            // The kernel row's taps are one run of the input row. A run of up to 16 bytes (a
            // first layer's 3 x 1-5 channels) as one 16-byte copy: its overhang is
            // overwritten by the next run, or lands in the row's K padding (cleared below) or
            // the next A row (written after this one) or the slack.
            const uint8_t* src = image + (ih * g.width + iw0) * in.stride;
            if (tap_run <= 16 && src + 16 <= in_end) std::memcpy(dst, src, 16);
            else std::memcpy(dst, src, static_cast<size_t>(tap_run));
            dst += tap_run;
            continue;
          }
          if (contiguous_taps) {
            // A border pixel: the zero point for the taps outside, one run for those inside.
            if (ih < 0 || ih >= g.height) {
              std::memset(dst, zero, static_cast<size_t>(tap_run));
            } else {
              std::memset(dst, zero, static_cast<size_t>(j_lo * Cg));
              if (j_hi > j_lo)   // (no address formed for a pixel wholly outside the row)
                std::memcpy(dst + j_lo * Cg, image + (ih * g.width + iw0 + j_lo) * in.stride,
                            static_cast<size_t>((j_hi - j_lo) * Cg));
              std::memset(dst + j_hi * Cg, zero, static_cast<size_t>((g.kernel_w - j_hi) * Cg));
            }
            dst += tap_run;
            continue;
          }
          for (int64_t j = 0; j < g.kernel_w; ++j, dst += Cg) {
            const int64_t iw = ow * g.stride_w - g.pad_left + j * g.dilation_w;
            const bool inside = ih >= 0 && ih < g.height && iw >= 0 && iw < g.width;
            if (Cg <= 16) {   // a first layer's 1-4 channels: a library call per tap costs more
              if (inside) {
                const uint8_t* src = image + (ih * g.width + iw) * in.stride + gi * Cg;
                for (int64_t c = 0; c < Cg; ++c) dst[c] = src[c];
              } else {
                for (int64_t c = 0; c < Cg; ++c) dst[c] = static_cast<uint8_t>(zero);
              }
            } else if (inside) {
              std::memcpy(dst, image + (ih * g.width + iw) * in.stride + gi * Cg, static_cast<size_t>(Cg));
            } else {
              std::memset(dst, zero, static_cast<size_t>(Cg));
            }
          }
        }
        std::memset(dst, 0, static_cast<size_t>(KP - K));
      }
      a = rows_a;
      lda = KP;
    }
    for (int64_t r = 0; r < rows; ++r) {
      row_sum[r] = pm.symmetric() ? 0 : static_cast<int32_t>(static_cast<uint32_t>(k.sum_bytes(a + r * lda, K)));
      row_zero[r] = zero;
      row_scale[r] = in.scale.empty() ? 1.0f : in.scale[static_cast<size_t>(n)];
    }
    W8A8Problem p;
    p.M = rows;
    p.N = Mg;
    p.K = K;
    p.KP = KP;
    p.a = a;
    p.lda = lda;
    p.row_sum = row_sum;
    p.row_zero = row_zero;
    p.b_panels = pm.panels();
    p.col_zero = pm.col_zero();
    p.col_corr = pm.col_corr();
    p.b_symmetric = pm.symmetric();
    p.ldc = M;
    const int64_t offset = (n * R + r0) * M + gi * Mg;
    if (out.c_i32) {
      p.c_i32 = out.c_i32 + offset;
    } else {
      p.y_f32 = out.y_f32 + offset;
      p.row_scale = row_scale;
      p.col_scale = col_scale.data() + gi * NP;
      p.bias = out.bias ? bias.data() + gi * NP : nullptr;
    }
    k.w8a8.run(p, 0, rows, 0, panels);
    if (G == 1) out.finish(n, r0, r0 + rows);
  };
  const int64_t tasks = g.batch * G * blocks;
  if (tasks == 1 || threads == 1 || macs < kMinParallelMacs) run_serially(tasks, task);
  else parallel_for(tasks, task);
  if (G > 1) finish_all(out, g.batch, R, M);
}

// Image n's NHWC rows [r0, r1) (of M channels, R pixels per image) -> NCHW, by the transpose
// kernels (bits moved only).
void rows_to_nchw32(const void* src, int64_t n, int64_t r0, int64_t r1, int64_t R, int64_t M, void* dst) {
  kernels().transpose32(static_cast<const uint32_t*>(src) + (n * R + r0) * M, M, r1 - r0, M,
                        static_cast<uint32_t*>(dst) + n * M * R + r0, R);
}
void rows_to_nchw8(const uint8_t* src, int64_t n, int64_t r0, int64_t r1, int64_t R, int64_t M, uint8_t* dst) {
  kernels().transpose8(src + (n * R + r0) * M, M, r1 - r0, M, dst + n * M * R + r0, R);
}

// acc[i] += b[i] modulo 2^32 (int32 wrapping, as the reference's int32 arithmetic), eight
// lanes at a time in the compiler's generic vectors (the -O2 build does not vectorize the loop).
void add_wrapping(int32_t* acc, const int32_t* b, int64_t n) {
  typedef uint32_t u32x8 __attribute__((vector_size(32)));
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    u32x8 x, y;
    std::memcpy(&x, acc + i, sizeof x);
    std::memcpy(&y, b + i, sizeof y);
    x += y;
    std::memcpy(acc + i, &x, sizeof x);
  }
  for (; i < n; ++i) acc[i] = static_cast<int32_t>(static_cast<uint32_t>(acc[i]) + static_cast<uint32_t>(b[i]));
}

void check_bias_finite(const float* bias, int64_t n) {
  if (bias == nullptr) return;
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(bias[i])) throw std::invalid_argument("bias holds NaN or Inf values");
}

}  // namespace

void conv_integer(const void* x, ElemType x_type, int32_t x_zero, const PackedConvWeight& w,
                  const ConvGeometry& g, int32_t* y) {
  check_conv_geometry(g, w);
  const int64_t R = g.out_height() * g.out_width(), M = g.out_channels;
  if (g.batch == 0) return;
  NhwcInput in = integer_input(x, x_type, x_zero, g, w);
  auto* rows = static_cast<int32_t*>(scratch().out.reserve(static_cast<size_t>(g.batch * R * M) * sizeof(int32_t)));
  ConvOutput out;
  out.c_i32 = rows;
  out.finish = [&](int64_t n, int64_t r0, int64_t r1) { rows_to_nchw32(rows, n, r0, r1, R, M, y); };
  run_conv(in, w, g, out);
}

void qlinear_conv(const void* x, ElemType x_type, int32_t x_zero, const PackedConvWeight& w,
                  const ConvGeometry& g, const int32_t* bias, const float* multiplier,
                  int32_t y_zero, QType y_type, void* y) {
  check_conv_geometry(g, w);
  if (y_type != QType::uint8 && y_type != QType::int8) throw std::invalid_argument("y must be uint8 or int8");
  const int32_t qmin = qtype_min(y_type), qmax = qtype_max(y_type);
  if (y_zero < qmin || y_zero > qmax)
    throw std::invalid_argument("y_zero_point " + std::to_string(y_zero) + " is outside the range of y's type");
  const int64_t R = g.out_height() * g.out_width(), M = g.out_channels;
  if (g.batch == 0) return;
  NhwcInput in = integer_input(x, x_type, x_zero, g, w);
  Scratch& s = scratch();
  auto* rows = static_cast<int32_t*>(s.out.reserve(static_cast<size_t>(g.batch * R * M) * sizeof(int32_t)));
  // acc + bias (int32, wrapping as the reference's int32 arithmetic), then the requantization
  // kernel per NHWC row, with one multiplier per channel, then the byte transpose.
  auto* q = static_cast<uint8_t*>(s.ab.reserve(static_cast<size_t>(std::max<int64_t>(1, g.batch * R * M))));
  const KernelTable& k = kernels();
  ConvOutput out;
  out.c_i32 = rows;
  out.finish = [&](int64_t n, int64_t r0, int64_t r1) {
    for (int64_t r = n * R + r0; r < n * R + r1; ++r) {
      if (bias) add_wrapping(rows + r * M, bias, M);
      k.requantize_run(rows + r * M, M, multiplier, true, y_zero, qmin, qmax, q + r * M);
    }
    rows_to_nchw8(q, n, r0, r1, R, M, static_cast<uint8_t*>(y));
  };
  run_conv(in, w, g, out);
}

void conv_float_chain(const ConvSource& x, const PackedConvWeight& w, const ConvGeometry& g,
                      const float* col_scale, const float* bias, float clamp_lo, float clamp_hi,
                      const ConvSink& y) {
  check_conv_geometry(g, w);
  const int64_t max_depth = w.symmetric() ? kLinearMaxDepth : kLinearMaxDepthAsymmetric;
  if (w.depth() > max_depth)
    throw std::invalid_argument("the weight's depth (in_channels / group * kernel size = " + std::to_string(w.depth()) +
                                ") exceeds " + std::to_string(max_depth) +
                                ", the largest with an exact int32 accumulator");
  if (std::isnan(clamp_lo) || std::isnan(clamp_hi) || clamp_lo > clamp_hi)
    throw std::invalid_argument("clamp bounds must be ordered and not NaN");
  if (y.y_nhwc) {
    if (!(std::isfinite(y.scale) && y.scale > 0.0f))
      throw std::invalid_argument("output scale must be finite and > 0");
    if (y.zero < 0 || y.zero > 255)
      throw std::invalid_argument("output zero point " + std::to_string(y.zero) + " is outside 0..255");
  }
  check_bias_finite(bias, g.out_channels);
  const int64_t R = g.out_height() * g.out_width(), M = g.out_channels;
  if (g.batch == 0) return;
  if ((x.x == nullptr) == (x.x_nhwc == nullptr)) throw std::invalid_argument("exactly one input (float or quantized)");
  if ((y.y == nullptr) == (y.y_nhwc == nullptr)) throw std::invalid_argument("exactly one output (float or quantized)");
  NhwcInput in = x.x_nhwc ? chained_input(x, g, w) : float_input(x.x, x.float_nhwc, x.act, g, w);
  // An NHWC float output is the kernels' rows themselves.
  auto* rows = y.y && y.float_nhwc
                   ? y.y
                   : static_cast<float*>(scratch().out.reserve(static_cast<size_t>(g.batch * R * M) * sizeof(float)));
  const bool clamped = clamp_lo > -std::numeric_limits<float>::infinity() ||
                       clamp_hi < std::numeric_limits<float>::infinity();
  auto clamp = [clamped, clamp_lo, clamp_hi](float* v, int64_t n) {
    if (clamped)
      for (int64_t i = 0; i < n; ++i) v[i] = std::min(std::max(v[i], clamp_lo), clamp_hi);
  };
  const KernelTable& k = kernels();
  const QuantRun params{&y.scale, &y.zero, false};
  std::atomic<bool> finite{true};
  ConvOutput out;
  out.y_f32 = rows;
  out.col_scale = col_scale;
  out.bias = bias;
  if (y.y) {
    out.finish = [&](int64_t n, int64_t r0, int64_t r1) {
      clamp(rows + (n * R + r0) * M, (r1 - r0) * M);
      if (!y.float_nhwc) rows_to_nchw32(rows, n, r0, r1, R, M, y.y);
    };
  } else {
    // The next layer's quantization, on the NHWC rows as they are (elementwise: the layout
    // does not change a value).
    out.finish = [&](int64_t n, int64_t r0, int64_t r1) {
      for (int64_t r = n * R + r0; r < n * R + r1; r += 64) {
        const int64_t count = (std::min(n * R + r1, r + 64) - r) * M;
        clamp(rows + r * M, count);
        if (!k.quantize_run(rows + r * M, count, params, 0, 255, y.y_nhwc + r * M)) finite.store(false);
      }
    };
  }
  run_conv(in, w, g, out);
  if (!finite.load())
    throw std::invalid_argument("the output holds NaN or Inf values; they cannot be quantized for the next layer");
}

void conv_float(const float* x, const ConvActivation& act, const PackedConvWeight& w,
                const ConvGeometry& g, const float* col_scale, const float* bias, float clamp_lo,
                float clamp_hi, float* y) {
  ConvSource src;
  src.x = x;
  src.act = act;
  ConvSink sink;
  sink.y = y;
  conv_float_chain(src, w, g, col_scale, bias, clamp_lo, clamp_hi, sink);
}

}  // namespace lowbit
