#include "kernels/amx/amx_model.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace lowbit {
namespace amx_model {
namespace {

struct TileState {
  bool configured = false;
  TileConfig cfg;
  alignas(64) uint8_t data[kTiles][kMaxRows][kMaxRowBytes] = {};
};

TileState& state() {
  thread_local TileState s;
  return s;
}

void abort_handler(const char* what) {
  std::fprintf(stderr, "AMX model fault: %s\n", what);
  std::abort();
}

std::atomic<FaultHandler> g_handler{abort_handler};
std::atomic<uint64_t> g_dots{0};

void fault(const std::string& what) { g_handler.load()(what.c_str()); }

// The tile t of a configured state, or a fault.
void check_tile(const TileState& s, int t, const char* insn) {
  if (!s.configured) fault(std::string(insn) + " before ldtilecfg");
  if (t < 0 || t >= kTiles) fault(std::string(insn) + ": no tile register " + std::to_string(t));
  if (s.cfg.rows[t] == 0 || s.cfg.colsb[t] == 0)
    fault(std::string(insn) + ": tile " + std::to_string(t) + " is not configured");
}

template <bool ASigned, bool BSigned>
void dot(int c, int a, int b, const char* insn) {
  TileState& s = state();
  check_tile(s, c, insn);
  check_tile(s, a, insn);
  check_tile(s, b, insn);
  const TileConfig& g = s.cfg;
  // The hardware's #UD conditions for the dot-product instructions.
  if (g.rows[c] != g.rows[a] || g.colsb[c] != g.colsb[b] || g.colsb[a] % 4 != 0 ||
      g.colsb[a] / 4 != g.rows[b] || g.colsb[c] % 4 != 0)
    fault(std::string(insn) + ": tile shapes do not match (dst " + std::to_string(g.rows[c]) + "x" +
          std::to_string(g.colsb[c]) + ", src1 " + std::to_string(g.rows[a]) + "x" +
          std::to_string(g.colsb[a]) + ", src2 " + std::to_string(g.rows[b]) + "x" +
          std::to_string(g.colsb[b]) + ")");
  g_dots.fetch_add(1, std::memory_order_relaxed);
  const int M = g.rows[c], N = g.colsb[c] / 4, K = g.colsb[a] / 4;
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      uint32_t acc;
      std::memcpy(&acc, &s.data[c][m][4 * n], 4);
      for (int k = 0; k < K; ++k)
        for (int i = 0; i < 4; ++i) {
          const uint8_t x = s.data[a][m][4 * k + i], y = s.data[b][k][4 * n + i];
          const int32_t xv = ASigned ? static_cast<int8_t>(x) : x;
          const int32_t yv = BSigned ? static_cast<int8_t>(y) : y;
          acc += static_cast<uint32_t>(xv * yv);  // |xv * yv| <= 2^15: exact; the sum wraps
        }
      std::memcpy(&s.data[c][m][4 * n], &acc, 4);
    }
}

}  // namespace

void set_fault_handler(FaultHandler handler) { g_handler.store(handler ? handler : abort_handler); }

void ldtilecfg(const TileConfig* cfg) {
  TileState& s = state();
  if (cfg->palette_id == 0) {  // palette 0: back to the init state, like tilerelease
    s = TileState{};
    return;
  }
  if (cfg->palette_id != 1) fault("ldtilecfg: palette " + std::to_string(cfg->palette_id));
  for (int t = 0; t < 16; ++t) {
    const bool used = t < kTiles;
    if ((!used && (cfg->rows[t] != 0 || cfg->colsb[t] != 0)) || cfg->rows[t] > kMaxRows ||
        cfg->colsb[t] > kMaxRowBytes || ((cfg->rows[t] == 0) != (cfg->colsb[t] == 0)))
      fault("ldtilecfg: invalid shape for tile " + std::to_string(t));
  }
  for (uint8_t r : cfg->reserved)
    if (r != 0) fault("ldtilecfg: reserved bytes must be zero");
  s.cfg = *cfg;
  s.configured = true;
  std::memset(s.data, 0, sizeof(s.data));  // ldtilecfg zeroes every tile
}

void sttilecfg(TileConfig* cfg) {
  const TileState& s = state();
  *cfg = s.configured ? s.cfg : TileConfig{};
}

void tilerelease() { state() = TileState{}; }

void tilezero(int t) {
  TileState& s = state();
  check_tile(s, t, "tilezero");
  std::memset(s.data[t], 0, sizeof(s.data[t]));
}

void tileloadd(int t, const void* base, int64_t stride) {
  TileState& s = state();
  check_tile(s, t, "tileloadd");
  std::memset(s.data[t], 0, sizeof(s.data[t]));  // bytes past the configuration read as zero
  const auto* src = static_cast<const uint8_t*>(base);
  for (int r = 0; r < s.cfg.rows[t]; ++r) std::memcpy(s.data[t][r], src + r * stride, s.cfg.colsb[t]);
}

void tilestored(int t, void* base, int64_t stride) {
  TileState& s = state();
  check_tile(s, t, "tilestored");
  auto* dst = static_cast<uint8_t*>(base);
  for (int r = 0; r < s.cfg.rows[t]; ++r) std::memcpy(dst + r * stride, s.data[t][r], s.cfg.colsb[t]);
}

uint64_t dot_count() { return g_dots.load(std::memory_order_relaxed); }

void tdpbusd(int c, int a, int b) { dot<false, true>(c, a, b, "tdpbusd"); }
void tdpbsud(int c, int a, int b) { dot<true, false>(c, a, b, "tdpbsud"); }
void tdpbssd(int c, int a, int b) { dot<true, true>(c, a, b, "tdpbssd"); }

}  // namespace amx_model
}  // namespace lowbit
