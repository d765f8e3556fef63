// TensorRT plugin of QuantGatedRMSNorm (quamba_edge/ops/quant_gated_rms_norm.py) over
// quamba_quant_gated_rms_norm (plugins/kernels/quant_gated_rms_norm.cu): Mamba2's gate and group-wise RMSNorm,
// y fp16 [B, L, E], z int8 -> out fp16.
#include "plugin_common.h"
#include "quamba_kernels/quant_gated_rms_norm.h"

namespace quamba_trt {
namespace {

namespace op = gen::QuantGatedRMSNorm;

class QuantGatedRMSNormPlugin final : public Plugin {
 public:
  static constexpr const gen::OpSpec& spec() { return op::kSpec; }
  QuantGatedRMSNormPlugin(std::string layer, Fields f) : Plugin(op::kSpec, std::move(layer), std::move(f)) {}

  static std::string validate(const Fields& f) {
    const int32_t g = f.i(op::fields::group_size), nbg = f.i(op::fields::norm_before_gate);
    if (g < 1 || g > 16384) return cat("group_size = ", g, " is outside the kernel's 1..16384");
    if (nbg != 0 && nbg != 1) return cat("norm_before_gate must be 0 or 1, got ", nbg);
    if (!(f.f(op::fields::eps) >= 0.f)) return cat("eps must be >= 0, got ", f.f(op::fields::eps));
    return {};
  }

 protected:
  std::string check(const Bound& b) const override {
    const int64_t g = fields().i(op::fields::group_size);
    if (b.known(op::syms::E) && b[op::syms::E] % g != 0)
      return cat("group_size ", g, " does not divide E = ", b[op::syms::E]);
    return {};
  }

  std::string run(const Launch& l) override {
    const int64_t E = l.b[op::syms::E];
    QuambaQuantGatedRMSNormParams p{};
    p.rows = l.b[op::syms::B] * l.b[op::syms::L];
    if (p.rows == 0 || E == 0) return {};
    p.dim = static_cast<int>(E);
    p.group_size = fields().i(op::fields::group_size);
    p.y_dtype = QUAMBA_DT_F16;
    p.y = l.in[op::inputs::y];
    p.y_row_stride = E;
    p.z = l.input<int8_t>(op::inputs::z_q);
    p.z_row_stride = E;
    p.z_scale = fields().f(op::fields::z_scale);
    p.weight = l.input<float>(op::inputs::weight);
    p.eps = fields().f(op::fields::eps);
    p.norm_before_gate = fields().i(op::fields::norm_before_gate);
    p.out = l.output<uint16_t>(op::outputs::out);
    p.out_row_stride = E;
    return cuda_status(quamba_quant_gated_rms_norm(&p, l.stream), "quamba_quant_gated_rms_norm");
  }

  Plugin* copy() const override { return new QuantGatedRMSNormPlugin(*this); }
};

}  // namespace
}  // namespace quamba_trt

QUAMBA_TRT_PLUGIN(quamba_trt::QuantGatedRMSNormPlugin)
