// lowbit public C++ API, element types: the integer types of arrays and of quantized values.
#pragma once

#include <cstdint>

namespace lowbit {

enum class ElemType : int { int8 = 0, uint8 = 1, int32 = 2 };

// Quantized target types; int4/uint4 are stored one value per byte (int8/uint8 storage).
enum class QType : int { int8 = 0, uint8 = 1, int4 = 2, uint4 = 3 };
int32_t qtype_min(QType t);
int32_t qtype_max(QType t);

}  // namespace lowbit
