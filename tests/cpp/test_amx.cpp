// The AMX path's own tests: the software tile model against the instructions' definitions
// (results and faults), the tile walk of the w8a8 kernel counted on the model, and the
// per-thread tile configuration (fresh threads, a forked child, a thread whose tiles another
// library configured). The kernels' results over the edge matrix are in test_kernels, which runs
// every path (amx_emu everywhere, amx where the CPU has it). Prints 'N passed, N failed'.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "kernels/amx/amx_model.h"
#include "lowbit/lowbit.h"

namespace {

namespace model = lowbit::amx_model;

int g_passed = 0, g_failed = 0;

void check(bool ok, const std::string& what) {
  if (ok) {
    ++g_passed;
  } else {
    ++g_failed;
    std::printf("FAILED: %s\n", what.c_str());
  }
}

struct Fault : std::runtime_error {
  using std::runtime_error::runtime_error;
};
void throwing_handler(const char* what) { throw Fault(what); }

template <typename Fn>
bool faults(Fn&& fn) {
  try {
    fn();
  } catch (const Fault&) {
    return true;
  }
  return false;
}

model::TileConfig config(std::initializer_list<std::pair<int, int>> shapes) {
  model::TileConfig cfg;
  cfg.palette_id = 1;
  int t = 0;
  for (auto [rows, colsb] : shapes) {
    cfg.rows[t] = static_cast<uint8_t>(rows);
    cfg.colsb[t] = static_cast<uint16_t>(colsb);
    ++t;
  }
  return cfg;
}

// tdpbusd / tdpbsud on the model against their definition, for a few shapes.
void test_model_dot(std::mt19937& gen) {
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto [M, N, K] : {std::tuple<int, int, int>{16, 16, 16}, {3, 5, 7}, {16, 4, 1}, {1, 16, 16}}) {
    for (bool a_signed : {false, true}) {
      const auto cfg = config({{M, 4 * N}, {M, 4 * K}, {K, 4 * N}});
      model::ldtilecfg(&cfg);
      std::vector<uint8_t> a(M * 4 * K), b(K * 4 * N);
      std::vector<int32_t> c0(M * N), c(M * N);
      for (auto& v : a) v = static_cast<uint8_t>(byte(gen));
      for (auto& v : b) v = static_cast<uint8_t>(byte(gen));
      for (auto& v : c0) v = static_cast<int32_t>(gen());
      model::tileloadd(0, c0.data(), 4 * N);
      model::tileloadd(1, a.data(), 4 * K);
      model::tileloadd(2, b.data(), 4 * N);
      a_signed ? model::tdpbsud(0, 1, 2) : model::tdpbusd(0, 1, 2);
      model::tilestored(0, c.data(), 4 * N);
      bool ok = true;
      for (int m = 0; m < M; ++m)
        for (int n = 0; n < N; ++n) {
          int64_t s = c0[m * N + n];
          for (int k = 0; k < 4 * K; ++k) {
            const int64_t x = a_signed ? static_cast<int8_t>(a[m * 4 * K + k]) : a[m * 4 * K + k];
            const int64_t y = a_signed ? b[(k / 4) * 4 * N + 4 * n + k % 4]
                                       : static_cast<int8_t>(b[(k / 4) * 4 * N + 4 * n + k % 4]);
            s += x * y;
          }
          ok &= c[m * N + n] == static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(s)));
        }
      check(ok, std::string(a_signed ? "tdpbsud" : "tdpbusd") + " " + std::to_string(M) + "x" +
                    std::to_string(N) + "x" + std::to_string(K) + " equals its definition");
    }
  }
  model::tilerelease();
}

