// lowbit public C++ API: ONNX-semantics quantization primitives, packed int8 matrices, exact
// integer GEMM and the fused dynamic-quantization linear layer. All functions validate their
// arguments and throw std::invalid_argument (bad input) or std::runtime_error (bad environment).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lowbit {

// ---- CPU and dispatch --------------------------------------------------------------------------
// One value per row of the dispatch table (csrc/dispatch/kernel_table.cpp), which owns names,
// detection and preference. amx_emu is test-only: the AMX kernels on a software tile model.
enum class Isa : int {
  scalar = 0, avx2 = 1, avx512vnni = 2, avxvnni = 3, neon = 4, neondot = 5, amx = 6, amx_emu = 7
};

std::string isa_name(Isa isa);
Isa parse_isa(const std::string& name);          // throws std::invalid_argument for unknown names
std::vector<Isa> available_isas();               // in order of preference, best last
std::vector<Isa> all_isas();                     // every row, available here or not
std::string isa_missing_reason(Isa isa);         // empty if available, else why not
bool isa_test_only(Isa isa);                     // never the default (amx_emu)
Isa active_isa();
void set_active_isa(Isa isa);                    // throws std::runtime_error if the CPU lacks it
std::vector<std::string> cpu_feature_names();    // e.g. {"avx2", "fma", "avx512f", ...}

int get_num_threads();
void set_num_threads(int n);                     // 1 <= n <= max_num_threads()
int default_num_threads();                       // usable cores (respects CPU affinity)
// The most threads set_num_threads accepts: kThreadsPerCpu per CPU (the larger of the affinity
// mask and the machine's count), and at least kMinThreadCap. Every kernel is compute- or
// memory-bound, so threads beyond the CPUs only take turns; a few per CPU stay allowed for
// tests and experiments that oversubscribe (thread counts 3 and 7 on a 2-CPU machine).
constexpr int kThreadsPerCpu = 4;
constexpr int kMinThreadCap = 16;
int max_num_threads();
// Run parallel work on the threads of an OpenMP runtime already in the process (PyTorch's
// libgomp) instead of lowbit's own: inside a PyTorch model the two pools would fight for the
// cores. Threads per call: the smaller of get_num_threads() and that runtime's setting.
void use_openmp_runtime(const std::string& library_path);  // throws std::runtime_error
void use_own_threads();
std::string parallel_runtime_name();             // "lowbit" or "openmp:<library path>"

// ---- Element types -----------------------------------------------------------------------------
enum class ElemType : int { int8 = 0, uint8 = 1, int32 = 2 };

// Quantized target types; int4/uint4 are stored one value per byte (int8/uint8 storage).
enum class QType : int { int8 = 0, uint8 = 1, int4 = 2, uint4 = 3 };
int32_t qtype_min(QType t);
int32_t qtype_max(QType t);

// lowbit's one rule from a quantization range to its parameters, per channel (n ranges; the
// NumPy layer's _range_to_params calls this). In float32, in this order:
//   symmetric:  scale = max(|lo|, |hi|) / S            zero = Z
//               (S = 127 for int8 and uint8, 7 for int4 and uint4; Z = 0, 128, 0, 8)
//   asymmetric: lo = min(lo, 0), hi = max(hi, 0), d = qmax - qmin
//               scale = (hi - lo) / d, or hi / d - lo / d where that overflows
//               zero = clamp(round_half_even(qmin - lo / (scale or 1 if 0)), qmin, qmax)
//   then a scale of 0 (an all-zero range) becomes 1.
void range_params(const float* lo, const float* hi, int64_t n, QType type, bool symmetric,
                  float* scale, int32_t* zero);

// A tensor seen as (outer, axis, inner) around the quantization axis.
struct AxisView {
  int64_t outer = 1;
  int64_t axis = 1;
  int64_t inner = 1;
};

// per_tensor: one scale. per_axis: scale[axis]. blocked: scale shaped (outer, ceil(axis/block), inner).
enum class ScaleMode : int { per_tensor = 0, per_axis = 1, blocked = 2 };

