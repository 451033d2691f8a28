// Bindings for callers that hold their own memory (lowbit.torch: torch tensors, which pybind11
// cannot see without linking PyTorch): views of packed weights over bytes another library owns,
// and the linear layers on raw addresses.
//
// Contract of the *_at functions: every address is the start of a C-contiguous buffer of the
// stated dtype and size on the CPU, alive for the call (lowbit/torch/_ops.py checks tensors
// before calling; it is the only caller). Here: the packed bytes are checked against the layout
// (size, 64-byte alignment) by the views, the kernels check x and bias for NaN/Inf. The GIL is
// released around the kernel, as everywhere.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "lowbit/gemm.h"
#include "lowbit/packed.h"
#include "python/bind_common.h"
#include "runtime/output_arena.h"

namespace lowbit {
namespace bindings {
namespace {

template <typename T>
T* at(std::uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

// The packed bytes of `packed` as a read-only NumPy array that keeps the matrix alive.
template <typename Matrix>
py::array storage_array(const py::object& self) {
  const Matrix& p = self.cast<const Matrix&>();
  const auto* data = static_cast<const uint8_t*>(p.storage());
  py::array_t<uint8_t> out({static_cast<py::ssize_t>(p.nbytes())}, {static_cast<py::ssize_t>(1)},
                           data, self);
  py::detail::array_proxy(out.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return out;
}

const void* byte_data(const py::array& bytes) {
  const uint8_t* data = checked_data<uint8_t>(bytes, "packed", "uint8");
  if (bytes.ndim() != 1) throw py::value_error("packed bytes must be 1-D");
  return data;
}

// The weight's element type by its lowbit::ElemType code (int8 or uint8; view checks).
std::shared_ptr<PackedMatrix> w8_view(std::uintptr_t packed, int64_t nbytes, int type, int64_t K,
                                      int64_t N) {
  return PackedMatrix::view(at<const void>(packed), static_cast<size_t>(nbytes),
                            static_cast<ElemType>(type), K, N);
}

// Every *_at entry takes (x, M, K, bias, y) first (x: M x K float32, bias: N float32 or 0,
// y: M x N float32), then the packed weight (address, bytes, N) and its family's parameters.
void w8a8_linear_at(std::uintptr_t x, int64_t M, int64_t K, std::uintptr_t bias, std::uintptr_t y,
                    std::uintptr_t packed, int64_t nbytes, int64_t N, int type,
                    std::uintptr_t scale) {
  std::shared_ptr<PackedMatrix> b = w8_view(packed, nbytes, type, K, N);
  py::gil_scoped_release release;
  lowbit::linear(at<const float>(x), M, K, *b, at<const float>(scale), at<const float>(bias),
                 at<float>(y), N);
}

void w8f32_linear_at(std::uintptr_t x, int64_t M, int64_t K, std::uintptr_t bias, std::uintptr_t y,
                     std::uintptr_t packed, int64_t nbytes, int64_t N, int type,
                     std::uintptr_t scale) {
  std::shared_ptr<PackedMatrix> b = w8_view(packed, nbytes, type, K, N);
  py::gil_scoped_release release;
  lowbit::linear_weight_only(at<const float>(x), M, K, *b, at<const float>(scale),
                             at<const float>(bias), at<float>(y), N);
}

void w8a8_static_linear_at(std::uintptr_t x, int64_t M, int64_t K, std::uintptr_t bias,
                           std::uintptr_t y, std::uintptr_t packed, int64_t nbytes, int64_t N,
                           int type, std::uintptr_t scale, float in_scale, int32_t in_zero,
                           int in_type_code) {
  const auto in_type = static_cast<QType>(in_type_code);
  if (in_type != QType::uint8 && in_type != QType::int8)
    throw py::value_error("input type must be uint8 or int8");
  std::shared_ptr<PackedMatrix> b = w8_view(packed, nbytes, type, K, N);
  py::gil_scoped_release release;
  lowbit::linear_static(at<const float>(x), M, K, *b, in_scale, in_zero, in_type,
                        at<const float>(scale), at<const float>(bias), at<float>(y), N);
}

template <Int4Compute mode>
void w4_linear_at(std::uintptr_t x, int64_t M, int64_t K, std::uintptr_t bias, std::uintptr_t y,
                  std::uintptr_t packed, int64_t nbytes, int64_t N, int64_t group_size,
                  bool symmetric) {
  std::shared_ptr<PackedInt4Matrix> w = PackedInt4Matrix::view(
      at<const void>(packed), static_cast<size_t>(nbytes), N, K, group_size, symmetric);
  py::gil_scoped_release release;
  lowbit::linear_int4(at<const float>(x), M, K, *w, mode, at<const float>(bias), at<float>(y), N);
}

// wf16f32 / wbf16f32: the weight's type is part of the entry's name (its family).
template <HalfType type>
void w16_linear_at(std::uintptr_t x, int64_t M, int64_t K, std::uintptr_t bias, std::uintptr_t y,
                   std::uintptr_t packed, int64_t nbytes, int64_t N) {
  std::shared_ptr<PackedHalfMatrix> w =
      PackedHalfMatrix::view(at<const void>(packed), static_cast<size_t>(nbytes), N, K, type);
  py::gil_scoped_release release;
  lowbit::linear_half(at<const float>(x), M, K, *w, at<const float>(bias), at<float>(y), N);
}

// ---- BoundLinear: a linear kernel with its packed weight bound, called with torch tensors ------
// The eager fast path of lowbit.torch's layers: one call per layer call, no per-call view of the
// packed bytes and no Python between the layer and the kernel. It reads the tensors through
// their Python attributes (dtype, is_cpu, is_contiguous(), shape, data_ptr()), so it needs no
// PyTorch headers, and allocates the output with torch.empty. It takes only the common case,
// a contiguous float32 CPU input of the right width and a contiguous float32 CPU bias of N
// values or None; for anything else it returns None and the caller takes the general path
// (lowbit/torch/_ops.py `call`, which converts or raises a clear error).
// Outputs of at least this many bytes come from the OutputArena (smaller ones from malloc's heap
// do not fault). The arena needs each block's size back: kept here by address.
constexpr size_t kArenaMinBytes = size_t{256} << 10;

std::mutex& outputs_mutex() {
  static std::mutex* mu = new std::mutex();
  return *mu;
}
std::unordered_map<void*, size_t>& output_sizes() {
  static auto* sizes = new std::unordered_map<void*, size_t>();
  return *sizes;
}
void remember_output(void* block, size_t bytes) {
  std::lock_guard<std::mutex> lock(outputs_mutex());
  output_sizes()[block] = bytes;
}
void release_output(void* block) {
  size_t bytes = 0;
  {
    std::lock_guard<std::mutex> lock(outputs_mutex());
    auto it = output_sizes().find(block);
    bytes = it->second;
    output_sizes().erase(it);
  }
  OutputArena::instance().give(block, bytes);
}

// A float32 tensor of out_shape (`count` values): small ones from torch.empty, large ones from
// the output arena (a NumPy array owning the block, viewed by torch.from_numpy; the block goes
// back to the arena when the tensor and the array are freed).
py::object float_output(const py::tuple& out_shape, size_t count, const py::object& empty,
                        const py::object& from_numpy) {
  const size_t bytes = count * sizeof(float);
  if (bytes < kArenaMinBytes) return empty(*out_shape);
  void* block = OutputArena::instance().take(bytes);
  remember_output(block, bytes);
  py::capsule owner(block, [](void* p) { release_output(p); });
  std::vector<py::ssize_t> shape;
  for (py::handle d : out_shape) shape.push_back(d.cast<py::ssize_t>());
  py::array_t<float> arr(shape, static_cast<float*>(block), owner);
  return from_numpy(arr);
}

enum class BoundFamily : int {
  w8a8 = 0, w8a8_static = 1, w8f32 = 2, w4a8 = 3, w4f32 = 4, wf16f32 = 5, wbf16f32 = 6
};

class BoundLinear {
 public:
  // buffers: the module's buffer dict, where the bias is looked up on every call ("bias": a
  // tensor or None), so a bias the user replaced is the one used.
  BoundLinear(BoundFamily family, py::object packed, int64_t K, int64_t N, int type,
              py::object scale, int64_t group_size, bool symmetric, float in_scale,
              int32_t in_zero, int in_type, py::dict buffers)
      : family_(family), packed_(std::move(packed)), scale_(std::move(scale)),
        buffers_(std::move(buffers)), K_(K), N_(N), in_scale_(in_scale), in_zero_(in_zero),
        in_type_(static_cast<QType>(in_type)) {
    py::module_ torch = py::module_::import("torch");
    empty_ = torch.attr("empty");
    from_numpy_ = torch.attr("from_numpy");
    float32_ = torch.attr("float32");
    const auto data = packed_.attr("data_ptr")().cast<std::uintptr_t>();
    const auto nbytes = packed_.attr("numel")().cast<int64_t>();
    if (family == BoundFamily::w4a8 || family == BoundFamily::w4f32) {
      w4_ = PackedInt4Matrix::view(at<const void>(data), static_cast<size_t>(nbytes), N, K,
                                   group_size, symmetric);
    } else if (family == BoundFamily::wf16f32 || family == BoundFamily::wbf16f32) {
      w16_ = PackedHalfMatrix::view(at<const void>(data), static_cast<size_t>(nbytes), N, K,
                                    family == BoundFamily::wbf16f32 ? HalfType::bfloat16
                                                                    : HalfType::float16);
    } else {
      w8_ = w8_view(data, nbytes, type, K, N);
      if (scale_.attr("numel")().cast<int64_t>() != N || scale_.attr("dtype").ptr() != float32_.ptr())
        throw py::value_error("scale must be float32 with N values");
      scale_data_ = at<const float>(scale_.attr("data_ptr")().cast<std::uintptr_t>());
    }
    if (family == BoundFamily::w8a8_static && in_type_ != QType::uint8 && in_type_ != QType::int8)
      throw py::value_error("input type must be uint8 or int8");
  }

  // y = x @ W.T + bias, or None when x or bias is not the common case (see above).
  py::object call(const py::handle& x) const {
    if (!fast_tensor(x)) return py::none();
    PyObject* b = PyDict_GetItem(buffers_.ptr(), names().bias.ptr());   // borrowed
    py::handle bias = b == nullptr ? py::handle(Py_None) : py::handle(b);
    py::object shape = x.attr(names().shape);
    const auto ndim = static_cast<size_t>(PyTuple_GET_SIZE(shape.ptr()));
    if (ndim == 0) return py::none();
    const int64_t k = PyLong_AsLongLong(PyTuple_GET_ITEM(shape.ptr(), ndim - 1));
    if (k != K_) return py::none();
    const float* bd = nullptr;
    if (!bias.is_none()) {
      if (!fast_tensor(bias) || bias.attr(names().numel)().cast<int64_t>() != N_)
        return py::none();
      bd = at<const float>(bias.attr(names().data_ptr)().cast<std::uintptr_t>());
    }
    int64_t M = 1;
    py::tuple out_shape(ndim);
    for (size_t i = 0; i + 1 < ndim; ++i) {
      PyObject* d = PyTuple_GET_ITEM(shape.ptr(), i);
      M *= PyLong_AsLongLong(d);
      out_shape[i] = py::reinterpret_borrow<py::object>(d);
    }
    out_shape[ndim - 1] = py::int_(N_);
    py::object y = output(out_shape, M);
    const auto* xd = at<const float>(x.attr(names().data_ptr)().cast<std::uintptr_t>());
    float* yd = at<float>(y.attr(names().data_ptr)().cast<std::uintptr_t>());
    {
      py::gil_scoped_release release;
      switch (family_) {
        case BoundFamily::w8a8:
          lowbit::linear(xd, M, K_, *w8_, scale_data_, bd, yd, N_);
          break;
        case BoundFamily::w8a8_static:
          lowbit::linear_static(xd, M, K_, *w8_, in_scale_, in_zero_, in_type_, scale_data_, bd, yd,
                                N_);
          break;
        case BoundFamily::w8f32:
          lowbit::linear_weight_only(xd, M, K_, *w8_, scale_data_, bd, yd, N_);
          break;
        case BoundFamily::w4a8:
          lowbit::linear_int4(xd, M, K_, *w4_, Int4Compute::w4a8, bd, yd, N_);
          break;
        case BoundFamily::w4f32:
          lowbit::linear_int4(xd, M, K_, *w4_, Int4Compute::weight_only, bd, yd, N_);
          break;
        case BoundFamily::wf16f32:
        case BoundFamily::wbf16f32:
          lowbit::linear_half(xd, M, K_, *w16_, bd, yd, N_);
          break;
      }
    }
    return y;
  }

 private:
  // The attribute names, interned once (attr("...") would make a new string every call).
  struct Names {
    py::str dtype{"dtype"}, is_cpu{"is_cpu"}, is_contiguous{"is_contiguous"}, shape{"shape"},
        data_ptr{"data_ptr"}, numel{"numel"}, bias{"bias"};
  };
  static const Names& names() {
    static const Names* n = new Names();   // never destroyed: outlives the interpreter's teardown
    return *n;
  }

  bool fast_tensor(const py::handle& t) const {
    const Names& n = names();
    return py::object(t.attr(n.dtype)).ptr() == float32_.ptr() &&
           py::object(t.attr(n.is_cpu)).ptr() == Py_True &&
           py::object(t.attr(n.is_contiguous)()).ptr() == Py_True;
  }

  py::object output(const py::tuple& out_shape, int64_t M) const {
    return float_output(out_shape, static_cast<size_t>(M) * static_cast<size_t>(N_), empty_,
                        from_numpy_);
  }

  BoundFamily family_;
  py::object packed_, scale_;   // the tensors whose memory the kernels read: kept alive here
  py::dict buffers_;
  py::object empty_, from_numpy_, float32_;
  int64_t K_, N_;
  float in_scale_;
  int32_t in_zero_;
  QType in_type_;
  std::shared_ptr<PackedMatrix> w8_;
  std::shared_ptr<PackedInt4Matrix> w4_;
  std::shared_ptr<PackedHalfMatrix> w16_;
  const float* scale_data_ = nullptr;
};

}  // namespace

void bind_raw(py::module_& m) {
  m.def("packed_matrix_view", [](const py::array& bytes, ElemType type, int64_t K, int64_t N) {
    return PackedMatrix::view(byte_data(bytes), static_cast<size_t>(bytes.size()), type, K, N);
  }, py::arg("packed"), py::arg("type"), py::arg("in_features"), py::arg("out_features"),
     py::keep_alive<0, 1>());
  m.def("packed_int4_view", [](const py::array& bytes, int64_t N, int64_t K, int64_t group_size,
                               bool symmetric) {
    return PackedInt4Matrix::view(byte_data(bytes), static_cast<size_t>(bytes.size()), N, K,
                                  group_size, symmetric);
  }, py::arg("packed"), py::arg("out_features"), py::arg("in_features"), py::arg("group_size"),
     py::arg("symmetric"), py::keep_alive<0, 1>());
  m.def("packed_half_view", [](const py::array& bytes, int64_t N, int64_t K, const std::string& dtype) {
    return PackedHalfMatrix::view(byte_data(bytes), static_cast<size_t>(bytes.size()), N, K,
                                  half_type(dtype));
  }, py::arg("packed"), py::arg("out_features"), py::arg("in_features"), py::arg("dtype"),
     py::keep_alive<0, 1>());
  m.def("packed_matrix_storage", &storage_array<PackedMatrix>, py::arg("packed"));
  m.def("packed_half_storage", &storage_array<PackedHalfMatrix>, py::arg("packed"));
  m.def("packed_int4_storage", &storage_array<PackedInt4Matrix>, py::arg("packed"));
  m.def("packed_matrix_bytes", &PackedMatrix::storage_bytes, py::arg("type"), py::arg("in_features"),
        py::arg("out_features"));
  py::enum_<BoundFamily>(m, "BoundFamily", "The linear kernel a BoundLinear runs")
      .value("w8a8", BoundFamily::w8a8)
      .value("w8a8_static", BoundFamily::w8a8_static)
      .value("w8f32", BoundFamily::w8f32)
      .value("w4a8", BoundFamily::w4a8)
      .value("w4f32", BoundFamily::w4f32)
      .value("wf16f32", BoundFamily::wf16f32)
      .value("wbf16f32", BoundFamily::wbf16f32);
  py::class_<BoundLinear>(m, "BoundLinear")
      .def(py::init<BoundFamily, py::object, int64_t, int64_t, int, py::object, int64_t, bool, float,
                    int32_t, int, py::dict>(),
           py::arg("family"), py::arg("packed"), py::arg("in_features"), py::arg("out_features"),
           py::arg("weight_type"), py::arg("scale"), py::arg("group_size"), py::arg("symmetric"),
           py::arg("input_scale"), py::arg("input_zero_point"), py::arg("input_type"),
           py::arg("buffers"))
      .def("__call__", &BoundLinear::call);
  m.def("output_arena_limit", [](py::object limit) {
    if (!limit.is_none()) OutputArena::instance().set_limit(limit.cast<size_t>());
    return OutputArena::instance().limit();
  }, py::arg("limit") = py::none());
  m.def("output_arena_cached", [] { return OutputArena::instance().cached_bytes(); });
  m.attr("OUTPUT_ARENA_MIN_BYTES") = kArenaMinBytes;
  // float32 torch tensor of `shape` for a kernel to fill (the operators' outputs)
  m.def("float_output", [](const py::tuple& shape) {
    static py::object* empty = new py::object(py::module_::import("torch").attr("empty"));
    static py::object* from_numpy = new py::object(py::module_::import("torch").attr("from_numpy"));
    size_t count = 1;
    for (py::handle d : shape) count *= d.cast<size_t>();
    return float_output(shape, count, *empty, *from_numpy);
  }, py::arg("shape"));
  // positional only: the callers pass them in this order on every call
  m.def("w8a8_linear_at", &w8a8_linear_at);
  m.def("w8f32_linear_at", &w8f32_linear_at);
  m.def("w8a8_static_linear_at", &w8a8_static_linear_at);
  m.def("w4a8_linear_at", &w4_linear_at<Int4Compute::w4a8>);
  m.def("w4f32_linear_at", &w4_linear_at<Int4Compute::weight_only>);
  m.def("wf16f32_linear_at", &w16_linear_at<HalfType::float16>);
  m.def("wbf16f32_linear_at", &w16_linear_at<HalfType::bfloat16>);
}

}  // namespace bindings
}  // namespace lowbit
