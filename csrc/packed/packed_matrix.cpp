// Packing of the B operand into the ISA-independent panel layout:
//   panel p (64 columns) is KP/4 groups of [64 columns x 4 consecutive k] signed bytes.
// uint8 input is stored as B - 128 and the shift moves into the column zero point, so kernels
// only ever see u8 (A) x s8 (B).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "dispatch/kernel_table.h"
#include "kernels/kernel_api.h"
#include "lowbit/lowbit.h"
#include "packed/pack_panels.h"
#include "runtime/aligned_buffer.h"
#include "runtime/thread_pool.h"

namespace lowbit {

PackedMatrix::~PackedMatrix() {
  if (owns_storage_) std::free(storage_);
}

size_t PackedMatrix::nbytes() const { return storage_bytes_; }

void PackedMatrix::unpack(void* out, int64_t stride_k, int64_t stride_n) const {
  const int32_t shift = type_ == ElemType::uint8 ? 128 : 0;
  auto* dst = static_cast<uint8_t*>(out);
  for (int64_t n = 0; n < N_; ++n) {
    const int8_t* panel = panels_ + (n / kPanelCols) * kPanelCols * KP_;
    const int64_t c = n % kPanelCols;
    for (int64_t k = 0; k < K_; ++k) {
      const int32_t v = panel[(k / 4) * kGroupBytes + c * 4 + (k % 4)] + shift;
      dst[k * stride_k + n * stride_n] = static_cast<uint8_t>(v);
    }
  }
}

void check_b_operand(ElemType type, int64_t K, int64_t N, const int32_t* zero_point,
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
}

void pack_panels(const void* b, ElemType type, int64_t K, int64_t N, int64_t stride_k,
                 int64_t stride_n, const int32_t* zero_point, int64_t zero_point_count, int64_t KP,
                 int64_t p_begin, int64_t p_end, int8_t* panels, int32_t* col_zero,
                 int32_t* col_corr, int32_t* zero_points, bool parallel) {
  // A last panel with columns past N: those bytes stay zero.
  if (p_end * kPanelCols > N && p_end > p_begin)
    std::memset(panels + (p_end - 1 - p_begin) * kPanelCols * KP, 0, static_cast<size_t>(kPanelCols * KP));
  // uint8 B is stored as B - 128, which as a byte is B ^ 0x80.
  const uint8_t flip = type == ElemType::uint8 ? 0x80 : 0x00;
  const uint32_t flip4 = 0x01010101u * flip;
  const auto* b8 = static_cast<const uint8_t*>(b);
  const int64_t n_panels = p_end - p_begin;
  // Column sums of the stored (shifted) values, sums[c] for the panel's columns.
  auto finish_columns = [&](int64_t panel, const int32_t* sums, int64_t cols) {
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t n = (p_begin + panel) * kPanelCols + c, i = panel * kPanelCols + c;
      const int32_t zp = zero_point_count == 0 ? 0 : zero_point[zero_point_count == 1 ? 0 : n];
      const int32_t effective = zp - (type == ElemType::uint8 ? 128 : 0);
      if (zero_points != nullptr) zero_points[i] = zp;
      col_zero[i] = effective;
      col_corr[i] = static_cast<int32_t>(static_cast<uint32_t>(sums[c]) -
                                               static_cast<uint32_t>(K) * static_cast<uint32_t>(effective));
    }
  };
  // Row-major B (K x N, matmul_integer's operand): whole panels through the path's packer
  // (kernels: pack_b_groups), k in blocks of 64 rows outside the panels, so each task reads its
  // columns of those rows as long runs (a panel-at-a-time walk would read one line from each of
  // K rows: a stride the prefetchers miss). A last, partial panel goes element by element.
  if (stride_n == 1) {
    const KernelTable& k = kernels();
    constexpr int64_t kGroupBlock = 16;
    const int64_t tasks = parallel ? std::min<int64_t>(n_panels, get_num_threads()) : 1;
    auto task = [&](int64_t t) {
      const int64_t p0 = n_panels * t / tasks, p1 = n_panels * (t + 1) / tasks;
      std::vector<int32_t> sum_data(static_cast<size_t>((p1 - p0) * kPanelCols), 0);
      auto sums = [&](int64_t i) { return sum_data.data() + i * kPanelCols; };
      for (int64_t g0 = 0; g0 < KP / 4; g0 += kGroupBlock) {
        const int64_t g1 = std::min(KP / 4, g0 + kGroupBlock);
        for (int64_t panel = p0; panel < p1; ++panel) {
          const int64_t n0 = (p_begin + panel) * kPanelCols, cols = std::min<int64_t>(kPanelCols, N - n0);
          int8_t* dst = panels + panel * kPanelCols * KP;
          if (cols == kPanelCols) {
            k.pack_b_groups(b8 + n0, stride_k, K, g0, g1, flip, dst, sums(panel - p0));
            continue;
          }
          for (int64_t g = g0; g < g1; ++g)
            for (int i = 0; i < 4; ++i) {
              const int64_t kk = 4 * g + i;
              if (kk >= K) continue;  // the panel was zeroed
              for (int64_t c = 0; c < cols; ++c) {
                const uint8_t v = static_cast<uint8_t>(b8[kk * stride_k + n0 + c] ^ flip);
                dst[g * kGroupBytes + c * 4 + i] = static_cast<int8_t>(v);
                sums(panel - p0)[c] += static_cast<int8_t>(v);
              }
            }
        }
      }
      for (int64_t panel = p0; panel < p1; ++panel)
        finish_columns(panel, sums(panel - p0),
                       std::min<int64_t>(kPanelCols, N - (p_begin + panel) * kPanelCols));
    };
    if (parallel)
      parallel_for(tasks, task);
    else
      task(0);
  } else {
    auto task = [&](int64_t panel) {
      auto* dst = reinterpret_cast<uint8_t*>(panels + panel * kPanelCols * KP);
      const int64_t n0 = (p_begin + panel) * kPanelCols;
      const int64_t cols = std::min<int64_t>(kPanelCols, N - n0);
      int32_t sums[kPanelCols] = {};
      if (stride_k == 1) {
        // Columns of B contiguous (a weight, N x K row-major): whole panels through the path's
        // packer (a 16 x 16 word transpose per 16 k groups on AVX-512); a partial panel moves
        // each column's 4-byte k groups as words, 16 groups a block so the lines written stay
        // in L1. The last, partial k group (zeros past K) element by element.
        const int64_t whole = K / 4;
        if (cols == kPanelCols) {
          kernels().pack_bt_groups(b8 + n0 * stride_n, stride_n, 0, whole, flip,
                                   reinterpret_cast<int8_t*>(dst), sums);
        } else {
          for (int64_t c = 0; c < cols; ++c) {
            const uint8_t* src = b8 + (n0 + c) * stride_n;
            for (int64_t k = 0; k < whole * 4; ++k)
              sums[c] += static_cast<int8_t>(static_cast<uint8_t>(src[k] ^ flip));
          }
          for (int64_t g0 = 0; g0 < whole; g0 += 16) {
            const int64_t g1 = std::min(whole, g0 + 16);
            for (int64_t c = 0; c < cols; ++c) {
              const uint8_t* src = b8 + (n0 + c) * stride_n;
              for (int64_t g = g0; g < g1; ++g) {
                uint32_t w;
                std::memcpy(&w, src + 4 * g, 4);
                w ^= flip4;
                std::memcpy(dst + g * kGroupBytes + 4 * c, &w, 4);
              }
            }
          }
        }
        if (whole * 4 < K)
          for (int64_t c = 0; c < cols; ++c) {
            const uint8_t* src = b8 + (n0 + c) * stride_n;
            uint8_t* out = dst + whole * kGroupBytes + 4 * c;
            for (int i = 0; i < 4; ++i) {
              out[i] = whole * 4 + i < K ? static_cast<uint8_t>(src[whole * 4 + i] ^ flip) : 0;
              sums[c] += static_cast<int8_t>(out[i]);
            }
          }
      } else {  // any other strides: element by element
        for (int64_t c = 0; c < cols; ++c) {
          const int64_t n = n0 + c;
          int32_t sum = 0;
          for (int64_t k = 0; k < KP; ++k) {
            const uint8_t v = k < K ? static_cast<uint8_t>(b8[k * stride_k + n * stride_n] ^ flip) : 0;
            dst[(k / 4) * kGroupBytes + c * 4 + (k % 4)] = v;
            sum += static_cast<int8_t>(v);
          }
          sums[c] = sum;
        }
      }
      finish_columns(panel, sums, cols);
    };
    if (parallel)
      parallel_for(n_panels, task);
    else
      for (int64_t panel = 0; panel < n_panels; ++panel) task(panel);
  }
}

