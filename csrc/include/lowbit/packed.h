// lowbit public C++ API, packed weights: the int8 B operand of the GEMMs (PackedMatrix) and
// 4-bit weights (PackedInt4Matrix), packed once into the panel layout every ISA path shares.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "lowbit/types.h"

namespace lowbit {

// ---- 8-bit: PackedMatrix ------------------------------------------------------------------------
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
  // A PackedMatrix over packed bytes someone else owns (a copy of another one's storage(), e.g.
  // in a torch tensor): the same layout, nothing copied, nothing freed; `data` must outlive the
  // view. Throws std::invalid_argument unless `bytes` is exactly storage_bytes(type, K, N) and
  // data is 64-byte aligned (the kernels load panels with aligned loads).
  static std::shared_ptr<PackedMatrix> view(const void* data, size_t bytes, ElemType type, int64_t K,
                                            int64_t N);
  // The size of the storage of a K x N matrix of `type`: panels, then column data.
  static size_t storage_bytes(ElemType type, int64_t K, int64_t N);
  const void* storage() const { return storage_; }   // nbytes() bytes, 64-byte aligned

  ~PackedMatrix();
  PackedMatrix(const PackedMatrix&) = delete;
  PackedMatrix& operator=(const PackedMatrix&) = delete;

  int64_t in_features() const { return K_; }   // K: rows of B (a weight's input features)
  int64_t out_features() const { return N_; }  // N: columns of B (a weight's output channels)
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
  // Sets the dimensions and the pointers into `base` (storage_bytes(type, K, N) bytes).
  void place(ElemType type, int64_t K, int64_t N, uint8_t* base);
  void finish();
  bool owns_storage_ = true;
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

// ---- 4-bit: PackedInt4Matrix --------------------------------------------------------------------
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
  // A PackedInt4Matrix over packed bytes someone else owns (a copy of another one's data()), as
  // PackedMatrix::view: `symmetric` says whether the groups store zero points (it changes the
  // layout). Throws std::invalid_argument unless bytes is the layout's size and data is
  // 64-byte aligned.
  static std::shared_ptr<PackedInt4Matrix> view(const void* data, size_t bytes, int64_t N, int64_t K,
                                                int64_t group_size, bool symmetric);

  ~PackedInt4Matrix();
  PackedInt4Matrix(const PackedInt4Matrix&) = delete;
  PackedInt4Matrix& operator=(const PackedInt4Matrix&) = delete;

  int64_t in_features() const { return K_; }     // K
  int64_t out_features() const { return N_; }    // N
  int64_t group_size() const { return group_; }
  int64_t groups() const { return groups_; }     // G
  int64_t group_pad() const { return group_pad_; }  // group length padded to 8 in the panels
  bool symmetric() const { return symmetric_; }
  size_t nbytes() const { return storage_bytes_; }
  int64_t panels() const { return panels_count_; }
  int64_t group_stride() const { return group_stride_; }   // bytes per group block of a panel
  int64_t panel_stride() const { return group_stride_ * groups_; }
  const uint8_t* data() const { return data_; }
  const void* storage() const { return storage_; }   // nbytes() bytes, 64-byte aligned

 private:
  PackedInt4Matrix() = default;
  // The dimensions and strides of an N x K weight in groups of group_size (checked); the
  // storage size follows from them.
  static std::shared_ptr<PackedInt4Matrix> shape(int64_t N, int64_t K, int64_t group_size,
                                                 bool symmetric);
  bool owns_storage_ = true;
  int64_t N_ = 0, K_ = 0, group_ = 0, groups_ = 0, group_pad_ = 0, panels_count_ = 0;
  int64_t group_stride_ = 0;
  bool symmetric_ = true;
  void* storage_ = nullptr;
  size_t storage_bytes_ = 0;
  uint8_t* data_ = nullptr;
};

// ---- 16-bit floats: PackedHalfMatrix -------------------------------------------------------------
// An (N x K) weight of float16 or bfloat16 values, packed once into 64-column panels in the
// layout of its type (kernels/kernel_api.h, W16F32Problem: float16 in k rows, bfloat16 in k pairs),
// zero past K and past N. No scales: the 16-bit values are the weights. The layout is the same
// for every ISA.
class PackedHalfMatrix {
 public:
  // A float32 weight w[n * ldw + k] rounded to the type, nearest even (NumPy's astype(float16);
  // bfloat16 likewise). Throws std::invalid_argument for NaN/Inf in w or a value whose rounding
  // overflows the type (|w| >= 65520 for float16): a weight would silently become Inf.
  static std::shared_ptr<PackedHalfMatrix> pack_float(const float* w, int64_t N, int64_t K, int64_t ldw,
                                                      HalfType type);
  // 16-bit patterns of the type, h[n * ldw + k], taken as they are (a model already in float16
  // or bfloat16). Throws std::invalid_argument for NaN/Inf patterns.
  static std::shared_ptr<PackedHalfMatrix> pack_bits(const uint16_t* h, int64_t N, int64_t K,
                                                     int64_t ldw, HalfType type);
  void unpack(uint16_t* out) const;  // the N x K 16-bit patterns, row stride K
  // A PackedHalfMatrix over packed bytes someone else owns (a copy of another one's storage()),
  // as PackedMatrix::view. Throws std::invalid_argument unless bytes is storage_bytes(type, N, K)
  // and data is 64-byte aligned.
  static std::shared_ptr<PackedHalfMatrix> view(const void* data, size_t bytes, int64_t N, int64_t K,
                                                HalfType type);
  static size_t storage_bytes(HalfType type, int64_t N, int64_t K);

  ~PackedHalfMatrix();
  PackedHalfMatrix(const PackedHalfMatrix&) = delete;
  PackedHalfMatrix& operator=(const PackedHalfMatrix&) = delete;

  int64_t in_features() const { return K_; }    // K
  int64_t out_features() const { return N_; }   // N
  int64_t padded_depth() const { return KP_; }  // k per panel column (bfloat16: K rounded to 2)
  int64_t panels_count() const { return panels_count_; }
  HalfType type() const { return type_; }
  size_t nbytes() const { return storage_bytes_; }
  const uint16_t* panels() const { return static_cast<const uint16_t*>(storage_); }
  const void* storage() const { return storage_; }   // nbytes() bytes, 64-byte aligned

 private:
  PackedHalfMatrix() = default;
  static std::shared_ptr<PackedHalfMatrix> shape(int64_t N, int64_t K, HalfType type);
  template <typename Source>
  static std::shared_ptr<PackedHalfMatrix> pack(int64_t N, int64_t K, HalfType type, Source value);
  bool owns_storage_ = true;
  int64_t N_ = 0, K_ = 0, KP_ = 0, panels_count_ = 0;
  HalfType type_ = HalfType::float16;
  void* storage_ = nullptr;
  size_t storage_bytes_ = 0;
};

}  // namespace lowbit
