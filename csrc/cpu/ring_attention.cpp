// CPU kernels for ring-cache attention (declarations and tensor conventions: csrc/ring_attention.h).
//
// One task per (batch, head), spread over OpenMP threads. Inside a task:
//   1. the valid key positions are listed (the validity mask);
//   2. queries are rotated (rotary pairs (x_2j, x_2j+1) · e^{iθ_j}), scaled by 1/√D and transposed into
//      Qt (D × Np, Np = N rounded up to the vector width) — the chunk's few queries, not the long key buffer;
//   3. scores key-major, St = K·Qᵀ, in register blocks of 4 keys × up to 4 vectors of queries: each key
//      element is broadcast once per query vector, each query vector loaded once per 4 keys;
//   4. the softmax over the keys runs along the queries' vectors (max, then a vectorised exp:
//      2^x = 2^round(x) · p(x − round(x)), a degree-6 polynomial), keeping 1/sum per query;
//   5. out = P·V / sum in blocks of 4 queries, accumulating whole head rows (D a template constant: 16, 32,
//      64 or 128, so the accumulators stay in registers; other even D take a scalar path).
// The inner loops use GCC/Clang vector extensions — 16 floats per vector with AVX-512, else 8 (AVX2 with
// -march=native, pairs of SSE registers without) — so they are vectorised whatever the optimiser decides.
#include "../ring_attention.h"
#include "simd.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace mfr {
namespace {

using namespace simd;
constexpr int64_t kQB = 4;  // queries per register block (S = Q·Kᵀ and P·V)


struct Scratch {  // per-thread work buffers, reused across tasks and calls
  std::vector<int64_t> idx;
  std::vector<float> q, qt, s, zero;
};

Scratch& scratch() {
  thread_local Scratch sc;
  return sc;
}

// Rotated, scaled query rows of one (b, h), transposed: qt (D × Np), columns N..Np-1 zero.
void load_queries(const View4& q, const Rotation& rot, int64_t b, int64_t h, int64_t N, int64_t Np, int64_t D,
                  float scale, float* rows, float* qt) {
  const float* cs_b = rot.data ? rot.data + b * rot.batch_stride : nullptr;
  for (int64_t i = 0; i < N; ++i) {
    const float* x = q.at(b, h, i);
    float* y = rows + i * D;
    if (cs_b) {
      const float* cs = cs_b + i * D;  // (D/2, 2) for token i
      for (int64_t j = 0; j < D / 2; ++j) {
        const float a = x[2 * j], c = x[2 * j + 1], co = cs[2 * j], si = cs[2 * j + 1];
        y[2 * j] = (a * co - c * si) * scale;
        y[2 * j + 1] = (a * si + c * co) * scale;
      }
    } else {
      for (int64_t d = 0; d < D; ++d) y[d] = x[d] * scale;
    }
  }
  for (int64_t d = 0; d < D; ++d) {
    float* col = qt + d * Np;
    for (int64_t i = 0; i < N; ++i) col[i] = rows[i * D + d];
    std::fill(col + N, col + Np, 0.0f);
  }
}

// St rows j0 .. j0+3 (keys) = Kⱼ·Qᵀ for NV query vectors starting at column i0: 4 × NV accumulators, each
// key element broadcast once per vector of queries, each query vector loaded once per 4 keys.
template <int64_t NV>
void score_block(const float* const kr[4], const float* qt, int64_t Np, int64_t D, int64_t i0, float* st,
                 int64_t j0) {
  fv acc[4][NV] = {};
  for (int64_t d = 0; d < D; ++d) {
    fv qv[NV];
    for (int64_t u = 0; u < NV; ++u) qv[u] = load(qt + d * Np + i0 + u * kL);
    for (int64_t r = 0; r < 4; ++r) {
      const float a = kr[r][d];
      for (int64_t u = 0; u < NV; ++u) acc[r][u] += a * qv[u];
    }
  }
  for (int64_t r = 0; r < 4; ++r)
    for (int64_t u = 0; u < NV; ++u) store(st + (j0 + r) * Np + i0 + u * kL, acc[r][u]);
}

// out rows i0 .. i0+rows-1 (rows ≤ 4) = P·V / row sums for a head dim DC (a multiple of the vector width),
// P stored key-major (P[j][i] at p[j·Np + i]): 4·DC/kL accumulators, kept in registers.
template <int64_t DC>
void pv_block(const float* p, int64_t Np, const float* inv, const int64_t* idx, int64_t tv, const View4& v,
              int64_t b, int64_t h, int64_t i0, int64_t rows, const View4& out) {
  constexpr int64_t V = DC / kL;
  fv acc[kQB][V] = {};
  for (int64_t jj = 0; jj < tv; ++jj) {
    const float* vr = v.at(b, h, idx[jj]);
    const float* pj = p + jj * Np + i0;
    fv x[V];
    for (int64_t u = 0; u < V; ++u) x[u] = load(vr + kL * u);
    for (int64_t r = 0; r < kQB; ++r) {
      const float a = pj[r];
      for (int64_t u = 0; u < V; ++u) acc[r][u] += a * x[u];
    }
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t u = 0; u < V; ++u) store(out.at(b, h, i0 + r) + kL * u, acc[r][u] * inv[i0 + r]);
}

void pv_row_generic(const float* p, int64_t Np, const float* inv, const int64_t* idx, int64_t tv, const View4& v,
                    int64_t b, int64_t h, int64_t i, int64_t D, const View4& out) {
  float* o = out.at(b, h, i);
  std::fill(o, o + D, 0.0f);
  for (int64_t jj = 0; jj < tv; ++jj) {
    const float* vr = v.at(b, h, idx[jj]);
    const float a = p[jj * Np + i];
    for (int64_t d = 0; d < D; ++d) o[d] += a * vr[d];
  }
  for (int64_t d = 0; d < D; ++d) o[d] *= inv[i];
}

// Attention of one (b, h): queries q (rotated by rot when set) over keys k / values v rows 0..T-1.
// Scores are kept key-major, St (valid keys × Np), so every step vectorises over the queries: no transpose of
// the (long) key buffer, only of the chunk's queries.
void attend_head(const View4& q, const View4& k, const View4& v, const View4& out, const Rotation& rot,
                 const Validity& valid, int64_t b, int64_t h, int64_t N, int64_t T, int64_t D) {
  Scratch& sc = scratch();
  const uint8_t* ok = valid.data + b * valid.batch_stride;
  sc.idx.resize(T);
  int64_t tv = 0;
  for (int64_t j = 0; j < T; ++j)
    if (ok[j]) sc.idx[tv++] = j;
  const int64_t Np = (N + kL - 1) / kL * kL, Tp = (tv + 3) / 4 * 4;
  sc.q.resize(N * D);
  sc.qt.resize(D * Np);
  sc.s.resize(Tp * Np + 2 * Np);
  sc.zero.assign(D, 0.0f);
  load_queries(q, rot, b, h, N, Np, D, 1.0f / std::sqrt(static_cast<float>(D)), sc.q.data(), sc.qt.data());
  const int64_t* idx = sc.idx.data();
  const float* qt = sc.qt.data();
  float* st = sc.s.data();
  for (int64_t j0 = 0; j0 < Tp; j0 += 4) {  // St = K·Qᵀ, 4 keys × up to 4 query vectors per register block
    const float* kr[4];
    for (int64_t r = 0; r < 4; ++r) kr[r] = j0 + r < tv ? k.at(b, h, idx[j0 + r]) : sc.zero.data();
    int64_t i0 = 0;
    for (; i0 + 4 * kL <= Np; i0 += 4 * kL) score_block<4>(kr, qt, Np, D, i0, st, j0);
    switch ((Np - i0) / kL) {
      case 3: score_block<3>(kr, qt, Np, D, i0, st, j0); break;
      case 2: score_block<2>(kr, qt, Np, D, i0, st, j0); break;
      case 1: score_block<1>(kr, qt, Np, D, i0, st, j0); break;
      default: break;
    }
  }
  // Softmax over the keys, for all queries at once (vectors run along the queries). P stays unnormalised;
  // 1/row sum is applied to the output.
  float* inv = st + Tp * Np;
  for (int64_t i0 = 0; i0 < Np; i0 += kL) {
    fv m = splat(-INFINITY);
    for (int64_t jj = 0; jj < tv; ++jj) {
      const fv x = load(st + jj * Np + i0);
      m = x > m ? x : m;
    }
    fv sum = {};
    for (int64_t jj = 0; jj < tv; ++jj) {
      const fv e = exp_nonpositive(load(st + jj * Np + i0) - m);
      store(st + jj * Np + i0, e);
      sum += e;
    }
    store(inv + i0, sum > 0.0f ? 1.0f / sum : fv{});  // no valid key at all: a zero row
  }
  for (int64_t i0 = 0; i0 < N; i0 += kQB) {  // out = P·V / row sum
    const int64_t rows = std::min<int64_t>(kQB, N - i0);
    if (D == 32) pv_block<32>(st, Np, inv, idx, tv, v, b, h, i0, rows, out);
    else if (D == 64) pv_block<64>(st, Np, inv, idx, tv, v, b, h, i0, rows, out);
    else if (D == 128) pv_block<128>(st, Np, inv, idx, tv, v, b, h, i0, rows, out);
    else if (D == 16 && kL <= 16) pv_block<16>(st, Np, inv, idx, tv, v, b, h, i0, rows, out);
    else
      for (int64_t r = 0; r < rows; ++r) pv_row_generic(st, Np, inv, idx, tv, v, b, h, i0 + r, D, out);
  }
}

// Rotated keys and the values of one (b, h) into the scratch rows of the contiguous buffers.
void write_scratch(const View4& k, const View4& v, float* k_buf, float* v_buf, const Rotation& rot, int64_t b,
                   int64_t h, int64_t H, int64_t N, int64_t T, int64_t D, int64_t offset) {
  const int64_t base = ((b * H + h) * T + offset) * D;
  const float* cs_b = rot.data + b * rot.batch_stride;
  for (int64_t i = 0; i < N; ++i) {
    const float* x = k.at(b, h, i);
    const float* cs = cs_b + i * D;
    float* y = k_buf + base + i * D;
    for (int64_t j = 0; j < D / 2; ++j) {
      const float a = x[2 * j], c = x[2 * j + 1], co = cs[2 * j], si = cs[2 * j + 1];
      y[2 * j] = a * co - c * si;
      y[2 * j + 1] = a * si + c * co;
    }
    std::memcpy(v_buf + base + i * D, v.at(b, h, i), D * sizeof(float));
  }
}

int team(int threads, int64_t tasks) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, tasks)));
}

}  // namespace

