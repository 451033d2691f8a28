// Drivers for the elementwise ONNX primitives: walk the (outer, axis, inner) layout as runs of
// contiguous elements that share one quantization parameter (or carry one per element), and hand
// the runs to the active ISA's kernels, in parallel when the tensor is large. Elementwise work
// has no reductions, so results do not depend on the thread count.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "dispatch/kernel_table.h"
#include "kernels/qparams.h"
#include "lowbit/lowbit.h"
#include "runtime/aligned_buffer.h"
#include "runtime/thread_pool.h"

namespace lowbit {

int32_t qtype_min(QType t) {
  switch (t) {
    case QType::int8: return -128;
    case QType::uint8: return 0;
    case QType::int4: return -8;
    case QType::uint4: return 0;
    case QType::int16: return -32768;
    case QType::uint16: return 0;
  }
  return 0;
}

int32_t qtype_max(QType t) {
  switch (t) {
    case QType::int8: return 127;
    case QType::uint8: return 255;
    case QType::int4: return 7;
    case QType::uint4: return 15;
    case QType::int16: return 32767;
    case QType::uint16: return 65535;
  }
  return 0;
}

int64_t qtype_bytes(QType t) { return t == QType::int16 || t == QType::uint16 ? 2 : 1; }

namespace {

constexpr int64_t kElementsPerTask = 1 << 16;

// One contiguous run of elements: [offset, offset + length) with parameters at param_index.
struct Run {
  int64_t offset, length, param_index;
  bool per_element;
};

void check_view(AxisView v, ScaleMode mode, int64_t block) {
  if (v.outer < 0 || v.axis < 0 || v.inner < 0) throw std::invalid_argument("negative dimension");
  if (mode == ScaleMode::blocked && block <= 0)
    throw std::invalid_argument("block_size must be positive for blocked quantization");
}

// Calls fn(Run) for every run of the layout, spreading runs over the thread pool.
template <typename Fn>
void for_each_run(AxisView v, ScaleMode mode, int64_t block, const Fn& fn) {
  const int64_t total = v.outer * v.axis * v.inner;
  if (total == 0) return;
  int64_t n_runs = 0;
  int64_t run_length = 0;
  // Returns run r of the layout.
  auto run_at = [&](int64_t r) -> Run {
    switch (mode) {
      case ScaleMode::per_tensor: {
        const int64_t off = r * kElementsPerTask;
        return {off, std::min(kElementsPerTask, total - off), 0, false};
      }
      case ScaleMode::per_axis:
        if (v.inner == 1) return {r * v.axis, v.axis, 0, true};
        return {r * v.inner, v.inner, r % v.axis, false};
      case ScaleMode::blocked: {
        const int64_t blocks = ceil_div(v.axis, block);  // block may be as large as INT64_MAX
        if (v.inner == 1) {
          const int64_t o = r / blocks, b = r % blocks;
          return {o * v.axis + b * block, std::min(block, v.axis - b * block), r, false};
        }
        const int64_t o = r / v.axis, d = r % v.axis;
        return {r * v.inner, v.inner, (o * blocks + d / block) * v.inner, true};
      }
    }
    return {0, 0, 0, false};
  };
  switch (mode) {
    case ScaleMode::per_tensor:
      n_runs = (total + kElementsPerTask - 1) / kElementsPerTask;
      run_length = kElementsPerTask;
      break;
    case ScaleMode::per_axis:
      n_runs = v.inner == 1 ? v.outer : v.outer * v.axis;
      run_length = v.inner == 1 ? v.axis : v.inner;
      break;
    case ScaleMode::blocked:
      n_runs = v.inner == 1 ? v.outer * ceil_div(v.axis, block) : v.outer * v.axis;
      run_length = v.inner == 1 ? std::min(block, v.axis) : v.inner;
      break;
  }
  const int64_t runs_per_task = std::max<int64_t>(1, kElementsPerTask / std::max<int64_t>(1, run_length));
  const int64_t n_tasks = (n_runs + runs_per_task - 1) / runs_per_task;
  parallel_for(n_tasks, [&](int64_t t) {
    const int64_t end = std::min(n_runs, (t + 1) * runs_per_task);
    for (int64_t r = t * runs_per_task; r < end; ++r) fn(run_at(r));
  });
}

const char* non_finite_message = "input holds NaN or Inf values; they cannot be quantized";

// The signed type of a type's width (int8 for uint8, int4 for uint4, int16 for uint16).
QType signed_of(QType t) {
  switch (t) {
    case QType::uint8: return QType::int8;
    case QType::uint4: return QType::int4;
    case QType::uint16: return QType::int16;
    default: return t;
  }
}

}  // namespace

void quantize_linear(const float* x, AxisView view, ScaleMode mode, int64_t block_size,
                     const float* scale, const int32_t* zero_point, QType qtype, void* out) {
  check_view(view, mode, block_size);
  const KernelTable& k = kernels();
  const int32_t qmin = qtype_min(qtype), qmax = qtype_max(qtype);
  // 16-bit types have kernels of their own (quantize_run_16: the same float32 formula, 16-bit
  // stores): int16 and uint16 values are the low 16 bits of the clamped int32, as int8/uint8
  // values are its low byte.
  const bool wide = qtype_bytes(qtype) == 2;
  auto* dst = static_cast<uint8_t*>(out);
  auto* dst16 = static_cast<uint16_t*>(out);
  std::atomic<bool> finite{true};
  for_each_run(view, mode, block_size, [&](const Run& r) {
    const QuantRun params{scale + r.param_index, zero_point ? zero_point + r.param_index : nullptr,
                          r.per_element};
    const float* xr = x + r.offset;
    const bool ok = wide ? k.quantize_run_16(xr, r.length, params, qmin, qmax, dst16 + r.offset)
                         : k.quantize_run(xr, r.length, params, qmin, qmax, dst + r.offset);
    if (!ok) finite.store(false, std::memory_order_relaxed);
  });
  if (!finite.load()) throw std::invalid_argument(non_finite_message);
}

void dequantize_linear(const void* q, ElemType qtype, AxisView view, ScaleMode mode,
                       int64_t block_size, const float* scale, const int32_t* zero_point,
                       float* out) {
  check_view(view, mode, block_size);
  const KernelTable& k = kernels();
  const size_t elem = qtype == ElemType::int32                                 ? 4
                      : qtype == ElemType::int16 || qtype == ElemType::uint16 ? 2
                                                                              : 1;
  const auto* src = static_cast<const uint8_t*>(q);
  for_each_run(view, mode, block_size, [&](const Run& r) {
    const QuantRun params{scale + r.param_index, zero_point ? zero_point + r.param_index : nullptr,
                          r.per_element};
    k.dequantize_run(src + r.offset * elem, static_cast<int>(qtype), r.length, params,
                     out + r.offset);
  });
}

void dynamic_quantize_linear(const float* x, int64_t n, uint8_t* out, float* scale,
                             uint8_t* zero_point) {
  if (n < 0) throw std::invalid_argument("negative size");
  const KernelTable& k = kernels();
  const int64_t n_tasks = std::max<int64_t>(1, (n + kElementsPerTask - 1) / kElementsPerTask);
  std::vector<float> lo(n_tasks, 0.0f), hi(n_tasks, 0.0f);
  std::atomic<bool> finite{true};
  parallel_for(n_tasks, [&](int64_t t) {
    const int64_t off = t * kElementsPerTask, len = std::min(kElementsPerTask, n - off);
    if (len > 0 && !k.min_max(x + off, len, &lo[t], &hi[t])) finite.store(false);
  });
  if (!finite.load()) throw std::invalid_argument(non_finite_message);
  const float mn = *std::min_element(lo.begin(), lo.end());
  const float mx = *std::max_element(hi.begin(), hi.end());
  int32_t zero = 0;
  dynamic_u8_params(mn, mx, scale, &zero);
  *zero_point = static_cast<uint8_t>(zero);
  quantize_linear(x, AxisView{1, n, 1}, ScaleMode::per_tensor, 0, scale, &zero, QType::uint8, out);
}

void range_params(const float* lo, const float* hi, int64_t n, QType type, bool symmetric,
                  float* scale, int32_t* zero) {
  if (n < 0) throw std::invalid_argument("negative size");
  const int32_t qmin = qtype_min(type), qmax = qtype_max(type);
  // The symmetric range is the signed type's, less its most negative value (+-127, +-7,
  // +-32767), around the unsigned types' midpoint (128, 8, 32768).
  const float sym_max = static_cast<float>(-(qtype_min(signed_of(type)) + 1));
  const int32_t sym_zero = qmin < 0 ? 0 : (qmax + 1) / 2;
  const auto levels = static_cast<float>(qmax - qmin);
  for (int64_t i = 0; i < n; ++i) {
    float s;
    int32_t z;
    if (symmetric) {
      s = std::max(std::fabs(lo[i]), std::fabs(hi[i])) / sym_max;
      z = sym_zero;
    } else {
      const float l = std::min(lo[i], 0.0f), h = std::max(hi[i], 0.0f);
      s = (h - l) / levels;
      if (!std::isfinite(s)) s = h / levels - l / levels;
      const float safe = s == 0.0f ? 1.0f : s;
      const float zf = std::nearbyint(static_cast<float>(qmin) - l / safe);
      z = static_cast<int32_t>(std::min(std::max(zf, static_cast<float>(qmin)), static_cast<float>(qmax)));
    }
    scale[i] = s == 0.0f ? 1.0f : s;
    zero[i] = z;
  }
}

void row_ranges(const float* x, int64_t rows, int64_t cols, float* lo, float* hi) {
  if (rows < 0 || cols < 0) throw std::invalid_argument("negative dimension");
  const KernelTable& k = kernels();
  std::atomic<bool> finite{true};
  parallel_rows(rows, cols, 65536.0, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float mn = 0.0f, mx = 0.0f;
      if (cols > 0 && !k.min_max(x + r * cols, cols, &mn, &mx)) finite.store(false, std::memory_order_relaxed);
      lo[r] = std::min(0.0f, mn);
      hi[r] = std::max(0.0f, mx);
    }
  });
  if (!finite.load()) throw std::invalid_argument(non_finite_message);
}

