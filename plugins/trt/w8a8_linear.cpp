// TensorRT plugin of W8A8Linear (quamba_edge/ops/w8a8_linear.py) over quamba_w8a8_linear
// (plugins/kernels/w8a8_linear.cu): int8 x [B, L, K] times int8 w [N, K], exact int32 sums, fp32 epilogue; y int8
// (out_int8 = 1, per-row out_scale) or float16. One call serves prefill and decode: the kernel picks its GEMV
// (M = B * L <= 16) or tiled GEMM. Every scale is a device array of the kernel's C ABI, so the graph's scale
// tensors go to it directly (no host-scale field; trt_fields.DEVICE_SCALES). Any K up to 65536 and any
// alignment: the kernel runs a byte-wise variant where its 16-byte fast path does not apply.
#include "linear_common.h"
#include "plugin_common.h"
#include "quamba_kernels/w8a8_linear.h"

namespace quamba_trt {
namespace {

namespace op = gen::W8A8Linear;
namespace in = op::inputs;

class W8A8LinearPlugin final : public Plugin {
 public:
  static constexpr const gen::OpSpec& spec() { return op::kSpec; }
  W8A8LinearPlugin(std::string layer, Fields f) : Plugin(op::kSpec, std::move(layer), std::move(f)) {}

  static std::string validate(const Fields& f) { return lin::check_out_int8(f.i(op::fields::out_int8)); }

 protected:
  uint32_t variant_mask() const override { return lin::y_mask(op::kSpec, op::outputs::y, out_int8()); }

  std::string check(const Bound& b) const override {
    if (b.known(op::syms::K) && (b[op::syms::K] < 1 || b[op::syms::K] > lin::kMaxK))
      return cat("K = ", b[op::syms::K], " is outside the kernel's 1..", lin::kMaxK);
    return {};
  }

  std::string run(const Launch& l) override {
    const int64_t K = l.b[op::syms::K], N = l.b[op::syms::N];
    QuambaW8A8LinearParams p{};
    p.m = l.b[op::syms::B] * l.b[op::syms::L];
    if (p.m == 0 || N == 0) return {};  // nothing to write (the kernel takes M, N >= 1)
    p.n = static_cast<int>(N);
    p.k = static_cast<int>(K);
    p.x = l.input<int8_t>(in::x_q);
    p.x_row_stride = K;
    p.x_scale = l.input<float>(in::x_scale);
    p.w = l.input<int8_t>(in::w_q);
    p.w_row_stride = K;
    p.w_scale = l.input<float>(in::w_scale);  // [N]: the exporter expands a per-tensor scale to rows
    p.w_scale_stride = 1;
    p.bias = l.input<float>(in::bias);  // zeros when the layer has none: adding 0 is exact
    if (out_int8()) {
      p.out_scale = l.input<float>(in::out_scale);
      p.out_scale_stride = 1;
    }
    p.y_dtype = lin::y_code(out_int8());
    p.y = l.out[op::outputs::y];
    p.y_row_stride = N;
    return cuda_status(quamba_w8a8_linear(&p, l.stream), "quamba_w8a8_linear");
  }

  Plugin* copy() const override { return new W8A8LinearPlugin(*this); }

 private:
  bool out_int8() const { return fields().i(op::fields::out_int8) != 0; }
};

}  // namespace
}  // namespace quamba_trt

QUAMBA_TRT_PLUGIN(quamba_trt::W8A8LinearPlugin)