void test_model_faults() {
  model::set_fault_handler(throwing_handler);
  uint8_t buf[16 * 64] = {};
  model::tilerelease();
  check(faults([&] { model::tileloadd(0, buf, 64); }), "tileloadd before ldtilecfg faults");
  model::TileConfig have;
  std::memset(reinterpret_cast<unsigned char*>(&have), 0xff, sizeof(have));
  model::sttilecfg(&have);
  check(have.palette_id == 0 && have.rows[0] == 0 && have.colsb[0] == 0,
        "sttilecfg stores zeros while unconfigured");
  auto bad = config({{17, 64}});
  check(faults([&] { model::ldtilecfg(&bad); }), "17 rows is an invalid configuration");
  bad = config({{16, 65}});
  check(faults([&] { model::ldtilecfg(&bad); }), "65 bytes per row is an invalid configuration");
  bad = config({{16, 64}});
  bad.palette_id = 2;
  check(faults([&] { model::ldtilecfg(&bad); }), "palette 2 is refused");
  const auto cfg = config({{16, 64}, {16, 64}, {16, 64}, {8, 64}, {16, 32}});
  model::ldtilecfg(&cfg);
  model::sttilecfg(&have);
  check(std::memcmp(&have, &cfg, sizeof(cfg)) == 0, "sttilecfg gives back the loaded configuration");
  check(faults([&] { model::tileloadd(6, buf, 64); }), "an unconfigured tile faults");
  check(faults([&] { model::tdpbusd(0, 3, 2); }), "A rows differing from C rows fault");
  check(faults([&] { model::tdpbusd(0, 1, 3); }), "B rows differing from A's k groups fault");
  check(faults([&] { model::tdpbusd(0, 1, 4); }), "B bytes per row differing from C's fault");
  check(!faults([&] { model::tdpbusd(0, 1, 2); }), "matching shapes run");
  // Only the configured rows and bytes are touched: a 16 x 32 tile stores 32 bytes a row.
  std::vector<uint8_t> out(16 * 64, 0xab);
  std::memset(buf, 1, sizeof(buf));
  model::tileloadd(4, buf, 64);
  model::tilestored(4, out.data(), 64);
  bool inside = true, outside = true;
  for (int r = 0; r < 16; ++r)
    for (int i = 0; i < 64; ++i) (i < 32 ? inside : outside) &= out[r * 64 + i] == (i < 32 ? 1 : 0xab);
  check(inside && outside, "tilestored writes exactly the configured bytes");
  model::ldtilecfg(&cfg);
  model::tilestored(4, out.data(), 64);
  check(out[0] == 0, "ldtilecfg zeroes the tiles");
  model::tilerelease();
  check(faults([&] { model::tilezero(0); }), "tilerelease leaves the tiles unconfigured");
  model::set_fault_handler(nullptr);
}

// Exact result of one int8 matmul on the active path against int64, run from the calling thread.
bool matmul_exact(std::mt19937& gen, int64_t M, int64_t K, int64_t N) {
  std::uniform_int_distribution<int> u8(0, 255), s8(-128, 127);
  std::vector<uint8_t> a(M * K);
  std::vector<int8_t> b(K * N);
  std::vector<int32_t> za(M), zb(N);
  for (auto& v : a) v = static_cast<uint8_t>(u8(gen));
  for (auto& v : b) v = static_cast<int8_t>(s8(gen));
  for (auto& v : za) v = u8(gen);
  for (auto& v : zb) v = s8(gen);
  auto packed = lowbit::PackedMatrix::pack(b.data(), lowbit::ElemType::int8, K, N, N, 1, zb.data(), N);
  std::vector<int32_t> c(M * N);
  lowbit::matmul_integer(a.data(), lowbit::ElemType::uint8, M, K, K, za.data(), M, *packed, c.data(), N);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      int64_t ref = 0;
      for (int64_t k = 0; k < K; ++k) ref += (a[m * K + k] - za[m]) * static_cast<int64_t>(b[k * N + n] - zb[n]);
      if (c[m * N + n] != static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(ref)))) return false;
    }
  return true;
}

void test_tile_walk(std::mt19937& gen) {
  lowbit::set_active_isa(lowbit::Isa::amx_emu);
  lowbit::set_num_threads(1);
  // 32 rows x 64 columns x K=128: one 32-row block, two 32-column halves, two 64-deep chunks,
  // four tile products each: 16 dot products. K=131 adds the tail chunk (24); M=48 adds a
  // 16-row block (+ 2 halves x 3 chunks x 2); M=20 is a 32-row block padded with zero rows;
  // M=8 one padded 16-row block over 64 chunks (2 x 64 x 2); M=7 and K=60 run avx512vnni (0).
  for (auto [M, K, N, want] : {std::tuple<int64_t, int64_t, int64_t, uint64_t>{32, 128, 64, 16},
                              {32, 131, 64, 24}, {48, 131, 64, 36}, {20, 131, 64, 24},
                              {32, 128, 32, 8}, {8, 4096, 64, 256}, {7, 4096, 64, 0},
                              {32, 60, 64, 0}, {32, 1100, 65, 2 * 4 * 18 + 4 * 18}}) {
    const uint64_t before = model::dot_count();
    const bool ok = matmul_exact(gen, M, K, N);
    const uint64_t dots = model::dot_count() - before;
    check(ok && dots == want, "amx_emu M=" + std::to_string(M) + " K=" + std::to_string(K) + " N=" +
                                  std::to_string(N) + ": exact with " + std::to_string(dots) +
                                  " tile products (want " + std::to_string(want) + ")");
  }
}

