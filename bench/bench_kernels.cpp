// google-benchmark of the kernels through the public C++ API, per ISA path.
// Counters: GOPS (2*M*N*K per second) for GEMMs, GB/s for elementwise ops.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "lowbit/lowbit.h"

namespace {

struct Weights {
  int64_t K, N;
  std::vector<int8_t> w;
  std::vector<float> scale;
  std::shared_ptr<lowbit::PackedMatrix> packed;
  Weights(int64_t k, int64_t n) : K(k), N(n), w(k * n), scale(n, 0.01f) {
    std::mt19937 gen(7);
    std::uniform_int_distribution<int> d(-127, 127);
    for (auto& v : w) v = static_cast<int8_t>(d(gen));
    packed = lowbit::PackedMatrix::pack(w.data(), lowbit::ElemType::int8, K, N, 1, K, nullptr, 0);
  }
};

void set_isa_or_skip(benchmark::State& state, int isa) {
  for (lowbit::Isa a : lowbit::available_isas())
    if (static_cast<int>(a) == isa) {
      lowbit::set_active_isa(a);
      return;
    }
  state.SkipWithError("ISA not available on this CPU");
}

// args: isa, threads, M, K, N
void BM_matmul_integer_packed(benchmark::State& state) {
  set_isa_or_skip(state, static_cast<int>(state.range(0)));
  lowbit::set_num_threads(static_cast<int>(state.range(1)));
  const int64_t M = state.range(2), K = state.range(3), N = state.range(4);
  static Weights* weights = nullptr;
  if (!weights || weights->K != K || weights->N != N) {
    delete weights;
    weights = new Weights(K, N);
  }
  std::vector<uint8_t> a(M * K, 77);
  std::vector<int32_t> c(M * N);
  for (auto _ : state) {
    lowbit::matmul_integer(a.data(), lowbit::ElemType::uint8, M, K, K, nullptr, 0, *weights->packed,
                           c.data(), N);
    benchmark::DoNotOptimize(c.data());
  }
  state.counters["GOPS"] = benchmark::Counter(2.0 * M * N * K, benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
}

void BM_linear(benchmark::State& state) {
  set_isa_or_skip(state, static_cast<int>(state.range(0)));
  lowbit::set_num_threads(static_cast<int>(state.range(1)));
  const int64_t M = state.range(2), K = state.range(3), N = state.range(4);
  static Weights* weights = nullptr;
  if (!weights || weights->K != K || weights->N != N) {
    delete weights;
    weights = new Weights(K, N);
  }
  std::vector<float> x(M * K), y(M * N), bias(N, 0.5f);
  std::mt19937 gen(3);
  std::normal_distribution<float> d;
  for (auto& v : x) v = d(gen);
  for (auto _ : state) {
    lowbit::linear(x.data(), M, K, *weights->packed, weights->scale.data(), bias.data(), y.data(), N);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GOPS"] = benchmark::Counter(2.0 * M * N * K, benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
}

// args: isa, threads, M, K, N, group (w4a8: int8 activations x 4-bit weights)
void BM_linear_w4a8(benchmark::State& state) {
  set_isa_or_skip(state, static_cast<int>(state.range(0)));
  lowbit::set_num_threads(static_cast<int>(state.range(1)));
  const int64_t M = state.range(2), K = state.range(3), N = state.range(4), group = state.range(5);
  std::mt19937 gen(5);
  std::uniform_int_distribution<int> nib(0, 15);
  std::vector<uint8_t> u(N * K);
  for (auto& v : u) v = static_cast<uint8_t>(nib(gen));
  std::vector<float> scale(N * ((K + group - 1) / group), 0.01f);
  auto w = lowbit::PackedInt4Matrix::pack(u.data(), N, K, group, scale.data(), nullptr);
  std::vector<float> x(M * K), y(M * N);
  std::normal_distribution<float> d;
  for (auto& v : x) v = d(gen);
  for (auto _ : state) {
    lowbit::linear_int4(x.data(), M, K, *w, lowbit::Int4Compute::w4a8, nullptr, y.data(), N);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GOPS"] = benchmark::Counter(2.0 * M * N * K, benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
}

void BM_quantize_linear(benchmark::State& state) {
  set_isa_or_skip(state, static_cast<int>(state.range(0)));
  lowbit::set_num_threads(1);
  const int64_t n = state.range(1);
  std::vector<float> x(n, 1.25f);
  std::vector<int8_t> q(n);
  const float scale = 0.1f;
  const int32_t zp = 0;
  for (auto _ : state) {
    lowbit::quantize_linear(x.data(), lowbit::AxisView{1, n, 1}, lowbit::ScaleMode::per_tensor, 0,
                            &scale, &zp, lowbit::QType::int8, q.data());
    benchmark::DoNotOptimize(q.data());
  }
  state.counters["GB/s"] = benchmark::Counter(5.0 * n, benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
}

void gemm_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"isa", "threads", "M", "K", "N"});
  // isa: the lowbit::Isa value (1 avx2, 2 avx512vnni, 6 amx); rows not available are skipped.
  for (int isa : {1, 2, 6})
    for (int threads : {1, 2})
      for (int M : {1, 4, 8, 16, 32, 64, 256}) b->Args({isa, threads, M, 4096, 4096});
  b->Args({0, 1, 16, 1024, 1024});
  b->UseRealTime();
}

}  // namespace

BENCHMARK(BM_matmul_integer_packed)->Apply(gemm_args);
BENCHMARK(BM_linear)->Apply(gemm_args);
BENCHMARK(BM_linear_w4a8)->ArgNames({"isa", "threads", "M", "K", "N", "group"})
    ->ArgsProduct({{2, 6}, {1, 2}, {1, 8, 16, 64, 256}, {4096}, {4096}, {32, 128}})->UseRealTime();
BENCHMARK(BM_quantize_linear)->ArgNames({"isa", "n"})->Args({0, 1 << 20})->Args({1, 1 << 20})->Args({2, 1 << 20});
BENCHMARK_MAIN();
