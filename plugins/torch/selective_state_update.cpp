// torch binding of selective_state_update (plugins/kernels/selective_state_update.cu): one decode step of the
// float Mamba1 scan (quamba_edge/ops/selective_scan.py, L = 1).
// torch.ops.quamba_kernels.selective_state_update(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, y,
//     new_state) -> ()
// Inputs in the order of quamba_edge.models.ssm.selective_state_update(state, x, dt, A, B, C, D, z, dt_bias,
// dt_softplus): state fp32 / fp16 [B, E, N] contiguous (new_state's dtype); x, dt fp16 [B, E] (dt without its
// bias); A float [E, N]; B, C fp16 [B, N]; D float [E] or None; z fp16 [B, E] or None; dt_bias float [E] or
// None. Batch strides free, last dims packed (inputs copied when not). Outputs: y fp16 [B, E] (last dim
// packed), new_state [B, E, N] contiguous (may be `state`: in place).
#include "float_ssm_binding_utils.h"
#include "quamba_kernels/selective_state_update.h"

namespace {

using quamba_float::act;

void selective_state_update(const at::Tensor& state, const at::Tensor& x_in, const at::Tensor& dt_in,
                            const at::Tensor& A_in, const at::Tensor& B_in, const at::Tensor& C_in,
                            const std::optional<at::Tensor>& D_in, const std::optional<at::Tensor>& z_in,
                            const std::optional<at::Tensor>& bias_in, bool dt_softplus, at::Tensor& y,
                            at::Tensor& new_state) {
  QM2_CHECK(state.dim() == 3, "state must be [B, E, N], got ", state.sizes());
  const int64_t Bz = state.size(0), E = state.size(1), N = state.size(2);
  QM2_CHECK(Bz >= 1 && E >= 1, "selective_state_update: empty state ", state.sizes());
  QM2_CHECK(N >= 1 && N <= 256, "d_state must be in 1..256, got ", N);
  const at::Tensor x = act(x_in, "x", {Bz, E}, 1, false, x_in);
  const at::Tensor dt = act(dt_in, "dt", {Bz, E}, 1, false, x_in);
  const at::Tensor Bm = act(B_in, "B", {Bz, N}, 1, false, x_in);
  const at::Tensor Cm = act(C_in, "C", {Bz, N}, 1, false, x_in);
  const at::Tensor z = z_in.has_value() ? act(*z_in, "z", {Bz, E}, 1, false, x_in) : at::Tensor();
  const at::Tensor A = quamba_float::fp32_param(A_in, "A", {E, N}, x_in);
  const at::Tensor D = quamba_float::opt_fp32_param(D_in, "D", {E}, x_in);
  const at::Tensor bias = quamba_float::opt_fp32_param(bias_in, "dt_bias", {E}, x_in);
  act(y, "y", {Bz, E}, 1, true, x_in);
  const int state_type = quamba_float::float_states(&state, "state", new_state, "new_state", {Bz, E, N}, x_in);
  c10::cuda::CUDAGuard guard(x_in.device());

  QuambaFloatSelectiveStateUpdateParams p{};
  p.batch = static_cast<int>(Bz);
  p.dim = static_cast<int>(E);
  p.dstate = static_cast<int>(N);
  p.u = quamba_float::f16(x); p.u_stride_b = x.stride(0);
  p.delta = quamba_float::f16(dt); p.delta_stride_b = dt.stride(0);
  p.A = A.data_ptr<float>();
  p.Bm = quamba_float::f16(Bm); p.B_stride_b = Bm.stride(0);
  p.Cm = quamba_float::f16(Cm); p.C_stride_b = Cm.stride(0);
  p.D = quamba_float::fptr(D);
  if (z.defined()) { p.z = quamba_float::f16(z); p.z_stride_b = z.stride(0); }
  p.delta_bias = quamba_float::fptr(bias);
  p.delta_softplus = dt_softplus ? 1 : 0;
  p.state_type = state_type;
  p.state_in = state.data_ptr();
  p.state_out = new_state.data_ptr();
  p.y = quamba_float::f16_out(y);
  p.y_stride_b = y.stride(0);
  quamba_torch::check_cuda(quamba_selective_state_update(&p, quamba_torch::stream()), "selective_state_update");
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(quamba_kernels, m) {
  m.def(
      "selective_state_update(Tensor state, Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, Tensor? D, "
      "Tensor? z, Tensor? dt_bias, bool dt_softplus, Tensor(a!) y, Tensor(b!) new_state) -> ()");
}

TORCH_LIBRARY_IMPL(quamba_kernels, CUDA, m) { m.impl("selective_state_update", &selective_state_update); }
