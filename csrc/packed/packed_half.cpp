// Packing of 16-bit float weights (PackedHalfMatrix) into the panel layout of kernels/kernel_api.h
// (W16F32Problem), through the one layout rule of kernels/half_float.h.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels/half_float.h"
#include "lowbit/lowbit.h"
#include "runtime/aligned_buffer.h"
#include "runtime/thread_pool.h"

namespace lowbit {
namespace {

const char* type_name(HalfType t) { return t == HalfType::bfloat16 ? "bfloat16" : "float16"; }

bool finite_bits(uint16_t h, HalfType t) {
  return t == HalfType::bfloat16 ? (h & 0x7f80u) != 0x7f80u : (h & 0x7c00u) != 0x7c00u;
}

}  // namespace

PackedHalfMatrix::~PackedHalfMatrix() {
  if (owns_storage_) std::free(storage_);
}

std::shared_ptr<PackedHalfMatrix> PackedHalfMatrix::shape(int64_t N, int64_t K, HalfType type) {
  if (N < 0 || K < 0) throw std::invalid_argument("negative dimension");
  if (type != HalfType::float16 && type != HalfType::bfloat16)
    throw std::invalid_argument("unknown 16-bit float type");
  std::shared_ptr<PackedHalfMatrix> pm(new PackedHalfMatrix());
  pm->N_ = N;
  pm->K_ = K;
  pm->type_ = type;
  pm->KP_ = type == HalfType::bfloat16 ? checked_round_up(K, kBf16PairDepth) : K;
  pm->panels_count_ = ceil_div(N, kPanelCols);
  pm->storage_bytes_ = static_cast<size_t>(
      checked_size_mul(checked_size_mul(checked_size_mul(pm->panels_count_, kPanelCols), pm->KP_), 2));
  return pm;
}

size_t PackedHalfMatrix::storage_bytes(HalfType type, int64_t N, int64_t K) {
  return shape(N, K, type)->storage_bytes_;
}

std::shared_ptr<PackedHalfMatrix> PackedHalfMatrix::view(const void* data, size_t bytes, int64_t N,
                                                         int64_t K, HalfType type) {
  std::shared_ptr<PackedHalfMatrix> pm = shape(N, K, type);
  if (bytes != pm->storage_bytes_)
    throw std::invalid_argument("packed bytes: " + std::to_string(bytes) + " given, a " +
                                std::to_string(N) + " x " + std::to_string(K) + " " +
                                type_name(type) + " weight has " +
                                std::to_string(pm->storage_bytes_));
  if (reinterpret_cast<std::uintptr_t>(data) % 64 != 0)
    throw std::invalid_argument("packed bytes must be 64-byte aligned");
  pm->owns_storage_ = false;
  pm->storage_ = const_cast<void*>(data);
  return pm;
}

// value(n, k) gives the 16-bit pattern of w[n, k] (checked by the caller).
template <typename Source>
std::shared_ptr<PackedHalfMatrix> PackedHalfMatrix::pack(int64_t N, int64_t K, HalfType type,
                                                         Source value) {
  std::shared_ptr<PackedHalfMatrix> pm = shape(N, K, type);
  pm->storage_ = alloc_weight_bytes(pm->storage_bytes_);
  std::memset(pm->storage_, 0, pm->storage_bytes_);
  const bool bf16 = type == HalfType::bfloat16;
  auto* base = static_cast<uint16_t*>(pm->storage_);
  const int64_t KP = pm->KP_;
  parallel_for(pm->panels_count_, [&](int64_t panel) {
    uint16_t* dst = base + panel * kPanelCols * KP;
    for (int64_t c = 0; c < kPanelCols && panel * kPanelCols + c < N; ++c)
      for (int64_t k = 0; k < K; ++k) dst[half_panel_index(bf16, k, c)] = value(panel * kPanelCols + c, k);
  });
  return pm;
}

std::shared_ptr<PackedHalfMatrix> PackedHalfMatrix::pack_float(const float* w, int64_t N, int64_t K,
                                                               int64_t ldw, HalfType type) {
  shape(N, K, type);  // checks the dimensions before w is read
  const bool bf16 = type == HalfType::bfloat16;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const float v = w[n * ldw + k];
      if (!std::isfinite(v)) throw std::invalid_argument("weight holds NaN or Inf values");
      const uint16_t h = bf16 ? float_to_bfloat16(v) : float_to_float16(v);
      if (!finite_bits(h, type))
        throw std::invalid_argument(std::string("weight value ") + std::to_string(v) +
                                    " is outside the " + type_name(type) + " range (it would "
                                    "round to Inf)");
    }
  return pack(N, K, type, [&](int64_t n, int64_t k) {
    const float v = w[n * ldw + k];
    return bf16 ? float_to_bfloat16(v) : float_to_float16(v);
  });
}

std::shared_ptr<PackedHalfMatrix> PackedHalfMatrix::pack_bits(const uint16_t* h, int64_t N, int64_t K,
                                                              int64_t ldw, HalfType type) {
  shape(N, K, type);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k)
      if (!finite_bits(h[n * ldw + k], type))
        throw std::invalid_argument("weight holds NaN or Inf values");
  return pack(N, K, type, [&](int64_t n, int64_t k) { return h[n * ldw + k]; });
}

void PackedHalfMatrix::unpack(uint16_t* out) const {
  const bool bf16 = type_ == HalfType::bfloat16;
  const auto* base = static_cast<const uint16_t*>(storage_);
  for (int64_t n = 0; n < N_; ++n) {
    const uint16_t* src = base + (n / kPanelCols) * kPanelCols * KP_;
    for (int64_t k = 0; k < K_; ++k) out[n * K_ + k] = src[half_panel_index(bf16, k, n % kPanelCols)];
  }
}

}  // namespace lowbit
