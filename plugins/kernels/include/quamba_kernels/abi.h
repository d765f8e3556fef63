/* Shared conventions of the plain C ABI of quamba_kernels (no torch, no TensorRT).
 *
 * Every op header (<op>.h, named after quamba_edge/ops/<op>.py):
 *   - is C-callable (extern "C"), includes only this header (and through it <cuda_runtime.h>, <stdint.h>)
 *     and, where it takes several dtypes, dtype_codes.h;
 *   - exposes `cudaError_t quamba_<op>(const Quamba<Op>Params* p, cudaStream_t stream)` (or explicit
 *     arguments): raw device pointers, shapes and element strides (int64), fp32 scales (host values or
 *     device pointers as the header says), the stream. The call only enqueues work; it returns the launch
 *     error (cudaGetLastError) or cudaErrorInvalidValue for bad shapes; nothing is synchronised.
 *   - int8 tensors are `int8_t*`, fp16 tensors `uint16_t*` holding IEEE binary16 bits (so the header needs
 *     no cuda_fp16.h), fp32 `float*`.
 */
#ifndef QUAMBA_KERNELS_ABI_H
#define QUAMBA_KERNELS_ABI_H

#include <cuda_runtime.h>
#include <stdint.h>

#if defined(_WIN32)
#define QUAMBA_API __declspec(dllexport)
#else
#define QUAMBA_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
#define QUAMBA_EXTERN_C_BEGIN extern "C" {
#define QUAMBA_EXTERN_C_END }
#else
#define QUAMBA_EXTERN_C_BEGIN
#define QUAMBA_EXTERN_C_END
#endif

#endif /* QUAMBA_KERNELS_ABI_H */
