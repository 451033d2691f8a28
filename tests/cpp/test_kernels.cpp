// C++ kernel tests: every available ISA path against int64 / scalar references, through the
// public API. Prints 'N passed, N failed' and exits non-zero on any failure.
// LOWBIT_ISA=<name> tests only that path (so CI can run each path in its own sanitized process);
// --list-isas prints the paths this CPU offers, one per line, and exits.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "dispatch/kernel_table.h"
#include "lowbit/lowbit.h"

namespace {

int g_passed = 0, g_failed = 0;

void check(bool ok, const std::string& what) {
  if (ok) {
    ++g_passed;
  } else {
    ++g_failed;
    std::printf("FAILED: %s\n", what.c_str());
  }
}

template <typename T>
std::vector<T> random_bytes(std::mt19937& gen, size_t n, int lo, int hi) {
  std::uniform_int_distribution<int> d(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(d(gen));
  return v;
}

// C = (A - za) @ (B - zb) modulo 2^32, A (M,K) uint8/int8, B (K,N).
template <typename TA, typename TB>
void test_matmul(std::mt19937& gen, int64_t M, int64_t K, int64_t N, bool extreme,
                 const std::string& tag) {
  const int alo = std::is_signed<TA>::value ? -128 : 0, ahi = alo + 255;
  const int blo = std::is_signed<TB>::value ? -128 : 0, bhi = blo + 255;
  auto a = extreme ? std::vector<TA>(M * K, static_cast<TA>(ahi)) : random_bytes<TA>(gen, M * K, alo, ahi);
  auto b = extreme ? std::vector<TB>(K * N, static_cast<TB>(blo)) : random_bytes<TB>(gen, K * N, blo, bhi);
  auto za = random_bytes<int32_t>(gen, M, alo, ahi);
  auto zb = random_bytes<int32_t>(gen, N, blo, bhi);
  if (extreme) {
    za.assign(M, 0);
    zb.assign(N, 0);
  }
  const auto at = std::is_signed<TA>::value ? lowbit::ElemType::int8 : lowbit::ElemType::uint8;
  const auto bt = std::is_signed<TB>::value ? lowbit::ElemType::int8 : lowbit::ElemType::uint8;
  auto packed = lowbit::PackedMatrix::pack(b.data(), bt, K, N, N, 1, zb.data(), N);
  std::vector<int32_t> c(M * N, -1);
  lowbit::matmul_integer(a.data(), at, M, K, K, za.data(), M, *packed, c.data(), N);
  bool ok = true;
  for (int64_t m = 0; m < M && ok; ++m)
    for (int64_t n = 0; n < N && ok; ++n) {
      int64_t ref = 0;
      for (int64_t k = 0; k < K; ++k)
        ref += (static_cast<int64_t>(a[m * K + k]) - za[m]) * (static_cast<int64_t>(b[k * N + n]) - zb[n]);
      ok = c[m * N + n] == static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(ref)));
    }
  check(ok, tag + " matmul M=" + std::to_string(M) + " K=" + std::to_string(K) + " N=" +
                std::to_string(N) + (extreme ? " extreme" : ""));
}

// T: the storage (uint8_t for the 8- and 4-bit types, uint16_t for int16 / uint16, each value
// the low bits of the clamped result).
template <typename T>
void test_quantize(std::mt19937& gen, lowbit::QType qt, const std::string& tag) {
  const bool wide = sizeof(T) == 2;
  // Past both ends of the type's range (saturation), many exact .5 ties in between.
  std::normal_distribution<float> d(0.0f, wide ? 30000.0f : 40.0f);
  const int64_t n = 1037;
  std::vector<float> x(n);
  for (auto& v : x) v = std::nearbyint(d(gen)) * 0.5f;
  const float scale = wide ? 0.75f : 1.0f;
  const int32_t zp = lowbit::qtype_min(qt) < 0 ? (wide ? -1234 : 1) : (wide ? 40000 : 7);
  std::vector<T> q(n);
  lowbit::quantize_linear(x.data(), lowbit::AxisView{1, n, 1}, lowbit::ScaleMode::per_tensor, 0,
                          &scale, &zp, qt, q.data());
  bool ok = true;
  for (int64_t i = 0; i < n && ok; ++i) {
    float v = std::nearbyint(x[i] / scale) + static_cast<float>(zp);
    v = std::fmin(std::fmax(v, static_cast<float>(lowbit::qtype_min(qt))),
                  static_cast<float>(lowbit::qtype_max(qt)));
    ok = q[i] == static_cast<T>(static_cast<int32_t>(v));
  }
  check(ok, tag + " quantize qtype=" + std::to_string(static_cast<int>(qt)));
}

void test_linear_matches_scalar(std::mt19937& gen, lowbit::Isa isa, const std::string& tag) {
  const int64_t M = 7, K = 129, N = 77;
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> x(M * K), scale(N), bias(N), y(M * N), y_ref(M * N);
  for (auto& v : x) v = d(gen);
  for (auto& v : scale) v = 0.01f + std::fabs(d(gen)) * 0.01f;
  for (auto& v : bias) v = d(gen);
  auto w = random_bytes<int8_t>(gen, N * K, -127, 127);
  auto packed = lowbit::PackedMatrix::pack(w.data(), lowbit::ElemType::int8, K, N, 1, K, nullptr, 0);
  lowbit::set_active_isa(lowbit::Isa::scalar);
  lowbit::linear(x.data(), M, K, *packed, scale.data(), bias.data(), y_ref.data(), N);
  lowbit::set_active_isa(isa);
  lowbit::linear(x.data(), M, K, *packed, scale.data(), bias.data(), y.data(), N);
  bool ok = true;
  for (int64_t i = 0; i < M * N; ++i) ok &= std::memcmp(&y[i], &y_ref[i], sizeof(float)) == 0;
  check(ok, tag + " linear bit-identical to scalar");
}

