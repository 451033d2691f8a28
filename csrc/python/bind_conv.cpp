// Bindings of the convolutions: PackedConvWeight (pack, view over foreign bytes, unpack) and
// conv_integer, qlinear_conv, conv_float on NCHW arrays. The geometry beyond the arrays' shapes
// comes as (stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left, pad_bottom,
// pad_right); ONNX's auto_pad and 1-D convolutions are resolved by the Python layer.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "lowbit/conv.h"
#include "python/bind_common.h"

namespace lowbit {
namespace bindings {
namespace {

using Params = std::array<int64_t, 8>;

// x NCHW, or NHWC (an integer chain's quantized activations) when nhwc.
ConvGeometry geometry(const py::array& x, const PackedConvWeight& w, const Params& p, bool nhwc = false) {
  if (x.ndim() != 4) throw py::value_error(nhwc ? "x must be 4-D (N, H, W, C)" : "x must be 4-D (N, C, H, W)");
  ConvGeometry g;
  g.batch = x.shape(0);
  g.in_channels = x.shape(nhwc ? 3 : 1);
  g.height = x.shape(nhwc ? 1 : 2);
  g.width = x.shape(nhwc ? 2 : 3);
  g.out_channels = w.out_channels();
  g.groups = w.groups();
  g.kernel_h = w.kernel_h();
  g.kernel_w = w.kernel_w();
  g.stride_h = p[0];
  g.stride_w = p[1];
  g.dilation_h = p[2];
  g.dilation_w = p[3];
  g.pad_top = p[4];
  g.pad_left = p[5];
  g.pad_bottom = p[6];
  g.pad_right = p[7];
  check_conv_geometry(g, w);   // invalid_argument -> ValueError
  return g;
}

template <typename T>
py::array_t<T> nchw_output(const ConvGeometry& g) {
  return aligned_array<T>({static_cast<py::ssize_t>(g.batch), static_cast<py::ssize_t>(g.out_channels),
                          static_cast<py::ssize_t>(g.out_height()), static_cast<py::ssize_t>(g.out_width())});
}

std::shared_ptr<PackedConvWeight> pack_conv(const py::array& w, int64_t groups, const py::object& zp) {
  const ElemType type = elem_type_of(w, "w", false);
  require_c_contiguous(w, "w");
  if (w.ndim() != 4) throw py::value_error("w must be 4-D (M, C/group, kH, kW)");
  const int32_t* zd = nullptr;
  int64_t zcount = 0;
  if (!zp.is_none()) {
    py::array z = zp.cast<py::array>();
    zd = checked_data<int32_t>(z, "w_zero_point", "int32");
    zcount = z.size();
  }
  const void* wd = w.data();
  py::gil_scoped_release release;
  return PackedConvWeight::pack(wd, type, w.shape(0), w.shape(1), groups, w.shape(2), w.shape(3), zd, zcount);
}

py::array unpack(const PackedConvWeight& w) {
  std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(w.out_channels()), static_cast<py::ssize_t>(w.group_channels()),
                                 static_cast<py::ssize_t>(w.kernel_h()), static_cast<py::ssize_t>(w.kernel_w())};
  py::array out = w.source_type() == ElemType::uint8 ? py::array(py::array_t<uint8_t>(shape))
                                                    : py::array(py::array_t<int8_t>(shape));
  w.unpack(out.mutable_data());
  return out;
}

py::array_t<int32_t> conv_integer(const py::array& x, int32_t x_zero, const PackedConvWeight& w, const Params& p) {
  const ElemType type = elem_type_of(x, "x", false);
  require_c_contiguous(x, "x");
  const ConvGeometry g = geometry(x, w, p);
  py::array_t<int32_t> y = nchw_output<int32_t>(g);
  int32_t* yd = y.mutable_data();
  const void* xd = x.data();
  {
    py::gil_scoped_release release;
    lowbit::conv_integer(xd, type, x_zero, w, g, yd);
  }
  return y;
}

py::array qlinear_conv(const py::array& x, int32_t x_zero, const PackedConvWeight& w, const Params& p,
                       const py::object& bias, const py::array& multiplier, int32_t y_zero, QType y_type) {
  const ElemType type = elem_type_of(x, "x", false);
  require_c_contiguous(x, "x");
  const ConvGeometry g = geometry(x, w, p);
  const float* md = checked_data<float>(multiplier, "multiplier", "float32");
  if (multiplier.size() != g.out_channels) throw py::value_error("multiplier must have out_channels values");
  const int32_t* bd = nullptr;
  if (!bias.is_none()) {
    py::array b = bias.cast<py::array>();
    bd = checked_data<int32_t>(b, "B", "int32");
    if (b.size() != g.out_channels) throw py::value_error("B must have out_channels values");
  }
  if (y_type != QType::uint8 && y_type != QType::int8) throw py::value_error("y must be uint8 or int8");
  py::array y = y_type == QType::uint8 ? py::array(nchw_output<uint8_t>(g)) : py::array(nchw_output<int8_t>(g));
  void* yd = y.mutable_data();
  const void* xd = x.data();
  {
    py::gil_scoped_release release;
    lowbit::qlinear_conv(xd, type, x_zero, w, g, bd, md, y_zero, y_type, yd);
  }
  return y;
}

// x: float32 NCHW, quantized per the activation arguments; or uint8 NHWC (an integer chain):
// activations already quantized with the static (in_scale, in_zero, in_type), int8 ones
// shifted by 128. out_scale None: float32 NCHW out; else uint8 NHWC, quantized with (out_scale,
// out_zero, out_type) likewise shifted (ConvSink). nhwc: a float32 x is NHWC (N, H, W, C);
// out_nhwc (default: nhwc): a float32 output is NHWC (N, H_out, W_out, M) (channels_last
// tensors: nothing transposed).
py::array conv_float(const py::array& x, const PackedConvWeight& w, const Params& p, bool dynamic,
                     float in_scale, int32_t in_zero, QType in_type, const py::array& col_scale,
                     const py::object& bias, float clamp_lo, float clamp_hi, const py::object& out_scale,
                     int32_t out_zero, QType out_type, bool nhwc, const py::object& out_nhwc_arg) {
  const bool out_nhwc = out_nhwc_arg.is_none() ? nhwc : out_nhwc_arg.cast<bool>();
  const bool chained_in = has_dtype<uint8_t>(x);
  const void* xd = chained_in ? static_cast<const void*>(checked_data<uint8_t>(x, "x", "uint8"))
                              : static_cast<const void*>(checked_data<float>(x, "x", "float32"));
  const ConvGeometry g = geometry(x, w, p, chained_in || nhwc);
  if (chained_in && dynamic) throw py::value_error("quantized (uint8) input needs a static activation");
  auto shifted = [](int32_t zero, QType type, const char* what) {
    if (type != QType::uint8 && type != QType::int8) throw py::value_error(std::string(what) + " type must be uint8 or int8");
    if (zero < qtype_min(type) || zero > qtype_max(type))
      throw py::value_error(std::string(what) + " zero point " + std::to_string(zero) + " is outside its type's range");
    return zero + (type == QType::int8 ? 128 : 0);
  };
  const float* sd = checked_data<float>(col_scale, "weight scale", "float32");
  if (col_scale.size() != g.out_channels) throw py::value_error("weight scale must have out_channels values");
  const float* bd = nullptr;
  if (!bias.is_none()) {
    py::array b = bias.cast<py::array>();
    bd = checked_data<float>(b, "bias", "float32");
    if (b.size() != g.out_channels) throw py::value_error("bias must have out_channels values");
  }
  ConvSource src;
  if (chained_in) {
    src.x_nhwc = static_cast<const uint8_t*>(xd);
    src.scale = in_scale;
    src.zero = shifted(in_zero, in_type, "input");
  } else {
    src.x = static_cast<const float*>(xd);
    src.float_nhwc = nhwc;
    src.act.dynamic = dynamic;
    src.act.scale = in_scale;
    src.act.zero = in_zero;
    src.act.type = in_type;
  }
  ConvSink sink;
  py::array y;
  if (out_scale.is_none()) {
    py::array_t<float> yf =
        out_nhwc ? aligned_array<float>({static_cast<py::ssize_t>(g.batch), static_cast<py::ssize_t>(g.out_height()),
                                     static_cast<py::ssize_t>(g.out_width()), static_cast<py::ssize_t>(g.out_channels)})
             : nchw_output<float>(g);
    sink.y = yf.mutable_data();
    sink.float_nhwc = out_nhwc;
    y = yf;
  } else {
    sink.scale = out_scale.cast<float>();
    sink.zero = shifted(out_zero, out_type, "output");
    py::array_t<uint8_t> yq({static_cast<py::ssize_t>(g.batch), static_cast<py::ssize_t>(g.out_height()),
                             static_cast<py::ssize_t>(g.out_width()), static_cast<py::ssize_t>(g.out_channels)});
    sink.y_nhwc = yq.mutable_data();
    y = yq;
  }
  {
    py::gil_scoped_release release;
    lowbit::conv_float_chain(src, w, g, sd, bd, clamp_lo, clamp_hi, sink);
  }
  return y;
}

}  // namespace

void bind_conv(py::module_& m) {
  py::class_<PackedConvWeight, std::shared_ptr<PackedConvWeight>>(m, "PackedConvWeight")
      .def_property_readonly("out_channels", &PackedConvWeight::out_channels)
      .def_property_readonly("group_channels", &PackedConvWeight::group_channels)
      .def_property_readonly("groups", &PackedConvWeight::groups)
      .def_property_readonly("kernel_shape", [](const PackedConvWeight& w) {
        return py::make_tuple(w.kernel_h(), w.kernel_w());
      })
      .def_property_readonly("depthwise", &PackedConvWeight::depthwise)
      .def_property_readonly("symmetric", &PackedConvWeight::symmetric)
      .def_property_readonly("nbytes", &PackedConvWeight::nbytes)
      .def("unpack", &unpack)
      .def("zero_points", [](const PackedConvWeight& w) {
        py::array_t<int32_t> out(static_cast<py::ssize_t>(w.out_channels()));
        w.zero_points(out.mutable_data());
        return out;
      })
      .def("storage", [](const py::object& self) {
        const PackedConvWeight& w = self.cast<const PackedConvWeight&>();
        py::array_t<uint8_t> out({static_cast<py::ssize_t>(w.nbytes())}, {static_cast<py::ssize_t>(1)},
                                 static_cast<const uint8_t*>(w.storage()), self);
        py::detail::array_proxy(out.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
        return out;
      });
  m.def("pack_conv", &pack_conv, py::arg("w"), py::arg("groups"), py::arg("w_zero_point"));
  m.def("conv_weight_view", [](const py::array& bytes, ElemType type, int64_t M, int64_t Cg, int64_t groups,
                               int64_t kh, int64_t kw) {
    const uint8_t* data = checked_data<uint8_t>(bytes, "packed", "uint8");
    if (bytes.ndim() != 1) throw py::value_error("packed bytes must be 1-D");
    return PackedConvWeight::view(data, static_cast<size_t>(bytes.size()), type, M, Cg, groups, kh, kw);
  }, py::arg("packed"), py::arg("type"), py::arg("out_channels"), py::arg("group_channels"), py::arg("groups"),
     py::arg("kernel_h"), py::arg("kernel_w"), py::keep_alive<0, 1>());
  m.def("conv_integer", &conv_integer, py::arg("x"), py::arg("x_zero_point"), py::arg("w"), py::arg("params"));
  m.def("qlinear_conv", &qlinear_conv, py::arg("x"), py::arg("x_zero_point"), py::arg("w"), py::arg("params"),
        py::arg("bias"), py::arg("multiplier"), py::arg("y_zero_point"), py::arg("y_type"));
  m.def("conv_float", &conv_float, py::arg("x"), py::arg("w"), py::arg("params"), py::arg("dynamic"),
        py::arg("in_scale"), py::arg("in_zero"), py::arg("in_type"), py::arg("col_scale"), py::arg("bias"),
        py::arg("clamp_lo"), py::arg("clamp_hi"), py::arg("out_scale") = py::none(), py::arg("out_zero") = 0,
        py::arg("out_type") = QType::uint8, py::arg("nhwc") = false, py::arg("out_nhwc") = py::none());
}

}  // namespace bindings
}  // namespace lowbit
