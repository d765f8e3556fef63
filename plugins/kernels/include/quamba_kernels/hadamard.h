/* Float online Hadamard transform (a kernel helper, not a registry op): the W4A16 out_proj input's rotation on
 * torch-cuda (quamba_edge.ops.kernel_dispatch.hadamard). The ONNX graph keeps its MatMul with the dense matrix.
 *
 *   y = x @ M^T   (fp32 arithmetic, rounded once to y_dtype)
 *
 * with M the n x n orthonormal matrix of quamba_edge.quant.hadamard.hadamard_matrix(n) (n = b * 2^k,
 * M = kron(H_b, H_{2^k}) / sqrt(n)): what quant.hadamard.hadamard_kron(x) and ops.hadamard(x, M) compute, up to
 * fp32 summation order. Same machinery as quamba_quant_hadamard (quant_hadamard.h; both entries are in
 * quant_hadamard.cu and share one kernel body): a Walsh-Hadamard transform of each contiguous 2^k chunk (exact
 * +-1 butterflies in fp32), then the b x b base factor base_matrix[i][j] = M[i * 2^k, j * 2^k]
 * (= H_b[i][j] / sqrt(n), the 1/sqrt(n) included; for b = 1 the single entry 1/sqrt(n) scales the transform).
 *
 * x: [rows, n] of x_dtype (row stride free, elements contiguous); y: [rows, n] of y_dtype (row stride free,
 * elements contiguous, rows not overlapping one another nor x). Supported: base in {1, 12, 20, 28, 40},
 * n = base * 2^k, n <= 32768 (shared memory permitting); rows in [1, 2^31). cudaErrorInvalidValue otherwise.
 */
#ifndef QUAMBA_KERNELS_HADAMARD_H
#define QUAMBA_KERNELS_HADAMARD_H

#include "quamba_kernels/abi.h"

#include "quamba_kernels/dtype_codes.h"

QUAMBA_EXTERN_C_BEGIN

typedef struct QuambaHadamardParams {
  int64_t rows;
  int n;
  int base;                 /* b with n = b * 2^k (1 for a pure power of two) */
  const float* base_matrix; /* device fp32 [b, b]: M[i * 2^k, j * 2^k] */
  int x_dtype;              /* QUAMBA_DT_F32 / _F16 / _BF16 */
  const void* x;
  int64_t x_row_stride;
  int y_dtype;              /* QUAMBA_DT_F32 / _F16 / _BF16 (round to nearest even) */
  void* y;
  int64_t y_row_stride;
} QuambaHadamardParams;

QUAMBA_API cudaError_t quamba_hadamard(const QuambaHadamardParams* p, cudaStream_t stream);

QUAMBA_EXTERN_C_END

#endif /* QUAMBA_KERNELS_HADAMARD_H */
