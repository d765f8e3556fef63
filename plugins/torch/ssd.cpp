// torch binding of ssd (plugins/kernels/ssd.cu): the float Mamba2 SSD prefill (quamba_edge/ops/ssd.py).
// torch.ops.quamba_kernels.ssd(x, dt, A, B, C, chunk_size, D, state_in, y, state_out) -> bool
// Inputs in the order of quamba_edge.models.ssm.ssd_chunked(x, dt, A, B, C, chunk_size, D, initial_state):
// x fp16 [B, L, H, P]; dt fp16 / fp32 [B, L, H] (softplus'ed and clamped; other float dtypes converted to fp32);
// A float [H]; B, C fp16 [B, L, G, N]; D float [H] or None; state_in None (zeros) or fp32 / fp16 [B, H, P, N]
// of state_out's dtype. Batch / token strides of x, dt, B, C, y are free (x's (H, P) plane and B / C's (G, N)
// plane packed: copied when not). Outputs: y fp16 [B, L, H, P] ((H, P) plane packed), state_out fp32 / fp16
// [B, H, P, N] contiguous (may be state_in).
// Returns true when the kernel ran; false when quamba_ssd answered cudaErrorNotSupported (a shape, alignment
// or device it does not take: quamba_kernels/ssd.h) -- nothing was written and the caller runs the
// reference. Bad arguments and launch errors raise.
#include "float_ssm_binding_utils.h"
#include "quamba_kernels/ssd.h"

namespace {

using quamba_float::act;

bool ssd(const at::Tensor& x_in, const at::Tensor& dt_in, const at::Tensor& A_in, const at::Tensor& B_in,
         const at::Tensor& C_in, int64_t chunk_size, const std::optional<at::Tensor>& D_in,
         const std::optional<at::Tensor>& state_in, at::Tensor& y, at::Tensor& state_out) {
  quamba_torch::check_tensor(x_in, "x", at::kHalf, 4);
  quamba_torch::check_tensor(B_in, "B", at::kHalf, 4);
  const int64_t Bz = x_in.size(0), L = x_in.size(1), H = x_in.size(2), P = x_in.size(3);
  const int64_t G = B_in.size(2), N = B_in.size(3);
  QM2_CHECK(Bz >= 1 && L >= 1 && H >= 1 && P >= 1 && N >= 1, "ssd: empty x ", x_in.sizes(), " or B ", B_in.sizes());
  QM2_CHECK(G >= 1 && H % G == 0, "nheads ", H, " must be a multiple of ngroups ", G);
  QM2_CHECK(chunk_size >= 1, "chunk_size must be >= 1, got ", chunk_size);
  const at::Tensor x = act(x_in, "x", {Bz, L, H, P}, 2, false, x_in);
  const at::Tensor Bm = act(B_in, "B", {Bz, L, G, N}, 2, false, x_in);
  const at::Tensor Cm = act(C_in, "C", {Bz, L, G, N}, 2, false, x_in);
  int dt_type = 0;
  const at::Tensor dt = quamba_float::dt_tensor(dt_in, "dt", {Bz, L, H}, x_in, &dt_type);
  const at::Tensor A = quamba_float::fp32_param(A_in, "A", {H}, x_in);
  const at::Tensor D = quamba_float::opt_fp32_param(D_in, "D", {H}, x_in);
  act(y, "y", {Bz, L, H, P}, 2, true, x_in);
  const int state_type = quamba_float::float_states(state_in.has_value() ? &*state_in : nullptr, "state_in",
                                                    state_out, "state_out", {Bz, H, P, N}, x_in);
  c10::cuda::CUDAGuard guard(x_in.device());

  QuambaSSDParams p{};
  p.batch = static_cast<int>(Bz);
  p.seqlen = static_cast<int>(L);
  p.nheads = static_cast<int>(H);
  p.headdim = static_cast<int>(P);
  p.ngroups = static_cast<int>(G);
  p.dstate = static_cast<int>(N);
  p.chunk_size = static_cast<int>(chunk_size);
  p.x = quamba_float::f16(x);
  p.x_batch_stride = x.stride(0);
  p.x_seq_stride = x.stride(1);
  p.dt = dt.data_ptr();
  p.dt_type = dt_type;
  p.dt_batch_stride = dt.stride(0);
  p.dt_seq_stride = dt.stride(1);
  p.A = A.data_ptr<float>();
  p.B = quamba_float::f16(Bm);
  p.B_batch_stride = Bm.stride(0);
  p.B_seq_stride = Bm.stride(1);
  p.C = quamba_float::f16(Cm);
  p.C_batch_stride = Cm.stride(0);
  p.C_seq_stride = Cm.stride(1);
  p.D = quamba_float::fptr(D);
  p.state_type = state_type;
  p.state_in = state_in.has_value() ? state_in->data_ptr() : nullptr;
  p.state_out = state_out.data_ptr();
  p.y = quamba_float::f16_out(y);
  p.y_batch_stride = y.stride(0);
  p.y_seq_stride = y.stride(1);
  const cudaError_t err = quamba_ssd(&p, quamba_torch::stream());
  if (err == cudaErrorNotSupported) return false;
  quamba_torch::check_cuda(err, "ssd");
  return true;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(quamba_kernels, m) {
  m.def(
      "ssd(Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, int chunk_size, Tensor? D, Tensor? state_in, "
      "Tensor(a!) y, Tensor(b!) state_out) -> bool");
}

TORCH_LIBRARY_IMPL(quamba_kernels, CUDA, m) { m.impl("ssd", &ssd); }