// The static-activation linear against its contract computed here in int64 and std::fma:
// q = saturate(round_half_even(x / s) + z), acc = (q - z) . (w - zw), y = fma(acc, s * sw, b).
void test_linear_static_contract(std::mt19937& gen, lowbit::Isa isa, const std::string& tag) {
  const int64_t M = 30, K = 131, N = 70;  // M and K odd-sized so row tails and padding run
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> x(M * K), scale(N), bias(N), y(M * N), want(M * N);
  for (auto& v : x) v = 3.0f * d(gen);  // a tail beyond the range saturates
  for (auto& v : scale) v = 0.01f + std::fabs(d(gen)) * 0.01f;
  for (auto& v : bias) v = d(gen);
  auto w = random_bytes<int8_t>(gen, N * K, -128, 127);
  auto wz = random_bytes<int32_t>(gen, N, -128, 127);
  lowbit::set_active_isa(isa);
  bool ok = true;
  for (bool asymmetric : {false, true}) {
    auto packed = lowbit::PackedMatrix::pack(w.data(), lowbit::ElemType::int8, K, N, 1, K,
                                             asymmetric ? wz.data() : nullptr, asymmetric ? N : 0);
    for (lowbit::QType qt : {lowbit::QType::uint8, lowbit::QType::int8}) {
      const float s = 0.021f;
      const int32_t z = qt == lowbit::QType::uint8 ? 131 : -7;
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
          int64_t acc = 0;
          for (int64_t k = 0; k < K; ++k) {
            float r = std::nearbyint(x[m * K + k] / s) + static_cast<float>(z);
            r = std::fmin(std::fmax(r, static_cast<float>(lowbit::qtype_min(qt))),
                          static_cast<float>(lowbit::qtype_max(qt)));
            acc += (static_cast<int64_t>(r) - z) * (w[n * K + k] - (asymmetric ? wz[n] : 0));
          }
          want[m * N + n] = std::fma(static_cast<float>(acc), s * scale[n], bias[n]);
        }
      lowbit::linear_static(x.data(), M, K, *packed, s, z, qt, scale.data(), bias.data(), y.data(), N);
      for (int64_t i = 0; i < M * N; ++i) ok &= std::memcmp(&y[i], &want[i], sizeof(float)) == 0;
    }
  }
  check(ok, tag + " linear_static matches its contract");
  bool refused = false;
  try {
    auto packed = lowbit::PackedMatrix::pack(w.data(), lowbit::ElemType::int8, K, N, 1, K, nullptr, 0);
    x[5] = std::numeric_limits<float>::quiet_NaN();
    lowbit::linear_static(x.data(), M, K, *packed, 0.02f, 0, lowbit::QType::uint8, scale.data(),
                          nullptr, y.data(), N);
  } catch (const std::invalid_argument&) {
    refused = true;
  }
  check(refused, tag + " linear_static refuses NaN input");
}

// The weight-only int8 linear against its contract computed here with std::fma, k in order:
// s = fma(x[k], float(w - zw), s); y = fma(s, scale, bias). uint8 and int8 weights, with and
// without zero points, K not a multiple of 4, partial panels, strided rows, 1 and 3 threads.
void test_linear_weight_only_contract(std::mt19937& gen, lowbit::Isa isa, const std::string& tag) {
  const int64_t K = 263, N = 150, ldx = K + 5;
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> x(120 * ldx), scale(N), bias(N);
  for (auto& v : x) v = d(gen);
  for (auto& v : scale) v = 0.01f + std::fabs(d(gen)) * 0.01f;
  for (auto& v : bias) v = d(gen);
  auto w = random_bytes<uint8_t>(gen, N * K, 0, 255);
  auto wz = random_bytes<int32_t>(gen, N, 0, 255);
  lowbit::set_active_isa(isa);
  bool ok = true;
  for (lowbit::ElemType type : {lowbit::ElemType::int8, lowbit::ElemType::uint8})
    for (bool with_zero : {false, true}) {
      std::vector<int32_t> zero(N, 0);
      for (int64_t n = 0; n < N; ++n)
        zero[n] = with_zero ? (type == lowbit::ElemType::int8 ? wz[n] - 128 : wz[n])
                            : (type == lowbit::ElemType::uint8 ? 128 : 0);
      auto packed = lowbit::PackedMatrix::pack(w.data(), type, K, N, 1, K, zero.data(), N);
      for (int threads : {1, 3}) {
        lowbit::set_num_threads(threads);
        for (int64_t M : {1, 2, 3, 4, 5, 9, 120}) {  // 120: large enough to run in parallel
          std::vector<float> y(M * N, -1.0f);
          lowbit::linear_weight_only(x.data(), M, ldx, *packed, scale.data(),
                                     with_zero ? bias.data() : nullptr, y.data(), N);
          for (int64_t m = 0; m < M; ++m)
            for (int64_t n = 0; n < N; ++n) {
              float acc = 0.0f;
              for (int64_t k = 0; k < K; ++k) {
                const int32_t v = type == lowbit::ElemType::int8 ? static_cast<int8_t>(w[n * K + k])
                                                                 : static_cast<int32_t>(w[n * K + k]);
                acc = std::fma(x[m * ldx + k], static_cast<float>(v - zero[n]), acc);
              }
              const float want = std::fma(acc, scale[n], with_zero ? bias[n] : 0.0f);
              ok &= std::memcmp(&want, &y[m * N + n], sizeof(float)) == 0;
            }
        }
      }
    }
  lowbit::set_num_threads(lowbit::default_num_threads());
  check(ok, tag + " linear_weight_only matches its contract");
}

// 16-bit float weights, widened here independently of the kernels' helpers.
float half_value(uint16_t h, lowbit::HalfType type) {
  if (type == lowbit::HalfType::bfloat16) {
    const uint32_t u = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
  }
  const int exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  const float mag = exp == 0 ? std::ldexp(static_cast<float>(man), -24)
                             : std::ldexp(static_cast<float>(man + 1024), exp - 25);
  return (h & 0x8000) ? -mag : mag;
}

// linear_half's contract on every path, bit for bit: s = 0; s = fma(x[k], float(w[n, k]), s) in
// k order; y = s + bias (or s). Random finite patterns (subnormals included), K odd and even (the
// bfloat16 k pairs), K past the blocked kernels' depth, row counts on both sides of the blocked
// form, partial panels, strided x rows, 1 and 3 threads; pack / unpack round trips.
void test_linear_half_contract(std::mt19937& gen, lowbit::Isa isa, const std::string& tag) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::uniform_int_distribution<int> bits(0, 0xffff), expo(-20, 20);
  lowbit::set_active_isa(isa);
  for (lowbit::HalfType type : {lowbit::HalfType::float16, lowbit::HalfType::bfloat16}) {
    const bool bf16 = type == lowbit::HalfType::bfloat16;
    const std::string name = tag + (bf16 ? " wbf16f32" : " wf16f32");
    bool ok = true, round_trip = true;
    for (int64_t K : {1, 2, 3, 64, 129, 300})
      for (int64_t N : {1, 17, 65, 150}) {
        std::vector<uint16_t> w(N * K);
        for (auto& v : w) {
          if (bf16) {  // finite, magnitudes 2^-20 .. 2^20 plus some subnormals and zeros
            const int r = bits(gen);
            const float f = r % 16 == 0 ? std::ldexp(static_cast<float>(r), -140)
                                        : std::ldexp(d(gen), expo(gen));
            uint32_t u;
            std::memcpy(&u, &f, sizeof u);
            v = static_cast<uint16_t>(u >> 16);
          } else {
            do v = static_cast<uint16_t>(bits(gen)); while ((v & 0x7c00) == 0x7c00);
          }
        }
        auto packed = lowbit::PackedHalfMatrix::pack_bits(w.data(), N, K, K, type);
        std::vector<uint16_t> back(N * K);
        packed->unpack(back.data());
        round_trip &= back == w;
        const int64_t ldx = K + 3;
        std::vector<float> x(50 * ldx), bias(N);
        for (auto& v : x) v = bf16 ? d(gen) : d(gen) * 1e-3f;
        for (auto& v : bias) v = d(gen);
        for (int threads : {1, 3}) {
          lowbit::set_num_threads(threads);
          for (int64_t M : {1, 3, 4, 7, 8, 13, 50})
            for (bool with_bias : {false, true}) {
              std::vector<float> y(M * N, -1.0f);
              lowbit::linear_half(x.data(), M, ldx, *packed, with_bias ? bias.data() : nullptr,
                                  y.data(), N);
              for (int64_t m = 0; m < M; ++m)
                for (int64_t n = 0; n < N; ++n) {
                  float s = 0.0f;
                  for (int64_t k = 0; k < K; ++k) s = std::fma(x[m * ldx + k], half_value(w[n * K + k], type), s);
                  const float want = with_bias ? s + bias[n] : s;
                  ok &= std::memcmp(&want, &y[m * N + n], sizeof(float)) == 0;
                }
            }
        }
      }
    lowbit::set_num_threads(lowbit::default_num_threads());
    check(round_trip, name + " pack_bits / unpack round trip");
    check(ok, name + " linear_half matches its contract");
  }
}

