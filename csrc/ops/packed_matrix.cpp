// Packing of the B operand into the ISA-independent panel layout:
//   panel p (64 columns) is KP/4 groups of [64 columns x 4 consecutive k] signed bytes.
// uint8 input is stored as B - 128 and the shift moves into the column zero point, so kernels
// only ever see u8 (A) x s8 (B).
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "lowbit/lowbit.h"
#include "runtime/aligned_buffer.h"
#include "runtime/thread_pool.h"

namespace lowbit {

PackedMatrix::~PackedMatrix() { std::free(storage_); }

size_t PackedMatrix::nbytes() const { return storage_bytes_; }

void PackedMatrix::unpack(void* out, int64_t stride_k, int64_t stride_n) const {
  const int32_t shift = type_ == ElemType::uint8 ? 128 : 0;
  auto* dst = static_cast<uint8_t*>(out);
  for (int64_t n = 0; n < N_; ++n) {
    const int8_t* panel = panels_ + (n / kPanelCols) * kPanelCols * KP_;
    const int64_t c = n % kPanelCols;
    for (int64_t k = 0; k < K_; ++k) {
      const int32_t v = panel[(k / 4) * kPanelCols * 4 + c * 4 + (k % 4)] + shift;
      dst[k * stride_k + n * stride_n] = static_cast<uint8_t>(v);
    }
  }
}

std::shared_ptr<PackedMatrix> PackedMatrix::pack(const void* b, ElemType type, int64_t K,
                                                 int64_t N, int64_t stride_k, int64_t stride_n,
                                                 const int32_t* zero_point,
                                                 int64_t zero_point_count) {
  if (K < 0 || N < 0) throw std::invalid_argument("negative dimension");
  if (type == ElemType::int32) throw std::invalid_argument("B must be int8 or uint8");
  if (zero_point_count != 0 && zero_point_count != 1 && zero_point_count != N)
    throw std::invalid_argument("b_zero_point must have 1 or N (=" + std::to_string(N) +
                                ") entries, got " + std::to_string(zero_point_count));
  const int32_t lo = type == ElemType::uint8 ? 0 : -128, hi = type == ElemType::uint8 ? 255 : 127;
  for (int64_t i = 0; i < zero_point_count; ++i)
    if (zero_point[i] < lo || zero_point[i] > hi)
      throw std::invalid_argument("b_zero_point " + std::to_string(zero_point[i]) +
                                  " is outside the range of B's type");

  std::shared_ptr<PackedMatrix> pm(new PackedMatrix());
  pm->K_ = K;
  pm->N_ = N;
  pm->KP_ = checked_round_up(K, kDepthGroup);
  pm->NP_ = checked_round_up(N, kPanelCols);
  pm->type_ = type;
  const int64_t panel_bytes = checked_size_mul(pm->KP_, pm->NP_);
  const int64_t col_bytes = checked_size_mul(pm->NP_, sizeof(int32_t));
  const int64_t zp_bytes = checked_size_mul(checked_round_up(N, 16), sizeof(int32_t));
  pm->storage_bytes_ = static_cast<size_t>(
      checked_size_add(panel_bytes, checked_size_add(checked_size_mul(col_bytes, 2), zp_bytes)));
  pm->storage_ = alloc_weight_bytes(pm->storage_bytes_);
  std::memset(pm->storage_, 0, pm->storage_bytes_);
  auto* base = static_cast<uint8_t*>(pm->storage_);
  pm->panels_ = reinterpret_cast<int8_t*>(base);
  pm->col_zero_ = reinterpret_cast<int32_t*>(base + panel_bytes);
  pm->col_corr_ = reinterpret_cast<int32_t*>(base + panel_bytes + col_bytes);
  pm->zero_points_ = reinterpret_cast<int32_t*>(base + panel_bytes + 2 * col_bytes);

  const int32_t shift = type == ElemType::uint8 ? 128 : 0;
  const auto* b8 = static_cast<const uint8_t*>(b);
  const int64_t KP = pm->KP_;
  const int64_t n_panels = pm->NP_ / kPanelCols;
  PackedMatrix* raw = pm.get();
  parallel_for(n_panels, [&](int64_t panel) {
    int8_t* dst = raw->panels_ + panel * kPanelCols * KP;
    for (int64_t c = 0; c < kPanelCols; ++c) {
      const int64_t n = panel * kPanelCols + c;
      if (n >= N) break;
      uint32_t sum = 0;
      for (int64_t k = 0; k < K; ++k) {
        const uint8_t raw_byte = b8[k * stride_k + n * stride_n];
        const int32_t v = (type == ElemType::uint8 ? static_cast<int32_t>(raw_byte)
                                                   : static_cast<int32_t>(static_cast<int8_t>(raw_byte))) -
                          shift;
        dst[(k / 4) * kPanelCols * 4 + c * 4 + (k % 4)] = static_cast<int8_t>(v);
        sum += static_cast<uint32_t>(v);
      }
      const int32_t zp = zero_point_count == 0 ? 0 : zero_point[zero_point_count == 1 ? 0 : n];
      const int32_t effective = zp - shift;
      raw->zero_points_[n] = zp;
      raw->col_zero_[n] = effective;
      raw->col_corr_[n] = static_cast<int32_t>(sum - static_cast<uint32_t>(K) * static_cast<uint32_t>(effective));
    }
  });
  pm->symmetric_ = true;
  for (int64_t n = 0; n < N; ++n) pm->symmetric_ &= pm->col_zero_[n] == 0;
  return pm;
}

}  // namespace lowbit
