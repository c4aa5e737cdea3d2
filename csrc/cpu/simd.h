// Vector helpers shared by the CPU kernels: GCC/Clang vector extensions, 16 floats per vector where the
// compiler targets AVX-512, else 8 (AVX2 registers with -march=native, pairs of SSE registers without).
#pragma once

#include <algorithm>
#include <cstdint>

namespace mfr {
namespace simd {

// Vector width: 16 floats with AVX-512, else 8 (AVX2 registers with -march=native, two SSE registers without).
#if defined(__AVX512F__)
constexpr int64_t kL = 16;
#else
constexpr int64_t kL = 8;
#endif
typedef float fv __attribute__((vector_size(4 * kL)));
typedef int32_t iv __attribute__((vector_size(4 * kL)));
typedef float fvu __attribute__((vector_size(4 * kL), aligned(4)));  // for unaligned loads and stores

inline fv load(const float* p) { return *reinterpret_cast<const fvu*>(p); }
inline void store(float* p, fv x) { *reinterpret_cast<fvu*>(p) = x; }
inline fv splat(float a) {
  fv x;
  for (int64_t l = 0; l < kL; ++l) x[l] = a;  // compiles to one broadcast
  return x;
}
inline float hmax(fv x) {
  float m = x[0];
  for (int64_t l = 1; l < kL; ++l) m = std::max(m, x[l]);
  return m;
}
inline float hsum(fv x) {
  float s = 0.0f;
  for (int64_t l = 0; l < kL; ++l) s += x[l];
  return s;
}

// e^x for x ≤ 0 (softmax inputs after the max is subtracted); exactly 0 below 2^-127.
inline fv exp_nonpositive(fv x) {
  fv t = x * 1.44269504088896341f;  // log2(e)
  t = t < -127.0f ? splat(-127.0f) : t;
  const fv shifted = t + 12582912.0f;  // 1.5·2^23: the float's low mantissa bits now hold round(t)
  const fv n = shifted - 12582912.0f;
  const fv f = t - n;  // [-0.5, 0.5]
  fv p = splat(1.535336188319500e-4f);  // 2^f, minimax polynomial on [-0.5, 0.5]
  p = p * f + 1.339887440266574e-3f;
  p = p * f + 9.618437357674640e-3f;
  p = p * f + 5.550332471162809e-2f;
  p = p * f + 2.402264791363012e-1f;
  p = p * f + 6.931472028550421e-1f;
  p = p * f + 1.0f;
  const iv e = ((iv)shifted - 0x4B400000 + 127) << 23;  // 2^n (0 for n = -127)
  return p * (fv)e;
}

// tanh(y) = sign(y)·(1 − e)/(1 + e), e = e^{−2|y|} ≤ 1 (so only the non-positive exp is needed).
inline fv tanh(fv y) {
  const fv a = y < 0.0f ? -y : y;
  const fv e = exp_nonpositive(-2.0f * a);
  const fv t = (1.0f - e) / (1.0f + e);
  return y < 0.0f ? -t : t;
}

}  // namespace simd
}  // namespace mfr