// float32 -> 16-bit rounding of pack_float: every float16 / bfloat16 pattern and the halfway
// point above each (ties to even), against the reference widening; overflow and NaN refused.
void test_half_rounding(const std::string& tag) {
  for (lowbit::HalfType type : {lowbit::HalfType::float16, lowbit::HalfType::bfloat16}) {
    const bool bf16 = type == lowbit::HalfType::bfloat16;
    const uint16_t exp_mask = bf16 ? 0x7f80 : 0x7c00;
    std::vector<float> w;
    std::vector<uint16_t> want;
    for (uint32_t h = 0; h < 0x10000; ++h) {
      const auto hv = static_cast<uint16_t>(h);
      if ((hv & exp_mask) == exp_mask) continue;
      const float v = half_value(hv, type);
      w.push_back(v);
      want.push_back(hv);
      const uint16_t up = static_cast<uint16_t>(hv + 1);   // the next pattern of the same sign
      if ((up & exp_mask) == exp_mask || (up & 0x7fff) == 0) continue;
      const double mid = 0.5 * (static_cast<double>(v) + static_cast<double>(half_value(up, type)));
      const float fm = static_cast<float>(mid);
      if (static_cast<double>(fm) != mid) continue;   // not representable: no tie to test
      w.push_back(fm);
      want.push_back((hv & 1) ? up : hv);   // ties to the even pattern
    }
    const auto n = static_cast<int64_t>(w.size());
    auto packed = lowbit::PackedHalfMatrix::pack_float(w.data(), 1, n, n, type);
    std::vector<uint16_t> got(n);
    packed->unpack(got.data());
    check(got == want, tag + (bf16 ? " bfloat16" : " float16") + " rounding of every value and tie");
    bool refused = true;
    for (float bad : {bf16 ? 3.4028235e38f : 65520.0f, std::numeric_limits<float>::quiet_NaN(),
                      -std::numeric_limits<float>::infinity()}) {
      try {
        lowbit::PackedHalfMatrix::pack_float(&bad, 1, 1, 1, type);
        refused = false;
      } catch (const std::invalid_argument&) {
      }
    }
    const float largest = bf16 ? 3.3895313892515355e38f : 65519.0f;   // still rounds down
    auto fine = lowbit::PackedHalfMatrix::pack_float(&largest, 1, 1, 1, type);
    check(refused && fine->nbytes() > 0, tag + (bf16 ? " bfloat16" : " float16") + " overflow and NaN refused");
  }
}

