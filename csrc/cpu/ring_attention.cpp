// CPU kernels for ring-cache attention (declarations and tensor conventions: csrc/ring_attention.h).
//
// One task per (batch, head), spread over OpenMP threads. Inside a task:
//   1. the valid keys are gathered and transposed into Kt (D × Tp; Tp = valid keys rounded up to the vector
//      width, zero padding), one vector of keys at a time;
//   2. queries are rotated (rotary pairs (x_2j, x_2j+1) · e^{iθ_j}) and scaled by 1/√D into Q (Np × D);
//   3. S = Q·Kt in register blocks of 4 queries × one vector of keys, so each key load feeds four FMAs;
//   4. a row softmax with a vectorised exp (2^x = 2^round(x) · p(x − round(x)), a degree-6 polynomial);
//   5. out = P·V in blocks of 4 queries, accumulating whole head rows (D a template constant: 16, 32, 64 or
//      128, so the accumulators stay in registers; other even D take a scalar path).
// The inner loops use GCC/Clang vector extensions — 16 floats per vector with AVX-512, else 8 (AVX2 with
// -march=native, pairs of SSE registers without) — so they are vectorised whatever the optimiser decides.
#include "../ring_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace mfr {
namespace {

// Vector width: 16 floats with AVX-512, else 8 (AVX2 registers with -march=native, two SSE registers without).
#if defined(__AVX512F__)
constexpr int64_t kL = 16;
#else
constexpr int64_t kL = 8;
#endif
typedef float fv __attribute__((vector_size(4 * kL)));
typedef int32_t iv __attribute__((vector_size(4 * kL)));
typedef float fvu __attribute__((vector_size(4 * kL), aligned(4)));  // for unaligned loads and stores

constexpr int64_t kQB = 4;  // queries per register block (S = Q·Kᵀ and P·V)

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

struct Scratch {  // per-thread work buffers, reused across tasks and calls
  std::vector<int64_t> idx;
  std::vector<float> kt, q, s;
};

Scratch& scratch() {
  thread_local Scratch sc;
  return sc;
}

// Rotated, scaled query rows of one (b, h) into q (Np × D); rows N..Np-1 are zero.
void load_queries(const View4& q, const Rotation& rot, int64_t b, int64_t h, int64_t N, int64_t Np, int64_t D,
                  float scale, float* out) {
  const float* cs_b = rot.data ? rot.data + b * rot.batch_stride : nullptr;
  for (int64_t i = 0; i < N; ++i) {
    const float* x = q.at(b, h, i);
    float* y = out + i * D;
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
  std::fill(out + N * D, out + Np * D, 0.0f);
}

// out rows i0 .. i0+rows-1 (rows ≤ 4) = P·V for a head dim DC (a multiple of the vector width): 4·DC/kL
// accumulators, kept in registers. S has Np ≥ i0 + 4 rows; rows past `rows` are computed, not stored.
template <int64_t DC>
void pv_block(const float* s, int64_t Tp, const int64_t* idx, int64_t tv, const View4& v, int64_t b, int64_t h,
              int64_t i0, int64_t rows, const View4& out) {
  constexpr int64_t V = DC / kL;
  fv acc[kQB][V] = {};
  const float* p = s + i0 * Tp;  // rows i0 .. i0+3 of P (padded query rows are zero rows of S's softmax)
  for (int64_t jj = 0; jj < tv; ++jj) {
    const float* vr = v.at(b, h, idx[jj]);
    fv x[V];
    for (int64_t u = 0; u < V; ++u) x[u] = load(vr + kL * u);
    for (int64_t r = 0; r < kQB; ++r) {
      const float a = p[r * Tp + jj];
      for (int64_t u = 0; u < V; ++u) acc[r][u] += a * x[u];
    }
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t u = 0; u < V; ++u) store(out.at(b, h, i0 + r) + kL * u, acc[r][u]);
}

void pv_row_generic(const float* s, int64_t Tp, const int64_t* idx, int64_t tv, const View4& v, int64_t b,
                    int64_t h, int64_t i, int64_t D, const View4& out) {
  float* o = out.at(b, h, i);
  std::fill(o, o + D, 0.0f);
  const float* p = s + i * Tp;
  for (int64_t jj = 0; jj < tv; ++jj) {
    const float* vr = v.at(b, h, idx[jj]);
    const float a = p[jj];
    for (int64_t d = 0; d < D; ++d) o[d] += a * vr[d];
  }
}

// Attention of one (b, h): queries q (rotated by rot when set) over keys k / values v rows 0..T-1.
void attend_head(const View4& q, const View4& k, const View4& v, const View4& out, const Rotation& rot,
                 const Validity& valid, int64_t b, int64_t h, int64_t N, int64_t T, int64_t D) {
  Scratch& sc = scratch();
  const uint8_t* ok = valid.data + b * valid.batch_stride;
  sc.idx.resize(T);
  int64_t tv = 0;
  for (int64_t j = 0; j < T; ++j)
    if (ok[j]) sc.idx[tv++] = j;
  const int64_t Tp = (tv + kL - 1) / kL * kL, Np = (N + kQB - 1) / kQB * kQB;
  sc.kt.resize(D * Tp);
  sc.q.resize(Np * D);
  sc.s.resize(Np * Tp);
  float* kt = sc.kt.data();
  const int64_t* idx = sc.idx.data();
  for (int64_t j0 = 0; j0 < Tp; j0 += kL) {  // gather + transpose the valid keys, a vector of keys at a time
    float tile[kL][128];  // kL keys × up to 128 dims
    const int64_t keys = std::min<int64_t>(kL, tv - j0);
    for (int64_t d0 = 0; d0 < D; d0 += 128) {
      const int64_t dims = std::min<int64_t>(128, D - d0);
      for (int64_t l = 0; l < kL; ++l) {
        if (l < keys) std::memcpy(tile[l], k.at(b, h, idx[j0 + l]) + d0, dims * sizeof(float));
        else std::fill(tile[l], tile[l] + dims, 0.0f);
      }
      for (int64_t d = 0; d < dims; ++d) {
        fv col;
        for (int64_t l = 0; l < kL; ++l) col[l] = tile[l][d];
        store(kt + (d0 + d) * Tp + j0, col);
      }
    }
  }
  load_queries(q, rot, b, h, N, Np, D, 1.0f / std::sqrt(static_cast<float>(D)), sc.q.data());
  const float* qm = sc.q.data();
  float* s = sc.s.data();
  for (int64_t i0 = 0; i0 < Np; i0 += kQB) {  // S = Q·Kt, 4 queries × one vector of keys per register block
    for (int64_t j0 = 0; j0 < Tp; j0 += kL) {
      fv acc[kQB] = {};
      for (int64_t d = 0; d < D; ++d) {
        const fv kr = load(kt + d * Tp + j0);
        for (int64_t r = 0; r < kQB; ++r) acc[r] += qm[(i0 + r) * D + d] * kr;
      }
      for (int64_t r = 0; r < kQB; ++r) store(s + (i0 + r) * Tp + j0, acc[r]);
    }
  }
  for (int64_t i = 0; i < N; ++i) {  // softmax over the valid keys of each row
    float* row = s + i * Tp;
    for (int64_t jj = tv; jj < Tp; ++jj) row[jj] = -INFINITY;  // padding keys: weight exactly 0
    fv mv = splat(-INFINITY);
    for (int64_t jj = 0; jj < Tp; jj += kL) {
      const fv x = load(row + jj);
      mv = x > mv ? x : mv;
    }
    const fv m = splat(hmax(mv));
    fv acc = {};
    for (int64_t jj = 0; jj < Tp; jj += kL) {
      const fv e = exp_nonpositive(load(row + jj) - m);
      store(row + jj, e);
      acc += e;
    }
    const float sum = hsum(acc);
    const fv inv = splat(sum > 0.0f ? 1.0f / sum : 0.0f);  // no valid key at all: a zero row
    for (int64_t jj = 0; jj < Tp; jj += kL) store(row + jj, load(row + jj) * inv);
  }
  for (int64_t i0 = 0; i0 < N; i0 += kQB) {  // out = P·V
    const int64_t rows = std::min<int64_t>(kQB, N - i0);
    if (D == 32) pv_block<32>(s, Tp, idx, tv, v, b, h, i0, rows, out);
    else if (D == 64) pv_block<64>(s, Tp, idx, tv, v, b, h, i0, rows, out);
    else if (D == 128) pv_block<128>(s, Tp, idx, tv, v, b, h, i0, rows, out);
    else if (D == 16 && kL <= 16) pv_block<16>(s, Tp, idx, tv, v, b, h, i0, rows, out);
    else
      for (int64_t r = 0; r < rows; ++r) pv_row_generic(s, Tp, idx, tv, v, b, h, i0 + r, D, out);
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
