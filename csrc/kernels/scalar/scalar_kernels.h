// Scalar reference kernels (fallback path and test oracle).
#pragma once

#include "kernels/kernel_api.h"

namespace lowbit {
namespace scalar {

bool quantize_run(const float* x, int64_t n, QuantRun p, int32_t qmin, int32_t qmax, uint8_t* out);
void dequantize_run(const void* q, int elem_type, int64_t n, QuantRun p, float* out);
bool min_max(const float* x, int64_t n, float* mn, float* mx);
bool quantize_row_u8(const float* x, int64_t k, int64_t kp, uint8_t* out, float* scale,
                     int32_t* zero, int32_t* row_sum);
void requantize_run(const int32_t* acc, int64_t n, const float* multiplier, bool per_element,
                    int32_t zero, int32_t qmin, int32_t qmax, uint8_t* out);
uint64_t sum_bytes(const uint8_t* data, int64_t n);
void pack_b_groups(const uint8_t* b, int64_t ldb, int64_t K, int64_t g_begin, int64_t g_end,
                   uint8_t flip, int8_t* panel, int32_t* col_sums);
void pack_bt_groups(const uint8_t* w, int64_t ldw, int64_t g_begin, int64_t g_end, uint8_t flip,
                    int8_t* panel, int32_t* col_sums);
void w8a8(const W8A8Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
          int64_t panel_end);
void w4a8(const W4Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
          int64_t panel_end);
void w4f32(const W4Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
           int64_t panel_end);
void w8f32(const W8F32Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
           int64_t panel_end);

}  // namespace scalar
}  // namespace lowbit
