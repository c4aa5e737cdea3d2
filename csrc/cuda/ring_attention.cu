// CUDA kernels for ring-cache attention (declarations: csrc/cuda/ring_attention.h).
//
// Attention: one warp per (batch, head, query). The query row is rotated and scaled into shared memory;
// each lane takes every 32nd key, keeps a running max, normaliser and a D-wide output accumulator (online
// softmax, FlashAttention-style rescaling), and the warp merges the 32 partial results with shuffles.
// Inputs and outputs are float32, float16 or bfloat16; all arithmetic is float32. Head dims 16, 32, 64 and
// 128 are instantiated (the presets use 32 and 64).
#include "ring_attention.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>

namespace mfr_cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 4;

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_f<__half>(float x) { return __float2half(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16(x); }

template <typename T>
__device__ __forceinline__ const T* row(const View4& v, int64_t b, int64_t h, int64_t n) {
  return static_cast<const T*>(v.data) + b * v.s0 + h * v.s1 + n * v.s2;
}

// Rotated keys and the values of the chunk into the scratch rows; one thread per (b, h, n, pair).
template <typename T>
__global__ void write_scratch(View4 k, View4 v, T* k_buf, T* v_buf, const float* cis, int64_t cis_bs, int64_t B,
                              int64_t H, int64_t N, int64_t T_len, int64_t D, int64_t offset) {
  const int64_t pairs = D / 2;
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= B * H * N * pairs) return;
  const int64_t j = i % pairs, n = (i / pairs) % N, h = (i / (pairs * N)) % H, b = i / (pairs * N * H);
  const T* kr = row<T>(k, b, h, n);
  const T* vr = row<T>(v, b, h, n);
  const float* cs = cis + b * cis_bs + (n * pairs + j) * 2;
  const float a = to_f(kr[2 * j * k.s3]), c = to_f(kr[(2 * j + 1) * k.s3]);
  const int64_t dst = ((b * H + h) * T_len + offset + n) * D + 2 * j;
  k_buf[dst] = from_f<T>(a * cs[0] - c * cs[1]);
  k_buf[dst + 1] = from_f<T>(a * cs[1] + c * cs[0]);
  v_buf[dst] = vr[2 * j * v.s3];
  v_buf[dst + 1] = vr[(2 * j + 1) * v.s3];
}

template <typename T, int D>
__global__ void attend_warp(View4 q, View4 k, View4 v, View4 out, const float* cis, int64_t cis_bs,
                            const uint8_t* valid, int64_t valid_bs, int64_t B, int64_t H, int64_t N, int64_t T_len) {
  __shared__ float qs[kWarpsPerBlock][D];
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t task = blockIdx.x * static_cast<int64_t>(kWarpsPerBlock) + warp;  // (b, h, n)
  const bool active = task < B * H * N;
  const int64_t n = active ? task % N : 0, h = active ? (task / N) % H : 0, b = active ? task / (N * H) : 0;
  const float scale = rsqrtf(static_cast<float>(D));
  if (active) {
    const T* qr = row<T>(q, b, h, n);
    for (int j = lane; j < D / 2; j += kWarp) {
      const float a = to_f(qr[2 * j * q.s3]), c = to_f(qr[(2 * j + 1) * q.s3]);
      if (cis != nullptr) {
        const float* cs = cis + b * cis_bs + (n * (D / 2) + j) * 2;
        qs[warp][2 * j] = (a * cs[0] - c * cs[1]) * scale;
        qs[warp][2 * j + 1] = (a * cs[1] + c * cs[0]) * scale;
      } else {
        qs[warp][2 * j] = a * scale;
        qs[warp][2 * j + 1] = c * scale;
      }
    }
  }
  __syncwarp();
  if (!active) return;
  float m = -INFINITY, l = 0.0f, acc[D];
#pragma unroll
  for (int d = 0; d < D; ++d) acc[d] = 0.0f;
  const uint8_t* ok = valid + b * valid_bs;
  for (int64_t j = lane; j < T_len; j += kWarp) {
    if (!ok[j]) continue;
    const T* kr = row<T>(k, b, h, j);
    float s = 0.0f;
#pragma unroll
    for (int d = 0; d < D; ++d) s += qs[warp][d] * to_f(kr[d * k.s3]);
    const float m_new = fmaxf(m, s);
    const float correction = __expf(m - m_new), p = __expf(s - m_new);
    const T* vr = row<T>(v, b, h, j);
    l = l * correction + p;
#pragma unroll
    for (int d = 0; d < D; ++d) acc[d] = acc[d] * correction + p * to_f(vr[d * v.s3]);
    m = m_new;
  }
  // Merge the lanes' partial softmaxes: rescale each to the warp's max, then sum.
  float m_all = m;
  for (int o = kWarp / 2; o > 0; o /= 2) m_all = fmaxf(m_all, __shfl_xor_sync(0xffffffffu, m_all, o));
  const float f = (m == -INFINITY) ? 0.0f : __expf(m - m_all);
  l *= f;
  for (int o = kWarp / 2; o > 0; o /= 2) l += __shfl_xor_sync(0xffffffffu, l, o);
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
  T* orow = static_cast<T*>(out.data) + b * out.s0 + h * out.s1 + n * out.s2;
#pragma unroll
  for (int d = 0; d < D; ++d) {
    float x = acc[d] * f;
    for (int o = kWarp / 2; o > 0; o /= 2) x += __shfl_xor_sync(0xffffffffu, x, o);
    if (lane == 0) orow[d * out.s3] = from_f<T>(x * inv);
  }
}

