#include "dispatch/kernel_table.h"

#include <atomic>
#include <cstdlib>
#include <stdexcept>

#include "dispatch/cpu_features.h"
#include "kernels/avx2/avx2_kernels.h"
#include "kernels/avx512vnni/avx512vnni_kernels.h"
#include "kernels/avxvnni/avxvnni_kernels.h"
#include "kernels/neon/neon_kernels.h"
#include "ref/ref_kernels.h"

namespace lowbit {
namespace {

// Per ISA, the best kernel for each operation. AVX-VNNI CPUs run the AVX2 elementwise kernels
// with their own int8 GEMM (and the AVX2 4-bit kernels).
constexpr KernelTable kScalar = {"scalar", ref::quantize_run, ref::dequantize_run, ref::min_max,
                                 ref::quantize_row_u8, ref::requantize_run, ref::gemm,
                                 ref::sum_bytes, ref::gemm_w4a8, ref::gemm_w4f32,
                                 ref::gemm_w8f32};
#if LOWBIT_HAVE_X86_KERNELS
constexpr KernelTable kAvx2 = {"avx2", avx2::quantize_run, avx2::dequantize_run, avx2::min_max,
                               avx2::quantize_row_u8, avx2::requantize_run, avx2::gemm,
                               avx2::sum_bytes, avx2::gemm_w4a8, avx2::gemm_w4f32,
                               avx2::gemm_w8f32};
constexpr KernelTable kAvxVnni = {"avxvnni", avx2::quantize_run, avx2::dequantize_run,
                                  avx2::min_max, avx2::quantize_row_u8, avx2::requantize_run,
                                  avxvnni::gemm, avx2::sum_bytes, avx2::gemm_w4a8,
                                  avx2::gemm_w4f32, avx2::gemm_w8f32};
constexpr KernelTable kAvx512Vnni = {"avx512vnni", avx512vnni::quantize_run,
                                     avx512vnni::dequantize_run, avx512vnni::min_max,
                                     avx512vnni::quantize_row_u8, avx512vnni::requantize_run,
                                     avx512vnni::gemm, avx512vnni::sum_bytes,
                                     avx512vnni::gemm_w4a8, avx512vnni::gemm_w4f32,
                                     avx512vnni::gemm_w8f32};
#else
constexpr KernelTable kAvx2 = kScalar, kAvxVnni = kScalar, kAvx512Vnni = kScalar;
#endif
#if LOWBIT_HAVE_NEON_KERNELS
constexpr KernelTable kNeon = {"neon", neon::quantize_run, neon::dequantize_run, neon::min_max,
                               neon::quantize_row_u8, neon::requantize_run, neon::gemm,
                               neon::sum_bytes, neon::gemm_w4a8, neon::gemm_w4f32,
                               neon::gemm_w8f32};
// The dot product extension speeds up the integer GEMMs; everything else is plain NEON.
constexpr KernelTable kNeonDot = {"neondot", neon::quantize_run, neon::dequantize_run,
                                  neon::min_max, neon::quantize_row_u8, neon::requantize_run,
                                  neondot::gemm, neon::sum_bytes, neondot::gemm_w4a8,
                                  neon::gemm_w4f32, neon::gemm_w8f32};
#else
constexpr KernelTable kNeon = kScalar, kNeonDot = kScalar;
#endif

constexpr Isa kAllIsas[] = {Isa::scalar, Isa::avx2,    Isa::avxvnni,
                            Isa::avx512vnni, Isa::neon, Isa::neondot};

bool isa_supported(Isa isa) {
  const CpuFeatures& f = cpu_features();
  switch (isa) {
    case Isa::scalar: return true;
    case Isa::avx2: return LOWBIT_HAVE_X86_KERNELS && f.avx2 && f.fma;
    case Isa::avxvnni: return LOWBIT_HAVE_X86_KERNELS && f.avx2 && f.fma && f.avxvnni;
    case Isa::avx512vnni:
      return LOWBIT_HAVE_X86_KERNELS && f.avx2 && f.fma && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq &&
             f.avx512vnni;
    case Isa::neon: return LOWBIT_HAVE_NEON_KERNELS && f.neon;
    case Isa::neondot: return LOWBIT_HAVE_NEON_KERNELS && f.neon && f.neon_dotprod;
  }
  return false;
}

const KernelTable& table_of(Isa isa) {
  switch (isa) {
    case Isa::scalar: return kScalar;
    case Isa::avx2: return kAvx2;
    case Isa::avxvnni: return kAvxVnni;
    case Isa::avx512vnni: return kAvx512Vnni;
    case Isa::neon: return kNeon;
    case Isa::neondot: return kNeonDot;
  }
  return kScalar;
}

Isa best_isa() { return available_isas().back(); }

// LOWBIT_ISA forces a path for the whole process (also for C++ tests and benchmarks).
Isa initial_isa() {
  const char* env = std::getenv("LOWBIT_ISA");
  if (env == nullptr || *env == '\0') return best_isa();
  Isa isa;
  try {
    isa = parse_isa(env);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("LOWBIT_ISA=" + std::string(env) + ": " + e.what());
  }
  if (!isa_supported(isa))
    throw std::runtime_error("LOWBIT_ISA=" + std::string(env) + ": this CPU does not support it");
  return isa;
}

std::atomic<int>& active_slot() {
  static std::atomic<int> slot{static_cast<int>(initial_isa())};
  return slot;
}

}  // namespace

std::string isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avxvnni: return "avxvnni";
    case Isa::avx512vnni: return "avx512vnni";
    case Isa::neon: return "neon";
    case Isa::neondot: return "neondot";
  }
  return "unknown";
}

Isa parse_isa(const std::string& name) {
  for (Isa isa : kAllIsas)
    if (isa_name(isa) == name) return isa;
  throw std::invalid_argument("unknown ISA '" + name +
                              "' (expected scalar, avx2, avxvnni, avx512vnni, neon or neondot)");
}

std::vector<Isa> available_isas() {
  std::vector<Isa> out;
  for (Isa isa : kAllIsas)
    if (isa_supported(isa)) out.push_back(isa);
  return out;
}

Isa active_isa() { return static_cast<Isa>(active_slot().load(std::memory_order_relaxed)); }

void set_active_isa(Isa isa) {
  if (!isa_supported(isa))
    throw std::runtime_error("ISA '" + isa_name(isa) + "' is not supported by this CPU");
  active_slot().store(static_cast<int>(isa), std::memory_order_relaxed);
}

std::vector<std::string> cpu_feature_names() {
  const CpuFeatures& f = cpu_features();
  std::vector<std::string> out;
  const std::pair<bool, const char*> all[] = {
      {f.avx2, "avx2"},         {f.fma, "fma"},           {f.avx512f, "avx512f"},
      {f.avx512bw, "avx512bw"}, {f.avx512vl, "avx512vl"}, {f.avx512dq, "avx512dq"},
      {f.avx512vnni, "avx512vnni"}, {f.avxvnni, "avxvnni"}, {f.neon, "neon"},
      {f.neon_dotprod, "dotprod"}};
  for (const auto& [present, name] : all)
    if (present) out.push_back(name);
  return out;
}

const KernelTable& kernels() { return table_of(active_isa()); }

const KernelTable& kernels_for(Isa isa) {
  if (!isa_supported(isa))
    throw std::runtime_error("ISA '" + isa_name(isa) + "' is not supported by this CPU");
  return table_of(isa);
}

}  // namespace lowbit
