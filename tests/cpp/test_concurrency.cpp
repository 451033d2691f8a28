// Concurrency tests: several std::threads share one thread pool, one PackedMatrix and one
// PackedInt4Matrix while another thread keeps changing set_num_threads. Every result must equal
// the serial (1-thread) result bit for bit, and every parallel_for task must run exactly once.
// Built under ThreadSanitizer in CI. Prints 'N passed, N failed'.
#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "lowbit/lowbit.h"
#include "runtime/thread_pool.h"

#if defined(__has_feature)
#define LOWBIT_HAS_FEATURE(x) __has_feature(x)
#else
#define LOWBIT_HAS_FEATURE(x) 0
#endif

namespace {

int g_passed = 0, g_failed = 0;

void check(bool ok, const std::string& what) {
  if (ok) {
    ++g_passed;
  } else {
    ++g_failed;
    std::printf("FAILED: %s\n", what.c_str());
  }
}

// Large enough that the kernels go parallel (their thresholds are a few million MACs).
constexpr int64_t kK = 768, kN = 130, kGroup = 64;
constexpr int64_t kRows[] = {1, 3, 17, 64};
constexpr int kOps = 4;  // matmul_integer, linear, linear_int4 w4a8, linear_int4 weight_only

struct Shared {
  std::shared_ptr<lowbit::PackedMatrix> w8;
  std::shared_ptr<lowbit::PackedInt4Matrix> w4;
  std::vector<float> col_scale, bias, x;  // x: 64 x K floats
  std::vector<uint8_t> a;                 // 64 x K bytes
};

Shared make_shared_inputs() {
  std::mt19937 gen(7);
  std::uniform_int_distribution<int> byte(0, 255), nibble(0, 15);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Shared s;
  std::vector<int8_t> b(kK * kN);
  for (auto& v : b) v = static_cast<int8_t>(byte(gen) - 128);
  std::vector<int32_t> zb(kN);
  for (auto& v : zb) v = byte(gen) - 128;
  s.w8 = lowbit::PackedMatrix::pack(b.data(), lowbit::ElemType::int8, kK, kN, kN, 1, zb.data(), kN);
  const int64_t G = kK / kGroup;
  std::vector<uint8_t> u(kN * kK), zero(kN * G);
  std::vector<float> scale(kN * G);
  for (auto& v : u) v = static_cast<uint8_t>(nibble(gen));
  for (auto& v : zero) v = static_cast<uint8_t>(nibble(gen));
  for (auto& v : scale) v = 0.01f + 0.01f * std::fabs(normal(gen));
  s.w4 = lowbit::PackedInt4Matrix::pack(u.data(), kN, kK, kGroup, scale.data(), zero.data());
  s.col_scale.resize(kN);
  s.bias.resize(kN);
  for (auto& v : s.col_scale) v = 0.01f + 0.01f * std::fabs(normal(gen));
  for (auto& v : s.bias) v = normal(gen);
  s.x.resize(64 * kK);
  for (auto& v : s.x) v = normal(gen);
  s.a.resize(64 * kK);
  for (auto& v : s.a) v = static_cast<uint8_t>(byte(gen));
  return s;
}

// Runs op on the first M rows and returns the output bytes.
std::vector<uint8_t> run_op(const Shared& s, int op, int64_t M) {
  std::vector<uint8_t> out(static_cast<size_t>(M * kN) * 4);
  const int32_t za = 3;
  switch (op) {
    case 0:
      lowbit::matmul_integer(s.a.data(), lowbit::ElemType::uint8, M, kK, kK, &za, 1, *s.w8,
                             reinterpret_cast<int32_t*>(out.data()), kN);
      break;
    case 1:
      lowbit::linear(s.x.data(), M, kK, *s.w8, s.col_scale.data(), s.bias.data(),
                     reinterpret_cast<float*>(out.data()), kN);
      break;
    default:
      lowbit::linear_int4(s.x.data(), M, kK, *s.w4,
                          op == 2 ? lowbit::Int4Compute::w4a8 : lowbit::Int4Compute::weight_only,
                          s.bias.data(), reinterpret_cast<float*>(out.data()), kN);
  }
  return out;
}

void test_shared_weights(lowbit::Isa isa, int workers, int iterations) {
  const Shared s = make_shared_inputs();
  lowbit::set_num_threads(1);
  std::vector<std::vector<uint8_t>> serial;
  for (int op = 0; op < kOps; ++op)
    for (int64_t M : kRows) serial.push_back(run_op(s, op, M));

  std::atomic<int> mismatches{0}, errors{0}, running{workers};
  std::thread flipper([&] {
    for (int i = 0; running.load() > 0; ++i) {
      lowbit::set_num_threads(1 + i % 3);
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> pool;
  for (int w = 0; w < workers; ++w)
    pool.emplace_back([&, w] {
      for (int i = 0; i < iterations; ++i) {
        const int idx = (w * 7 + i * 5) % (kOps * 4);  // every thread walks all op/shape pairs
        try {
          if (run_op(s, idx / 4, kRows[idx % 4]) != serial[idx]) mismatches.fetch_add(1);
        } catch (...) {
          errors.fetch_add(1);
        }
      }
      running.fetch_sub(1);
    });
  for (auto& t : pool) t.join();
  flipper.join();
  const std::string tag = lowbit::isa_name(isa) + " " + std::to_string(workers) + " threads";
  check(mismatches.load() == 0, tag + ": shared weights give the serial bits (" +
                                    std::to_string(mismatches.load()) + " mismatches)");
  check(errors.load() == 0, tag + ": no exceptions");
}

// parallel_for from several threads at once (callers that find the pool busy run serially)
// while the pool is resized: each task of each call runs exactly once.
void test_parallel_for_exactly_once(int callers, int calls) {
  std::atomic<int> bad{0}, running{callers};
  std::thread flipper([&] {
    for (int i = 0; running.load() > 0; ++i) {
      lowbit::set_num_threads(1 + i % 3);
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> threads;
  for (int c = 0; c < callers; ++c)
    threads.emplace_back([&, c] {
      for (int i = 0; i < calls; ++i) {
        const int64_t n = 1 + (c + i) % 37;
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        for (auto& h : hits) h.store(0);
        lowbit::parallel_for(n, [&](int64_t t) { hits[static_cast<size_t>(t)].fetch_add(1); });
        for (auto& h : hits)
          if (h.load() != 1) bad.fetch_add(1);
      }
      running.fetch_sub(1);
    });
  for (auto& t : threads) t.join();
  flipper.join();
  check(bad.load() == 0, "parallel_for from " + std::to_string(callers) +
                             " threads runs every task once (" + std::to_string(bad.load()) +
                             " bad counts)");
}

// An exception thrown by one task reaches the caller, and the pool stays usable.
void test_task_exception() {
  lowbit::set_num_threads(3);
  bool caught = false;
  try {
    lowbit::parallel_for(64, [](int64_t t) {
      if (t == 40) throw std::runtime_error("task 40");
    });
  } catch (const std::runtime_error&) {
    caught = true;
  }
  check(caught, "an exception in a task reaches the caller");
  std::atomic<int64_t> sum{0};
  lowbit::parallel_for(100, [&](int64_t t) { sum.fetch_add(t); });
  check(sum.load() == 4950, "the pool works after a task threw");
}

// set_num_threads refuses counts above max_num_threads() (kThreadsPerCpu per CPU, at least
// kMinThreadCap) and keeps the pool it had; the cap itself works.
void test_thread_cap() {
  lowbit::set_num_threads(2);
  const int cap = lowbit::max_num_threads();
  check(cap >= lowbit::kMinThreadCap && cap >= lowbit::kThreadsPerCpu * lowbit::default_num_threads(),
        "the thread cap is at least kMinThreadCap and kThreadsPerCpu per usable CPU");
  for (int bad : {cap + 1, 1000}) {
    bool refused = false;
    try {
      lowbit::set_num_threads(bad);
    } catch (const std::invalid_argument&) {
      refused = true;
    }
    check(refused && lowbit::get_num_threads() == 2,
          "set_num_threads(" + std::to_string(bad) + ") is refused and changes nothing");
  }
  lowbit::set_num_threads(cap);
  std::atomic<int64_t> sum{0};
  lowbit::parallel_for(1000, [&](int64_t t) { sum.fetch_add(t); });
  check(lowbit::get_num_threads() == cap && sum.load() == 499500, "the pool works at the cap");
  lowbit::set_num_threads(2);
}

#if !(defined(__SANITIZE_THREAD__) || LOWBIT_HAS_FEATURE(thread_sanitizer))
// The same checks with jobs running on an OpenMP runtime's threads (how lowbit runs inside
// PyTorch), plus: the team really is used, and a library without OpenMP entry points is refused.
bool test_openmp_runtime() {
  bool refused = false;
  try {
    lowbit::use_openmp_runtime("libc.so.6");
  } catch (const std::runtime_error&) {
    refused = true;
  }
  check(refused && lowbit::parallel_runtime_name() == "lowbit",
        "a library that is not an OpenMP runtime is refused and changes nothing");
  try {
    lowbit::use_openmp_runtime("libgomp.so.1");
  } catch (const std::runtime_error& e) {
    std::printf("skipped the OpenMP runtime tests: %s\n", e.what());
    return false;
  }
  check(lowbit::parallel_runtime_name() == "openmp:libgomp.so.1", "OpenMP runtime in use");
  lowbit::set_num_threads(2);
  // Which OpenMP team member ran each task: both 0 (the caller) and 1 must appear, which also
  // shows the job did not run on lowbit's own pool.
  auto* omp_thread_num = reinterpret_cast<int (*)()>(
      dlsym(dlopen("libgomp.so.1", RTLD_NOW | RTLD_NOLOAD), "omp_get_thread_num"));
  std::mutex mutex;
  std::vector<int> seen;
  for (int call = 0; call < 50 && seen.size() < 2 && omp_thread_num; ++call)
    lowbit::parallel_for(64, [&](int64_t) {
      std::this_thread::sleep_for(std::chrono::microseconds(20));
      const int member = omp_thread_num();
      std::lock_guard<std::mutex> lock(mutex);
      if (std::find(seen.begin(), seen.end(), member) == seen.end()) seen.push_back(member);
    });
  check(seen.size() == 2, "jobs run on two OpenMP threads");
  for (lowbit::Isa isa : lowbit::available_isas()) {
    lowbit::set_active_isa(isa);
    test_shared_weights(isa, 2, 24);
  }
  test_parallel_for_exactly_once(4, 200);
  test_task_exception();
  lowbit::use_own_threads();
  check(lowbit::parallel_runtime_name() == "lowbit", "back on lowbit's own threads");
  return true;
}
#endif

}  // namespace

int main() {
  for (lowbit::Isa isa : lowbit::available_isas()) {
    lowbit::set_active_isa(isa);
    for (int workers : {2, 4}) test_shared_weights(isa, workers, 24);
  }
  test_parallel_for_exactly_once(4, 200);
  test_task_exception();
  test_thread_cap();
#if defined(__SANITIZE_THREAD__) || LOWBIT_HAS_FEATURE(thread_sanitizer)
  // libgomp is not built with ThreadSanitizer, which then cannot see its synchronization.
  std::printf("skipped the OpenMP runtime tests under ThreadSanitizer\n");
#else
  test_openmp_runtime();
#endif
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
