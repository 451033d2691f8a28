// Packing of 4-bit weights into the panel layout described in kernels/kernel_api.h
// (W4Problem): 64-column panels, group blocks of [weights | scales | zero points].
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels/w4_layout.h"
#include "lowbit/lowbit.h"
#include "runtime/aligned_buffer.h"
#include "runtime/thread_pool.h"

namespace lowbit {

PackedInt4Matrix::~PackedInt4Matrix() {
  if (owns_storage_) std::free(storage_);
}

std::shared_ptr<PackedInt4Matrix> PackedInt4Matrix::shape(int64_t N, int64_t K, int64_t group_size,
                                                          bool symmetric) {
  if (N < 0 || K < 0) throw std::invalid_argument("negative dimension");
  if (K % 2 != 0)
    throw std::invalid_argument("4-bit weights need an even in_features, got " + std::to_string(K));
  if (group_size <= 0 || group_size % 2 != 0 || group_size > kMaxGroupSize)
    throw std::invalid_argument("group_size must be even and in [2, " +
                                std::to_string(kMaxGroupSize) + "], got " +
                                std::to_string(group_size));
  std::shared_ptr<PackedInt4Matrix> pm(new PackedInt4Matrix());
  const int64_t G = ceil_div(K, group_size);
  pm->N_ = N;
  pm->K_ = K;
  pm->group_ = group_size;
  pm->groups_ = G;
  pm->group_pad_ = round_up(std::min(group_size, std::max<int64_t>(K, 1)), kW4OctetDepth);
  pm->symmetric_ = symmetric;
  pm->group_stride_ = pm->group_pad_ * kPanelCols / 2 + kPanelCols * 4 + (symmetric ? 0 : kPanelCols);
  pm->panels_count_ = ceil_div(N, kPanelCols);
  // No groups (K = 0) means no bytes, however many columns: N is then not bounded by a buffer.
  pm->storage_bytes_ =
      G == 0 ? 0 : static_cast<size_t>(checked_size_mul(checked_size_mul(pm->panels_count_, pm->group_stride_), G));
  return pm;
}

std::shared_ptr<PackedInt4Matrix> PackedInt4Matrix::view(const void* data, size_t bytes, int64_t N,
                                                         int64_t K, int64_t group_size,
                                                         bool symmetric) {
  std::shared_ptr<PackedInt4Matrix> pm = shape(N, K, group_size, symmetric);
  if (bytes != pm->storage_bytes_)
    throw std::invalid_argument("packed bytes: " + std::to_string(bytes) + " given, a " +
                                std::to_string(N) + " x " + std::to_string(K) +
                                " 4-bit weight in groups of " + std::to_string(group_size) +
                                " has " + std::to_string(pm->storage_bytes_));
  if (reinterpret_cast<std::uintptr_t>(data) % 64 != 0)
    throw std::invalid_argument("packed bytes must be 64-byte aligned");
  pm->owns_storage_ = false;
  pm->storage_ = const_cast<void*>(data);
  pm->data_ = static_cast<uint8_t*>(pm->storage_);
  return pm;
}

std::shared_ptr<PackedInt4Matrix> PackedInt4Matrix::pack(const uint8_t* u, int64_t N, int64_t K,
                                                         int64_t group_size, const float* scale,
                                                         const uint8_t* zero_point) {
  std::shared_ptr<PackedInt4Matrix> pm = shape(N, K, group_size, true);  // checks the shape
  const int64_t G = pm->groups_;
  for (int64_t i = 0; i < N * K; ++i)
    if (u[i] > 15) throw std::invalid_argument("4-bit values must lie in [0, 15]");
  for (int64_t i = 0; i < N * G; ++i) {
    if (!(std::isfinite(scale[i]) && scale[i] > 0.0f))
      throw std::invalid_argument("4-bit weight scales must be finite and > 0");
    if (zero_point != nullptr && zero_point[i] > 15)
      throw std::invalid_argument("4-bit zero points must lie in [0, 15]");
  }
  bool symmetric = true;
  if (zero_point != nullptr)
    for (int64_t i = 0; i < N * G; ++i) symmetric &= zero_point[i] == 8;
  if (!symmetric) pm = shape(N, K, group_size, false);  // the groups store zero points
  const bool store_zeros = !symmetric;
  pm->storage_ = alloc_weight_bytes(pm->storage_bytes_);
  std::memset(pm->storage_, 0, pm->storage_bytes_);
  pm->data_ = static_cast<uint8_t*>(pm->storage_);

  PackedInt4Matrix* raw = pm.get();
  const int64_t weight_bytes = pm->group_pad_ * kPanelCols / 2;
  parallel_for(G == 0 ? 0 : pm->panels_count_, [&](int64_t panel) {
    uint8_t* base = raw->data_ + panel * raw->panel_stride();
    for (int64_t g = 0; g < G; ++g) {
      uint8_t* block = base + g * raw->group_stride_;
      auto* scales = reinterpret_cast<float*>(block + weight_bytes);
      uint8_t* zeros = block + weight_bytes + kPanelCols * 4;
      const int64_t k0 = g * group_size, k1 = std::min(K, k0 + group_size);
      for (int64_t c = 0; c < kPanelCols; ++c) {
        const int64_t n = panel * kPanelCols + c;
        if (n >= N) {
          scales[c] = 1.0f;  // padding columns: finite values, never stored to the output
          if (store_zeros) zeros[c] = 8;
          continue;
        }
        scales[c] = scale[n * G + g];
        if (store_zeros) zeros[c] = zero_point[n * G + g];
        const uint8_t* row = u + n * K;
        for (int64_t k = k0; k < k1; ++k) {
          const int64_t kk = k - k0;
          const uint8_t v = row[k];
          block[w4_weight_byte(kk, c)] |= static_cast<uint8_t>(w4_high_nibble(kk) ? v << 4 : v);
        }
      }
    }
  });
  return pm;
}

void PackedInt4Matrix::unpack(uint8_t* out) const {
  for (int64_t n = 0; n < N_; ++n) {
    const uint8_t* base = data_ + (n / kPanelCols) * panel_stride();
    const int64_t c = n % kPanelCols;
    for (int64_t k = 0; k < K_; ++k) {
      const int64_t g = k / group_, kk = k % group_;
      const uint8_t byte = base[g * group_stride_ + w4_weight_byte(kk, c)];
      out[n * K_ + k] = w4_high_nibble(kk) ? static_cast<uint8_t>(byte >> 4)
                                        : static_cast<uint8_t>(byte & 0x0F);
    }
  }
}

}  // namespace lowbit
