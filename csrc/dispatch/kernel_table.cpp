// The one place that decides which kernels run: one row per ISA path. A row names the path, says
// how to detect it (CPU bits and OS support) and why it is missing where it is, names the path it
// derives from and overrides that path's entries by name. Name parsing, the listing of available
// paths, the preference order (the last available row that is not test-only) and every error
// text come from these rows. Adding a path: a folder under csrc/kernels/, its namespace in
// kernels/isa_kernels.h, a row here, a CMake line.
#include "dispatch/kernel_table.h"

#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "dispatch/cpu_features.h"
#include "kernels/isa_kernels.h"

namespace lowbit {
namespace {

struct IsaRow {
  Isa isa;
  const char* name;
  Isa base;        // the path whose entries this one starts from (scalar: itself)
  bool test_only;  // never chosen by default; only by LOWBIT_ISA / use_isa
  // Empty when the path runs here, else why not (shown by cpu_info() and in errors).
  std::string (*missing)(const CpuFeatures&);
  void (*overrides)(KernelTable&);
};

std::string need(bool ok, const char* what) { return ok ? std::string() : std::string(what); }

#if LOWBIT_HAVE_X86_KERNELS
constexpr bool kX86 = true;
#else
constexpr bool kX86 = false;
#endif
#if LOWBIT_HAVE_NEON_KERNELS
constexpr bool kArm = true;
#else
constexpr bool kArm = false;
#endif

std::string missing_avx2(const CpuFeatures& f) {
  if (!kX86) return "not built for this architecture (x86-64 only)";
  return need(f.avx2 && f.fma, "the CPU (or the OS) lacks AVX2 and FMA");
}
std::string missing_avx512(const CpuFeatures& f) {
  if (!kX86) return "not built for this architecture (x86-64 only)";
  return need(f.avx2 && f.fma && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512vnni,
              "the CPU (or the OS: XCR0 zmm state) lacks AVX-512 F/BW/VL/DQ with VNNI");
}
std::string missing_amx(const CpuFeatures& f) {
  std::string why = missing_avx512(f);  // the epilogues and the small-M kernels are AVX-512
  if (!why.empty()) return why;
  if (!f.amx_tile || !f.amx_int8) return "the CPU lacks AMX-TILE and AMX-INT8";
  if (!f.os_amx) return "the OS does not enable the tile state (XCR0 XTILECFG/XTILEDATA)";
  if (!f.amx_permission) return "the OS refused the tile data permission: " + f.amx_permission_error;
  return "";
}

#if LOWBIT_HAVE_X86_KERNELS
void avx2_entries(KernelTable& t) {
  t.quantize_run = avx2::quantize_run;
  t.quantize_run_16 = avx2::quantize_run_16;
  t.dequantize_run = avx2::dequantize_run;
  t.min_max = avx2::min_max;
  t.quantize_row_u8 = avx2::quantize_row_u8;
  t.requantize_run = avx2::requantize_run;
  t.sum_bytes = avx2::sum_bytes;
  t.w8a8 = {avx2::w8a8, 4};
  t.w4a8 = {avx2::w4a8, 2};
  t.w4f32 = {avx2::w4f32, 2};
  t.w8f32 = {avx2::w8f32, 3};
  t.wf16f32 = {avx2::wf16f32, 3};
  t.wbf16f32 = {avx2::wbf16f32, 3};
  t.dwconv = avx2::dwconv;
  t.transpose8 = avx2::transpose8;
  t.transpose32 = avx2::transpose32;
}
// AVX-VNNI CPUs run the AVX2 kernels with their own int8 GEMM.
void avxvnni_entries(KernelTable& t) { t.w8a8 = {avxvnni::w8a8, 6}; }
// Up to this many rows of A the plain-B kernel (B read in place) beats packing B per call (then
// the packed kernels, AMX included): 2-vCPU AMX Xeon, K = N = 4096, 1 thread, plain-B kernel /
// pack-and-run: M = 2 0.96 / 2.37 ms, 8 1.48 / 2.62, 12 2.22 / 2.63, 16 2.71 / 2.59.
constexpr int64_t kPlainBMaxRowsAvx512 = 12;
void avx512vnni_entries(KernelTable& t) {
  t.quantize_run = avx512vnni::quantize_run;
  t.quantize_run_16 = avx512vnni::quantize_run_16;
  t.dequantize_run = avx512vnni::dequantize_run;
  t.min_max = avx512vnni::min_max;
  t.quantize_row_u8 = avx512vnni::quantize_row_u8;
  t.requantize_run = avx512vnni::requantize_run;
  t.sum_bytes = avx512vnni::sum_bytes;
  t.pack_b_groups = avx512vnni::pack_b_groups;
  t.pack_bt_groups = avx512vnni::pack_bt_groups;
  t.w8a8 = {avx512vnni::w8a8, 6};
  t.w8a8_plain_b = {avx512vnni::w8a8_plain_b, kPlainBMaxRowsAvx512};
  t.w4a8 = {avx512vnni::w4a8, 4};
  t.w4f32 = {avx512vnni::w4f32, 4};
  t.w8f32 = {avx512vnni::w8f32, 4};
  t.wf16f32 = {avx512vnni::wf16f32, 6};
  t.wbf16f32 = {avx512vnni::wbf16f32, 6};
  t.dwconv = avx512vnni::dwconv;
  t.transpose32 = avx512vnni::transpose32;
}
// The tile unit takes the w8a8 and w4a8 GEMMs at 32 rows a step (small M falls back inside).
void amx_entries(KernelTable& t) {
  t.w8a8 = {amx::w8a8, 32};
  t.w4a8 = {amx::w4a8, 32};
}
void amx_emu_entries(KernelTable& t) {
  t.w8a8 = {amx_emu::w8a8, 32};
  t.w4a8 = {amx_emu::w4a8, 32};
}
#else
void avx2_entries(KernelTable&) {}
void avxvnni_entries(KernelTable&) {}
void avx512vnni_entries(KernelTable&) {}
void amx_entries(KernelTable&) {}
void amx_emu_entries(KernelTable&) {}
#endif

#if LOWBIT_HAVE_NEON_KERNELS
void neon_entries(KernelTable& t) {
  t.quantize_run = neon::quantize_run;
  t.quantize_run_16 = neon::quantize_run_16;
  t.dequantize_run = neon::dequantize_run;
  t.min_max = neon::min_max;
  t.quantize_row_u8 = neon::quantize_row_u8;
  t.requantize_run = neon::requantize_run;
  t.sum_bytes = neon::sum_bytes;
  t.w8a8 = {neon::w8a8, 2};
  t.w4a8 = {neon::w4a8, 2};
  t.w4f32 = {neon::w4f32, 2};
  t.w8f32 = {neon::w8f32, 2};
  t.wf16f32 = {neon::wf16f32, 2};
  t.wbf16f32 = {neon::wbf16f32, 2};
  t.dwconv = neon::dwconv;
}
// The dot product extension speeds up the integer GEMMs; everything else is plain NEON.
void neondot_entries(KernelTable& t) {
  t.w8a8 = {neondot::w8a8, 4};
  t.w4a8 = {neondot::w4a8, 4};
}
#else
void neon_entries(KernelTable&) {}
void neondot_entries(KernelTable&) {}
#endif

void scalar_entries(KernelTable& t) {
  t.quantize_run = scalar::quantize_run;
  t.quantize_run_16 = scalar::quantize_run_16;
  t.dequantize_run = scalar::dequantize_run;
  t.min_max = scalar::min_max;
  t.quantize_row_u8 = scalar::quantize_row_u8;
  t.requantize_run = scalar::requantize_run;
  t.sum_bytes = scalar::sum_bytes;
  t.pack_b_groups = scalar::pack_b_groups;
  t.pack_bt_groups = scalar::pack_bt_groups;
  t.w8a8 = {scalar::w8a8, 1};
  t.w4a8 = {scalar::w4a8, 1};
  t.w4f32 = {scalar::w4f32, 1};
  t.w8f32 = {scalar::w8f32, 1};
  t.wf16f32 = {scalar::wf16f32, 1};
  t.wbf16f32 = {scalar::wbf16f32, 1};
  t.dwconv = scalar::dwconv;
  t.transpose8 = scalar::transpose8;
  t.transpose32 = scalar::transpose32;
}

// In order of preference, best last; a row's base comes before it.
const IsaRow kRows[] = {
    {Isa::scalar, "scalar", Isa::scalar, false, [](const CpuFeatures&) { return std::string(); },
     scalar_entries},
    {Isa::avx2, "avx2", Isa::scalar, false, missing_avx2, avx2_entries},
    {Isa::avxvnni, "avxvnni", Isa::avx2, false,
     [](const CpuFeatures& f) {
       std::string why = missing_avx2(f);
       return why.empty() ? need(f.avxvnni, "the CPU lacks AVX-VNNI") : why;
     },
     avxvnni_entries},
    {Isa::avx512vnni, "avx512vnni", Isa::avx2, false, missing_avx512, avx512vnni_entries},
    {Isa::amx, "amx", Isa::avx512vnni, false, missing_amx, amx_entries},
    // The AMX kernels on the software tile model: the same sources, testable on any AVX-512 CPU.
    {Isa::amx_emu, "amx_emu", Isa::avx512vnni, true, missing_avx512, amx_emu_entries},
    {Isa::neon, "neon", Isa::scalar, false,
     [](const CpuFeatures& f) {
       if (!kArm) return std::string("not built for this architecture (AArch64 only)");
       return need(f.neon, "the CPU lacks Advanced SIMD");
     },
     neon_entries},
    {Isa::neondot, "neondot", Isa::neon, false,
     [](const CpuFeatures& f) {
       if (!kArm) return std::string("not built for this architecture (AArch64 only)");
       return need(f.neon && f.neon_dotprod, "the CPU lacks the dot product extension (ARMv8.2 sdot/udot)");
     },
     neondot_entries},
};
constexpr int kRowCount = sizeof(kRows) / sizeof(kRows[0]);

const IsaRow& row_of(Isa isa) {
  for (const IsaRow& r : kRows)
    if (r.isa == isa) return r;
  throw std::invalid_argument("unknown ISA id " + std::to_string(static_cast<int>(isa)));
}

int index_of(Isa isa) { return static_cast<int>(&row_of(isa) - kRows); }

struct Tables {
  KernelTable table[kRowCount];
  std::string missing[kRowCount];
  Tables() {
    const CpuFeatures& f = cpu_features();
    for (int i = 0; i < kRowCount; ++i) {
      const IsaRow& r = kRows[i];
      if (r.isa != r.base) table[i] = table[index_of(r.base)];
      r.overrides(table[i]);
      missing[i] = r.missing(f);
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

bool isa_supported(Isa isa) { return tables().missing[index_of(isa)].empty(); }

std::string unsupported_message(Isa isa) {
  return "ISA '" + isa_name(isa) + "' is not available on this machine: " + isa_missing_reason(isa);
}

Isa best_isa() {
  Isa best = Isa::scalar;
  for (const IsaRow& r : kRows)
    if (!r.test_only && isa_supported(r.isa)) best = r.isa;
  return best;
}

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
    throw std::runtime_error("LOWBIT_ISA=" + std::string(env) + ": " + unsupported_message(isa));
  return isa;
}

std::atomic<int>& active_slot() {
  static std::atomic<int> slot{static_cast<int>(initial_isa())};
  return slot;
}

}  // namespace

std::string isa_name(Isa isa) { return row_of(isa).name; }

Isa parse_isa(const std::string& name) {
  std::string known;
  for (const IsaRow& r : kRows) {
    if (name == r.name) return r.isa;
    known += (known.empty() ? "" : ", ") + std::string(r.name);
  }
  throw std::invalid_argument("unknown ISA '" + name + "' (expected one of: " + known + ")");
}

std::vector<Isa> available_isas() {
  std::vector<Isa> out;
  for (const IsaRow& r : kRows)
    if (isa_supported(r.isa)) out.push_back(r.isa);
  return out;
}

std::vector<Isa> all_isas() {
  std::vector<Isa> out;
  for (const IsaRow& r : kRows) out.push_back(r.isa);
  return out;
}

std::string isa_missing_reason(Isa isa) { return tables().missing[index_of(isa)]; }

bool isa_test_only(Isa isa) { return row_of(isa).test_only; }

Isa active_isa() { return static_cast<Isa>(active_slot().load(std::memory_order_relaxed)); }

void set_active_isa(Isa isa) {
  if (!isa_supported(isa)) throw std::runtime_error(unsupported_message(isa));
  active_slot().store(static_cast<int>(isa), std::memory_order_relaxed);
}

std::vector<std::string> cpu_feature_names() {
  const CpuFeatures& f = cpu_features();
  std::vector<std::string> out;
  const std::pair<bool, const char*> all[] = {
      {f.avx2, "avx2"},         {f.fma, "fma"},           {f.avx512f, "avx512f"},
      {f.avx512bw, "avx512bw"}, {f.avx512vl, "avx512vl"}, {f.avx512dq, "avx512dq"},
      {f.avx512vnni, "avx512vnni"}, {f.avxvnni, "avxvnni"}, {f.amx_tile, "amx_tile"},
      {f.amx_int8, "amx_int8"}, {f.amx_bf16, "amx_bf16"}, {f.neon, "neon"},
      {f.neon_dotprod, "dotprod"}};
  for (const auto& [present, name] : all)
    if (present) out.push_back(name);
  return out;
}

const KernelTable& kernels() { return tables().table[index_of(active_isa())]; }

const KernelTable& kernels_for(Isa isa) {
  if (!isa_supported(isa)) throw std::runtime_error(unsupported_message(isa));
  return tables().table[index_of(isa)];
}

}  // namespace lowbit
