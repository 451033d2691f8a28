// lowbit public C++ API, CPU and threads: the ISA paths of the dispatch table (which one runs,
// which exist here and why not), the thread count and the OpenMP hand-off.
#pragma once

#include <string>
#include <vector>

namespace lowbit {

// One value per row of the dispatch table (csrc/dispatch/kernel_table.cpp), which owns names,
// detection and preference. amx_emu is test-only: the AMX kernels on a software tile model.
enum class Isa : int {
  scalar = 0, avx2 = 1, avx512vnni = 2, avxvnni = 3, neon = 4, neondot = 5, amx = 6, amx_emu = 7
};

std::string isa_name(Isa isa);
Isa parse_isa(const std::string& name);          // throws std::invalid_argument for unknown names
std::vector<Isa> available_isas();               // in order of preference, best last
std::vector<Isa> all_isas();                     // every row, available here or not
std::string isa_missing_reason(Isa isa);         // empty if available, else why not
bool isa_test_only(Isa isa);                     // never the default (amx_emu)
Isa active_isa();
void set_active_isa(Isa isa);                    // throws std::runtime_error if the CPU lacks it
std::vector<std::string> cpu_feature_names();    // e.g. {"avx2", "fma", "avx512f", ...}

int get_num_threads();
void set_num_threads(int n);                     // 1 <= n <= max_num_threads()
int default_num_threads();                       // usable cores (respects CPU affinity)
// The most threads set_num_threads accepts: kThreadsPerCpu per CPU (the larger of the affinity
// mask and the machine's count), and at least kMinThreadCap. Every kernel is compute- or
// memory-bound, so threads beyond the CPUs only take turns; a few per CPU stay allowed for
// tests and experiments that oversubscribe (thread counts 3 and 7 on a 2-CPU machine).
constexpr int kThreadsPerCpu = 4;
constexpr int kMinThreadCap = 16;
int max_num_threads();
// Run parallel work on the threads of an OpenMP runtime already in the process (PyTorch's
// libgomp) instead of lowbit's own: inside a PyTorch model the two pools would fight for the
// cores. Threads per call: the smaller of get_num_threads() and that runtime's setting.
void use_openmp_runtime(const std::string& library_path);  // throws std::runtime_error
void use_own_threads();
std::string parallel_runtime_name();             // "lowbit" or "openmp:<library path>"

}  // namespace lowbit
