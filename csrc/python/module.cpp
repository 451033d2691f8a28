// The pybind11 module lowbit._C. The bindings check arrays (dtype, contiguity, alignment, sizes),
// release the GIL around kernels, nothing else. The Python layer (python/lowbit) normalizes user
// input before calling here; these checks are the last line that keeps a bad call from reaching
// the kernels. One file per concern (bind_*.cpp), helpers shared in bind_common.h.
#include <pybind11/pybind11.h>

#include "python/bind_common.h"

PYBIND11_MODULE(_C, m) {
  m.doc() = "lowbit C++ core (kernels, packing, dispatch, threads)";

  lowbit::bindings::bind_enums(m);  // first: the functions' signatures name the enums
  lowbit::bindings::bind_runtime(m);
  lowbit::bindings::bind_bench(m);
  lowbit::bindings::bind_quantize(m);
  lowbit::bindings::bind_packed(m);
  lowbit::bindings::bind_gemm(m);
  lowbit::bindings::bind_conv(m);
  lowbit::bindings::bind_raw(m);
}
