// lowbit public C++ API, GEMMs and linear layers on packed weights: the exact integer GEMM
// (matmul_integer) and the dynamic, weight-only, static and 4-bit linears.
#pragma once

#include <cstdint>

#include "lowbit/packed.h"
#include "lowbit/types.h"

namespace lowbit {

// ---- 8-bit weights ------------------------------------------------------------------------------
// C[M,N] (int32, row stride ldc) = (A - a_zero_point) @ (B - b_zero_point), exact modulo 2^32.
// A is int8 or uint8 with row stride lda (elements); a_zero_point has M entries or 1.
void matmul_integer(const void* a, ElemType a_type, int64_t M, int64_t K, int64_t lda,
                    const int32_t* a_zero_point, int64_t a_zero_point_count,
                    const PackedMatrix& b, int32_t* c, int64_t ldc);

// The same with B as given: K x N int8/uint8 bytes, row stride ldb (>= N), b_zero_point 0, 1
// or N values (per tensor / per column). Nothing is packed for the caller: each task packs a
// chunk of panels of B (4, or 16 above kUnpackedMaxRows rows of A) into its own scratch, reused
// from call to call, and runs the kernel on it (B is read once). Same bits as pack +
// matmul_integer.
constexpr int64_t kUnpackedMaxRows = 64;
void matmul_integer_unpacked(const void* a, ElemType a_type, int64_t M, int64_t K, int64_t lda,
                             const int32_t* a_zero_point, int64_t a_zero_point_count,
                             const void* b, ElemType b_type, int64_t N, int64_t ldb,
                             const int32_t* b_zero_point, int64_t b_zero_point_count, int32_t* c,
                             int64_t ldc);

// Largest K for which linear() guarantees an exact int32 result: |x_q - za| <= 255 and
// |w_q - zw| <= 128 (symmetric weights) or 255 (asymmetric), so |acc| <= 255 * 128 * K or
// 255 * 255 * K must stay below 2^31.
constexpr int64_t kLinearMaxDepth = 65536;
constexpr int64_t kLinearMaxDepthAsymmetric = 33025;

// Fused dynamic-quantization linear: y[M,N] = dequant(quant_rows(x) @ B) * col_scale + bias.
// Rows of x are quantized to uint8 (DynamicQuantizeLinear per row); B is the packed int8
// weight (N output channels along its columns) with per-column scales. bias may be null.
// Throws std::invalid_argument on NaN/Inf in x.
void linear(const float* x, int64_t M, int64_t ldx, const PackedMatrix& b, const float* col_scale,
            const float* bias, float* y, int64_t ldy);

// Weight-only int8 linear: float32 x against the packed int8 weight B (N output channels,
// per-column scales), no activation quantization. Per element, in this order (every ISA the
// same bits): s = 0; for k in 0..K-1: s = fma(x[k], float(w[k, n] - zw[n]), s);
// y = fma(s, col_scale[n], bias[n] or 0). Throws std::invalid_argument on NaN/Inf in x.
void linear_weight_only(const float* x, int64_t M, int64_t ldx, const PackedMatrix& b,
                        const float* col_scale, const float* bias, float* y, int64_t ldy);

// Static-activation linear: every row of x quantized with one frozen scale and zero point
// (QuantizeLinear: saturate(round_half_even(x / in_scale) + in_zero) as uint8, or int8), then
// the exact GEMM and the epilogue of linear() with sa[m] = in_scale:
//   y = fma(float32(acc), in_scale * col_scale[n], bias[n]).
// Values outside the calibrated range saturate. Throws std::invalid_argument on NaN/Inf in x.
void linear_static(const float* x, int64_t M, int64_t ldx, const PackedMatrix& b, float in_scale,
                   int32_t in_zero, QType in_type, const float* col_scale, const float* bias,
                   float* y, int64_t ldy);

// ---- 4-bit weights ------------------------------------------------------------------------------
// How a 4-bit linear computes. w4a8: each row of x is quantized to int8 (symmetric, per row),
// exact int32 dot products per group, scaled and summed in float32. weight_only: float32
// activations times the 4-bit weights, dequantized in registers.
enum class Int4Compute : int { w4a8 = 0, weight_only = 1 };

// y[M, N] = x[M, K] @ W.T + bias, W the packed 4-bit weight. bias may be null.
// Throws std::invalid_argument on NaN/Inf in x or bias.
void linear_int4(const float* x, int64_t M, int64_t ldx, const PackedInt4Matrix& w,
                 Int4Compute mode, const float* bias, float* y, int64_t ldy);

// ---- 16-bit float weights -----------------------------------------------------------------------
// y[M, N] = x[M, K] @ W.T + bias, W the packed float16 or bfloat16 weight (wf16f32 / wbf16f32),
// float32 activations. Per element, in this order (every ISA the same bits):
//   s = 0; for k in 0..K-1: s = fma(x[k], float(w[n, k]), s);  y = s + bias[n] (or s).
// bias may be null. Throws std::invalid_argument on NaN/Inf in x or bias.
void linear_half(const float* x, int64_t M, int64_t ldx, const PackedHalfMatrix& w,
                 const float* bias, float* y, int64_t ldy);

}  // namespace lowbit
