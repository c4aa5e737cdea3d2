// pybind11 module `_mfruntime_native`: the CPU kernels of csrc/ for mfruntime/engine/native.py.
//
// Arguments are raw addresses (tensor.data_ptr()), element strides and sizes: the Python side checks
// dtype, device, shapes and layout before calling, and keeps the tensors alive for the call. Passing
// addresses keeps the per-call cost to a few microseconds (a chunk step makes ~100 of these calls) and
// keeps this module free of any PyTorch build dependency. The GIL is released while a kernel runs.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>

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
  m.def("has_openmp", &has_openmp, "whether the kernels were built with OpenMP");
  m.attr("abi") = 1;  // bumped when a signature changes; engine/native.py checks it
}
