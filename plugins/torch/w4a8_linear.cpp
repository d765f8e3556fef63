// torch binding of w4a8_linear (plugins/kernels/w4a8_linear.cu).
// torch.ops.quamba_kernels.w4a8_linear(x_q, x_scale, qweight, s_group, s_channel, group_size, bias, out_scale, y)
// x_q int8 [..., K]; qweight uint8 [N, K/2] (packed codes, quamba_edge.quant.packing); s_group fp16
// [N, ceil(K/group_size)]; s_channel float [N]; group_size <= 0 or >= K: one group per row; y as w8a8_linear.
#include "linear_binding_utils.h"
#include "quamba_kernels/w4a8_linear.h"

namespace {

void w4a8_linear(const at::Tensor& x_q, const at::Tensor& x_scale, const at::Tensor& qweight, const at::Tensor& s_group,
                 const at::Tensor& s_channel, int64_t group_size, const std::optional<at::Tensor>& bias,
                 const std::optional<at::Tensor>& out_scale, at::Tensor& y) {
  quamba_torch::check_tensor(x_q, "x_q", at::kChar, -1);
  QM2_CHECK(x_q.dim() >= 1 && qweight.dim() == 2, "x_q [..., K] and qweight [N, K/2] expected");
  const int64_t k = x_q.size(-1), n = qweight.size(0);
  const quamba_lin::Rows r = quamba_lin::rows(x_q, k, y, n);
  quamba_lin::check_weight(qweight, "qweight", at::kByte, n, (k + 1) / 2, x_q);
  const int64_t gs = group_size <= 0 || group_size >= k ? k : group_size;
  const int64_t ng = (k + gs - 1) / gs;
  quamba_lin::check_weight(s_group, "s_group", at::kHalf, n, ng, x_q);
  const auto xs = quamba_lin::row_scale(x_scale, 1, x_q, "x_scale");
  const auto sc = quamba_lin::row_scale(s_channel, n, x_q, "s_channel");
  QM2_CHECK(sc.second == 1 || n == 1, "s_channel must have N values");
  const at::Tensor b = quamba_lin::opt_bias(bias, n, x_q);
  const int yd = quamba_lin::y_code(y, out_scale.has_value());
  const quamba_lin::OutScale os = quamba_lin::out_scale(yd, out_scale, n, x_q);
  if (r.m == 0) return;
  c10::cuda::CUDAGuard guard(x_q.device());
  QuambaW4A8LinearParams p{};
  p.m = r.m;
  p.n = static_cast<int>(n);
  p.k = static_cast<int>(k);
  p.x = r.x.data_ptr<int8_t>();
  p.x_row_stride = r.x.stride(0);
  p.x_scale = xs.first.data_ptr<float>();
  p.qweight = qweight.data_ptr<uint8_t>();
  p.w_row_stride = qweight.stride(0);
  p.s_group = reinterpret_cast<const uint16_t*>(s_group.data_ptr<at::Half>());
  p.s_group_row_stride = s_group.stride(0);
  p.group_size = static_cast<int>(gs);
  p.s_channel = sc.first.data_ptr<float>();
  p.bias = b.defined() ? b.data_ptr<float>() : nullptr;
  quamba_lin::set_out_scale(p, os);
  quamba_lin::set_y(p, yd, r);
  quamba_torch::check_cuda(quamba_w4a8_linear(&p, quamba_torch::stream()),
                           "w4a8_linear (K % 32 == 0, group_size % 32 == 0 or >= K, 16-byte aligned rows needed)");
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(quamba_kernels, m) {
  m.def("w4a8_linear(Tensor x_q, Tensor x_scale, Tensor qweight, Tensor s_group, Tensor s_channel, int group_size, "
        "Tensor? bias, Tensor? out_scale, Tensor(a!) y) -> ()");
}

TORCH_LIBRARY_IMPL(quamba_kernels, CUDA, m) { m.impl("w4a8_linear", &w4a8_linear); }