void ring_attention_cpu(View4 q, View4 k, View4 v, float* k_buf, float* v_buf, View4 out, Rotation rot,
                        Validity valid, int64_t B, int64_t H, int64_t N, int64_t T, int64_t D, int64_t offset,
                        int threads) {
  const View4 kb{k_buf, H * T * D, T * D, D, 1}, vb{v_buf, H * T * D, T * D, D, 1};
#pragma omp parallel for num_threads(team(threads, B * H)) schedule(static)
  for (int64_t task = 0; task < B * H; ++task) {
    const int64_t b = task / H, h = task % H;
    write_scratch(k, v, k_buf, v_buf, rot, b, h, H, N, T, D, offset);
    attend_head(q, kb, vb, out, rot, valid, b, h, N, T, D);
  }
}

void attend_cpu(View4 q, View4 k, View4 v, View4 out, Rotation rot, Validity valid, int64_t B, int64_t H,
                int64_t N, int64_t T, int64_t D, int threads) {
#pragma omp parallel for num_threads(team(threads, B * H)) schedule(static)
  for (int64_t task = 0; task < B * H; ++task) attend_head(q, k, v, out, rot, valid, task / H, task % H, N, T, D);
}

void ring_write_cpu(float* k_buf, float* v_buf, View4 k, View4 v, int64_t B, int64_t H, int64_t N, int64_t T,
                    int64_t D, int64_t chunk, int64_t ring_start, int64_t window, int threads) {
  const int64_t slot = ((chunk % window) + window) % window;  // wrap-around (and a negative index stays in range)
  const int64_t first = ring_start + slot * N;
#pragma omp parallel for num_threads(team(threads, B * H)) schedule(static)
  for (int64_t task = 0; task < B * H; ++task) {
    const int64_t b = task / H, h = task % H;
    const int64_t base = ((b * H + h) * T + first) * D;
    for (int64_t i = 0; i < N; ++i) {
      std::memcpy(k_buf + base + i * D, k.at(b, h, i), D * sizeof(float));
      std::memcpy(v_buf + base + i * D, v.at(b, h, i), D * sizeof(float));
    }
  }
}

}  // namespace mfr