size_t PackedMatrix::storage_bytes(ElemType, int64_t K, int64_t N) {
  if (K < 0 || N < 0) throw std::invalid_argument("negative dimension");
  const int64_t panel_bytes = checked_size_mul(checked_round_up(K, kGroupDepth), checked_round_up(N, kPanelCols));
  const int64_t col_bytes = checked_size_mul(checked_round_up(N, kPanelCols), sizeof(int32_t));
  const int64_t zp_bytes = checked_size_mul(checked_round_up(N, 16), sizeof(int32_t));
  return static_cast<size_t>(
      checked_size_add(panel_bytes, checked_size_add(checked_size_mul(col_bytes, 2), zp_bytes)));
}

void PackedMatrix::place(ElemType type, int64_t K, int64_t N, uint8_t* base) {
  K_ = K;
  N_ = N;
  KP_ = checked_round_up(K, kGroupDepth);
  NP_ = checked_round_up(N, kPanelCols);
  type_ = type;
  storage_bytes_ = storage_bytes(type, K, N);
  const int64_t panel_bytes = KP_ * NP_;
  const int64_t col_bytes = NP_ * static_cast<int64_t>(sizeof(int32_t));
  storage_ = base;
  panels_ = reinterpret_cast<int8_t*>(base);
  col_zero_ = reinterpret_cast<int32_t*>(base + panel_bytes);
  col_corr_ = reinterpret_cast<int32_t*>(base + panel_bytes + col_bytes);
  zero_points_ = reinterpret_cast<int32_t*>(base + panel_bytes + 2 * col_bytes);
}

