// CPU features, read once (cpuid + xgetbv on x86-64, HWCAP on Linux/AArch64).
#pragma once

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
  bool neon = false;         // AArch64 Advanced SIMD
  bool neon_dotprod = false;  // ARMv8.2 sdot/udot
};

const CpuFeatures& cpu_features();

}  // namespace lowbit