// q = saturate(round_half_even(x / scale) + zero_point). zero_point may be null (all zero).
// Throws std::invalid_argument if x holds NaN or Inf (out is then unspecified).
void quantize_linear(const float* x, AxisView view, ScaleMode mode, int64_t block_size,
                     const float* scale, const int32_t* zero_point, QType qtype, void* out);

// x = (q - zero_point) * scale, in float32.
void dequantize_linear(const void* q, ElemType qtype, AxisView view, ScaleMode mode,
                       int64_t block_size, const float* scale, const int32_t* zero_point,
                       float* out);

// Per row of a rows x cols float32 matrix: lo = min(0, row min), hi = max(0, row max), the
// range every per-channel quantizer starts from (one pass over the data). Throws
// std::invalid_argument if x holds NaN or Inf.
void row_ranges(const float* x, int64_t rows, int64_t cols, float* lo, float* hi);

// ONNX DynamicQuantizeLinear over n values (uint8, per tensor). Zero range gives scale 1, zp 0.
void dynamic_quantize_linear(const float* x, int64_t n, uint8_t* out, float* scale,
                             uint8_t* zero_point);

// y = saturate(round_half_even(double(acc) * double(multiplier)) + zero_point).
// multiplier: one value (per_tensor), one per column (per_axis over the last dim), or rows*cols.
enum class MultiplierMode : int { per_tensor = 0, per_column = 1, elementwise = 2 };
void requantize(const int32_t* acc, int64_t rows, int64_t cols, const float* multiplier,
                MultiplierMode mode, int32_t zero_point, QType qtype, void* out);

// ---- Packed matrices ---------------------------------------------------------------------------
// The B operand of a GEMM (K x N), packed once into 64-column panels of 4-deep k groups. Stores
// B - 128 for uint8 input so every kernel sees signed bytes, plus per-column sums that fold the
// zero points into the epilogue. The layout is the same for every ISA.
class PackedMatrix {
 public:
  // b[k * stride_k + n * stride_n]; zero_point has N entries (per column) or 1 (per tensor).
  static std::shared_ptr<PackedMatrix> pack(const void* b, ElemType type, int64_t K, int64_t N,
                                            int64_t stride_k, int64_t stride_n,
                                            const int32_t* zero_point, int64_t zero_point_count);
  // A float32 weight (N x K, row stride ldw: out_features x in_features) quantized per output
  // channel, saturate(round(w / scale[n]) + zero_point[n]) in `type` (int8 or uint8: the bytes
  // quantize_linear gives), and packed, in one pass: the quantized weight is never stored
  // whole. Throws std::invalid_argument for NaN/Inf in w, a scale that is not finite and > 0 or
  // a zero point outside the type.
  static std::shared_ptr<PackedMatrix> quantize_pack(const float* w, int64_t N, int64_t K, int64_t ldw,
                                                     const float* scale, const int32_t* zero_point,
                                                     ElemType type);
  // The same with the parameters found here: each row's range [min(0, min), max(0, max)] and
  // range_params (int8, symmetric or not), a block of rows at a time so each row is read from
  // memory once. The per-channel scales and zero points go to scale_out / zero_out (N each).
  // Throws std::invalid_argument for NaN/Inf in w.
  static std::shared_ptr<PackedMatrix> quantize_pack_channels(const float* w, int64_t N, int64_t K,
                                                              int64_t ldw, bool symmetric,
                                                              float* scale_out, int32_t* zero_out);
  // Writes the original values back as B[k, n] at out[k * stride_k + n * stride_n] (bytes of
  // the source type): the canonical form for saving, so no unpacked copy is kept alongside.
  void unpack(void* out, int64_t stride_k, int64_t stride_n) const;

  ~PackedMatrix();
  PackedMatrix(const PackedMatrix&) = delete;
  PackedMatrix& operator=(const PackedMatrix&) = delete;

  int64_t rows() const { return K_; }     // K
  int64_t cols() const { return N_; }     // N
  int64_t padded_depth() const { return KP_; }
  int64_t padded_cols() const { return NP_; }
  ElemType source_type() const { return type_; }
  bool symmetric() const { return symmetric_; }   // every effective zero point is 0
  size_t nbytes() const;                          // bytes owned (panels + column data)

