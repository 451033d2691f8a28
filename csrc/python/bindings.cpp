// pybind11 bindings: check arrays (dtype, contiguity, alignment, sizes), release the GIL around
// kernels, nothing else. The Python layer (python/lowbit) normalizes user input before calling
// here; these checks are the last line that keeps a bad call from reaching the kernels.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>

#include "bench/memory_bandwidth.h"
#include "lowbit/lowbit.h"

namespace py = pybind11;
using lowbit::ElemType;

namespace {

// By value, not by object identity: an unpickled or deep-copied array carries an equal but
// distinct dtype object. Equivalence also requires native byte order.
template <typename T>
bool has_dtype(const py::array& a) {
  const py::dtype dt = a.dtype();
  return dt.is(py::dtype::of<T>()) || dt.equal(py::dtype::of<T>());
}

void require_c_contiguous(const py::array& a, const char* name) {
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

ElemType elem_type_of(const py::array& a, const char* name, bool allow_int32) {
  if (has_dtype<int8_t>(a)) return ElemType::int8;
  if (has_dtype<uint8_t>(a)) return ElemType::uint8;
  if (allow_int32 && has_dtype<int32_t>(a)) return ElemType::int32;
  throw py::type_error(std::string(name) + (allow_int32 ? " must be int8, uint8 or int32"
                                                        : " must be int8 or uint8"));
}

std::vector<py::ssize_t> shape_of(const py::array& a) {
  return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

py::array new_quantized(const std::vector<py::ssize_t>& shape, lowbit::QType qtype) {
  if (qtype == lowbit::QType::uint8 || qtype == lowbit::QType::uint4)
    return py::array_t<uint8_t>(shape);
  return py::array_t<int8_t>(shape);
}

int64_t expected_scale_count(lowbit::AxisView v, lowbit::ScaleMode mode, int64_t block) {
  switch (mode) {
    case lowbit::ScaleMode::per_tensor: return 1;
    case lowbit::ScaleMode::per_axis: return v.axis;
    case lowbit::ScaleMode::blocked:
      if (block <= 0) throw py::value_error("block_size must be positive");
      return v.outer * (v.axis == 0 ? 0 : (v.axis - 1) / block + 1) * v.inner;  // no overflow for any block
  }
  return 0;
}

const int32_t* optional_zero_points(const py::object& zp, int64_t expected) {
  if (zp.is_none()) return nullptr;
  py::array arr = zp.cast<py::array>();
  const int32_t* data = checked_data<int32_t>(arr, "zero_point", "int32");
  if (arr.size() != expected)
    throw py::value_error("zero_point has " + std::to_string(arr.size()) + " values, expected " +
                          std::to_string(expected));
  return data;
}

lowbit::AxisView make_view(const py::array& x, int64_t outer, int64_t axis, int64_t inner) {
  if (outer < 0 || axis < 0 || inner < 0 || outer * axis * inner != x.size())
    throw py::value_error("layout (outer, axis, inner) does not match the array size");
  return lowbit::AxisView{outer, axis, inner};
}

// A float32 bias of n values, or null for None.
const float* optional_bias(const py::object& bias, int64_t n) {
  if (bias.is_none()) return nullptr;
  py::array arr = bias.cast<py::array>();
  const float* data = checked_data<float>(arr, "bias", "float32");
  if (arr.size() != n) throw py::value_error("bias must have out_features values");
  return data;
}

py::array quantize_linear(const py::array& x, int64_t outer, int64_t axis, int64_t inner,
                          int mode, int64_t block, const py::array& scale, const py::object& zp,
                          int qtype) {
  const float* xd = checked_data<float>(x, "x", "float32");
  const lowbit::AxisView view = make_view(x, outer, axis, inner);
  const auto m = static_cast<lowbit::ScaleMode>(mode);
  const int64_t count = expected_scale_count(view, m, block);
  const float* sd = checked_data<float>(scale, "scale", "float32");
  if (scale.size() != count)
    throw py::value_error("scale has " + std::to_string(scale.size()) + " values, expected " +
                          std::to_string(count));
  const int32_t* zd = optional_zero_points(zp, count);
  const auto qt = static_cast<lowbit::QType>(qtype);
  py::array out = new_quantized(shape_of(x), qt);
  void* od = out.mutable_data();
  {
    py::gil_scoped_release release;
    lowbit::quantize_linear(xd, view, m, block, sd, zd, qt, od);
  }
  return out;
}

py::array dequantize_linear(const py::array& q, int64_t outer, int64_t axis, int64_t inner,
                            int mode, int64_t block, const py::array& scale, const py::object& zp) {
  const ElemType type = elem_type_of(q, "q", true);
  require_c_contiguous(q, "q");
  const lowbit::AxisView view = make_view(q, outer, axis, inner);
  const auto m = static_cast<lowbit::ScaleMode>(mode);
  const int64_t count = expected_scale_count(view, m, block);
  const float* sd = checked_data<float>(scale, "scale", "float32");
  if (scale.size() != count) throw py::value_error("scale size does not match the layout");
  const int32_t* zd = optional_zero_points(zp, count);
  py::array_t<float> out(shape_of(q));
  float* od = out.mutable_data();
  const void* qd = q.data();
  {
    py::gil_scoped_release release;
    lowbit::dequantize_linear(qd, type, view, m, block, sd, zd, od);
  }
  return out;
}

py::tuple dynamic_quantize_linear(const py::array& x) {
  const float* xd = checked_data<float>(x, "x", "float32");
  py::array_t<uint8_t> out(shape_of(x));
  uint8_t* od = out.mutable_data();
  float scale = 0.0f;
  uint8_t zero = 0;
  const int64_t n = x.size();
  {
    py::gil_scoped_release release;
    lowbit::dynamic_quantize_linear(xd, n, od, &scale, &zero);
  }
  return py::make_tuple(out, scale, zero);
}

py::array requantize(const py::array& acc, const py::array& multiplier, int mode, int32_t zero,
                     int qtype) {
  const int32_t* ad = checked_data<int32_t>(acc, "acc", "int32");
  if (acc.ndim() < 1) throw py::value_error("acc must have at least one dimension");
  const int64_t cols = acc.shape(acc.ndim() - 1);
  const int64_t rows = cols == 0 ? 0 : acc.size() / cols;
  const auto mm = static_cast<lowbit::MultiplierMode>(mode);
  const float* md = checked_data<float>(multiplier, "multiplier", "float32");
  const int64_t expected = mm == lowbit::MultiplierMode::per_tensor   ? 1
                           : mm == lowbit::MultiplierMode::per_column ? cols
                                                                      : acc.size();
  if (multiplier.size() != expected) throw py::value_error("multiplier size does not match acc");
  const auto qt = static_cast<lowbit::QType>(qtype);
  py::array out = new_quantized(shape_of(acc), qt);
  void* od = out.mutable_data();
  {
    py::gil_scoped_release release;
    lowbit::requantize(ad, rows, cols, md, mm, zero, qt, od);
  }
  return out;
}

std::shared_ptr<lowbit::PackedMatrix> pack_matrix(const py::array& b, bool transposed,
                                                  const py::object& zp) {
  const ElemType type = elem_type_of(b, "b", false);
  require_c_contiguous(b, "b");
  if (b.ndim() != 2) throw py::value_error("b must be 2-D");
  // transposed: b is (N, K) (a weight, out_features x in_features); else (K, N).
  const int64_t K = transposed ? b.shape(1) : b.shape(0);
  const int64_t N = transposed ? b.shape(0) : b.shape(1);
  const int64_t stride_k = transposed ? 1 : N, stride_n = transposed ? K : 1;
  const int32_t* zd = nullptr;
  int64_t zcount = 0;
  if (!zp.is_none()) {
    py::array z = zp.cast<py::array>();
    zd = checked_data<int32_t>(z, "b_zero_point", "int32");
    zcount = z.size();
  }
  const void* bd = b.data();
  py::gil_scoped_release release;
  return lowbit::PackedMatrix::pack(bd, type, K, N, stride_k, stride_n, zd, zcount);
}

// A float32 weight (N, K) quantized per output channel with the given scales and zero points and
// packed in one pass (PackedMatrix::quantize_pack).
std::shared_ptr<lowbit::PackedMatrix> quantize_pack_matrix(const py::array& w, const py::array& scale,
                                                          const py::array& zero_point,
                                                          const std::string& dtype) {
  if (!has_dtype<float>(w) || w.ndim() != 2) throw py::type_error("w must be a 2-D float32 array");
  require_c_contiguous(w, "w");
  const int64_t N = w.shape(0), K = w.shape(1);
  if (scale.size() != N || zero_point.size() != N)
    throw py::value_error("scale and zero_point need one value per output channel");
  const float* sd = checked_data<float>(scale, "scale", "float32");
  const int32_t* zd = checked_data<int32_t>(zero_point, "zero_point", "int32");
  if (dtype != "int8" && dtype != "uint8") throw py::value_error("dtype must be int8 or uint8");
  const ElemType type = dtype == "uint8" ? ElemType::uint8 : ElemType::int8;
  const auto* wd = static_cast<const float*>(w.data());
  py::gil_scoped_release release;
  return lowbit::PackedMatrix::quantize_pack(wd, N, K, K, sd, zd, type);
}

// A float32 weight (N, K) quantized to int8 per output channel (the range of each row, then
// lowbit.range_params) and packed, one pass: (packed, scale float32 (N,), zero point int32 (N,)).
py::tuple quantize_pack_channels(const py::array& w, bool symmetric) {
  if (!has_dtype<float>(w) || w.ndim() != 2) throw py::type_error("w must be a 2-D float32 array");
  require_c_contiguous(w, "w");
  const int64_t N = w.shape(0), K = w.shape(1);
  py::array_t<float> scale(N);
  py::array_t<int32_t> zero(N);
  const auto* wd = static_cast<const float*>(w.data());
  float* sd = scale.mutable_data();
  int32_t* zd = zero.mutable_data();
  std::shared_ptr<lowbit::PackedMatrix> packed;
  {
    py::gil_scoped_release release;
    packed = lowbit::PackedMatrix::quantize_pack_channels(wd, N, K, K, symmetric, sd, zd);
  }
  return py::make_tuple(packed, scale, zero);
}

// scale, zero point per range (lowbit::range_params): lo, hi float32 arrays of one shape.
py::tuple range_params(const py::array& lo, const py::array& hi, int qtype, bool symmetric) {
  const float* l = checked_data<float>(lo, "lo", "float32");
  const float* h = checked_data<float>(hi, "hi", "float32");
  if (lo.size() != hi.size()) throw py::value_error("lo and hi differ in size");
  if (qtype < 0 || qtype > 3) throw py::value_error("unknown quantized type code");
  py::array_t<float> scale(lo.size());
  py::array_t<int32_t> zero(lo.size());
  lowbit::range_params(l, h, lo.size(), static_cast<lowbit::QType>(qtype), symmetric, scale.mutable_data(),
                       zero.mutable_data());
  return py::make_tuple(scale, zero);
}

// An (M, N) output array with 64-byte aligned data (lowbit's own allocation, freed with the
// array). NumPy's allocator aligns to 16 bytes; aligned rows let a kernel write an output too
// large for the caches with non-temporal stores (the AMX kernels do).
template <typename T>
py::array_t<T> aligned_output(int64_t M, int64_t N) {
  const size_t bytes = (std::max<size_t>(static_cast<size_t>(M) * static_cast<size_t>(N) * sizeof(T), 1) + 63) / 64 * 64;
  void* data = std::aligned_alloc(64, bytes);
  if (data == nullptr) throw std::bad_alloc();
  py::capsule owner(data, [](void* q) { std::free(q); });
  return py::array_t<T>({static_cast<py::ssize_t>(M), static_cast<py::ssize_t>(N)},
                        {static_cast<py::ssize_t>(N * sizeof(T)), static_cast<py::ssize_t>(sizeof(T))},
                        static_cast<T*>(data), owner);
}

py::array_t<int32_t> matmul_integer(const py::array& a, const py::object& a_zp,
                                    const lowbit::PackedMatrix& b) {
  const ElemType type = elem_type_of(a, "a", false);
  require_c_contiguous(a, "a");
  if (a.ndim() != 2) throw py::value_error("a must be 2-D");
  const int64_t M = a.shape(0), K = a.shape(1);
  const int32_t* zd = nullptr;
  int64_t zcount = 0;
  if (!a_zp.is_none()) {
    py::array z = a_zp.cast<py::array>();
    zd = checked_data<int32_t>(z, "a_zero_point", "int32");
    zcount = z.size();
  }
  if (K != b.in_features())
    throw py::value_error("inner dimensions differ: a has " + std::to_string(K) +
                          " columns, b has " + std::to_string(b.in_features()) + " rows");
  py::array_t<int32_t> c = aligned_output<int32_t>(M, b.out_features());
  int32_t* cd = c.mutable_data();
  const void* ad = a.data();
  {
    py::gil_scoped_release release;
    lowbit::matmul_integer(ad, type, M, K, K, zd, zcount, b, cd, b.out_features());
  }
  return c;
}

// (lo, hi) per row of a 2-D float32 array (see lowbit.h); `name` goes into the NaN/Inf error.
py::tuple row_ranges(const py::array& x, const std::string& name) {
  const float* xd = checked_data<float>(x, name.c_str(), "float32");
  if (x.ndim() != 2) throw py::value_error(name + " must be 2-D");
  const int64_t rows = x.shape(0), cols = x.shape(1);
  py::array_t<float> lo(rows), hi(rows);
  float *lod = lo.mutable_data(), *hid = hi.mutable_data();
  try {
    py::gil_scoped_release release;
    lowbit::row_ranges(xd, rows, cols, lod, hid);
  } catch (const std::invalid_argument&) {
    throw py::value_error(name + " holds NaN or Inf values; they cannot be quantized");
  }
  return py::make_tuple(lo, hi);
}

// matmul_integer with B as a plain (K, N) array: nothing packed for the caller (see lowbit.h).
py::array_t<int32_t> matmul_integer_unpacked(const py::array& a, const py::object& a_zp,
                                             const py::array& b, const py::object& b_zp) {
  const ElemType a_type = elem_type_of(a, "a", false);
  const ElemType b_type = elem_type_of(b, "b", false);
  require_c_contiguous(a, "a");
  require_c_contiguous(b, "b");
  if (a.ndim() != 2 || b.ndim() != 2) throw py::value_error("a and b must be 2-D");
  const int64_t M = a.shape(0), K = a.shape(1), N = b.shape(1);
  if (b.shape(0) != K)
    throw py::value_error("inner dimensions differ: a has " + std::to_string(K) + " columns, b has " +
                          std::to_string(b.shape(0)) + " rows");
  auto zero_points = [](const py::object& z, const char* name, const int32_t** data, int64_t* count) {
    if (z.is_none()) return;
    py::array arr = z.cast<py::array>();
    *data = checked_data<int32_t>(arr, name, "int32");
    *count = arr.size();
  };
  const int32_t *za = nullptr, *zb = nullptr;
  int64_t za_count = 0, zb_count = 0;
  zero_points(a_zp, "a_zero_point", &za, &za_count);
  zero_points(b_zp, "b_zero_point", &zb, &zb_count);
  py::array_t<int32_t> c = aligned_output<int32_t>(M, N);
  int32_t* cd = c.mutable_data();
  const void *ad = a.data(), *bd = b.data();
  {
    py::gil_scoped_release release;
    lowbit::matmul_integer_unpacked(ad, a_type, M, K, K, za, za_count, bd, b_type, N, N, zb, zb_count, cd, N);
  }
  return c;
}

// The arguments every 8-bit linear takes, checked, and its (M, N) output.
struct LinearCall {
  const float* x;
  int64_t M, K, N;
  const float* col_scale;
  const float* bias;
  py::array_t<float> y;
};

LinearCall linear_call(const py::array& x, const lowbit::PackedMatrix& b, const py::array& col_scale,
                       const py::object& bias) {
  const float* xd = checked_data<float>(x, "x", "float32");
  if (x.ndim() != 2) throw py::value_error("x must be 2-D");
  const int64_t M = x.shape(0), K = x.shape(1), N = b.out_features();
  if (K != b.in_features())
    throw py::value_error("x has " + std::to_string(K) + " features, the weight expects " +
                          std::to_string(b.in_features()));
  const float* sd = checked_data<float>(col_scale, "weight scale", "float32");
  if (col_scale.size() != N) throw py::value_error("weight scale must have N values");
  const float* bd = optional_bias(bias, N);
  return {xd, M, K, N, sd, bd, aligned_output<float>(M, N)};
}

py::array_t<float> linear(const py::array& x, const lowbit::PackedMatrix& b,
                          const py::array& col_scale, const py::object& bias) {
  LinearCall c = linear_call(x, b, col_scale, bias);
  float* yd = c.y.mutable_data();
  {
    py::gil_scoped_release release;
    lowbit::linear(c.x, c.M, c.K, b, c.col_scale, c.bias, yd, c.N);
  }
  return c.y;
}

py::array_t<float> linear_weight_only(const py::array& x, const lowbit::PackedMatrix& b,
                                      const py::array& col_scale, const py::object& bias) {
  LinearCall c = linear_call(x, b, col_scale, bias);
  float* yd = c.y.mutable_data();
  {
    py::gil_scoped_release release;
    lowbit::linear_weight_only(c.x, c.M, c.K, b, c.col_scale, c.bias, yd, c.N);
  }
  return c.y;
}

py::array_t<float> linear_static(const py::array& x, const lowbit::PackedMatrix& b,
                                 const py::array& col_scale, const py::object& bias, float in_scale,
                                 int32_t in_zero, int in_type) {
  if (in_type != static_cast<int>(lowbit::QType::uint8) && in_type != static_cast<int>(lowbit::QType::int8))
    throw py::value_error("input type must be uint8 or int8");
  LinearCall c = linear_call(x, b, col_scale, bias);
  float* yd = c.y.mutable_data();
  {
    py::gil_scoped_release release;
    lowbit::linear_static(c.x, c.M, c.K, b, in_scale, in_zero, static_cast<lowbit::QType>(in_type),
                          c.col_scale, c.bias, yd, c.N);
  }
  return c.y;
}

std::shared_ptr<lowbit::PackedInt4Matrix> pack_int4(const py::array& u, int64_t group_size,
                                                     const py::array& scale,
                                                     const py::object& zp) {
  const uint8_t* ud = checked_data<uint8_t>(u, "u", "uint8");
  if (u.ndim() != 2) throw py::value_error("4-bit weight values must be 2-D (N, K)");
  const int64_t N = u.shape(0), K = u.shape(1);
  if (group_size <= 0) throw py::value_error("group_size must be positive");
  const int64_t G = K == 0 ? 0 : (K - 1) / group_size + 1;  // no overflow for any group_size
  const float* sd = checked_data<float>(scale, "scale", "float32");
  if (scale.size() != N * G)
    throw py::value_error("scale must have N * ceil(K / group_size) values");
  const uint8_t* zd = nullptr;
  if (!zp.is_none()) {
    py::array z = zp.cast<py::array>();
    zd = checked_data<uint8_t>(z, "zero_point", "uint8");
    if (z.size() != N * G) throw py::value_error("zero_point must have N * ceil(K / group_size) values");
  }
  py::gil_scoped_release release;
  return lowbit::PackedInt4Matrix::pack(ud, N, K, group_size, sd, zd);
}

py::array_t<float> linear_int4(const py::array& x, const lowbit::PackedInt4Matrix& w, int mode,
                               const py::object& bias) {
  const float* xd = checked_data<float>(x, "x", "float32");
  if (x.ndim() != 2) throw py::value_error("x must be 2-D");
  const int64_t M = x.shape(0), K = x.shape(1), N = w.out_features();
  if (K != w.in_features())
    throw py::value_error("x has " + std::to_string(K) + " features, the weight expects " +
                          std::to_string(w.in_features()));
  if (mode != 0 && mode != 1) throw py::value_error("unknown 4-bit compute mode");
  const float* bd = optional_bias(bias, N);
  py::array_t<float> y = aligned_output<float>(M, N);
  float* yd = y.mutable_data();
  {
    py::gil_scoped_release release;
    lowbit::linear_int4(xd, M, K, w, static_cast<lowbit::Int4Compute>(mode), bd, yd, N);
  }
  return y;
}

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

PYBIND11_MODULE(_C, m) {
  m.doc() = "lowbit C++ core (kernels, packing, dispatch, threads)";

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
  m.def("memory_read_bandwidth", [](size_t nbytes, int repeats) {
    py::gil_scoped_release release;
    return lowbit::bench::memory_read_bandwidth(nbytes, repeats);
  }, py::arg("nbytes"), py::arg("repeats") = 5);

  m.def("quantize_linear", &quantize_linear, py::arg("x"), py::arg("outer"), py::arg("axis"),
        py::arg("inner"), py::arg("mode"), py::arg("block"), py::arg("scale"),
        py::arg("zero_point"), py::arg("qtype"));
  m.def("dequantize_linear", &dequantize_linear, py::arg("q"), py::arg("outer"), py::arg("axis"),
        py::arg("inner"), py::arg("mode"), py::arg("block"), py::arg("scale"),
        py::arg("zero_point"));
  m.def("dynamic_quantize_linear", &dynamic_quantize_linear, py::arg("x"));
  m.def("requantize", &requantize, py::arg("acc"), py::arg("multiplier"), py::arg("mode"),
        py::arg("zero_point"), py::arg("qtype"));

  py::class_<lowbit::PackedMatrix, std::shared_ptr<lowbit::PackedMatrix>>(m, "PackedMatrix")
      .def_property_readonly("in_features", &lowbit::PackedMatrix::in_features)
      .def_property_readonly("out_features", &lowbit::PackedMatrix::out_features)
      .def_property_readonly("nbytes", &lowbit::PackedMatrix::nbytes)
      .def_property_readonly("symmetric", &lowbit::PackedMatrix::symmetric)
      .def("unpack", [](const lowbit::PackedMatrix& p, bool transposed) {
        // transposed: (N, K) like a weight; else (K, N).
        const auto K = static_cast<py::ssize_t>(p.in_features());
        const auto N = static_cast<py::ssize_t>(p.out_features());
        std::vector<py::ssize_t> shape = transposed ? std::vector<py::ssize_t>{N, K}
                                                    : std::vector<py::ssize_t>{K, N};
        py::array out = p.source_type() == ElemType::uint8 ? py::array(py::array_t<uint8_t>(shape))
                                                          : py::array(py::array_t<int8_t>(shape));
        p.unpack(out.mutable_data(), transposed ? 1 : N, transposed ? K : 1);
        return out;
      }, py::arg("transposed"))
      .def_property_readonly("source_dtype", [](const lowbit::PackedMatrix& p) {
        return p.source_type() == ElemType::uint8 ? "uint8" : "int8";
      });
  m.def("pack_matrix", &pack_matrix, py::arg("b"), py::arg("transposed"), py::arg("zero_point"));
  m.def("quantize_pack_channels", &quantize_pack_channels, py::arg("w"), py::arg("symmetric"));
  m.def("range_params", &range_params, py::arg("lo"), py::arg("hi"), py::arg("qtype"), py::arg("symmetric"));
  m.def("quantize_pack_matrix", &quantize_pack_matrix, py::arg("w"), py::arg("scale"),
        py::arg("zero_point"), py::arg("dtype"));
  m.def("matmul_integer", &matmul_integer, py::arg("a"), py::arg("a_zero_point"), py::arg("b"));
  m.def("row_ranges", &row_ranges, py::arg("x"), py::arg("name"));
  m.def("matmul_integer_unpacked", &matmul_integer_unpacked, py::arg("a"), py::arg("a_zero_point"),
        py::arg("b"), py::arg("b_zero_point"));
  m.def("linear", &linear, py::arg("x"), py::arg("b"), py::arg("col_scale"), py::arg("bias"));
  m.def("linear_weight_only", &linear_weight_only, py::arg("x"), py::arg("b"),
        py::arg("col_scale"), py::arg("bias"));
  m.def("linear_static", &linear_static, py::arg("x"), py::arg("b"), py::arg("col_scale"),
        py::arg("bias"), py::arg("in_scale"), py::arg("in_zero"), py::arg("in_type"));
  py::class_<lowbit::PackedInt4Matrix, std::shared_ptr<lowbit::PackedInt4Matrix>>(m, "PackedInt4Matrix")
      .def_property_readonly("in_features", &lowbit::PackedInt4Matrix::in_features)
      .def_property_readonly("out_features", &lowbit::PackedInt4Matrix::out_features)
      .def_property_readonly("group_size", &lowbit::PackedInt4Matrix::group_size)
      .def_property_readonly("groups", &lowbit::PackedInt4Matrix::groups)
      .def_property_readonly("nbytes", &lowbit::PackedInt4Matrix::nbytes)
      .def_property_readonly("symmetric", &lowbit::PackedInt4Matrix::symmetric)
      .def("unpack", [](const lowbit::PackedInt4Matrix& p) {
        py::array_t<uint8_t> out({static_cast<py::ssize_t>(p.out_features()),
                                  static_cast<py::ssize_t>(p.in_features())});
        p.unpack(out.mutable_data());
        return out;
      });
  m.def("pack_int4", &pack_int4, py::arg("u"), py::arg("group_size"), py::arg("scale"),
        py::arg("zero_point"));
  m.def("linear_int4", &linear_int4, py::arg("x"), py::arg("w"), py::arg("mode"), py::arg("bias"));
  m.attr("INT4_MAX_GROUP_SIZE") = lowbit::PackedInt4Matrix::kMaxGroupSize;
  m.attr("LINEAR_MAX_DEPTH") = lowbit::kLinearMaxDepth;
  m.attr("THREADS_PER_CPU") = lowbit::kThreadsPerCpu;
  m.attr("MIN_THREAD_CAP") = lowbit::kMinThreadCap;
  m.attr("LINEAR_MAX_DEPTH_ASYMMETRIC") = lowbit::kLinearMaxDepthAsymmetric;
}
