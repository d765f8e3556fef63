// torch binding of quant_ssd (plugins/kernels/quant_ssd.cu).
// torch.ops.quamba_kernels.quant_ssd(x_q, x_scale, dt_q, dt_scale, dt_bias, A_log_q, A_log_scale, B_q,
//     B_scale, C_q, C_scale, D_q, D_scale, chunk_size, dt_limit_lo, dt_limit_hi, state_in, state_scale,
//     y, state_out, p_tile=0, state_scale_row=None, staging=0) -> ()
// x_q int8 [B, L, H, P]; dt_q int8 [B, L, H]; B_q, C_q int8 [B, L, G, N] (batch / token strides free);
// x_scale [H, P] (or one value), B_scale / C_scale [G] (or one value), dt_bias float [H];
// state_in None, int8 [B, H, P, N] (with state_scale [H, P, N] or one value) or float [B, H, P, N];
// y fp16 [B, L, H, P]; state_out int8 when state_scale is given, else fp32 / fp16 (state_in's dtype).
// state_scale_row (int32 [H, P], optional): state_scale is then a compact [R, N] table and channel (h, p)
// uses its row state_scale_row[h, p] (the values are trusted: each must be < R). p_tile / staging: tuning
// knobs of the kernel (quamba_kernels/quant_ssd.h), 0 = default.
#include "m2_binding_utils.h"
#include "quamba_kernels/quant_ssd.h"

