// Bindings of the packed weights: PackedMatrix, PackedInt4Matrix, PackedHalfMatrix and the
// functions that pack them (pack_matrix, quantize_pack_matrix, quantize_pack_channels, pack_int4,
// pack_half_float, pack_half_bits).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "lowbit/packed.h"
#include "python/bind_common.h"

namespace lowbit {
namespace bindings {
namespace {

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

// A 2-D (N, K) float32 weight rounded to `dtype` ("float16" / "bfloat16") and packed.
std::shared_ptr<lowbit::PackedHalfMatrix> pack_half_float(const py::array& w, const std::string& dtype) {
  if (!has_dtype<float>(w) || w.ndim() != 2) throw py::type_error("w must be a 2-D float32 array");
  require_c_contiguous(w, "w");
  const HalfType type = half_type(dtype);
  const int64_t N = w.shape(0), K = w.shape(1);
  const auto* wd = static_cast<const float*>(w.data());
  py::gil_scoped_release release;
  return lowbit::PackedHalfMatrix::pack_float(wd, N, K, K, type);
}

// A 2-D (N, K) uint16 array of `dtype`'s bit patterns, packed as they are.
std::shared_ptr<lowbit::PackedHalfMatrix> pack_half_bits(const py::array& h, const std::string& dtype) {
  const uint16_t* hd = checked_data<uint16_t>(h, "h", "uint16");
  if (h.ndim() != 2) throw py::value_error("16-bit weight patterns must be 2-D (N, K)");
  const HalfType type = half_type(dtype);
  const int64_t N = h.shape(0), K = h.shape(1);
  py::gil_scoped_release release;
  return lowbit::PackedHalfMatrix::pack_bits(hd, N, K, K, type);
}

}  // namespace

void bind_packed(py::module_& m) {
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
  m.def("quantize_pack_matrix", &quantize_pack_matrix, py::arg("w"), py::arg("scale"),
        py::arg("zero_point"), py::arg("dtype"));
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
  m.attr("INT4_MAX_GROUP_SIZE") = lowbit::PackedInt4Matrix::kMaxGroupSize;
  py::class_<lowbit::PackedHalfMatrix, std::shared_ptr<lowbit::PackedHalfMatrix>>(m, "PackedHalfMatrix")
      .def_property_readonly("in_features", &lowbit::PackedHalfMatrix::in_features)
      .def_property_readonly("out_features", &lowbit::PackedHalfMatrix::out_features)
      .def_property_readonly("nbytes", &lowbit::PackedHalfMatrix::nbytes)
      .def_property_readonly("dtype", [](const lowbit::PackedHalfMatrix& p) {
        return p.type() == HalfType::bfloat16 ? "bfloat16" : "float16";
      })
      .def("unpack", [](const lowbit::PackedHalfMatrix& p) {
        py::array_t<uint16_t> out({static_cast<py::ssize_t>(p.out_features()),
                                   static_cast<py::ssize_t>(p.in_features())});
        p.unpack(out.mutable_data());
        return out;
      });
  m.def("pack_half_float", &pack_half_float, py::arg("w"), py::arg("dtype"));
  m.def("pack_half_bits", &pack_half_bits, py::arg("h"), py::arg("dtype"));
}

}  // namespace bindings
}  // namespace lowbit
