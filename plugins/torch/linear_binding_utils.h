// Helpers of the torch bindings of the quantized linear kernels (w8a8_linear.cpp, w4a8_linear.cpp,
// w4a16_linear.cpp); builds on m2_binding_utils.h.
#pragma once

#include "m2_binding_utils.h"
#include "quamba_kernels/dtype_codes.h"

#include <optional>

namespace quamba_lin {

// Activations [..., K] and outputs [..., N] with the same leading dims, as 2-D row views.
struct Rows {
  at::Tensor x, y;
  int64_t m, k, n;
};

inline Rows rows(const at::Tensor& x, int64_t k, const at::Tensor& y, int64_t n) {
  QM2_CHECK(x.is_cuda() && x.dim() >= 1 && x.size(-1) == k, "x must be a CUDA tensor [..., ", k, "], got ", x.sizes());
  quamba_torch::check_same_device(x, y, "y");
  QM2_CHECK(y.dim() == x.dim() && y.size(-1) == n, "y must be [..., ", n, "] like x ", x.sizes(), ", got ", y.sizes());
  for (int64_t d = 0; d + 1 < x.dim(); ++d) {
    QM2_CHECK(y.size(d) == x.size(d), "y must have x's leading dims ", x.sizes(), ", got ", y.sizes());
  }
  Rows r;
  r.x = quamba_m2::as_rows(x, k, "x", false);
  r.y = quamba_m2::as_rows(y, n, "y", true);
  r.m = r.x.size(0);
  r.k = k;
  r.n = n;
  return r;
}

// A weight [N, row bytes] with unit element stride, on x's device.
inline void check_weight(const at::Tensor& w, const char* name, at::ScalarType dtype, int64_t n, int64_t width,
                         const at::Tensor& x) {
  quamba_torch::check_tensor(w, name, dtype, 2);
  quamba_torch::check_same_device(x, w, name);
  QM2_CHECK(w.size(0) == n && w.size(1) == width && w.stride(1) == 1, name, " must be [", n, ", ", width,
            "] with unit stride in the last dim, got ", w.sizes());
}

// An fp32 scale vector of N values or one value on x's device: (tensor, stride 1 or 0).
inline std::pair<at::Tensor, int> row_scale(const at::Tensor& s, int64_t n, const at::Tensor& x, const char* name) {
  quamba_torch::check_same_device(x, s, name);
  QM2_CHECK(s.is_floating_point() && (s.numel() == 1 || s.numel() == n), name, " must be float with 1 or ", n,
            " values, got ", s.sizes());
  const at::Tensor t = s.scalar_type() == at::kFloat && s.is_contiguous() ? s : s.to(at::kFloat).contiguous();
  return {t, s.numel() == 1 ? 0 : 1};
}

inline at::Tensor opt_bias(const std::optional<at::Tensor>& b, int64_t n, const at::Tensor& x) {
  if (!b.has_value()) return at::Tensor();
  quamba_torch::check_same_device(x, *b, "bias");
  QM2_CHECK(b->is_floating_point() && b->numel() == n, "bias must be float [", n, "], got ", b->sizes());
  return b->to(at::kFloat).contiguous();
}

// QUAMBA_DT_* of the output: int8 (needs out_scale), fp32 or fp16.
inline int y_code(const at::Tensor& y, bool has_out_scale) {
  switch (y.scalar_type()) {
    case at::kChar:
      QM2_CHECK(has_out_scale, "an int8 y needs out_scale");
      return QUAMBA_DT_I8;
    case at::kFloat: return QUAMBA_DT_F32;
    case at::kHalf: return QUAMBA_DT_F16;
    default: QM2_CHECK(false, "y must be int8, float32 or float16, got ", c10::toString(y.scalar_type()));
  }
  return 0;
}

// The output fields every linear params struct shares: y, its dtype code and row stride.
template <class P>
void set_y(P& p, int y_dtype, const Rows& r) {
  p.y_dtype = y_dtype;
  p.y = r.y.data_ptr();
  p.y_row_stride = r.y.stride(0);
}

// The int8 output's scales of the A8 linears: (tensor, stride) checked against N, or none for a float y.
struct OutScale {
  at::Tensor t;
  int stride = 0;
};

inline OutScale out_scale(int y_dtype, const std::optional<at::Tensor>& s, int64_t n, const at::Tensor& x) {
  if (y_dtype != QUAMBA_DT_I8) return {};
  const auto ts = row_scale(*s, n, x, "out_scale");
  return {ts.first, ts.second};
}

template <class P>
void set_out_scale(P& p, const OutScale& os) {
  if (!os.t.defined()) return;
  p.out_scale = os.t.data_ptr<float>();
  p.out_scale_stride = os.stride;
}

}  // namespace quamba_lin
