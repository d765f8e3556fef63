// torch binding of quant_selective_state_update (plugins/kernels/quant_selective_state_update.cu).
// torch.ops.quamba_kernels.quant_selective_state_update(u_q, u_scale, dt_q, dt_scale, A_log_q,
//     A_log_scale, B_q, B_scale, C_q, C_scale, D_q, D_scale, z_q, z_scale, dt_bias_q, dt_bias_scale,
//     state, state_scale, y, new_state) -> ()
// One token: u_q, dt_q, z_q [B, E] or [B, 1, E]; B_q, C_q [B, N] or [B, 1, N]; y fp16 shaped like u_q;
// new_state int8 [B, E, N] with a state_scale, else fp32; new_state may be `state` (in place).
#include "binding_utils.h"
#include "quamba_kernels/quant_selective_state_update.h"

namespace {

using quamba_torch::check_tensor;

// [B, C] or [B, 1, C] -> (B, C, batch stride); last dim contiguous
void one_token(const at::Tensor& t, const char* name, at::ScalarType dt, int64_t Bz, int64_t C, int64_t* stride_b) {
  check_tensor(t, name, dt, -1);
  const bool ok = (t.dim() == 2 && t.size(0) == Bz && t.size(1) == C) ||
                  (t.dim() == 3 && t.size(0) == Bz && t.size(1) == 1 && t.size(2) == C);
  TORCH_CHECK(ok, quamba_torch::msg(name, " must be [", Bz, ", ", C, "] or [", Bz, ", 1, ", C, "], got ", t.sizes()));
  TORCH_CHECK(t.stride(t.dim() - 1) == 1, quamba_torch::msg(name, " must be contiguous in the last dim"));
  *stride_b = t.stride(0);
}

void quant_selective_state_update(const at::Tensor& u_q, double u_scale, const at::Tensor& dt_q, double dt_scale,
                                  const at::Tensor& A_log_q, double A_log_scale, const at::Tensor& B_q,
                                  double B_scale, const at::Tensor& C_q, double C_scale,
                                  const std::optional<at::Tensor>& D_q, std::optional<double> D_scale,
                                  const std::optional<at::Tensor>& z_q, std::optional<double> z_scale,
                                  const std::optional<at::Tensor>& dt_bias_q, std::optional<double> dt_bias_scale,
                                  const at::Tensor& state, std::optional<double> state_scale, at::Tensor& y,
                                  at::Tensor& new_state) {
  check_tensor(A_log_q, "A_log_q", at::kChar, 2);
  TORCH_CHECK(A_log_q.is_contiguous(), "A_log_q must be contiguous");
  const int64_t E = A_log_q.size(0), N = A_log_q.size(1);
  TORCH_CHECK(N >= 1 && N <= 256, quamba_torch::msg("d_state must be in 1..256, got ", N));
  TORCH_CHECK(u_q.dim() == 2 || u_q.dim() == 3, "u_q must be [B, E] or [B, 1, E]");
  const int64_t Bz = u_q.size(0);
  QuambaSelectiveStateUpdateParams p{};
  one_token(u_q, "u_q", at::kChar, Bz, E, &p.u_stride_b);
  one_token(dt_q, "dt_q", at::kChar, Bz, E, &p.dt_stride_b);
  one_token(B_q, "B_q", at::kChar, Bz, N, &p.B_stride_b);
  one_token(C_q, "C_q", at::kChar, Bz, N, &p.C_stride_b);
  one_token(y, "y", at::kHalf, Bz, E, &p.y_stride_b);
  if (z_q.has_value()) {
    one_token(*z_q, "z_q", at::kChar, Bz, E, &p.z_stride_b);
    TORCH_CHECK(z_scale.has_value(), "z_scale is required with z_q");
  }
  quamba_torch::check_channel_param(D_q, "D_q", E, D_scale.has_value(), "D_scale");
  quamba_torch::check_channel_param(dt_bias_q, "dt_bias_q", E, dt_bias_scale.has_value(), "dt_bias_scale");
  const bool int8_state = state_scale.has_value();
  const auto st_dtype = int8_state ? at::kChar : at::kFloat;
  for (const at::Tensor* t : {&state, static_cast<const at::Tensor*>(&new_state)}) {
    check_tensor(*t, "state / new_state", st_dtype, 3);
    quamba_torch::check_shape(*t, "state / new_state", {Bz, E, N});
    TORCH_CHECK(t->is_contiguous(), "state / new_state must be contiguous");
  }
  c10::cuda::CUDAGuard guard(u_q.device());

  p.batch = static_cast<int>(Bz);
  p.dim = static_cast<int>(E);
  p.dstate = static_cast<int>(N);
  p.u = u_q.data_ptr<int8_t>();
  p.dt = dt_q.data_ptr<int8_t>();
  p.A_log = A_log_q.data_ptr<int8_t>();
  p.Bm = B_q.data_ptr<int8_t>();
  p.Cm = C_q.data_ptr<int8_t>();
  p.D = quamba_torch::i8(D_q);
  p.z = quamba_torch::i8(z_q);
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
  p.state = state.data_ptr();
  p.new_state = new_state.data_ptr();
  p.y = reinterpret_cast<uint16_t*>(y.data_ptr<at::Half>());
  quamba_torch::check_cuda(quamba_quant_selective_state_update(&p, quamba_torch::stream()),
                           "quant_selective_state_update");
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(quamba_kernels, m) {
  m.def(
      "quant_selective_state_update(Tensor u_q, float u_scale, Tensor dt_q, float dt_scale, Tensor A_log_q, "
      "float A_log_scale, Tensor B_q, float B_scale, Tensor C_q, float C_scale, Tensor? D_q, float? D_scale, "
      "Tensor? z_q, float? z_scale, Tensor? dt_bias_q, float? dt_bias_scale, Tensor state, "
      "float? state_scale, Tensor(a!) y, Tensor(b!) new_state) -> ()");
}

TORCH_LIBRARY_IMPL(quamba_kernels, CUDA, m) {
  m.impl("quant_selective_state_update", &quant_selective_state_update);
}
