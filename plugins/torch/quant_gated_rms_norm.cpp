// torch binding of quant_gated_rms_norm (plugins/kernels/quant_gated_rms_norm.cu).
// torch.ops.quamba_kernels.quant_gated_rms_norm(y, z_q, z_scale, weight, eps, group_size, norm_before_gate,
//     out) -> ()
// y float [..., E]; z_q int8 [..., E]; weight float [E]; out fp16 [..., E].
#include "m2_binding_utils.h"
#include "quamba_kernels/quant_gated_rms_norm.h"

namespace {

void quant_gated_rms_norm(const at::Tensor& y, const at::Tensor& z_q, double z_scale, const at::Tensor& weight,
                          double eps, int64_t group_size, bool norm_before_gate, at::Tensor& out) {
  QM2_CHECK(y.is_cuda() && y.dim() >= 1, "y must be a CUDA tensor [..., E]");
  const int64_t e = y.size(-1);
  QM2_CHECK(group_size >= 1 && e % group_size == 0, "group_size ", group_size, " must divide E=", e);
  quamba_torch::check_tensor(z_q, "z_q", at::kChar, y.dim());
  quamba_torch::check_tensor(out, "out", at::kHalf, y.dim());
  QM2_CHECK(z_q.sizes() == y.sizes() && out.sizes() == y.sizes(), "z_q and out must have y's shape ", y.sizes());
  quamba_torch::check_same_device(y, z_q, "z_q");
  quamba_torch::check_same_device(y, out, "out");
  quamba_torch::check_same_device(y, weight, "weight");
  QM2_CHECK(weight.numel() == e && weight.is_floating_point(), "weight must be float [", e, "]");
  const at::Tensor w = weight.to(at::kFloat).contiguous();
  const at::Tensor yr = quamba_m2::as_rows(y, e, "y", false);
  const at::Tensor zr = quamba_m2::as_rows(z_q, e, "z_q", false);
  const at::Tensor orr = quamba_m2::as_rows(out, e, "out", true);
  c10::cuda::CUDAGuard guard(y.device());
  QuambaQuantGatedRMSNormParams p{};
  p.rows = yr.size(0);
  p.dim = static_cast<int>(e);
  p.group_size = static_cast<int>(group_size);
  p.y_dtype = quamba_m2::float_code(y, "y");
  p.y = yr.data_ptr();
  p.y_row_stride = yr.stride(0);
  p.z = zr.data_ptr<int8_t>();
  p.z_row_stride = zr.stride(0);
  p.z_scale = static_cast<float>(z_scale);
  p.weight = w.data_ptr<float>();
  p.eps = static_cast<float>(eps);
  p.norm_before_gate = norm_before_gate ? 1 : 0;
  p.out = reinterpret_cast<uint16_t*>(orr.data_ptr<at::Half>());
  p.out_row_stride = orr.stride(0);
  if (p.rows == 0) return;
  quamba_torch::check_cuda(quamba_quant_gated_rms_norm(&p, quamba_torch::stream()), "quant_gated_rms_norm");
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(quamba_kernels, m) {
  m.def(
      "quant_gated_rms_norm(Tensor y, Tensor z_q, float z_scale, Tensor weight, float eps, int group_size, "
      "bool norm_before_gate, Tensor(a!) out) -> ()");
}

TORCH_LIBRARY_IMPL(quamba_kernels, CUDA, m) { m.impl("quant_gated_rms_norm", &quant_gated_rms_norm); }
