// Binding of the bench-only DRAM bandwidth probe (csrc/bench/memory_bandwidth.h) that the
// Python benchmark harness (python/lowbit/benchmark) calls.
#include <pybind11/pybind11.h>

#include <cstddef>

#include "bench/memory_bandwidth.h"
#include "python/bind_common.h"

namespace lowbit {
namespace bindings {

void bind_bench(py::module_& m) {
  m.def("memory_read_bandwidth", [](size_t nbytes, int repeats) {
    py::gil_scoped_release release;
    return lowbit::bench::memory_read_bandwidth(nbytes, repeats);
  }, py::arg("nbytes"), py::arg("repeats") = 5);
}

}  // namespace bindings
}  // namespace lowbit