void requantize(const int32_t* acc, int64_t rows, int64_t cols, const float* multiplier,
                MultiplierMode mode, int32_t zero_point, QType qtype, void* out) {
  if (rows < 0 || cols < 0) throw std::invalid_argument("negative dimension");
  if (qtype_bytes(qtype) != 1)
    throw std::invalid_argument("requantize outputs int8, uint8, int4 or uint4 (16-bit: none)");
  const int32_t qmin = qtype_min(qtype), qmax = qtype_max(qtype);
  if (zero_point < qmin || zero_point > qmax)
    throw std::invalid_argument("zero_point " + std::to_string(zero_point) +
                                " is outside the output type's range");
  const KernelTable& k = kernels();
  auto* dst = static_cast<uint8_t*>(out);
  const int64_t rows_per_task = std::max<int64_t>(1, kElementsPerTask / std::max<int64_t>(1, cols));
  const int64_t n_tasks = (rows + rows_per_task - 1) / rows_per_task;
  parallel_for(n_tasks, [&](int64_t t) {
    const int64_t end = std::min(rows, (t + 1) * rows_per_task);
    for (int64_t r = t * rows_per_task; r < end; ++r) {
      const float* m = mode == MultiplierMode::elementwise ? multiplier + r * cols : multiplier;
      k.requantize_run(acc + r * cols, cols, m, mode != MultiplierMode::per_tensor, zero_point,
                       qmin, qmax, dst + r * cols);
    }
  });
}

}  // namespace lowbit
