// Bindings of the quantization primitives: quantize_linear, dequantize_linear,
// dynamic_quantize_linear, requantize, range_params, row_ranges.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "lowbit/quantize.h"
#include "python/bind_common.h"

namespace lowbit {
namespace bindings {
namespace {

std::vector<py::ssize_t> shape_of(const py::array& a) {
  return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

py::array new_quantized(const std::vector<py::ssize_t>& shape, lowbit::QType qtype) {
  switch (qtype) {
    case lowbit::QType::uint8:
    case lowbit::QType::uint4: return py::array_t<uint8_t>(shape);
    case lowbit::QType::int8:
    case lowbit::QType::int4: return py::array_t<int8_t>(shape);
    case lowbit::QType::int16: return py::array_t<int16_t>(shape);
    case lowbit::QType::uint16: return py::array_t<uint16_t>(shape);
  }
  throw py::value_error("unknown quantized type code");
}

// dequantize_linear's input types: those of elem_type_of (int8, uint8, int32) and int16 / uint16.
ElemType dequantize_input_type(const py::array& q) {
  if (has_dtype<int16_t>(q)) return ElemType::int16;
  if (has_dtype<uint16_t>(q)) return ElemType::uint16;
  if (has_dtype<int8_t>(q) || has_dtype<uint8_t>(q) || has_dtype<int32_t>(q))
    return elem_type_of(q, "q", true);
  throw py::type_error("q must be int8, uint8, int16, uint16 or int32");
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

py::array quantize_linear(const py::array& x, int64_t outer, int64_t axis, int64_t inner,
                          ScaleMode m, int64_t block, const py::array& scale, const py::object& zp,
                          QType qt) {
  const float* xd = checked_data<float>(x, "x", "float32");
  const lowbit::AxisView view = make_view(x, outer, axis, inner);
  const int64_t count = expected_scale_count(view, m, block);
  const float* sd = checked_data<float>(scale, "scale", "float32");
  if (scale.size() != count)
    throw py::value_error("scale has " + std::to_string(scale.size()) + " values, expected " +
                          std::to_string(count));
  const int32_t* zd = optional_zero_points(zp, count);
  py::array out = new_quantized(shape_of(x), qt);
  void* od = out.mutable_data();
  try {
    py::gil_scoped_release release;
    lowbit::quantize_linear(xd, view, m, block, sd, zd, qt, od);
  } catch (const std::invalid_argument&) {  // the layout is checked above: only NaN/Inf remain
    throw py::value_error("x holds NaN or Inf values; they cannot be quantized");
  }
  return out;
}

py::array dequantize_linear(const py::array& q, int64_t outer, int64_t axis, int64_t inner,
                            ScaleMode m, int64_t block, const py::array& scale, const py::object& zp) {
  const ElemType type = dequantize_input_type(q);
  require_c_contiguous(q, "q");
  const lowbit::AxisView view = make_view(q, outer, axis, inner);
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

py::array requantize(const py::array& acc, const py::array& multiplier, MultiplierMode mm,
                     int32_t zero, QType qt) {
  const int32_t* ad = checked_data<int32_t>(acc, "acc", "int32");
  if (acc.ndim() < 1) throw py::value_error("acc must have at least one dimension");
  const int64_t cols = acc.shape(acc.ndim() - 1);
  const int64_t rows = cols == 0 ? 0 : acc.size() / cols;
  const float* md = checked_data<float>(multiplier, "multiplier", "float32");
  const int64_t expected = mm == lowbit::MultiplierMode::per_tensor   ? 1
                           : mm == lowbit::MultiplierMode::per_column ? cols
                                                                      : acc.size();
  if (multiplier.size() != expected) throw py::value_error("multiplier size does not match acc");
  py::array out = new_quantized(shape_of(acc), qt);
  void* od = out.mutable_data();
  {
    py::gil_scoped_release release;
    lowbit::requantize(ad, rows, cols, md, mm, zero, qt, od);
  }
  return out;
}

// scale, zero point per range (lowbit::range_params): lo, hi float32 arrays of one shape.
py::tuple range_params(const py::array& lo, const py::array& hi, QType qtype, bool symmetric) {
  const float* l = checked_data<float>(lo, "lo", "float32");
  const float* h = checked_data<float>(hi, "hi", "float32");
  if (lo.size() != hi.size()) throw py::value_error("lo and hi differ in size");
  const int code = static_cast<int>(qtype);
  if (code < 0 || code > static_cast<int>(QType::uint16))
    throw py::value_error("unknown quantized type code");
  py::array_t<float> scale(lo.size());
  py::array_t<int32_t> zero(lo.size());
  lowbit::range_params(l, h, lo.size(), qtype, symmetric, scale.mutable_data(), zero.mutable_data());
  return py::make_tuple(scale, zero);
}

// (lo, hi) per row of a 2-D float32 array (see lowbit/quantize.h); `name` goes into the NaN/Inf
// error.
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

}  // namespace

void bind_quantize(py::module_& m) {
  m.def("quantize_linear", &quantize_linear, py::arg("x"), py::arg("outer"), py::arg("axis"),
        py::arg("inner"), py::arg("mode"), py::arg("block"), py::arg("scale"),
        py::arg("zero_point"), py::arg("qtype"));
  m.def("dequantize_linear", &dequantize_linear, py::arg("q"), py::arg("outer"), py::arg("axis"),
        py::arg("inner"), py::arg("mode"), py::arg("block"), py::arg("scale"),
        py::arg("zero_point"));
  m.def("dynamic_quantize_linear", &dynamic_quantize_linear, py::arg("x"));
  m.def("requantize", &requantize, py::arg("acc"), py::arg("multiplier"), py::arg("mode"),
        py::arg("zero_point"), py::arg("qtype"));
  m.def("range_params", &range_params, py::arg("lo"), py::arg("hi"), py::arg("qtype"), py::arg("symmetric"));
  m.def("row_ranges", &row_ranges, py::arg("x"), py::arg("name"));
}

}  // namespace bindings
}  // namespace lowbit
