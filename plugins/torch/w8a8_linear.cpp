// torch binding of w8a8_linear (plugins/kernels/w8a8_linear.cu).
// torch.ops.quamba_kernels.w8a8_linear(x_q, x_scale, w_q, w_scale, bias, out_scale, y) -> ()
// x_q int8 [..., K]; x_scale a one-value float tensor; w_q int8 [N, K]; w_scale 1 or N values; bias [N] or None;
// out_scale 1 or N values or None; y [..., N]: int8 (needs out_scale), float32 or float16. Scales stay on the
// device (no host sync).
#include "linear_binding_utils.h"
#include "quamba_kernels/w8a8_linear.h"

namespace {

void w8a8_linear(const at::Tensor& x_q, const at::Tensor& x_scale, const at::Tensor& w_q, const at::Tensor& w_scale,
                 const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& out_scale, at::Tensor& y) {
  quamba_torch::check_tensor(x_q, "x_q", at::kChar, -1);
  QM2_CHECK(w_q.dim() == 2, "w_q must be int8 [N, K], got ", w_q.sizes());
  const int64_t n = w_q.size(0), k = w_q.size(1);
  const quamba_lin::Rows r = quamba_lin::rows(x_q, k, y, n);
  quamba_lin::check_weight(w_q, "w_q", at::kChar, n, k, x_q);
  const auto xs = quamba_lin::row_scale(x_scale, 1, x_q, "x_scale");
  const auto ws = quamba_lin::row_scale(w_scale, n, x_q, "w_scale");
  const at::Tensor b = quamba_lin::opt_bias(bias, n, x_q);
  const int yd = quamba_lin::y_code(y, out_scale.has_value());
  const quamba_lin::OutScale os = quamba_lin::out_scale(yd, out_scale, n, x_q);
  if (r.m == 0) return;
  c10::cuda::CUDAGuard guard(x_q.device());
  QuambaW8A8LinearParams p{};
  p.m = r.m;
  p.n = static_cast<int>(n);
  p.k = static_cast<int>(k);
  p.x = r.x.data_ptr<int8_t>();
  p.x_row_stride = r.x.stride(0);
  p.x_scale = xs.first.data_ptr<float>();
  p.w = w_q.data_ptr<int8_t>();
  p.w_row_stride = w_q.stride(0);
  p.w_scale = ws.first.data_ptr<float>();
  p.w_scale_stride = ws.second;
  p.bias = b.defined() ? b.data_ptr<float>() : nullptr;
  quamba_lin::set_out_scale(p, os);
  quamba_lin::set_y(p, yd, r);
  quamba_torch::check_cuda(quamba_w8a8_linear(&p, quamba_torch::stream()),
                           "w8a8_linear");
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(quamba_kernels, m) {
  m.def("w8a8_linear(Tensor x_q, Tensor x_scale, Tensor w_q, Tensor w_scale, Tensor? bias, Tensor? out_scale, "
        "Tensor(a!) y) -> ()");
}

TORCH_LIBRARY_IMPL(quamba_kernels, CUDA, m) { m.impl("w8a8_linear", &w8a8_linear); }
