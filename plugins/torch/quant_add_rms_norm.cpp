// torch binding of quant_add_rms_norm (plugins/kernels/quant_add_rms_norm.cu).
// torch.ops.quamba_kernels.quant_add_rms_norm(hidden, residual, weight, eps, out_scale, y, residual_out) -> ()
// hidden float [..., d]; residual float [..., d] or None; weight float [d] or None; y int8 [..., d] when
// out_scale is given, else fp16; residual_out [..., d] fp32 (residual_in_fp32) or hidden's dtype.
#include "m2_binding_utils.h"
#include "quamba_kernels/quant_add_rms_norm.h"

namespace {

void quant_add_rms_norm(const at::Tensor& hidden, const std::optional<at::Tensor>& residual,
                        const std::optional<at::Tensor>& weight, double eps, std::optional<double> out_scale,
                        at::Tensor& y, at::Tensor& residual_out) {
  QM2_CHECK(hidden.is_cuda() && hidden.dim() >= 1, "hidden must be a CUDA tensor [..., d]");
  const int64_t d = hidden.size(-1);
  const bool q = out_scale.has_value();
  quamba_torch::check_tensor(y, "y", q ? at::kChar : at::kHalf, hidden.dim());
  QM2_CHECK(y.sizes() == hidden.sizes() && residual_out.sizes() == hidden.sizes(),
              "y and residual_out must have hidden's shape ", hidden.sizes());
  quamba_torch::check_same_device(hidden, y, "y");
  quamba_torch::check_same_device(hidden, residual_out, "residual_out");
  const at::Tensor hr = quamba_m2::as_rows(hidden, d, "hidden", false);
  at::Tensor rr, w;
  if (residual.has_value()) {
    QM2_CHECK(residual->sizes() == hidden.sizes(), "residual must have hidden's shape ", hidden.sizes());
    quamba_torch::check_same_device(hidden, *residual, "residual");
    rr = quamba_m2::as_rows(*residual, d, "residual", false);
  }
  if (weight.has_value()) {
    quamba_torch::check_same_device(hidden, *weight, "weight");
    QM2_CHECK(weight->numel() == d && weight->is_floating_point(), "weight must be float [", d, "]");
    w = weight->to(at::kFloat).contiguous();
  }
  const at::Tensor yr = quamba_m2::as_rows(y, d, "y", true);
  const at::Tensor orr = quamba_m2::as_rows(residual_out, d, "residual_out", true);
  c10::cuda::CUDAGuard guard(hidden.device());
  QuambaQuantAddRMSNormParams p{};
  quamba_m2::set_rows_hidden_residual(p, hr, rr, hidden, d);
  p.weight = w.defined() ? w.data_ptr<float>() : nullptr;
  p.eps = static_cast<float>(eps);
  p.out_int8 = q ? 1 : 0;
  p.out_scale = static_cast<float>(out_scale.value_or(1.0));
  p.y = yr.data_ptr();
  p.y_row_stride = yr.stride(0);
  p.residual_out_dtype = quamba_m2::float_code(residual_out, "residual_out");
  p.residual_out = orr.data_ptr();
  p.residual_out_row_stride = orr.stride(0);
  if (p.rows == 0) return;
  quamba_torch::check_cuda(quamba_quant_add_rms_norm(&p, quamba_torch::stream()), "quant_add_rms_norm");
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(quamba_kernels, m) {
  m.def(
      "quant_add_rms_norm(Tensor hidden, Tensor? residual, Tensor? weight, float eps, float? out_scale, "
      "Tensor(a!) y, Tensor(b!) residual_out) -> ()");
}

TORCH_LIBRARY_IMPL(quamba_kernels, CUDA, m) { m.impl("quant_add_rms_norm", &quant_add_rms_norm); }
