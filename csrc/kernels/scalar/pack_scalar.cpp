// Packing of row-major B into the panel layout, element by element: the fallback of every path
// without its own packer, and the reference the others are tested against.
#include "kernels/isa_kernels.h"

namespace lowbit {
namespace scalar {

void pack_b_groups(const uint8_t* b, int64_t ldb, int64_t K, int64_t g_begin, int64_t g_end,
                   uint8_t flip, int8_t* panel, int32_t* col_sums) {
  for (int64_t g = g_begin; g < g_end; ++g)
    for (int i = 0; i < 4; ++i) {
      const int64_t k = 4 * g + i;
      for (int64_t c = 0; c < kPanelCols; ++c) {
        const uint8_t v = k < K ? static_cast<uint8_t>(b[k * ldb + c] ^ flip) : 0;
        panel[g * kGroupBytes + c * 4 + i] = static_cast<int8_t>(v);
        col_sums[c] += static_cast<int8_t>(v);
      }
    }
}

void pack_bt_groups(const uint8_t* w, int64_t ldw, int64_t g_begin, int64_t g_end, uint8_t flip,
                    int8_t* panel, int32_t* col_sums) {
  for (int64_t c = 0; c < kPanelCols; ++c)
    for (int64_t g = g_begin; g < g_end; ++g)
      for (int i = 0; i < 4; ++i) {
        const auto v = static_cast<uint8_t>(w[c * ldw + 4 * g + i] ^ flip);
        panel[g * kGroupBytes + c * 4 + i] = static_cast<int8_t>(v);
        col_sums[c] += static_cast<int8_t>(v);
      }
}

}  // namespace scalar
}  // namespace lowbit
