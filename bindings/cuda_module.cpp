// pybind11 module `_mfruntime_native_cuda`: the CUDA kernels of csrc/cuda for mfruntime/engine/native.py.
// Same calling convention as the CPU module (bindings/native_module.cpp): device addresses, element
// strides and sizes, checked on the Python side; plus the dtype (0 f32, 1 f16, 2 bf16) and the CUDA stream
// (torch.cuda.current_stream().cuda_stream). Launches are asynchronous; a launch error raises RuntimeError.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <stdexcept>

#include "../csrc/cuda/ring_attention.h"

namespace py = pybind11;
using Strides = std::array<int64_t, 4>;
using mfr_cuda::DType;

namespace {

mfr_cuda::View4 view(std::uintptr_t ptr, const Strides& s) {
  return {reinterpret_cast<void*>(ptr), s[0], s[1], s[2], s[3]};
}

DType dtype(int code) {
  if (code < 0 || code > 2) throw std::invalid_argument("dtype code must be 0 (f32), 1 (f16) or 2 (bf16)");
  return static_cast<DType>(code);
}

void check(const char* err) {
  if (err != nullptr) throw std::runtime_error(std::string("mfruntime CUDA kernel: ") + err);
}

cudaStream_t stream_of(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

void ring_attention(int dt, std::uintptr_t q, Strides qs, std::uintptr_t k, Strides ks, std::uintptr_t v,
                    Strides vs, std::uintptr_t k_buf, std::uintptr_t v_buf, std::uintptr_t out, Strides os,
                    std::uintptr_t cis, int64_t cis_bs, std::uintptr_t valid, int64_t valid_bs, int64_t B, int64_t H,
                    int64_t N, int64_t T, int64_t D, int64_t offset, std::uintptr_t stream) {
  check(mfr_cuda::ring_attention(dtype(dt), view(q, qs), view(k, ks), view(v, vs), reinterpret_cast<void*>(k_buf),
                                 reinterpret_cast<void*>(v_buf), view(out, os), reinterpret_cast<const float*>(cis),
                                 cis_bs, reinterpret_cast<const uint8_t*>(valid), valid_bs, B, H, N, T, D, offset,
                                 stream_of(stream)));
}

void attend(int dt, std::uintptr_t q, Strides qs, std::uintptr_t k, Strides ks, std::uintptr_t v, Strides vs,
            std::uintptr_t out, Strides os, std::uintptr_t cis, int64_t cis_bs, std::uintptr_t valid, int64_t valid_bs,
            int64_t B, int64_t H, int64_t N, int64_t T, int64_t D, std::uintptr_t stream) {
  check(mfr_cuda::attend(dtype(dt), view(q, qs), view(k, ks), view(v, vs), view(out, os),
                         reinterpret_cast<const float*>(cis), cis_bs, reinterpret_cast<const uint8_t*>(valid),
                         valid_bs, B, H, N, T, D, stream_of(stream)));
}

void ring_write(int dt, std::uintptr_t k_buf, std::uintptr_t v_buf, std::uintptr_t k, Strides ks, std::uintptr_t v,
                Strides vs, int64_t B, int64_t H, int64_t N, int64_t T, int64_t D, int64_t chunk, int64_t ring_start,
                int64_t window, std::uintptr_t stream) {
  check(mfr_cuda::ring_write(dtype(dt), reinterpret_cast<void*>(k_buf), reinterpret_cast<void*>(v_buf), view(k, ks),
                             view(v, vs), B, H, N, T, D, chunk, ring_start, window, stream_of(stream)));
}

}  // namespace

PYBIND11_MODULE(_mfruntime_native_cuda, m) {
  m.doc() = "mfruntime native CUDA kernels: ring-cache attention, attention with key validity, ring write";
  m.def("ring_attention", &ring_attention);
  m.def("attend", &attend);
  m.def("ring_write", &ring_write);
  m.attr("abi") = 1;
}
