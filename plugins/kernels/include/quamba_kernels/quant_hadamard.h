/* QuantHadamard (quamba_edge/ops/quant_hadamard.py): online orthonormal Hadamard transform of each row,
 * fused with static int8 quantization (clamped: spec pitfall F.12).
 *
 * Contract = the docstring of quamba_edge.ops.quant_hadamard.quant_hadamard:
 *   q = clamp(round_half_even((x @ M^T) / out_scale), -128, 127)
 * with M the n x n orthonormal matrix of quamba_edge.quant.hadamard.hadamard_matrix(n) (n = b * 2^k,
 * M = kron(H_b, H_{2^k}) / sqrt(n)). The kernel computes the same product as a fast Walsh-Hadamard
 * transform of each contiguous length-2^k chunk (exact +-1 butterflies in fp32) followed by the b x b
 * base factor taken FROM THE MATRIX ITSELF: base_matrix[i][j] = M[i * 2^k, j * 2^k] (= H_b[i][j] / sqrt(n),
 * the 1/sqrt(n) included), so the online transform uses the very entries fused offline. int8 results
 * equal the reference within +-1 LSB (fp32 summation order only).
 *
 * x: [rows, n] of x_dtype (row stride free, elements contiguous); y: int8 [rows, n] (row stride free).
 * Supported: base in {1, 12, 20, 28, 40}, n = base * 2^k, n <= 32768 (shared memory permitting).
 */
#ifndef QUAMBA_KERNELS_QUANT_HADAMARD_H
#define QUAMBA_KERNELS_QUANT_HADAMARD_H

#include "quamba_kernels/abi.h"

#include "quamba_kernels/dtype_codes.h"

QUAMBA_EXTERN_C_BEGIN

typedef struct QuambaQuantHadamardParams {
  int64_t rows;
  int n;
  int base;                 /* b with n = b * 2^k (1 for a pure power of two) */
  const float* base_matrix; /* device fp32 [b, b]: M[i * 2^k, j * 2^k] */
  int x_dtype;              /* QUAMBA_DT_F32 / _F16 / _BF16 */
  const void* x;
  int64_t x_row_stride;
  float out_scale;          /* host: out_proj:input */
  int8_t* y;
  int64_t y_row_stride;
} QuambaQuantHadamardParams;

QUAMBA_API cudaError_t quamba_quant_hadamard(const QuambaQuantHadamardParams* p, cudaStream_t stream);

QUAMBA_EXTERN_C_END

#endif /* QUAMBA_KERNELS_QUANT_HADAMARD_H */