std::shared_ptr<PackedMatrix> PackedMatrix::allocate(ElemType type, int64_t K, int64_t N) {
  std::shared_ptr<PackedMatrix> pm(new PackedMatrix());
  const size_t bytes = storage_bytes(type, K, N);
  auto* base = static_cast<uint8_t*>(alloc_weight_bytes(bytes));
  pm->place(type, K, N, base);
  // Every byte of the panels of whole columns is written by the packers; only the per-column
  // data and the last panel's columns past N need zeros.
  const size_t panel_bytes = static_cast<size_t>(pm->KP_ * pm->NP_);
  std::memset(base + panel_bytes, 0, bytes - panel_bytes);
  return pm;
}

std::shared_ptr<PackedMatrix> PackedMatrix::view(const void* data, size_t bytes, ElemType type,
                                                 int64_t K, int64_t N) {
  if (type != ElemType::int8 && type != ElemType::uint8)
    throw std::invalid_argument("a packed matrix holds int8 or uint8 values");
  const size_t want = storage_bytes(type, K, N);
  if (bytes != want)
    throw std::invalid_argument("packed bytes: " + std::to_string(bytes) + " given, a " +
                                std::to_string(K) + " x " + std::to_string(N) +
                                " packed matrix has " + std::to_string(want));
  if (reinterpret_cast<std::uintptr_t>(data) % 64 != 0)
    throw std::invalid_argument("packed bytes must be 64-byte aligned");
  std::shared_ptr<PackedMatrix> pm(new PackedMatrix());
  pm->owns_storage_ = false;
  pm->place(type, K, N, static_cast<uint8_t*>(const_cast<void*>(data)));
  pm->finish();
  return pm;
}

void PackedMatrix::finish() {
  symmetric_ = true;
  for (int64_t n = 0; n < N_; ++n) symmetric_ &= col_zero_[n] == 0;
}

std::shared_ptr<PackedMatrix> PackedMatrix::pack(const void* b, ElemType type, int64_t K,
                                                 int64_t N, int64_t stride_k, int64_t stride_n,
                                                 const int32_t* zero_point,
                                                 int64_t zero_point_count) {
  check_b_operand(type, K, N, zero_point, zero_point_count);
  std::shared_ptr<PackedMatrix> pm = allocate(type, K, N);
  pack_panels(b, type, K, N, stride_k, stride_n, zero_point, zero_point_count, pm->KP_, 0,
              pm->NP_ / kPanelCols, pm->panels_, pm->col_zero_, pm->col_corr_, pm->zero_points_, true);
  pm->finish();
  return pm;
}

