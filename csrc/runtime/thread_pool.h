// A persistent pool of worker threads (no OpenMP, so it never fights PyTorch's pool).
// parallel_for hands out task indices; which thread runs a task never changes its result,
// so kernels that write disjoint outputs per task are deterministic for any thread count.
#pragma once

#include <cstdint>
#include <functional>

namespace lowbit {

int usable_cores();  // CPUs in this process's affinity mask

// Runs fn(task) for task in [0, n_tasks), spread over at most get_num_threads() threads.
// Nested calls, and calls made while another thread is using the pool, run serially in the
// calling thread, so concurrent callers are always safe.
void parallel_for(int64_t n_tasks, const std::function<void(int64_t)>& fn);

int pool_num_threads();
void pool_set_num_threads(int n);

}  // namespace lowbit
