// Ring-cache attention kernels of the mfruntime engine: the native side of mfruntime/engine/kernels.py.
//
// Tensors are float32, described by a pointer and element strides, in the (B, H, N, D) order the Python side
// uses: B batch, H heads, N queries (the chunk's tokens), T keys, D head dim (even). A KV buffer holds
// [sink | ring: W slots of N tokens | scratch: the current chunk (N)] and must be contiguous (B, H, T, D).
// Rotations ``cis`` are (cb, N, D/2, 2) floats (cos, sin) with cb 1 or B; validity masks are (vb, T) bytes
// (1 = attend) with vb 1 or B. A batch stride of 0 broadcasts over the batch.
#pragma once

#include <cstdint>

namespace mfr {

struct View4 {  // a strided 4-D float tensor (B, H, N, D)
  float* data;
  int64_t s0, s1, s2, s3;
  float* at(int64_t b, int64_t h, int64_t n) const { return data + b * s0 + h * s1 + n * s2; }
};

struct Rotation {  // (cb, N, D/2, 2) contiguous cos/sin pairs; data == nullptr: no rotation
  const float* data;
  int64_t batch_stride;
};

struct Validity {  // (vb, T) bytes, 1 = the key holds something
  const uint8_t* data;
  int64_t batch_stride;
};

// Self-attention of a chunk over its ring cache (engine/kernels.py: ring_attention). Rotates q and k by
// ``rot``, writes the rotated keys and the values into the buffers' scratch rows [offset, offset + N), then
// out = softmax(q·Kᵀ/√D, keys masked by ``valid``)·V over all T rows of the buffers.
void ring_attention_cpu(View4 q, View4 k, View4 v, float* k_buf, float* v_buf, View4 out, Rotation rot,
                        Validity valid, int64_t B, int64_t H, int64_t N, int64_t T, int64_t D, int64_t offset,
                        int threads);

// Attention of queries (rotated by ``rot`` first when rot.data is set) over strided keys/values of length T.
void attend_cpu(View4 q, View4 k, View4 v, View4 out, Rotation rot, Validity valid, int64_t B, int64_t H,
                int64_t N, int64_t T, int64_t D, int threads);

// The commit: copy a chunk's keys/values (strided, B, H, N, D) into ring slot (chunk mod window) of the
// contiguous buffers, whose ring starts at row ``ring_start``.
void ring_write_cpu(float* k_buf, float* v_buf, View4 k, View4 v, int64_t B, int64_t H, int64_t N, int64_t T,
                    int64_t D, int64_t chunk, int64_t ring_start, int64_t window, int threads);

}  // namespace mfr
