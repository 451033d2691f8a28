// Entry points of the AVX-VNNI translation units (256-bit VEX vpdpbusd; only declared here).
#pragma once

#include "kernels/kernel_api.h"

namespace lowbit {
namespace avxvnni {

void w8a8(const W8A8Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
          int64_t panel_end);

}  // namespace avxvnni
}  // namespace lowbit