// Every elementwise kernel of an ISA against the scalar path, byte for byte (odd lengths so
// the vector tails run too), and NaN/Inf detection.
void test_elementwise_matches_scalar(std::mt19937& gen, lowbit::Isa isa, const std::string& tag) {
  const int64_t rows = 3, cols = 1029, n = rows * cols;
  std::normal_distribution<float> d(0.0f, 30.0f);
  std::vector<float> x(n), scale(cols);
  for (auto& v : x) v = std::nearbyint(d(gen) * 4.0f) / 8.0f;  // many exact ties
  for (auto& v : scale) v = 0.25f + std::fabs(d(gen)) / 64.0f;
  auto zp = random_bytes<int32_t>(gen, cols, -20, 20);
  auto run = [&](lowbit::Isa which, auto&& fn) {
    lowbit::set_active_isa(which);
    return fn();
  };
  auto both = [&](auto&& fn) { return std::make_pair(run(lowbit::Isa::scalar, fn), run(isa, fn)); };
  bool ok = true;
  for (auto qt : {lowbit::QType::int8, lowbit::QType::uint8, lowbit::QType::int4}) {
    auto r = both([&] {
      std::vector<uint8_t> q(n);
      lowbit::quantize_linear(x.data(), lowbit::AxisView{rows, cols, 1}, lowbit::ScaleMode::per_axis,
                              0, scale.data(), qt == lowbit::QType::uint8 ? nullptr : zp.data(), qt,
                              q.data());
      return q;
    });
    ok &= r.first == r.second;
  }
  // The 16-bit stores: data reaching past both ends of int16 / uint16 (ties included), zero
  // points across each type's range, per element (per_axis) and broadcast (per_tensor) runs.
  std::vector<float> x16(n);
  for (auto& v : x16) v = std::nearbyint(d(gen) * 4096.0f) / 8.0f;
  for (auto qt : {lowbit::QType::int16, lowbit::QType::uint16}) {
    auto zp16 = random_bytes<int32_t>(gen, cols, lowbit::qtype_min(qt), lowbit::qtype_max(qt));
    for (auto mode : {lowbit::ScaleMode::per_axis, lowbit::ScaleMode::per_tensor}) {
      auto r = both([&] {
        std::vector<uint16_t> q(n);
        lowbit::quantize_linear(x16.data(), lowbit::AxisView{rows, cols, 1}, mode, 0, scale.data(),
                                zp16.data(), qt, q.data());
        return q;
      });
      ok &= r.first == r.second;
    }
  }
  auto q8 = random_bytes<int8_t>(gen, n, -128, 127);
  auto q16 = random_bytes<int16_t>(gen, n, -32768, 32767);   // also read as uint16
  auto zp16 = random_bytes<int32_t>(gen, cols, -32768, 65535);
  auto acc = random_bytes<int32_t>(gen, n, -3000000, 3000000);
  for (auto type : {lowbit::ElemType::int8, lowbit::ElemType::uint8, lowbit::ElemType::int32,
                    lowbit::ElemType::int16, lowbit::ElemType::uint16}) {
    const bool sixteen = type == lowbit::ElemType::int16 || type == lowbit::ElemType::uint16;
    const void* src = type == lowbit::ElemType::int32 ? static_cast<const void*>(acc.data())
                      : sixteen                       ? static_cast<const void*>(q16.data())
                                                      : static_cast<const void*>(q8.data());
    const int32_t* zero = type == lowbit::ElemType::int32 ? nullptr
                          : sixteen                       ? zp16.data()
                                                          : zp.data();
    auto r = both([&] {
      std::vector<float> out(n);
      lowbit::dequantize_linear(src, type, lowbit::AxisView{rows, cols, 1}, lowbit::ScaleMode::per_axis,
                                0, scale.data(), zero, out.data());
      return out;
    });
    ok &= std::memcmp(r.first.data(), r.second.data(), n * sizeof(float)) == 0;
  }
  std::vector<float> mult(cols);
  for (auto& v : mult) v = std::fabs(d(gen)) / 4096.0f;
  for (auto mode : {lowbit::MultiplierMode::per_tensor, lowbit::MultiplierMode::per_column}) {
    auto r = both([&] {
      std::vector<uint8_t> out(n);
      lowbit::requantize(acc.data(), rows, cols, mult.data(), mode, 3, lowbit::QType::int8, out.data());
      return out;
    });
    ok &= r.first == r.second;
  }
  auto r = both([&] {
    std::vector<uint8_t> out(n);
    float s = 0.0f;
    uint8_t z = 0;
    lowbit::dynamic_quantize_linear(x.data(), n, out.data(), &s, &z);
    out.push_back(z);
    uint32_t bits;
    std::memcpy(&bits, &s, sizeof(bits));
    for (int t = 0; t < 4; ++t) out.push_back(static_cast<uint8_t>(bits >> (8 * t)));
    return out;
  });
  ok &= r.first == r.second;
  check(ok, tag + " elementwise kernels bit-identical to scalar");
  for (int64_t bad : {int64_t{0}, int64_t{5}, n - 1}) {
    std::vector<float> y = x;
    y[bad] = bad == 5 ? INFINITY : NAN;
    lowbit::set_active_isa(isa);
    bool threw = false;
    std::vector<uint8_t> out(n);
    float s;
    uint8_t z;
    try {
      lowbit::dynamic_quantize_linear(y.data(), n, out.data(), &s, &z);
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    check(threw, tag + " NaN/Inf at " + std::to_string(bad) + " rejected");
    threw = false;
    std::vector<uint16_t> out16(n);
    try {
      lowbit::quantize_linear(y.data(), lowbit::AxisView{1, n, 1}, lowbit::ScaleMode::per_tensor, 0,
                              scale.data(), nullptr, lowbit::QType::int16, out16.data());
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    check(threw, tag + " NaN/Inf at " + std::to_string(bad) + " rejected by the 16-bit kernel");
  }
}

// 4-bit linear: the scalar path against an independent float64 reference built from the
// unpacked definition, and every ISA bit-identical to scalar.
struct Int4Case {
  int64_t M, K, N, group;
  bool symmetric;
};

void test_linear_int4(std::mt19937& gen, lowbit::Isa isa, const Int4Case& c, const std::string& tag) {
  const int64_t G = (c.K + c.group - 1) / c.group;
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> x(c.M * c.K), scale(c.N * G), bias(c.N);
  for (auto& v : x) v = d(gen);
  for (auto& v : scale) v = 0.01f + std::fabs(d(gen)) * 0.02f;
  for (auto& v : bias) v = d(gen);
  auto u = random_bytes<uint8_t>(gen, c.N * c.K, 0, 15);
  auto zero = random_bytes<uint8_t>(gen, c.N * G, 0, 15);
  auto packed = lowbit::PackedInt4Matrix::pack(u.data(), c.N, c.K, c.group, scale.data(),
                                               c.symmetric ? nullptr : zero.data());
  std::vector<uint8_t> back(c.N * c.K);
  packed->unpack(back.data());
  check(back == u, tag + " int4 unpack round trip");
  const std::string shape = " M=" + std::to_string(c.M) + " K=" + std::to_string(c.K) + " N=" +
                            std::to_string(c.N) + " g=" + std::to_string(c.group) +
                            (c.symmetric ? " sym" : " asym");
  for (auto mode : {lowbit::Int4Compute::w4a8, lowbit::Int4Compute::weight_only}) {
    const std::string name = tag + (mode == lowbit::Int4Compute::w4a8 ? " w4a8" : " weight_only") + shape;
    std::vector<float> y(c.M * c.N, -1.0f), y_ref(c.M * c.N, -2.0f);
    lowbit::set_active_isa(lowbit::Isa::scalar);
    lowbit::linear_int4(x.data(), c.M, c.K, *packed, mode, bias.data(), y_ref.data(), c.N);
    lowbit::set_active_isa(isa);
    lowbit::linear_int4(x.data(), c.M, c.K, *packed, mode, bias.data(), y.data(), c.N);
    bool same = true;
    for (int64_t i = 0; i < c.M * c.N; ++i) same &= std::memcmp(&y[i], &y_ref[i], sizeof(float)) == 0;
    check(same, name + " bit-identical to scalar");
    // float64 reference: weight_only on the dequantized weight; w4a8 with the activations
    // quantized as the contract says (symmetric int8 per row), exact integer group sums.
    bool close = true;
    for (int64_t m = 0; m < c.M && close; ++m) {
      float amax = 0.0f;
      for (int64_t k = 0; k < c.K; ++k) amax = std::fmax(amax, std::fabs(x[m * c.K + k]));
      float sa = amax / 127.0f;
      if (sa == 0.0f) sa = 1.0f;
      for (int64_t n = 0; n < c.N && close; ++n) {
        double ref = 0.0, mag = 0.0;
        for (int64_t g = 0; g < G; ++g) {
          const int32_t zw = c.symmetric ? 8 : zero[n * G + g];
          double group_sum = 0.0, group_mag = 0.0;
          for (int64_t k = g * c.group; k < std::min(c.K, (g + 1) * c.group); ++k) {
            const double w = static_cast<double>(u[n * c.K + k]) - zw;
            double a = x[m * c.K + k];
            if (mode == lowbit::Int4Compute::w4a8)
              a = std::fmin(std::fmax(std::nearbyint(x[m * c.K + k] / sa), -127.0f), 127.0f);
            group_sum += a * w;
            group_mag += std::fabs(a * w);
          }
          ref += group_sum * scale[n * G + g];
          mag += group_mag * scale[n * G + g];
        }
        if (mode == lowbit::Int4Compute::w4a8) {
          ref *= sa;
          mag *= sa;
        }
        ref += bias[n];
        mag += std::fabs(bias[n]);
        close = std::fabs(y[m * c.N + n] - ref) <= 1e-5 * mag + 1e-30;
      }
    }
    check(close, name + " matches the float64 reference");
  }
}

// The edge matrix of the blocked kernels (AMX: 32/16-row blocks, 64-deep chunks, 32-column
// halves; VNNI: 6-row tiles): M, K, N off every multiple, every uint8 zero point of A (one per
// row), K at the exactness bound of linear(), on this thread count.
void test_gemm_edges(std::mt19937& gen, lowbit::Isa isa, const std::string& tag) {
  for (int64_t M : {16, 31, 33, 64, 97})
    for (int64_t K : {64, 65, 124, 131, 260})
      for (int64_t N : {17, 64, 97}) test_matmul<uint8_t, int8_t>(gen, M, K, N, false, tag);
  test_matmul<int8_t, uint8_t>(gen, 40, 192, 70, false, tag);
  test_matmul<uint8_t, int8_t>(gen, 48, 4100, 33, true, tag);  // 255 * -128, a K tail
  {  // A's zero point takes every uint8 value, one per row
    const int64_t M = 256, K = 131, N = 65;
    auto a = random_bytes<uint8_t>(gen, M * K, 0, 255);
    auto b = random_bytes<int8_t>(gen, K * N, -128, 127);
    std::vector<int32_t> za(M);
    for (int64_t m = 0; m < M; ++m) za[m] = static_cast<int32_t>(m);
    auto packed = lowbit::PackedMatrix::pack(b.data(), lowbit::ElemType::int8, K, N, N, 1, nullptr, 0);
    std::vector<int32_t> c(M * N);
    lowbit::matmul_integer(a.data(), lowbit::ElemType::uint8, M, K, K, za.data(), M, *packed, c.data(), N);
    bool ok = true;
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        int64_t ref = 0;
        for (int64_t k = 0; k < K; ++k) ref += (a[m * K + k] - za[m]) * static_cast<int64_t>(b[k * N + n]);
        ok &= c[m * N + n] == static_cast<int32_t>(ref);
      }
    check(ok, tag + " matmul with every uint8 zero point");
  }
  // linear() (float epilogue) over the same blocks, bit for bit against the scalar path, with
  // K at the largest exact depth for symmetric weights.
  for (auto [M, K, N] : {std::tuple<int64_t, int64_t, int64_t>{50, 131, 77}, {64, 512, 64}, {33, 1000, 130},
                         {17, lowbit::kLinearMaxDepth, 20}}) {
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<float> x(M * K), scale(N), bias(N), y(M * N), y_ref(M * N);
    for (auto& v : x) v = d(gen);
    for (auto& v : scale) v = 0.01f + std::fabs(d(gen)) * 0.01f;
    for (auto& v : bias) v = d(gen);
    auto w = random_bytes<int8_t>(gen, N * K, -127, 127);
    auto zw = random_bytes<int32_t>(gen, N, -20, 20);
    for (bool asym : {false, true}) {
      if (asym && K > lowbit::kLinearMaxDepthAsymmetric) continue;
      auto packed = lowbit::PackedMatrix::pack(w.data(), lowbit::ElemType::int8, K, N, 1, K,
                                               asym ? zw.data() : nullptr, asym ? N : 0);
      lowbit::set_active_isa(lowbit::Isa::scalar);
      lowbit::linear(x.data(), M, K, *packed, scale.data(), bias.data(), y_ref.data(), N);
      lowbit::set_active_isa(isa);
      lowbit::linear(x.data(), M, K, *packed, scale.data(), bias.data(), y.data(), N);
      check(std::memcmp(y.data(), y_ref.data(), y.size() * sizeof(float)) == 0,
            tag + " linear M=" + std::to_string(M) + " K=" + std::to_string(K) + " N=" + std::to_string(N) +
                (asym ? " asymmetric" : "") + " bit-identical to scalar");
    }
  }
}

// The plain-B kernel's edges (rows up to and past its row limit, K and N not multiples of 4,
// 16 or 64, int8 and uint8 A and B, zero points, extreme values) against int64: every shape a
// small-M matmul_integer on a plain B can take goes through it on the paths that have it.
void test_matmul_plain_b_edges(std::mt19937& gen, const std::string& tag) {
  // 12 is the AVX-512 plain-B kernel's row limit (kernel_table.cpp), 13 the first packed M.
  for (int64_t M : {1, 2, 5, 12, 13})
    for (auto [K, N] : {std::pair<int64_t, int64_t>{1, 1}, {3, 17}, {5, 64}, {63, 65}, {64, 130},
                        {257, 300}, {1027, 63}})
      for (auto at : {lowbit::ElemType::uint8, lowbit::ElemType::int8})
        for (auto bt : {lowbit::ElemType::int8, lowbit::ElemType::uint8})
          for (int variant = 0; variant < 2; ++variant) {  // 1: extreme values, zero points 0
            const int64_t ldb = N + (variant == 0 ? 5 : 0);
            const int alo = at == lowbit::ElemType::int8 ? -128 : 0;
            const int blo = bt == lowbit::ElemType::int8 ? -128 : 0;
            auto a = random_bytes<uint8_t>(gen, M * K, 0, 255);
            auto b = random_bytes<uint8_t>(gen, K * ldb, 0, 255);
            if (variant == 1) {  // |a - za| * |b - zb| at its largest everywhere
              std::fill(a.begin(), a.end(), static_cast<uint8_t>(at == lowbit::ElemType::int8 ? 0x80 : 255));
              std::fill(b.begin(), b.end(), static_cast<uint8_t>(bt == lowbit::ElemType::int8 ? 0x80 : 0));
            }
            auto za = random_bytes<int32_t>(gen, M, alo, alo + 255);
            auto zb = random_bytes<int32_t>(gen, N, blo, blo + 255);
            const int64_t zan = variant == 1 ? 0 : M, zbn = variant == 1 ? 0 : N;
            std::vector<int32_t> c(M * N, -7);
            lowbit::matmul_integer_unpacked(a.data(), at, M, K, K, za.data(), zan, b.data(), bt, N, ldb,
                                            zb.data(), zbn, c.data(), N);
            bool ok = true;
            for (int64_t m = 0; m < M && ok; ++m)
              for (int64_t n = 0; n < N && ok; ++n) {
                int64_t ref = 0;
                const int64_t z_a = zan == 0 ? 0 : za[m], z_b = zbn == 0 ? 0 : zb[n];
                for (int64_t kk = 0; kk < K; ++kk) {
                  const int64_t av = at == lowbit::ElemType::int8 ? static_cast<int8_t>(a[m * K + kk]) : a[m * K + kk];
                  const int64_t bv = bt == lowbit::ElemType::int8 ? static_cast<int8_t>(b[kk * ldb + n]) : b[kk * ldb + n];
                  ref += (av - z_a) * (bv - z_b);
                }
                ok = c[m * N + n] == static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(ref)));
              }
            check(ok, tag + " plain-B matmul_integer M=" + std::to_string(M) + " K=" + std::to_string(K) +
                          " N=" + std::to_string(N) + (at == lowbit::ElemType::uint8 ? " A uint8" : " A int8") +
                          (bt == lowbit::ElemType::uint8 ? " B uint8" : " B int8") +
                          (variant == 1 ? " extremes" : " zero points"));
          }
}

