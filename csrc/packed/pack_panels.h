// Packing of the B operand into 64-column panels, shared by PackedMatrix::pack (the whole
// matrix, once) and matmul_integer_unpacked (a few panels at a time into scratch, per task).
#pragma once

#include <cstdint>

#include "lowbit/types.h"

namespace lowbit {

// Throws std::invalid_argument for a negative size, an int32 B or zero points that are not 0,
// 1 or N values within B's type.
void check_b_operand(ElemType type, int64_t K, int64_t N, const int32_t* zero_point,
                     int64_t zero_point_count);

// Panels [p_begin, p_end) of B (K x N bytes at b, strides in elements) into `panels` (panel p
// at panels + (p - p_begin) * 64 * KP), with the per-column data of those columns from index 0:
// col_zero (effective zero point of the stored bytes), col_corr (column sum - K * col_zero)
// and, if not null, zero_points (as given). Parallel over the pool when `parallel`.
void pack_panels(const void* b, ElemType type, int64_t K, int64_t N, int64_t stride_k,
                 int64_t stride_n, const int32_t* zero_point, int64_t zero_point_count, int64_t KP,
                 int64_t p_begin, int64_t p_end, int8_t* panels, int32_t* col_zero,
                 int32_t* col_corr, int32_t* zero_points, bool parallel);

}  // namespace lowbit
