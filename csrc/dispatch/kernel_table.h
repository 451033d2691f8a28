// The one place that decides which kernels run.
#pragma once

#include "kernels/kernel_api.h"
#include "lowbit/runtime.h"

namespace lowbit {

const KernelTable& kernels();            // the active ISA's kernels
const KernelTable& kernels_for(Isa isa);  // throws std::runtime_error if unavailable

}  // namespace lowbit