// matmul_integer on an unpacked B (row stride ldb > N here) against int64, per-column and
// per-tensor zero points, int8 and uint8 B, rows below and above kUnpackedMaxRows.
void test_matmul_unpacked(std::mt19937& gen, const std::string& tag) {
  for (auto [M, K, N] : {std::tuple<int64_t, int64_t, int64_t>{1, 4096, 300}, {3, 131, 129}, {17, 64, 64},
                         {64, 260, 130}, {65, 100, 70}, {100, 33, 200}}) {
    for (auto bt : {lowbit::ElemType::int8, lowbit::ElemType::uint8})
      for (int zcount : {0, 1, -1}) {
        const int64_t ldb = N + 3;
        const int blo = bt == lowbit::ElemType::int8 ? -128 : 0;
        auto a = random_bytes<uint8_t>(gen, M * K, 0, 255);
        auto b = random_bytes<uint8_t>(gen, K * ldb, 0, 255);
        auto za = random_bytes<int32_t>(gen, M, 0, 255);
        auto zb = random_bytes<int32_t>(gen, N, blo, blo + 255);
        const int64_t zn = zcount == -1 ? N : zcount;
        std::vector<int32_t> c(M * N, -7);
        lowbit::matmul_integer_unpacked(a.data(), lowbit::ElemType::uint8, M, K, K, za.data(), M, b.data(), bt, N,
                                        ldb, zb.data(), zn, c.data(), N);
        bool ok = true;
        for (int64_t m = 0; m < M && ok; ++m)
          for (int64_t n = 0; n < N && ok; ++n) {
            int64_t ref = 0;
            const int64_t z = zn == 0 ? 0 : zb[zn == 1 ? 0 : n];
            for (int64_t kk = 0; kk < K; ++kk) {
              const int64_t bv = bt == lowbit::ElemType::int8 ? static_cast<int8_t>(b[kk * ldb + n]) : b[kk * ldb + n];
              ref += (a[m * K + kk] - za[m]) * (bv - z);
            }
            ok = c[m * N + n] == static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(ref)));
          }
        check(ok, tag + " matmul_integer_unpacked M=" + std::to_string(M) + " K=" + std::to_string(K) +
                      " N=" + std::to_string(N) + (bt == lowbit::ElemType::uint8 ? " uint8" : " int8") +
                      " zero points " + std::to_string(zn));
      }
  }
}

