// pybind11 module `_mfruntime_native`: the CPU kernels of csrc/ for mfruntime/engine/native.py (attention
// over the ring cache) and mfruntime/engine/native_block.py (fused block sublayers).
//
// Arguments are raw addresses (tensor.data_ptr()), element strides and sizes: the Python side checks
// dtype, device, shapes and layout before calling, and keeps the tensors alive for the call. Passing
// addresses keeps the per-call cost to a few microseconds (a chunk step makes ~100 of these calls) and
// keeps this module free of any PyTorch build dependency. The GIL is released while a kernel runs.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <vector>

#include <array>
#include <cstdint>
#include <stdexcept>

#include "../csrc/block_ops.h"
#include "../csrc/layer_step.h"
#include "../csrc/ring_attention.h"

namespace py = pybind11;
using Strides = std::array<int64_t, 4>;

namespace {

mfr::View4 view(std::uintptr_t ptr, const Strides& s) {
  return {reinterpret_cast<float*>(ptr), s[0], s[1], s[2], s[3]};
}

void ring_attention(std::uintptr_t q, Strides qs, std::uintptr_t k, Strides ks, std::uintptr_t v, Strides vs,
                    std::uintptr_t k_buf, std::uintptr_t v_buf, std::uintptr_t out, Strides os, std::uintptr_t cis,
                    int64_t cis_batch_stride, std::uintptr_t valid, int64_t valid_batch_stride, int64_t B, int64_t H,
                    int64_t N, int64_t T, int64_t D, int64_t offset, int threads) {
  py::gil_scoped_release nogil;
  mfr::ring_attention_cpu(view(q, qs), view(k, ks), view(v, vs), reinterpret_cast<float*>(k_buf),
                          reinterpret_cast<float*>(v_buf), view(out, os),
                          {reinterpret_cast<const float*>(cis), cis_batch_stride},
                          {reinterpret_cast<const uint8_t*>(valid), valid_batch_stride}, B, H, N, T, D, offset, threads);
}

void attend(std::uintptr_t q, Strides qs, std::uintptr_t k, Strides ks, std::uintptr_t v, Strides vs,
            std::uintptr_t out, Strides os, std::uintptr_t cis, int64_t cis_batch_stride, std::uintptr_t valid,
            int64_t valid_batch_stride, int64_t B, int64_t H, int64_t N, int64_t T, int64_t D, int threads) {
  py::gil_scoped_release nogil;
  mfr::attend_cpu(view(q, qs), view(k, ks), view(v, vs), view(out, os),
                  {reinterpret_cast<const float*>(cis), cis_batch_stride},
                  {reinterpret_cast<const uint8_t*>(valid), valid_batch_stride}, B, H, N, T, D, threads);
}

void ring_write(std::uintptr_t k_buf, std::uintptr_t v_buf, std::uintptr_t k, Strides ks, std::uintptr_t v,
                Strides vs, int64_t B, int64_t H, int64_t N, int64_t T, int64_t D, int64_t chunk, int64_t ring_start,
                int64_t window, int threads) {
  py::gil_scoped_release nogil;
  mfr::ring_write_cpu(reinterpret_cast<float*>(k_buf), reinterpret_cast<float*>(v_buf), view(k, ks), view(v, vs),
                      B, H, N, T, D, chunk, ring_start, window, threads);
}

void pack_weight(std::uintptr_t w, int64_t n, int64_t k, std::uintptr_t wp) {
  py::gil_scoped_release nogil;
  mfr::pack_weight(reinterpret_cast<const float*>(w), n, k, reinterpret_cast<float*>(wp));
}

void linear(std::uintptr_t x, int64_t ldx, std::uintptr_t wp, std::uintptr_t bias, std::uintptr_t y, int64_t ldy,
            int64_t m, int64_t k, int64_t n, int epilogue, std::uintptr_t r, int64_t ldr, std::uintptr_t g,
            int64_t g_stride, int64_t rows_per_gate, int threads) {
  if (epilogue < 0 || epilogue > 3) throw std::invalid_argument("epilogue must be 0..3");
  if (n % 32 != 0) throw std::invalid_argument("linear: N must be a multiple of 32");
  py::gil_scoped_release nogil;
  mfr::linear(reinterpret_cast<const float*>(x), ldx, reinterpret_cast<const float*>(wp),
              reinterpret_cast<const float*>(bias), reinterpret_cast<float*>(y), ldy, m, k, n,
              static_cast<mfr::Epilogue>(epilogue), reinterpret_cast<const float*>(r), ldr,
              reinterpret_cast<const float*>(g), g_stride, rows_per_gate, threads);
}

void layer_norm_modulate(std::uintptr_t x, int64_t ldx, std::uintptr_t out, int64_t m, int64_t d, float eps,
                         std::uintptr_t w, std::uintptr_t b, std::uintptr_t shift, std::uintptr_t scale,
                         int64_t mod_stride, int64_t rows_per_mod, int threads) {
  py::gil_scoped_release nogil;
  mfr::layer_norm_modulate(reinterpret_cast<const float*>(x), ldx, reinterpret_cast<float*>(out), m, d, eps,
                           reinterpret_cast<const float*>(w), reinterpret_cast<const float*>(b),
                           reinterpret_cast<const float*>(shift), reinterpret_cast<const float*>(scale),
                           mod_stride, rows_per_mod, threads);
}

// A StreamLayer from its weights part (built once per block: 20 addresses, then D, hidden, H) and this call's
// part (25 values, in the order of the struct's fields from h on).
mfr::StreamLayer stream_layer(const std::vector<int64_t>& w, const std::vector<int64_t>& c) {
  if (w.size() != 23 || c.size() != 25) throw std::invalid_argument("layer_step: 23 weight and 25 call values per stream");
  auto f = [](int64_t v) { return reinterpret_cast<const float*>(static_cast<std::uintptr_t>(v)); };
  auto m = [](int64_t v) { return reinterpret_cast<float*>(static_cast<std::uintptr_t>(v)); };
  auto u = [](int64_t v) { return reinterpret_cast<const uint8_t*>(static_cast<std::uintptr_t>(v)); };
  mfr::StreamLayer s{};
  s.w_qkv = f(w[0]); s.b_qkv = f(w[1]); s.w_proj = f(w[2]); s.b_proj = f(w[3]); s.w_xq = f(w[4]); s.b_xq = f(w[5]);
  s.w_xo = f(w[6]); s.b_xo = f(w[7]); s.w_pq = f(w[8]); s.b_pq = f(w[9]); s.w_po = f(w[10]); s.b_po = f(w[11]);
  s.w_fc1 = f(w[12]); s.b_fc1 = f(w[13]); s.w_fc2 = f(w[14]); s.b_fc2 = f(w[15]);
  s.nx_w = f(w[16]); s.nx_b = f(w[17]); s.np_w = f(w[18]); s.np_b = f(w[19]);
  s.D = w[20]; s.hidden = w[21]; s.H = w[22];
  if (s.D % 32 != 0 || s.hidden % 32 != 0 || s.H <= 0 || s.D % s.H != 0)
    throw std::invalid_argument("layer_step: width and MLP width must be multiples of 32, heads must divide width");
  s.h = m(c[0]); s.B = c[1]; s.N = c[2]; s.mod = f(c[3]); s.mod_stride = c[4];
  s.k_buf = m(c[5]); s.v_buf = m(c[6]); s.T = c[7]; s.offset = c[8]; s.cis = f(c[9]); s.cis_t = f(c[10]);
  s.cis_stride = c[11]; s.valid = u(c[12]); s.valid_stride = c[13]; s.pk = f(c[14]); s.pv = f(c[15]); s.M = c[16];
  s.pk_s0 = c[17]; s.pk_s1 = c[18]; s.pk_s2 = c[19]; s.pv_s0 = c[20]; s.pv_s1 = c[21]; s.pv_s2 = c[22];
  s.ph_valid = u(c[23]); s.ph_valid_stride = c[24];
  return s;
}

void layer_step(const std::vector<int64_t>& w0, const std::vector<int64_t>& c0, const std::vector<int64_t>& w1,
                const std::vector<int64_t>& c1, int threads) {
  mfr::StreamLayer s[2];
  s[0] = stream_layer(w0, c0);
  int count = 1;
  if (!w1.empty()) {
    s[1] = stream_layer(w1, c1);
    count = 2;
  }
  py::gil_scoped_release nogil;
  mfr::layer_step(s, count, threads);
}

bool has_openmp() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

}  // namespace

PYBIND11_MODULE(_mfruntime_native, m) {
  m.doc() = "mfruntime native CPU kernels: ring-cache attention, attention with key validity, ring write";
  m.def("ring_attention", &ring_attention, "rotate, write the chunk into the scratch rows, attend over the buffer");
  m.def("attend", &attend, "attention with a key-validity mask (queries rotated first when cis != 0)");
  m.def("ring_write", &ring_write, "copy a chunk's keys/values into ring slot chunk mod window");
  m.def("pack_weight", &pack_weight, "W (N × K) → Wp (K × N), the linear kernel's layout");
  m.def("linear", &linear, "Y = epilogue(X·Wp + b): 0 bias, 1 GELU (tanh), 2 residual, 3 gated residual");
  m.def("layer_norm_modulate", &layer_norm_modulate, "layer norm (affine optional) fused with adaLN modulation");
  m.def("layer_step", &layer_step, "one whole layer of a chunk step for one or two streams (csrc/layer_step.h)");
  m.def("has_openmp", &has_openmp, "whether the kernels were built with OpenMP");
  m.attr("abi") = 4;  // bumped when a signature changes; engine/native.py checks it
}
