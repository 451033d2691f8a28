// Entry points of the AVX2 translation units (only declared here; no SIMD code).
#pragma once

#include "kernels/kernel_api.h"

namespace lowbit {
namespace avx2 {

void gemm(const GemmProblem& p, int64_t m_begin, int64_t m_end, int64_t panel_begin,
          int64_t panel_end);

}  // namespace avx2
}  // namespace lowbit
