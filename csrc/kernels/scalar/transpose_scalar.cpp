// Block transposes, scalar (contract: Transpose8Fn / Transpose32Fn in kernels/kernel_api.h): the
// layout changes between the API's NCHW and the kernels' NHWC. Tiles of 16 x 16 so that the
// source rows of a tile stay in L1 while the destination is written row by row.
#include <algorithm>
#include <cstdint>

#include "kernels/isa_kernels.h"

namespace lowbit {
namespace scalar {

namespace {
template <typename T>
void transpose_tiles(const T* src, int64_t ld_src, int64_t rows, int64_t cols, T* dst, int64_t ld_dst) {
  for (int64_t r0 = 0; r0 < rows; r0 += 16) {
    const int64_t r1 = std::min(rows, r0 + 16);
    for (int64_t c0 = 0; c0 < cols; c0 += 16) {
      const int64_t c1 = std::min(cols, c0 + 16);
      for (int64_t c = c0; c < c1; ++c)
        for (int64_t r = r0; r < r1; ++r) dst[c * ld_dst + r] = src[r * ld_src + c];
    }
  }
}
}  // namespace

void transpose8(const uint8_t* src, int64_t ld_src, int64_t rows, int64_t cols, uint8_t* dst, int64_t ld_dst) {
  transpose_tiles(src, ld_src, rows, cols, dst, ld_dst);
}

void transpose32(const uint32_t* src, int64_t ld_src, int64_t rows, int64_t cols, uint32_t* dst,
                 int64_t ld_dst) {
  transpose_tiles(src, ld_src, rows, cols, dst, ld_dst);
}

}  // namespace scalar
}  // namespace lowbit
