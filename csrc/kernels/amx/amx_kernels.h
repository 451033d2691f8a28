// Entry points of the AMX translation units (only declared here; no SIMD code). Each source is
// built twice: namespace amx (the tile instructions) and amx_emu (the software tile model of
// amx_model.h, a test-only path), with the same signatures.
#pragma once

#include "kernels/kernel_api.h"

namespace lowbit {
namespace amx {
void w8a8(const W8A8Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
          int64_t panel_end);
void w4a8(const W4Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
          int64_t panel_end);
}  // namespace amx
namespace amx_emu {
void w8a8(const W8A8Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
          int64_t panel_end);
void w4a8(const W4Problem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
          int64_t panel_end);
}  // namespace amx_emu
}  // namespace lowbit
