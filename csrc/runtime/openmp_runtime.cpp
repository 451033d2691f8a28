#include "runtime/openmp_runtime.h"

#include <dlfcn.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <vector>

#include "runtime/task_slices.h"
#include "runtime/thread_pool.h"

namespace lowbit {

namespace {

// The GNU OpenMP ABI, which libgomp defines and LLVM's and Intel's runtimes also export.
struct OpenMpRuntime {
  std::string path;
  pid_t process;  // a runtime is only usable in the process that loaded it (not after fork)
  void (*parallel)(void (*body)(void*), void* data, unsigned num_threads, unsigned flags);
  int (*thread_num)();
  int (*max_threads)();
};

// Runtimes are never unloaded or freed: a thread of theirs may still be leaving a job. The
// registry lets a repeated switch to the same library reuse its entry.
std::atomic<const OpenMpRuntime*> g_runtime{nullptr};
std::mutex g_registry_mutex;
std::vector<const OpenMpRuntime*>& registry() {
  static auto* runtimes = new std::vector<const OpenMpRuntime*>();
  return *runtimes;
}

struct OpenMpJob {
  const OpenMpRuntime* runtime;
  const std::function<void(int64_t)>* fn;
  TaskSlice* slices;
  int participants;
  TaskError error;
};

// Runs on each thread of the OpenMP team; nothing may unwind through the runtime's C frames
// (run_task_slices catches every task's exception).
void run_on_team_thread(void* data) noexcept {
  auto* job = static_cast<OpenMpJob*>(data);
  const int participant = job->runtime->thread_num();
  if (participant < 0 || participant >= job->participants) return;
  const bool outer = inside_parallel_region();
  mark_parallel_region(true);
  run_task_slices(job->slices, job->participants, participant, *job->fn, &job->error);
  mark_parallel_region(outer);
}

// An OpenMP runtime is not usable in the child of fork() (its worker threads are gone; libgomp
// may hang there), so the child goes back to lowbit's own pool, which rebuilds itself.
void forget_runtime_in_child() {
  g_runtime.store(nullptr, std::memory_order_relaxed);
  new (&g_registry_mutex) std::mutex();  // the parent may have held it at fork
}

}  // namespace

// dlopen finds a runtime that is already loaded (PyTorch's) by its path and shares it; the
// handle is never closed.
void use_openmp_runtime(const std::string& library_path) {
  static const int registered = pthread_atfork(nullptr, nullptr, &forget_runtime_in_child);
  (void)registered;
  std::lock_guard<std::mutex> lock(g_registry_mutex);
  for (const OpenMpRuntime* known : registry()) {
    if (known->path != library_path) continue;
    if (known->process != getpid())
      throw std::runtime_error("the OpenMP runtime '" + library_path + "' was in use before this " +
                               "process was forked and its threads do not exist here");
    g_runtime.store(known, std::memory_order_release);
    return;
  }
  void* handle = dlopen(library_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) throw std::runtime_error("cannot load OpenMP runtime '" + library_path + "': " + dlerror());
  auto runtime = std::make_unique<OpenMpRuntime>();
  runtime->path = library_path;
  runtime->process = getpid();
  runtime->parallel = reinterpret_cast<decltype(runtime->parallel)>(dlsym(handle, "GOMP_parallel"));
  runtime->thread_num = reinterpret_cast<int (*)()>(dlsym(handle, "omp_get_thread_num"));
  runtime->max_threads = reinterpret_cast<int (*)()>(dlsym(handle, "omp_get_max_threads"));
  if (!runtime->parallel || !runtime->thread_num || !runtime->max_threads)
    throw std::runtime_error("'" + library_path +
                             "' is not an OpenMP runtime (no GOMP_parallel / omp_get_thread_num)");
  registry().push_back(runtime.get());
  g_runtime.store(runtime.release(), std::memory_order_release);
}

void use_own_threads() { g_runtime.store(nullptr, std::memory_order_release); }

std::string parallel_runtime_name() {
  const OpenMpRuntime* runtime = g_runtime.load(std::memory_order_acquire);
  return runtime ? "openmp:" + runtime->path : "lowbit";
}

bool openmp_parallel_for(int64_t n_tasks, int max_threads, const std::function<void(int64_t)>& fn) {
  const OpenMpRuntime* runtime = g_runtime.load(std::memory_order_acquire);
  if (!runtime) return false;
  const int participants = static_cast<int>(
      std::min<int64_t>({n_tasks, max_threads, std::max(runtime->max_threads(), 1)}));
  if (participants <= 1) {
    run_serially(n_tasks, fn);
    return true;
  }
  std::unique_ptr<TaskSlice[]> slices(new TaskSlice[participants]);
  split_tasks(slices.get(), participants, n_tasks);
  OpenMpJob job{runtime, &fn, slices.get(), participants, {}};
  // The team may come out smaller than asked (OMP_DYNAMIC, thread limits); its members then
  // steal the missing members' slices, so every task still runs.
  runtime->parallel(&run_on_team_thread, &job, static_cast<unsigned>(participants), 0);
  if (job.error.first) std::rethrow_exception(job.error.first);
  return true;
}

}  // namespace lowbit