// Packing on this path gives the scalar path's bytes, both layouts (B row-major and a weight's
// transpose), whole and partial panels, K tails, int8 and uint8.
void test_pack_matches_scalar(std::mt19937& gen, lowbit::Isa isa, const std::string& tag) {
  for (auto [K, N] : {std::pair<int64_t, int64_t>{1, 64}, {7, 64}, {64, 128}, {131, 200}, {1000, 64}, {4096, 65}}) {
    auto b = random_bytes<uint8_t>(gen, K * N, 0, 255);
    auto zb = random_bytes<int32_t>(gen, N, 0, 127);
    for (auto type : {lowbit::ElemType::int8, lowbit::ElemType::uint8})
      for (bool transposed : {false, true}) {
        const int64_t sk = transposed ? 1 : N, sn = transposed ? K : 1;
        lowbit::set_active_isa(lowbit::Isa::scalar);
        auto want = lowbit::PackedMatrix::pack(b.data(), type, K, N, sk, sn, zb.data(), N);
        lowbit::set_active_isa(isa);
        auto got = lowbit::PackedMatrix::pack(b.data(), type, K, N, sk, sn, zb.data(), N);
        const size_t panel_bytes = static_cast<size_t>(want->padded_depth() * want->padded_cols());
        const bool same = std::memcmp(want->panels(), got->panels(), panel_bytes) == 0 &&
                          std::memcmp(want->col_corr(), got->col_corr(), want->padded_cols() * 4) == 0 &&
                          std::memcmp(want->col_zero(), got->col_zero(), want->padded_cols() * 4) == 0;
        check(same, tag + " pack K=" + std::to_string(K) + " N=" + std::to_string(N) +
                        (type == lowbit::ElemType::uint8 ? " uint8" : " int8") +
                        (transposed ? " transposed" : "") + " matches scalar");
      }
  }
}

// The block transposes (conv's NCHW <-> NHWC) move every element to its place: whole tiles,
// ragged edges in both directions, source and destination strides wider than the block.
void test_transposes(std::mt19937& gen, lowbit::Isa isa, const std::string& tag) {
  const lowbit::KernelTable& k = lowbit::kernels_for(isa);
  for (int64_t rows : {1, 7, 8, 15, 16, 17, 63, 64, 65, 130})
    for (int64_t cols : {1, 8, 9, 16, 31, 144, 150}) {
      const int64_t ld_src = cols + 3, ld_dst = rows + 5;
      auto s8 = random_bytes<uint8_t>(gen, rows * ld_src, 0, 255);
      std::vector<uint8_t> d8(static_cast<size_t>(cols * ld_dst), 7), w8 = d8;
      std::vector<uint32_t> s32(s8.size()), d32(d8.size(), 7u), w32(d8.size(), 7u);
      for (size_t i = 0; i < s8.size(); ++i) s32[i] = static_cast<uint32_t>(gen());
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) {
          w8[c * ld_dst + r] = s8[r * ld_src + c];
          w32[c * ld_dst + r] = s32[r * ld_src + c];
        }
      k.transpose8(s8.data(), ld_src, rows, cols, d8.data(), ld_dst);
      k.transpose32(s32.data(), ld_src, rows, cols, d32.data(), ld_dst);
      const std::string shape = " " + std::to_string(rows) + "x" + std::to_string(cols);
      check(d8 == w8, tag + " transpose8" + shape);
      check(d32 == w32, tag + " transpose32" + shape);
    }
}

std::vector<lowbit::Isa> isas_under_test() {
  const char* env = std::getenv("LOWBIT_ISA");
  if (env != nullptr && *env != '\0') return {lowbit::active_isa()};  // throws if unsupported
  return lowbit::available_isas();
}

}  // namespace

