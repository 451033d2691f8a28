// The 16-bit float formats of the weight-only kernels (wf16f32, wbf16f32): exact widening to
// float32, round-to-nearest-even narrowing (the packers'), and the panel index of one value (the
// one copy of the layout rule kernel_api.h's W16F32Problem describes). Plain scalar code in an
// anonymous namespace: each translation unit (each ISA's, compiled with its own flags) keeps its
// own copy, so no function emitted with one ISA's instructions is shared with another's callers.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/kernel_api.h"

namespace lowbit {
namespace {

inline float bits_as_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

// IEEE binary16 -> float32, exact for every value: subnormals are normalized, Inf stays Inf,
// a NaN keeps its sign and payload (made quiet) as F16C's vcvtph2ps and AArch64's fcvtl do.
inline float float16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  if (exp == 0x1fu) return bits_as_float(sign | 0x7f800000u | (man << 13) | (man ? 0x400000u : 0u));
  if (exp == 0) {
    if (man == 0) return bits_as_float(sign);
    // Subnormal: shift the leading 1 up to the implicit position.
    int e = -1;
    do {
      man <<= 1;
      ++e;
    } while ((man & 0x400u) == 0);
    man &= 0x3ffu;
    return bits_as_float(sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | (man << 13));
  }
  return bits_as_float(sign | ((exp + 127 - 15) << 23) | (man << 13));
}

// bfloat16 -> float32: the upper half of the float32's bits (exact by construction).
inline float bfloat16_to_float(uint16_t b) { return bits_as_float(static_cast<uint32_t>(b) << 16); }

// float32 -> binary16, round to nearest, ties to even (vcvtps2ph with imm 0, NumPy's astype):
// overflow gives Inf, tiny values become subnormals or zero. NaN stays a quiet NaN.
inline uint16_t float_to_float16(float f) {
  const uint32_t u = float_bits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t absu = u & 0x7fffffffu;
  if (absu >= 0x7f800000u)  // Inf or NaN
    return static_cast<uint16_t>(sign | 0x7c00u | (absu > 0x7f800000u ? 0x200u | ((absu >> 13) & 0x3ffu) : 0u));
  if (absu >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds past 65504
  if (absu < 0x38800000u) {  // below the smallest normal half (2^-14): a subnormal or zero
    if (absu < 0x33000000u) return sign;  // below half the smallest subnormal (2^-25): zero
    const uint32_t exp = absu >> 23;
    const uint32_t man = (absu & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - exp;  // 14..24: the bits of man below the half's last place
    const uint32_t q = man >> shift, rest = man & ((1u << shift) - 1u), half = 1u << (shift - 1);
    const uint32_t r = q + ((rest > half || (rest == half && (q & 1u))) ? 1u : 0u);
    return static_cast<uint16_t>(sign | r);
  }
  const uint32_t rounded = absu + 0xfffu + ((absu >> 13) & 1u);  // ties to even at bit 13
  return static_cast<uint16_t>(sign | ((rounded - 0x38000000u) >> 13));
}

// float32 -> bfloat16, round to nearest, ties to even; NaN stays a quiet NaN (vcvtneps2bf16).
inline uint16_t float_to_bfloat16(float f) {
  const uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// Where value (k, c) of a panel lives (W16F32Problem): float16 row-major, bfloat16 in k pairs.
inline int64_t half_panel_index(bool bfloat16, int64_t k, int64_t c) {
  return bfloat16 ? (k / kBf16PairDepth) * (kPanelCols * kBf16PairDepth) + c * kBf16PairDepth +
                        k % kBf16PairDepth
                  : k * kPanelCols + c;
}

}  // namespace
}  // namespace lowbit
