// torch binding of quant_hadamard (plugins/kernels/quant_hadamard.cu).
// torch.ops.quamba_kernels.quant_hadamard(x, matrix, out_scale, y) -> ()
// x float (fp32 / fp16 / bf16) [..., n]; y int8 [..., n]; matrix fp32 on the device: the n x n orthonormal
// matrix M (quamba_edge.quant.hadamard.hadamard_matrix(n)), or already its b x b base factor
// M[i * 2^k, j * 2^k] (what a deployment keeps). n = 12 * 2^k, 40 * 2^k or 2^k (also 20 / 28 * 2^k), the
// base b chosen in the order of quamba_edge.quant.hadamard.hadamard_factors.
// torch.ops.quamba_kernels.hadamard(x, matrix, y) -> ()
// the float-output helper (quamba_kernels/hadamard.h; W4A16's out_proj input on torch-cuda): y = x @ M^T as
// fp32 / fp16 / bf16 [..., n] (fp32 arithmetic, rounded once to y's dtype); x and matrix as above.
#include "m2_binding_utils.h"
#include "quamba_kernels/hadamard.h"

#include <ATen/MemoryOverlap.h>
#include "quamba_kernels/quant_hadamard.h"

namespace {

bool pow2(int64_t v) { return v >= 1 && (v & (v - 1)) == 0; }

int64_t base_of(int64_t n) {
  if (n % 12 == 0 && pow2(n / 12)) return 12;
  if (n % 40 == 0 && pow2(n / 40)) return 40;
  if (pow2(n)) return 1;
  if (n % 20 == 0 && pow2(n / 20)) return 20;
  if (n % 28 == 0 && pow2(n / 28)) return 28;
  QM2_CHECK(false, "unsupported Hadamard size ", n, ": supported sizes are 12*2^k, 40*2^k, 2^k (20*2^k, 28*2^k)");
  return 0;
}

// The b x b base factor M[i * 2^k, j * 2^k] of the n x n matrix, or the matrix itself when it already is that.
at::Tensor base_factor(const at::Tensor& x, const at::Tensor& matrix, int64_t n, int64_t b) {
  quamba_torch::check_same_device(x, matrix, "matrix");
  QM2_CHECK(matrix.dim() == 2 && matrix.scalar_type() == at::kFloat, "matrix must be fp32 2-D");
  if (matrix.size(0) == n && matrix.size(1) == n) {
    using at::indexing::Slice;
    const int64_t pw = n / b;
    return matrix.index({Slice(0, n, pw), Slice(0, n, pw)}).contiguous();
  }
  QM2_CHECK(matrix.size(0) == b && matrix.size(1) == b, "matrix must be [", n, ", ", n, "] (or its base factor [",
            b, ", ", b, "]), got ", matrix.sizes());
  return matrix.contiguous();
}

void quant_hadamard(const at::Tensor& x, const at::Tensor& matrix, double out_scale, at::Tensor& y) {
  QM2_CHECK(x.is_cuda() && x.dim() >= 1, "x must be a CUDA tensor [..., n]");
  const int64_t n = x.size(-1);
  const int64_t b = base_of(n);
  quamba_torch::check_tensor(y, "y", at::kChar, x.dim());
  QM2_CHECK(y.sizes() == x.sizes(), "y must have x's shape ", x.sizes(), ", got ", y.sizes());
  quamba_torch::check_same_device(x, y, "y");
  const at::Tensor base = base_factor(x, matrix, n, b);
  const at::Tensor xr = quamba_m2::as_rows(x, n, "x", false);
  const at::Tensor yr = quamba_m2::as_rows(y, n, "y", true);
  c10::cuda::CUDAGuard guard(x.device());
  QuambaQuantHadamardParams p{};
  p.rows = xr.size(0);
  p.n = static_cast<int>(n);
  p.base = static_cast<int>(b);
  p.base_matrix = base.data_ptr<float>();
  p.x_dtype = quamba_m2::float_code(x, "x");
  p.x = xr.data_ptr();
  p.x_row_stride = xr.stride(0);
  p.out_scale = static_cast<float>(out_scale);
  p.y = yr.data_ptr<int8_t>();
  p.y_row_stride = yr.stride(0);
  if (p.rows == 0) return;
  quamba_torch::check_cuda(quamba_quant_hadamard(&p, quamba_torch::stream()), "quant_hadamard");
}

void hadamard(const at::Tensor& x, const at::Tensor& matrix, at::Tensor& y) {
  QM2_CHECK(x.is_cuda() && x.dim() >= 1, "x must be a CUDA tensor [..., n]");
  const int64_t n = x.size(-1);
  const int64_t b = base_of(n);
  QM2_CHECK(y.is_cuda(), "y must be a CUDA tensor");
  QM2_CHECK(y.sizes() == x.sizes(), "y must have x's shape ", x.sizes(), ", got ", y.sizes());
  quamba_torch::check_same_device(x, y, "y");
  const int y_dtype = quamba_m2::float_code(y, "y");
  at::assert_no_overlap(y, x);  // rows are transformed concurrently: y must not alias x
  const at::Tensor base = base_factor(x, matrix, n, b);
  const at::Tensor xr = quamba_m2::as_rows(x, n, "x", false);
  const at::Tensor yr = quamba_m2::as_rows(y, n, "y", true);
  c10::cuda::CUDAGuard guard(x.device());
  QuambaHadamardParams p{};
  p.rows = xr.size(0);
  p.n = static_cast<int>(n);
  p.base = static_cast<int>(b);
  p.base_matrix = base.data_ptr<float>();
  p.x_dtype = quamba_m2::float_code(x, "x");
  p.x = xr.data_ptr();
  p.x_row_stride = xr.stride(0);
  p.y_dtype = y_dtype;
  p.y = yr.data_ptr();
  p.y_row_stride = yr.stride(0);
  if (p.rows == 0) return;
  quamba_torch::check_cuda(quamba_hadamard(&p, quamba_torch::stream()), "hadamard");
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(quamba_kernels, m) {
  m.def("quant_hadamard(Tensor x, Tensor matrix, float out_scale, Tensor(a!) y) -> ()");
  m.def("hadamard(Tensor x, Tensor matrix, Tensor(a!) y) -> ()");
}

TORCH_LIBRARY_IMPL(quamba_kernels, CUDA, m) {
  m.impl("quant_hadamard", &quant_hadamard);
  m.impl("hadamard", &hadamard);
}