namespace {

using quamba_torch::check_tensor;

// [B, L, X, Y] int8 with the (X, Y) plane contiguous (copied when not)
at::Tensor act4(const at::Tensor& t, const char* name, at::IntArrayRef shape) {
  check_tensor(t, name, at::kChar, 4);
  quamba_torch::check_shape(t, name, shape);
  if (t.stride(3) == 1 && t.stride(2) == shape[3]) return t;
  return t.contiguous();
}

void quant_ssd(const at::Tensor& x_q, const at::Tensor& x_scale, const at::Tensor& dt_q, double dt_scale,
               const at::Tensor& dt_bias, const at::Tensor& A_log_q, double A_log_scale, const at::Tensor& B_q,
               const at::Tensor& B_scale, const at::Tensor& C_q, const at::Tensor& C_scale,
               const std::optional<at::Tensor>& D_q, double D_scale, int64_t chunk_size, double dt_limit_lo,
               double dt_limit_hi, const std::optional<at::Tensor>& state_in,
               const std::optional<at::Tensor>& state_scale, at::Tensor& y, at::Tensor& state_out,
               int64_t p_tile, const std::optional<at::Tensor>& state_scale_row, int64_t staging) {
  check_tensor(x_q, "x_q", at::kChar, 4);
  check_tensor(B_q, "B_q", at::kChar, 4);
  const int64_t Bz = x_q.size(0), L = x_q.size(1), H = x_q.size(2), P = x_q.size(3);
  const int64_t G = B_q.size(2), N = B_q.size(3);
  QM2_CHECK(G >= 1 && H % G == 0, "nheads ", H, " must be a multiple of ngroups ", G);
  const at::Tensor x = act4(x_q, "x_q", {Bz, L, H, P});
  const at::Tensor Bm = act4(B_q, "B_q", {Bz, L, G, N});
  const at::Tensor Cm = act4(C_q, "C_q", {Bz, L, G, N});
  check_tensor(dt_q, "dt_q", at::kChar, 3);
  quamba_torch::check_shape(dt_q, "dt_q", {Bz, L, H});
  const at::Tensor dt = dt_q.stride(2) == 1 ? dt_q : dt_q.contiguous();
  const quamba_m2::SsdParams prm =
      quamba_m2::ssd_params(x_q, H, P, G, A_log_q, D_q, dt_bias, x_scale, B_scale, C_scale);
  const at::Tensor &A_log = prm.A_log, &D = prm.D, &bias = prm.dt_bias;
  const at::Tensor &xs = prm.x_scale, &bs = prm.B_scale, &cs = prm.C_scale;

  check_tensor(y, "y", at::kHalf, 4);
  quamba_torch::check_shape(y, "y", {Bz, L, H, P});
  QM2_CHECK(y.stride(3) == 1 && y.stride(2) == P, "y must have its (H, P) plane contiguous");

  const bool int8_state = state_scale.has_value();
  at::Tensor ss, rows;
  int state_type;
  if (int8_state) {
    check_tensor(state_out, "state_out", at::kChar, 4);
    ss = quamba_m2::state_scales(*state_scale, state_scale_row, H, P, N, x_q, &rows);
    state_type = QUAMBA_SSD_STATE_INT8;
  } else {
    QM2_CHECK(state_out.scalar_type() == at::kFloat || state_out.scalar_type() == at::kHalf,
                "a float state_out must be float32 or float16, got ", c10::toString(state_out.scalar_type()));
    state_type = state_out.scalar_type() == at::kFloat ? QUAMBA_SSD_STATE_F32 : QUAMBA_SSD_STATE_F16;
  }
  quamba_torch::check_same_device(x_q, state_out, "state_out");
  quamba_torch::check_shape(state_out, "state_out", {Bz, H, P, N});
  QM2_CHECK(state_out.is_contiguous(), "state_out must be contiguous");
  if (state_in.has_value()) {
    quamba_torch::check_same_device(x_q, *state_in, "state_in");
    QM2_CHECK(state_in->scalar_type() == state_out.scalar_type(), "state_in must have state_out's dtype ",
                c10::toString(state_out.scalar_type()), ", got ", c10::toString(state_in->scalar_type()));
    quamba_torch::check_shape(*state_in, "state_in", {Bz, H, P, N});
    QM2_CHECK(state_in->is_contiguous(), "state_in must be contiguous");
  }
  c10::cuda::CUDAGuard guard(x_q.device());

  QuambaQuantSSDParams p{};
  p.batch = static_cast<int>(Bz);
  p.seqlen = static_cast<int>(L);
  p.nheads = static_cast<int>(H);
  p.headdim = static_cast<int>(P);
  p.ngroups = static_cast<int>(G);
  p.dstate = static_cast<int>(N);
  p.chunk_size = static_cast<int>(chunk_size);
  p.x = x.data_ptr<int8_t>();
  p.x_batch_stride = x.stride(0);
  p.x_seq_stride = x.stride(1);
  p.x_scale = xs.data_ptr<float>();
  p.dt = dt.data_ptr<int8_t>();
  p.dt_batch_stride = dt.stride(0);
  p.dt_seq_stride = dt.stride(1);
  p.dt_scale = static_cast<float>(dt_scale);
  p.dt_bias = bias.data_ptr<float>();
  p.A_log = A_log.data_ptr<int8_t>();
  p.A_log_scale = static_cast<float>(A_log_scale);
  p.B = Bm.data_ptr<int8_t>();
  p.B_batch_stride = Bm.stride(0);
  p.B_seq_stride = Bm.stride(1);
  p.B_scale = bs.data_ptr<float>();
  p.C = Cm.data_ptr<int8_t>();
  p.C_batch_stride = Cm.stride(0);
  p.C_seq_stride = Cm.stride(1);
  p.C_scale = cs.data_ptr<float>();
  p.D = D.defined() ? D.data_ptr<int8_t>() : nullptr;
  p.D_scale = static_cast<float>(D_scale);
  p.dt_limit_lo = static_cast<float>(dt_limit_lo);
  p.dt_limit_hi = static_cast<float>(dt_limit_hi);
  p.state_type = state_type;
  p.state_in = state_in.has_value() ? state_in->data_ptr() : nullptr;
  p.state_out = state_out.data_ptr();
  p.state_scale = int8_state ? ss.data_ptr<float>() : nullptr;
  p.state_scale_row = rows.defined() ? rows.data_ptr<int32_t>() : nullptr;
  p.y = reinterpret_cast<uint16_t*>(y.data_ptr<at::Half>());
  p.y_batch_stride = y.stride(0);
  p.y_seq_stride = y.stride(1);
  p.p_tile = static_cast<int>(p_tile);
  p.staging = static_cast<int>(staging);
  quamba_torch::check_cuda(quamba_quant_ssd(&p, quamba_torch::stream()), "quant_ssd");
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(quamba_kernels, m) {
  m.def(
      "quant_ssd(Tensor x_q, Tensor x_scale, Tensor dt_q, float dt_scale, Tensor dt_bias, Tensor A_log_q, "
      "float A_log_scale, Tensor B_q, Tensor B_scale, Tensor C_q, Tensor C_scale, Tensor? D_q, float D_scale, "
      "int chunk_size, float dt_limit_lo, float dt_limit_hi, Tensor? state_in, Tensor? state_scale, "
      "Tensor(a!) y, Tensor(b!) state_out, int p_tile=0, Tensor? state_scale_row=None, int staging=0) -> ()");
}

TORCH_LIBRARY_IMPL(quamba_kernels, CUDA, m) { m.impl("quant_ssd", &quant_ssd); }
