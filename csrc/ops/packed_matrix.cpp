// Packing of the B operand into the ISA-independent panel layout:
//   panel p (64 columns) is KP/4 groups of [64 columns x 4 consecutive k] signed bytes.
// uint8 input is stored as B - 128 and the shift moves into the column zero point, so kernels
// only ever see u8 (A) x s8 (B).
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "dispatch/kernel_table.h"
#include "ops/pack_panels.h"
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

namespace {
constexpr int64_t kPanelCols = PackedMatrix::kPanelCols;
}  // namespace

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
                dst[g * 256 + c * 4 + i] = static_cast<int8_t>(v);
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
                std::memcpy(dst + g * kPanelCols * 4 + 4 * c, &w, 4);
              }
            }
          }
        }
        if (whole * 4 < K)
          for (int64_t c = 0; c < cols; ++c) {
            const uint8_t* src = b8 + (n0 + c) * stride_n;
            uint8_t* out = dst + whole * kPanelCols * 4 + 4 * c;
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
            dst[(k / 4) * kPanelCols * 4 + c * 4 + (k % 4)] = v;
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

std::shared_ptr<PackedMatrix> PackedMatrix::pack(const void* b, ElemType type, int64_t K,
                                                 int64_t N, int64_t stride_k, int64_t stride_n,
                                                 const int32_t* zero_point,
                                                 int64_t zero_point_count) {
  check_b_operand(type, K, N, zero_point, zero_point_count);
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
  auto* base = static_cast<uint8_t*>(pm->storage_);
  pm->panels_ = reinterpret_cast<int8_t*>(base);
  pm->col_zero_ = reinterpret_cast<int32_t*>(base + panel_bytes);
  pm->col_corr_ = reinterpret_cast<int32_t*>(base + panel_bytes + col_bytes);
  pm->zero_points_ = reinterpret_cast<int32_t*>(base + panel_bytes + 2 * col_bytes);
  // Every byte of the panels of whole columns is written below; only the per-column data and
  // the last panel's columns past N need zeros.
  std::memset(base + panel_bytes, 0, pm->storage_bytes_ - static_cast<size_t>(panel_bytes));

  pack_panels(b, type, K, N, stride_k, stride_n, zero_point, zero_point_count, pm->KP_, 0,
              pm->NP_ / kPanelCols, pm->panels_, pm->col_zero_, pm->col_corr_, pm->zero_points_, true);
  pm->symmetric_ = true;
  for (int64_t n = 0; n < N; ++n) pm->symmetric_ &= pm->col_zero_[n] == 0;
  return pm;
}

}  // namespace lowbit
