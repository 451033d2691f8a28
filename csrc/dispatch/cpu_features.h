// CPU features, read once (cpuid + xgetbv on x86-64).
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
};

const CpuFeatures& cpu_features();

}  // namespace lowbit