  const int8_t* panels() const { return panels_; }
  const int32_t* col_zero() const { return col_zero_; }     // zb' = zb - (uint8 ? 128 : 0)
  const int32_t* col_corr() const { return col_corr_; }     // colsum(B') - K * zb'
  const int32_t* col_zero_point() const { return zero_points_; }  // user zero points, N

 private:
  PackedMatrix() = default;
  // Storage for a K x N matrix of `type` (per-column data zeroed); finish() sets symmetric_.
  static std::shared_ptr<PackedMatrix> allocate(ElemType type, int64_t K, int64_t N);
  void finish();
  int64_t K_ = 0, N_ = 0, KP_ = 0, NP_ = 0;
  ElemType type_ = ElemType::int8;
  bool symmetric_ = true;
  void* storage_ = nullptr;
  size_t storage_bytes_ = 0;
  int8_t* panels_ = nullptr;
  int32_t* col_zero_ = nullptr;
  int32_t* col_corr_ = nullptr;
  int32_t* zero_points_ = nullptr;
};

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

// ---- 4-bit weights ---------------------------------------------------------------------------
// An (N x K) weight of unsigned 4-bit values u in [0, 15] with one float32 scale and one zero
// point per group of `group_size` consecutive k (the last group of a row may be shorter):
//   w[n, k] = (u[n, k] - zero_point[n, g]) * scale[n, g],  g = k / group_size.
// Symmetric weights (zero point 8 everywhere) store no zero points. Packed once into 64-column
// panels, group by group, each group's scales (and zero points) right after its weights, so a
// GEMV streams the whole weight sequentially. The layout is the same for every ISA.
class PackedInt4Matrix {
 public:
  static constexpr int64_t kMaxGroupSize = 1 << 20;  // keeps 15 * 127 * group in int32

  // u: N x K values in [0, 15], one per byte, row stride K. scale: N x G (G = ceil(K / group)),
  // finite and > 0. zero_point: N x G values in [0, 15], or null for symmetric (all 8).
  // K and group_size must be even.
  static std::shared_ptr<PackedInt4Matrix> pack(const uint8_t* u, int64_t N, int64_t K,
                                                int64_t group_size, const float* scale,
                                                const uint8_t* zero_point);
  void unpack(uint8_t* out) const;  // N x K values in [0, 15], one per byte

  ~PackedInt4Matrix();
  PackedInt4Matrix(const PackedInt4Matrix&) = delete;
  PackedInt4Matrix& operator=(const PackedInt4Matrix&) = delete;

  int64_t rows() const { return N_; }            // out_features
  int64_t cols() const { return K_; }            // in_features
  int64_t group_size() const { return group_; }
  int64_t groups() const { return groups_; }     // G
  int64_t group_pad() const { return group_pad_; }  // group length padded to 8 in the panels
  bool symmetric() const { return symmetric_; }
  size_t nbytes() const { return storage_bytes_; }
  int64_t panels() const { return panels_count_; }
  int64_t group_stride() const { return group_stride_; }   // bytes per group block of a panel
  int64_t panel_stride() const { return group_stride_ * groups_; }
  const uint8_t* data() const { return data_; }

 private:
  PackedInt4Matrix() = default;
  int64_t N_ = 0, K_ = 0, group_ = 0, groups_ = 0, group_pad_ = 0, panels_count_ = 0;
  int64_t group_stride_ = 0;
  bool symmetric_ = true;
  void* storage_ = nullptr;
  size_t storage_bytes_ = 0;
  uint8_t* data_ = nullptr;
};

// How a 4-bit linear computes. w4a8: each row of x is quantized to int8 (symmetric, per row),
// exact int32 dot products per group, scaled and summed in float32. weight_only: float32
// activations times the 4-bit weights, dequantized in registers.
enum class Int4Compute : int { w4a8 = 0, weight_only = 1 };

// y[M, N] = x[M, K] @ W.T + bias, W the packed 4-bit weight. bias may be null.
// Throws std::invalid_argument on NaN/Inf in x or bias.
void linear_int4(const float* x, int64_t M, int64_t ldx, const PackedInt4Matrix& w,
                 Int4Compute mode, const float* bias, float* y, int64_t ldy);

}  // namespace lowbit
