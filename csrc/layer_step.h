// One whole transformer layer of a chunk step, for every stream at once: the native backend's fused path
// (mfruntime/engine/native_layer.py). It runs, in C++ and in the model's order, what the layer loop in
// mfruntime/model/transformer.py runs sublayer by sublayer:
//   per stream:  h += gate1 ⊙ proj(ring_attention(qkv(LN(h)·(1+scale1)+shift1)))
//   per stream:  h += x_out(attend(x_q(LN_x(h)), the other stream's keys/values))        (two streams only)
//   per stream:  h += p_out(attend(p_q(LN_p(h)), the chunk's phoneme keys/values))
//                h += gate2 ⊙ fc2(gelu(fc1(LN(h)·(1+scale2)+shift2)))
// float32, CPU. Linear weights are packed K × N (pack_weight); N of every linear a multiple of 32.
#pragma once

#include <cstdint>

namespace mfr {

struct StreamLayer {
  // weights: packed matrices and biases of qkv, proj, x_q, x_out, p_q, p_out, fc1, fc2; affine norms
  const float *w_qkv, *b_qkv, *w_proj, *b_proj, *w_xq, *b_xq, *w_xo, *b_xo, *w_pq, *b_pq, *w_po, *b_po;
  const float *w_fc1, *b_fc1, *w_fc2, *b_fc2, *nx_w, *nx_b, *np_w, *np_b;
  int64_t D, hidden, H;  // width, MLP width, heads (head dim D / H)
  // this call
  float* h;  // (B·N × D) tokens, updated in place
  int64_t B, N;
  const float* mod;  // (B rows of 6·D, row stride mod_stride): shift1, scale1, gate1, shift2, scale2, gate2
  int64_t mod_stride;
  float *k_buf, *v_buf;  // this layer's ring cache (B, H, T, Dh), contiguous; the chunk goes to rows [offset, offset+N)
  int64_t T, offset;
  const float *cis, *cis_t;  // (cb, N, Dh/2, 2) rotations: full (self-attention) and time-only (cross, phoneme queries)
  int64_t cis_stride;        // floats between batch rows of cis and cis_t; 0: one rotation table for the batch
  const uint8_t* valid;      // (vb, T) which cache rows each batch row sees
  int64_t valid_stride;      // bytes between batch rows of valid; 0: shared by the batch
  const float *pk, *pv;      // phoneme keys (rotated) and values, (B, H, M, Dh) with strides below
  int64_t M, pk_s0, pk_s1, pk_s2, pv_s0, pv_s1, pv_s2;
  const uint8_t* ph_valid;   // (B, M) rows ph_valid_stride apart
  int64_t ph_valid_stride;
};

// Runs one layer for `count` streams (1 or 2; with 2, each stream's cross-modal attention reads the other's
// cache rows as written by this call's self-attention).
void layer_step(StreamLayer* streams, int count, int threads);

}  // namespace mfr
