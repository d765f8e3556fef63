// torch binding of quant_causal_conv1d (plugins/kernels/quant_causal_conv1d.cu).
// torch.ops.quamba_kernels.quant_causal_conv1d(x_q, x_scale, w_q, w_scale, b_q, b_scale, out_scale,
//     conv_state, silu, y_q, new_conv_state) -> ()   (out-variant: y_q, new_conv_state are written)
#include "binding_utils.h"
#include "quamba_kernels/quant_causal_conv1d.h"

namespace {

using quamba_torch::check_shape;
using quamba_torch::check_tensor;

int scale_stride(const at::Tensor& s, const char* name, int64_t c) {
  check_tensor(s, name, at::kFloat, -1);
  TORCH_CHECK(s.is_contiguous(), quamba_torch::msg(name, " must be contiguous"));
  if (s.numel() == 1) return 0;
  TORCH_CHECK(s.dim() == 1 && s.size(0) == c, quamba_torch::msg(name, " must be a scalar or [", c, "], got ", s.sizes()));
  return 1;
}

void quant_causal_conv1d(const at::Tensor& x_q, const at::Tensor& x_scale, const at::Tensor& w_q,
                         const at::Tensor& w_scale, const std::optional<at::Tensor>& b_q,
                         const std::optional<at::Tensor>& b_scale, const at::Tensor& out_scale,
                         const std::optional<at::Tensor>& conv_state, bool silu, at::Tensor& y_q,
                         at::Tensor& new_conv_state) {
  check_tensor(x_q, "x_q", at::kChar, 3);
  const int64_t B = x_q.size(0), L = x_q.size(1), C = x_q.size(2);
  check_tensor(w_q, "w_q", at::kChar, 2);
  TORCH_CHECK(w_q.size(0) == C && w_q.is_contiguous(), quamba_torch::msg("w_q must be contiguous [C=", C, ", K]"));
  const int64_t K = w_q.size(1);
  TORCH_CHECK(K >= 1 && K <= 8, quamba_torch::msg("kernel width K must be in 1..8, got ", K));
  TORCH_CHECK(x_q.stride(2) == 1, "x_q must be contiguous over channels");
  check_tensor(y_q, "y_q", at::kChar, 3);
  check_shape(y_q, "y_q", {B, L, C});
  TORCH_CHECK(y_q.stride(2) == 1, "y_q must be contiguous over channels");
  check_tensor(new_conv_state, "new_conv_state", at::kChar, 3);
  check_shape(new_conv_state, "new_conv_state", {B, C, K - 1});
  TORCH_CHECK(new_conv_state.is_contiguous(), "new_conv_state must be contiguous");
  at::Tensor state;
  if (conv_state.has_value()) {
    check_tensor(*conv_state, "conv_state", at::kChar, 3);
    check_shape(*conv_state, "conv_state", {B, C, K - 1});
    state = conv_state->contiguous();
    // in place is safe for one token; for longer inputs another block may still read the old state
    if (L > 1 && K > 1 && state.data_ptr() == new_conv_state.data_ptr()) state = state.clone();
  }
  if (b_q.has_value()) {
    check_tensor(*b_q, "b_q", at::kChar, 1);
    TORCH_CHECK(b_q->size(0) == C && b_q->is_contiguous(), quamba_torch::msg("b_q must be contiguous [", C, "]"));
    TORCH_CHECK(b_scale.has_value(), "b_scale is required with b_q");
  }
  c10::cuda::CUDAGuard guard(x_q.device());

  QuambaCausalConv1dParams p{};
  p.batch = static_cast<int>(B);
  p.seqlen = static_cast<int>(L);
  p.channels = static_cast<int>(C);
  p.width = static_cast<int>(K);
  p.x = x_q.data_ptr<int8_t>();
  p.x_stride_b = x_q.stride(0);
  p.x_stride_l = x_q.stride(1);
  p.w = w_q.data_ptr<int8_t>();
  p.x_scale = x_scale.data_ptr<float>();
  p.x_scale_stride = scale_stride(x_scale, "x_scale", C);
  p.w_scale = w_scale.data_ptr<float>();
  p.w_scale_stride = scale_stride(w_scale, "w_scale", C);
  p.out_scale = out_scale.data_ptr<float>();
  p.out_scale_stride = scale_stride(out_scale, "out_scale", C);
  if (b_q.has_value()) {
    p.bias = b_q->data_ptr<int8_t>();
    p.b_scale = b_scale->data_ptr<float>();
    p.b_scale_stride = scale_stride(*b_scale, "b_scale", C);
  }
  p.conv_state = conv_state.has_value() ? state.data_ptr<int8_t>() : nullptr;
  p.silu = silu ? 1 : 0;
  p.y = y_q.data_ptr<int8_t>();
  p.y_stride_b = y_q.stride(0);
  p.y_stride_l = y_q.stride(1);
  p.new_conv_state = K > 1 ? new_conv_state.data_ptr<int8_t>() : nullptr;
  quamba_torch::check_cuda(quamba_quant_causal_conv1d(&p, quamba_torch::stream()), "quant_causal_conv1d");
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(quamba_kernels, m) {
  m.def(
      "quant_causal_conv1d(Tensor x_q, Tensor x_scale, Tensor w_q, Tensor w_scale, Tensor? b_q, "
      "Tensor? b_scale, Tensor out_scale, Tensor? conv_state, bool silu, Tensor(a!) y_q, "
      "Tensor(b!) new_conv_state) -> ()");
}

TORCH_LIBRARY_IMPL(quamba_kernels, CUDA, m) { m.impl("quant_causal_conv1d", &quant_causal_conv1d); }
