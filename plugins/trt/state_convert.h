// Element-wise fp16 <-> fp32 conversion of an SSM state (the Mamba1 kernels keep a float state in fp32; the
// TensorRT graph carries it in fp16). Round to nearest even, as torch's .to(float16).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace quamba_trt {

cudaError_t half_to_float(const uint16_t* in, float* out, int64_t n, cudaStream_t stream);
cudaError_t float_to_half(const float* in, uint16_t* out, int64_t n, cudaStream_t stream);

}  // namespace quamba_trt
