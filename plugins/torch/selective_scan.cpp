// torch binding of selective_scan (plugins/kernels/selective_scan.cu): the float Mamba1 selective scan
// (quamba_edge/ops/selective_scan.py).
// torch.ops.quamba_kernels.selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, state_in, y,
//     state_out) -> ()
// Inputs in the order of quamba_edge.models.ssm.selective_scan(u, delta, A, B, C, D, z, delta_bias,
// delta_softplus, initial_state): u, delta fp16 [B, L, E] (delta: dt_proj's output without its bias); A float
// [E, N]; B, C fp16 [B, L, N]; D float [E] or None; z fp16 [B, L, E] or None; delta_bias float [E] or None;
// state_in None (zeros) or fp32 / fp16 [B, E, N] of state_out's dtype. Batch / token strides free, last dims
// packed (inputs copied when not). Outputs: y fp16 [B, L, E] (last dim packed), state_out [B, E, N]
// contiguous (may be state_in).
#include "float_ssm_binding_utils.h"
#include "quamba_kernels/selective_scan.h"

namespace {

using quamba_float::act;

void selective_scan(const at::Tensor& u_in, const at::Tensor& delta_in, const at::Tensor& A_in,
                    const at::Tensor& B_in, const at::Tensor& C_in, const std::optional<at::Tensor>& D_in,
                    const std::optional<at::Tensor>& z_in, const std::optional<at::Tensor>& bias_in,
                    bool delta_softplus, const std::optional<at::Tensor>& state_in, at::Tensor& y,
                    at::Tensor& state_out) {
  quamba_torch::check_tensor(u_in, "u", at::kHalf, 3);
  const int64_t Bz = u_in.size(0), L = u_in.size(1), E = u_in.size(2);
  QM2_CHECK(A_in.dim() == 2 && A_in.size(0) == E, "A must be [E=", E, ", N], got ", A_in.sizes());
  const int64_t N = A_in.size(1);
  QM2_CHECK(Bz >= 1 && L >= 1 && E >= 1, "selective_scan: empty u ", u_in.sizes());
  QM2_CHECK(N >= 1 && N <= 256, "d_state must be in 1..256, got ", N);
  const at::Tensor u = act(u_in, "u", {Bz, L, E}, 1, false, u_in);
  const at::Tensor delta = act(delta_in, "delta", {Bz, L, E}, 1, false, u_in);
  const at::Tensor Bm = act(B_in, "B", {Bz, L, N}, 1, false, u_in);
  const at::Tensor Cm = act(C_in, "C", {Bz, L, N}, 1, false, u_in);
  const at::Tensor z = z_in.has_value() ? act(*z_in, "z", {Bz, L, E}, 1, false, u_in) : at::Tensor();
  const at::Tensor A = quamba_float::fp32_param(A_in, "A", {E, N}, u_in);
  const at::Tensor D = quamba_float::opt_fp32_param(D_in, "D", {E}, u_in);
  const at::Tensor bias = quamba_float::opt_fp32_param(bias_in, "delta_bias", {E}, u_in);
  act(y, "y", {Bz, L, E}, 1, true, u_in);
  const int state_type = quamba_float::float_states(state_in.has_value() ? &*state_in : nullptr, "state_in",
                                                    state_out, "state_out", {Bz, E, N}, u_in);
  c10::cuda::CUDAGuard guard(u_in.device());

  QuambaFloatSelectiveScanParams p{};
  p.batch = static_cast<int>(Bz);
  p.seqlen = static_cast<int>(L);
  p.dim = static_cast<int>(E);
  p.dstate = static_cast<int>(N);
  p.u = quamba_float::f16(u); p.u_stride_b = u.stride(0); p.u_stride_l = u.stride(1);
  p.delta = quamba_float::f16(delta); p.delta_stride_b = delta.stride(0); p.delta_stride_l = delta.stride(1);
  p.A = A.data_ptr<float>();
  p.Bm = quamba_float::f16(Bm); p.B_stride_b = Bm.stride(0); p.B_stride_l = Bm.stride(1);
  p.Cm = quamba_float::f16(Cm); p.C_stride_b = Cm.stride(0); p.C_stride_l = Cm.stride(1);
  p.D = quamba_float::fptr(D);
  if (z.defined()) { p.z = quamba_float::f16(z); p.z_stride_b = z.stride(0); p.z_stride_l = z.stride(1); }
  p.delta_bias = quamba_float::fptr(bias);
  p.delta_softplus = delta_softplus ? 1 : 0;
  p.state_type = state_type;
  p.state_in = state_in.has_value() ? state_in->data_ptr() : nullptr;
  p.state_out = state_out.data_ptr();
  p.y = quamba_float::f16_out(y);
  p.y_stride_b = y.stride(0);
  p.y_stride_l = y.stride(1);
  quamba_torch::check_cuda(quamba_selective_scan(&p, quamba_torch::stream()), "selective_scan");
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(quamba_kernels, m) {
  m.def(
      "selective_scan(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, "
      "Tensor? delta_bias, bool delta_softplus, Tensor? state_in, Tensor(a!) y, Tensor(b!) state_out) -> ()");
}

TORCH_LIBRARY_IMPL(quamba_kernels, CUDA, m) { m.impl("selective_scan", &selective_scan); }
