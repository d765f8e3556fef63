// torch binding of gated_rms_norm (plugins/kernels/gated_rms_norm.cu): Mamba2's gated group-wise RMSNorm on
// float tensors (quamba_edge.models.ssm.gated_rms_norm).
// torch.ops.quamba_kernels.gated_rms_norm(x, z, weight, eps, group_size, norm_before_gate, out) -> ()
// x float [..., E]; z float [..., E] or None (no gate); weight float [E]; out float [..., E] (any float dtype).
#include "m2_binding_utils.h"
#include "quamba_kernels/gated_rms_norm.h"

namespace {

void gated_rms_norm(const at::Tensor& x, const std::optional<at::Tensor>& z, const at::Tensor& weight, double eps,
                    int64_t group_size, bool norm_before_gate, at::Tensor& out) {
  QM2_CHECK(x.is_cuda() && x.dim() >= 1, "x must be a CUDA tensor [..., E]");
  const int64_t e = x.size(-1);
  QM2_CHECK(e >= 1 && group_size >= 1 && group_size <= 16384 && e % group_size == 0, "group_size ", group_size,
            " must divide E=", e, " and be <= 16384");
  QM2_CHECK(out.sizes() == x.sizes(), "out must have x's shape ", x.sizes(), ", got ", out.sizes());
  quamba_torch::check_same_device(x, out, "out");
  quamba_torch::check_same_device(x, weight, "weight");
  QM2_CHECK(weight.dim() == 1 && weight.numel() == e, "weight must be [", e, "], got ", weight.sizes());
  const at::Tensor w = weight.contiguous();
  const at::Tensor xr = quamba_m2::as_rows(x, e, "x", false);
  at::Tensor zr;
  if (z.has_value()) {
    QM2_CHECK(z->sizes() == x.sizes(), "z must have x's shape ", x.sizes(), ", got ", z->sizes());
    quamba_torch::check_same_device(x, *z, "z");
    zr = quamba_m2::as_rows(*z, e, "z", false);
  }
  const at::Tensor orr = quamba_m2::as_rows(out, e, "out", true);
  c10::cuda::CUDAGuard guard(x.device());
  QuambaGatedRMSNormParams p{};
  p.rows = xr.size(0);
  p.dim = static_cast<int>(e);
  p.group_size = static_cast<int>(group_size);
  p.x_dtype = quamba_m2::float_code(x, "x");
  p.x = xr.data_ptr();
  p.x_row_stride = xr.stride(0);
  if (zr.defined()) {
    p.z_dtype = quamba_m2::float_code(zr, "z");
    p.z = zr.data_ptr();
    p.z_row_stride = zr.stride(0);
  }
  p.weight_dtype = quamba_m2::float_code(w, "weight");
  p.weight = w.data_ptr();
  p.eps = static_cast<float>(eps);
  p.norm_before_gate = norm_before_gate ? 1 : 0;
  p.out_dtype = quamba_m2::float_code(out, "out");
  p.out = orr.data_ptr();
  p.out_row_stride = orr.stride(0);
  if (p.rows == 0) return;
  QM2_CHECK(p.rows * (e / group_size) <= 0x7fffffffLL, "too many (row, group) blocks: ", p.rows * (e / group_size));
  quamba_torch::check_cuda(quamba_gated_rms_norm(&p, quamba_torch::stream()), "gated_rms_norm");
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(quamba_kernels, m) {
  m.def(
      "gated_rms_norm(Tensor x, Tensor? z, Tensor weight, float eps, int group_size, bool norm_before_gate, "
      "Tensor(a!) out) -> ()");
}

TORCH_LIBRARY_IMPL(quamba_kernels, CUDA, m) { m.impl("gated_rms_norm", &gated_rms_norm); }
