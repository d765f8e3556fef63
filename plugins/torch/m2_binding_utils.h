// Helpers of the torch bindings of the Mamba2 / Hadamard / norm kernels (quant_ssd*.cpp, quant_hadamard.cpp,
// quant_*rms_norm.cpp); builds on binding_utils.h.
#pragma once

#include "binding_utils.h"

#include <ATen/ATen.h>

#include <optional>

// TORCH_CHECK with a message assembled as one string by quamba_torch::msg, only when the check fails (the
// GPU machine's torch 2.11 segfaults when TORCH_CHECK itself formats numbers or shapes: plugins/README.md).
#define QM2_CHECK(cond, ...)                                           \
  do {                                                                 \
    if (!(cond)) TORCH_CHECK(false, ::quamba_torch::msg(__VA_ARGS__)); \
  } while (0)

namespace quamba_m2 {

// QUAMBA_DT_* of a float tensor (fp32 0, fp16 1, bf16 2).
inline int float_code(const at::Tensor& t, const char* name) {
  switch (t.scalar_type()) {
    case at::kFloat: return 0;
    case at::kHalf: return 1;
    case at::kBFloat16: return 2;
    default: QM2_CHECK(false, name, " must be float32, float16 or bfloat16, got ", c10::toString(t.scalar_type()));
  }
  return 0;
}

// A per-channel fp32 scale table of `shape`: the tensor itself when it already is contiguous fp32 of that
// shape (no copy), else a scalar (numel 1) or same-numel tensor expanded / converted.
inline at::Tensor scale_table(const at::Tensor& s, at::IntArrayRef shape, const at::Tensor& like, const char* name) {
  quamba_torch::check_same_device(like, s, name);
  QM2_CHECK(s.is_floating_point(), name, " must be a float tensor");
  int64_t numel = 1;
  for (auto d : shape) numel *= d;
  if (s.scalar_type() == at::kFloat && s.is_contiguous() && s.numel() == numel && s.sizes() == shape) return s;
  if (s.numel() == 1) return s.to(at::kFloat).reshape({1}).expand({numel}).contiguous().view(shape);
  QM2_CHECK(s.numel() == numel, name, " must have ", numel, " elements (shape ", shape, ") or 1, got ", s.sizes());
  return s.to(at::kFloat).contiguous().view(shape);
}

// The int8-state scales: [H, P, N] (or one value) without a row index; with one, a compact fp32 [R, N] table
// and the int32 [H, P] row of each channel (returned in *rows).
inline at::Tensor state_scales(const at::Tensor& s, const std::optional<at::Tensor>& row, int64_t H, int64_t P,
                               int64_t N, const at::Tensor& like, at::Tensor* rows) {
  if (!row.has_value()) return scale_table(s, {H, P, N}, like, "state_scale");
  quamba_torch::check_tensor(*row, "state_scale_row", at::kInt, 2);
  quamba_torch::check_shape(*row, "state_scale_row", {H, P});
  quamba_torch::check_same_device(like, *row, "state_scale_row");
  *rows = row->contiguous();
  QM2_CHECK(s.dim() == 2 && s.size(1) == N && s.size(0) >= 1, "with state_scale_row, state_scale must be [R, ", N,
              "], got ", s.sizes());
  return scale_table(s, {s.size(0), N}, like, "state_scale");
}

// [..., n] as a 2-D [rows, n] tensor with unit element stride (a copy for inputs that need one).
inline at::Tensor as_rows(const at::Tensor& t, int64_t n, const char* name, bool output) {
  QM2_CHECK(t.dim() >= 1 && t.size(-1) == n, name, " must end in ", n, ", got ", t.sizes());
  if (t.dim() == 2 && t.stride(1) == 1) return t;
  if (t.is_contiguous()) return t.view({-1, n});
  QM2_CHECK(!output, name, " must be contiguous (or 2-D with unit element stride)");
  return t.contiguous().view({-1, n});
}

// The per-head parameters and scale tables both SSD bindings (prefill and decode) check the same way:
// A_log int8 [H], D int8 [H] (optional), dt_bias float [H] (as fp32), x scales [H, P], B/C scales [G].
struct SsdParams {
  at::Tensor A_log, D, dt_bias, x_scale, B_scale, C_scale;
};

inline SsdParams ssd_params(const at::Tensor& x_q, int64_t H, int64_t P, int64_t G, const at::Tensor& A_log_q,
                            const std::optional<at::Tensor>& D_q, const at::Tensor& dt_bias,
                            const at::Tensor& x_scale, const at::Tensor& B_scale, const at::Tensor& C_scale) {
  SsdParams r;
  quamba_torch::check_tensor(A_log_q, "A_log_q", at::kChar, 1);
  quamba_torch::check_shape(A_log_q, "A_log_q", {H});
  r.A_log = A_log_q.contiguous();
  if (D_q.has_value()) {
    quamba_torch::check_tensor(*D_q, "D_q", at::kChar, 1);
    quamba_torch::check_shape(*D_q, "D_q", {H});
    r.D = D_q->contiguous();
  }
  quamba_torch::check_same_device(x_q, dt_bias, "dt_bias");
  QM2_CHECK(dt_bias.numel() == H && dt_bias.is_floating_point(), "dt_bias must be float [", H, "]");
  r.dt_bias = dt_bias.to(at::kFloat).contiguous().view({H});
  r.x_scale = scale_table(x_scale, {H, P}, x_q, "x_scale");
  r.B_scale = scale_table(B_scale, {G}, x_q, "B_scale");
  r.C_scale = scale_table(C_scale, {G}, x_q, "C_scale");
  return r;
}

// The rows / dim / hidden / optional residual fields that the (quant_)add_rms_norm parameter structs share
// (hr, rr: the [rows, d] views of hidden and residual; rr undefined when there is no residual).
template <class Params>
inline void set_rows_hidden_residual(Params& p, const at::Tensor& hr, const at::Tensor& rr, const at::Tensor& hidden,
                                     int64_t d) {
  p.rows = hr.size(0);
  p.dim = static_cast<int>(d);
  p.hidden_dtype = float_code(hidden, "hidden");
  p.hidden = hr.data_ptr();
  p.hidden_row_stride = hr.stride(0);
  if (rr.defined()) {
    p.residual_dtype = float_code(rr, "residual");
    p.residual = rr.data_ptr();
    p.residual_row_stride = rr.stride(0);
  }
}

}  // namespace quamba_m2
