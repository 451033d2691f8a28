// lowbit public C++ API, element types: the integer types of arrays and of quantized values.
#pragma once

#include <cstdint>

namespace lowbit {

enum class ElemType : int { int8 = 0, uint8 = 1, int32 = 2 };

// Quantized target types; int4/uint4 are stored one value per byte (int8/uint8 storage).
enum class QType : int { int8 = 0, uint8 = 1, int4 = 2, uint4 = 3 };
int32_t qtype_min(QType t);
int32_t qtype_max(QType t);

// The 16-bit float weight types (PackedHalfMatrix): IEEE binary16 and bfloat16 (the upper half of
// a float32), both held as their 16-bit patterns.
enum class HalfType : int { float16 = 0, bfloat16 = 1 };

}  // namespace lowbit
