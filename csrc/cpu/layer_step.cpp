// One whole layer of a chunk step in C++ (declarations and the order of operations: csrc/layer_step.h),
// built from the same kernels the per-sublayer native path uses (block_ops.cpp, ring_attention.cpp).
#include "../layer_step.h"

#include <vector>

#include "../block_ops.h"
#include "../ring_attention.h"

namespace mfr {
namespace {

constexpr float kEps = 1e-6f;  // the blocks' LayerNorm eps
constexpr int64_t kParallelPairs = 32768;  // attention below this many query-key pairs: one thread

int att_threads(int threads, int64_t pairs) { return pairs >= kParallelPairs ? threads : 1; }

struct Buffers {  // per-thread scratch, reused across calls
  std::vector<float> x, qkv, a, q, u;
};

Buffers& buffers() {
  thread_local Buffers b;
  return b;
}

// A (B, H, N, Dh) view of rows laid out (B·N, width) starting at column `col`.
View4 heads_of(float* rows, int64_t N, int64_t Dh, int64_t width, int64_t col) {
  return {rows + col, N * width, Dh, width, 1};
}

void self_block(StreamLayer& s, Buffers& buf, int threads) {
  const int64_t M = s.B * s.N, D = s.D, Dh = D / s.H;
  buf.x.resize(M * D);
  buf.qkv.resize(M * 3 * D);
  buf.a.resize(M * D);
  layer_norm_modulate(s.h, D, buf.x.data(), M, D, kEps, nullptr, nullptr, s.mod, s.mod + D, s.mod_stride, s.N,
                      threads);
  linear(buf.x.data(), D, s.w_qkv, s.b_qkv, buf.qkv.data(), 3 * D, M, D, 3 * D, Epilogue::kBias, nullptr, 0,
         nullptr, 0, 1, threads);
  float* qkv = buf.qkv.data();
  ring_attention_cpu(heads_of(qkv, s.N, Dh, 3 * D, 0), heads_of(qkv, s.N, Dh, 3 * D, D),
                     heads_of(qkv, s.N, Dh, 3 * D, 2 * D), s.k_buf, s.v_buf,
                     heads_of(buf.a.data(), s.N, Dh, D, 0), {s.cis, s.cis_stride}, {s.valid, s.valid_stride}, s.B, s.H, s.N, s.T, Dh,
                     s.offset, att_threads(threads, s.B * s.H * s.N * s.T));
  linear(buf.a.data(), D, s.w_proj, s.b_proj, s.h, D, M, D, D, Epilogue::kGatedResidual, s.h, D, s.mod + 2 * D,
         s.mod_stride, s.N, threads);
}

// h += out(attend(q(LN_affine(h)) rotated by cis_t, over k/v with validity ok)).
void query_block(StreamLayer& s, Buffers& buf, const float* nw, const float* nb, const float* wq, const float* bq,
                 const float* wo, const float* bo, View4 k, View4 v, int64_t T, Validity ok, int threads) {
  const int64_t M = s.B * s.N, D = s.D, Dh = D / s.H;
  buf.x.resize(M * D);
  buf.q.resize(M * D);
  buf.a.resize(M * D);
  layer_norm_modulate(s.h, D, buf.x.data(), M, D, kEps, nw, nb, nullptr, nullptr, D, 1, threads);
  linear(buf.x.data(), D, wq, bq, buf.q.data(), D, M, D, D, Epilogue::kBias, nullptr, 0, nullptr, 0, 1, threads);
  attend_cpu(heads_of(buf.q.data(), s.N, Dh, D, 0), k, v, heads_of(buf.a.data(), s.N, Dh, D, 0),
             {s.cis_t, s.cis_stride}, ok, s.B, s.H, s.N, T, Dh, att_threads(threads, s.B * s.H * s.N * T));
  linear(buf.a.data(), D, wo, bo, s.h, D, M, D, D, Epilogue::kResidual, s.h, D, nullptr, 0, 1, threads);
}

void mlp_block(StreamLayer& s, Buffers& buf, int threads) {
  const int64_t M = s.B * s.N, D = s.D;
  buf.x.resize(M * D);
  buf.u.resize(M * s.hidden);
  layer_norm_modulate(s.h, D, buf.x.data(), M, D, kEps, nullptr, nullptr, s.mod + 3 * D, s.mod + 4 * D,
                      s.mod_stride, s.N, threads);
  linear(buf.x.data(), D, s.w_fc1, s.b_fc1, buf.u.data(), s.hidden, M, D, s.hidden, Epilogue::kGeluTanh, nullptr, 0,
         nullptr, 0, 1, threads);
  linear(buf.u.data(), s.hidden, s.w_fc2, s.b_fc2, s.h, D, M, s.hidden, D, Epilogue::kGatedResidual, s.h, D,
         s.mod + 5 * D, s.mod_stride, s.N, threads);
}

}  // namespace

void layer_step(StreamLayer* streams, int count, int threads) {
  Buffers& buf = buffers();
  for (int i = 0; i < count; ++i) self_block(streams[i], buf, threads);
  if (count == 2) {
    for (int i = 0; i < 2; ++i) {
      StreamLayer& s = streams[i];
      const StreamLayer& o = streams[1 - i];
      const int64_t Dh = o.D / o.H;
      const View4 k{o.k_buf, o.H * o.T * Dh, o.T * Dh, Dh, 1}, v{o.v_buf, o.H * o.T * Dh, o.T * Dh, Dh, 1};
      query_block(s, buf, s.nx_w, s.nx_b, s.w_xq, s.b_xq, s.w_xo, s.b_xo, k, v, o.T, {o.valid, o.valid_stride}, threads);
    }
  }
  for (int i = 0; i < count; ++i) {
    StreamLayer& s = streams[i];
    const View4 k{const_cast<float*>(s.pk), s.pk_s0, s.pk_s1, s.pk_s2, 1};
    const View4 v{const_cast<float*>(s.pv), s.pv_s0, s.pv_s1, s.pv_s2, 1};
    query_block(s, buf, s.np_w, s.np_b, s.w_pq, s.b_pq, s.w_po, s.b_po, k, v, s.M, {s.ph_valid, s.ph_valid_stride},
                threads);
    mlp_block(s, buf, threads);
  }
}

}  // namespace mfr
