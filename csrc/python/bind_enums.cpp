// The C++ enums whose integer codes the Python layer passes (QType, ScaleMode, MultiplierMode,
// Int4Compute) or mirrors (ElemType, Isa), exported as _C enums with the C++ names and values.
// Each accepts a plain int (or any object with __index__) wherever a bound function takes it, so
// callers can move from codes to names one call site at a time; out-of-range codes reach the
// same checks as before.
#include <pybind11/pybind11.h>

#include "lowbit/lowbit.h"
#include "python/bind_common.h"

namespace lowbit {
namespace bindings {
namespace {

// A value converts to its integer code with int() or .value (and __index__).
template <typename E>
py::enum_<E> int_enum(py::module_& m, const char* name, const char* doc) {
  return py::enum_<E>(m, name, doc);
}

}  // namespace

void bind_enums(py::module_& m) {
  int_enum<ElemType>(m, "ElemType", "Element type of an integer array (lowbit::ElemType)")
      .value("int8", ElemType::int8)
      .value("uint8", ElemType::uint8)
      .value("int32", ElemType::int32)
      .value("int16", ElemType::int16)
      .value("uint16", ElemType::uint16);
  int_enum<QType>(m, "QType", "Quantized target type (lowbit::QType)")
      .value("int8", QType::int8)
      .value("uint8", QType::uint8)
      .value("int4", QType::int4)
      .value("uint4", QType::uint4)
      .value("int16", QType::int16)
      .value("uint16", QType::uint16);
  int_enum<ScaleMode>(m, "ScaleMode", "Scale layout of quantize_linear (lowbit::ScaleMode)")
      .value("per_tensor", ScaleMode::per_tensor)
      .value("per_axis", ScaleMode::per_axis)
      .value("blocked", ScaleMode::blocked);
  int_enum<MultiplierMode>(m, "MultiplierMode",
                           "Multiplier layout of requantize (lowbit::MultiplierMode)")
      .value("per_tensor", MultiplierMode::per_tensor)
      .value("per_column", MultiplierMode::per_column)
      .value("elementwise", MultiplierMode::elementwise);
  int_enum<Int4Compute>(m, "Int4Compute", "How a 4-bit linear computes (lowbit::Int4Compute)")
      .value("w4a8", Int4Compute::w4a8)
      .value("weight_only", Int4Compute::weight_only);
  int_enum<Isa>(m, "Isa", "An ISA path of the dispatch table (lowbit::Isa)")
      .value("scalar", Isa::scalar)
      .value("avx2", Isa::avx2)
      .value("avx512vnni", Isa::avx512vnni)
      .value("avxvnni", Isa::avxvnni)
      .value("neon", Isa::neon)
      .value("neondot", Isa::neondot)
      .value("amx", Isa::amx)
      .value("amx_emu", Isa::amx_emu);
  // The int codes the Python layer passes today keep working.
  py::implicitly_convertible<int, ElemType>();
  py::implicitly_convertible<int, QType>();
  py::implicitly_convertible<int, ScaleMode>();
  py::implicitly_convertible<int, MultiplierMode>();
  py::implicitly_convertible<int, Int4Compute>();
  py::implicitly_convertible<int, Isa>();
}

}  // namespace bindings
}  // namespace lowbit
