// The input pixel each tap of one depthwise output pixel reads (DwConvProblem): shared by every
// path's dwconv kernel. Plain C++ with internal linkage (an anonymous namespace), so each ISA's
// translation unit gets its own copy and no SIMD-compiled inline function can leak into another
// path (the ODR trap of headers shared across ISA flags).
#pragma once

#include <cstdint>

#include "kernels/kernel_api.h"

namespace lowbit {
namespace {

// taps[0 .. 2 * tap_pairs): the NHWC pixel tap t of output pixel (oh, ow) reads, row-major over
// (kh, kw), or zero_row where the tap falls in the padding; the odd last tap's partner reads
// zero_row too (its weight is 0).
inline void dw_tap_rows(const DwConvProblem& p, int64_t oh, int64_t ow, const uint8_t** taps) {
  int64_t t = 0;
  for (int64_t i = 0; i < p.kh; ++i) {
    const int64_t ih = oh * p.stride_h - p.pad_top + i * p.dil_h;
    const bool row_inside = ih >= 0 && ih < p.H;
    for (int64_t j = 0; j < p.kw; ++j) {
      const int64_t iw = ow * p.stride_w - p.pad_left + j * p.dil_w;
      taps[t++] = row_inside && iw >= 0 && iw < p.W ? p.x + (ih * p.W + iw) * p.x_stride
                                                    : p.zero_row;
    }
  }
  for (; t < 2 * p.tap_pairs; ++t) taps[t] = p.zero_row;
}

}  // namespace
}  // namespace lowbit
