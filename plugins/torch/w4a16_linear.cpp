// torch binding of w4a16_linear (plugins/kernels/w4a16_linear.cu).
// torch.ops.quamba_kernels.w4a16_linear(x, qweight, scale, group_size, bias, y) -> ()
// x fp16 [..., K]; qweight uint8 [N, K/2] (packed codes); scale fp16 [N, ceil(K/group_size)]; group_size <= 0 or
// >= K: one group per row, else a multiple of 32 (a multiple of 128, or of 64 at M > 16: exact fp16 codes, scaled
// per group in fp32); bias float [N] or None; y float32 / float16 [..., N].
// torch.ops.quamba_kernels.w4a16_dequantize(qweight, scale, k, group_size, out) -> ()
// out fp16 [N, K] = fp16((code - 8) * scale) (rows of out 16-byte aligned): the weight a cuBLAS prefill multiplies.
#include "linear_binding_utils.h"
#include "quamba_kernels/w4a16_linear.h"

namespace {

void w4a16_linear(const at::Tensor& x, const at::Tensor& qweight, const at::Tensor& scale, int64_t group_size,
                  const std::optional<at::Tensor>& bias, at::Tensor& y) {
  quamba_torch::check_tensor(x, "x", at::kHalf, -1);
  QM2_CHECK(x.dim() >= 1 && qweight.dim() == 2, "x [..., K] and qweight [N, K/2] expected");
  const int64_t k = x.size(-1), n = qweight.size(0);
  const quamba_lin::Rows r = quamba_lin::rows(x, k, y, n);
  quamba_lin::check_weight(qweight, "qweight", at::kByte, n, (k + 1) / 2, x);
  const int64_t gs = group_size <= 0 || group_size >= k ? k : group_size;
  quamba_lin::check_weight(scale, "scale", at::kHalf, n, (k + gs - 1) / gs, x);
  const at::Tensor b = quamba_lin::opt_bias(bias, n, x);
  const int yd = quamba_lin::y_code(y, false);
  QM2_CHECK(yd != QUAMBA_DT_I8, "y must be float32 or float16");
  if (r.m == 0) return;
  c10::cuda::CUDAGuard guard(x.device());
  QuambaW4A16LinearParams p{};
  p.m = r.m;
  p.n = static_cast<int>(n);
  p.k = static_cast<int>(k);
  p.x = reinterpret_cast<const uint16_t*>(r.x.data_ptr<at::Half>());
  p.x_row_stride = r.x.stride(0);
  p.qweight = qweight.data_ptr<uint8_t>();
  p.w_row_stride = qweight.stride(0);
  p.scale = reinterpret_cast<const uint16_t*>(scale.data_ptr<at::Half>());
  p.scale_row_stride = scale.stride(0);
  p.group_size = static_cast<int>(gs);
  p.bias = b.defined() ? b.data_ptr<float>() : nullptr;
  quamba_lin::set_y(p, yd, r);
  quamba_torch::check_cuda(quamba_w4a16_linear(&p, quamba_torch::stream()),
                           "w4a16_linear (K % 32 == 0, group_size % 32 == 0 or >= K, 16-byte aligned rows needed)");
}

void w4a16_dequantize(const at::Tensor& qweight, const at::Tensor& scale, int64_t k, int64_t group_size,
                      at::Tensor& out) {
  quamba_torch::check_tensor(out, "out", at::kHalf, 2);
  QM2_CHECK(out.stride(1) == 1 && out.size(1) == k, "out must be [N, K=", k, "] with unit column stride");
  const int64_t n = out.size(0);
  quamba_lin::check_weight(qweight, "qweight", at::kByte, n, (k + 1) / 2, out);
  const int64_t gs = group_size <= 0 || group_size >= k ? k : group_size;
  quamba_lin::check_weight(scale, "scale", at::kHalf, n, (k + gs - 1) / gs, out);
  if (n == 0) return;
  c10::cuda::CUDAGuard guard(out.device());
  QuambaW4A16DequantizeParams p{};
  p.n = static_cast<int>(n);
  p.k = static_cast<int>(k);
  p.qweight = qweight.data_ptr<uint8_t>();
  p.w_row_stride = qweight.stride(0);
  p.scale = reinterpret_cast<const uint16_t*>(scale.data_ptr<at::Half>());
  p.scale_row_stride = scale.stride(0);
  p.group_size = static_cast<int>(gs);
  p.out = reinterpret_cast<uint16_t*>(out.data_ptr<at::Half>());
  p.out_row_stride = out.stride(0);
  quamba_torch::check_cuda(quamba_w4a16_dequantize(&p, quamba_torch::stream()),
                           "w4a16_dequantize (K % 32 == 0, group_size % 32 == 0 or >= K, 16-byte aligned rows needed)");
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(quamba_kernels, m) {
  m.def("w4a16_linear(Tensor x, Tensor qweight, Tensor scale, int group_size, Tensor? bias, Tensor(a!) y) -> ()");
  m.def("w4a16_dequantize(Tensor qweight, Tensor scale, int k, int group_size, Tensor(a!) out) -> ()");
}

TORCH_LIBRARY_IMPL(quamba_kernels, CUDA, m) {
  m.impl("w4a16_linear", &w4a16_linear);
  m.impl("w4a16_dequantize", &w4a16_dequantize);
}
