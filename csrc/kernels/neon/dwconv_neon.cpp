// Depthwise convolution, NEON (contract: DwConvProblem in kernels/kernel_api.h). Per output
// pixel, 8 channels at a time: x - z widened to int16 (vsubl_u8, exact as a signed value),
// the pair's weights de-interleaved by vld2q_s16, and both taps multiplied and accumulated
// into int32 by vmlal_s16 (exact: |x - z| * |w - zw| <= 255 * 255).
#include <arm_neon.h>

#include <cstring>
#include <vector>

#include "kernels/dwconv_taps.h"
#include "kernels/isa_kernels.h"

namespace lowbit {
namespace neon {

void dwconv(const DwConvProblem& p, int64_t oh_begin, int64_t oh_end) {
  std::vector<const uint8_t*> taps(static_cast<size_t>(2 * p.tap_pairs));
  const uint8x8_t z8 = vdup_n_u8(static_cast<uint8_t>(p.x_zero));
  const float32x4_t row_scale = vdupq_n_f32(p.row_scale);
  for (int64_t oh = oh_begin; oh < oh_end; ++oh) {
    for (int64_t ow = 0; ow < p.OW; ++ow) {
      dw_tap_rows(p, oh, ow, taps.data());
      const int64_t row = (oh * p.OW + ow) * p.ldc;
      for (int64_t c = 0; c < p.CP; c += 8) {
        if (c >= p.C) break;
        int32x4_t acc0 = vdupq_n_s32(0), acc1 = vdupq_n_s32(0);
        const int16_t* w = p.w + c * 2;
        for (int64_t t = 0; t < p.tap_pairs; ++t, w += p.CP * 2) {
          const int16x8_t d0 = vreinterpretq_s16_u16(vsubl_u8(vld1_u8(taps[2 * t] + c), z8));
          const int16x8_t d1 = vreinterpretq_s16_u16(vsubl_u8(vld1_u8(taps[2 * t + 1] + c), z8));
          const int16x8x2_t wv = vld2q_s16(w);
          acc0 = vmlal_s16(acc0, vget_low_s16(d0), vget_low_s16(wv.val[0]));
          acc0 = vmlal_s16(acc0, vget_low_s16(d1), vget_low_s16(wv.val[1]));
          acc1 = vmlal_high_s16(acc1, d0, wv.val[0]);
          acc1 = vmlal_high_s16(acc1, d1, wv.val[1]);
        }
        const int64_t n = p.C - c < 8 ? p.C - c : 8;
        int32_t ibuf[8];
        float fbuf[8];
        if (p.c_i32) {
          vst1q_s32(ibuf, acc0);
          vst1q_s32(ibuf + 4, acc1);
          std::memcpy(p.c_i32 + row + c, ibuf, static_cast<size_t>(n) * 4);
        } else {
          const float32x4_t b0 = p.bias ? vld1q_f32(p.bias + c) : vdupq_n_f32(0.0f);
          const float32x4_t b1 = p.bias ? vld1q_f32(p.bias + c + 4) : vdupq_n_f32(0.0f);
          vst1q_f32(fbuf, vfmaq_f32(b0, vcvtq_f32_s32(acc0), vmulq_f32(row_scale, vld1q_f32(p.col_scale + c))));
          vst1q_f32(fbuf + 4, vfmaq_f32(b1, vcvtq_f32_s32(acc1), vmulq_f32(row_scale, vld1q_f32(p.col_scale + c + 4))));
          std::memcpy(p.y_f32 + row + c, fbuf, static_cast<size_t>(n) * 4);
        }
      }
    }
  }
}

}  // namespace neon
}  // namespace lowbit
