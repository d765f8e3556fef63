// torch binding of causal_conv1d (plugins/kernels/causal_conv1d.cu): the float depthwise causal conv1d (+ bias,
// SiLU) of quamba_edge.models.ssm.causal_conv1d.
// torch.ops.quamba_kernels.causal_conv1d(x, weight, bias, conv_state, silu, y, new_conv_state) -> ()
// (out-variant: y, new_conv_state are written). x fp16 / fp32 [B, L, C] (batch / token strides free, copied when
// its channel stride is not 1); weight fp16 / fp32 [C, K], 1 <= K <= 4; bias fp16 / fp32 [C] or None; conv_state
// fp16 / fp32 [B, C, K-1] or None (zeros). Outputs in x's dtype: y [B, L, C] (channel stride 1), new_conv_state
// [B, C, K-1] contiguous (may be conv_state: in place, then of x's dtype).
#include "binding_utils.h"
#include "quamba_kernels/causal_conv1d.h"

namespace {

using quamba_torch::check_same_device;
using quamba_torch::check_shape;
using quamba_torch::msg;

int float_code(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_cuda(), msg(name, " must be a CUDA tensor"));
  const auto s = t.scalar_type();
  TORCH_CHECK(s == at::kHalf || s == at::kFloat, msg(name, " must be float16 or float32, got ", c10::toString(s)));
  return s == at::kHalf ? QUAMBA_DT_F16 : QUAMBA_DT_F32;
}

void causal_conv1d(const at::Tensor& x_in, const at::Tensor& weight_in, const std::optional<at::Tensor>& bias_in,
                   const std::optional<at::Tensor>& conv_state, bool silu, at::Tensor& y, at::Tensor& new_conv_state) {
  const int x_type = float_code(x_in, "x");
  TORCH_CHECK(x_in.dim() == 3, msg("x must be [B, L, C], got ", x_in.sizes()));
  const int64_t B = x_in.size(0), L = x_in.size(1), C = x_in.size(2);
  TORCH_CHECK(B >= 1 && L >= 1 && C >= 1, msg("causal_conv1d: empty x ", x_in.sizes()));
  const at::Tensor x = x_in.stride(2) == 1 ? x_in : x_in.contiguous();

  const int w_type = float_code(weight_in, "weight");
  check_same_device(x_in, weight_in, "weight");
  TORCH_CHECK(weight_in.dim() == 2 && weight_in.size(0) == C, msg("weight must be [C=", C, ", K], got ",
                                                                  weight_in.sizes()));
  const int64_t K = weight_in.size(1);
  TORCH_CHECK(K >= 1 && K <= 4, msg("kernel width K must be in 1..4, got ", K));
  const at::Tensor weight = weight_in.contiguous();

  at::Tensor bias;
  int bias_type = QUAMBA_DT_F32;
  if (bias_in.has_value()) {
    bias_type = float_code(*bias_in, "bias");
    check_same_device(x_in, *bias_in, "bias");
    check_shape(*bias_in, "bias", {C});
    bias = bias_in->contiguous();
  }

  const at::ScalarType out_dtype = x_in.scalar_type();
  TORCH_CHECK(y.is_cuda() && y.scalar_type() == out_dtype, msg("y must be a CUDA tensor of x's dtype ",
                                                               c10::toString(out_dtype)));
  check_same_device(x_in, y, "y");
  check_shape(y, "y", {B, L, C});
  TORCH_CHECK(y.stride(2) == 1, "y must be contiguous over channels");
  TORCH_CHECK(new_conv_state.is_cuda() && new_conv_state.scalar_type() == out_dtype,
              msg("new_conv_state must be a CUDA tensor of x's dtype ", c10::toString(out_dtype)));
  check_same_device(x_in, new_conv_state, "new_conv_state");
  check_shape(new_conv_state, "new_conv_state", {B, C, K - 1});
  TORCH_CHECK(new_conv_state.is_contiguous(), "new_conv_state must be contiguous");

  at::Tensor state;
  int state_type = QUAMBA_DT_F32;
  if (conv_state.has_value()) {
    state_type = float_code(*conv_state, "conv_state");
    check_same_device(x_in, *conv_state, "conv_state");
    check_shape(*conv_state, "conv_state", {B, C, K - 1});
    state = conv_state->contiguous();  // in place (state is new_conv_state) is safe for every L (the kernel's order)
  }
  c10::cuda::CUDAGuard guard(x_in.device());

  QuambaFloatCausalConv1dParams p{};
  p.batch = static_cast<int>(B);
  p.seqlen = static_cast<int>(L);
  p.channels = static_cast<int>(C);
  p.width = static_cast<int>(K);
  p.x_type = x_type;
  p.x = x.data_ptr();
  p.x_stride_b = x.stride(0);
  p.x_stride_l = x.stride(1);
  p.w = weight.data_ptr();
  p.w_type = w_type;
  p.bias = bias.defined() ? bias.data_ptr() : nullptr;
  p.bias_type = bias_type;
  p.conv_state = state.defined() ? state.data_ptr() : nullptr;
  p.state_type = state_type;
  p.silu = silu ? 1 : 0;
  p.y = y.data_ptr();
  p.y_stride_b = y.stride(0);
  p.y_stride_l = y.stride(1);
  p.new_conv_state = K > 1 ? new_conv_state.data_ptr() : nullptr;
  quamba_torch::check_cuda(quamba_causal_conv1d(&p, quamba_torch::stream()), "causal_conv1d");
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(quamba_kernels, m) {
  m.def(
      "causal_conv1d(Tensor x, Tensor weight, Tensor? bias, Tensor? conv_state, bool silu, Tensor(a!) y, "
      "Tensor(b!) new_conv_state) -> ()");
}

TORCH_LIBRARY_IMPL(quamba_kernels, CUDA, m) { m.impl("causal_conv1d", &causal_conv1d); }
