#include "runtime/thread_pool.h"

#include "runtime/openmp_runtime.h"
#include "runtime/task_slices.h"

#include "lowbit/runtime.h"

#include <pthread.h>
#include <sched.h>

#include <new>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace lowbit {

int usable_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int>(hw) : 1;
}

int thread_cap() {
  const int hw = static_cast<int>(std::thread::hardware_concurrency());
  const int cpus = std::max(usable_cores(), hw);
  return std::max(kMinThreadCap, kThreadsPerCpu * cpus);
}

namespace {

thread_local bool t_inside_parallel_region = false;

class ThreadPool {
 public:
  // Pools are leaked on purpose: workers must not be joined during static destruction at exit,
  // and a forked child must not touch its parent's (its threads do not exist there).
  static ThreadPool& instance() {
    ThreadPool* pool = current().load(std::memory_order_acquire);
    if (pool) return *pool;
    std::lock_guard<std::mutex> lock(creation_mutex());
    pool = current().load(std::memory_order_relaxed);
    if (!pool) {
      static const int registered = pthread_atfork(nullptr, nullptr, &ThreadPool::after_fork_in_child);
      (void)registered;
      pool = new ThreadPool(requested_threads() > 0 ? requested_threads() : usable_cores());
      current().store(pool, std::memory_order_release);
    }
    return *pool;
  }

  static int& requested_threads() {
    static int n = 0;
    return n;
  }

  int num_threads() const { return num_threads_.load(std::memory_order_relaxed); }

  void set_num_threads(int n) {
    if (n < 1) throw std::invalid_argument("number of threads must be >= 1");
    const int cap = thread_cap();
    if (n > cap)
      throw std::invalid_argument("number of threads must be at most " + std::to_string(cap) +
                                  " (" + std::to_string(kThreadsPerCpu) + " per CPU, at least " +
                                  std::to_string(kMinThreadCap) + "), got " + std::to_string(n));
    std::lock_guard<std::mutex> busy(busy_mutex_);
    stop_workers();
    num_threads_ = n;
    requested_threads() = n;
    start_workers();
  }

  void run(int64_t n_tasks, const std::function<void(int64_t)>& fn) {
    if (n_tasks <= 0) return;
    std::unique_lock<std::mutex> busy(busy_mutex_, std::try_to_lock);
    if (n_tasks == 1 || n_tasks > TaskSlice::kMaxTasks || t_inside_parallel_region ||
        !busy.owns_lock() || num_threads_ == 1) {
      run_serially(n_tasks, fn);
      return;
    }
    if (openmp_parallel_for(n_tasks, num_threads_, fn)) return;
    {
      // Publish under mutex_, with no worker active: a worker joins a job only under mutex_,
      // so it sees either the previous job (whose slices are empty) or this one whole.
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, [&] { return active_.load(std::memory_order_acquire) == 0; });
      job_ = &fn;
      split_tasks(slices_.get(), num_threads_, n_tasks);
      error_.first = nullptr;
      generation_.fetch_add(1);  // seq_cst: pairs with the sleepers_ check in worker_loop
      if (sleepers_.load() > 0) wake_.notify_all();
    }
    t_inside_parallel_region = true;
    run_task_slices(slices_.get(), num_threads_, 0, fn, &error_);  // the caller steals the rest
    t_inside_parallel_region = false;
    // Wait only for the workers still running a task: one that has not woken up yet (asleep, or
    // its core taken by another library's threads) finds empty slices whenever it runs.
    wait_for_idle_workers();
    if (error_.first) std::rethrow_exception(error_.first);
  }

 private:
  // Spinning a little after each job lets back-to-back kernel calls (a model's layers) skip
  // the futex wake-up, which costs more than small GEMMs take.
  static constexpr double kSpinSeconds = 50e-6;

  static void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
  }

  template <typename Pred>
  static bool spin_until(const Pred& done) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0;; ++i) {
      if (done()) return true;
      cpu_relax();
      if ((i & 63) == 63 &&
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > kSpinSeconds)
        return done();
    }
  }

  explicit ThreadPool(int n) : num_threads_(n) { start_workers(); }

  void wait_for_idle_workers() {
    if (!spin_until([&] { return active_.load(std::memory_order_acquire) == 0; })) {
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, [&] { return active_.load(std::memory_order_acquire) == 0; });
    }
  }

  static std::atomic<ThreadPool*>& current() {
    static std::atomic<ThreadPool*> pool{nullptr};
    return pool;
  }
  static std::mutex& creation_mutex() {
    static std::mutex* m = new std::mutex();
    return *m;
  }
  // The child of fork() has only the forking thread: drop the parent's pool (and any lock state
  // copied mid-operation) so the next parallel call builds a fresh one instead of hanging.
  static void after_fork_in_child() {
    current().store(nullptr, std::memory_order_relaxed);
    new (&creation_mutex()) std::mutex();
    t_inside_parallel_region = false;
  }

  void worker_loop(int participant, uint64_t seen) {
    t_inside_parallel_region = true;
    for (;;) {
      if (!spin_until([&] { return generation_.load(std::memory_order_acquire) != seen; })) {
        std::unique_lock<std::mutex> lock(mutex_);
        sleepers_.fetch_add(1);
        wake_.wait(lock, [&] { return stopping_ || generation_.load() != seen; });
        sleepers_.fetch_sub(1);
      }
      {
        // Joining under mutex_ orders this worker after the job's publication (see run); while
        // it is active no new job can be published, so the slices it reads stay this job's.
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_) return;
        active_.fetch_add(1, std::memory_order_relaxed);
        seen = generation_.load(std::memory_order_relaxed);
      }
      run_task_slices(slices_.get(), num_threads_, participant, *job_, &error_);
      if (active_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lock(mutex_);
        done_.notify_all();
      }
    }
  }

  void start_workers() {
    stopping_ = false;
    const uint64_t start = generation_.load();
    slices_.reset(new TaskSlice[num_threads_]);
    workers_.reserve(static_cast<size_t>(num_threads_ - 1));
    for (int i = 1; i < num_threads_; ++i)
      workers_.emplace_back([this, i, start] { worker_loop(i, start); });
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    generation_.fetch_add(1);
    wake_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  std::atomic<int> num_threads_;  // written under busy_mutex_, read by get_num_threads() anywhere
  std::vector<std::thread> workers_;
  std::mutex busy_mutex_;  // one parallel job at a time; other callers run serially
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  bool stopping_ = false;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<int> active_{0};  // workers inside run_task_slices
  std::unique_ptr<TaskSlice[]> slices_;  // one per participant
  const std::function<void(int64_t)>* job_ = nullptr;
  TaskError error_;
};

}  // namespace

bool inside_parallel_region() { return t_inside_parallel_region; }
void mark_parallel_region(bool inside) { t_inside_parallel_region = inside; }

void run_serially(int64_t n_tasks, const std::function<void(int64_t)>& fn) {
  const bool outer = t_inside_parallel_region;
  t_inside_parallel_region = true;
  try {
    for (int64_t t = 0; t < n_tasks; ++t) fn(t);
  } catch (...) {
    t_inside_parallel_region = outer;
    throw;
  }
  t_inside_parallel_region = outer;
}

void parallel_for(int64_t n_tasks, const std::function<void(int64_t)>& fn) {
  ThreadPool::instance().run(n_tasks, fn);
}

int pool_num_threads() { return ThreadPool::instance().num_threads(); }

void pool_set_num_threads(int n) { ThreadPool::instance().set_num_threads(n); }

}  // namespace lowbit
