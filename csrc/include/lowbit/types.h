// lowbit public C++ API, element types: the integer types of arrays and of quantized values.
#pragma once

#include <cstdint>

namespace lowbit {

// int16/uint16 arrays are dequantize_linear's input only (every other integer op takes 8 bits).
enum class ElemType : int { int8 = 0, uint8 = 1, int32 = 2, int16 = 3, uint16 = 4 };

// Quantized target types; int4/uint4 are stored one value per byte (int8/uint8 storage),
// int16/uint16 one per 16-bit element. The 16-bit types are quantize_linear's and
// range_params' only: the GEMMs, convolutions and requantize take and give 8-bit values.
enum class QType : int { int8 = 0, uint8 = 1, int4 = 2, uint4 = 3, int16 = 4, uint16 = 5 };
int32_t qtype_min(QType t);
int32_t qtype_max(QType t);
// Bytes of one stored value: 2 for int16/uint16, 1 for the others.
int64_t qtype_bytes(QType t);

// The 16-bit float weight types (PackedHalfMatrix): IEEE binary16 and bfloat16 (the upper half of
// a float32), both held as their 16-bit patterns.
enum class HalfType : int { float16 = 0, bfloat16 = 1 };

}  // namespace lowbit
