// Running lowbit's parallel jobs on an OpenMP runtime that is already in the process (PyTorch's
// libgomp). Inside a PyTorch model both pools would otherwise share the cores: after each of its
// ops OpenMP's workers spin for a while, and lowbit's workers get the cores only when they stop.
// On OpenMP's own threads lowbit's jobs start at once on the workers that are spinning anyway.
#pragma once

#include <cstdint>
#include <functional>

#include "lowbit/runtime.h"  // use_openmp_runtime, use_own_threads, parallel_runtime_name

namespace lowbit {

// Runs the tasks on up to max_threads threads of the OpenMP runtime (fewer if its own thread
// setting for the calling thread is lower). Returns false if no OpenMP runtime is in use.
bool openmp_parallel_for(int64_t n_tasks, int max_threads, const std::function<void(int64_t)>& fn);

}  // namespace lowbit
