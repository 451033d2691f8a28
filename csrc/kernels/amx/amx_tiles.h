// The tile instructions as the amx kernels call them, in one of two builds of the same source:
//   LOWBIT_AMX_EMULATED=0: the real instructions (compiled with -mamx-tile -mamx-int8), path `amx`;
//   LOWBIT_AMX_EMULATED=1: the software model of amx_model.h, test-only path `amx_emu`.
// LOWBIT_AMX_NS names the namespace of the build (amx / amx_emu), so both link into one library.
// Included only by the amx translation units; every helper is static (no ODR clash between builds).
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/amx/amx_model.h"

#ifndef LOWBIT_AMX_EMULATED
#error "LOWBIT_AMX_EMULATED must be 0 or 1"
#endif

namespace lowbit {
namespace LOWBIT_AMX_NS {

using TileConfig = amx_model::TileConfig;

// Rows of every tile the kernels configure (the most a tile holds).
constexpr int64_t kTileRows = amx_model::kMaxRows;

// Tile numbers are immediates of the instructions (GCC's intrinsics paste them into the asm
// text), so the tile operations are macros over literal tile numbers.
#if LOWBIT_AMX_EMULATED
static inline void tile_store_config(TileConfig* cfg) { amx_model::sttilecfg(cfg); }
static inline void tile_load_config(const TileConfig* cfg) { amx_model::ldtilecfg(cfg); }
#define LOWBIT_TILE_ZERO(t) ::lowbit::amx_model::tilezero(t)
#define LOWBIT_TILE_LOAD(t, p, stride) ::lowbit::amx_model::tileloadd(t, p, stride)
#define LOWBIT_TILE_STORE(t, p, stride) ::lowbit::amx_model::tilestored(t, p, stride)
#define LOWBIT_TILE_DPBUSD(c, a, b) ::lowbit::amx_model::tdpbusd(c, a, b)
#define LOWBIT_TILE_DPBSUD(c, a, b) ::lowbit::amx_model::tdpbsud(c, a, b)
#define LOWBIT_TILE_DPBSSD(c, a, b) ::lowbit::amx_model::tdpbssd(c, a, b)
#else
static inline void tile_store_config(TileConfig* cfg) { _tile_storeconfig(cfg); }
static inline void tile_load_config(const TileConfig* cfg) { _tile_loadconfig(cfg); }
#define LOWBIT_TILE_ZERO(t) _tile_zero(t)
#define LOWBIT_TILE_LOAD(t, p, stride) _tile_loadd(t, p, stride)
#define LOWBIT_TILE_STORE(t, p, stride) _tile_stored(t, p, stride)
#define LOWBIT_TILE_DPBUSD(c, a, b) _tile_dpbusd(c, a, b)
#define LOWBIT_TILE_DPBSUD(c, a, b) _tile_dpbsud(c, a, b)
#define LOWBIT_TILE_DPBSSD(c, a, b) _tile_dpbssd(c, a, b)
#endif

// Tile configuration is per thread (the caller, lowbit's pool workers, PyTorch's OpenMP team,
// a forked child's threads all start unconfigured), and another library in the thread (oneDNN)
// may have loaded its own shapes since our last call. So every kernel call reads the thread's
// current configuration back (sttilecfg, cheap) and loads ours only if it differs: the thread
// knows whether it is configured from the hardware itself, never from a flag that could be stale.
static inline void ensure_tile_config(const TileConfig& want) {
  alignas(64) TileConfig have;
  tile_store_config(&have);
  if (std::memcmp(&have, &want, sizeof(TileConfig)) != 0) tile_load_config(&want);
}

// Palette 1 with the first `n` tiles shaped rows x colsb each (the rest unused).
static inline TileConfig uniform_config(int n, int rows, int colsb) {
  TileConfig cfg;
  cfg.palette_id = 1;
  for (int t = 0; t < n; ++t) {
    cfg.rows[t] = static_cast<uint8_t>(rows);
    cfg.colsb[t] = static_cast<uint16_t>(colsb);
  }
  return cfg;
}

}  // namespace LOWBIT_AMX_NS
}  // namespace lowbit
