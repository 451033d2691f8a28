// Entry points of every ISA path's translation units (only declared here; no SIMD code): the one
// declaration list kernels/isa_kernels.inc, once per path namespace. Adding a path: a namespace
// here, a folder under csrc/kernels/, a row in dispatch/kernel_table.cpp, a CMake line.
#pragma once

#include "kernels/kernel_api.h"

namespace lowbit {

// Scalar kernels: the fallback path and the oracle the SIMD paths are tested against.
namespace scalar {
#include "kernels/isa_kernels.inc"
}  // namespace scalar

// x86-64. avx2: AVX2 + FMA. avxvnni: its own w8a8 GEMM (256-bit VEX vpdpbusd), AVX2's for the
// rest. avx512vnni: AVX-512 F/BW/VL/DQ with VNNI.
namespace avx2 {
#include "kernels/isa_kernels.inc"
}  // namespace avx2
namespace avxvnni {
#include "kernels/isa_kernels.inc"
}  // namespace avxvnni
namespace avx512vnni {
#include "kernels/isa_kernels.inc"
}  // namespace avx512vnni

// AMX: each source is built twice, namespace amx (the tile instructions) and amx_emu (the
// software tile model of amx/amx_model.h, a test-only path), with the same signatures.
namespace amx {
#include "kernels/isa_kernels.inc"
}  // namespace amx
namespace amx_emu {
#include "kernels/isa_kernels.inc"
}  // namespace amx_emu

// AArch64. neon: any AArch64 CPU (Advanced SIMD is mandatory there). neondot: the ARMv8.2 dot
// product extension (sdot), used for the integer GEMMs; it shares neon's elementwise kernels.
namespace neon {
#include "kernels/isa_kernels.inc"
}  // namespace neon
namespace neondot {
#include "kernels/isa_kernels.inc"
}  // namespace neondot

}  // namespace lowbit
