// TensorRT plugin of QuantAddRMSNorm (quamba_edge/ops/quant_add_rms_norm.py) over quamba_quant_add_rms_norm
// (plugins/kernels/quant_add_rms_norm.cu): hidden fp16 [B, L, d] + residual fp32 -> y int8, residual_out fp32.
#include "plugin_common.h"
#include "quamba_kernels/quant_add_rms_norm.h"

namespace quamba_trt {
namespace {

namespace op = gen::QuantAddRMSNorm;

class QuantAddRMSNormPlugin final : public Plugin {
 public:
  static constexpr const gen::OpSpec& spec() { return op::kSpec; }
  QuantAddRMSNormPlugin(std::string layer, Fields f) : Plugin(op::kSpec, std::move(layer), std::move(f)) {}

  static std::string validate(const Fields& f) {
    if (!(f.f(op::fields::eps) >= 0.f)) return cat("eps must be >= 0, got ", f.f(op::fields::eps));
    if (!(f.f(op::fields::out_scale) > 0.f)) return cat("out_scale must be > 0, got ", f.f(op::fields::out_scale));
    return {};
  }

 protected:
  std::string check(const Bound& b) const override {
    if (b.known(op::syms::d) && (b[op::syms::d] < 1 || b[op::syms::d] > 16384))
      return cat("d = ", b[op::syms::d], " is outside the kernel's 1..16384");
    return {};
  }

  std::string run(const Launch& l) override {
    const int64_t d = l.b[op::syms::d];
    QuambaQuantAddRMSNormParams p{};
    p.rows = l.b[op::syms::B] * l.b[op::syms::L];
    if (p.rows == 0) return {};
    p.dim = static_cast<int>(d);
    p.hidden_dtype = QUAMBA_DT_F16;
    p.hidden = l.in[op::inputs::hidden];
    p.hidden_row_stride = d;
    p.residual_dtype = QUAMBA_DT_F32;
    p.residual = l.in[op::inputs::residual];
    p.residual_row_stride = d;
    p.weight = l.input<float>(op::inputs::weight);
    p.eps = fields().f(op::fields::eps);
    p.out_int8 = 1;
    p.out_scale = fields().f(op::fields::out_scale);
    p.y = l.out[op::outputs::y];
    p.y_row_stride = d;
    p.residual_out_dtype = QUAMBA_DT_F32;
    p.residual_out = l.out[op::outputs::residual_out];
    p.residual_out_row_stride = d;
    return cuda_status(quamba_quant_add_rms_norm(&p, l.stream), "quamba_quant_add_rms_norm");
  }

  Plugin* copy() const override { return new QuantAddRMSNormPlugin(*this); }
};

}  // namespace
}  // namespace quamba_trt

QUAMBA_TRT_PLUGIN(quamba_trt::QuantAddRMSNormPlugin)