// The w4a8 tile walk: one tdpbssd chain per group and half panel, counted on the model; the
// results themselves are checked bit for bit against scalar in test_kernels.
void test_w4a8_tile_walk(std::mt19937& gen) {
  lowbit::set_active_isa(lowbit::Isa::amx_emu);
  lowbit::set_num_threads(1);
  std::uniform_int_distribution<int> nib(0, 15);
  // M=32, K=256, group 64 (one 64-byte step), N=64: 4 groups x 2 halves x 4 products = 32;
  // group 32 (32-byte steps): 8 x 2 x 4 = 64; M=20 the same with padded rows; M=15: avx512vnni.
  for (auto [M, group, want] : {std::tuple<int64_t, int64_t, uint64_t>{32, 64, 32}, {32, 32, 64},
                               {20, 32, 64}, {32, 128, 32}, {15, 64, 0}}) {
    const int64_t K = 256, N = 64, G = K / group;
    std::vector<uint8_t> u(N * K);
    for (auto& v : u) v = static_cast<uint8_t>(nib(gen));
    std::vector<float> scale(N * G, 0.5f), x(M * K, 1.0f), y(M * N);
    auto w = lowbit::PackedInt4Matrix::pack(u.data(), N, K, group, scale.data(), nullptr);
    const uint64_t before = model::dot_count();
    lowbit::linear_int4(x.data(), M, K, *w, lowbit::Int4Compute::w4a8, nullptr, y.data(), N);
    const uint64_t dots = model::dot_count() - before;
    check(dots == want, "amx_emu w4a8 M=" + std::to_string(M) + " group " + std::to_string(group) + ": " +
                            std::to_string(dots) + " tile products (want " + std::to_string(want) + ")");
  }
}

// Every thread configures its own tiles: fresh threads, a thread whose tiles another library
// shaped differently, a forked child.
void test_thread_config(std::mt19937& gen, lowbit::Isa isa) {
  const std::string tag = lowbit::isa_name(isa);
  lowbit::set_active_isa(isa);
  for (int threads : {1, 2, 3, 7}) {
    lowbit::set_num_threads(threads);
    bool ok = true;
    std::thread t([&] { ok = matmul_exact(gen, 97, 300, 130); });
    t.join();
    check(ok, tag + ": a new thread calling with " + std::to_string(threads) + " pool threads");
  }
  lowbit::set_num_threads(1);
  if (isa == lowbit::Isa::amx_emu) {
    const auto foreign = config({{8, 32}, {8, 32}, {4, 16}});
    bool ok = true;
    std::thread t([&] {
      model::ldtilecfg(&foreign);
      ok = matmul_exact(gen, 64, 256, 64);
      model::TileConfig after;
      model::sttilecfg(&after);
      ok &= after.rows[0] == 16 && after.colsb[0] == 64;
    });
    t.join();
    check(ok, tag + ": a thread with another library's tile configuration");
  }
  const pid_t pid = fork();
  if (pid == 0) {
    std::mt19937 child_gen(7);
    lowbit::set_num_threads(2);
    _exit(matmul_exact(child_gen, 64, 1000, 96) ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  check(WIFEXITED(status) && WEXITSTATUS(status) == 0, tag + ": a forked child");
}

}  // namespace

int main() {
  std::mt19937 gen(99);
  test_model_dot(gen);
  test_model_faults();
  if (lowbit::isa_missing_reason(lowbit::Isa::amx_emu).empty()) {
    test_tile_walk(gen);
    test_w4a8_tile_walk(gen);
    test_thread_config(gen, lowbit::Isa::amx_emu);
  } else {
    std::printf("amx_emu not available here: %s\n", lowbit::isa_missing_reason(lowbit::Isa::amx_emu).c_str());
  }
  if (lowbit::isa_missing_reason(lowbit::Isa::amx).empty()) {
    test_thread_config(gen, lowbit::Isa::amx);
  } else {
    std::printf("amx not available here: %s\n", lowbit::isa_missing_reason(lowbit::Isa::amx).c_str());
  }
  // Forcing a path the CPU lacks is an error naming the reason, never a crash.
  for (lowbit::Isa isa : lowbit::all_isas()) {
    if (!lowbit::isa_missing_reason(isa).empty()) {
      bool threw = false;
      try {
        lowbit::set_active_isa(isa);
      } catch (const std::runtime_error& e) {
        threw = std::string(e.what()).find(lowbit::isa_missing_reason(isa)) != std::string::npos;
      }
      check(threw, "set_active_isa(" + lowbit::isa_name(isa) + ") raises with the reason");
    }
  }
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
