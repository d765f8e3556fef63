// torch binding of ssd_state_update (plugins/kernels/ssd_state_update.cu): one decode step of the float Mamba2
// SSD (quamba_edge/ops/ssd.py, L = 1).
// torch.ops.quamba_kernels.ssd_state_update(state, x, dt, A, B, C, D, y, new_state) -> ()
// Inputs in the order of quamba_edge.models.ssm.ssd_state_update(state, x, dt, A, B, C, D): state fp32 / fp16
// [B, H, P, N] contiguous (new_state's dtype); x fp16 [B, H, P]; dt fp16 / fp32 [B, H] (softplus'ed and
// clamped; other float dtypes converted to fp32); A float [H]; B, C fp16 [B, G, N]; D float [H] or None.
// Batch strides are free; the per-token planes packed (inputs copied when not). Outputs: y fp16 [B, H, P]
// (plane packed), new_state [B, H, P, N] contiguous (may be `state`: in place).
#include "float_ssm_binding_utils.h"
#include "quamba_kernels/ssd_state_update.h"

namespace {

using quamba_float::act;

void ssd_state_update(const at::Tensor& state, const at::Tensor& x_in, const at::Tensor& dt_in,
                      const at::Tensor& A_in, const at::Tensor& B_in, const at::Tensor& C_in,
                      const std::optional<at::Tensor>& D_in, at::Tensor& y, at::Tensor& new_state) {
  QM2_CHECK(state.dim() == 4, "state must be [B, H, P, N], got ", state.sizes());
  const int64_t Bz = state.size(0), H = state.size(1), P = state.size(2), N = state.size(3);
  quamba_torch::check_tensor(B_in, "B", at::kHalf, 3);
  const int64_t G = B_in.size(1);
  QM2_CHECK(Bz >= 1 && H >= 1 && P >= 1 && N >= 1, "ssd_state_update: empty state ", state.sizes());
  QM2_CHECK(G >= 1 && H % G == 0, "nheads ", H, " must be a multiple of ngroups ", G);
  QM2_CHECK(N >= 16 && N <= 256 && N % 16 == 0, "d_state must be a multiple of 16 in 16..256, got ", N);
  const at::Tensor x = act(x_in, "x", {Bz, H, P}, 2, false, x_in);
  const at::Tensor Bm = act(B_in, "B", {Bz, G, N}, 2, false, x_in);
  const at::Tensor Cm = act(C_in, "C", {Bz, G, N}, 2, false, x_in);
  int dt_type = 0;
  const at::Tensor dt = quamba_float::dt_tensor(dt_in, "dt", {Bz, H}, x_in, &dt_type);
  const at::Tensor A = quamba_float::fp32_param(A_in, "A", {H}, x_in);
  const at::Tensor D = quamba_float::opt_fp32_param(D_in, "D", {H}, x_in);
  act(y, "y", {Bz, H, P}, 2, true, x_in);
  const int state_type =
      quamba_float::float_states(&state, "state", new_state, "new_state", {Bz, H, P, N}, x_in);
  c10::cuda::CUDAGuard guard(x_in.device());

  QuambaSSDStateUpdateParams p{};
  p.batch = static_cast<int>(Bz);
  p.nheads = static_cast<int>(H);
  p.headdim = static_cast<int>(P);
  p.ngroups = static_cast<int>(G);
  p.dstate = static_cast<int>(N);
  p.x = quamba_float::f16(x);
  p.x_batch_stride = x.stride(0);
  p.dt = dt.data_ptr();
  p.dt_type = dt_type;
  p.dt_batch_stride = dt.stride(0);
  p.A = A.data_ptr<float>();
  p.B = quamba_float::f16(Bm);
  p.B_batch_stride = Bm.stride(0);
  p.C = quamba_float::f16(Cm);
  p.C_batch_stride = Cm.stride(0);
  p.D = quamba_float::fptr(D);
  p.state_type = state_type;
  p.state_in = state.data_ptr();
  p.state_out = new_state.data_ptr();
  p.y = quamba_float::f16_out(y);
  p.y_batch_stride = y.stride(0);
  quamba_torch::check_cuda(quamba_ssd_state_update(&p, quamba_torch::stream()), "ssd_state_update");
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(quamba_kernels, m) {
  m.def(
      "ssd_state_update(Tensor state, Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, Tensor? D, "
      "Tensor(a!) y, Tensor(b!) new_state) -> ()");
}

TORCH_LIBRARY_IMPL(quamba_kernels, CUDA, m) { m.impl("ssd_state_update", &ssd_state_update); }
