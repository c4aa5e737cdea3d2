// Fused CPU building blocks of the block sublayers (declarations: csrc/block_ops.h).
//
// linear: Y = epilogue(X·Wp + b) with Wp the weight packed K × N, so the inner loop streams two vectors of
// Wp's row k and multiplies them by one broadcast element of each of R rows of X: R × 2 accumulators stay
// in registers (R = 4, with a 1–3-row tail), each loaded Wp vector feeds R FMAs, each X element 2. The
// epilogue (bias, GELU, residual, gated residual) is applied to the accumulators before the one store, so
// the output is written once. Threads split the columns (blocks of 2 vectors) when the product is large.
#include "../block_ops.h"

#include <cmath>

#include "simd.h"

namespace mfr {
namespace {

using namespace simd;
constexpr int64_t kRows = 4;          // rows of X per register block
constexpr int64_t kCols = 2 * kL;     // columns per register block (two vectors)
constexpr int64_t kParallelMin = 1 << 20;  // M·N·K below this: one thread (a team's wake-up costs more)

inline fv gelu_tanh(fv x) {
  const fv inner = 0.7978845608028654f * (x + 0.044715f * x * x * x);  // √(2/π)·(x + 0.044715 x³)
  return 0.5f * x * (1.0f + simd::tanh(inner));
}

template <int64_t R>
void tile(const float* X, int64_t ldx, const float* Wp, const float* bias, float* Y, int64_t ldy, int64_t r0,
          int64_t c0, int64_t K, int64_t N, Epilogue ep, const float* Rm, int64_t ldr, const float* g,
          int64_t g_stride, int64_t rows_per_gate) {
  fv acc[R][2] = {};
  const float* x = X + r0 * ldx;
  for (int64_t k = 0; k < K; ++k) {
    const fv w0 = load(Wp + k * N + c0), w1 = load(Wp + k * N + c0 + kL);
    for (int64_t r = 0; r < R; ++r) {
      const float a = x[r * ldx + k];
      acc[r][0] += a * w0;
      acc[r][1] += a * w1;
    }
  }
  const fv b0 = bias ? load(bias + c0) : fv{}, b1 = bias ? load(bias + c0 + kL) : fv{};
  for (int64_t r = 0; r < R; ++r) {
    fv y0 = acc[r][0] + b0, y1 = acc[r][1] + b1;
    const int64_t row = r0 + r;
    if (ep == Epilogue::kGeluTanh) {
      y0 = gelu_tanh(y0);
      y1 = gelu_tanh(y1);
    } else if (ep == Epilogue::kResidual || ep == Epilogue::kGatedResidual) {
      if (ep == Epilogue::kGatedResidual) {
        const float* gr = g + (row / rows_per_gate) * g_stride + c0;
        y0 *= load(gr);
        y1 *= load(gr + kL);
      }
      y0 += load(Rm + row * ldr + c0);
      y1 += load(Rm + row * ldr + c0 + kL);
    }
    store(Y + row * ldy + c0, y0);
    store(Y + row * ldy + c0 + kL, y1);
  }
}

}  // namespace

void pack_weight(const float* W, int64_t N, int64_t K, float* Wp) {
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) Wp[k * N + n] = W[n * K + k];
}

void linear(const float* X, int64_t ldx, const float* Wp, const float* bias, float* Y, int64_t ldy, int64_t M,
            int64_t K, int64_t N, Epilogue ep, const float* R, int64_t ldr, const float* g, int64_t g_stride,
            int64_t rows_per_gate, int threads) {
  const int64_t col_blocks = N / kCols;
  const int team = (M * N * K >= kParallelMin) ? std::max(1, std::min<int>(threads, static_cast<int>(col_blocks))) : 1;
#pragma omp parallel for num_threads(team) schedule(static)
  for (int64_t cb = 0; cb < col_blocks; ++cb) {
    const int64_t c0 = cb * kCols;
    int64_t r0 = 0;
    for (; r0 + kRows <= M; r0 += kRows)
      tile<kRows>(X, ldx, Wp, bias, Y, ldy, r0, c0, K, N, ep, R, ldr, g, g_stride, rows_per_gate);
    switch (M - r0) {
      case 3: tile<3>(X, ldx, Wp, bias, Y, ldy, r0, c0, K, N, ep, R, ldr, g, g_stride, rows_per_gate); break;
      case 2: tile<2>(X, ldx, Wp, bias, Y, ldy, r0, c0, K, N, ep, R, ldr, g, g_stride, rows_per_gate); break;
      case 1: tile<1>(X, ldx, Wp, bias, Y, ldy, r0, c0, K, N, ep, R, ldr, g, g_stride, rows_per_gate); break;
      default: break;
    }
  }
}

void layer_norm_modulate(const float* x, int64_t ldx, float* out, int64_t M, int64_t D, float eps, const float* w,
                         const float* b, const float* shift, const float* scale, int64_t mod_stride,
                         int64_t rows_per_mod, int threads) {
  const int team = (M * D >= (1 << 16)) ? std::max(1, threads) : 1;
#pragma omp parallel for num_threads(team) schedule(static)
  for (int64_t m = 0; m < M; ++m) {
    const float* xr = x + m * ldx;
    float* o = out + m * D;
    float sum = 0.0f;
    for (int64_t d = 0; d < D; ++d) sum += xr[d];
    const float mean = sum / static_cast<float>(D);
    float var = 0.0f;
    for (int64_t d = 0; d < D; ++d) var += (xr[d] - mean) * (xr[d] - mean);
    const float rstd = 1.0f / std::sqrt(var / static_cast<float>(D) + eps);
    const float* sh = shift ? shift + (m / rows_per_mod) * mod_stride : nullptr;
    const float* sc = scale ? scale + (m / rows_per_mod) * mod_stride : nullptr;
    for (int64_t d = 0; d < D; ++d) {
      float y = (xr[d] - mean) * rstd;
      if (w) y = y * w[d] + b[d];
      if (sc) y = y * (1.0f + sc[d]) + sh[d];
      o[d] = y;
    }
  }
}

}  // namespace mfr