namespace {

// Quantizes and packs the rows of w panel by panel (64 rows into a per-thread block that stays
// in cache, then packed from there: the int8 weight never exists whole, and each float row is
// read from memory once). row_params(n, row, &scale, &zero) -> finite gives row n's parameters.
template <typename RowParams>
void quantize_pack_rows(const float* w, int64_t N, int64_t K, int64_t ldw,
                        ElemType type, int32_t* zero_points, int8_t* panels, int32_t* col_zero,
                        int32_t* col_corr, int64_t KP, const RowParams& row_params) {
  const KernelTable& k = kernels();
  const int32_t qmin = type == ElemType::uint8 ? 0 : -128, qmax = type == ElemType::uint8 ? 255 : 127;
  const int64_t n_panels = (N + kPanelCols - 1) / kPanelCols;
  std::atomic<bool> finite{true};
  auto task = [&](int64_t panel) {
    const int64_t n0 = panel * kPanelCols, cols = std::min<int64_t>(kPanelCols, N - n0);
    thread_local ScratchBuffer block_buffer;
    auto* block = static_cast<uint8_t*>(block_buffer.reserve(static_cast<size_t>(std::max<int64_t>(cols * K, 1))));
    int32_t zeros[kPanelCols];
    for (int64_t c = 0; c < cols; ++c) {
      const float* row = w + (n0 + c) * ldw;
      float scale;
      if (!row_params(n0 + c, row, &scale, &zeros[c])) {
        finite.store(false, std::memory_order_relaxed);
        zeros[c] = 0;
        std::memset(block + c * K, 0, static_cast<size_t>(K));
        continue;
      }
      const QuantRun params{&scale, &zeros[c], false};
      if (K > 0 && !k.quantize_run(row, K, params, qmin, qmax, block + c * K))
        finite.store(false, std::memory_order_relaxed);
    }
    pack_panels(block, type, K, cols, 1, K, zeros, cols, KP, 0, 1, panels + panel * kPanelCols * KP,
                col_zero + n0, col_corr + n0, zero_points + n0, false);
  };
  const double work = static_cast<double>(N) * std::max<int64_t>(K, 1);
  if (get_num_threads() == 1 || n_panels == 1 || work < 1e6)
    for (int64_t panel = 0; panel < n_panels; ++panel) task(panel);
  else
    parallel_for(n_panels, task);
  if (!finite.load()) throw std::invalid_argument("weight holds NaN or Inf values; they cannot be quantized");
}

}  // namespace

std::shared_ptr<PackedMatrix> PackedMatrix::quantize_pack(const float* w, int64_t N, int64_t K,
                                                          int64_t ldw, const float* scale,
                                                          const int32_t* zero_point, ElemType type) {
  if (N < 0 || K < 0) throw std::invalid_argument("negative dimension");
  if (ldw < K) throw std::invalid_argument("the weight's row stride is below its width");
  if (type == ElemType::int32) throw std::invalid_argument("the packed type must be int8 or uint8");
  const int32_t qmin = type == ElemType::uint8 ? 0 : -128, qmax = type == ElemType::uint8 ? 255 : 127;
  for (int64_t n = 0; n < N; ++n) {
    if (!(std::isfinite(scale[n]) && scale[n] > 0.0f))
      throw std::invalid_argument("scale of output channel " + std::to_string(n) + " must be finite and > 0");
    if (zero_point[n] < qmin || zero_point[n] > qmax)
      throw std::invalid_argument("zero point " + std::to_string(zero_point[n]) + " of output channel " +
                                  std::to_string(n) + " is outside the range of the packed type");
  }
  std::shared_ptr<PackedMatrix> pm = allocate(type, K, N);
  quantize_pack_rows(w, N, K, ldw, type, pm->zero_points_, pm->panels_, pm->col_zero_, pm->col_corr_,
                     pm->KP_, [&](int64_t n, const float*, float* s, int32_t* z) {
                       *s = scale[n];
                       *z = zero_point[n];
                       return true;
                     });
  pm->finish();
  return pm;
}

std::shared_ptr<PackedMatrix> PackedMatrix::quantize_pack_channels(const float* w, int64_t N, int64_t K,
                                                                   int64_t ldw, bool symmetric,
                                                                   float* scale_out, int32_t* zero_out) {
  if (N < 0 || K < 0) throw std::invalid_argument("negative dimension");
  if (ldw < K) throw std::invalid_argument("the weight's row stride is below its width");
  std::shared_ptr<PackedMatrix> pm = allocate(ElemType::int8, K, N);
  const KernelTable& k = kernels();
  // row_ranges' rule for one row (read once: min_max, then quantize_run from the cache).
  quantize_pack_rows(w, N, K, ldw, ElemType::int8, pm->zero_points_, pm->panels_, pm->col_zero_,
                     pm->col_corr_, pm->KP_, [&](int64_t n, const float* row, float* s, int32_t* z) {
                       float mn = 0.0f, mx = 0.0f;
                       if (K > 0 && !k.min_max(row, K, &mn, &mx)) return false;
                       const float lo = std::min(0.0f, mn), hi = std::max(0.0f, mx);
                       range_params(&lo, &hi, 1, QType::int8, symmetric, s, z);
                       scale_out[n] = *s;
                       zero_out[n] = *z;
                       return true;
                     });
  pm->finish();
  return pm;
}

}  // namespace lowbit
