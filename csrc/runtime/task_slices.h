// How one parallel job's tasks are shared out, whichever threads run it (lowbit's own workers or
// another library's OpenMP team): participant p owns a contiguous slice, runs it front to back,
// then takes the other slices' tasks from their back ends, one at a time.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>

namespace lowbit {

// The tasks [front, back) of a participant not yet taken, both ends in one atomic word so the
// owner (front) and thieves (back) never take the same task.
struct alignas(64) TaskSlice {
  static constexpr int64_t kMaxTasks = 0xffffffffLL;
  std::atomic<uint64_t> range{0};

  void reset(int64_t front, int64_t back) {
    range.store(pack(static_cast<uint64_t>(front), static_cast<uint64_t>(back)),
                std::memory_order_relaxed);
  }
  bool take_front(int64_t* task) { return take(task, true); }
  bool take_back(int64_t* task) { return take(task, false); }

 private:
  static uint64_t pack(uint64_t front, uint64_t back) { return front | (back << 32); }
  bool take(int64_t* task, bool front_end) {
    uint64_t r = range.load(std::memory_order_relaxed);
    for (;;) {
      const uint64_t front = r & 0xffffffffu, back = r >> 32;
      if (front >= back) return false;
      const uint64_t next = front_end ? pack(front + 1, back) : pack(front, back - 1);
      if (range.compare_exchange_weak(r, next, std::memory_order_relaxed)) {
        *task = static_cast<int64_t>(front_end ? front : back - 1);
        return true;
      }
    }
  }
};

inline void split_tasks(TaskSlice* slices, int participants, int64_t n_tasks) {
  for (int p = 0; p < participants; ++p)
    slices[p].reset(n_tasks * p / participants, n_tasks * (p + 1) / participants);
}

// The first exception thrown by any task; the job still runs every other task.
struct TaskError {
  std::mutex mutex;
  std::exception_ptr first;
  void record() {
    std::lock_guard<std::mutex> lock(mutex);
    if (!first) first = std::current_exception();
  }
};

// Participant p always starts on its own slice so repeated calls on the same weights find each
// slice in the same core's caches. A participant that is slow to start (asleep, or sharing its
// core with another library's spinning threads) delays the job by at most the task it runs.
inline void run_task_slices(TaskSlice* slices, int participants, int participant,
                            const std::function<void(int64_t)>& fn, TaskError* error) {
  for (int k = 0; k < participants; ++k) {
    TaskSlice& slice = slices[(participant + k) % participants];
    int64_t t;
    while (k == 0 ? slice.take_front(&t) : slice.take_back(&t)) {
      try {
        fn(t);
      } catch (...) {
        error->record();
      }
    }
  }
}

}  // namespace lowbit
