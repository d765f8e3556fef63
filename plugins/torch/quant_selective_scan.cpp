// torch binding of quant_selective_scan (plugins/kernels/quant_selective_scan.cu).
// torch.ops.quamba_kernels.quant_selective_scan(u_q, u_scale, dt_q, dt_scale, A_log_q, A_log_scale, B_q,
//     B_scale, C_q, C_scale, D_q, D_scale, z_q, z_scale, dt_bias_q, dt_bias_scale, state_in, state_scale,
//     y, state_out) -> ()
// Out-variant: y (fp16 [B, L, E]) and state_out (int8 [B, E, N] with a state_scale, else fp32) are written.
#include "binding_utils.h"
#include "quamba_kernels/quant_selective_scan.h"

namespace {

using quamba_torch::check_shape;
using quamba_torch::check_tensor;

void quant_selective_scan(const at::Tensor& u_q, double u_scale, const at::Tensor& dt_q, double dt_scale,
                          const at::Tensor& A_log_q, double A_log_scale, const at::Tensor& B_q, double B_scale,
                          const at::Tensor& C_q, double C_scale, const std::optional<at::Tensor>& D_q,
                          std::optional<double> D_scale, const std::optional<at::Tensor>& z_q,
                          std::optional<double> z_scale, const std::optional<at::Tensor>& dt_bias_q,
                          std::optional<double> dt_bias_scale, const std::optional<at::Tensor>& state_in,
                          std::optional<double> state_scale, at::Tensor& y, at::Tensor& state_out) {
  check_tensor(u_q, "u_q", at::kChar, 3);
  const int64_t Bz = u_q.size(0), L = u_q.size(1), E = u_q.size(2);
  check_tensor(A_log_q, "A_log_q", at::kChar, 2);
  TORCH_CHECK(A_log_q.size(0) == E && A_log_q.is_contiguous(), quamba_torch::msg("A_log_q must be contiguous [E=", E, ", N]"));
  const int64_t N = A_log_q.size(1);
  TORCH_CHECK(N >= 1 && N <= 256, quamba_torch::msg("d_state must be in 1..256, got ", N));
  TORCH_CHECK(L >= 1, "need L >= 1");
  check_tensor(dt_q, "dt_q", at::kChar, 3);
  check_shape(dt_q, "dt_q", {Bz, L, E});
  check_tensor(B_q, "B_q", at::kChar, 3);
  check_shape(B_q, "B_q", {Bz, L, N});
  check_tensor(C_q, "C_q", at::kChar, 3);
  check_shape(C_q, "C_q", {Bz, L, N});
  for (const at::Tensor* t : {&u_q, &dt_q, &B_q, &C_q}) TORCH_CHECK(t->stride(2) == 1, "inputs must be contiguous in the last dim");
  if (z_q.has_value()) {
    check_tensor(*z_q, "z_q", at::kChar, 3);
    check_shape(*z_q, "z_q", {Bz, L, E});
    TORCH_CHECK(z_q->stride(2) == 1, "z_q must be contiguous in the last dim");
    TORCH_CHECK(z_scale.has_value(), "z_scale is required with z_q");
  }
  quamba_torch::check_channel_param(D_q, "D_q", E, D_scale.has_value(), "D_scale");
  quamba_torch::check_channel_param(dt_bias_q, "dt_bias_q", E, dt_bias_scale.has_value(), "dt_bias_scale");
  const bool int8_state = state_scale.has_value();
  const auto st_dtype = int8_state ? at::kChar : at::kFloat;
  if (state_in.has_value()) {
    check_tensor(*state_in, "state_in", st_dtype, 3);
    check_shape(*state_in, "state_in", {Bz, E, N});
    TORCH_CHECK(state_in->is_contiguous(), "state_in must be contiguous");
  }
  check_tensor(state_out, "state_out", st_dtype, 3);
  check_shape(state_out, "state_out", {Bz, E, N});
  TORCH_CHECK(state_out.is_contiguous(), "state_out must be contiguous");
  check_tensor(y, "y", at::kHalf, 3);
  check_shape(y, "y", {Bz, L, E});
  TORCH_CHECK(y.stride(2) == 1, "y must be contiguous in the last dim");
  c10::cuda::CUDAGuard guard(u_q.device());

  QuambaSelectiveScanParams p{};
  p.batch = static_cast<int>(Bz);
  p.seqlen = static_cast<int>(L);
  p.dim = static_cast<int>(E);
  p.dstate = static_cast<int>(N);
  p.u = u_q.data_ptr<int8_t>(); p.u_stride_b = u_q.stride(0); p.u_stride_l = u_q.stride(1);
  p.dt = dt_q.data_ptr<int8_t>(); p.dt_stride_b = dt_q.stride(0); p.dt_stride_l = dt_q.stride(1);
  p.A_log = A_log_q.data_ptr<int8_t>();
  p.Bm = B_q.data_ptr<int8_t>(); p.B_stride_b = B_q.stride(0); p.B_stride_l = B_q.stride(1);
  p.Cm = C_q.data_ptr<int8_t>(); p.C_stride_b = C_q.stride(0); p.C_stride_l = C_q.stride(1);
  p.D = quamba_torch::i8(D_q);
  if (z_q.has_value()) { p.z = z_q->data_ptr<int8_t>(); p.z_stride_b = z_q->stride(0); p.z_stride_l = z_q->stride(1); }
  p.dt_bias = quamba_torch::i8(dt_bias_q);
  p.u_scale = static_cast<float>(u_scale);
  p.dt_scale = static_cast<float>(dt_scale);
  p.A_log_scale = static_cast<float>(A_log_scale);
  p.B_scale = static_cast<float>(B_scale);
  p.C_scale = static_cast<float>(C_scale);
  p.D_scale = static_cast<float>(D_scale.value_or(1.0));
  p.z_scale = static_cast<float>(z_scale.value_or(1.0));
  p.dt_bias_scale = static_cast<float>(dt_bias_scale.value_or(1.0));
  p.state_is_int8 = int8_state ? 1 : 0;
  p.state_scale = static_cast<float>(state_scale.value_or(1.0));
  p.state_in = state_in.has_value() ? state_in->data_ptr() : nullptr;
  p.state_out = state_out.data_ptr();
  p.y = reinterpret_cast<uint16_t*>(y.data_ptr<at::Half>());
  p.y_stride_b = y.stride(0);
  p.y_stride_l = y.stride(1);
  quamba_torch::check_cuda(quamba_quant_selective_scan(&p, quamba_torch::stream()), "quant_selective_scan");
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(quamba_kernels, m) {
  m.def(
      "quant_selective_scan(Tensor u_q, float u_scale, Tensor dt_q, float dt_scale, Tensor A_log_q, "
      "float A_log_scale, Tensor B_q, float B_scale, Tensor C_q, float C_scale, Tensor? D_q, float? D_scale, "
      "Tensor? z_q, float? z_scale, Tensor? dt_bias_q, float? dt_bias_scale, Tensor? state_in, "
      "float? state_scale, Tensor(a!) y, Tensor(b!) state_out) -> ()");
}

TORCH_LIBRARY_IMPL(quamba_kernels, CUDA, m) { m.impl("quant_selective_scan", &quant_selective_scan); }
