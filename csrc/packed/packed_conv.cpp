// PackedConvWeight: a convolution weight packed once, for the GEMM kernels (one PackedMatrix
// per group, K ordered (kh, kw, c) like the NHWC im2col rows) or for the direct depthwise
// kernels (the taps in int16 pairs, DwConvProblem). One aligned block of bytes either way.
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/kernel_api.h"
#include "lowbit/conv.h"
#include "runtime/aligned_buffer.h"

namespace lowbit {
namespace {

constexpr long long kAlign = 64;

bool is_depthwise(int64_t group_channels, int64_t groups) { return group_channels == 1 && groups > 1; }

void check_weight_shape(ElemType type, int64_t M, int64_t Cg, int64_t groups, int64_t kh, int64_t kw) {
  if (type != ElemType::int8 && type != ElemType::uint8)
    throw std::invalid_argument("weight must be int8 or uint8");
  if (M <= 0 || Cg <= 0 || kh <= 0 || kw <= 0)
    throw std::invalid_argument("weight dimensions must be positive");
  if (groups <= 0) throw std::invalid_argument("group must be positive");
  if (M % groups != 0)
    throw std::invalid_argument("the weight's " + std::to_string(M) +
                                " output channels are not divisible by group=" + std::to_string(groups));
}

// Bytes of one group's packed matrix in the block (rounded to the alignment).
long long group_stride(ElemType type, int64_t M, int64_t Cg, int64_t groups, int64_t kh, int64_t kw) {
  const long long K = checked_size_mul(checked_size_mul(Cg, kh), kw);
  return checked_round_up(static_cast<long long>(PackedMatrix::storage_bytes(type, K, M / groups)), kAlign);
}

long long dw_weight_bytes(int64_t M, int64_t kh, int64_t kw) {
  const long long taps = checked_size_mul(kh, kw);
  return checked_round_up(checked_size_mul(checked_size_mul((taps + 1) / 2, checked_round_up(M, kDwChannelBlock)), 4), kAlign);
}

}  // namespace

int64_t PackedConvWeight::padded_channels() const { return checked_round_up(M_, kDwChannelBlock); }

size_t PackedConvWeight::storage_bytes(ElemType type, int64_t M, int64_t Cg, int64_t groups,
                                       int64_t kh, int64_t kw) {
  check_weight_shape(type, M, Cg, groups, kh, kw);
  if (is_depthwise(Cg, groups))
    return static_cast<size_t>(checked_size_add(dw_weight_bytes(M, kh, kw),
                                                checked_round_up(checked_size_mul(M, 4), kAlign)));
  return static_cast<size_t>(checked_size_mul(group_stride(type, M, Cg, groups, kh, kw), groups));
}

std::shared_ptr<PackedConvWeight> PackedConvWeight::shape(ElemType type, int64_t M, int64_t Cg,
                                                          int64_t groups, int64_t kh, int64_t kw) {
  std::shared_ptr<PackedConvWeight> pw(new PackedConvWeight());
  pw->bytes_ = storage_bytes(type, M, Cg, groups, kh, kw);
  pw->type_ = type;
  pw->M_ = M;
  pw->Cg_ = Cg;
  pw->groups_ = groups;
  pw->kh_ = kh;
  pw->kw_ = kw;
  pw->depthwise_ = is_depthwise(Cg, groups);
  return pw;
}

void PackedConvWeight::place(uint8_t* base) {
  storage_ = base;
  const int32_t neutral = type_ == ElemType::uint8 ? 128 : 0;
  symmetric_ = true;
  if (depthwise_) {
    dw_w_ = reinterpret_cast<int16_t*>(base);
    dw_zero_ = reinterpret_cast<int32_t*>(base + dw_weight_bytes(M_, kh_, kw_));
    for (int64_t m = 0; m < M_; ++m) symmetric_ &= dw_zero_[m] == neutral;
    return;
  }
  const long long stride = group_stride(type_, M_, Cg_, groups_, kh_, kw_);
  groups_packed_.clear();
  for (int64_t g = 0; g < groups_; ++g) {
    groups_packed_.push_back(PackedMatrix::view(base + g * stride, PackedMatrix::storage_bytes(type_, depth(), M_ / groups_),
                                                type_, depth(), M_ / groups_));
    symmetric_ &= groups_packed_.back()->symmetric();
  }
}

std::shared_ptr<PackedConvWeight> PackedConvWeight::pack(const void* w, ElemType type, int64_t M,
                                                         int64_t Cg, int64_t groups, int64_t kh,
                                                         int64_t kw, const int32_t* zero_point,
                                                         int64_t zero_point_count) {
  std::shared_ptr<PackedConvWeight> pw = shape(type, M, Cg, groups, kh, kw);
  if (zero_point_count != 0 && zero_point_count != 1 && zero_point_count != M)
    throw std::invalid_argument("w_zero_point must have 1 or out_channels (=" + std::to_string(M) +
                                ") values, got " + std::to_string(zero_point_count));
  const int32_t lo = type == ElemType::uint8 ? 0 : -128, hi = type == ElemType::uint8 ? 255 : 127;
  for (int64_t i = 0; i < zero_point_count; ++i)
    if (zero_point[i] < lo || zero_point[i] > hi)
      throw std::invalid_argument("w_zero_point " + std::to_string(zero_point[i]) +
                                  " is outside the range of the weight's type");
  auto zp = [&](int64_t m) { return zero_point_count == 0 ? 0 : zero_point[zero_point_count == 1 ? 0 : m]; };
  auto* base = static_cast<uint8_t*>(alloc_weight_bytes(pw->bytes_));
  std::memset(base, 0, pw->bytes_);
  pw->storage_ = base;  // owned from here on (freed by the destructor if a step throws)
  const auto* src = static_cast<const uint8_t*>(w);
  auto value = [&](int64_t i) {
    return type == ElemType::uint8 ? static_cast<int32_t>(src[i]) : static_cast<int32_t>(static_cast<int8_t>(src[i]));
  };
  const int64_t taps = kh * kw;
  if (pw->depthwise_) {
    const int64_t CP = checked_round_up(M, kDwChannelBlock);
    auto* dw = reinterpret_cast<int16_t*>(base);
    auto* dz = reinterpret_cast<int32_t*>(base + dw_weight_bytes(M, kh, kw));
    for (int64_t m = 0; m < M; ++m) {
      dz[m] = zp(m);
      for (int64_t t = 0; t < taps; ++t)
        dw[((t / 2) * CP + m) * 2 + (t % 2)] = static_cast<int16_t>(value(m * taps + t) - zp(m));
    }
  } else {
    const int64_t Mg = M / groups, K = Cg * taps;
    const long long stride = group_stride(type, M, Cg, groups, kh, kw);
    std::vector<uint8_t> reordered(static_cast<size_t>(Mg * K));
    for (int64_t g = 0; g < groups; ++g) {
      // Row n of the group's weight as the GEMM sees it: k = (i * kw + j) * Cg + c.
      for (int64_t n = 0; n < Mg; ++n)
        for (int64_t c = 0; c < Cg; ++c)
          for (int64_t t = 0; t < taps; ++t)
            reordered[static_cast<size_t>(n * K + t * Cg + c)] = src[((g * Mg + n) * Cg + c) * taps + t];
      const int32_t* gzp = zero_point_count > 1 ? zero_point + g * Mg : zero_point;
      std::shared_ptr<PackedMatrix> pm = PackedMatrix::pack(reordered.data(), type, K, Mg, 1, K, gzp,
                                                            zero_point_count > 1 ? Mg : zero_point_count);
      std::memcpy(base + g * stride, pm->storage(), pm->nbytes());
    }
  }
  pw->place(base);
  return pw;
}

std::shared_ptr<PackedConvWeight> PackedConvWeight::view(const void* data, size_t bytes, ElemType type,
                                                         int64_t M, int64_t Cg, int64_t groups,
                                                         int64_t kh, int64_t kw) {
  std::shared_ptr<PackedConvWeight> pw = shape(type, M, Cg, groups, kh, kw);
  if (bytes != pw->bytes_)
    throw std::invalid_argument("packed bytes: " + std::to_string(bytes) + " given, this convolution "
                                "weight has " + std::to_string(pw->bytes_));
  if (reinterpret_cast<std::uintptr_t>(data) % 64 != 0)
    throw std::invalid_argument("packed bytes must be 64-byte aligned");
  pw->owns_ = false;
  pw->place(static_cast<uint8_t*>(const_cast<void*>(data)));
  return pw;
}

PackedConvWeight::~PackedConvWeight() {
  groups_packed_.clear();
  if (owns_) std::free(storage_);
}

void PackedConvWeight::zero_points(int32_t* out) const {
  if (depthwise_) {
    std::memcpy(out, dw_zero_, static_cast<size_t>(M_) * 4);
    return;
  }
  const int64_t Mg = M_ / groups_;
  for (int64_t g = 0; g < groups_; ++g) std::memcpy(out + g * Mg, group(g).col_zero_point(), static_cast<size_t>(Mg) * 4);
}

void PackedConvWeight::unpack(void* out) const {
  auto* dst = static_cast<uint8_t*>(out);
  const int64_t taps = kh_ * kw_;
  if (depthwise_) {
    const int64_t CP = padded_channels();
    for (int64_t m = 0; m < M_; ++m)
      for (int64_t t = 0; t < taps; ++t)
        dst[m * taps + t] = static_cast<uint8_t>(dw_w_[((t / 2) * CP + m) * 2 + (t % 2)] + dw_zero_[m]);
    return;
  }
  const int64_t Mg = M_ / groups_, K = depth();
  std::vector<uint8_t> rows(static_cast<size_t>(Mg * K));
  for (int64_t g = 0; g < groups_; ++g) {
    group(g).unpack(rows.data(), 1, K);
    for (int64_t n = 0; n < Mg; ++n)
      for (int64_t c = 0; c < Cg_; ++c)
        for (int64_t t = 0; t < taps; ++t)
          dst[((g * Mg + n) * Cg_ + c) * taps + t] = rows[static_cast<size_t>(n * K + t * Cg_ + c)];
  }
}

}  // namespace lowbit
