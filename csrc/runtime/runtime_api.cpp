// Public runtime controls: thread count and a memory bandwidth probe for benchmarks.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "lowbit/lowbit.h"
#include "runtime/aligned_buffer.h"
#include "runtime/thread_pool.h"

namespace lowbit {

int get_num_threads() { return pool_num_threads(); }
void set_num_threads(int n) { pool_set_num_threads(n); }
int default_num_threads() { return usable_cores(); }

double memory_read_bandwidth(size_t nbytes, int repeats) {
  const size_t words = std::max<size_t>(nbytes / sizeof(uint64_t), 1024);
  auto* data = static_cast<uint64_t*>(aligned_alloc_bytes(words * sizeof(uint64_t)));
  std::memset(data, 1, words * sizeof(uint64_t));
  const int threads = get_num_threads();
  std::vector<uint64_t> sinks(static_cast<size_t>(threads) * 8, 0);
  double best = 0.0;
  for (int rep = 0; rep < std::max(repeats, 1); ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    parallel_for(threads, [&](int64_t t) {
      const size_t begin = words * t / threads, end = words * (t + 1) / threads;
      uint64_t acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      size_t i = begin;
      for (; i + 8 <= end; i += 8)
        for (int j = 0; j < 8; ++j) acc[j] += data[i + j];
      for (; i < end; ++i) acc[0] += data[i];
      for (int j = 0; j < 8; ++j) sinks[t * 8 + j] += acc[j];
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, static_cast<double>(words * sizeof(uint64_t)) / s / 1e9);
  }
  volatile uint64_t keep = 0;
  for (uint64_t v : sinks) keep = keep + v;
  (void)keep;
  std::free(data);
  return best;
}

}  // namespace lowbit
