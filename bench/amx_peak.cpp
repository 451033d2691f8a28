// tdpbusd peak: the int8 throughput of the AMX tile unit, the ceiling lowbit's amx path is
// measured against (issue 11's targets are a % of it).
//
//   amx_peak [threads=1] [seconds=1.0] [op=int8|bf16]
//
// Each thread asks Linux for the tile data state (arch_prctl(ARCH_REQ_XCOMP_PERM,
// XFEATURE_XTILEDATA)), loads a tile configuration (A 16x64 bytes, B 16 rows x 64 bytes, four
// 16x16 int32 accumulators), then runs a loop of four independent tdpbusd (u8 x s8 -> s32) on
// those tiles for about `seconds`; all threads start together. One tdpbusd on 16x64 by 64x16 is
// 16 * 16 * 64 multiply-adds = 32768 ops. op=bf16 runs tdpbf16ps (bf16 pairs -> float32: 16x32
// by 32x16 bf16 per tile, 16 * 16 * 32 multiply-adds = 16384 ops), the peak of the bf16-compute
// kernels. Prints one JSON line: per-thread and total TOPS.
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr long kArchReqXcompPerm = 0x1023;
constexpr long kXfeatureXtiledata = 18;
constexpr double kOpsPerTdp = 2.0 * 16 * 16 * 64;
constexpr double kOpsPerTdpBf16 = 2.0 * 16 * 16 * 32;
constexpr int kUnroll = 4;     // independent accumulators per loop trip
constexpr long kBlock = 4096;  // loop trips between clock reads

struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

bool request_tiles() {
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}

void configure_tiles() {
  TileConfig cfg;
  std::memset(&cfg, 0, sizeof cfg);
  cfg.palette_id = 1;
  for (int t = 0; t < 6; ++t) {  // tmm0-3 accumulators, tmm4 A, tmm5 B: 16 rows x 64 bytes each
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  _tile_loadconfig(&cfg);
}

struct Result {
  double seconds = 0;
  long tdps = 0;
  int32_t check = 0;
};

void run(double seconds, std::atomic<int>* ready, int threads, bool bf16, Result* out) {
  alignas(64) static thread_local uint8_t a[16 * 64];
  alignas(64) static thread_local int8_t b[16 * 64];
  alignas(64) static thread_local int32_t c[16 * 16];
  for (int i = 0; i < 16 * 64; ++i) {
    a[i] = static_cast<uint8_t>(bf16 && i % 2 ? 0x3c : i * 7 + 1);   // bf16: ~2^-7 magnitudes
    b[i] = static_cast<int8_t>(bf16 && i % 2 ? 0x3c : i * 5 - 3);
  }
  configure_tiles();
  _tile_loadd(4, a, 64);
  _tile_loadd(5, b, 64);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  ready->fetch_add(1);
  while (ready->load() < threads) {
  }
  const auto start = std::chrono::steady_clock::now();
  long trips = 0;
  double elapsed = 0;
  do {
    if (bf16) {
      // a[] and b[] as bf16 pairs: finite values (bytes 1..255 make no NaN/Inf patterns in
      // the high byte of every pair here), the accumulators stay finite for a second's trips
      for (long i = 0; i < kBlock; ++i) {
        _tile_dpbf16ps(0, 4, 5);
        _tile_dpbf16ps(1, 4, 5);
        _tile_dpbf16ps(2, 4, 5);
        _tile_dpbf16ps(3, 4, 5);
      }
    } else {
      for (long i = 0; i < kBlock; ++i) {
        _tile_dpbusd(0, 4, 5);
        _tile_dpbusd(1, 4, 5);
        _tile_dpbusd(2, 4, 5);
        _tile_dpbusd(3, 4, 5);
      }
    }
    trips += kBlock;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  } while (elapsed < seconds);
  _tile_stored(0, c, 64);  // keeps the loop's results alive
  _tile_release();
  out->seconds = elapsed;
  out->tdps = trips * kUnroll;
  out->check = c[0];
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
  const double seconds = argc > 2 ? std::atof(argv[2]) : 1.0;
  const std::string op = argc > 3 ? argv[3] : "int8";
  if (threads < 1 || !(seconds > 0) || (op != "int8" && op != "bf16")) {
    std::fprintf(stderr, "usage: amx_peak [threads>=1] [seconds>0] [int8|bf16]\n");
    return 2;
  }
  const bool bf16 = op == "bf16";
  // The permission is per process (threads created later inherit it); ask before any thread.
  if (!request_tiles()) {
    std::printf("{\"status\": \"error\", \"error\": \"arch_prctl(ARCH_REQ_XCOMP_PERM) refused\"}\n");
    return 1;
  }
  std::vector<Result> results(threads);
  std::vector<std::thread> pool;
  std::atomic<int> ready{0};
  for (int t = 0; t < threads; ++t)
    pool.emplace_back(run, seconds, &ready, threads, bf16, &results[t]);
  for (auto& th : pool) th.join();
  double total = 0;
  std::printf("{\"status\": \"ok\", \"op\": \"%s\", \"threads\": %d, \"accumulators\": %d, "
              "\"per_thread_tops\": [", bf16 ? "tdpbf16ps" : "tdpbusd", threads, kUnroll);
  for (int t = 0; t < threads; ++t) {
    const double tops = results[t].tdps * (bf16 ? kOpsPerTdpBf16 : kOpsPerTdp) / results[t].seconds / 1e12;
    total += tops;
    std::printf("%s%.3f", t ? ", " : "", tops);
  }
  std::printf("], \"total_tops\": %.3f, \"check\": %d}\n", total, results[0].check);
  return 0;
}