template <typename T>
__global__ void ring_write_kernel(T* k_buf, T* v_buf, View4 k, View4 v, int64_t B, int64_t H, int64_t N,
                                  int64_t T_len, int64_t D, int64_t first) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= B * H * N * D) return;
  const int64_t d = i % D, n = (i / D) % N, h = (i / (D * N)) % H, b = i / (D * N * H);
  const int64_t dst = ((b * H + h) * T_len + first + n) * D + d;
  k_buf[dst] = row<T>(k, b, h, n)[d * k.s3];
  v_buf[dst] = row<T>(v, b, h, n)[d * v.s3];
}

template <typename T>
const char* launch_attend(View4 q, View4 k, View4 v, View4 out, const float* cis, int64_t cis_bs,
                          const uint8_t* valid, int64_t valid_bs, int64_t B, int64_t H, int64_t N, int64_t T_len,
                          int64_t D, cudaStream_t stream) {
  const int64_t tasks = B * H * N;
  const dim3 grid(static_cast<unsigned>((tasks + kWarpsPerBlock - 1) / kWarpsPerBlock)), block(kWarp * kWarpsPerBlock);
  switch (D) {
    case 16: attend_warp<T, 16><<<grid, block, 0, stream>>>(q, k, v, out, cis, cis_bs, valid, valid_bs, B, H, N, T_len); break;
    case 32: attend_warp<T, 32><<<grid, block, 0, stream>>>(q, k, v, out, cis, cis_bs, valid, valid_bs, B, H, N, T_len); break;
    case 64: attend_warp<T, 64><<<grid, block, 0, stream>>>(q, k, v, out, cis, cis_bs, valid, valid_bs, B, H, N, T_len); break;
    case 128: attend_warp<T, 128><<<grid, block, 0, stream>>>(q, k, v, out, cis, cis_bs, valid, valid_bs, B, H, N, T_len); break;
    default: return "head dim must be 16, 32, 64 or 128 for the CUDA kernels";
  }
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

template <typename T>
const char* ring_attention_t(View4 q, View4 k, View4 v, void* k_buf, void* v_buf, View4 out, const float* cis,
                             int64_t cis_bs, const uint8_t* valid, int64_t valid_bs, int64_t B, int64_t H, int64_t N,
                             int64_t T_len, int64_t D, int64_t offset, cudaStream_t stream) {
  const int64_t work = B * H * N * (D / 2);
  write_scratch<T><<<static_cast<unsigned>((work + 255) / 256), 256, 0, stream>>>(
      k, v, static_cast<T*>(k_buf), static_cast<T*>(v_buf), cis, cis_bs, B, H, N, T_len, D, offset);
  const View4 kb{k_buf, H * T_len * D, T_len * D, D, 1}, vb{v_buf, H * T_len * D, T_len * D, D, 1};
  return launch_attend<T>(q, kb, vb, out, cis, cis_bs, valid, valid_bs, B, H, N, T_len, D, stream);
}

template <typename T>
const char* ring_write_t(void* k_buf, void* v_buf, View4 k, View4 v, int64_t B, int64_t H, int64_t N, int64_t T_len,
                         int64_t D, int64_t chunk, int64_t ring_start, int64_t window, cudaStream_t stream) {
  const int64_t slot = ((chunk % window) + window) % window;
  const int64_t work = B * H * N * D;
  ring_write_kernel<T><<<static_cast<unsigned>((work + 255) / 256), 256, 0, stream>>>(
      static_cast<T*>(k_buf), static_cast<T*>(v_buf), k, v, B, H, N, T_len, D, ring_start + slot * N);
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

}  // namespace

const char* ring_attention(DType dt, View4 q, View4 k, View4 v, void* k_buf, void* v_buf, View4 out,
                           const float* cis, int64_t cis_bs, const uint8_t* valid, int64_t valid_bs, int64_t B,
                           int64_t H, int64_t N, int64_t T, int64_t D, int64_t offset, cudaStream_t stream) {
  switch (dt) {
    case DType::f32: return ring_attention_t<float>(q, k, v, k_buf, v_buf, out, cis, cis_bs, valid, valid_bs, B, H, N, T, D, offset, stream);
    case DType::f16: return ring_attention_t<__half>(q, k, v, k_buf, v_buf, out, cis, cis_bs, valid, valid_bs, B, H, N, T, D, offset, stream);
    case DType::bf16: return ring_attention_t<__nv_bfloat16>(q, k, v, k_buf, v_buf, out, cis, cis_bs, valid, valid_bs, B, H, N, T, D, offset, stream);
  }
  return "unknown dtype";
}

const char* attend(DType dt, View4 q, View4 k, View4 v, View4 out, const float* cis, int64_t cis_bs,
                   const uint8_t* valid, int64_t valid_bs, int64_t B, int64_t H, int64_t N, int64_t T, int64_t D,
                   cudaStream_t stream) {
  switch (dt) {
    case DType::f32: return launch_attend<float>(q, k, v, out, cis, cis_bs, valid, valid_bs, B, H, N, T, D, stream);
    case DType::f16: return launch_attend<__half>(q, k, v, out, cis, cis_bs, valid, valid_bs, B, H, N, T, D, stream);
    case DType::bf16: return launch_attend<__nv_bfloat16>(q, k, v, out, cis, cis_bs, valid, valid_bs, B, H, N, T, D, stream);
  }
  return "unknown dtype";
}

const char* ring_write(DType dt, void* k_buf, void* v_buf, View4 k, View4 v, int64_t B, int64_t H, int64_t N,
                       int64_t T, int64_t D, int64_t chunk, int64_t ring_start, int64_t window, cudaStream_t stream) {
  switch (dt) {
    case DType::f32: return ring_write_t<float>(k_buf, v_buf, k, v, B, H, N, T, D, chunk, ring_start, window, stream);
    case DType::f16: return ring_write_t<__half>(k_buf, v_buf, k, v, B, H, N, T, D, chunk, ring_start, window, stream);
    case DType::bf16: return ring_write_t<__nv_bfloat16>(k_buf, v_buf, k, v, B, H, N, T, D, chunk, ring_start, window, stream);
  }
  return "unknown dtype";
}

}  // namespace mfr_cuda
