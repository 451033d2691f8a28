// A software model of the AMX tile instructions the amx kernels use (ldtilecfg, sttilecfg,
// tilezero, tileloadd, tilestored, tdpbusd, tdpbsud, tdpbssd, tilerelease), for the test-only `amx_emu`
// path: the same kernel sources run on every x86 machine, so the tile walk, the K and M tails
// and the epilogue are tested (also under ASan and TSan) where the CPU has no tile unit.
//
// State is per thread, like the hardware's: eight tile registers of 16 rows x 64 bytes and the
// loaded configuration. Each instruction checks what the hardware checks (#UD on a shape
// mismatch, a tile used before ldtilecfg) and touches exactly the rows and bytes per row of the
// configuration, so an access past them is a fault here, or an ASan report on the memory side.
// Plain C++: this header and amx_model.cpp are compiled without any ISA flags.
#pragma once

#include <cstdint>

namespace lowbit {
namespace amx_model {

constexpr int kTiles = 8;
constexpr int kMaxRows = 16;
constexpr int kMaxRowBytes = 64;

// The 64-byte operand of ldtilecfg / sttilecfg (palette 1), as the hardware lays it out.
struct TileConfig {
  uint8_t palette_id = 0;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};  // bytes per row of tile t
  uint8_t rows[16] = {};    // rows of tile t
};
static_assert(sizeof(TileConfig) == 64, "the tile configuration is 64 bytes");

// A fault (what the hardware raises as #UD or #GP). The default handler prints the message and
// aborts, as a real fault would end the process; tests of the model install one that throws.
using FaultHandler = void (*)(const char* what);
void set_fault_handler(FaultHandler handler);  // nullptr restores the aborting default

void ldtilecfg(const TileConfig* cfg);
void sttilecfg(TileConfig* cfg);  // all zero while the tiles are not configured
void tilerelease();
void tilezero(int t);
void tileloadd(int t, const void* base, int64_t stride);
void tilestored(int t, void* base, int64_t stride);
// c[m][n] += sum over k < colsb(a)/4, i < 4 of a[m][4k+i] * b[k][4n+i], int32, wrapping:
// tdpbusd: a unsigned, b signed bytes; tdpbsud: a signed, b unsigned; tdpbssd: both signed.
void tdpbusd(int c, int a, int b);
void tdpbsud(int c, int a, int b);
void tdpbssd(int c, int a, int b);

// Dot-product instructions executed by every thread so far (tests check the tile walk with it).
uint64_t dot_count();

}  // namespace amx_model
}  // namespace lowbit
