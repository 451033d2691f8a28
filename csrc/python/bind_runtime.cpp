// Bindings of the runtime: ISA paths (cpu_info, get_isa, set_isa), threads and the OpenMP
// hand-off.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <pybind11/stl.h>

#include <string>

#include "lowbit/runtime.h"
#include "python/bind_common.h"

namespace lowbit {
namespace bindings {
namespace {

py::dict cpu_info() {
  py::dict d;
  d["isa"] = lowbit::isa_name(lowbit::active_isa());
  py::list available;
  for (lowbit::Isa isa : lowbit::available_isas()) available.append(lowbit::isa_name(isa));
  d["available"] = available;
  // Every path this build knows that does not run here, with the reason (from the dispatch rows).
  py::dict unavailable;
  py::list test_only;
  for (lowbit::Isa isa : lowbit::all_isas()) {
    const std::string why = lowbit::isa_missing_reason(isa);
    if (!why.empty()) unavailable[py::str(lowbit::isa_name(isa))] = why;
    if (lowbit::isa_test_only(isa)) test_only.append(lowbit::isa_name(isa));
  }
  d["unavailable"] = unavailable;
  d["test_only"] = test_only;
  d["features"] = lowbit::cpu_feature_names();
  d["threads"] = lowbit::get_num_threads();
  d["default_threads"] = lowbit::default_num_threads();
  d["max_threads"] = lowbit::max_num_threads();
  return d;
}

}  // namespace

void bind_runtime(py::module_& m) {
  m.def("cpu_info", &cpu_info);
  m.def("get_isa", [] { return lowbit::isa_name(lowbit::active_isa()); });
  m.def("set_isa", [](const std::string& name) { lowbit::set_active_isa(lowbit::parse_isa(name)); });
  m.def("get_num_threads", &lowbit::get_num_threads);
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw py::value_error("number of threads must be >= 1");
    py::gil_scoped_release release;
    lowbit::set_num_threads(n);
  });
  m.def("default_num_threads", &lowbit::default_num_threads);
  m.def("max_num_threads", &lowbit::max_num_threads);
  m.def("_use_openmp_runtime", [](const std::string& path) {
    py::gil_scoped_release release;
    lowbit::use_openmp_runtime(path);
  }, py::arg("library_path"));
  m.def("_use_own_threads", [] { lowbit::use_own_threads(); });
  m.def("parallel_runtime", &lowbit::parallel_runtime_name);
  m.attr("THREADS_PER_CPU") = lowbit::kThreadsPerCpu;
  m.attr("MIN_THREAD_CAP") = lowbit::kMinThreadCap;
}

}  // namespace bindings
}  // namespace lowbit
