// float32 FMA peak: the throughput of vfmadd231ps on this machine, the ceiling lowbit's float32
// and weight-only kernels (wf16f32, wbf16f32, w8f32) are measured against.
//
//   fma_peak [threads=1] [seconds=1.0] [width=512|256]
//
// Each thread runs a loop of 12 independent vfmadd231ps chains (enough to cover a 4-cycle
// latency on two FMA ports) on zmm (width 512: 16 lanes) or ymm (256: 8 lanes) registers for
// about `seconds`; all threads start together. One FMA is 2 flops per lane. Prints one JSON line:
// per-thread and total GFLOPS. Needs AVX-512F for width 512 (the caller checks the CPU).
#include <immintrin.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

namespace {

constexpr int kChains = 12;
constexpr long kBlock = 1 << 16;

struct Result {
  double seconds = 0;
  long fmas = 0;
  float check = 0;
};

template <typename V, V (*Fma)(V, V, V), V (*Set)(float), float (*First)(V)>
void run(double seconds, std::atomic<int>* ready, int threads, Result* out) {
  V acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = Set(0.001f * static_cast<float>(i));
  const V a = Set(0.999999f), b = Set(1e-7f);
  ready->fetch_add(1);
  while (ready->load() < threads) {
  }
  const auto start = std::chrono::steady_clock::now();
  long trips = 0;
  double elapsed = 0;
  do {
    for (long t = 0; t < kBlock; ++t)
#pragma GCC unroll 12
      for (int i = 0; i < kChains; ++i) acc[i] = Fma(acc[i], a, b);
    trips += kBlock;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  } while (elapsed < seconds);
  float sum = 0;
  for (int i = 0; i < kChains; ++i) sum += First(acc[i]);
  out->seconds = elapsed;
  out->fmas = trips * kChains;
  out->check = sum;
}

__m512 fma512(__m512 s, __m512 a, __m512 b) { return _mm512_fmadd_ps(s, a, b); }
__m512 set512(float v) { return _mm512_set1_ps(v); }
float first512(__m512 v) { return _mm512_cvtss_f32(v); }
__m256 fma256(__m256 s, __m256 a, __m256 b) { return _mm256_fmadd_ps(s, a, b); }
__m256 set256(float v) { return _mm256_set1_ps(v); }
float first256(__m256 v) { return _mm256_cvtss_f32(v); }

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
  const double seconds = argc > 2 ? std::atof(argv[2]) : 1.0;
  const int width = argc > 3 ? std::atoi(argv[3]) : 512;
  if (threads < 1 || !(seconds > 0) || (width != 512 && width != 256)) {
    std::fprintf(stderr, "usage: fma_peak [threads>=1] [seconds>0] [512|256]\n");
    return 2;
  }
  std::vector<Result> results(threads);
  std::vector<std::thread> pool;
  std::atomic<int> ready{0};
  for (int t = 0; t < threads; ++t) {
    if (width == 512)
      pool.emplace_back(run<__m512, fma512, set512, first512>, seconds, &ready, threads, &results[t]);
    else
      pool.emplace_back(run<__m256, fma256, set256, first256>, seconds, &ready, threads, &results[t]);
  }
  for (auto& th : pool) th.join();
  const double flops_per_fma = 2.0 * width / 32;
  double total = 0;
  std::printf("{\"status\": \"ok\", \"op\": \"vfmadd231ps\", \"width\": %d, \"threads\": %d, "
              "\"chains\": %d, \"per_thread_gflops\": [", width, threads, kChains);
  for (int t = 0; t < threads; ++t) {
    const double g = results[t].fmas * flops_per_fma / results[t].seconds / 1e9;
    total += g;
    std::printf("%s%.1f", t ? ", " : "", g);
  }
  std::printf("], \"total_gflops\": %.1f, \"check\": %g}\n", total, results[0].check);
  return 0;
}
