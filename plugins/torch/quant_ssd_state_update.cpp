// torch binding of quant_ssd_state_update (plugins/kernels/quant_ssd_state_update.cu).
// torch.ops.quamba_kernels.quant_ssd_state_update(x_q, x_scale, dt_q, dt_scale, dt_bias, A_log_q, A_log_scale,
//     B_q, B_scale, C_q, C_scale, D_q, D_scale, dt_limit_lo, dt_limit_hi, state, state_scale, y, new_state) -> ()
// One token: x_q int8 [B, H, P] or [B, 1, H, P]; dt_q [B, H] or [B, 1, H]; B_q, C_q [B, G, N] or [B, 1, G, N];
// y fp16 shaped like x_q; state / new_state int8 [B, H, P, N] with state_scale ([H, P, N] or one value), else
// fp32 / fp16; new_state may be `state` (in place). state_scale_row (int32 [H, P], optional): state_scale is
// then a compact [R, N] table, channel (h, p) using row state_scale_row[h, p] (trusted: < R).
#include "m2_binding_utils.h"
#include "quamba_kernels/quant_ssd_state_update.h"

namespace {

using quamba_torch::check_tensor;

// one token [B, X, Y] or [B, 1, X, Y] (X = 0: [B, Y] / [B, 1, Y]) with the trailing plane contiguous;
// returns the tensor (copied if needed) and its batch stride.
at::Tensor one_token(const at::Tensor& t, const char* name, at::ScalarType dtype, at::IntArrayRef tail,
                     bool output, int64_t* stride_b, int64_t Bz) {
  check_tensor(t, name, dtype, -1);
  const int64_t nt = static_cast<int64_t>(tail.size());
  const bool squeezed = t.dim() == nt + 1;
  QM2_CHECK(squeezed || (t.dim() == nt + 2 && t.size(1) == 1), name, " must be [B, ", tail, "] or [B, 1, ", tail,
              "], got ", t.sizes());
  QM2_CHECK(t.size(0) == Bz, name, " has batch ", t.size(0), ", expected ", Bz);
  const int64_t off = squeezed ? 1 : 2;
  bool dense = true;
  int64_t expect = 1;
  for (int64_t i = nt - 1; i >= 0; --i) {
    QM2_CHECK(t.size(off + i) == tail[i], name, " must be [B, (1,) ", tail, "], got ", t.sizes());
    if (t.size(off + i) != 1 && t.stride(off + i) != expect) dense = false;
    expect *= tail[i];
  }
  at::Tensor r = t;
  if (!dense) {
    QM2_CHECK(!output, name, " must have its per-token part contiguous");
    r = t.contiguous();
  }
  *stride_b = r.stride(0);
  return r;
}

void quant_ssd_state_update(const at::Tensor& x_q, const at::Tensor& x_scale, const at::Tensor& dt_q,
                            double dt_scale, const at::Tensor& dt_bias, const at::Tensor& A_log_q,
                            double A_log_scale, const at::Tensor& B_q, const at::Tensor& B_scale,
                            const at::Tensor& C_q, const at::Tensor& C_scale, const std::optional<at::Tensor>& D_q,
                            double D_scale, double dt_limit_lo, double dt_limit_hi, const at::Tensor& state,
                            const std::optional<at::Tensor>& state_scale, at::Tensor& y, at::Tensor& new_state,
                            const std::optional<at::Tensor>& state_scale_row) {
  QM2_CHECK(state.dim() == 4, "state must be [B, H, P, N], got ", state.sizes());
  const int64_t Bz = state.size(0), H = state.size(1), P = state.size(2), N = state.size(3);
  QM2_CHECK(B_q.dim() == 3 || B_q.dim() == 4, "B_q must be [B, G, N] or [B, 1, G, N]");
  const int64_t G = B_q.size(B_q.dim() - 2);
  QM2_CHECK(G >= 1 && H % G == 0, "nheads ", H, " must be a multiple of ngroups ", G);
  QuambaQuantSSDStateUpdateParams p{};
  const at::Tensor x = one_token(x_q, "x_q", at::kChar, {H, P}, false, &p.x_batch_stride, Bz);
  const at::Tensor dt = one_token(dt_q, "dt_q", at::kChar, {H}, false, &p.dt_batch_stride, Bz);
  const at::Tensor Bm = one_token(B_q, "B_q", at::kChar, {G, N}, false, &p.B_batch_stride, Bz);
  const at::Tensor Cm = one_token(C_q, "C_q", at::kChar, {G, N}, false, &p.C_batch_stride, Bz);
  QM2_CHECK(y.dim() == x_q.dim(), "y must be shaped like x_q");
  one_token(y, "y", at::kHalf, {H, P}, true, &p.y_batch_stride, Bz);
  const quamba_m2::SsdParams prm =
      quamba_m2::ssd_params(x_q, H, P, G, A_log_q, D_q, dt_bias, x_scale, B_scale, C_scale);
  const at::Tensor &A_log = prm.A_log, &D = prm.D, &bias = prm.dt_bias;
  const at::Tensor &xs = prm.x_scale, &bs = prm.B_scale, &cs = prm.C_scale;

  const bool int8_state = state_scale.has_value();
  at::Tensor ss, rows;
  if (int8_state) {
    check_tensor(state, "state", at::kChar, 4);
    ss = quamba_m2::state_scales(*state_scale, state_scale_row, H, P, N, x_q, &rows);
    p.state_type = QUAMBA_SSD_STATE_INT8;
  } else {
    QM2_CHECK(state.scalar_type() == at::kFloat || state.scalar_type() == at::kHalf,
                "a float state must be float32 or float16, got ", c10::toString(state.scalar_type()));
    p.state_type = state.scalar_type() == at::kFloat ? QUAMBA_SSD_STATE_F32 : QUAMBA_SSD_STATE_F16;
  }
  QM2_CHECK(new_state.scalar_type() == state.scalar_type(), "new_state must have state's dtype");
  quamba_torch::check_shape(new_state, "new_state", {Bz, H, P, N});
  QM2_CHECK(state.is_contiguous() && new_state.is_contiguous(), "state and new_state must be contiguous");
  quamba_torch::check_same_device(x_q, state, "state");
  quamba_torch::check_same_device(x_q, new_state, "new_state");
  c10::cuda::CUDAGuard guard(x_q.device());

  p.batch = static_cast<int>(Bz);
  p.nheads = static_cast<int>(H);
  p.headdim = static_cast<int>(P);
  p.ngroups = static_cast<int>(G);
  p.dstate = static_cast<int>(N);
  p.x = x.data_ptr<int8_t>();
  p.x_scale = xs.data_ptr<float>();
  p.dt = dt.data_ptr<int8_t>();
  p.dt_scale = static_cast<float>(dt_scale);
  p.dt_bias = bias.data_ptr<float>();
  p.A_log = A_log.data_ptr<int8_t>();
  p.A_log_scale = static_cast<float>(A_log_scale);
  p.B = Bm.data_ptr<int8_t>();
  p.B_scale = bs.data_ptr<float>();
  p.C = Cm.data_ptr<int8_t>();
  p.C_scale = cs.data_ptr<float>();
  p.D = D.defined() ? D.data_ptr<int8_t>() : nullptr;
  p.D_scale = static_cast<float>(D_scale);
  p.dt_limit_lo = static_cast<float>(dt_limit_lo);
  p.dt_limit_hi = static_cast<float>(dt_limit_hi);
  p.state_in = state.data_ptr();
  p.state_out = new_state.data_ptr();
  p.state_scale = int8_state ? ss.data_ptr<float>() : nullptr;
  p.state_scale_row = rows.defined() ? rows.data_ptr<int32_t>() : nullptr;
  p.y = reinterpret_cast<uint16_t*>(y.data_ptr<at::Half>());
  quamba_torch::check_cuda(quamba_quant_ssd_state_update(&p, quamba_torch::stream()), "quant_ssd_state_update");
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(quamba_kernels, m) {
  m.def(
      "quant_ssd_state_update(Tensor x_q, Tensor x_scale, Tensor dt_q, float dt_scale, Tensor dt_bias, "
      "Tensor A_log_q, float A_log_scale, Tensor B_q, Tensor B_scale, Tensor C_q, Tensor C_scale, Tensor? D_q, "
      "float D_scale, float dt_limit_lo, float dt_limit_hi, Tensor state, Tensor? state_scale, Tensor(a!) y, "
      "Tensor(b!) new_state, Tensor? state_scale_row=None) -> ()");
}

TORCH_LIBRARY_IMPL(quamba_kernels, CUDA, m) { m.impl("quant_ssd_state_update", &quant_ssd_state_update); }
