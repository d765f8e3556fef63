// torch binding of add_rms_norm (plugins/kernels/add_rms_norm.cu): the FP model's residual add + RMSNorm.
// torch.ops.quamba_kernels.add_rms_norm(hidden, residual, weight, eps, residual_in_fp32, y, residual_out) -> ()
// hidden float [..., d]; residual float [..., d] or None; weight float [d]; y float [..., d] (any float dtype:
// the norm is rounded to it once); residual_out [..., d] in the stream's dtype (fp32 for residual_in_fp32, else
// the promoted dtype of hidden and residual) or None (the sum is still rounded to that dtype before the norm).
#include "m2_binding_utils.h"
#include "quamba_kernels/add_rms_norm.h"

namespace {

void add_rms_norm(const at::Tensor& hidden, const std::optional<at::Tensor>& residual, const at::Tensor& weight,
                  double eps, bool residual_in_fp32, at::Tensor& y, const std::optional<at::Tensor>& residual_out) {
  QM2_CHECK(hidden.is_cuda() && hidden.dim() >= 1, "hidden must be a CUDA tensor [..., d]");
  const int64_t d = hidden.size(-1);
  QM2_CHECK(d >= 1 && d <= 16384, "d must be in [1, 16384], got ", d);
  QM2_CHECK(y.sizes() == hidden.sizes(), "y must have hidden's shape ", hidden.sizes(), ", got ", y.sizes());
  quamba_torch::check_same_device(hidden, y, "y");
  quamba_torch::check_same_device(hidden, weight, "weight");
  QM2_CHECK(weight.dim() == 1 && weight.numel() == d, "weight must be [", d, "], got ", weight.sizes());
  at::ScalarType stream_dtype = hidden.scalar_type();
  const at::Tensor hr = quamba_m2::as_rows(hidden, d, "hidden", false);
  at::Tensor rr;
  if (residual.has_value()) {
    QM2_CHECK(residual->sizes() == hidden.sizes(), "residual must have hidden's shape ", hidden.sizes());
    quamba_torch::check_same_device(hidden, *residual, "residual");
    rr = quamba_m2::as_rows(*residual, d, "residual", false);
    stream_dtype = c10::promoteTypes(stream_dtype, residual->scalar_type());
  }
  if (residual_in_fp32) stream_dtype = at::kFloat;
  const at::Tensor w = weight.contiguous();
  const at::Tensor yr = quamba_m2::as_rows(y, d, "y", true);
  at::Tensor orr;
  if (residual_out.has_value()) {
    QM2_CHECK(residual_out->sizes() == hidden.sizes(), "residual_out must have hidden's shape ", hidden.sizes());
    QM2_CHECK(residual_out->scalar_type() == stream_dtype, "residual_out must be ", c10::toString(stream_dtype),
              " (the residual stream's dtype), got ", c10::toString(residual_out->scalar_type()));
    quamba_torch::check_same_device(hidden, *residual_out, "residual_out");
    orr = quamba_m2::as_rows(*residual_out, d, "residual_out", true);
  }
  c10::cuda::CUDAGuard guard(hidden.device());
  QuambaAddRMSNormParams p{};
  quamba_m2::set_rows_hidden_residual(p, hr, rr, hidden, d);
  p.weight_dtype = quamba_m2::float_code(w, "weight");
  p.weight = w.data_ptr();
  p.eps = static_cast<float>(eps);
  p.y_dtype = quamba_m2::float_code(y, "y");
  p.y = yr.data_ptr();
  p.y_row_stride = yr.stride(0);
  // hidden and residual passed float_code, so the promoted stream dtype is one of the three
  p.residual_out_dtype = stream_dtype == at::kHalf       ? QUAMBA_DT_F16
                         : stream_dtype == at::kBFloat16 ? QUAMBA_DT_BF16
                                                         : QUAMBA_DT_F32;
  if (orr.defined()) {
    p.residual_out = orr.data_ptr();
    p.residual_out_row_stride = orr.stride(0);
  }
  if (p.rows == 0) return;
  QM2_CHECK(p.rows <= 0x7fffffffLL, "too many rows: ", p.rows);
  quamba_torch::check_cuda(quamba_add_rms_norm(&p, quamba_torch::stream()), "add_rms_norm");
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(quamba_kernels, m) {
  m.def(
      "add_rms_norm(Tensor hidden, Tensor? residual, Tensor weight, float eps, bool residual_in_fp32, "
      "Tensor(a!) y, Tensor(b!)? residual_out) -> ()");
}

TORCH_LIBRARY_IMPL(quamba_kernels, CUDA, m) { m.impl("add_rms_norm", &add_rms_norm); }
