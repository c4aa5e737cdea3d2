// Fused CPU building blocks of a transformer block's sublayers, for the native backend's sublayer
// functions (mfruntime/engine/native_block.py): a linear layer on packed weights with fused epilogues, and
// layer norm fused with the adaLN modulation. float32, row-major; a "row" is one token.
#pragma once

#include <cstdint>

namespace mfr {

// W (N × K, PyTorch's Linear layout) → Wp (K × N): the layout the linear kernel streams.
void pack_weight(const float* W, int64_t N, int64_t K, float* Wp);

enum class Epilogue : int {
  kBias = 0,          // Y = X·Wᵀ + b
  kGeluTanh = 1,      // Y = gelu_tanh(X·Wᵀ + b)
  kResidual = 2,      // Y = R + (X·Wᵀ + b)
  kGatedResidual = 3  // Y = R + g ⊙ (X·Wᵀ + b), g one row of N per batch element
};

// Y (M × N, row stride ldy) = epilogue(X (M × K, row stride ldx) · Wp + bias); bias may be null. For the
// residual epilogues R has row stride ldr; row m uses gate row m / rows_per_gate of g, rows g_stride apart.
// N must be a multiple of 32.
void linear(const float* X, int64_t ldx, const float* Wp, const float* bias, float* Y, int64_t ldy, int64_t M,
            int64_t K, int64_t N, Epilogue ep, const float* R, int64_t ldr, const float* g, int64_t g_stride,
            int64_t rows_per_gate, int threads);

// out (M × D, contiguous) = LN(x) [· w + b when w is set] [· (1 + scale) + shift when scale is set], per
// row; row m uses modulation row m / rows_per_mod of shift and scale, rows mod_stride apart (the chunk's
// adaLN modulation of each batch element).
void layer_norm_modulate(const float* x, int64_t ldx, float* out, int64_t M, int64_t D, float eps, const float* w,
                         const float* b, const float* shift, const float* scale, int64_t mod_stride,
                         int64_t rows_per_mod, int threads);

}  // namespace mfr
