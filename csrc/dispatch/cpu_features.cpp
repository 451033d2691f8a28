#include "dispatch/cpu_features.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#endif
#elif defined(__aarch64__) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

namespace lowbit {
namespace {

#if defined(__x86_64__) || defined(_M_X64)
unsigned long long read_xcr0() {
  unsigned eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}

// Linux keeps the 8 KB tile data state off until a process asks for it; a tile instruction
// before that is a fault. Asked once per process (cpu_features() is read once).
void request_amx_permission(CpuFeatures& f) {
#if defined(__linux__)
  constexpr long kArchGetXcompPerm = 0x1022, kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) {
    f.amx_permission_error = std::string("arch_prctl(ARCH_REQ_XCOMP_PERM) failed: ") + std::strerror(errno);
    return;
  }
  unsigned long long granted = 0;
  if (syscall(SYS_arch_prctl, kArchGetXcompPerm, &granted) != 0 || !((granted >> kXfeatureXtiledata) & 1)) {
    f.amx_permission_error = "arch_prctl(ARCH_GET_XCOMP_PERM) does not list the tile data";
    return;
  }
  f.amx_permission = true;
#else
  f.amx_permission_error = "lowbit asks for the tile state on Linux only";
#endif
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  const bool osxsave = (ecx >> 27) & 1;
  const bool fma = (ecx >> 12) & 1;
  if (!osxsave) return f;
  const unsigned long long xcr0 = read_xcr0();
  const bool os_ymm = (xcr0 & 0x6) == 0x6;     // SSE and AVX state saved by the OS
  const bool os_zmm = (xcr0 & 0xe6) == 0xe6;   // plus opmask and both halves of zmm
  if (!os_ymm) return f;
  unsigned max_leaf = __get_cpuid_max(0, nullptr);
  if (max_leaf < 7) return f;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  f.fma = fma;
  f.avx2 = (ebx >> 5) & 1;
  if (os_zmm) {
    f.avx512f = (ebx >> 16) & 1;
    f.avx512dq = (ebx >> 17) & 1;
    f.avx512bw = (ebx >> 30) & 1;
    f.avx512vl = (ebx >> 31) & 1;
    f.avx512vnni = (ecx >> 11) & 1;
  }
  f.amx_bf16 = (edx >> 22) & 1;
  f.amx_tile = (edx >> 24) & 1;
  f.amx_int8 = (edx >> 25) & 1;
  f.os_amx = (xcr0 & 0x60000) == 0x60000;  // bits 17 (XTILECFG) and 18 (XTILEDATA)
  __cpuid_count(7, 1, eax, ebx, ecx, edx);
  f.avxvnni = (eax >> 4) & 1;
  if (f.amx_tile && f.os_amx) request_amx_permission(f);
  return f;
}
#elif defined(__aarch64__) && defined(__linux__)
CpuFeatures detect() {
  CpuFeatures f;
  const unsigned long hwcap = getauxval(AT_HWCAP);
  f.neon = (hwcap & HWCAP_ASIMD) != 0;
  f.neon_dotprod = f.neon && (hwcap & HWCAP_ASIMDDP) != 0;
  return f;
}
#else
CpuFeatures detect() { return CpuFeatures{}; }
#endif

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

}  // namespace lowbit