// conv_integer against an int64 reference (both layouts: GEMM per group and depthwise, with a
// channel multiplier), and conv_float bit-identical to the scalar path.
struct ConvCase {
  int64_t n, c, h, w, m, groups, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr;
};
void test_conv(std::mt19937& gen, lowbit::Isa isa, const ConvCase& cc, const std::string& tag) {
  lowbit::ConvGeometry g;
  g.batch = cc.n; g.in_channels = cc.c; g.height = cc.h; g.width = cc.w; g.out_channels = cc.m;
  g.groups = cc.groups; g.kernel_h = cc.kh; g.kernel_w = cc.kw; g.stride_h = cc.sh; g.stride_w = cc.sw;
  g.dilation_h = cc.dh; g.dilation_w = cc.dw; g.pad_top = cc.pt; g.pad_left = cc.pl; g.pad_bottom = cc.pb;
  g.pad_right = cc.pr;
  const int64_t cg = cc.c / cc.groups, mg = cc.m / cc.groups, OH = g.out_height(), OW = g.out_width();
  auto x = random_bytes<uint8_t>(gen, static_cast<size_t>(cc.n * cc.c * cc.h * cc.w), 0, 255);
  auto w = random_bytes<int8_t>(gen, static_cast<size_t>(cc.m * cg * cc.kh * cc.kw), -128, 127);
  auto wz = random_bytes<int32_t>(gen, static_cast<size_t>(cc.m), -128, 127);
  const int32_t xz = std::uniform_int_distribution<int>(0, 255)(gen);
  auto packed = lowbit::PackedConvWeight::pack(w.data(), lowbit::ElemType::int8, cc.m, cg, cc.groups, cc.kh,
                                               cc.kw, wz.data(), cc.m);
  std::vector<int32_t> y(static_cast<size_t>(cc.n * cc.m * OH * OW));
  lowbit::set_active_isa(isa);
  lowbit::conv_integer(x.data(), lowbit::ElemType::uint8, xz, *packed, g, y.data());
  bool ok = true;
  for (int64_t n = 0; n < cc.n && ok; ++n)
    for (int64_t m = 0; m < cc.m && ok; ++m)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          int64_t acc = 0;
          const int64_t gi = m / mg;
          for (int64_t c = 0; c < cg; ++c)
            for (int64_t i = 0; i < cc.kh; ++i)
              for (int64_t j = 0; j < cc.kw; ++j) {
                const int64_t ih = oh * cc.sh - cc.pt + i * cc.dh, iw = ow * cc.sw - cc.pl + j * cc.dw;
                const int64_t xv = ih >= 0 && ih < cc.h && iw >= 0 && iw < cc.w
                                       ? x[static_cast<size_t>(((n * cc.c + gi * cg + c) * cc.h + ih) * cc.w + iw)]
                                       : xz;
                acc += (xv - xz) * (w[static_cast<size_t>(((m * cg + c) * cc.kh + i) * cc.kw + j)] - wz[static_cast<size_t>(m)]);
              }
          ok &= y[static_cast<size_t>(((n * cc.m + m) * OH + oh) * OW + ow)] == static_cast<int32_t>(acc);
        }
  check(ok, tag + " conv_integer " + (packed->depthwise() ? "depthwise" : "gemm") + " c=" + std::to_string(cc.c) +
                " m=" + std::to_string(cc.m) + " g=" + std::to_string(cc.groups) + " k=" + std::to_string(cc.kh) + "x" +
                std::to_string(cc.kw));
  // Float output: the same bits as the scalar path.
  std::vector<float> xf(x.size()), scale(static_cast<size_t>(cc.m)), bias(static_cast<size_t>(cc.m));
  std::normal_distribution<float> nd;
  for (auto& v : xf) v = nd(gen);
  for (auto& v : scale) v = 0.001f + 0.01f * std::abs(nd(gen));
  for (auto& v : bias) v = nd(gen);
  auto sym = lowbit::PackedConvWeight::pack(w.data(), lowbit::ElemType::int8, cc.m, cg, cc.groups, cc.kh, cc.kw,
                                            nullptr, 0);
  std::vector<float> got(y.size()), want(y.size());
  lowbit::ConvActivation act;
  lowbit::conv_float(xf.data(), act, *sym, g, scale.data(), bias.data(), 0.0f, 6.0f, got.data());
  lowbit::set_active_isa(lowbit::Isa::scalar);
  lowbit::conv_float(xf.data(), act, *sym, g, scale.data(), bias.data(), 0.0f, 6.0f, want.data());
  lowbit::set_active_isa(isa);
  check(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0, tag + " conv_float matches scalar");

  // The integer chain: a static first layer (this geometry) quantizing its output for the next
  // (a 3x3 over its M channels, depthwise when M allows it), against the float output
  // quantized by the static input path, as scalar computes it: the same bytes, the same
  // second-layer output.
  lowbit::ConvActivation st;
  st.dynamic = false;
  st.scale = 0.02f;
  st.zero = 131;
  const float next_scale = 0.013f;
  const int32_t next_zero = std::uniform_int_distribution<int>(0, 255)(gen);
  lowbit::ConvSource src;
  src.x = xf.data();
  src.act = st;
  std::vector<uint8_t> mid(static_cast<size_t>(cc.n * OH * OW * cc.m)), mid_want(mid.size());
  lowbit::ConvSink to_u8;
  to_u8.y_nhwc = mid.data();
  to_u8.scale = next_scale;
  to_u8.zero = next_zero;
  lowbit::conv_float_chain(src, *sym, g, scale.data(), bias.data(), -1.0f, 3.0f, to_u8);
  lowbit::set_active_isa(lowbit::Isa::scalar);
  lowbit::conv_float(xf.data(), st, *sym, g, scale.data(), bias.data(), -1.0f, 3.0f, want.data());
  lowbit::set_active_isa(isa);
  bool same = true;
  for (int64_t n = 0; n < cc.n; ++n)
    for (int64_t m = 0; m < cc.m; ++m)
      for (int64_t r = 0; r < OH * OW; ++r) {
        const float v = want[static_cast<size_t>((n * cc.m + m) * OH * OW + r)];
        const float q = std::min(255.0f, std::max(0.0f, std::nearbyint(v / next_scale) + static_cast<float>(next_zero)));
        same &= mid[static_cast<size_t>((n * OH * OW + r) * cc.m + m)] == static_cast<uint8_t>(q);
      }
  check(same, tag + " conv_float_chain quantizes for the next layer");
  if (OH < 3 || OW < 3) return;
  const bool dw = cc.m % 2 == 0;
  lowbit::ConvGeometry g2;
  g2.batch = cc.n; g2.in_channels = cc.m; g2.height = OH; g2.width = OW;
  g2.out_channels = dw ? cc.m * 2 : 5; g2.groups = dw ? cc.m : 1; g2.kernel_h = 3; g2.kernel_w = 3;
  g2.pad_top = 1; g2.pad_left = 0; g2.pad_bottom = 1; g2.pad_right = 1;
  auto w2 = random_bytes<int8_t>(gen, static_cast<size_t>(g2.out_channels * (cc.m / g2.groups) * 9), -128, 127);
  auto p2 = lowbit::PackedConvWeight::pack(w2.data(), lowbit::ElemType::int8, g2.out_channels, cc.m / g2.groups,
                                           g2.groups, 3, 3, nullptr, 0);
  std::vector<float> s2(static_cast<size_t>(g2.out_channels), 0.003f);
  const size_t out2 = static_cast<size_t>(cc.n * g2.out_channels * g2.out_height() * g2.out_width());
  std::vector<float> chained(out2), unchained(out2);
  lowbit::ConvSource from_u8;
  from_u8.x_nhwc = mid.data();
  from_u8.scale = next_scale;
  from_u8.zero = next_zero;
  lowbit::ConvSink to_f32;
  to_f32.y = chained.data();
  lowbit::conv_float_chain(from_u8, *p2, g2, s2.data(), nullptr, 0.0f, 6.0f, to_f32);
  lowbit::ConvActivation st2;
  st2.dynamic = false;
  st2.scale = next_scale;
  st2.zero = next_zero;
  lowbit::set_active_isa(lowbit::Isa::scalar);
  lowbit::conv_float(want.data(), st2, *p2, g2, s2.data(), nullptr, 0.0f, 6.0f, unchained.data());
  lowbit::set_active_isa(isa);
  check(std::memcmp(chained.data(), unchained.data(), out2 * sizeof(float)) == 0,
        tag + " a chained second conv (" + (dw ? "depthwise x2" : "gemm") + ") matches float in between");
}

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "--list-isas") {
    for (lowbit::Isa isa : lowbit::available_isas()) std::printf("%s\n", lowbit::isa_name(isa).c_str());
    return 0;
  }
  std::vector<lowbit::Isa> isas;
  try {
    isas = isas_under_test();
  } catch (const std::exception& e) {
    std::printf("%s\n0 passed, 1 failed\n", e.what());
    return 1;
  }
  std::mt19937 gen(1234);
  for (lowbit::Isa isa : isas) {
    lowbit::set_active_isa(isa);
    const std::string tag = lowbit::isa_name(isa);
    for (int threads : {1, 2, 3}) {
      lowbit::set_num_threads(threads);
      const std::string t = tag + "/t" + std::to_string(threads);
      for (int64_t M : {1, 2, 3, 5, 6, 7, 13, 50})
        for (int64_t K : {1, 3, 4, 5, 64, 131})
          for (int64_t N : {1, 17, 64, 65, 130}) test_matmul<uint8_t, int8_t>(gen, M, K, N, false, t);
      test_matmul<int8_t, int8_t>(gen, 9, 77, 70, false, t);
      test_matmul<uint8_t, uint8_t>(gen, 9, 77, 70, false, t);
      test_matmul<int8_t, uint8_t>(gen, 9, 77, 70, false, t);
      test_matmul<uint8_t, int8_t>(gen, 8, 4096, 33, true, t);  // 255 * -128 everywhere
      test_matmul<int8_t, int8_t>(gen, 3, 1000, 20, true, t);
      test_matmul<uint8_t, int8_t>(gen, 2, 70000, 3, true, t);   // wraps modulo 2^32
    }
    for (int threads : {1, 2, 7}) {
      lowbit::set_num_threads(threads);
      test_gemm_edges(gen, isa, tag + "/t" + std::to_string(threads));
    }
    for (auto qt : {lowbit::QType::int8, lowbit::QType::uint8, lowbit::QType::int4, lowbit::QType::uint4})
      test_quantize<uint8_t>(gen, qt, tag);
    for (auto qt : {lowbit::QType::int16, lowbit::QType::uint16})
      test_quantize<uint16_t>(gen, qt, tag);
    test_linear_matches_scalar(gen, isa, tag);
    for (int threads : {1, 3}) {
      lowbit::set_num_threads(threads);
      test_pack_matches_scalar(gen, isa, tag + "/t" + std::to_string(threads));
      test_matmul_unpacked(gen, tag + "/t" + std::to_string(threads));
      test_matmul_plain_b_edges(gen, tag + "/t" + std::to_string(threads));
    }
    test_linear_static_contract(gen, isa, tag);
    test_transposes(gen, isa, tag);
    test_linear_weight_only_contract(gen, isa, tag);
    test_linear_half_contract(gen, isa, tag);
    test_elementwise_matches_scalar(gen, isa, tag);
    for (int threads : {1, 2, 3}) {
      lowbit::set_num_threads(threads);
      const std::string t = tag + "/t" + std::to_string(threads);
      for (bool sym : {true, false}) {
        for (int64_t M : {1, 2, 3, 4, 5, 9})
          for (int64_t N : {1, 17, 64, 65, 130}) test_linear_int4(gen, isa, {M, 64, N, 32, sym}, t);
        for (const auto& [K, group] : {std::pair<int64_t, int64_t>{2, 2}, {18, 6}, {20, 8}, {100, 32},
                                       {384, 128}, {512, 256}, {256, 256}, {1030, 1030}, {4096, 32}})
          test_linear_int4(gen, isa, {7, K, 70, group, sym}, t);
        test_linear_int4(gen, isa, {1, 4096, 300, 128, sym}, t);
        // Row counts of the tile kernels' blocks (16 / 32 rows, padded), every tile step width
        // (group 64: 64 bytes, 96: 32, 48: 16, 40: 8) and column tails.
        for (int64_t M : {8, 16, 33, 64})
          for (const auto& [K, group] : {std::pair<int64_t, int64_t>{256, 64}, {192, 96}, {100, 48},
                                         {120, 40}, {260, 32}, {512, 128}})
            test_linear_int4(gen, isa, {M, K, 97, group, sym}, t);
      }
    }
  }
  test_half_rounding("pack_float");
  for (lowbit::Isa isa : isas)
    for (int threads : {1, 2, 3}) {
      lowbit::set_num_threads(threads);
      const std::string t = lowbit::isa_name(isa) + "/t" + std::to_string(threads);
      for (const ConvCase& cc : {ConvCase{2, 3, 9, 11, 5, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},
                                 ConvCase{1, 16, 8, 8, 70, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0},
                                 ConvCase{2, 6, 7, 9, 9, 3, 5, 2, 2, 3, 1, 2, 2, 0, 1, 3},
                                 ConvCase{1, 37, 10, 9, 37, 37, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},
                                 ConvCase{3, 17, 6, 7, 34, 17, 5, 5, 1, 1, 2, 1, 4, 2, 4, 2},
                                 ConvCase{1, 40, 5, 5, 40, 40, 7, 7, 3, 1, 1, 1, 3, 3, 3, 3},
                                 ConvCase{2, 8, 1, 30, 16, 8, 1, 4, 1, 2, 1, 3, 0, 2, 0, 1}})
        test_conv(gen, isa, cc, t);
    }
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
