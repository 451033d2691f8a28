// Bindings of matmul_integer (packed and plain B) and the linear layers (dynamic, weight-only,
// static and 4-bit) on packed weights.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>

#include "lowbit/gemm.h"
#include "python/bind_common.h"

namespace lowbit {
namespace bindings {
namespace {

// A float32 bias of n values, or null for None.
const float* optional_bias(const py::object& bias, int64_t n) {
  if (bias.is_none()) return nullptr;
  py::array arr = bias.cast<py::array>();
  const float* data = checked_data<float>(arr, "bias", "float32");
  if (arr.size() != n) throw py::value_error("bias must have out_features values");
  return data;
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

// matmul_integer with B as a plain (K, N) array: nothing packed for the caller (see
// lowbit/gemm.h).
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
                                 int32_t in_zero, QType in_type) {
  if (in_type != QType::uint8 && in_type != QType::int8)
    throw py::value_error("input type must be uint8 or int8");
  LinearCall c = linear_call(x, b, col_scale, bias);
  float* yd = c.y.mutable_data();
  {
    py::gil_scoped_release release;
    lowbit::linear_static(c.x, c.M, c.K, b, in_scale, in_zero, in_type, c.col_scale, c.bias, yd,
                          c.N);
  }
  return c.y;
}

py::array_t<float> linear_int4(const py::array& x, const lowbit::PackedInt4Matrix& w,
                               Int4Compute mode, const py::object& bias) {
  const float* xd = checked_data<float>(x, "x", "float32");
  if (x.ndim() != 2) throw py::value_error("x must be 2-D");
  const int64_t M = x.shape(0), K = x.shape(1), N = w.out_features();
  if (K != w.in_features())
    throw py::value_error("x has " + std::to_string(K) + " features, the weight expects " +
                          std::to_string(w.in_features()));
  if (mode != Int4Compute::w4a8 && mode != Int4Compute::weight_only)
    throw py::value_error("unknown 4-bit compute mode");
  const float* bd = optional_bias(bias, N);
  py::array_t<float> y = aligned_output<float>(M, N);
  float* yd = y.mutable_data();
  {
    py::gil_scoped_release release;
    lowbit::linear_int4(xd, M, K, w, mode, bd, yd, N);
  }
  return y;
}

py::array_t<float> linear_half(const py::array& x, const lowbit::PackedHalfMatrix& w,
                               const py::object& bias) {
  const float* xd = checked_data<float>(x, "x", "float32");
  if (x.ndim() != 2) throw py::value_error("x must be 2-D");
  const int64_t M = x.shape(0), K = x.shape(1), N = w.out_features();
  if (K != w.in_features())
    throw py::value_error("x has " + std::to_string(K) + " features, the weight expects " +
                          std::to_string(w.in_features()));
  const float* bd = optional_bias(bias, N);
  py::array_t<float> y = aligned_output<float>(M, N);
  float* yd = y.mutable_data();
  {
    py::gil_scoped_release release;
    lowbit::linear_half(xd, M, K, w, bd, yd, N);
  }
  return y;
}

}  // namespace

void bind_gemm(py::module_& m) {
  m.def("matmul_integer", &matmul_integer, py::arg("a"), py::arg("a_zero_point"), py::arg("b"));
  m.def("matmul_integer_unpacked", &matmul_integer_unpacked, py::arg("a"), py::arg("a_zero_point"),
        py::arg("b"), py::arg("b_zero_point"));
  m.def("linear", &linear, py::arg("x"), py::arg("b"), py::arg("col_scale"), py::arg("bias"));
  m.def("linear_weight_only", &linear_weight_only, py::arg("x"), py::arg("b"),
        py::arg("col_scale"), py::arg("bias"));
  m.def("linear_static", &linear_static, py::arg("x"), py::arg("b"), py::arg("col_scale"),
        py::arg("bias"), py::arg("in_scale"), py::arg("in_zero"), py::arg("in_type"));
  m.def("linear_int4", &linear_int4, py::arg("x"), py::arg("w"), py::arg("mode"), py::arg("bias"));
  m.def("linear_half", &linear_half, py::arg("x"), py::arg("w"), py::arg("bias"));
  m.attr("LINEAR_MAX_DEPTH") = lowbit::kLinearMaxDepth;
  m.attr("LINEAR_MAX_DEPTH_ASYMMETRIC") = lowbit::kLinearMaxDepthAsymmetric;
}

}  // namespace bindings
}  // namespace lowbit
