// A persistent pool of worker threads, or (runtime/openmp_runtime.h) PyTorch's OpenMP threads.
// parallel_for hands out task indices; which thread runs a task never changes its result,
// so kernels that write disjoint outputs per task are deterministic for any thread count.
#pragma once

#include <cstdint>
#include <functional>

namespace lowbit {

int usable_cores();  // CPUs in this process's affinity mask
int thread_cap();    // lowbit::max_num_threads()

// Runs fn(task) for task in [0, n_tasks), spread over at most get_num_threads() threads.
// Nested calls, and calls made while another thread is using the pool, run serially in the
// calling thread, so concurrent callers are always safe.
void parallel_for(int64_t n_tasks, const std::function<void(int64_t)>& fn);

// Runs every task in the calling thread, marked as inside a parallel region.
void run_serially(int64_t n_tasks, const std::function<void(int64_t)>& fn);
// Whether the calling thread is running a task (its own parallel_for calls then run serially).
bool inside_parallel_region();
void mark_parallel_region(bool inside);

int pool_num_threads();
void pool_set_num_threads(int n);

// Runs fn(m0, m1) over the rows [0, M) of an M x K operand (row preparation before a GEMM):
// in up to 4 tasks per thread when every thread gets 2 rows and M * K >= min_elements, else
// in the calling thread.
template <typename Fn>
void parallel_rows(int64_t M, int64_t K, double min_elements, const Fn& fn) {
  const int threads = pool_num_threads();
  if (threads > 1 && M >= 2 * threads && static_cast<double>(M) * K >= min_elements) {
    const int64_t tasks = M < 4LL * threads ? M : 4LL * threads;
    parallel_for(tasks, [&](int64_t t) { fn(M * t / tasks, M * (t + 1) / tasks); });
  } else {
    fn(0, M);
  }
}

}  // namespace lowbit
