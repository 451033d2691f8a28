// The DRAM read bandwidth probe of the benchmark harness (python/lowbit/benchmark: the
// "dram_read" rows cold measurements are compared to), bound as _C.memory_read_bandwidth.
// Bench-only code: built into the Python extension, not into lowbit_core or its public API.
#pragma once

#include <cstddef>

namespace lowbit {
namespace bench {

// Sequential read bandwidth of this machine's memory in GB/s: the best of `repeats` passes of the
// active ISA's sum_bytes over max(nbytes, 1 MB), split over get_num_threads() threads.
double memory_read_bandwidth(size_t nbytes, int repeats);

}  // namespace bench
}  // namespace lowbit
