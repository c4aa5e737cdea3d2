// CUDA ring-cache attention of the mfruntime engine: the same three operations and tensor conventions as
// the CPU kernels (csrc/ring_attention.h), for float32, float16 and bfloat16 tensors on one device.
// Every launcher is asynchronous on ``stream`` and returns a CUDA error string, or nullptr on success.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

namespace mfr_cuda {

enum class DType : int { f32 = 0, f16 = 1, bf16 = 2 };

struct View4 {  // a strided 4-D tensor (B, H, N, D) of the call's dtype, element strides
  void* data;
  int64_t s0, s1, s2, s3;
};

// Rotate q and k by cis (cb, N, D/2, 2 floats), write rotated k and v into the contiguous buffers' rows
// [offset, offset + N), then out = softmax(q·Kᵀ/√D over valid keys)·V over all T rows.
const char* ring_attention(DType dt, View4 q, View4 k, View4 v, void* k_buf, void* v_buf, View4 out,
                           const float* cis, int64_t cis_batch_stride, const uint8_t* valid,
                           int64_t valid_batch_stride, int64_t B, int64_t H, int64_t N, int64_t T, int64_t D,
                           int64_t offset, cudaStream_t stream);

// Attention of q (rotated first when cis != nullptr) over strided k/v with T keys.
const char* attend(DType dt, View4 q, View4 k, View4 v, View4 out, const float* cis, int64_t cis_batch_stride,
                   const uint8_t* valid, int64_t valid_batch_stride, int64_t B, int64_t H, int64_t N, int64_t T,
                   int64_t D, cudaStream_t stream);

// Copy a chunk's k/v (strided, B, H, N, D) into ring slot (chunk mod window) of the contiguous buffers.
const char* ring_write(DType dt, void* k_buf, void* v_buf, View4 k, View4 v, int64_t B, int64_t H, int64_t N,
                       int64_t T, int64_t D, int64_t chunk, int64_t ring_start, int64_t window, cudaStream_t stream);

}  // namespace mfr_cuda
