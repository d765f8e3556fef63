// TensorRT plugin of QuantCausalConv1d (quamba_edge/ops/quant_causal_conv1d.py) over quamba_quant_causal_conv1d
// (plugins/kernels/quant_causal_conv1d.cu): int8 depthwise causal conv with the int8 conv state; prefill and
// L = 1 decode are the same call. Every scale is a per-channel device vector [C].
#include "plugin_common.h"
#include "quamba_kernels/quant_causal_conv1d.h"

namespace quamba_trt {
namespace {

namespace op = gen::QuantCausalConv1d;

class QuantCausalConv1dPlugin final : public Plugin {
 public:
  static constexpr const gen::OpSpec& spec() { return op::kSpec; }
  QuantCausalConv1dPlugin(std::string layer, Fields f) : Plugin(op::kSpec, std::move(layer), std::move(f)) {}

  static std::string validate(const Fields& f) {
    const int32_t silu = f.i(op::fields::silu);
    if (silu != 0 && silu != 1) return cat("silu must be 0 or 1, got ", silu);
    return {};
  }

 protected:
  std::string check(const Bound& b) const override {
    if (b.known(op::syms::K) && (b[op::syms::K] < 1 || b[op::syms::K] > 8))
      return cat("kernel width K = ", b[op::syms::K], " is outside the kernel's 1..8");
    return {};
  }

  std::string run(const Launch& l) override {
    const int64_t B = l.b[op::syms::B], L = l.b[op::syms::L], C = l.b[op::syms::C], K = l.b[op::syms::K];
    if (B == 0 || C == 0) return {};
    const size_t state_bytes = static_cast<size_t>(B * C * (K - 1));
    if (L == 0) {  // no new input: the state passes through unchanged
      if (state_bytes == 0) return {};
      return cuda_status(cudaMemcpyAsync(l.out[op::outputs::conv_state_out], l.in[op::inputs::conv_state],
                                         state_bytes, cudaMemcpyDeviceToDevice, l.stream),
                         "cudaMemcpyAsync (conv state)");
    }
    QuambaCausalConv1dParams p{};
    p.batch = static_cast<int>(B);
    p.seqlen = static_cast<int>(L);
    p.channels = static_cast<int>(C);
    p.width = static_cast<int>(K);
    p.x = l.input<int8_t>(op::inputs::x_q);
    p.x_stride_b = L * C;
    p.x_stride_l = C;
    p.w = l.input<int8_t>(op::inputs::w_q);
    p.bias = l.input<int8_t>(op::inputs::b_q);  // zeros when the conv has none: adding 0 is exact
    p.x_scale = l.input<float>(op::inputs::x_scale);
    p.x_scale_stride = 1;
    p.w_scale = l.input<float>(op::inputs::w_scale);
    p.w_scale_stride = 1;
    p.b_scale = l.input<float>(op::inputs::b_scale);
    p.b_scale_stride = 1;
    p.out_scale = l.input<float>(op::inputs::out_scale);
    p.out_scale_stride = 1;
    // TensorRT gives every output its own buffer, so the new state never aliases the old one
    p.conv_state = K > 1 ? l.input<int8_t>(op::inputs::conv_state) : nullptr;
    p.silu = fields().i(op::fields::silu);
    p.y = l.output<int8_t>(op::outputs::y_q);
    p.y_stride_b = L * C;
    p.y_stride_l = C;
    p.new_conv_state = K > 1 ? l.output<int8_t>(op::outputs::conv_state_out) : nullptr;
    return cuda_status(quamba_quant_causal_conv1d(&p, l.stream), "quamba_quant_causal_conv1d");
  }

  Plugin* copy() const override { return new QuantCausalConv1dPlugin(*this); }
};

}  // namespace
}  // namespace quamba_trt

QUAMBA_TRT_PLUGIN(quamba_trt::QuantCausalConv1dPlugin)
