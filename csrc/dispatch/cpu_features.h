// CPU features, read once (cpuid + xgetbv on x86-64, HWCAP on Linux/AArch64).
#pragma once

#include <string>

namespace lowbit {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512dq = false;
  bool avx512vnni = false;
  bool avxvnni = false;
  bool amx_tile = false;     // CPUID AMX-TILE
  bool amx_int8 = false;     // CPUID AMX-INT8
  bool amx_bf16 = false;     // CPUID AMX-BF16
  bool os_amx = false;       // XCR0 enables XTILECFG and XTILEDATA
  // Linux: arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) granted, asked once per process
  // (a forked child inherits it); elsewhere false, with the reason in amx_permission_error.
  bool amx_permission = false;
  std::string amx_permission_error;
  bool neon = false;         // AArch64 Advanced SIMD
  bool neon_dotprod = false;  // ARMv8.2 sdot/udot
};

const CpuFeatures& cpu_features();

}  // namespace lowbit
