// fp16 <-> fp32 state conversion (state_convert.h). Grid-stride loops: any n, few blocks.
#include <cuda_fp16.h>

#include "state_convert.h"

namespace quamba_trt {
namespace {

__global__ void half_to_float_kernel(const __half* in, float* out, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = __half2float(in[i]);
}

__global__ void float_to_half_kernel(const float* in, __half* out, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = __float2half_rn(in[i]);
}

unsigned grid_for(int64_t n) {
  const int64_t blocks = (n + 255) / 256;
  return static_cast<unsigned>(blocks < 1024 ? (blocks < 1 ? 1 : blocks) : 1024);
}

}  // namespace

cudaError_t half_to_float(const uint16_t* in, float* out, int64_t n, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  half_to_float_kernel<<<grid_for(n), 256, 0, stream>>>(reinterpret_cast<const __half*>(in), out, n);
  return cudaGetLastError();
}

cudaError_t float_to_half(const float* in, uint16_t* out, int64_t n, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  float_to_half_kernel<<<grid_for(n), 256, 0, stream>>>(in, reinterpret_cast<__half*>(out), n);
  return cudaGetLastError();
}

}  // namespace quamba_trt
