// The DRAM read bandwidth probe (see memory_bandwidth.h): lowbit's own threads stream one buffer
// through the active ISA's sum_bytes kernel, each thread its share, the best of `repeats` passes.
#include "bench/memory_bandwidth.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "dispatch/kernel_table.h"
#include "lowbit/lowbit.h"
#include "runtime/aligned_buffer.h"
#include "runtime/thread_pool.h"

namespace lowbit {
namespace bench {

double memory_read_bandwidth(size_t nbytes, int repeats) {
  const size_t bytes = std::max<size_t>(nbytes, 1 << 20);
  auto* data = static_cast<uint8_t*>(aligned_alloc_bytes(bytes));
  std::memset(data, 1, bytes);
  const KernelTable& k = kernels();
  const int threads = get_num_threads();
  std::vector<uint64_t> sinks(static_cast<size_t>(threads) * 8, 0);  // a cache line per thread
  double best = 0.0;
  for (int rep = 0; rep < std::max(repeats, 1); ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    parallel_for(threads, [&](int64_t t) {
      const size_t begin = round_up(bytes * t / threads, 64), end = round_up(bytes * (t + 1) / threads, 64);
      const size_t stop = std::min(end, bytes);
      if (begin < stop) sinks[t * 8] += k.sum_bytes(data + begin, static_cast<int64_t>(stop - begin));
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, static_cast<double>(bytes) / s / 1e9);
  }
  volatile uint64_t keep = 0;
  for (uint64_t v : sinks) keep = keep + v;
  (void)keep;
  std::free(data);
  return best;
}

}  // namespace bench
}  // namespace lowbit
