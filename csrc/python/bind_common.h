// Helpers shared by the binding files (bind_*.cpp): dtype, contiguity and alignment checks of
// NumPy arrays, and the bind_* functions module.cpp calls. Internal to the extension.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "lowbit/types.h"

namespace lowbit {
namespace bindings {

namespace py = pybind11;

// One per concern, each in its own bind_<concern>.cpp, called in this order by module.cpp.
void bind_enums(py::module_& m);     // the enums whose int codes the functions take
void bind_runtime(py::module_& m);   // ISA paths, threads, the OpenMP hand-off
void bind_bench(py::module_& m);     // the benchmark harness's DRAM bandwidth probe
void bind_quantize(py::module_& m);  // the quantization primitives
void bind_packed(py::module_& m);    // PackedMatrix, PackedInt4Matrix and their packers
void bind_gemm(py::module_& m);      // matmul_integer and the linear layers
void bind_conv(py::module_& m);      // the convolutions and their packed weight
void bind_raw(py::module_& m);       // packed views over foreign memory, linears on addresses

// A C-contiguous output array with 64-byte aligned data (lowbit's own allocation, freed with
// the array). NumPy's allocator aligns to 16 bytes; aligned rows let a kernel write an output
// too large for the caches with non-temporal stores (the AMX kernels, the AVX-512 transpose).
// A size that does not fit (an empty operand with a huge result: (2^40, 0) @ (0, 2^40)) is
// std::bad_alloc (MemoryError), checked before anything is multiplied out.
template <typename T>
py::array_t<T> aligned_array(const std::vector<py::ssize_t>& shape) {
  const bool empty = std::find(shape.begin(), shape.end(), py::ssize_t{0}) != shape.end();
  size_t bytes = empty ? 0 : sizeof(T);
  for (py::ssize_t d : shape)
    if (d < 0 || (!empty && (__builtin_mul_overflow(bytes, static_cast<size_t>(d), &bytes) ||
                             bytes > static_cast<size_t>(PTRDIFF_MAX) - 64)))
      throw std::bad_alloc();
  bytes = (std::max<size_t>(bytes, 1) + 63) / 64 * 64;
  void* data = std::aligned_alloc(64, bytes);
  if (data == nullptr) throw std::bad_alloc();
  py::capsule owner(data, [](void* q) { std::free(q); });
  std::vector<py::ssize_t> strides(shape.size());
  py::ssize_t stride = sizeof(T);
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = stride;
    // never past the whole size (checked above); an empty array's strides stop growing
    // where they would overflow (no element is ever addressed)
    if (i > 0 && __builtin_mul_overflow(stride, shape[i], &stride)) stride = strides[i];
  }
  return py::array_t<T>(shape, strides, static_cast<T*>(data), owner);
}

template <typename T>
py::array_t<T> aligned_output(int64_t M, int64_t N) {
  return aligned_array<T>({static_cast<py::ssize_t>(M), static_cast<py::ssize_t>(N)});
}

// By value, not by object identity: an unpickled or deep-copied array carries an equal but
// distinct dtype object. Equivalence also requires native byte order.
template <typename T>
bool has_dtype(const py::array& a) {
  const py::dtype dt = a.dtype();
  return dt.is(py::dtype::of<T>()) || dt.equal(py::dtype::of<T>());
}

inline void require_c_contiguous(const py::array& a, const char* name) {
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + " must be C-contiguous");
  if (!(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    throw py::value_error(std::string(name) + " must be aligned");
}

template <typename T>
const T* checked_data(const py::array& a, const char* name, const char* dtype_name) {
  if (!has_dtype<T>(a)) throw py::type_error(std::string(name) + " must have dtype " + dtype_name);
  require_c_contiguous(a, name);
  return static_cast<const T*>(a.data());
}

inline ElemType elem_type_of(const py::array& a, const char* name, bool allow_int32) {
  if (has_dtype<int8_t>(a)) return ElemType::int8;
  if (has_dtype<uint8_t>(a)) return ElemType::uint8;
  if (allow_int32 && has_dtype<int32_t>(a)) return ElemType::int32;
  throw py::type_error(std::string(name) + (allow_int32 ? " must be int8, uint8 or int32"
                                                        : " must be int8 or uint8"));
}

// "float16" / "bfloat16": the 16-bit float weight types (lowbit.PackedWeight's dtype names).
inline HalfType half_type(const std::string& name) {
  if (name == "float16") return HalfType::float16;
  if (name == "bfloat16") return HalfType::bfloat16;
  throw py::value_error("16-bit float type must be 'float16' or 'bfloat16', got '" + name + "'");
}

}  // namespace bindings
}  // namespace lowbit
