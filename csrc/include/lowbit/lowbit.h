// lowbit public C++ API: ONNX-semantics quantization primitives, packed int8 matrices, exact
// integer GEMM and the fused dynamic-quantization linear layer. All functions validate their
// arguments and throw std::invalid_argument (bad input) or std::runtime_error (bad environment).
//
// The single include of the API; the declarations live by concern in:
//   lowbit/types.h     element types (ElemType, QType)
//   lowbit/runtime.h   ISA paths, threads, the OpenMP hand-off
//   lowbit/quantize.h  quantization primitives (ONNX semantics)
//   lowbit/packed.h    packed weights (PackedMatrix, PackedInt4Matrix, PackedHalfMatrix)
//   lowbit/gemm.h      matmul_integer and the linear layers
//   lowbit/conv.h      convolutions (ConvInteger, QLinearConv, the float layer)
#pragma once

#include "lowbit/conv.h"
#include "lowbit/gemm.h"
#include "lowbit/packed.h"
#include "lowbit/quantize.h"
#include "lowbit/runtime.h"
#include "lowbit/types.h"
